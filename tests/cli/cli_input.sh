#!/usr/bin/env bash
# Input that would silently change what runs is refused: an argument that
# starts like JSON but does not parse, an option after SCRIPT; --input and
# --input-file give exact input; a signal nobody handles (or one its
# validator rejects) is reported in the sender's terminal.
. "$(dirname "$0")/lib.sh"
t_begin "cli input"
W="$T_DIR/w"
mkdir -p "$W"
printf 'return function(...) return {...} end\n' >"$W/echo.lua"
ORCH="$JORCH_SOURCE_DIR/workflows/orchestrate.lua"
runs_in_store() { "$JORCH" list --output json 2>/dev/null | grep -o '"workflowId"' | wc -l; }
RUNS=0
no_run_started() { # nothing reached the store since the last call
  local n
  n=$(runs_in_store)
  expect_eq "$1: no run was started" "$n" "$RUNS"
}

# --- JSON-looking arguments must be JSON
run_jorch run "$ORCH" PROJ-123 '{autoProceed: false}'
expect_eq "malformed JSON object argument: exit 2" "$RC" "2"
expect_contains "names the argument" "$ERR" "input argument 2 '{autoProceed: false}'"
expect_contains "names the position of the parse error" "$ERR" "line 1, column 2"
no_run_started "malformed JSON object argument"
run_jorch start "$W/echo.lua" '[1, 2'
expect_eq "malformed JSON array on start: exit 2" "$RC" "2"
expect_contains "array: position" "$ERR" "column 6"
run_jorch run --quiet "$W/echo.lua" '"unterminated'
expect_eq "malformed JSON string: exit 2" "$RC" "2"
no_run_started "malformed JSON arguments"
run_jorch run --quiet "$W/echo.lua" PROJ-1 '{"a": [1, 2]}' 7 true 'plain text' -5
expect_eq "valid JSON and plain words still work" "$OUT" '["PROJ-1",{"a":[1,2]},7,true,"plain text",-5]'

# --- exact input
run_jorch run --quiet --input '{"issueKey": "PROJ-9"}' --input '"x"' "$W/echo.lua"
expect_eq "--input: one argument each, in order" "$OUT" '[{"issueKey":"PROJ-9"},"x"]'
printf '{"autoProceed": false,\n "skip": [1, 2]}\n' >"$W/in.json"
run_jorch run --quiet --input-file "$W/in.json" --input 3 "$W/echo.lua"
expect_eq "--input-file and --input mixed, in order" "$OUT" '[{"autoProceed":false,"skip":[1,2]},3]'
RUNS=$(runs_in_store)
run_jorch run --quiet --input 'PROJ-1' "$W/echo.lua"
expect_eq "--input that is not JSON: exit 2" "$RC" "2"
expect_contains "--input: says how to pass a string" "$ERR" "double quotes"
printf '{"a": 1,\n "b": }\n' >"$W/bad.json"
run_jorch run --quiet --input-file "$W/bad.json" "$W/echo.lua"
expect_eq "--input-file with bad JSON: exit 2" "$RC" "2"
expect_contains "--input-file: file and position" "$ERR" "bad.json is not valid JSON: at line 2, column"
run_jorch run --quiet --input-file "$W/missing.json" "$W/echo.lua"
expect_eq "--input-file missing: exit 2" "$RC" "2"
run_jorch run --quiet --input 1 "$W/echo.lua" 2
expect_eq "--input and arguments together: exit 2" "$RC" "2"
expect_contains "--input and arguments: says so" "$ERR" "input given twice"
no_run_started "refused --input"

# --- options after SCRIPT
run_jorch run "$ORCH" PROJ-123 --quiet
expect_eq "option after SCRIPT: exit 2" "$RC" "2"
expect_contains "option after SCRIPT: where options go" "$ERR" "jorch run --quiet SCRIPT"
expect_contains "option after SCRIPT: the -- escape" "$ERR" "jorch run SCRIPT -- --quiet"
run_jorch start "$W/echo.lua" a --id=x
expect_eq "--opt=value after SCRIPT on start: exit 2" "$RC" "2"
run_jorch run "$W/echo.lua" -q
expect_eq "short option after SCRIPT: exit 2" "$RC" "2"
no_run_started "options after SCRIPT"
run_jorch run --quiet "$W/echo.lua" a -- --quiet -x --
expect_eq "after --, dashes are input" "$OUT" '["a","--quiet","-x","--"]'
run_jorch run --quiet -- "$W/echo.lua" --quiet
expect_eq "-- before SCRIPT: what follows is input" "$OUT" '["--quiet"]'

# --- signal and query arguments follow the same rules
cat >"$W/sig.lua" <<'LUA'
return function()
  local got = {}
  workflow.on_signal("add", function(...) got[#got + 1] = {...} end)
  workflow.on_query("echo", function(...) return {...} end)
  workflow.wait_condition(function() return #got >= 1 end)
  return got
end
LUA
"$JORCH" start --id s1 "$W/sig.lua" >/dev/null
for _ in $(seq 100); do "$JORCH" query s1 echo >/dev/null 2>&1 && break; sleep 0.05; done
run_jorch query s1 echo '{bad'
expect_eq "query: malformed JSON argument: exit 2" "$RC" "2"
expect_contains "query: names the argument and the position" "$ERR" "input argument 1 '{bad' starts with '{' but is not valid JSON: at line 1, column 2"
run_jorch query s1 echo --input '{"k": 1}' --input '[2]'
expect_eq "query --input" "$OUT" '[{"k":1},[2]]'
run_jorch signal s1 add '{x: 1}'
expect_eq "signal: malformed JSON argument: exit 2" "$RC" "2"
expect_contains "signal: names the argument and the position" "$ERR" "input argument 1 '{x: 1}' starts with '{' but is not valid JSON: at line 1, column 2"
run_jorch signal s1 add --input-file "$W/in.json" --input '"two"'
expect_eq "signal --input-file/--input: exit 0" "$RC" "0"
run_jorch result --timeout 20s s1
expect_eq "signal arguments arrived exactly" "$OUT" '[[{"autoProceed":false,"skip":[1,2]},"two"]]'

# --- jorch activity NAME ARG... takes its arguments by the same rule
run_jorch activity echo '{x: 1}' --activities "$ACTS"
expect_eq "activity: malformed JSON object argument: exit 2" "$RC" "2"
expect_contains "activity: names the argument and the position" "$ERR" "argument 1 '{x: 1}' starts with '{' but is not valid JSON: at line 1, column 2"
expect_eq "activity: nothing printed on stdout" "$OUT" ""
run_jorch activity echo '[1, 2' --activities "$ACTS"
expect_eq "activity: malformed JSON array: exit 2" "$RC:$(grep -c 'column 6' <<<"$ERR")" "2:1"
run_jorch activity echo ' "unterminated' --activities "$ACTS"
expect_eq "activity: malformed JSON string (after a blank): exit 2" "$RC" "2"
run_jorch activity echo PROJ-123 --activities "$ACTS"
expect_eq "activity: a bare word is still a string" "$RC:$OUT" '0:"PROJ-123"'
run_jorch activity echo '{"a": [1, 2]}' --activities "$ACTS"
expect_eq "activity: valid JSON is decoded" "$RC:$OUT" '0:{"a":[1,2]}'
run_jorch activity echo '"{x: 1}"' --activities "$ACTS"
expect_eq "activity: JSON-looking text given as a JSON string" "$RC:$OUT" '0:"{x: 1}"'

# --- signals nobody handles, and validators (item 6)
cat >"$W/gate.lua" <<'LUA'
local PHASES = {PLAN = true, CODE = true}
return function()
  local got = {}
  workflow.on_signal("proceed", function() got[#got + 1] = "proceed" end)
  workflow.on_signal("skipPhase", function(p) got[#got + 1] = "skip " .. p end, {validator = function(p)
    if not PHASES[p] then error("unknown phase " .. tostring(p) .. " (one of CODE, PLAN)", 0) end
  end})
  workflow.on_query("got", function() return got end)
  workflow.wait_condition(function() return #got >= 2 end)
  return got
end
LUA
"$JORCH" run --quiet --id g1 "$W/gate.lua" >"$T_DIR/g1.out" 2>"$T_DIR/g1.err" &
gpid=$!
for _ in $(seq 100); do "$JORCH" query g1 got >/dev/null 2>&1 && break; sleep 0.05; done
run_jorch signal g1 procede
expect_eq "signal without a handler: still delivered (exit 0)" "$RC" "0"
expect_contains "signal without a handler: warning on the sender's terminal" "$ERR" "has no handler for signal 'procede'"
expect_contains "signal without a handler: lists the names handled" "$ERR" "it handles: proceed, skipPhase"
run_jorch signal g1 skipPhase TEST
expect_eq "validator rejects: exit 2" "$RC" "2"
expect_contains "validator rejects: its message on the sender's terminal" "$ERR" "unknown phase TEST (one of CODE, PLAN)"
expect_contains "validator rejects: says nothing was sent" "$ERR" "nothing was sent"
run_jorch signal g1 skipPhase CODE
expect_eq "validator accepts: exit 0, no warning" "$RC:$ERR" "0:"
"$JORCH" signal g1 proceed
wait $gpid
expect_eq "run got the accepted signals only" "$(cat "$T_DIR/g1.out")" '["skip CODE","proceed"]'
expect_eq "the rejected signal never reached history" \
  "$("$JORCH" history g1 --output json | grep -c EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)" "3"
run_jorch signal g1 proceed
expect_eq "signal to a closed run: exit 2" "$RC" "2"
# a validator that never returns: the check gives up at the limits, says so, sends
cat >"$W/loop.lua" <<'LUA'
return function()
  local n = 0
  workflow.on_signal("x", function() n = n + 1 end, {validator = function() while true do end end})
  workflow.on_query("n", function() return n end)
  workflow.wait_condition(function() return n >= 1 end)
  return n
end
LUA
"$JORCH" start --id loop1 "$W/loop.lua" >/dev/null
for _ in $(seq 100); do "$JORCH" query loop1 n >/dev/null 2>&1 && break; sleep 0.05; done
JORCH_INSTRUCTION_BUDGET=2000000 run_jorch signal loop1 x
expect_eq "hanging validator: sent anyway (exit 0)" "$RC" "0"
expect_contains "hanging validator: says the signal went unchecked" "$ERR" "sent unchecked"
run_jorch result --timeout 20s loop1
expect_eq "hanging validator: the run got the signal" "$OUT" "1"
printf 'return function()\n  workflow.on_signal("x", function() end, {validatr = print})\n  return 1\nend\n' >"$W/badopt.lua"
run_jorch run --quiet "$W/badopt.lua"
expect_contains "on_signal rejects an unknown option" "$ERR" "unknown option 'validatr'"
t_end
