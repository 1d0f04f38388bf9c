#!/usr/bin/env bash
# One run, one executor, under every timing: a workflow task longer than the
# lease with a signal and a `resume` sent while it runs; and an executor
# stopped (SIGSTOP) past its lease, taken over by `resume`, then continued
# (SIGCONT). Every activity runs once, the stale executor stops without
# writing and says so, and the history replays.
#
# The lease is JORCH_LEASE_SECONDS (default 15); this test sets it from
# JORCH_TEST_LEASE (default 2) to stay fast. JORCH_TEST_LEASE=15 gives the
# timings of the original report (a task of three leases, signal and resume
# just after the lease ran out; SIGSTOP for lease + 1 s), for checking a jorch
# that does not read JORCH_LEASE_SECONDS.
. "$(dirname "$0")/lib.sh"
t_begin "one executor per run"

LEASE=${JORCH_TEST_LEASE:-2}
export JORCH_LEASE_SECONDS=$LEASE
# the long workflow task below must not trip the per-task limits
export JORCH_INSTRUCTION_BUDGET=100000000000 JORCH_WALL_CLOCK_LIMIT=600
count() { grep -c "^$1\$" "$MARK_FILE" 2>/dev/null || true; }
wait_mark() { for _ in $(seq 600); do [ "$(count "$1")" -ge 1 ] && return 0; sleep 0.05; done; return 1; }
expected='["A:1","B:2","C:s"]'

cat >"$T_DIR/lease.lua" <<'LUA'
local acts = workflow.activities{start_to_close_timeout = "600s"}
local function spin(n) -- a long workflow task, as long as n makes it
  local x = 0
  for i = 1, n do x = x + (i % 7) end
  return x
end
return function(spin_after_a, spin_after_signal)
  local got
  workflow.on_signal("go", function(v) got = v end)
  local a = acts.mark("A", 1)
  spin(spin_after_a)
  local b = acts.mark("B", 2)
  workflow.wait_condition(function() return got ~= nil end)
  spin(spin_after_signal)
  local c = acts.mark("C", got)
  return {a, b, c}
end
LUA

# history checks shared by both scenarios
check_history() { # NAME ID
  "$JORCH" history "$2" --output json >"$T_DIR/$2.json"
  local h
  h=$(cat "$T_DIR/$2.json")
  expect_eq "$1: each activity scheduled once" "$(printf '%s' "$h" | grep -c EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)" "3"
  expect_eq "$1: the signal recorded once" "$(printf '%s' "$h" | grep -c EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)" "1"
  local started completed
  started=$(printf '%s' "$h" | grep -c EVENT_TYPE_WORKFLOW_TASK_STARTED)
  completed=$(printf '%s' "$h" | grep -c EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
  expect_eq "$1: every workflow task started once" "$started" "$completed"
  check "$1: the history replays" "$JORCH" replay --quiet "$T_DIR/lease.lua" "$T_DIR/$2.json"
}

# how many loop iterations take one second here (this build, this machine)
n=20000000
cat >"$T_DIR/calib.lua" <<'LUA'
return function(n) local x = 0 for i = 1, n do x = x + (i % 7) end return x end
LUA
t0=$(date +%s%N)
"$JORCH" run --quiet --id calibrate "$T_DIR/calib.lua" "$n" >/dev/null
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -gt 0 ] || ms=1
per_second=$(( n * 1000 / ms ))

# 1. a workflow task of about four leases; a signal and a resume arrive
#    after the first lease would have run out, while the task still runs
export MARK_FILE="$T_DIR/marks-long"
: >"$MARK_FILE"
"$JORCH" run --quiet --id long --activities "$ACTS" "$T_DIR/lease.lua" $((per_second * LEASE * 4)) 0 \
  >"$T_DIR/out-long" 2>"$T_DIR/err-long" &
pid=$!
wait_mark A || fail "long task: activity A ran"
sleep "$LEASE.5"
run_jorch signal long go '"s"'
expect_eq "long task: signal accepted while the task runs" "$RC" "0"
sleep 0.5
run_jorch resume --quiet --activities "$ACTS" long
expect_eq "long task: a second executor is refused (the lease was renewed during the task)" "$RC" "2"
expect_contains "long task: the refusal names the executor" "$ERR" "is being executed by process $pid@"
wait $pid
expect_eq "long task: the run completes" "$?" "0"
expect_eq "long task: result" "$(cat "$T_DIR/out-long")" "$expected"
for a in A B C; do expect_eq "long task: activity $a ran once" "$(count $a)" "1"; done
check_history "long task" long

# 2. the executor is stopped for longer than its lease while the run waits
#    for a signal; the signal is sent and `resume` takes the run over; the
#    first executor continues while the new one runs the last activity
export MARK_FILE="$T_DIR/marks-stop"
: >"$MARK_FILE"
"$JORCH" run --quiet --id stopped --activities "$ACTS" "$T_DIR/lease.lua" 0 $((per_second / 2)) \
  >"$T_DIR/out-stale" 2>"$T_DIR/err-stale" &
pid=$!
wait_mark B || fail "stopped: activity B ran"
# B's completion and the next workflow task are committed: the run waits for
# the signal, and the executor is in no transaction when it is stopped
for _ in $(seq 400); do
  [ "$("$JORCH" history stopped --output json | grep -c EVENT_TYPE_WORKFLOW_TASK_COMPLETED)" -ge 3 ] && break
  sleep 0.05
done
sleep 0.2
kill -STOP $pid
sleep $((LEASE + 1))
run_jorch signal stopped go '"s"'
expect_eq "stopped: signal accepted" "$RC" "0"
MARK_DELAY=1 "$JORCH" resume --quiet --activities "$ACTS" stopped >"$T_DIR/out-new" 2>"$T_DIR/err-new" &
rpid=$!
wait_mark C || fail "stopped: the new executor runs C"
kill -CONT $pid
# the old executor finds at once that it lost the run, and stops
wait $pid
expect_eq "stopped: the stale executor exits 2" "$?" "2"
expect_contains "stopped: the stale executor says why it stopped" "$(cat "$T_DIR/err-stale")" "no longer owns the run"
wait $rpid
expect_eq "stopped: the new executor completes the run" "$?" "0"
expect_eq "stopped: result" "$(cat "$T_DIR/out-new")" "$expected"
for a in A B C; do expect_eq "stopped: activity $a ran once" "$(count $a)" "1"; done
check_history "stopped" stopped

# a lease length that is not a whole number of seconds is refused
JORCH_LEASE_SECONDS=0.5 run_jorch run --quiet "$T_DIR/calib.lua" 1
expect_eq "invalid JORCH_LEASE_SECONDS: usage error" "$RC" "2"
expect_contains "invalid JORCH_LEASE_SECONDS: says so" "$ERR" "JORCH_LEASE_SECONDS"
expect_eq "invalid JORCH_LEASE_SECONDS: no run is left open" "$("$JORCH" list --status running | grep -c calib)" "0"
t_end
