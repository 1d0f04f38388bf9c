#!/usr/bin/env bash
# orchestrate_jira.sh - activities/jira.lua against a fake Jira server
# (tests/orchestrate/fake_jira.py on a free 127.0.0.1 port): the exact
# requests (method, path, auth, ADF body, transition lookup then POST) and
# the error mapping (401/403 -> AuthenticationError, 404 -> NotFound,
# 429 honouring Retry-After, 503 retryable), plus the offline backend.
. "${JORCH_SOURCE_DIR:-.}/tests/orchestrate/lib.sh"
LOG="$T/requests.jsonl"
python3 "$SRC/tests/orchestrate/fake_jira.py" "$T/port" "$LOG" &
CLEANUP_PIDS="$!"
wait_for 10 test -s "$T/port" || { echo "fake Jira did not start"; exit 1; }
export JIRA_BASE_URL="http://127.0.0.1:$(cat "$T/port")"
export JIRA_EMAIL=bot@example.com JIRA_API_TOKEN=s3cret
unset JIRA_BEARER_TOKEN
AUTH="Basic $(printf 'bot@example.com:s3cret' | base64)"
act() { "$JORCH" activity "$@" --activities "$SRC/activities"; }
reqs() { # reqs PYTHON-EXPR over the request list q
    python3 - "$LOG" "$1" "$AUTH" <<'PY'
import json, sys
q = [json.loads(l) for l in open(sys.argv[1])]
auth = sys.argv[3]
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
}

out=$(act jira.getIssue '"PROJ-7"' 2>"$T/e")
check "getIssue ok" [ "$(jget "$out" 'v["summary"]')" = "Make the widget blue" ]
check "getIssue: ADF description flattened" [ "$(jget "$out" '"The widget is red." in v["description"]')" = true ]
check "getIssue: GET path and basic auth" reqs 'q[-1]["method"]=="GET" and q[-1]["path"].startswith("/rest/api/3/issue/PROJ-7?fields=") and q[-1]["headers"]["authorization"]==auth'

: > "$LOG"
act jira.addComment '"PROJ-7"' '"First line\nsecond line\n\nNew paragraph with $(rm -rf /) and \"quotes\""' >/dev/null 2>"$T/e"
check "comment: POST ADF" reqs 'len(q)==1 and q[0]["method"]=="POST" and q[0]["path"]=="/rest/api/3/issue/PROJ-7/comment" and q[0]["headers"]["content-type"]=="application/json" and q[0]["body"]["body"]["type"]=="doc" and q[0]["body"]["body"]["version"]==1'
check "comment: paragraphs and hard break" reqs 'q[0]["body"]["body"]["content"]==[{"type":"paragraph","content":[{"type":"text","text":"First line"},{"type":"hardBreak"},{"type":"text","text":"second line"}]},{"type":"paragraph","content":[{"type":"text","text":"New paragraph with $(rm -rf /) and \"quotes\""}]}]'

: > "$LOG"
act jira.updateLabels '"PROJ-7"' '["orchestration-phase:PLAN"]' '["orchestration-phase:EXPLORE"]' >/dev/null 2>"$T/e"
check "labels: PUT update add/remove" reqs 'len(q)==1 and q[0]["method"]=="PUT" and q[0]["path"]=="/rest/api/3/issue/PROJ-7" and q[0]["body"]=={"update":{"labels":[{"remove":"orchestration-phase:EXPLORE"},{"add":"orchestration-phase:PLAN"}]}}'

: > "$LOG"
out=$(act jira.transition '"PROJ-7"' '"Done"' 2>"$T/e")
check "transition: lookup then POST id 31" reqs 'len(q)==2 and q[0]["method"]=="GET" and q[0]["path"]=="/rest/api/3/issue/PROJ-7/transitions" and q[1]["method"]=="POST" and q[1]["path"]=="/rest/api/3/issue/PROJ-7/transitions" and q[1]["body"]=={"transition":{"id":"31"}}'
act jira.transition '"NOTR-1"' '"Done"' >"$T/o" 2>&1
check "transition: missing one is NoSuchTransition" grep -q NoSuchTransition "$T/o"

act jira.getIssue '"AUTH-1"' >"$T/o" 2>&1; rc=$?
check "401 -> AuthenticationError" grep -q AuthenticationError "$T/o"
act jira.getIssue '"FORBID-1"' >"$T/o" 2>&1
check "403 -> AuthenticationError" grep -q AuthenticationError "$T/o"
check "secrets not printed" sh -c "! grep -q s3cret '$T/o'"
act jira.getIssue '"NOPE-1"' >"$T/o" 2>&1
check "404 -> NotFound" grep -q NotFound "$T/o"
: > "$LOG"
out=$(act jira.getIssue '"RATE-1"' 2>"$T/e")
check "429 + Retry-After: retried, then ok" [ "$(jget "$out" 'v["key"]')" = RATE-1 ]
check "429: two requests" reqs 'len(q)==2'
act jira.getIssue '"DOWN-1"' >"$T/o" 2>&1
check "503 -> retryable JiraUnavailable" grep -q JiraUnavailable "$T/o"

# bearer token wins over basic auth
: > "$LOG"
JIRA_BEARER_TOKEN=tok123 act jira.getIssue '"PROJ-8"' >/dev/null 2>&1
check "bearer auth" reqs 'q[-1]["headers"]["authorization"]=="Bearer tok123"'

# jorch.yaml instead of the environment: base_url and email from the file,
# the token from a file named with ~/ (HOME) or relative to the config file.
# Activities see jorch.yaml as jorch.config in workflow runs; a jorch built
# without that skips these checks, saying so.
mkdir -p "$T/cfg" "$T/fakehome/.config/jorch" "$T/probe"
cat > "$T/probe/probe.lua" <<'LUA'
return { config = function() return type(jorch.config) end }
LUA
cat > "$T/call.lua" <<'LUA'
return function(act, key)
  return workflow.execute_activity(act, {key}, {start_to_close_timeout = "1 minute",
    retry_policy = {maximum_attempts = 1}})
end
LUA
printf 'tok-from-home\n' > "$T/fakehome/.config/jorch/jira-token"
printf 'tok-relative\n' > "$T/cfg/bearer"
printf 'jira:\n  timeout: 5\n' > "$T/cfg/jorch.yaml"
has_config=$(JORCH_CONFIG="$T/cfg/jorch.yaml" "$JORCH" run --quiet --activities "$T/probe" "$T/call.lua" probe.config x 2>/dev/null)
if [ "$has_config" = '"table"' ]; then
    printf 'jira:\n  base_url: %s\n  email: yaml@example.com\n  api_token_file: ~/.config/jorch/jira-token\n' \
        "$JIRA_BASE_URL" > "$T/cfg/jorch.yaml"
    : > "$LOG"
    (unset JIRA_BASE_URL JIRA_EMAIL JIRA_API_TOKEN
     HOME="$T/fakehome" JORCH_CONFIG="$T/cfg/jorch.yaml" "$JORCH" run --quiet --activities "$SRC/activities" \
        "$T/call.lua" jira.getIssue PROJ-8 >/dev/null 2>&1)
    check "jorch.yaml: base_url, email, api_token_file with ~/" reqs 'len(q)==1 and q[0]["headers"]["authorization"]=="Basic "+__import__("base64").b64encode(b"yaml@example.com:tok-from-home").decode()'
    printf 'jira:\n  base_url: %s\n  bearer_token_file: bearer\n' "$JIRA_BASE_URL" > "$T/cfg/jorch.yaml"
    : > "$LOG"
    (unset JIRA_BASE_URL JIRA_EMAIL JIRA_API_TOKEN
     JORCH_CONFIG="$T/cfg/jorch.yaml" "$JORCH" run --quiet --activities "$SRC/activities" \
        "$T/call.lua" jira.getIssue PROJ-8 >/dev/null 2>&1)
    check "jorch.yaml: bearer_token_file relative to the config file" reqs 'len(q)==1 and q[0]["headers"]["authorization"]=="Bearer tok-relative"'
else
    echo "SKIP jorch.yaml checks: this jorch does not give activities jorch.config (got ${has_config:-nothing})"
fi

# offline backend
unset JIRA_BASE_URL
out=$(act jira.getIssue '"PROJ-123"' 2>/dev/null)
check "offline: reads examples/issues/PROJ-123.json" [ "$(jget "$out" 'v["backend"]')" = offline ]
act jira.addComment '"PROJ-123"' '"hello offline"' >/dev/null 2>&1
check "offline: comment recorded" grep -q "hello offline" "$JORCH_HOME/jira-offline/PROJ-123.jsonl"

finish
