# tests/orchestrate/lib.sh - shared helpers of the tests/cli/orchestrate_*.sh
# scripts: a temp dir (removed on exit), check/summary counters, JSON access.
set -u
: "${JORCH:?JORCH must name the jorch binary}"
SRC=${JORCH_SOURCE_DIR:-$(pwd)}
T=$(mktemp -d "${TMPDIR:-/tmp}/jorch-orch-test.XXXXXX")
export JORCH_HOME="$T/home"
mkdir -p "$JORCH_HOME"
# Hermetic: a developer's ./jorch.yaml (ctest runs in the repository root)
# or JIRA_*/SLACK_* environment must never send the tests to real services.
printf '# empty: tests configure through the environment\n' > "$T/jorch.yaml"
export JORCH_CONFIG="$T/jorch.yaml"
unset JIRA_BASE_URL JIRA_EMAIL JIRA_API_TOKEN JIRA_BEARER_TOKEN SLACK_WEBHOOK_URL \
    JORCH_AGENT_ARGV JORCH_AGENT_TIMEOUT JORCH_PROMPTS_DIR JORCH_JIRA_OFFLINE_DIR FEATURE_TEMPORAL_ENABLED
PASSED=0
FAILED=0
CLEANUP_PIDS=""
# Runs still open when the script ends (a failed check, a bug) are
# terminated so no background executor or agent outlives the test.
# KEEP_T=1 keeps the temp dir for debugging.
cleanup() {
    for p in $CLEANUP_PIDS; do kill "$p" 2>/dev/null || true; done
    local open
    open=$(timeout 30 "$JORCH" list --status Running --output json 2>/dev/null |
        python3 -c 'import json,sys; [print(r.get("workflowId") or r.get("execution",{}).get("workflowId","")) for r in json.load(sys.stdin)]' 2>/dev/null)
    for id in $open; do
        timeout 30 "$JORCH" terminate "$id" --reason "test cleanup" >/dev/null 2>&1 || true
    done
    if [ -n "${KEEP_T:-}" ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

ok() { PASSED=$((PASSED + 1)); echo "ok   $1"; }
not_ok() { FAILED=$((FAILED + 1)); echo "FAIL $1" >&2; }
check() { # check NAME COMMAND...
    local name=$1; shift
    if "$@"; then ok "$name"; else not_ok "$name"; fi
}
finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

# jget JSON-TEXT PYTHON-EXPR: evaluates EXPR with `v` bound to the JSON value.
jget() {
    python3 -c 'import json,sys; v=json.loads(sys.argv[1]); r=eval(sys.argv[2]); print(json.dumps(r) if not isinstance(r,str) else r)' "$1" "$2" 2>/dev/null
}

# A git repository whose test command is `sh check.sh`; MODE pass|once|never.
make_repo() { # make_repo DIR MODE
    local d=$1
    mkdir -p "$d"
    case "$2" in
    pass) printf 'echo "1 passed, 0 failed"\n' > "$d/check.sh" ;;
    once) printf 'if [ -f FIXED ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; exit 1; fi\n' > "$d/check.sh" ;;
    never) printf 'echo "0 passed, 2 failed"; exit 1\n' > "$d/check.sh" ;;
    esac
    git -C "$d" init -q -b main
    git -C "$d" config user.name test
    git -C "$d" config user.email test@example.invalid
    git -C "$d" add -A
    git -C "$d" commit -q -m init
}

# An offline Jira issue file.
make_issue() { # make_issue KEY SUMMARY
    mkdir -p "$T/issues"
    python3 -c 'import json,sys; print(json.dumps({"key":sys.argv[1],"fields":{"summary":sys.argv[2],"description":"Line one.\nLine two.","issuetype":{"name":"Bug"},"status":{"name":"To Do"}}}))' "$1" "$2" > "$T/issues/$1.json"
}

# The agent gets an allow-listed environment plus what agent.env lists
# (activities/lib/common.lua): the fake agent's settings are listed here.
use_fake_agent() {
    mkdir -p "$T/agent"
    printf 'agent:\n  env: [FAKE_AGENT_DIR, FAKE_AGENT_KEEP%s]\n' \
        "$(for a in triage requirements planner architect implementer bugfixer docs; do printf ', FAKE_AGENT_SLEEP_%s' "$a"; done)" \
        > "$JORCH_CONFIG"
    export FAKE_AGENT_DIR="$T/agent"
    export JORCH_AGENT_ARGV="[\"$SRC/tests/orchestrate/fake-agent.sh\"]"
    export JORCH_JIRA_OFFLINE_DIR="$T/issues"
}

# wait_for SECONDS COMMAND...: polls until COMMAND succeeds.
wait_for() {
    local n=$(($1 * 10)); shift
    while [ "$n" -gt 0 ]; do
        if "$@" 2>/dev/null; then return 0; fi
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

state_of() { "$JORCH" query "$1" getState 2>/dev/null; }
state_is() { # state_is ID PYTHON-EXPR (v = getState)
    local s
    s=$(state_of "$1") || return 1
    [ "$(jget "$s" "bool($2)")" = "true" ]
}
