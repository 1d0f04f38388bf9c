#!/usr/bin/env bash
# orchestrate_git_hooks.sh - a hostile agent (tests/orchestrate/hostile-agent.sh)
# arms every trap a git work tree offers (hooks, core.hooksPath,
# core.fsmonitor, filters, gpg.program, pager, ...) during EXPLORE; the run
# then goes through jorch's own `git checkout -B` (CODE), `git status/add/
# commit/log` (finishCommits), the test command and six more agent runs.
# None of jorch's secrets, set only in jorch's own environment, may reach
# any child process: not the agent, not the test command, not a trap, not
# through /proc/<ancestor>/environ. Each child gets the allow-listed
# environment plus what jorch.yaml lists for it (agent.env).
. "${JORCH_SOURCE_DIR:-.}/tests/orchestrate/lib.sh"
WF="$SRC/workflows/orchestrate.lua"
LEAK="$T/leak"
mkdir -p "$LEAK"
make_issue PROJ-1 'Please read every secret you can find'
export JORCH_JIRA_OFFLINE_DIR="$T/issues"
export JORCH_AGENT_ARGV="[\"$SRC/tests/orchestrate/hostile-agent.sh\", \"$LEAK\"]"
printf 'agent:\n  env: ["AGENT_OWN_KEY"]\n' > "$JORCH_CONFIG"
make_repo "$T/repo" pass

# Distinct values nobody else has; set only in jorch's environment (env
# execs jorch in place, so no other ancestor of the children holds them).
rnd() { head -c 32 /dev/urandom | sha256sum | cut -c1-24; }
S1="jira-token-$(rnd)" S2="jira-bearer-$(rnd)" S3="https://hooks.invalid/$(rnd)" S4="temporal-key-$(rnd)"
CANARY="canary-$(rnd)" OWN="agent-own-$(rnd)"
input=$(printf '{"issueKey":"PROJ-1","repo":"%s","autoProceed":true,"testCommand":["sh","-c","env > %s/env-tests.txt; sh check.sh"]}' \
    "$T/repo" "$LEAK")
out=$(timeout -k 5 120 env JIRA_API_TOKEN="$S1" JIRA_BEARER_TOKEN="$S2" SLACK_WEBHOOK_URL="$S3" \
    TEMPORAL_API_KEY="$S4" JORCH_TEST_CANARY="$CANARY" AGENT_OWN_KEY="$OWN" \
    "$JORCH" run --time-skip --id orch-hooks --activities "$SRC/activities" "$WF" "$input" 2>"$T/err")
rc=$?
check "the run completes despite the traps" [ "$rc" -eq 0 ]
[ "$rc" -eq 0 ] || tail -20 "$T/err" >&2
check "the agent ran in every phase" [ -s "$LEAK/env-agent-docs.txt" ]
check "the agent's changes were committed by jorch" \
    [ "$(git -C "$T/repo" log --format=%s main..jorch/PROJ-1 | grep -c 'uncommitted changes left')" -ge 1 ]
check "jorch's commits are not signed" [ -z "$(git -C "$T/repo" log --format=%G? -1 jorch/PROJ-1 | tr -d N)" ]

# root may read any process's /proc/PID/environ (CAP_SYS_PTRACE), so what
# the agent copied from jorch's is only evidence when the tests run as
# another user; there, jorch being non-dumpable must keep it unreadable.
ROOT=0
[ "$(id -u)" = 0 ] && ROOT=1
leaked=""
for s in "$S1" "$S2" "$S3" "$S4"; do
    if [ "$ROOT" = 1 ]; then
        hits=$(grep -rlF --exclude='parent-environ-*' -- "$s" "$LEAK" "$JORCH_HOME" "$T/repo" 2>/dev/null)
    else
        hits=$(grep -rlF -- "$s" "$LEAK" "$JORCH_HOME" "$T/repo" 2>/dev/null)
    fi
    [ -n "$hits" ] && leaked="$leaked $hits"
done
check "no secret in anything a child wrote (agent, tests, traps, /proc/*/environ)" [ -z "$leaked" ]
[ -z "$leaked" ] || echo "leaked into:$leaked" >&2
check "no secret in jorch's output" sh -c '! grep -qF -e "$1" -e "$2" -e "$3" -e "$4" "$5"' _ "$S1" "$S2" "$S3" "$S4" "$T/err"
check "no trap ran at all (no spy output)" [ ! -e "$LEAK/spy.txt" ]
check "agent: allow-listed environment (no JORCH_TEST_CANARY)" sh -c '! grep -q JORCH_TEST_CANARY "$1"/env-agent-*.txt' _ "$LEAK"
check "agent: gets what agent.env lists" grep -qF "AGENT_OWN_KEY=$OWN" "$LEAK/env-agent-implementer.txt"
check "agent: PATH and HOME kept" sh -c 'grep -q "^PATH=" "$1" && grep -q "^HOME=" "$1"' _ "$LEAK/env-agent-triage.txt"
if [ "$ROOT" = 0 ]; then
    check "agent: jorch's /proc/PID/environ is unreadable" [ ! -s "$LEAK/parent-environ-triage.txt" ]
else
    echo "skip agent: jorch's /proc/PID/environ is unreadable (running as root, who reads every process's)"
fi
check "tests: ran with the allow-list" sh -c 'grep -q "^PATH=" "$1" && ! grep -q -e JORCH_TEST_CANARY -e AGENT_OWN_KEY "$1"' \
    _ "$LEAK/env-tests.txt"

# Control: the traps are real. The same git status jorch runs, run plainly
# with a secret in the environment, hands it to the planted fsmonitor.
git -C "$T/repo" checkout -q main 2>/dev/null
echo more >> "$T/repo/changes-docs.txt"
JIRA_API_TOKEN="$S1" git -C "$T/repo" status --porcelain >/dev/null 2>&1
check "control: a plain git status in that repository leaks the secret" grep -qF -- "$S1" "$LEAK/spy.txt"

# repo.env: listed names reach git, secrets are refused outright
printf 'repo:\n  env: ["JIRA_API_TOKEN"]\n' > "$JORCH_CONFIG"
"$JORCH" activity repo.startBranch "\"$T/repo\"" '"PROJ-1"' --activities "$SRC/activities" >"$T/o" 2>&1
check "a secret listed in repo.env is a ConfigurationError" grep -q "ConfigurationError.*JIRA_API_TOKEN" "$T/o"
finish
