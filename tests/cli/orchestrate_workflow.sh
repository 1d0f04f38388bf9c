#!/usr/bin/env bash
# orchestrate_workflow.sh - workflows/orchestrate.lua end to end on the
# embedded backend with the offline Jira, a scripted fake agent and small
# git repositories: auto-proceed, gates, timeout, reject, pause/resume,
# skipPhase, the TEST/FIX loop, cancellation, getState throughout.
. "${JORCH_SOURCE_DIR:-.}/tests/orchestrate/lib.sh"
use_fake_agent
WF="$SRC/workflows/orchestrate.lua"
ACTS=(--activities "$SRC/activities")
make_issue PROJ-1 'Make the widget blue'
JLOG="$JORCH_HOME/jira-offline/PROJ-1.jsonl"

input() { # input REPO [EXTRA-JSON-FIELDS]
    printf '{"issueKey":"PROJ-1","repo":"%s","testCommand":["sh","check.sh"]%s}' "$1" "${2:-}"
}
jira_has() { # jira_has PYTHON-EXPR over records r
    python3 - "$JLOG" "$1" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])] if __import__("os").path.exists(sys.argv[1]) else []
sys.exit(0 if eval(sys.argv[2], {"recs": recs}) else 1)
PY
}
reset_jira() { rm -f "$JLOG"; }

# --- happy path with autoProceed
make_repo "$T/r1" pass
out=$("$JORCH" run --time-skip "${ACTS[@]}" "$WF" "$(input "$T/r1" ',"autoProceed":true')" 2>"$T/err1")
rc=$?
check "happy path exits 0" [ "$rc" -eq 0 ]
check "happy path result completed" [ "$(jget "$out" 'v["status"]')" = completed ]
check "happy path: branch jorch/PROJ-1 with 2 commits" [ "$(git -C "$T/r1" rev-list --count main..jorch/PROJ-1)" = 2 ]
check "happy path: commits recorded" [ "$(jget "$out" 'len(v["commits"])')" = 2 ]
check "happy path: no fix round" [ "$(jget "$out" 'v["fixAttempts"]')" = 0 ]
check "happy path: transition to Done recorded" jira_has 'any(r["op"]=="transition" and r["to"]=="Done" for r in recs)'
check "happy path: phase labels" jira_has 'any("orchestration-phase:CODE" in r.get("add",[]) for r in recs)'
check "happy path: summary comment" jira_has 'any(r["op"]=="comment" and "completed" in r["body"] for r in recs)'
check "happy path: prompt on stdin, cwd is repo" grep -q "Make the widget blue" "$T/agent/prompt-implementer.txt"
check "happy path: agent cwd" [ "$(cat "$T/agent/cwd-implementer.txt")" = "$(cd "$T/r1" && pwd -P)" ]
check "happy path: checkpoints" [ -n "$(ls "$JORCH_HOME"/checkpoints/*/latest.json 2>/dev/null)" ]
check "happy path: notify skipped logged" grep -q "notify: skipped (SLACK_WEBHOOK_URL not set)" "$T/err1"

# --- malformed key fails fast
out=$("$JORCH" run --time-skip "${ACTS[@]}" "$WF" 'proj-1;$(id)' 2>"$T/err2")
check "malformed key exits 1" [ $? -eq 1 ]
check "malformed key: ValidationError" grep -q ValidationError "$T/err2" "$T/err2"

# --- gate timeout (7 days, time-skipped)
reset_jira
make_repo "$T/r3" pass
"$JORCH" run --time-skip "${ACTS[@]}" "$WF" "$(input "$T/r3" ',"autoProceed":false')" >/dev/null 2>"$T/err3"
check "gate timeout exits 1" [ $? -eq 1 ]
check "gate timeout: ApprovalTimeout" grep -q ApprovalTimeout "$T/err3"
check "gate timeout: Blocked" jira_has 'any(r["op"]=="transition" and r["to"]=="Blocked" for r in recs)'
check "gate timeout: awaiting-approval comment" jira_has 'any(r["op"]=="comment" and "awaiting approval" in r["body"] for r in recs)'

# --- both gates with proceed; getState before, during, after
reset_jira
make_repo "$T/r4" pass
id=$("$JORCH" run --detach --id orch-gates "${ACTS[@]}" "$WF" "$(input "$T/r4" ',"autoProceed":false')" 2>/dev/null)
check "gates: started" [ "$id" = orch-gates ]
check "gates: getState before" wait_for 10 state_is "$id" 'v["issueKey"]=="PROJ-1" and v["status"] in ("running","awaiting_approval")'
check "gates: awaiting after EXPLORE" wait_for 30 state_is "$id" 'v["awaitingApproval"] and v["currentPhase"]=="EXPLORE" and v["status"]=="awaiting_approval"'
"$JORCH" signal "$id" proceed >/dev/null
check "gates: awaiting after PLAN" wait_for 30 state_is "$id" 'v["awaitingApproval"] and v["currentPhase"]=="PLAN"'
"$JORCH" signal "$id" proceed >/dev/null
"$JORCH" result "$id" >/dev/null 2>&1
check "gates: result completed" [ $? -eq 0 ]
check "gates: getState after" state_is "$id" 'v["status"]=="completed" and not v["awaitingApproval"] and "DOCUMENT" in v["phaseResults"]'
check "gates: getPhase" [ "$(jget "$("$JORCH" query "$id" getPhase)" 'v["status"]')" = completed ]

# --- reject
reset_jira
make_repo "$T/r5" pass
id=$("$JORCH" run --detach --id orch-reject "${ACTS[@]}" "$WF" "$(input "$T/r5" ',"autoProceed":false')" 2>/dev/null)
wait_for 30 state_is "$id" 'v["awaitingApproval"]'
"$JORCH" signal "$id" reject '"not this quarter"' >/dev/null
"$JORCH" result "$id" >/dev/null 2>"$T/err5"
check "reject: exits 1" [ $? -eq 1 ]
check "reject: status rejected" state_is "$id" 'v["status"]=="rejected"'
check "reject: comment with reason" jira_has 'any(r["op"]=="comment" and "not this quarter" in r["body"] for r in recs)'

# --- pause / resume
make_repo "$T/r6" pass
export FAKE_AGENT_SLEEP_triage=2
id=$("$JORCH" run --detach --id orch-pause "${ACTS[@]}" "$WF" "$(input "$T/r6" ',"autoProceed":true')" 2>/dev/null)
"$JORCH" signal "$id" pause >/dev/null
check "pause: holds" wait_for 30 state_is "$id" 'v["status"]=="paused"'
sleep 1
check "pause: still held before PLAN" state_is "$id" 'v["status"]=="paused" and v["currentPhase"]=="EXPLORE"'
"$JORCH" signal "$id" resume >/dev/null
"$JORCH" result "$id" >/dev/null 2>&1
check "pause: completes after resume" [ $? -eq 0 ]
unset FAKE_AGENT_SLEEP_triage

# --- skipPhase (TEST would never pass; skipping it completes the run)
make_repo "$T/r7" never
export FAKE_AGENT_SLEEP_triage=2
id=$("$JORCH" run --detach --id orch-skip "${ACTS[@]}" "$WF" "$(input "$T/r7" ',"autoProceed":true')" 2>/dev/null)
"$JORCH" signal "$id" skipPhase '"NOPE"' >/dev/null
"$JORCH" signal "$id" skipPhase '"TEST"' >/dev/null
"$JORCH" result "$id" >/dev/null 2>&1
check "skipPhase: completes" [ $? -eq 0 ]
check "skipPhase: TEST skipped, bad name ignored" state_is "$id" 'v["phaseResults"]["TEST"]["status"]=="skipped" and v["fixAttempts"]==0'
unset FAKE_AGENT_SLEEP_triage

# --- tests fail once, one FIX round, then pass
make_repo "$T/r8" once
out=$("$JORCH" run --time-skip "${ACTS[@]}" "$WF" "$(input "$T/r8" ',"autoProceed":true')" 2>/dev/null)
check "fix once: completes" [ $? -eq 0 ]
check "fix once: exactly one fix" [ "$(jget "$out" 'v["fixAttempts"]')" = 1 ]
check "fix once: bugfixer saw the failure" grep -q "0 passed, 1 failed" "$T/agent/prompt-bugfixer.txt"

# --- tests never pass: 3 fix rounds, Blocked
reset_jira
make_repo "$T/r9" never
"$JORCH" run --time-skip --id orch-never "${ACTS[@]}" "$WF" "$(input "$T/r9" ',"autoProceed":true')" >/dev/null 2>"$T/err9"
check "never: exits 1 with TestsFailed" grep -q TestsFailed "$T/err9"
check "never: 3 fix rounds" state_is orch-never 'v["fixAttempts"]==3 and v["status"]=="failed" and v["error"]["type"]=="TestsFailed"'
check "never: Blocked" jira_has 'any(r["op"]=="transition" and r["to"]=="Blocked" for r in recs)'

# --- cancellation mid-CODE kills the agent
reset_jira
make_repo "$T/r10" pass
rm -f "$T/agent/pid-implementer.txt"
export FAKE_AGENT_SLEEP_implementer=300
id=$("$JORCH" run --detach --id orch-cancel "${ACTS[@]}" "$WF" "$(input "$T/r10" ',"autoProceed":true')" 2>/dev/null)
check "cancel: reaches CODE" wait_for 30 test -s "$T/agent/pid-implementer.txt"
pid=$(cat "$T/agent/pid-implementer.txt" 2>/dev/null || echo 0)
"$JORCH" cancel "$id" >/dev/null
"$JORCH" result "$id" >/dev/null 2>&1
check "cancel: run ends not completed" [ $? -ne 0 ]
check "cancel: status cancelled in CODE" state_is "$id" 'v["status"]=="cancelled" and v["currentPhase"]=="CODE"'
check "cancel: agent process killed" wait_for 10 sh -c "! kill -0 $pid"
check "cancel: Blocked and comment" jira_has 'any(r["op"]=="comment" and "cancelled" in r["body"] for r in recs)'
unset FAKE_AGENT_SLEEP_implementer

finish
