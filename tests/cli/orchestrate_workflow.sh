#!/usr/bin/env bash
# orchestrate_workflow.sh - workflows/orchestrate.lua end to end on the
# embedded backend with the offline Jira, a scripted fake agent and small
# git repositories: auto-proceed, gates, timeout, reject, pause/resume,
# skipPhase, the TEST/FIX loop, cancellation, getState throughout.
#
# Every wait is bounded (ORCH_WAIT seconds, default 120, for one run or one
# poll), so a bug makes a check FAIL instead of hanging the suite; runs left
# open are terminated on exit (tests/orchestrate/lib.sh).
#
# Signals are sent while the run is parked (at a gate, paused) or while a
# known long activity is in flight (a sleeping fake agent), never while the
# executor is dispatching a burst of short activities: see the note at
# "skipPhase" below.
. "${JORCH_SOURCE_DIR:-.}/tests/orchestrate/lib.sh"
# Each case sets environment variables its activities read (the fake agent's
# sleeps); a service keeps the environment it started with, so these runs get
# a process each (JORCH_SERVICE=off), as from a shell that changes them.
export JORCH_SERVICE=off
use_fake_agent
WF="$SRC/workflows/orchestrate.lua"
ACTS=(--activities "$SRC/activities")
W=${ORCH_WAIT:-120}
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

# Bounded versions of the verbs that wait.
run_fg() { timeout -k 5 "$W" "$JORCH" run "$@"; }
start_bg() { timeout -k 5 30 "$JORCH" run --detach "$@"; }
result_of() { timeout -k 5 $((W + 10)) "$JORCH" result "$1" --timeout "${W}s"; }
sig() { timeout -k 5 30 "$JORCH" signal "$@"; }
# The fake agent writes its pid once it is running; a case waits for that
# before signalling, so the signal lands while that activity is in flight.
agent_running() { # agent_running AGENT
    wait_for "$W" test -s "$T/agent/pid-$1.txt"
}

# --- happy path with autoProceed
reset_jira
make_repo "$T/r1" pass
out=$(run_fg --time-skip --id orch-happy "${ACTS[@]}" "$WF" "$(input "$T/r1" ',"autoProceed":true')" 2>"$T/err1")
rc=$?
check "happy path exits 0" [ "$rc" -eq 0 ]
check "happy path result completed" [ "$(jget "$out" 'v["status"]')" = completed ]
check "happy path: branch jorch/PROJ-1 with 2 commits" [ "$(git -C "$T/r1" rev-list --count main..jorch/PROJ-1)" = 2 ]
check "happy path: commits recorded" [ "$(jget "$out" 'len(v["commits"])')" = 2 ]
check "happy path: no fix round" [ "$(jget "$out" 'v["fixAttempts"]')" = 0 ]
check "happy path: no gate comment" jira_has 'not any(r["op"]=="comment" and "awaiting approval" in r["body"] for r in recs)'
check "happy path: transition to Done recorded" jira_has 'any(r["op"]=="transition" and r["to"]=="Done" for r in recs)'
check "happy path: phase labels" jira_has 'any("orchestration-phase:CODE" in r.get("add",[]) for r in recs)'
check "happy path: final labels DONE/completed" jira_has '[r for r in recs if r["op"]=="labels"][-1]["add"]==["orchestration-phase:DONE","orchestration-status:completed"]'
check "happy path: summary comment" jira_has 'any(r["op"]=="comment" and "completed" in r["body"] for r in recs)'
check "happy path: prompt on stdin, cwd is repo" grep -q "Make the widget blue" "$T/agent/prompt-implementer.txt"
check "happy path: agent cwd" [ "$(cat "$T/agent/cwd-implementer.txt")" = "$(cd "$T/r1" && pwd -P)" ]
check "happy path: checkpoints" [ -s "$JORCH_HOME/checkpoints/orch-happy/latest.json" ]
check "happy path: latest checkpoint says completed" python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); sys.exit(0 if c["phase"]=="DONE" and c["state"]["status"]=="completed" else 1)' "$JORCH_HOME/checkpoints/orch-happy/latest.json"
check "happy path: checkpoint per phase" [ "$(ls "$JORCH_HOME"/checkpoints/orch-happy/ | grep -c -- '-[A-Z]*\.json$')" -ge 5 ]
check "happy path: notify skipped logged" grep -q "notify: skipped (SLACK_WEBHOOK_URL not set)" "$T/err1"
check "happy path: getState after" state_is orch-happy 'v["status"]=="completed" and v["currentPhase"]=="DONE" and not v["awaitingApproval"] and v.get("error") is None and all(v["phaseResults"][p]["status"] in ("completed","passed") for p in ("EXPLORE","PLAN","CODE","TEST","DOCUMENT")) and "FIX" not in v["phaseResults"]'

# --- malformed key fails fast
run_fg --time-skip --id orch-bad "${ACTS[@]}" "$WF" 'proj-1;$(id)' >/dev/null 2>"$T/err2"
check "malformed key exits 1" [ $? -eq 1 ]
check "malformed key: ValidationError" grep -q ValidationError "$T/err2"
check "malformed key: getState failed" state_is orch-bad 'v["status"]=="failed" and v["error"]["type"]=="ValidationError"'
check "malformed key: no activity ran" [ "$(timeout 30 "$JORCH" history orch-bad | grep -c ActivityTaskScheduled)" = 0 ]

# --- gate timeout (7 days, time-skipped)
reset_jira
make_repo "$T/r3" pass
run_fg --time-skip --id orch-timeout "${ACTS[@]}" "$WF" "$(input "$T/r3" ',"autoProceed":false')" >/dev/null 2>"$T/err3"
check "gate timeout exits 1" [ $? -eq 1 ]
check "gate timeout: ApprovalTimeout" grep -q ApprovalTimeout "$T/err3"
check "gate timeout: Blocked" jira_has 'any(r["op"]=="transition" and r["to"]=="Blocked" for r in recs)'
check "gate timeout: awaiting-approval comment" jira_has 'any(r["op"]=="comment" and "awaiting approval" in r["body"] for r in recs)'
check "gate timeout: failure comment" jira_has 'any(r["op"]=="comment" and "ApprovalTimeout" in r["body"] for r in recs)'
check "gate timeout: getState after" state_is orch-timeout 'v["status"]=="failed" and v["currentPhase"]=="EXPLORE" and not v["awaitingApproval"] and v["error"]["type"]=="ApprovalTimeout" and "PLAN" not in v["phaseResults"]'
tl=$(timeout 30 "$JORCH" history orch-timeout --output json | python3 -c '
import json,sys
from datetime import datetime
ev=json.load(sys.stdin)["events"]
fired=[e for e in ev if e["eventType"] in ("EVENT_TYPE_TIMER_FIRED","TimerFired")]
started=[e for e in ev if e["eventType"] in ("EVENT_TYPE_TIMER_STARTED","TimerStarted")]
print(started[0]["timerStartedEventAttributes"]["startToFireTimeout"] if started and fired else "none")' 2>/dev/null)
check "gate timeout: a 7-day timer fired ($tl)" [ "$tl" = 604800s ]

# --- both gates with proceed; getState before, during, after. Started
# without --id: the run's id is the issue key (workflow.default_id), and a
# second start of the same issue is refused while it runs.
reset_jira
make_repo "$T/r4" pass
id=$(start_bg "${ACTS[@]}" "$WF" "$(input "$T/r4" ',"autoProceed":false')" 2>/dev/null)
check "gates: started, the id is the issue key" [ "$id" = PROJ-1 ]
check "gates: getState before" wait_for 10 state_is "$id" 'v["issueKey"]=="PROJ-1" and v["projectKey"]=="PROJ" and v["status"] in ("running","awaiting_approval") and v["fixAttempts"]==0 and v["startedAt"]'
check "gates: awaiting after EXPLORE" wait_for "$W" state_is "$id" 'v["awaitingApproval"] and v["currentPhase"]=="EXPLORE" and v["status"]=="awaiting_approval" and v["phaseResults"]["EXPLORE"]["status"]=="completed"'
check "gates: getPhase while waiting" [ "$(jget "$(timeout 30 "$JORCH" query "$id" getPhase)" 'v["phase"]+"/"+v["status"]')" = EXPLORE/awaiting_approval ]
dup_err=$(start_bg "${ACTS[@]}" "$WF" "$(input "$T/r4" ',"autoProceed":false')" 2>&1 >/dev/null)
dup_rc=$?
check "one run per issue: a second start is refused (exit 2)" [ "$dup_rc" -eq 2 ]
run_id=$(timeout 30 "$JORCH" describe "$id" --output json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["workflowExecutionInfo"]["execution"]["runId"])' 2>/dev/null)
check "one run per issue: the refusal names the running run" grep -q "workflow 'PROJ-1' is already running (run id $run_id)" <<<"$dup_err"
check "one run per issue: the refusal suggests --id" grep -q -- "--id" <<<"$dup_err"
make_repo "$T/r4b" pass
other=$(start_bg --id orch-gates-2 "${ACTS[@]}" "$WF" "$(input "$T/r4b" ',"autoProceed":false')" 2>/dev/null)
check "one run per issue: an explicit --id starts another" [ "$other" = orch-gates-2 ]
timeout 30 "$JORCH" terminate orch-gates-2 --reason "test: second run" >/dev/null 2>&1
check "gates: the approval comment has the command for this backend" jira_has 'any(r["op"]=="comment" and "jorch signal PROJ-1 proceed" in r["body"] for r in recs)'
check "gates: labels awaiting_approval" jira_has 'any("orchestration-status:awaiting_approval" in r.get("add",[]) for r in recs)'
sleep 1
check "gates: still waiting (no PLAN without proceed)" state_is "$id" 'v["awaitingApproval"] and "PLAN" not in v["phaseResults"]'
sig "$id" proceed >/dev/null
check "gates: awaiting after PLAN" wait_for "$W" state_is "$id" 'v["awaitingApproval"] and v["currentPhase"]=="PLAN" and v["status"]=="awaiting_approval" and "CODE" not in v["phaseResults"]'
sig "$id" proceed >/dev/null
result_of "$id" >/dev/null 2>&1
check "gates: result completed" [ $? -eq 0 ]
check "gates: getState after" state_is "$id" 'v["status"]=="completed" and not v["awaitingApproval"] and "DOCUMENT" in v["phaseResults"]'
check "gates: getPhase after" [ "$(jget "$(timeout 30 "$JORCH" query "$id" getPhase)" 'v["status"]')" = completed ]
check "gates: two approval comments" jira_has 'sum(1 for r in recs if r["op"]=="comment" and "awaiting approval" in r["body"])==2'

# --- reject
reset_jira
make_repo "$T/r5" pass
id=$(start_bg --id orch-reject "${ACTS[@]}" "$WF" "$(input "$T/r5" ',"autoProceed":false')" 2>/dev/null)
check "reject: waits at the gate" wait_for "$W" state_is "$id" 'v["awaitingApproval"]'
sig "$id" reject '"not this quarter"' >/dev/null
result_of "$id" >/dev/null 2>"$T/err5"
check "reject: exits 1" [ $? -eq 1 ]
check "reject: status rejected" state_is "$id" 'v["status"]=="rejected" and v["error"]["type"]=="Rejected" and not v["awaitingApproval"]'
check "reject: comment with reason" jira_has 'any(r["op"]=="comment" and "not this quarter" in r["body"] for r in recs)'
check "reject: label rejected" jira_has 'any("orchestration-status:rejected" in r.get("add",[]) for r in recs)'
check "reject: not moved to Blocked" jira_has 'not any(r["op"]=="transition" for r in recs)'

# --- pause / resume
reset_jira
make_repo "$T/r6" pass
rm -f "$T/agent/pid-triage.txt"
export FAKE_AGENT_SLEEP_triage=3
id=$(start_bg --id orch-pause "${ACTS[@]}" "$WF" "$(input "$T/r6" ',"autoProceed":true')" 2>/dev/null)
check "pause: triage running" agent_running triage
sig "$id" pause >/dev/null
check "pause: holds" wait_for "$W" state_is "$id" 'v["status"]=="paused"'
sleep 1
check "pause: still held before PLAN" state_is "$id" 'v["status"]=="paused" and v["currentPhase"]=="EXPLORE" and "PLAN" not in v["phaseResults"]'
check "pause: label paused" jira_has 'any("orchestration-status:paused" in r.get("add",[]) for r in recs)'
sig "$id" resume >/dev/null
result_of "$id" >/dev/null 2>&1
check "pause: completes after resume" [ $? -eq 0 ]
check "pause: getState after" state_is "$id" 'v["status"]=="completed" and "DOCUMENT" in v["phaseResults"]'
unset FAKE_AGENT_SLEEP_triage

# --- skipPhase (TEST would never pass; skipping it completes the run)
# The signals are sent while the triage agent runs. Sent right after the
# start, they used to race with the executor dispatching the next activity,
# and jorch's executor died with "starting an activity failed: database is
# locked", leaving the run Running with no process and `jorch result`
# waiting forever (a jorch store bug, reported separately).
reset_jira
make_repo "$T/r7" never
rm -f "$T/agent/pid-triage.txt"
export FAKE_AGENT_SLEEP_triage=3
id=$(start_bg --id orch-skip "${ACTS[@]}" "$WF" "$(input "$T/r7" ',"autoProceed":true')" 2>/dev/null)
check "skipPhase: triage running" agent_running triage
rm -f "$T/agent/prompt-implementer.txt"
sig "$id" skipPhase '"NOPE"' >/dev/null 2>"$T/skip-nope.err"
check "skipPhase: a bad name is refused where it is sent (exit 2)" [ $? -eq 2 ]
check "skipPhase: the refusal lists the phases" grep -q 'unknown phase "NOPE" (one of EXPLORE, PLAN' "$T/skip-nope.err"
sig "$id" skipPhase '"test"' >/dev/null
sig "$id" skipPhase '{"phase":"CODE"}' >/dev/null
result_of "$id" >/dev/null 2>&1
check "skipPhase: completes" [ $? -eq 0 ]
check "skipPhase: TEST skipped, no FIX" state_is "$id" 'v["status"]=="completed" and v["phaseResults"]["TEST"]["status"]=="skipped" and v["fixAttempts"]==0 and "FIX" not in v["phaseResults"] and v["phaseResults"]["DOCUMENT"]["status"]=="completed"'
check "skipPhase: the test command never ran" [ ! -e "$JORCH_HOME/artifacts/orch-skip/TEST-0.output.txt" ]
check "skipPhase: the refused name never reached the run" sh -c "! grep -q 'NOPE' '$JORCH_HOME/logs/orch-skip.log'"
check "skipPhase: CODE skipped, no implementer" sh -c "[ ! -e '$T/agent/prompt-implementer.txt' ]"
check "skipPhase: DOCUMENT committed on the issue branch" [ "$(git -C "$T/r7" log --format=%s main..jorch/PROJ-1 2>/dev/null)" = "fake: docs" ]
unset FAKE_AGENT_SLEEP_triage

# --- skipPhases in the input: EXPLORE's agents and PLAN skipped from the start
make_repo "$T/r7b" pass
rm -f "$T/agent/prompt-triage.txt" "$T/agent/prompt-planner.txt"
run_fg --time-skip --id orch-skipin "${ACTS[@]}" "$WF" "$(input "$T/r7b" ',"autoProceed":true,"skipPhases":["EXPLORE","plan"]')" >/dev/null 2>&1
check "skipPhases input: completes" [ $? -eq 0 ]
check "skipPhases input: EXPLORE and PLAN skipped, issue still read" state_is orch-skipin 'v["phaseResults"]["EXPLORE"]["status"]=="skipped" and v["phaseResults"]["PLAN"]["status"]=="skipped" and v["phaseResults"]["CODE"]["status"]=="completed"'
check "skipPhases input: no triage or planner ran" sh -c "[ ! -e '$T/agent/prompt-triage.txt' ] && [ ! -e '$T/agent/prompt-planner.txt' ]"
check "skipPhases input: implementer got the issue" grep -q "Make the widget blue" "$T/agent/prompt-implementer.txt"

# --- tests fail once, one FIX round, then pass
reset_jira
make_repo "$T/r8" once
rm -f "$T/agent/prompt-bugfixer.txt"
out=$(run_fg --time-skip --id orch-fixonce "${ACTS[@]}" "$WF" "$(input "$T/r8" ',"autoProceed":true')" 2>/dev/null)
check "fix once: completes" [ $? -eq 0 ]
check "fix once: exactly one fix" [ "$(jget "$out" 'v["fixAttempts"]')" = 1 ]
check "fix once: bugfixer saw the failure" grep -q "0 passed, 1 failed" "$T/agent/prompt-bugfixer.txt"
check "fix once: TEST twice (failed, passed), FIX once" state_is orch-fixonce 'v["status"]=="completed" and v["fixAttempts"]==1 and v["phaseResults"]["TEST"]["runs"]==2 and v["phaseResults"]["TEST"]["passed"] and v["phaseResults"]["FIX"]["runs"]==1'
check "fix once: fix commit on the branch" [ "$(git -C "$T/r8" log --format=%s main..jorch/PROJ-1 | grep -c 'fake: fix')" = 1 ]
check "fix once: Done" jira_has 'any(r["op"]=="transition" and r["to"]=="Done" for r in recs) and not any(r["op"]=="transition" and r["to"]=="Blocked" for r in recs)'

# --- tests never pass: 3 fix rounds, Blocked
reset_jira
make_repo "$T/r9" never
run_fg --time-skip --id orch-never "${ACTS[@]}" "$WF" "$(input "$T/r9" ',"autoProceed":true')" >/dev/null 2>"$T/err9"
check "never: exits 1" [ $? -eq 1 ]
check "never: TestsFailed" grep -q TestsFailed "$T/err9"
check "never: 3 fix rounds" state_is orch-never 'v["fixAttempts"]==3 and v["status"]=="failed" and v["error"]["type"]=="TestsFailed" and v["phaseResults"]["FIX"]["runs"]==3 and v["phaseResults"]["TEST"]["runs"]==4 and "DOCUMENT" not in v["phaseResults"]'
check "never: Blocked" jira_has 'any(r["op"]=="transition" and r["to"]=="Blocked" for r in recs) and not any(r["op"]=="transition" and r["to"]=="Done" for r in recs)'
check "never: failure comment" jira_has 'any(r["op"]=="comment" and "TestsFailed" in r["body"] for r in recs)'

# --- cancellation mid-CODE kills the agent, cleans up, ends cancelled
reset_jira
make_repo "$T/r10" pass
rm -f "$T/agent/pid-implementer.txt"
export FAKE_AGENT_SLEEP_implementer=300
id=$(start_bg --id orch-cancel "${ACTS[@]}" "$WF" "$(input "$T/r10" ',"autoProceed":true')" 2>/dev/null)
check "cancel: reaches CODE" agent_running implementer
pid=$(cat "$T/agent/pid-implementer.txt" 2>/dev/null || echo 0)
check "cancel: getState during CODE" state_is "$id" 'v["status"]=="running" and v["currentPhase"]=="CODE"'
timeout 30 "$JORCH" cancel "$id" --reason "wrong issue: see PROJ-9" >/dev/null
result_of "$id" >/dev/null 2>"$T/err10"
check "cancel: jorch result exits 1" [ $? -eq 1 ]
check "cancel: jorch result says cancelled" grep -q "cancelled" "$T/err10"
check "cancel: describe says Canceled" sh -c "timeout 30 '$JORCH' describe '$id' | grep -q 'Status: *Canceled'"
check "cancel: status cancelled in CODE" state_is "$id" 'v["status"]=="cancelled" and v["currentPhase"]=="CODE" and v["error"]["phase"]=="CODE"'
check "cancel: agent process killed" wait_for 10 sh -c "! kill -0 $pid"
check "cancel: label cancelled" jira_has 'any("orchestration-status:cancelled" in r.get("add",[]) for r in recs)'
check "cancel: Blocked" jira_has 'any(r["op"]=="transition" and r["to"]=="Blocked" for r in recs)'
check "cancel: comment" jira_has 'any(r["op"]=="comment" and "cancelled" in r["body"] for r in recs)'
check "cancel: the comment quotes the --reason" jira_has 'any(r["op"]=="comment" and "cancelled" in r["body"] and "wrong issue: see PROJ-9" in r["body"] for r in recs)'
check "cancel: getState error has the reason" state_is "$id" '"wrong issue: see PROJ-9" in v["error"]["message"]'
check "cancel: no Done" jira_has 'not any(r["op"]=="transition" and r["to"]=="Done" for r in recs)'
unset FAKE_AGENT_SLEEP_implementer

finish
