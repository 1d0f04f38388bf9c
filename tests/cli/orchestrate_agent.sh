#!/usr/bin/env bash
# orchestrate_agent.sh - activities/agent.lua with a scripted fake agent:
# the prompt arrives on stdin, cwd is the repository, a hostile issue title
# passes through verbatim and is never executed, a timeout kills the agent.
. "${JORCH_SOURCE_DIR:-.}/tests/orchestrate/lib.sh"
use_fake_agent
make_repo "$T/repo" pass
PWN="/tmp/pwned-$$-$RANDOM"
rm -f "$PWN" "$PWN-2"
TITLE="Fix \"quotes\" 'and' \$(touch $PWN) \`touch $PWN-2\` ; rm -rf / #
second line"
args=$(python3 -c 'import json,sys; print(json.dumps({"agent":"implementer","phase":"CODE","repo":sys.argv[1],"workflowId":"wf-agent","issue":{"key":"PROJ-1","summary":sys.argv[2],"description":"d"}}))' "$T/repo" "$TITLE")
out=$(JIRA_API_TOKEN=s3cret SLACK_WEBHOOK_URL=https://hooks.invalid/x FAKE_AGENT_KEEP=kept \
    "$JORCH" activity agent.run "$args" --activities "$SRC/activities" 2>"$T/e")
check "agent.run succeeds" [ $? -eq 0 ]
check "jorch's secrets never reach the agent" [ ! -s "$T/agent/secrets-implementer.txt" ]
check "what agent.env lists is kept" [ "$(cat "$T/agent/kept-implementer.txt")" = kept ]
check "prompt on stdin with the title verbatim" python3 -c 'import sys; sys.exit(0 if sys.argv[2] in open(sys.argv[1]).read() else 1)' "$T/agent/prompt-implementer.txt" "$TITLE"
check "cwd is the repository" [ "$(cat "$T/agent/cwd-implementer.txt")" = "$(cd "$T/repo" && pwd -P)" ]
check "hostile \$(...) never executed" [ ! -e "$PWN" ]
check "hostile backticks never executed" [ ! -e "$PWN-2" ]
check "output excerpt returned" [ "$(jget "$out" '"fake implementer done" in v["output"]')" = true ]
check "output artifact saved" [ -s "$(jget "$out" 'v["artifact"]')" ]
check "agent committed in the repo" [ "$(git -C "$T/repo" log -1 --format=%s)" = "fake: implement" ]

# timeout kills the agent
export FAKE_AGENT_SLEEP_planner=60 JORCH_AGENT_TIMEOUT=2
args=$(python3 -c 'import json,sys; print(json.dumps({"agent":"planner","phase":"PLAN","repo":sys.argv[1],"workflowId":"wf-agent","issue":{"key":"PROJ-1","summary":"s"}}))' "$T/repo")
start=$(date +%s)
"$JORCH" activity agent.run "$args" --activities "$SRC/activities" >"$T/o" 2>&1
rc=$?
check "timeout: fails with AgentTimeout" grep -q AgentTimeout "$T/o"
check "timeout: returns promptly" [ $(( $(date +%s) - start )) -lt 30 ]
pid=$(cat "$T/agent/pid-planner.txt" 2>/dev/null || echo 0)
check "timeout: agent process killed" wait_for 10 sh -c "! kill -0 $pid"
unset FAKE_AGENT_SLEEP_planner JORCH_AGENT_TIMEOUT

# unknown agent names never reach the filesystem or argv
"$JORCH" activity agent.run '{"agent":"../../etc/passwd","repo":"/tmp"}' --activities "$SRC/activities" >"$T/o" 2>&1
check "bad agent name: ValidationError" grep -q ValidationError "$T/o"

rm -f "$PWN" "$PWN-2"
finish
