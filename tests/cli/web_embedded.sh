#!/usr/bin/env bash
# web_embedded.sh - `jorch web` on the embedded backend: the approval page in
# a real headless Chromium (list, run page with the EXPLORE output, Approve
# moves the run on, Reject with a reason ends it), authentication (nothing
# without credentials), CSRF (a forged cross-site POST is refused), the
# Jira webhook (bad signature: 401 and nothing started; a delivery twice:
# one run, also across a restart of the server; /proceed from an allowed
# user) and /metrics.
. "$JORCH_SOURCE_DIR/tests/cli/lib.sh"
WEB_TMP=$T_DIR
. "$JORCH_SOURCE_DIR/tests/web/lib.sh"
trap 'web_stop; t_cleanup' EXIT
t_begin "jorch web on the embedded backend"

mkdir -p "$JORCH_HOME"
export JORCH_JIRA_OFFLINE_DIR="$T_DIR/issues"
for k in PROJ-1 PROJ-2 PROJ-3 PROJ-4; do web_issue "$JORCH_JIRA_OFFLINE_DIR" "$k"; done
printf 'alice:s3cret-alice\nbob:s3cret-bob\n' > "$T_DIR/users"
printf 'jira-shared-secret\n' > "$T_DIR/jira-secret"
cat > "$T_DIR/jorch.yaml" <<'YAML'
agent:
  env: [FLAKY_DIR]
web:
  users_file: users
  jira:
    secret_file: jira-secret
    trigger_label: ai-orchestrate
    allowed_users: ["acc-alice"]
    auto_proceed: false
YAML
export JORCH_CONFIG="$T_DIR/jorch.yaml"
WF="$SRC/workflows/orchestrate.lua"
start_run() { "$JORCH" start --home "$JORCH_HOME" --activities "$SRC/activities" "$WF" "$1" '{"autoProceed":false}' >/dev/null; }
waits_at() { # waits_at ID TEXT: until `jorch list` says ID waits for TEXT
  for _ in $(seq 300); do
    "$JORCH" list | grep -E "^$1 " | grep -qF "$2" && return 0
    sleep 0.1
  done
  return 1
}
start_run PROJ-1
start_run PROJ-2
check "PROJ-1 waits at the EXPLORE gate" waits_at PROJ-1 "EXPLORE gate"
check "PROJ-2 waits at the EXPLORE gate" waits_at PROJ-2 "EXPLORE gate"

check "jorch web starts" web_start --home "$JORCH_HOME" --workflow "$WF" --activities "$SRC/activities"

# --- /metrics, parsed by prometheus_client; compared again below as runs end
scrape() { python3 "$SRC/tests/web/metrics.py" "$WEB_URL/metrics" alice s3cret-alice > "$T_DIR/$1.json"; }
metric() { # metric SCRAPE KEY: the sample's value, 0 when absent
  python3 - "$T_DIR/$1.json" "$2" <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
v = d["v"].get(sys.argv[2], 0)
print(int(v) if float(v).is_integer() else v)
PY
}
O='workflow_type=orchestrate'
check "/metrics parses as Prometheus text" scrape m0
fams=$(python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["families"]))' < "$T_DIR/m0.json")
for f in temporal_workflow_completed temporal_workflow_failed temporal_workflow_canceled jorch_workflow_started \
         temporal_workflow_endtoend_latency temporal_activity_execution_latency jorch_activity_attempts \
         jorch_gate_waiting_seconds jorch_runs_waiting_at_gate jorch_gate_oldest_waiting_seconds; do
  expect_contains "/metrics has $f" " $fams " " $f "
done
expect_eq "two runs started" "$(metric m0 "jorch_workflow_started_total{$O}")" 2
expect_eq "two runs wait at a gate" "$(metric m0 "jorch_runs_waiting_at_gate{$O}")" 2
expect_eq "none failed yet" "$(metric m0 "temporal_workflow_failed_total{$O}")" 0
check "agent.run attempts are counted" test "$(metric m0 'jorch_activity_attempts_total{activity_type=agent.run}')" -ge 4
check "agent.run latencies are observed" test "$(metric m0 'temporal_activity_execution_latency_count{activity_type=agent.run}')" -ge 4

# --- the page in a browser, signed in as alice
if python3 "$SRC/tests/web/browser.py" "$WEB_URL" alice s3cret-alice PROJ-1 PROJ-2 >"$T_DIR/browser.out" 2>&1; then
  ok "browser: list, gate output, Approve moves the run on, Reject ends it"
else
  fail "browser: list, gate output, Approve moves the run on, Reject ends it" "$(cat "$T_DIR/browser.out")"
fi
sed 's/^/     /' "$T_DIR/browser.out"
check "the CLI sees PROJ-1 at the PLAN gate" waits_at PROJ-1 "PLAN gate"
run_jorch history PROJ-1
expect_contains "the proceed signal records who approved" "$OUT" '{"by":"alice","via":"web"}'
run_jorch query PROJ-2 getState
expect_contains "PROJ-2 was rejected with the reason" "$OUT" 'not this quarter <b>really</b>'
expect_contains "and who rejected it" "$OUT" 'not this quarter <b>really</b> (by alice)'
expect_contains "the Jira comment says who approved" "$(cat "$JORCH_HOME/jira-offline/PROJ-1.jsonl")" \
  'EXPLORE was approved by alice (via web)'
expect_contains "the rejection comment says who rejected" "$(cat "$JORCH_HOME/jira-offline/PROJ-2.jsonl")" '(by alice)'
run_jorch query PROJ-1 getState
expect_contains "getState lists the approval" "$(echo "$OUT" | tr -d ' \n')" '"by":"alice","gate":"EXPLORE"'

check "/metrics after the approval and the rejection" scrape m1
expect_eq "the rejected run counts as failed" "$(metric m1 "temporal_workflow_failed_total{$O}")" 1
expect_eq "one run still waits at a gate" "$(metric m1 "jorch_runs_waiting_at_gate{$O}")" 1
expect_eq "two gate waits ended (approved, rejected)" "$(metric m1 "jorch_gate_waiting_seconds_count{$O}")" 2
expect_eq "one end-to-end latency (the closed run)" "$(metric m1 "temporal_workflow_endtoend_latency_count{$O}")" 1
# PROJ-4 runs to the end with an agent whose first triage attempt fails:
# the retry shows in the timeline and in the attempt counter
mkdir -p "$T_DIR/flaky"
cat > "$T_DIR/flaky-agent" <<AGENT
#!/bin/sh
prompt=\$(cat)
case "\$prompt" in
*"AGENT: triage"*) if [ ! -f "\$FLAKY_DIR/failed" ]; then : > "\$FLAKY_DIR/failed"; echo "flaky: first attempt fails" >&2; exit 3; fi ;;
esac
printf '%s' "\$prompt" | exec "$SRC/examples/demo-agent"
AGENT
chmod +x "$T_DIR/flaky-agent"
FLAKY_DIR="$T_DIR/flaky" JORCH_AGENT_ARGV="[\"$T_DIR/flaky-agent\"]" \
  "$JORCH" run --home "$JORCH_HOME" --activities "$SRC/activities" --quiet "$WF" PROJ-4 >/dev/null 2>&1
check "the flaky agent failed once" test -f "$T_DIR/flaky/failed"
page=$(curl -s -u alice:s3cret-alice "$WEB_URL/runs/PROJ-4")
row() { tr -d '\n' <<<"$page" | grep -o "<tr data-phase=\"$1\">.*" | sed 's|</tr>.*||'; }
expect_contains "the timeline shows EXPLORE's retry" "$(row EXPLORE)" '<td class="retries">1</td>'
expect_contains "and no retry in PLAN" "$(row PLAN)" '<td class="retries">0</td>'
expect_contains "the completed run's page says Completed" "$page" '<dd id="status">Completed</dd>'
expect_contains "and shows the phases' outputs" "$page" 'DOCUMENT output'

check "/metrics after a run completed" scrape m2
expect_eq "the completed run is counted" "$(metric m2 "temporal_workflow_completed_total{$O}")" 1
expect_eq "three runs started now" "$(metric m2 "jorch_workflow_started_total{$O}")" 3
expect_eq "two end-to-end latencies" "$(metric m2 "temporal_workflow_endtoend_latency_count{$O}")" 2
a1=$(metric m1 'jorch_activity_attempts_total{activity_type=agent.run}')
x1=$(metric m1 'jorch_activity_executions_total{activity_type=agent.run}')
a2=$(metric m2 'jorch_activity_attempts_total{activity_type=agent.run}')
x2=$(metric m2 'jorch_activity_executions_total{activity_type=agent.run}')
expect_eq "agent.run: one attempt more than executions (the retry)" "$((a2 - a1))" "$((x2 - x1 + 1))"

# --- authentication: nothing without credentials
signals() { "$JORCH" history PROJ-1 | grep -c WorkflowExecutionSignaled; }
before=$(signals)
expect_eq "the run list needs credentials" "$(http_code "$WEB_URL/")" 401
expect_eq "a run page needs credentials" "$(http_code "$WEB_URL/runs/PROJ-1")" 401
expect_eq "/metrics needs credentials" "$(http_code "$WEB_URL/metrics")" 401
expect_eq "a wrong password is refused" "$(http_code -u alice:wrong "$WEB_URL/")" 401
expect_eq "another user's password is refused" "$(http_code -u alice:s3cret-bob "$WEB_URL/")" 401
for a in approve reject pause resume skip; do
  expect_eq "POST $a without credentials is refused" \
    "$(http_code -X POST -d 'reason=x&phase=CODE&csrf=0' "$WEB_URL/runs/PROJ-1/$a")" 401
done
# a valid CSRF token of alice's, as a page of this server has it
csrf=$(curl -s -u alice:s3cret-alice "$WEB_URL/runs/PROJ-1" | sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -1)
check "the run page carries a CSRF token" test ${#csrf} -eq 64
expect_eq "a forged cross-site POST (another Origin) is refused" \
  "$(http_code -u alice:s3cret-alice -H 'Origin: http://evil.example' -d "csrf=$csrf" "$WEB_URL/runs/PROJ-1/approve")" 403
expect_eq "a cross-site POST (Sec-Fetch-Site) is refused" \
  "$(http_code -u alice:s3cret-alice -H 'Sec-Fetch-Site: cross-site' -d "csrf=$csrf" "$WEB_URL/runs/PROJ-1/approve")" 403
expect_eq "a POST without the CSRF token is refused" \
  "$(http_code -u alice:s3cret-alice -d "reason=x" "$WEB_URL/runs/PROJ-1/reject")" 403
bob_csrf=$(curl -s -u bob:s3cret-bob "$WEB_URL/runs/PROJ-1" | sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -1)
expect_eq "another user's CSRF token is refused" \
  "$(http_code -u alice:s3cret-alice -d "csrf=$bob_csrf" "$WEB_URL/runs/PROJ-1/approve")" 403
expect_eq "no refused request reached the run" "$(signals)" "$before"
expect_eq "a same-origin POST with the token works" \
  "$(http_code -u bob:s3cret-bob -H "Origin: $WEB_URL" -d "csrf=$bob_csrf" "$WEB_URL/runs/PROJ-1/pause")" 303
reached() { for _ in $(seq 100); do [ "$(signals)" = "$1" ] && return 0; sleep 0.1; done; return 1; }
check "and reached the run" reached "$((before + 1))"
expect_eq "Resume sends resume" \
  "$(http_code -u bob:s3cret-bob -d "csrf=$bob_csrf" "$WEB_URL/runs/PROJ-1/resume")" 303
check "which reached the run" reached "$((before + 2))"
expect_eq "Skip phase with an unknown phase is refused" \
  "$(http_code -u bob:s3cret-bob -d "csrf=$bob_csrf&phase=LUNCH" "$WEB_URL/runs/PROJ-1/skip")" 400
expect_eq "Skip phase DOCUMENT sends skipPhase" \
  "$(http_code -u bob:s3cret-bob -d "csrf=$bob_csrf&phase=DOCUMENT" "$WEB_URL/runs/PROJ-1/skip")" 303
check "which reached the run (and the unknown one did not)" reached "$((before + 3))"
run_jorch history PROJ-1
expect_contains "skipPhase records the phase and who" "$OUT" '{"by":"bob","phase":"DOCUMENT","via":"web"}'
expect_eq "an unknown action is 404" \
  "$(http_code -u bob:s3cret-bob -d "csrf=$bob_csrf" "$WEB_URL/runs/PROJ-1/explode")" 404

# --- the Jira webhook
hook() { # hook FILE SIGNATURE [DELIVERY-ID]: POST the file as Jira does
  http_code -H 'Content-Type: application/json' -H "X-Hub-Signature: $2" \
    ${3:+-H "X-Atlassian-Webhook-Identifier: $3"} --data-binary "@$1" "$WEB_URL/webhooks/jira"
}
runs_of() { # runs_of ID: how many runs of workflow ID the store has
  "$JORCH" list --output json > "$T_DIR/list.json"
  python3 - "$1" "$T_DIR/list.json" <<'PY'
import json, sys
with open(sys.argv[2]) as f:
    runs = json.load(f)
print(len([r for r in runs if r["execution"]["workflowId"] == sys.argv[1]]))
PY
}
cat > "$T_DIR/label.json" <<'JSON'
{"webhookEvent":"jira:issue_updated","issue":{"key":"PROJ-3","fields":{"summary":"x"}},
 "changelog":{"items":[{"field":"labels","fromString":"backend","toString":"backend ai-orchestrate"}]}}
JSON
sig=$(hmac_sig jira-shared-secret "$T_DIR/label.json")
bad=$(hmac_sig not-the-secret "$T_DIR/label.json")
expect_eq "a wrong webhook signature gets 401" "$(hook "$T_DIR/label.json" "$bad" d-1)" 401
expect_eq "a webhook without a signature gets 401" "$(hook "$T_DIR/label.json" "" d-1)" 401
sleep 0.5
expect_eq "and nothing was started" "$(runs_of PROJ-3)" 0
expect_eq "the signed delivery is accepted" "$(hook "$T_DIR/label.json" "$sig" d-1)" 200
expect_contains "and starts the workflow for the issue" "$(cat "$T_DIR/body")" "started workflow PROJ-3"
expect_eq "the same delivery again is accepted" "$(hook "$T_DIR/label.json" "$sig" d-1)" 200
expect_contains "as already handled" "$(cat "$T_DIR/body")" "already handled"
expect_eq "another delivery for the running issue is accepted" "$(hook "$T_DIR/label.json" "$sig" d-2)" 200
expect_contains "and starts nothing" "$(cat "$T_DIR/body")" "already running"
expect_eq "one run of PROJ-3" "$(runs_of PROJ-3)" 1
check "PROJ-3 (auto_proceed: false) waits at the EXPLORE gate" waits_at PROJ-3 "EXPLORE gate"
comment() { # comment FILE AUTHOR-ID TEXT
  python3 - "$@" <<'PY'
import json, sys
body = {"webhookEvent": "comment_created", "issue": {"key": "PROJ-3"},
        "comment": {"body": sys.argv[3], "author": {"accountId": sys.argv[2], "displayName": "Someone"}}}
with open(sys.argv[1], "w") as f:
    json.dump(body, f)
PY
}
comment "$T_DIR/c1.json" acc-mallory "/proceed"
expect_eq "/proceed from a user not allowed changes nothing" "$(hook "$T_DIR/c1.json" "$(hmac_sig jira-shared-secret "$T_DIR/c1.json")" c-1)" 200
expect_contains "and says why" "$(cat "$T_DIR/body")" "not in web.jira.allowed_users"
comment "$T_DIR/c2.json" acc-alice "/proceed looks good"
expect_eq "/proceed from an allowed user is accepted" "$(hook "$T_DIR/c2.json" "$(hmac_sig jira-shared-secret "$T_DIR/c2.json")" c-2)" 200
check "and moves PROJ-3 on to the PLAN gate" waits_at PROJ-3 "PLAN gate"
# the deliveries already handled outlive the server: Jira redelivers c-2 to
# a restarted one, which must not approve the PLAN gate with it
check "jorch web stops" web_stop
check "jorch web starts again" web_start --home "$JORCH_HOME" --workflow "$WF" --activities "$SRC/activities"
expect_eq "c-2 redelivered after the restart is accepted" "$(hook "$T_DIR/c2.json" "$(hmac_sig jira-shared-secret "$T_DIR/c2.json")" c-2)" 200
expect_contains "as already handled" "$(cat "$T_DIR/body")" "already handled"
sleep 0.5
check "PROJ-3 still waits at the PLAN gate" waits_at PROJ-3 "PLAN gate"
expect_eq "one proceed signal from Jira in its history" "$("$JORCH" history PROJ-3 | grep -c 'Signaled .*"via":"jira"')" 1
run_jorch history PROJ-3
expect_contains "the history says who approved from Jira" "$OUT" '{"by":"acc-alice","via":"jira"}'
comment "$T_DIR/c3.json" acc-alice "/reject the plan is wrong"
expect_eq "/reject from an allowed user is accepted" "$(hook "$T_DIR/c3.json" "$(hmac_sig jira-shared-secret "$T_DIR/c3.json")" c-3)" 200
wait_closed() { for _ in $(seq 200); do "$JORCH" list | grep -E "^$1 " | grep -q Failed && return 0; sleep 0.1; done; return 1; }
check "and ends PROJ-3" wait_closed PROJ-3
run_jorch query PROJ-3 getState
expect_contains "as rejected with the comment's reason" "$OUT" 'the plan is wrong'
echo '{"webhookEvent": "jira:issue_updated", "issue": {"key": "not a key; rm -rf /"}, "changelog": {"items": [{"field": "labels", "toString": "ai-orchestrate"}]}}' > "$T_DIR/evil.json"
expect_eq "a malformed issue key is refused" "$(hook "$T_DIR/evil.json" "$(hmac_sig jira-shared-secret "$T_DIR/evil.json")" e-1)" 400

# --- a run of another workflow: listed, counted, no orchestrator buttons
"$JORCH" run --home "$JORCH_HOME" --quiet --id other-1 --activities "$ACTS" "$WFS/three_steps.lua" ada >/dev/null 2>&1
expect_contains "the list shows a run of another workflow" "$(curl -s -u bob:s3cret-bob "$WEB_URL/")" 'data-id="other-1"'
page=$(curl -s -u bob:s3cret-bob "$WEB_URL/runs/other-1")
expect_contains "its page says it is not an orchestration" "$page" 'Not a run of orchestrate'
check "without buttons" bash -c '! grep -q "<form" <<<"$1"' _ "$page"
check "/metrics counts it under its own type" scrape m3
expect_eq "temporal_workflow_completed{workflow_type=three_steps}" "$(metric m3 'temporal_workflow_completed_total{workflow_type=three_steps}')" 1
expect_eq "a run page of an unknown id is 404" "$(http_code -u bob:s3cret-bob "$WEB_URL/runs/NOPE-1")" 404

check "jorch web stops on SIGTERM with exit 0" web_stop
# beyond loopback only with authentication
printf 'web:\n  listen: 0.0.0.0:0\n' > "$T_DIR/open.yaml"
run_jorch_env() { OUT=$(JORCH_CONFIG="$T_DIR/open.yaml" "$JORCH" web --home "$JORCH_HOME" 2>&1); RC=$?; }
run_jorch_env
expect_eq "listening beyond loopback without credentials is refused (exit 2)" "$RC" 2
expect_contains "with a message that says what to do" "$OUT" "without authentication"
t_end
