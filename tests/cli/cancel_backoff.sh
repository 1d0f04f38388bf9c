#!/usr/bin/env bash
# Cancelling an activity that waits for its retry (issue 8). The embedded
# backend writes a task's command events together and in command order, then
# what they caused (ActivityTaskCanceled for an activity that had not
# started, then a new workflow task), as a Temporal dev server does; the run
# completes, also after kill -9 at every runner fault point around the
# cancellation, and a run cancelled during the backoff ends cancelled after
# its cleanup, also when the process died first. A history written in the
# old order (a workflow task scheduled among the command events) replays.
. "$(dirname "$0")/lib.sh"
t_begin "cancel during retry backoff"
W="$JORCH_SOURCE_DIR/tests/cli/workflows"
expected='{"cancelled":true,"r":"after"}'
types() { "$JORCH" history "$1" --output json | jq -r '.events[].eventType' | sed 's/^EVENT_TYPE_//' | tr '\n' ' '; }

run_jorch run --quiet --id cb --activities "$ACTS" "$WFS/cancel_backoff.lua"
expect_eq "completes: exit 0" "$RC" "0"
expect_eq "completes: result" "$OUT" "$expected"
# the server's order (checked on a Temporal dev server with the Python SDK)
expect_contains "event order as on a Temporal server" "$(types cb)" \
  "WORKFLOW_TASK_COMPLETED ACTIVITY_TASK_CANCEL_REQUESTED ACTIVITY_TASK_SCHEDULED ACTIVITY_TASK_CANCELED WORKFLOW_TASK_SCHEDULED WORKFLOW_TASK_STARTED"
canceled=$("$JORCH" history cb --output json --no-json-shorthand-payloads | jq -c '.events[] | select(.eventType == "EVENT_TYPE_ACTIVITY_TASK_CANCELED") | .activityTaskCanceledEventAttributes | {s: .scheduledEventId, c: .latestCancelRequestedEventId, d: .details.payloads[0].data}')
expect_eq "ActivityTaskCanceled attributes as the server writes them" "$canceled" \
  '{"s":"5","c":"11","d":"IkFDVElWSVRZX0lEX05PVF9TVEFSVEVEIg=="}'
# runtime flags (docs/development.md): a new run records flags 1 and 3 and
# jorch's name in its first completion, nothing in later ones; ids per kind
md=$("$JORCH" history cb --output json | jq -c '[.events[] | select(.eventType == "EVENT_TYPE_WORKFLOW_TASK_COMPLETED")
  | .workflowTaskCompletedEventAttributes.sdkMetadata | {f: (.langUsedFlags // []), n: (.sdkName // "")}]')
expect_eq "runtime flags recorded in the first completion" "$md" '[{"f":[1,3],"n":"jorch"},{"f":[],"n":""},{"f":[],"n":""},{"f":[],"n":""}]'
ids=$("$JORCH" history cb --output json | jq -c '[.events[] | (.activityTaskScheduledEventAttributes.activityId // .timerStartedEventAttributes.timerId // empty)]')
expect_eq "command ids per kind (activity 1, timer 1, activity 2)" "$ids" '["1","1","2"]'
"$JORCH" history cb --output json >"$T_DIR/cb.json"
check "its history replays" "$JORCH" replay --quiet "$WFS/cancel_backoff.lua" "$T_DIR/cb.json"
check "a history in the old order (WorkflowTaskScheduled among command events) replays" \
  "$JORCH" replay --quiet "$WFS/cancel_backoff.lua" "$WFS/legacy/cancel_backoff_stuck.json"

# kill -9 at each runner fault point (runtime/store/runner.c) around the cancellation
points="task-before-commit:1 task-after-commit:1 activity-dispatch:1 activity-before-commit:1
timer-before-commit:1 task-before-commit:2 task-after-commit:2 task-before-commit:3 task-after-commit:3
activity-dispatch:2 activity-before-commit:2 task-before-commit:4"
for p in $points; do
  id="cb-${p//:/-}"
  JORCH_FAULT="$p" "$JORCH" run --quiet --id "$id" --activities "$ACTS" "$WFS/cancel_backoff.lua" >/dev/null 2>&1
  rc=$?
  if [ $rc -ne 137 ]; then fail "$p: the first process was not killed (exit $rc)"; continue; fi
  out=$("$JORCH" resume --quiet --activities "$ACTS" "$id" 2>"$T_DIR/err")
  expect_eq "$p: result after resume" "$out" "$expected"
  "$JORCH" history "$id" --output json >"$T_DIR/h.json"
  check "$p: the resumed history replays" "$JORCH" replay --quiet "$WFS/cancel_backoff.lua" "$T_DIR/h.json"
done

# the run itself cancelled while its activity waits for a retry: cleanup, then Canceled
export MARK_FILE="$T_DIR/marks"
: >"$MARK_FILE"
"$JORCH" start --id wc --activities "$ACTS" "$W/cancel_in_backoff.lua" >/dev/null
for _ in $(seq 100); do "$JORCH" describe wc 2>/dev/null | grep -q "attempt 2\|flaky" && break; sleep 0.05; done
sleep 0.5
"$JORCH" cancel wc >/dev/null
run_jorch result wc
expect_contains "cancelled in backoff: the run ends cancelled" "$("$JORCH" describe wc)" "Canceled"
expect_eq "cancelled in backoff: cleanup ran once" "$(grep -c '^cleanup$' "$MARK_FILE")" "1"

# ... and after kill -9 while the first attempt's failure is committed, then cancel and resume
: >"$MARK_FILE"
(JORCH_FAULT=activity-before-commit:1 exec "$JORCH" run --quiet --id wk --activities "$ACTS" "$W/cancel_in_backoff.lua") >/dev/null 2>&1
expect_eq "crash then cancel: the first process was killed" "$?" "137"
"$JORCH" cancel wk >/dev/null
"$JORCH" resume --quiet --activities "$ACTS" wk >/dev/null 2>"$T_DIR/err"
expect_contains "crash then cancel: the run ends cancelled" "$("$JORCH" describe wk)" "Canceled"
expect_eq "crash then cancel: cleanup ran once" "$(grep -c '^cleanup$' "$MARK_FILE")" "1"
t_end
