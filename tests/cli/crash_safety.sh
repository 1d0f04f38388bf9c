#!/usr/bin/env bash
# kill -9 at every interesting instant of a workflow with three activities, a
# signal with a timeout and a sleep; `jorch resume` must reach the right
# result, never re-run an activity whose completion was committed, and
# deliver each signal exactly once.
. "$(dirname "$0")/lib.sh"
t_begin "crash safety"
# This test is about executors of one run each (kill -9 of a run's process,
# 'jorch resume'): start and run --detach start one per run, not the service
# (tests/cli/serve*.sh cover the service).
export JORCH_SERVICE=off

expected='["A:ada","B:zed","C:ada"]'
count() { grep -c "^$1\$" "$MARK_FILE" 2>/dev/null || true; }

# JORCH_FAULT points (runtime/store/runner.c) and which hit to die on
points="task-before-commit:1 task-after-commit:1 task-before-commit:2 task-after-commit:3
activity-dispatch:1 activity-before-commit:1 activity-before-commit:2 activity-before-commit:3
timer-before-commit:1 timer-before-commit:2 inbox-before-commit:1 task-before-commit:4 task-after-commit:5"

for p in $points; do
  export MARK_FILE="$T_DIR/marks-${p//:/-}"
  id="crash-${p//:/-}"
  : >"$MARK_FILE"
  # the signal is queued first, so it arrives while the run is in flight
  JORCH_FAULT="$p" "$JORCH" run --quiet --id "$id" --activities "$ACTS" "$WFS/three_steps.lua" ada >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 50); do "$JORCH" describe "$id" >/dev/null 2>&1 && break; sleep 0.05; done
  "$JORCH" signal "$id" approve '"zed"' 2>/dev/null
  wait $pid
  rc=$?
  if [ $rc -ne 137 ] && [ $rc -ne 0 ]; then fail "$p: first process exit $rc"; continue; fi
  # completions committed before the crash must not run again
  hist=$("$JORCH" history "$id" --output json)
  done_before=$(printf '%s' "$hist" | grep -c 'EVENT_TYPE_ACTIVITY_TASK_COMPLETED')
  a_before=$(count A); b_before=$(count B); c_before=$(count C)
  out=$("$JORCH" resume --quiet --activities "$ACTS" "$id" 2>"$T_DIR/err")
  expect_eq "$p: result after resume" "$out" "$expected"
  # with N completions committed, the first N steps ran exactly as often as before
  if [ "$done_before" -ge 1 ]; then expect_eq "$p: A not re-run" "$(count A)" "$a_before"; fi
  if [ "$done_before" -ge 2 ]; then expect_eq "$p: B not re-run" "$(count B)" "$b_before"; fi
  if [ "$done_before" -ge 3 ]; then expect_eq "$p: C not re-run" "$(count C)" "$c_before"; fi
  sig=$("$JORCH" history "$id" --output json | grep -c 'EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED')
  expect_eq "$p: signal delivered once" "$sig" "1"
done

# random kill -9 from outside, several times in one run, resuming each time
export MARK_FILE="$T_DIR/marks-random"
: >"$MARK_FILE"
export MARK_DELAY=0.3
id=crash-random
"$JORCH" start --id "$id" --activities "$ACTS" "$WFS/three_steps.lua" ada >/dev/null
sleep 0.2
"$JORCH" signal "$id" approve '"zed"'
for delay in 0.15 0.35 0.6 0.25 0.5; do
  sleep "$delay"
  pkill -9 -f -- "resume --home $JORCH_HOME.* $id" 2>/dev/null || true
  sleep 0.05
  "$JORCH" resume --quiet --activities "$ACTS" "$id" >/dev/null 2>&1 &
done
wait
out=$("$JORCH" resume --quiet --activities "$ACTS" "$id" 2>/dev/null)
[ -n "$out" ] || out=$("$JORCH" result "$id")
expect_eq "random kills: result" "$out" "$expected"
sig=$("$JORCH" history "$id" --output json | grep -c 'EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED')
expect_eq "random kills: signal delivered once" "$sig" "1"
unset MARK_DELAY

# the history of a crashed-and-resumed run replays cleanly in a fresh process
"$JORCH" history crash-activity-before-commit-2 --output json >"$T_DIR/h.json"
check "resumed history replays" "$JORCH" replay --quiet "$WFS/three_steps.lua" "$T_DIR/h.json"
t_end
