#!/usr/bin/env bash
# tests/integration/web_temporal.sh - `jorch web --temporal` against a real
# Temporal dev server with `jorch worker`: the approval page in a headless
# Chromium (list, EXPLORE output, Approve moves the run on, Reject ends it),
# open on loopback without credentials; the Jira webhook starts a run on
# Temporal once for a delivery sent twice and a /proceed comment moves it
# on (once, also when redelivered to a restarted server); /metrics parses
# and counts the rejected run as failed.
# Fails (never skips) when the `temporal` CLI is missing.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_setup
WEB_TMP=$TC_TMP
. "$SRC/tests/web/lib.sh"
trap 'web_stop; tc_cleanup' EXIT

export TEMPORAL_TASK_QUEUE=web-it-$$
export JORCH_JIRA_OFFLINE_DIR=$TC_TMP/issues
for k in PROJ-11 PROJ-12 PROJ-13; do web_issue "$JORCH_JIRA_OFFLINE_DIR" "$k"; done
printf 'jira-shared-secret\n' > "$TC_TMP/jira-secret"
cat > "$JORCH_CONFIG" <<'YAML'
web:
  jira:
    secret_file: jira-secret
    allowed_users: ["lead@example.com"]
    auto_proceed: false
YAML
pushd "$SRC" >/dev/null || exit 1
check "jorch worker polls $TEMPORAL_TASK_QUEUE" \
    it_worker_start "$TC_TMP/worker.log" "$TEMPORAL_TASK_QUEUE" --workflows "$SRC/workflows" --activities "$SRC/activities"
for k in PROJ-11 PROJ-12; do
    jr start --temporal workflows/orchestrate.lua "$k" '{"autoProceed": false}'
    check "started $k on Temporal" test "$RC" = 0
done
popd >/dev/null || exit 1
at_gate() { # at_gate ID PHASE: getState says the run waits at PHASE's gate
    jr query --temporal "$1" getState
    jq_true "$OUT" ".awaitingApproval == true and .currentPhase == \"$2\""
}
check "PROJ-11 waits at the EXPLORE gate" wait_for 90 at_gate PROJ-11 EXPLORE
check "PROJ-12 waits at the EXPLORE gate" wait_for 90 at_gate PROJ-12 EXPLORE

check "jorch web --temporal starts" web_start --temporal --workflow "$SRC/workflows/orchestrate.lua"

if python3 "$SRC/tests/web/browser.py" "$WEB_URL" - - PROJ-11 PROJ-12 >"$TC_TMP/browser.out" 2>&1; then
    ok "browser: list, gate output, Approve moves the run on, Reject ends it (Temporal)"
else
    bad "browser: list, gate output, Approve moves the run on, Reject ends it (Temporal)" "$(cat "$TC_TMP/browser.out")"
fi
sed 's/^/       /' "$TC_TMP/browser.out"
check "Temporal's history of PROJ-11 has the proceed signal with who approved" \
    history_has PROJ-11 '.eventType == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED" and .workflowExecutionSignaledEventAttributes.signalName == "proceed"'
jr history --temporal PROJ-11
check "the proceed signal's argument says local user via web" grep -qF '{"by":"local user","via":"web"}' <<<"$OUT"
check "PROJ-11 waits at the PLAN gate (CLI)" wait_for 60 at_gate PROJ-11 PLAN

# --- the Jira webhook starts a run on Temporal, once
cat > "$TC_TMP/label.json" <<'JSON'
{"webhookEvent":"jira:issue_updated","issue":{"key":"PROJ-13"},
 "changelog":{"items":[{"field":"labels","fromString":"","toString":"ai-orchestrate"}]}}
JSON
hook() { http_code -H "X-Hub-Signature: $2" -H "X-Atlassian-Webhook-Identifier: $3" --data-binary "@$1" "$WEB_URL/webhooks/jira"; }
sig=$(hmac_sig jira-shared-secret "$TC_TMP/label.json")
check "a wrong signature gets 401" test "$(hook "$TC_TMP/label.json" "sha256=0000" t-0)" = 401
check "the signed delivery is accepted" test "$(hook "$TC_TMP/label.json" "$sig" t-1)" = 200
check "the same delivery again is accepted" test "$(hook "$TC_TMP/label.json" "$sig" t-1)" = 200
check "a second delivery for the open run is accepted" test "$(hook "$TC_TMP/label.json" "$sig" t-2)" = 200
n=$(tcli workflow list --query 'WorkflowId="PROJ-13"' -o json 2>/dev/null | jq 'length')
check "Temporal has exactly one run of PROJ-13" test "$n" = 1
check "PROJ-13 waits at the EXPLORE gate" wait_for 90 at_gate PROJ-13 EXPLORE
cat > "$TC_TMP/c.json" <<'JSON'
{"webhookEvent":"comment_created","issue":{"key":"PROJ-13"},
 "comment":{"body":"/proceed","author":{"emailAddress":"lead@example.com","displayName":"Lead"}}}
JSON
check "/proceed from an allowed user is accepted" test "$(hook "$TC_TMP/c.json" "$(hmac_sig jira-shared-secret "$TC_TMP/c.json")" t-3)" = 200
check "and moves PROJ-13 on to the PLAN gate" wait_for 60 at_gate PROJ-13 PLAN
# a restarted server still knows t-3 ($JORCH_HOME/web-deliveries): Jira's
# redelivery of it must not approve the PLAN gate too
check "jorch web --temporal stops" web_stop
check "the deliveries handled are kept in \$JORCH_HOME/web-deliveries" test "$(wc -l < "$JORCH_HOME/web-deliveries")" = 3
check "jorch web --temporal starts again" web_start --temporal --workflow "$SRC/workflows/orchestrate.lua"
check "t-3 redelivered after the restart is accepted" test "$(hook "$TC_TMP/c.json" "$(hmac_sig jira-shared-secret "$TC_TMP/c.json")" t-3)" = 200
check "as already handled" grep -q "already handled" "$WEB_TMP/body"
sleep 1
check "PROJ-13 still waits at the PLAN gate" at_gate PROJ-13 PLAN

# --- /metrics from Temporal
python3 "$SRC/tests/web/metrics.py" "$WEB_URL/metrics" > "$TC_TMP/m.json"
check "/metrics parses as Prometheus text" test -s "$TC_TMP/m.json"
mq() { jq -e "$1" "$TC_TMP/m.json" >/dev/null; }
check "the rejected run counts as failed" mq '.v["temporal_workflow_failed_total{workflow_type=orchestrate}"] == 1'
check "two runs wait at a gate" mq '.v["jorch_runs_waiting_at_gate{workflow_type=orchestrate}"] == 2'
check "agent.run latencies are observed" \
    mq '.v["temporal_activity_execution_latency_count{activity_type=agent.run}"] >= 8'

check "jorch web stops on SIGTERM with exit 0" web_stop
for k in PROJ-11 PROJ-13; do tcli workflow terminate -w "$k" --reason "test done" >/dev/null 2>&1; done
it_summary
