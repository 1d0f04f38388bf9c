#!/usr/bin/env bash
# tests/integration/worker.sh - `jorch worker` against a real Temporal dev
# server: workflows started with `jorch start --temporal` or `temporal
# workflow start` run on the worker with the same scripts the embedded
# backend runs, and the official `temporal` CLI judges what happened.
#
#   JORCH=build/jorch JORCH_SOURCE_DIR=. bash tests/integration/worker.sh
#
# Cases: a three-activity pipeline; signal + query (jorch's and temporal's)
# on three_steps; the Temporal-recorded history replays with `jorch replay`;
# server-side activity retries (retries.lua "exhausted"); the orchestrator
# (workflows/orchestrate.lua PROJ-123, demo agent, offline Jira) on a second
# worker; a script error and a missing script fail the workflow task without
# hurting the worker; an unreachable server is exit 3; SIGTERM is exit 0.
# Fails (never skips) when the `temporal` CLI is missing.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_setup

# ------------------------------------------------------------ worker 1
# The test fixtures' scripts, plus a broken one, in one workflows directory.
WF=$TC_TMP/wf
mkdir -p "$WF"
for f in "$SRC"/tests/histories/*.lua; do ln -s "$f" "$WF/"; done
cat >"$WF/broken.lua" <<'EOF'
-- A bug: indexing nil fails the workflow task, not the workflow.
return function()
  local t = nil
  return t.field
end
EOF
cat >"$WF/hb.lua" <<'LUA'
-- Heartbeats: "beat" needs them to reach the server (1 s heartbeat
-- timeout, 3 s of work); "cancel" is cancelled while the activity beats.
return function(mode)
  local opts = {start_to_close_timeout = "60s", heartbeat_timeout = "1s", retry_policy = {maximum_attempts = 1}}
  if mode == "beat" then return workflow.execute_activity("beating", {3}, opts) end
  local ok, e = pcall(workflow.execute_activity, "beating", {60}, opts)
  workflow.sleep(3)
  return {ok = ok, cancelled = workflow.is_cancelled(e)}
end
LUA
Q1=worker-it-$$-1
W1LOG=$TC_TMP/worker1.log
# MARK_DELAY: each mark() activity takes 1.5 s, so three_steps runs long
# enough to be queried while it runs (its later tasks come from the run
# cache, in parallel with the query's replay: the run is quick otherwise).
MARK_DELAY=1.5 it_worker_start "$W1LOG" "$Q1" --workflows "$WF" --activities "$SRC/tests/cli/activities"
W1=$WORKER
check "worker prints 'polling task queue $Q1 on $ADDR (namespace default)'" \
    grep -q "^worker: polling task queue $Q1 on $ADDR (namespace default)" "$W1LOG"

# ------------------------------------------------------------ (1) pipeline
jr start --temporal --task-queue "$Q1" "$SRC/tests/histories/pipeline.lua" PROJ-1
PID1=$OUT
jr result --temporal "$PID1" --timeout 30s
check "(1) pipeline on the worker: result https://example.invalid/bin-src-PROJ-1" \
    test "$RC" = 0 -a "$OUT" = '"https://example.invalid/bin-src-PROJ-1"'
S=$(tcli workflow show -w "$PID1" -o json)
check "(1) temporal show: 3 activities completed, workflow completed" jq_true "$S" \
    '([.events[] | select(.eventType == "EVENT_TYPE_ACTIVITY_TASK_COMPLETED")] | length) == 3 and
     .events[-1].eventType == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"'

# ------------------------------------------------------------ (1b) cancel in backoff
# Issue 8: an activity cancelled while it waits for its retry; the server
# cancels it at once and the workflow goes on (the embedded backend writes
# the same order: tests/cli/cancel_backoff.sh).
jr start --temporal --task-queue "$Q1" "$SRC/tests/histories/cancel_backoff.lua"
CB=$OUT
jr result --temporal "$CB" --timeout 30s
check "(1b) cancel in retry backoff on the worker: {cancelled=true, r=\"after\"}" \
    test "$RC" = 0 -a "$OUT" = '{"cancelled":true,"r":"after"}'
tcli workflow show -w "$CB" -o json >"$TC_TMP/cb.json" 2>/dev/null
jr replay "$SRC/tests/histories/cancel_backoff.lua" "$TC_TMP/cb.json"
check "(1b) the server's history of it replays with jorch replay" test "$RC" = 0

# ------------------------------------------------------------ (2) signal and query
TS=three-$$
jr start --temporal --task-queue "$Q1" --id "$TS" "$SRC/tests/histories/three_steps.lua" ada
check "(2) start three_steps" test "$RC" = 0
# Sent at once: kept until the handler is registered, so step B sees it.
jr signal --temporal "$TS" approve '"zed"'
check "(2) jorch signal approve zed" test "$RC" = 0
qok() { jr query --temporal "$TS" state; [ "$RC" = 0 ] && jq_true "$OUT" '.approved == "zed"'; }
wait_for 15 qok
check "(2) jorch query state answers {approved: zed}" jq_true "$OUT" '.approved == "zed"'
D=$(tcli workflow describe -w "$TS" -o json)
check "(2) ... while the workflow runs" jq_true "$D" \
    '.workflowExecutionInfo.status == "WORKFLOW_EXECUTION_STATUS_RUNNING"'
TQ=$(tcli workflow query -w "$TS" --type state -o json 2>&1)
check "(2) temporal workflow query answers too" grep -q '"approved": *"zed"' <<<"$TQ"
jr result --temporal "$TS" --timeout 30s
check "(2) result [\"A:ada\",\"B:zed\",\"C:ada\"]" jq_true "$OUT" '. == ["A:ada","B:zed","C:ada"]'
TQ=$(tcli workflow query -w "$TS" --type __stack_trace -o json 2>&1)
check "(2) the built-in __stack_trace query is answered on the closed run" test -n "$TQ" -a "$(grep -c -i error <<<"$TQ")" = 0

# ------------------------------------------------------------ (3) replay
tcli workflow show -w "$TS" -o json >"$TC_TMP/three.json"
jr replay "$SRC/tests/histories/three_steps.lua" "$TC_TMP/three.json"
check "(3) the Temporal-recorded history replays against three_steps.lua" test "$RC" = 0
jr replay "$SRC/tests/histories/pipeline.lua" "$TC_TMP/three.json"
check "(3) ... and not against another script (nondeterminism found)" test "$RC" != 0

# ------------------------------------------------------------ (4) retries
jr start --temporal --task-queue "$Q1" "$SRC/tests/histories/retries.lua" exhausted
RID=$OUT
jr result --temporal "$RID" --timeout 40s
check "(4) retries exhausted: retry_state MAXIMUM_ATTEMPTS_REACHED after 4 attempts" jq_true "$OUT" \
    '.ok == false and .retry_state == "MAXIMUM_ATTEMPTS_REACHED" and (.cause | test("attempt 4 fails"))'
S=$(tcli workflow show -w "$RID" -o json)
check "(4) temporal show: one ActivityTaskFailed with attempt 4 (the server retried)" jq_true "$S" \
    '[.events[] | select(.eventType == "EVENT_TYPE_ACTIVITY_TASK_STARTED") | .activityTaskStartedEventAttributes.attempt] == [4]'

# ------------------------------------------------------------ heartbeats
jr start --temporal --task-queue "$Q1" --id "hb-$$" "$WF/hb.lua" beat
jr result --temporal "hb-$$" --timeout 30s
check "heartbeats reach the server: a 3 s activity with a 1 s heartbeat timeout completes" \
    test "$OUT" = '"beat for 3s"'
jr start --temporal --task-queue "$Q1" --id "hbc-$$" "$WF/hb.lua" cancel
wait_for 15 history_has "hbc-$$" '.eventType == "EVENT_TYPE_ACTIVITY_TASK_STARTED"'
jr cancel --temporal "hbc-$$"
wait_for 15 history_has "hbc-$$" '.eventType == "EVENT_TYPE_ACTIVITY_TASK_CANCELED"'
S=$(tcli workflow show -w "hbc-$$" -o json)
check "a cancel reaches the beating activity: ActivityTaskCanceled in the history" jq_true "$S" \
    'any(.events[]; .eventType == "EVENT_TYPE_ACTIVITY_TASK_CANCELED")'
jr result --temporal "hbc-$$" --timeout 30s

# ------------------------------------------------------------ (6) script errors
tcli workflow start --type broken --task-queue "$Q1" -w "broken-$$" >/dev/null 2>&1
wait_for 20 history_has "broken-$$" '.eventType == "EVENT_TYPE_WORKFLOW_TASK_FAILED"'
S=$(tcli workflow show -w "broken-$$" -o json)
check "(6) a script error: WorkflowTaskFailed (unhandled failure) naming the line" jq_true "$S" \
    'any(.events[]; .eventType == "EVENT_TYPE_WORKFLOW_TASK_FAILED" and
         .workflowTaskFailedEventAttributes.cause == "WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE" and
         (.workflowTaskFailedEventAttributes.failure.message | test("broken.lua:4")))'
tcli workflow start --type nosuch --task-queue "$Q1" -w "nosuch-$$" >/dev/null 2>&1
wait_for 20 history_has "nosuch-$$" '.eventType == "EVENT_TYPE_WORKFLOW_TASK_FAILED"'
S=$(tcli workflow show -w "nosuch-$$" -o json)
check "(6) a missing script: WorkflowTaskFailed naming the path" jq_true "$S" \
    "any(.events[]; .eventType == \"EVENT_TYPE_WORKFLOW_TASK_FAILED\" and
         (.workflowTaskFailedEventAttributes.failure.message | contains(\"$WF/nosuch.lua\")))"
D=$(tcli workflow describe -w "broken-$$" -o json)
check "(6) the broken run stays open" jq_true "$D" '.workflowExecutionInfo.status == "WORKFLOW_EXECUTION_STATUS_RUNNING"'
tcli workflow terminate -w "broken-$$" --reason done >/dev/null 2>&1
tcli workflow terminate -w "nosuch-$$" --reason done >/dev/null 2>&1
jr start --temporal --task-queue "$Q1" "$SRC/tests/histories/pipeline.lua" PROJ-2
jr result --temporal "$OUT" --timeout 30s
check "(6) the worker is alive and still serves workflows afterwards" \
    eval 'kill -0 $W1 && [ "$OUT" = "\"https://example.invalid/bin-src-PROJ-2\"" ]'

# ------------------------------------------------------------ (5) orchestrator
# A second worker on the project's own directories, from the repository root
# (examples/ holds the demo agent, repository and issue).
Q2=worker-it-$$-2
W2LOG=$TC_TMP/worker2.log
pushd "$SRC" >/dev/null || exit 1
it_worker_start "$W2LOG" "$Q2" --workflows "$SRC/workflows" --activities "$SRC/activities"
W2=$WORKER
popd >/dev/null || exit 1
OID=orch-$$
(cd "$SRC" && timeout 60 "$JORCH" start --temporal --task-queue "$Q2" --id "$OID" workflows/orchestrate.lua PROJ-123) \
    >"$TC_TMP/out" 2>"$TC_TMP/err"
RC=$?
check "(5) jorch start --temporal workflows/orchestrate.lua PROJ-123" test "$RC" = 0
jr result --temporal "$OID" --timeout 90s
check "(5) the orchestrator completes on the worker: status completed" jq_true "$OUT" '.status == "completed"'
if ! jq_true "$OUT" '.status == "completed"'; then tail -30 "$W2LOG" >&2; fi
jr query --temporal "$OID" getState
check "(5) getState on the closed run: currentPhase DONE" jq_true "$OUT" '.currentPhase == "DONE"'
jr query --temporal "$OID" __jorch_status
check "(5) the built-in __jorch_status query: the last phase as current details, the signals handled" \
    jq_true "$OUT" '.details == "DOCUMENT" and (.signals | index("proceed")) != null'

check "(5) checkpoints/$OID/latest.json says completed" \
    jq -e '.phase == "DONE" and .state.status == "completed"' "$JORCH_HOME/checkpoints/$OID/latest.json"

# (5b) Without --id the run is named after the issue: a second start is
# refused by Temporal (WorkflowExecutionAlreadyStarted) with a clear message;
# the gate's Jira comment gives the command for Temporal; the cancel reason
# reaches the Jira comment.
JLOG=$JORCH_HOME/jira-offline/PROJ-123.jsonl
(cd "$SRC" && timeout 60 "$JORCH" start --temporal --task-queue "$Q2" workflows/orchestrate.lua PROJ-123 \
    '{"autoProceed": false}') >"$TC_TMP/out" 2>"$TC_TMP/err"
RC=$?
OUT=$(cat "$TC_TMP/out")
ERR=$(cat "$TC_TMP/err")
check "(5b) start --temporal without --id: the workflow id is the issue key" eval '[ "$RC" = 0 ] && [ "$OUT" = PROJ-123 ]'
(cd "$SRC" && timeout 60 "$JORCH" start --temporal --task-queue "$Q2" workflows/orchestrate.lua PROJ-123) \
    >"$TC_TMP/out" 2>"$TC_TMP/err"
RC=$?
OUT=$(cat "$TC_TMP/out")
ERR=$(cat "$TC_TMP/err")
check "(5b) a second start of PROJ-123 is refused (exit 2) naming the running run" \
    eval '[ "$RC" = 2 ] && grep -q "workflow .PROJ-123. is already running (run id [0-9a-f-]\{36\})" <<<"$ERR"'
gate_comment() { grep -qs 'jorch signal --temporal PROJ-123 proceed' "$JLOG"; }
wait_for 60 gate_comment
check "(5b) the gate's Jira comment says 'jorch signal --temporal PROJ-123 proceed'" gate_comment
jr cancel --temporal PROJ-123 --reason "not this quarter, see PROJ-9"
check "(5b) cancel --temporal --reason" test "$RC" = 0
jr result --temporal PROJ-123 --timeout 60s
check "(5b) the run ends cancelled" eval '[ "$RC" = 1 ] && grep -q cancelled <<<"$ERR"'
check "(5b) the cancellation comment quotes the reason" \
    grep -q '"body":"jorch orchestration cancelled in phase EXPLORE: CancelledError: workflow cancelled: not this quarter, see PROJ-9' "$JLOG"

# ------------------------------------------------------------ unreachable server
PORT=$(tc_free_port)
TEMPORAL_ADDRESS=127.0.0.1:$PORT timeout 30 "$JORCH" worker --workflows "$WF" \
    --activities "$SRC/tests/cli/activities" >"$TC_TMP/out" 2>"$TC_TMP/err"
RC=$?
OUT=$(cat "$TC_TMP/out")
ERR=$(cat "$TC_TMP/err")
check "an unreachable server: exit 3 naming 127.0.0.1:$PORT" eval '[ "$RC" = 3 ] && grep -q "127.0.0.1:$PORT" <<<"$ERR"'
jr worker --workflows "$TC_TMP/nowhere"
check "a missing workflows directory: exit 2 naming it" eval '[ "$RC" = 2 ] && grep -q "nowhere" <<<"$ERR"'

# ------------------------------------------------------------ (7) SIGTERM
for p in "$W1" "$W2"; do
    kill -TERM "$p"
    t0=$(date +%s)
    wait "$p"
    RC=$?
    ERR=$(tail -3 "$TC_TMP/worker$([ "$p" = "$W1" ] && echo 1 || echo 2).log")
    OUT=""
    check "(7) SIGTERM stops worker $p with exit 0 within $(($(date +%s) - t0)) s" eval '[ "$RC" = 0 ] && [ $(($(date +%s) - t0)) -le 12 ]'
done
IT_WORKERS=()
check "(7) the worker says it stopped" grep -q "^worker: stopped" "$W1LOG"
it_no_sanitizer_reports "sanitizer reports in the worker logs" "$W1LOG" "$W2LOG"

it_summary
