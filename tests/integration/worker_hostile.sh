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

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_setup
unset JORCH_MEMORY_LIMIT_MB JORCH_INSTRUCTION_BUDGET JORCH_WALL_CLOCK_LIMIT
# The limits come from jorch.yaml here: 2 s of wall clock, and a budget too
# large to matter, so the wall clock is what must hold.
printf 'limits:\n  wall_clock: 2\n  instruction_budget: 1e15\n' >"$JORCH_CONFIG"

worker_alive() { kill -0 "$WORKER" 2>/dev/null; }

WF=$TC_TMP/wf
mkdir -p "$WF"
ln -s "$SRC/tests/histories/pipeline.lua" "$WF/"
# The scripts are shared with tests/cli/hostile_scripts.sh.
ln -s "$SRC/tests/sandbox/hostile/evil_query.lua" "$SRC/tests/sandbox/hostile/evil_body.lua" "$WF/"
Q=hostile-$$
WLOG=$TC_TMP/worker.log
it_worker_start "$WLOG" "$Q" --workflows "$WF" --activities "$SRC/tests/cli/activities"
check "the worker polls $Q" grep -q "^worker: polling task queue $Q" "$WLOG"

jr start --temporal --task-queue "$Q" --id "hq-$$" "$WF/evil_query.lua"
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

tcli workflow start --type evil_body --task-queue "$Q" -w "eb-$$" >/dev/null 2>&1
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

it_workers_stop
it_summary
