#!/usr/bin/env bash
# Going on after a stop: an unknown activity is retried (a deployment
# mistake must not end a run), the store remembers each run's activities
# directory for `resume` from anywhere, Ctrl-C on `run` says how to continue,
# and `result` on a run that no process executes says so.
. "$(dirname "$0")/lib.sh"
t_begin "cli resume"
W="$T_DIR/w"
mkdir -p "$W" "$T_DIR/elsewhere" "$T_DIR/noacts"
cat >"$W/steps.lua" <<'LUA'
local acts = workflow.activities{start_to_close_timeout = "30 seconds",
  retry_policy = {initial_interval = "100 milliseconds", maximum_attempts = 0}}
return function()
  local first = acts.mark("first", 1)
  local go = false
  workflow.on_signal("go", function() go = true end)
  workflow.on_query("first", function() return first end)
  workflow.wait_condition(function() return go end)
  return {first, acts.mark("second", 2)}
end
LUA
query_ok() { "$JORCH" query "$1" first >/dev/null 2>&1; }
wait_query() { for _ in $(seq 200); do query_ok "$1" && return 0; sleep 0.05; done; return 1; }

# --- an unknown activity is retried, not the end of the run
cat >"$W/capped.lua" <<'LUA'
local acts = workflow.activities{start_to_close_timeout = "10 seconds",
  retry_policy = {initial_interval = "1 second", maximum_attempts = 3}}
return function() return acts.mark("x", 1) end
LUA
run_jorch run --time-skip --id cap --activities "$T_DIR/noacts" "$W/capped.lua"
expect_eq "unknown activity: the run fails only after its attempts" "$RC" "1"
expect_contains "unknown activity: retried" "$ERR" "failed on attempt 1, retrying in"
expect_contains "unknown activity: says how to fix it" "$ERR" "'jorch resume --activities DIR cap'"
expect_contains "unknown activity: final attempt 3" "$ERR" "failed on attempt 3, not retried"

# a run started with the wrong directory survives until resumed with the right one
"$JORCH" run --id r1 --activities "$T_DIR/noacts" "$W/steps.lua" >/dev/null 2>"$T_DIR/r1.err" &
pid=$!
for _ in $(seq 100); do grep -qs "retrying in" "$T_DIR/r1.err" && break; sleep 0.05; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
expect_contains "wrong --activities: the attempt is retried" "$(cat "$T_DIR/r1.err")" "unknown activity 'mark'"
expect_eq "wrong --activities: the run is still open" "$("$JORCH" describe r1 | grep '^Status:')" "Status:       Running"
"$JORCH" resume --quiet --activities "$ACTS" r1 >/dev/null 2>&1 &
pid=$!
check "resume --activities: the activity ran" wait_query r1
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
# no --activities, another directory: the store remembers the last one given
"$JORCH" signal r1 go
run_jorch resume --quiet r1
expect_eq "resume from elsewhere uses the remembered directory" "$OUT" '["first:1","second:2"]'

# --- the directory given at start is remembered (resume from another cwd);
# a process per run (JORCH_SERVICE=off), so the one below is the only one
# that can take the run up after the background executor is killed (a
# service would race it for the run)
(cd "$T_DIR/elsewhere" && JORCH_SERVICE=off "$JORCH" start --id r2 --activities "$ACTS" "$W/steps.lua" >/dev/null)
check "start: first activity done" wait_query r2
pkill -9 -f -- "resume --home $JORCH_HOME --activities $ACTS r2" 2>/dev/null
sleep 0.2
"$JORCH" signal r2 go
OUT=$(cd "$T_DIR/elsewhere" && "$JORCH" resume --quiet r2 2>"$T_DIR/r2.err")
expect_eq "resume without --activities from another directory completes" "$OUT" '["first:1","second:2"]'
run_jorch resume --activities "$T_DIR/missing" r2
expect_eq "resume --activities that does not exist: exit 2" "$RC" "2"
expect_contains "resume --activities that does not exist: says so" "$ERR" "no such directory"

# --- Ctrl-C on run says how to continue; result says when nobody executes
set -m # a background job of an interactive-like shell receives SIGINT
"$JORCH" run --id c1 --activities "$ACTS" "$W/steps.lua" >/dev/null 2>"$T_DIR/c1.err" &
pid=$!
set +m
wait_query c1
kill -INT $pid
wait $pid
expect_eq "Ctrl-C: ends by SIGINT" "$?" "130"
expect_contains "Ctrl-C: says how to continue" "$(cat "$T_DIR/c1.err")" "'jorch resume c1' continues it"
expect_contains "Ctrl-C: says signals still work" "$(cat "$T_DIR/c1.err")" "'jorch signal', 'query' and 'cancel' still work"
start=$(date +%s)
run_jorch result --timeout 2s c1
expect_eq "result on a run nobody executes: still waits, exit 1 at --timeout" "$RC" "1"
check "result waited for its timeout" test $(($(date +%s) - start)) -ge 2
expect_contains "result: says no process executes it" "$ERR" "no process executes workflow 'c1'"
expect_contains "result: says how to continue" "$ERR" "'jorch resume c1'"
expect_contains "result: says what the workflow waits for" "$ERR" "which waits for"
"$JORCH" signal c1 go
"$JORCH" resume --quiet c1 >/dev/null 2>&1 &
pid=$!
run_jorch result --timeout 20s c1
wait $pid
expect_eq "result while a process executes: the result, no notice" "$RC:$ERR" "0:"
expect_eq "result output" "$OUT" '["first:1","second:2"]'

# --- a store of the previous schema is upgraded in place
"$JORCH" list >/dev/null
python3 - "$JORCH_HOME/jorch.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
# undo the migrations from bundle versions (4: version_sha, the versions
# table) on, as a jorch of schema 3 left the store
db.execute("ALTER TABLE runs DROP COLUMN version_sha")
db.execute("DROP TABLE versions")
db.execute("ALTER TABLE runs DROP COLUMN task_attempts")
db.execute("ALTER TABLE runs DROP COLUMN task_retry_at")
db.execute("DROP TABLE webhook_deliveries")
db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
db.commit()
PY
run_jorch result c1
expect_eq "older store: runs still readable" "$OUT" '["first:1","second:2"]'
cols=$(python3 -c "import sqlite3,sys; print([r[1] for r in sqlite3.connect(sys.argv[1]).execute('PRAGMA table_info(runs)')])" "$JORCH_HOME/jorch.db")
expect_contains "older store: upgraded with the version column" "$cols" "version_sha"
expect_contains "older store: upgraded with the failed task columns" "$cols" "task_retry_at"
tabs=$(python3 -c "import sqlite3,sys; print([r[0] for r in sqlite3.connect(sys.argv[1]).execute('SELECT name FROM sqlite_master')])" "$JORCH_HOME/jorch.db")
expect_contains "older store: upgraded with the webhook deliveries" "$tabs" "webhook_deliveries"
run_jorch scripts
expect_contains "older store: its runs' versions are listed, named by their scripts" "$OUT" "steps.lua"
t_end
