#!/usr/bin/env bash
# tests/integration/worker_hostile.sh - hostile workflow code on `jorch
# worker` against a real Temporal dev server (issue 14, items 2 and 3): an
# error object whose __tostring fails, raised from a query handler or the
# workflow body, must not kill the worker (it aborted with "unprotected
# error in a workflow sandbox"); a query handler stuck in a C library loop
# (table.move over 2^50 elements, a backtracking pattern) must fail at the
# wall-clock limit instead of wedging the only workflow thread; and other
# workflows must keep completing on the same worker.
#
#   JORCH=build/jorch JORCH_SOURCE_DIR=. bash tests/integration/worker_hostile.sh

PASSED=0
FAILED=0
summary() { echo "$PASSED passed, $FAILED failed"; }

if [ -z "${JORCH_SOURCE_DIR:-}" ] || [ ! -f "$JORCH_SOURCE_DIR/tests/integration/lib.sh" ]; then
    echo "FAIL: set JORCH_SOURCE_DIR to the jorch source tree (got '${JORCH_SOURCE_DIR:-}')" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
SRC=$(cd "$JORCH_SOURCE_DIR" && pwd)

. "$SRC/tests/integration/lib.sh"
it_require
temporal_dev_start
set +e +o pipefail
ADDR=$TEMPORAL_ADDRESS

unset TEMPORAL_NAMESPACE TEMPORAL_TASK_QUEUE FEATURE_TEMPORAL_ENABLED MARK_FILE
unset JORCH_MEMORY_LIMIT_MB JORCH_INSTRUCTION_BUDGET JORCH_WALL_CLOCK_LIMIT
export JORCH_CONFIG=$TC_TMP/jorch.yaml
# The limits come from jorch.yaml here: 2 s of wall clock, and a budget too
# large to matter, so the wall clock is what must hold.
printf 'limits:\n  wall_clock: 2\n  instruction_budget: 1e15\n' >"$JORCH_CONFIG"
export JORCH_HOME=$TC_TMP/home
mkdir -p "$JORCH_HOME"

WORKER=""
stop_worker() {
    [ -n "$WORKER" ] || return 0
    kill -TERM "$WORKER" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$WORKER" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$WORKER" 2>/dev/null
    WORKER=""
}
trap 'stop_worker; tc_cleanup' EXIT

ok() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
bad() {
    FAILED=$((FAILED + 1))
    echo "FAIL - $1" >&2
    shift
    for d in "$@"; do printf '       %s\n' "$d" >&2; done
}
check() { # name command...
    local name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name" "rc=$RC" "stdout: $(head -c 600 <<<"$OUT")" "stderr: $(head -c 800 <<<"$ERR")"; fi
}
jr() {
    timeout 60 "$JORCH" "$@" >"$TC_TMP/out" 2>"$TC_TMP/err"
    RC=$?
    OUT=$(cat "$TC_TMP/out")
    ERR=$(cat "$TC_TMP/err")
}
tcli() {
    env -u TEMPORAL_API_KEY -u TEMPORAL_NAMESPACE -u TEMPORAL_TLS temporal "$@" --address "$ADDR" \
        --namespace default --disable-config-file --color never --command-timeout 30s
}
wait_for() {
    local end=$(($(date +%s) + $1))
    shift
    while ! "$@"; do
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.2
    done
}
history_has() { # history_has WID JQ-CONDITION-ON-AN-EVENT
    tcli workflow show -w "$1" -o json 2>/dev/null | jq -e "any(.events[]; $2)" >/dev/null 2>&1
}
worker_alive() { kill -0 "$WORKER" 2>/dev/null; }

WF=$TC_TMP/wf
mkdir -p "$WF"
ln -s "$SRC/tests/histories/pipeline.lua" "$WF/"
cat >"$WF/hostile.lua" <<'LUA'
local function evil()
  return setmetatable({}, {__tostring = function()
    error(setmetatable({}, {__tostring = function() error("inner") end}))
  end})
end
return function()
  workflow.on_query("boom", function() error(evil()) end)
  workflow.on_query("move", function() table.move({}, 1, 1 << 50, 1, {}) end)
  workflow.on_query("pattern", function() return ("a"):rep(40000):find(".-.-.-.-.-b") end)
  workflow.on_query("ok", function() return "fine" end)
  workflow.wait_condition(function() return false end)
end
LUA
cat >"$WF/evilbody.lua" <<'LUA'
local function evil()
  return setmetatable({}, {__tostring = function()
    error(setmetatable({}, {__tostring = function() error({}) end}))
  end})
end
return function()
  local e = workflow.ApplicationError("x")
  getmetatable(e).__index = function() error(evil()) end
  error(e)
end
LUA
Q=hostile-$$
WLOG=$TC_TMP/worker.log
"$JORCH" worker --workflows "$WF" --activities "$SRC/tests/cli/activities" --task-queue "$Q" >"$WLOG" 2>&1 &
WORKER=$!
wait_for 15 grep -qs "^worker: polling task queue $Q" "$WLOG"
check "the worker polls $Q" grep -q "^worker: polling task queue $Q" "$WLOG"

jr start --temporal --task-queue "$Q" --id "hq-$$" "$WF/hostile.lua"
check "start the hostile workflow" test "$RC" = 0
qok() { jr query --temporal "hq-$$" ok; [ "$RC" = 0 ]; }
wait_for 20 qok
check "query ok answers \"fine\"" test "$OUT" = '"fine"'

jr query --temporal "hq-$$" boom
check "query boom (failing __tostring) fails cleanly" test "$RC" != 0
check "... with a message about the error object" grep -q "__tostring failed" <<<"$ERR"
sleep 0.5
check "... and the worker is still alive" worker_alive

for q in move pattern; do
    start=$(date +%s)
    jr query --temporal "hq-$$" "$q"
    took=$(($(date +%s) - start))
    check "query $q fails" test "$RC" != 0
    check "query $q: at the wall-clock limit" grep -q "wall-clock limit of 2 s exceeded" <<<"$ERR"
    check "query $q: within seconds ($took s)" test "$took" -le 15
done
check "the worker is still alive after the hanging queries" worker_alive
jr query --temporal "hq-$$" ok
check "the workflow still answers queries" test "$RC:$OUT" = '0:"fine"'

tcli workflow start --type evilbody --task-queue "$Q" -w "eb-$$" >/dev/null 2>&1
wait_for 20 history_has "eb-$$" '.eventType == "EVENT_TYPE_WORKFLOW_TASK_FAILED"'
S=$(tcli workflow show -w "eb-$$" -o json)
check "a body raising a failing __tostring: WorkflowTaskFailed with a message" jq -e \
    'any(.events[]; .eventType == "EVENT_TYPE_WORKFLOW_TASK_FAILED" and
         (.workflowTaskFailedEventAttributes.failure.message | test("__tostring failed")))' <<<"$S" >/dev/null
check "... and the worker is still alive" worker_alive

jr start --temporal --task-queue "$Q" "$WF/pipeline.lua" PROJ-9
PID=$OUT
jr result --temporal "$PID" --timeout 60s
check "another workflow completes on the same worker" test "$RC:$OUT" = '0:"https://example.invalid/bin-src-PROJ-9"'

stop_worker
summary
[ "$FAILED" -eq 0 ]
