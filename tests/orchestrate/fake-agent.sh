#!/bin/sh
# fake-agent.sh - a scripted agent for the orchestrator tests (not the demo).
# Records what it was given in $FAKE_AGENT_DIR: the prompt (stdin), its cwd
# and pid, per agent name. Behaviour per agent via environment:
#   FAKE_AGENT_SLEEP_<agent>=N   sleep N seconds first (e.g. to be cancelled)
#   implementer: commits impl.txt;  bugfixer: creates FIXED and commits it;
#   docs: commits DOCS.md.
set -eu
dir=${FAKE_AGENT_DIR:?FAKE_AGENT_DIR not set}
prompt=$(cat)
agent=$(printf '%s\n' "$prompt" | sed -n 's/^AGENT: \([a-z-]*\)$/\1/p' | head -n 1)
printf '%s' "$prompt" > "$dir/prompt-$agent.txt"
pwd > "$dir/cwd-$agent.txt"
echo $$ > "$dir/pid-$agent.txt"
printf '%s' "${JIRA_API_TOKEN:-}${SLACK_WEBHOOK_URL:-}" > "$dir/secrets-$agent.txt"
printf '%s' "${FAKE_AGENT_KEEP:-}" > "$dir/kept-$agent.txt"
eval "delay=\${FAKE_AGENT_SLEEP_$agent:-0}"
if [ "$delay" != 0 ]; then sleep "$delay"; fi
case "$agent" in
implementer)
    echo impl >> impl.txt; git add impl.txt; git commit -q -m "fake: implement" ;;
bugfixer)
    # appends, so every round has something to commit
    echo fixed >> FIXED; git add FIXED; git commit -q -m "fake: fix" ;;
docs)
    echo docs >> DOCS.md; git add DOCS.md; git commit -q -m "fake: docs" ;;
esac
echo "fake $agent done"
