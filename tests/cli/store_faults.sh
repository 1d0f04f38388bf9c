#!/usr/bin/env bash
# A damaged store gets a clear error and a non-zero exit within seconds, and
# an executor whose store files are deleted or truncated under it stops
# writing and says so: a read-only store; the write-ahead log deleted under a
# live executor; the database truncated to 0 bytes under a live executor, and
# with none. A new store is still created safely by processes racing to.
. "$(dirname "$0")/lib.sh"
t_begin "store faults"
# the executor checks its files at every commit and every lease renewal (a third of this)
export JORCH_LEASE_SECONDS=3

cat >"$T_DIR/wait.lua" <<'LUA'
return function()
  local got
  workflow.on_signal("go", function(v) got = v end)
  workflow.wait_condition(function() return got ~= nil end, "1 hour")
  return got
end
LUA
cat >"$T_DIR/loop.lua" <<'LUA'
local acts = workflow.activities{start_to_close_timeout = "60s"}
return function(n)
  local done = 0
  for i = 1, n do acts.mark("S" .. i, i); done = done + 1 end
  return done
end
LUA

# timed NAME LIMIT CMD...: runs CMD (at most 30 s), sets OUT, ERR, RC, and
# checks that it ended within LIMIT seconds
timed() {
  local name=$1 limit=$2
  shift 2
  local t0
  t0=$(date +%s%N)
  OUT=$(timeout 30 "$@" 2>"$T_DIR/stderr")
  RC=$?
  ERR=$(cat "$T_DIR/stderr")
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  check "$name: ends within $limit s (${ms} ms)" test "$ms" -lt $((limit * 1000))
}
# wait_exit PID LIMIT: waits for a background process, at most LIMIT seconds; sets RC
wait_exit() {
  local i
  for ((i = 0; i < $2 * 20; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$1" 2>/dev/null; then kill -9 "$1"; wait "$1" 2>/dev/null; RC=timeout; return; fi
  wait "$1"
  RC=$?
}
# until the run has committed N workflow tasks
wait_tasks() {
  for _ in $(seq 200); do
    [ "$("$JORCH" history "$1" --output json 2>/dev/null | grep -c EVENT_TYPE_WORKFLOW_TASK_COMPLETED)" -ge "$2" ] && return 0
    sleep 0.05
  done
  return 1
}
size_of() { stat -c %s "$1"; }

# 1. read-only store: resume (and signal) fail at once; reading still works
export JORCH_HOME="$T_DIR/ro"
"$JORCH" run --quiet --id ro1 "$T_DIR/wait.lua" >/dev/null 2>&1 &
pid=$!
wait_tasks ro1 1 || fail "read-only: the run started"
kill -9 $pid
wait $pid 2>/dev/null
chmod -R a+rX,a-w "$JORCH_HOME"
reader=("$JORCH")
if [ "$(id -u)" = 0 ]; then
  # root writes anyway: read-only means running as a user who may not write
  cp "$JORCH" "$T_DIR/jorch-reader"
  chmod 755 "$T_DIR" "$T_DIR/jorch-reader"
  reader=(setpriv --reuid=65534 --regid=65534 --clear-groups "$T_DIR/jorch-reader")
fi
timed "read-only: resume" 10 "${reader[@]}" resume ro1
expect_eq "read-only: resume exits 3" "$RC" "3"
expect_contains "read-only: resume says the store is read-only" "$ERR" "is read-only"
timed "read-only: signal" 10 "${reader[@]}" signal ro1 go 1
expect_eq "read-only: signal exits 3" "$RC" "3"
expect_contains "read-only: signal says why" "$ERR" "readonly"
timed "read-only: list" 10 "${reader[@]}" list
expect_eq "read-only: list still works" "$RC" "0"
expect_contains "read-only: list shows the run" "$OUT" "ro1"
chmod -R u+w "$JORCH_HOME"

# 2. the write-ahead log deleted under a live executor: it stops writing and
#    says so; what it committed before is kept; resume finishes the run
export JORCH_HOME="$T_DIR/wal" MARK_FILE="$T_DIR/marks-wal" MARK_DELAY=0.2
: >"$MARK_FILE"
"$JORCH" run --quiet --id wal1 --activities "$ACTS" "$T_DIR/loop.lua" 30 >"$T_DIR/out-wal" 2>"$T_DIR/err-wal" &
pid=$!
for _ in $(seq 200); do [ "$(wc -l <"$MARK_FILE")" -ge 4 ] && break; sleep 0.05; done
started=$(wc -l <"$MARK_FILE")
rm "$JORCH_HOME/jorch.db-wal"
wait_exit $pid 10
expect_eq "deleted log: the executor stops with exit 3" "$RC" "3"
expect_contains "deleted log: and says why" "$(cat "$T_DIR/err-wal")" "jorch.db-wal was deleted or replaced"
unset MARK_DELAY
kept=$("$JORCH" history wal1 --output json | grep -c EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
check "deleted log: completions committed before are kept ($kept of at least $((started - 1)))" \
  test "$kept" -ge $((started - 1))
run_jorch resume --quiet --activities "$ACTS" wal1
expect_eq "deleted log: resume finishes the run" "$OUT" "30"
expect_eq "deleted log: every activity recorded once" \
  "$("$JORCH" history wal1 --output json | grep -c EVENT_TYPE_ACTIVITY_TASK_COMPLETED)" "30"

# 3. the database truncated to 0 bytes under a live executor: other verbs
#    fail at once, the executor stops and leaves the damage visible
export JORCH_HOME="$T_DIR/trunc"
"$JORCH" run --quiet --id t1 "$T_DIR/wait.lua" >/dev/null 2>"$T_DIR/err-trunc" &
pid=$!
wait_tasks t1 1 || fail "truncated: the run started"
: >"$JORCH_HOME/jorch.db"
for verb in "list" "describe t1" "signal t1 go 1"; do
  # shellcheck disable=SC2086
  timed "truncated under a live executor: $verb" 5 "$JORCH" $verb
  expect_eq "truncated under a live executor: $verb exits 3" "$RC" "3"
  expect_contains "truncated under a live executor: $verb says so" "$ERR" "is empty or truncated"
done
wait_exit $pid 10
expect_eq "truncated: the executor stops with exit 3" "$RC" "3"
expect_contains "truncated: and says why" "$(cat "$T_DIR/err-trunc")" "jorch.db was truncated"
expect_eq "truncated: the executor wrote nothing into the empty file" "$(size_of "$JORCH_HOME/jorch.db")" "0"

# 4. an empty database file with no executor is not taken for a new store
export JORCH_HOME="$T_DIR/empty"
mkdir -p "$JORCH_HOME"
: >"$JORCH_HOME/jorch.db"
timed "empty store: list" 5 "$JORCH" list
expect_eq "empty store: list exits 3" "$RC" "3"
expect_contains "empty store: list says so" "$ERR" "is empty or truncated"
run_jorch start --id e1 "$T_DIR/wait.lua"
expect_eq "empty store: start exits 3" "$RC" "3"
expect_eq "empty store: the file is left as it was" "$(size_of "$JORCH_HOME/jorch.db")" "0"

# 5. processes racing to create a new store all get the same, whole store
export JORCH_HOME="$T_DIR/race"
pids=()
for i in 1 2 3 4 5 6; do
  "$JORCH" start --id "race$i" "$T_DIR/wait.lua" >/dev/null 2>"$T_DIR/err-race$i" &
  pids+=($!)
done
bad=0
for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
expect_eq "racing creators: all succeed" "$bad" "0"
expect_eq "racing creators: one store holds all their runs" "$("$JORCH" list | grep -c '^race')" "6"
for i in 1 2 3 4 5 6; do "$JORCH" terminate "race$i" >/dev/null 2>&1; done
t_end
