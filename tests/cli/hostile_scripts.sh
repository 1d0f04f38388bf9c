#!/usr/bin/env bash
# Hostile workflow code through the real binary (issue 14, items 2 and 3):
# error objects whose __tostring fails, raised from the workflow body or a
# query handler, must not abort jorch (exit 134 "unprotected error"); and
# C library loops the count hook never sees (table.move, string.rep,
# table.concat, patterns) must stop at the wall-clock limit in the body, in
# a query and in a signal handler, while other runs go on.
. "$(dirname "$0")/lib.sh"
t_begin "hostile workflow scripts"
export JORCH_WALL_CLOCK_LIMIT=2
# a budget too large to matter here: the wall clock is what must hold
export JORCH_INSTRUCTION_BUDGET=1000000000000000
# The scripts are shared with tests/integration/worker_hostile.sh.
H=$JORCH_SOURCE_DIR/tests/sandbox/hostile

run_jorch run --quiet --id evil "$H/evil_body.lua"
expect_eq "body: error object with a failing __tostring fails the task (exit 1, no abort)" "$RC" "1"
expect_contains "body: the message says what happened" "$ERR" "its __tostring failed"
run_jorch resume --quiet evil
expect_eq "body: resume fails the same clean way" "$RC" "1"
expect_contains "body: resume names the failing __tostring" "$ERR" "its __tostring failed"

run_jorch start --id q "$H/evil_query.lua"
expect_eq "query: start" "$RC" "0"
sleep 0.5
run_jorch query q boom
expect_eq "query: failing __tostring is a failed query (exit 1, no abort)" "$RC" "1"
expect_contains "query: its message" "$ERR" "query 'boom' failed: (error object of type table"
for q in move concat pattern; do
  start=$(date +%s)
  OUT=$(timeout 30 "$JORCH" query q "$q" 2>"$T_DIR/stderr"); RC=$?; ERR=$(cat "$T_DIR/stderr")
  took=$(($(date +%s) - start))
  expect_eq "query $q: fails (exit 1)" "$RC" "1"
  expect_contains "query $q: at the wall-clock limit" "$ERR" "wall-clock limit of 2 s exceeded"
  check "query $q: within seconds ($took s)" test "$took" -le 10
done
OUT=$(timeout 30 "$JORCH" query q rep 2>"$T_DIR/stderr"); RC=$?
expect_eq "query rep: string.rep('', maxinteger) is '' at once" "$RC:$OUT" "0:0"
run_jorch query q ok
expect_eq "query: the run still answers afterwards" "$RC:$OUT" '0:"fine"'

# A hanging body, and another run going on at the same time.
"$JORCH" run --quiet --id other --activities "$ACTS" "$WFS/three_steps.lua" '"ada"' \
  >"$T_DIR/other.out" 2>&1 &
other=$!
start=$(date +%s)
OUT=$(timeout 30 "$JORCH" run --quiet --id hang "$H/hang_body.lua" 2>"$T_DIR/stderr"); RC=$?
ERR=$(cat "$T_DIR/stderr")
took=$(($(date +%s) - start))
expect_eq "body: table.move over 2^50 elements fails the task" "$RC" "1"
expect_contains "body: at the wall-clock limit, naming the line" "$ERR" \
  "hang_body.lua:1: wall-clock limit of 2 s exceeded"
check "body: within seconds ($took s)" test "$took" -le 10
start=$(date +%s)
OUT=$(timeout 30 "$JORCH" resume --quiet hang 2>"$T_DIR/stderr"); RC=$?
ERR=$(cat "$T_DIR/stderr")
took=$(($(date +%s) - start))
expect_eq "resume of the hanging run fails the task again" "$RC" "1"
expect_contains "resume: at the wall-clock limit" "$ERR" "hang_body.lua:1: wall-clock limit of 2 s exceeded"
check "resume: within seconds ($took s)" test "$took" -le 10
"$JORCH" signal other approve '"zed"' >/dev/null 2>&1
wait "$other"
expect_eq "another run meanwhile completes" "$?" "0"

# A signal handler that hangs fails its workflow task; the run stays open.
run_jorch start --id sig "$H/hang_signal.lua"
sleep 0.5
run_jorch signal sig hang
expect_eq "signal: accepted" "$RC" "0"
failed=""
for _ in $(seq 1 40); do
  if "$JORCH" history sig 2>/dev/null | grep -q "WorkflowTaskFailed"; then failed=yes; break; fi
  sleep 0.5
done
expect_eq "signal: the hanging handler fails its workflow task within seconds" "$failed" "yes"
run_jorch history sig --output json
expect_contains "signal: the failure names the wall-clock limit" "$OUT" "wall-clock limit of 2 s exceeded"
run_jorch describe sig
expect_contains "signal: the run is still open" "$OUT" "Running"
t_end
