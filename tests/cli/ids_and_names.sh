#!/usr/bin/env bash
# ids_and_names.sh - workflow ids and signal, query and activity names are
# checked as Temporal checks them (UTF-8, at most 1000 bytes) and may hold no
# control characters; file names are derived from ids safely; ids, names
# and log text reach the terminal with control characters escaped; a store
# that already holds a bad id (an older jorch) still lists, also as JSON.
. "$(dirname "$0")/lib.sh"
t_begin "ids and names"
W="$T_DIR/w"
mkdir -p "$W" "$JORCH_HOME"
cat > "$W/x.lua" <<'LUA'
return function() return 1 end
LUA
cat > "$W/park.lua" <<'LUA'
return function()
  workflow.on_signal("go", function() end)
  workflow.on_query("q", function() return "answer" end)
  workflow.log("log \27[2J\27[31mred\nFAKE [other] line \194\155 c1")
  workflow.wait_condition(function() return false end)
end
LUA
cat > "$W/badact.lua" <<'LUA'
local acts = workflow.activities{start_to_close_timeout = "10s"}
return function()
  local r = acts["mark\255"]("A", "x")
  return r
end
LUA
ESC=$(printf '\033')
no_raw_controls() { ! LC_ALL=C grep -q "[$ESC]" "$1" && ! LC_ALL=C grep -qP '\xc2[\x80-\x9f]' "$1"; }
list_ids() { "$JORCH" list --output json | python3 -c 'import json,sys; print("\n".join(r["execution"]["workflowId"] for r in json.load(sys.stdin)))'; }

# A path in an id never leaves $JORCH_HOME: logs/ID.log is percent-encoded.
mkdir -p "$T_DIR/outside"
cd "$T_DIR/home" && id=$("$JORCH" start --id ../../outside/escaped "$W/x.lua"); cd - >/dev/null
expect_eq "an id with ../ is a valid Temporal id" "$id" "../../outside/escaped"
"$JORCH" result "$id" --timeout 20s >/dev/null 2>&1
check "nothing written outside \$JORCH_HOME" [ -z "$(ls -A "$T_DIR/outside")" ]
check "its log is inside logs/, name encoded" [ -f "$JORCH_HOME/logs/%2E.%2F..%2Foutside%2Fescaped.log" ]

# Bad ids are refused with a clear message, nothing is started.
for bad in "$(printf 'a\nFAKE-ROW x Completed')" "$(printf 'esc\033[31mred')" "$(printf 'bad\377')" \
           "$(printf 'c1\302\233x')" "$(head -c 1001 /dev/zero | tr '\0' a)" ""; do
  run_jorch start --id "$bad" "$W/x.lua"
  shown=$(printf '%s' "$bad" | head -c 12 | tr -c '[:alnum:]' '.')
  expect_eq "start --id [$shown] refused (exit 2)" "$RC" 2
  printf '%s' "$ERR" > "$T_DIR/err"
  check "start --id [$shown]: no raw control bytes in the message" no_raw_controls "$T_DIR/err"
done
expect_contains "the message names the problem" "$(printf 'x' ; "$JORCH" start --id "$(printf 'esc\033[31m')" "$W/x.lua" 2>&1)" \
  "'esc\\x1b[31m' contains a control character"
expect_eq "only the valid run is in the store" "$(list_ids)" "../../outside/escaped"

# Signal and query names; a reason must be UTF-8.
id=$("$JORCH" start --id park "$W/park.lua")
for i in $(seq 50); do grep -q FAKE "$JORCH_HOME/logs/park.log" 2>/dev/null && break; sleep 0.1; done
run_jorch signal park "$(printf 'go\377')"
expect_eq "non-UTF-8 signal name refused" "$RC" 2
expect_contains "signal name message" "$ERR" "signal name 'go\\xff' is not valid UTF-8"
run_jorch signal park "$(printf 'go\nx')"
expect_eq "signal name with a newline refused" "$RC" 2
run_jorch query park "$(printf 'q\001')"
expect_eq "query name with a control character refused" "$RC" 2
run_jorch terminate park --reason "$(printf 'why\376')"
expect_eq "non-UTF-8 reason refused" "$RC" 2
run_jorch query park q
expect_eq "a good query still works" "$OUT" '"answer"'
check "the run still exports as JSON" sh -c '"$1" history park --output json | python3 -c "import json,sys; json.load(sys.stdin)"' _ "$JORCH"
check "workflow.log: no raw escape or C1 bytes in the log" no_raw_controls "$JORCH_HOME/logs/park.log"
check "workflow.log: the newline cannot forge a line" sh -c '! grep -q "^FAKE" "$1"' _ "$JORCH_HOME/logs/park.log"
expect_contains "workflow.log: shown escaped" "$(cat "$JORCH_HOME/logs/park.log")" 'log \x1b[2J\x1b[31mred\nFAKE [other] line \u009b c1'
"$JORCH" terminate park >/dev/null 2>&1

# An activity name that is not UTF-8 fails the workflow task, naming the line.
run_jorch run --quiet --activities "$ACTS" "$W/badact.lua"
expect_eq "bad activity name: the task fails" "$RC" 1
expect_contains "bad activity name: message" "$ERR" "activity name 'mark\\xff' is not valid UTF-8"
expect_contains "bad activity name: points at the script line" "$ERR" "badact.lua:3"

# A store written before these checks: bad ids must not break list.
"$JORCH" start --id legacy1 "$W/x.lua" >/dev/null
"$JORCH" start --id legacy2 "$W/x.lua" >/dev/null
"$JORCH" result legacy1 --timeout 20s >/dev/null 2>&1
"$JORCH" result legacy2 --timeout 20s >/dev/null 2>&1
python3 - "$JORCH_HOME/jorch.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE runs SET workflow_id=CAST(? AS TEXT) WHERE workflow_id='legacy1'", (b"legacy\xff\x1b[31m",))
db.execute("UPDATE runs SET workflow_id=? WHERE workflow_id='legacy2'", ("legacy\nFAKE-ROW        injected",))
db.commit()
PY
run_jorch list
printf '%s' "$OUT" > "$T_DIR/list"
check "list: no raw control bytes" no_raw_controls "$T_DIR/list"
check "list: a newline in an id forges no row" sh -c '! grep -q "^FAKE-ROW" "$1"' _ "$T_DIR/list"
expect_contains "list: the ids shown escaped" "$OUT" 'legacy\xff\x1b[31m'
run_jorch list --output json
expect_eq "list --output json: exit 0" "$RC" 0
check "list --output json: every run listed, valid JSON" sh -c 'printf "%s" "$1" | python3 -c "import json,sys; sys.exit(0 if len(json.load(sys.stdin)) == 5 else 1)"' _ "$OUT"
expect_contains "list --output json: warns about the bad id" "$ERR" "not valid UTF-8"
t_end
