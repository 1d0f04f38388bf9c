#!/usr/bin/env bash
# Two terminals: a run waiting in one process receives a signal sent from
# another within a fraction of a second, a query answers while it executes,
# cancel and terminate reach it, and requests to a run whose process is gone
# are applied and picked up by `resume`.
. "$(dirname "$0")/lib.sh"
t_begin "two terminals"

cat >"$T_DIR/wait.lua" <<'LUA'
return function()
  local got = {}
  workflow.on_signal("add", function(v) got[#got + 1] = v end)
  workflow.on_query("count", function() return #got end)
  workflow.wait_condition(function() return #got >= 2 end, "1 hour")
  return got
LUA
echo "end" >>"$T_DIR/wait.lua"

"$JORCH" run --quiet --id w1 "$T_DIR/wait.lua" >"$T_DIR/out1" 2>"$T_DIR/err1" &
pid=$!
for _ in $(seq 100); do "$JORCH" query w1 count >/dev/null 2>&1 && break; sleep 0.05; done
run_jorch query w1 count
expect_eq "query while the run executes" "$OUT" "0"
start=$(date +%s%N)
"$JORCH" signal w1 add '"x"'
for _ in $(seq 100); do [ "$("$JORCH" query w1 count 2>/dev/null)" = "1" ] && break; sleep 0.02; done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect_eq "signal reached the waiting run" "$("$JORCH" query w1 count)" "1"
check "within a fraction of a second, process start-up included (${ms}ms)" test "$ms" -lt 2000
"$JORCH" signal w1 add '{"y": 2}'
wait $pid
expect_eq "run finished with both signals" "$(cat "$T_DIR/out1")" '["x",{"y":2}]'
run_jorch query w1 count
expect_eq "query of a closed run" "$OUT" "2"

# no process executes the run: requests wait in the store for resume
"$JORCH" start --id w2 "$T_DIR/wait.lua" >/dev/null
sleep 0.3
pkill -9 -f -- "resume --home $JORCH_HOME w2" 2>/dev/null
sleep 0.2
"$JORCH" signal w2 add 1
"$JORCH" signal w2 add 2
run_jorch resume --quiet w2
expect_eq "signals sent while no process ran are delivered on resume" "$OUT" "[1,2]"
expect_eq "each signal once" "$("$JORCH" history w2 --output json | grep -c EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)" "2"

# one executor at a time: a second process is refused while the first lives
"$JORCH" start --id w5 "$T_DIR/wait.lua" >/dev/null
for _ in $(seq 100); do "$JORCH" query w5 count >/dev/null 2>&1 && break; sleep 0.05; done
sleep 0.2
run_jorch resume w5
expect_eq "second executor refused: exit 2" "$RC" "2"
expect_contains "second executor refused: says who runs it" "$ERR" "is being executed by process"
"$JORCH" terminate w5 >/dev/null

# cancel from another terminal
"$JORCH" run --quiet --id w3 "$T_DIR/wait.lua" >/dev/null 2>"$T_DIR/err3" &
pid=$!
for _ in $(seq 100); do "$JORCH" query w3 count >/dev/null 2>&1 && break; sleep 0.05; done
"$JORCH" cancel w3
wait $pid
expect_eq "cancelled run exits 1" "$?" "1"
expect_contains "cancelled run says so" "$(cat "$T_DIR/err3")" "cancelled"
expect_contains "describe shows Canceled" "$("$JORCH" describe w3)" "Canceled"

# terminate from another terminal
"$JORCH" run --quiet --id w4 "$T_DIR/wait.lua" >/dev/null 2>"$T_DIR/err4" &
pid=$!
for _ in $(seq 100); do "$JORCH" query w4 count >/dev/null 2>&1 && break; sleep 0.05; done
"$JORCH" terminate w4 --reason "enough"
wait $pid
expect_eq "terminated run exits 1" "$?" "1"
expect_contains "terminated with the reason" "$(cat "$T_DIR/err4")" "enough"
run_jorch describe w4 --output json
expect_contains "describe --output json" "$OUT" "WORKFLOW_EXECUTION_STATUS_TERMINATED"

# list and filters
run_jorch list --status completed
expect_contains "list --status completed shows w1" "$OUT" "w1"
case "$OUT" in *w3*) fail "list --status completed excludes w3" ;; *) ok "list --status completed excludes w3" ;; esac
run_jorch list --status bogus
expect_eq "unknown status is a usage error" "$RC" "2"
t_end
