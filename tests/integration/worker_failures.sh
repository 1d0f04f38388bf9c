#!/usr/bin/env bash
# tests/integration/worker_failures.sh - failed workflow tasks are visible
# (issue 11 item 3), against a real Temporal dev server: a script error and a
# nondeterminism error (a module the script requires by a computed name,
# so not part of its pinned version, edited between two tasks) reach the server as WorkflowTaskFailed
# with the right cause, the engine's message and the Lua traceback as the
# stack trace; `temporal workflow describe` shows the pending task retrying;
# `jorch query` on such a run says why it cannot answer (not "no worker
# answered it"); a server refusal of completed commands (BadSearchAttributes)
# is logged with the server's own message.
#
#   JORCH=build/jorch JORCH_SOURCE_DIR=. bash tests/integration/worker_failures.sh

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_setup
mkdir -p "$TC_TMP/act"

retrying() { tcli workflow describe -w "$1" -o json 2>/dev/null | jq -e '.pendingWorkflowTask.attempt >= 2' >/dev/null 2>&1; }

WF=$TC_TMP/wf
mkdir -p "$WF"
cat >"$WF/broken.lua" <<'EOF'
-- A bug two calls deep: the traceback names both lines.
local function field_of(t)
  return t.field
end
return function()
  local v = field_of(nil)
  return v
end
EOF
cat >"$WF/drift.lua" <<'EOF'
-- Its steps come from a module required by a computed name, which is not
-- part of the run's pinned version: the module is edited below while a run
-- waits on its timer.
local steps = "drift" .. "_steps"
return function()
  require(steps).run()
  return "done"
end
EOF
cat >"$WF/drift_steps.lua" <<'EOF'
return {run = function() workflow.sleep(2) end}
EOF
cat >"$WF/badsa.lua" <<'EOF'
return function()
  workflow.upsert_search_attributes({JorchNoSuchAttribute = "x"})
  return "ok"
end
EOF
Q=failures-$$
WLOG=$TC_TMP/worker.log
# no run cache: every task replays the whole history, so an edit of a module
# the script loads by a computed name reaches a run at its next task
it_worker_start "$WLOG" "$Q" --workflows "$WF" --activities "$TC_TMP/act" --max-cached-workflows 0

# ------------------------------------------------------------ script error
tcli workflow start --type broken --task-queue "$Q" -w "broken-$$" >/dev/null 2>&1
wait_for 20 history_has "broken-$$" '.eventType == "EVENT_TYPE_WORKFLOW_TASK_FAILED"'
S=$(tcli workflow show -w "broken-$$" -o json)
F=$(jq -c '[.events[] | select(.eventType == "EVENT_TYPE_WORKFLOW_TASK_FAILED")][0].workflowTaskFailedEventAttributes' <<<"$S")
check "script error: WorkflowTaskFailed with cause WORKFLOW_WORKER_UNHANDLED_FAILURE" jq_true "$F" \
    '.cause == "WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE"'
check "script error: the failure's message is the engine's (broken.lua:3: attempt to index a nil value)" \
    jq_true "$F" '.failure.message | test("broken.lua:3: attempt to index a nil value")'
check "script error: the message stops before the traceback" jq_true "$F" \
    '.failure.message | test("stack traceback") | not'
check "script error: the stack trace is the Lua traceback (both lines)" jq_true "$F" \
    '(.failure.stackTrace | startswith("stack traceback:")) and (.failure.stackTrace | test("broken.lua:3")) and
     (.failure.stackTrace | test("broken.lua:6"))'
wait_for 20 retrying "broken-$$"
D=$(tcli workflow describe -w "broken-$$" -o json)
check "script error: temporal workflow describe shows the pending workflow task retrying (attempt >= 2)" \
    jq_true "$D" '.workflowExecutionInfo.status == "WORKFLOW_EXECUTION_STATUS_RUNNING" and .pendingWorkflowTask.attempt >= 2'
t0=$(date +%s)
jr query --temporal "broken-$$" state
check "script error: jorch query says the workflow task keeps failing, with the message, at once" \
    eval '[ "$RC" = 1 ] && grep -q "keeps failing" <<<"$ERR" && grep -q "WORKFLOW_WORKER_UNHANDLED_FAILURE" <<<"$ERR" &&
          grep -q "broken.lua:3: attempt to index a nil value" <<<"$ERR" && ! grep -q "no worker answered" <<<"$ERR" &&
          [ $(($(date +%s) - t0)) -le 5 ]'

# ------------------------------------------------------------ nondeterminism
tcli workflow start --type drift --task-queue "$Q" -w "drift-$$" >/dev/null 2>&1
wait_for 20 history_has "drift-$$" '.eventType == "EVENT_TYPE_TIMER_STARTED"'
cat >"$WF/drift_steps.lua" <<'EOF'
-- The edit: an activity where the run's history has a timer.
return {run = function() workflow.execute_activity("anything", {}, {start_to_close_timeout = "5s"}) end}
EOF
wait_for 20 history_has "drift-$$" '.eventType == "EVENT_TYPE_WORKFLOW_TASK_FAILED"'
S=$(tcli workflow show -w "drift-$$" -o json)
F=$(jq -c '[.events[] | select(.eventType == "EVENT_TYPE_WORKFLOW_TASK_FAILED")][0].workflowTaskFailedEventAttributes' <<<"$S")
check "nondeterminism: WorkflowTaskFailed with cause NON_DETERMINISTIC_ERROR" jq_true "$F" \
    '.cause == "WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR"'
check "nondeterminism: the message names the timer and the activity the script produced instead" jq_true "$F" \
    '.failure.message | test("nondeterminism at history event [0-9]+ TimerStarted") and test("ScheduleActivityTask")'
wait_for 20 retrying "drift-$$"
jr query --temporal "drift-$$" state
check "nondeterminism: jorch query says so (NON_DETERMINISTIC_ERROR, the message)" \
    eval '[ "$RC" = 1 ] && grep -q "NON_DETERMINISTIC_ERROR" <<<"$ERR" && grep -q "nondeterminism at history event" <<<"$ERR"'

# ------------------------------------------------------------ server refusal
tcli workflow start --type badsa --task-queue "$Q" -w "badsa-$$" >/dev/null 2>&1
wait_for 20 grep -qs "refused the commands of badsa-$$" "$WLOG"
L=$(grep "refused the commands of badsa-$$" "$WLOG" | head -1)
check "a refusal of completed commands logs the server's message (BadSearchAttributes ... JorchNoSuchAttribute)" \
    eval 'grep -q "BadSearchAttributes" <<<"$L" && grep -q "JorchNoSuchAttribute" <<<"$L" && ! grep -q "new events arrived" <<<"$L"'

for w in broken drift badsa; do tcli workflow terminate -w "$w-$$" --reason done >/dev/null 2>&1; done
check "the worker is still alive" kill -0 "$WORKER"
it_no_sanitizer_reports "sanitizer reports in the worker log" "$WLOG"
it_summary
