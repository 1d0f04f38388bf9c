#!/usr/bin/env bash
# tests/integration/run_temporal.sh - `jorch run --temporal` (issue 11 item
# 4) against a real Temporal dev server: run starts the workflow on a task
# queue of its own and runs an in-process worker until the result is in,
# with the embedded backend's progress lines and exit codes: the offline
# orchestrator demo (workflows/orchestrate.lua PROJ-123) completes (exit 0),
# a workflow that fails exits 1, a script error exits 1 leaving the run open
# with its WorkflowTaskFailed recorded, --quiet prints no progress, and an
# unreachable server is exit 3.
#
#   JORCH=build/jorch JORCH_SOURCE_DIR=. bash tests/integration/run_temporal.sh

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_setup

# lib.sh's check, but with the end of stderr (where run's failure is).
check() { # name command...
    local name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name" "rc=$RC" "stdout: $(head -c 600 <<<"$OUT")" "stderr: $(tail -c 1200 <<<"$ERR")"; fi
}
# jr DIR ARGS...: jorch in DIR (bounded), setting OUT, ERR, RC.
jr() {
    local dir=$1
    shift
    (cd "$dir" && exec timeout 120 "$JORCH" "$@") >"$TC_TMP/out" 2>"$TC_TMP/err"
    RC=$?
    OUT=$(cat "$TC_TMP/out")
    ERR=$(cat "$TC_TMP/err")
}

# ------------------------------------------------------------ the demo
OID=run-orch-$$
jr "$SRC" run --temporal --id "$OID" workflows/orchestrate.lua PROJ-123
check "jorch run --temporal workflows/orchestrate.lua PROJ-123: exit 0, status completed" \
    eval '[ "$RC" = 0 ] && jq_true "$OUT" ".status == \"completed\""'
check "... with the embedded backend's progress lines (started run, activity started/completed)" \
    eval 'grep -q "^\[$OID\] started run .* of workflows/orchestrate.lua on Temporal (task queue jorch-run-" <<<"$ERR" &&
          grep -q "^\[$OID\] activity jira.getIssue (id 2) started, attempt 1$" <<<"$ERR" &&
          grep -q "^\[$OID\] activity jira.getIssue (id 2) completed$" <<<"$ERR" &&
          grep -q "^\[activity jira.getIssue\] jira(offline): read PROJ-123" <<<"$ERR"'
check "... and none of the worker's log lines" eval '! grep -q "^worker:" <<<"$ERR"'
D=$(tcli workflow describe -w "$OID" -o json)
check "temporal describe: completed, on a task queue of its own (jorch-run-...)" jq_true "$D" \
    '.workflowExecutionInfo.status == "WORKFLOW_EXECUTION_STATUS_COMPLETED" and (.workflowExecutionInfo.taskQueue | startswith("jorch-run-"))'

# ------------------------------------------------------------ heartbeat details
# as on the embedded backend (tests/cli/retry_policy.sh): the second heartbeat
# of attempt 1 is throttled, never sent, yet attempt 2 gets its values
jr "$SRC" run --temporal --quiet --id "hbd-$$" --activities tests/cli/activities tests/cli/workflows/hb_details.lua
check "heartbeat details: the next attempt gets all the values of the last (unsent) heartbeat" \
    eval '[ "$RC" = 0 ] && jq_true "$OUT" ". == {a: \"page\", attempt: 3, b_nil: true, c: {cursor: 7}, count: 3, first: \"page\"}"'

# ------------------------------------------------------------ a failing workflow
W=$TC_TMP/wf
mkdir -p "$W"
cat >"$W/refuses.lua" <<'EOF'
return function(x)
  workflow.sleep(0.1)
  error(workflow.ApplicationError{type = "Nope", message = "refused " .. tostring(x), non_retryable = true})
end
EOF
cat >"$W/broken.lua" <<'EOF'
return function()
  local t = nil
  return t.field
end
EOF
FEATURE_TEMPORAL_ENABLED=true jr "$W" run --id "ref-$$" refuses.lua abc
check "FEATURE_TEMPORAL_ENABLED=true jorch run of a failing workflow: exit 1, 'failed: Nope: refused abc'" \
    eval '[ "$RC" = 1 ] && grep -q "workflow .ref-$$. failed: Nope: refused abc" <<<"$ERR" && [ -z "$OUT" ]'
D=$(tcli workflow describe -w "ref-$$" -o json)
check "temporal describe: the run failed" jq_true "$D" '.workflowExecutionInfo.status == "WORKFLOW_EXECUTION_STATUS_FAILED"'

# ------------------------------------------------------------ a script error
t0=$(date +%s)
jr "$W" run --temporal --id "brk-$$" broken.lua
check "a script error: exit 1 at once, naming the line and saying the run is still open" \
    eval '[ "$RC" = 1 ] && grep -q "broken.lua:3: attempt to index a nil value" <<<"$ERR" &&
          grep -q "still open on Temporal" <<<"$ERR" && [ $(($(date +%s) - t0)) -le 15 ]'
S=$(tcli workflow show -w "brk-$$" -o json)
check "... the run is open with its WorkflowTaskFailed in the history" jq_true "$S" \
    'any(.events[]; .eventType == "EVENT_TYPE_WORKFLOW_TASK_FAILED") and
     all(.events[]; .eventType != "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED")'
tcli workflow terminate -w "brk-$$" --reason done >/dev/null 2>&1

# ------------------------------------------------------------ --quiet
jr "$SRC/tests/histories" run --temporal --quiet --activities "$SRC/tests/cli/activities" pipeline.lua PROJ-5
check "--quiet --activities DIR: the pipeline fixture's result, no progress lines" \
    eval '[ "$RC" = 0 ] && [ "$OUT" = "\"https://example.invalid/bin-src-PROJ-5\"" ] && [ -z "$ERR" ]'

# ------------------------------------------------------------ unreachable
PORT=$(tc_free_port)
TEMPORAL_ADDRESS=127.0.0.1:$PORT jr "$W" run --temporal refuses.lua x
check "an unreachable server: exit 3 naming 127.0.0.1:$PORT" eval '[ "$RC" = 3 ] && grep -q "127.0.0.1:$PORT" <<<"$ERR"'
jr "$W" run --temporal --activities "$TC_TMP/nowhere" refuses.lua x
check "a missing --activities directory: exit 2" eval '[ "$RC" = 2 ] && grep -q "nowhere" <<<"$ERR"'

it_no_sanitizer_reports "sanitizer reports" "$TC_TMP/err"
it_summary
