# tests/web/lib.sh - helpers of the `jorch web` tests (sourced after
# tests/cli/lib.sh or tests/integration/lib.sh): hermetic orchestrator
# settings, a web server started and stopped by pid, webhook signing.
SRC=${JORCH_SOURCE_DIR:-$(pwd)}
WEB_PID=""
WEB_URL=""
# Hermetic: no developer's Jira, agent or Slack; the offline Jira and the demo agent.
unset JIRA_BASE_URL JIRA_EMAIL JIRA_API_TOKEN JIRA_BEARER_TOKEN SLACK_WEBHOOK_URL JORCH_AGENT_ARGV \
    JORCH_AGENT_TIMEOUT JORCH_PROMPTS_DIR JORCH_WEB_TOKEN JORCH_JIRA_WEBHOOK_SECRET
# web_issue DIR KEY: an offline Jira issue file for KEY in DIR.
web_issue() {
  mkdir -p "$1"
  python3 - "$SRC/examples/issues/PROJ-123.json" "$2" > "$1/$2.json" <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
d["key"] = sys.argv[2]
print(json.dumps(d))
PY
}
# web_start ARGS...: starts `jorch web --listen 127.0.0.1:0 ARGS...` in the
# background and sets WEB_URL from the address it prints.
web_start() {
  local out="$WEB_TMP/web.out.$$.$RANDOM"
  "$JORCH" web --listen 127.0.0.1:0 "$@" >"$out" 2>>"$WEB_TMP/web.err" &
  WEB_PID=$!
  for _ in $(seq 100); do
    WEB_URL=$(sed -n 's|^jorch web: serving \(http://127.0.0.1:[0-9]*\)/.*|\1|p' "$out")
    [ -n "$WEB_URL" ] && return 0
    kill -0 "$WEB_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "jorch web did not start:" >&2
  cat "$WEB_TMP/web.err" >&2
  return 1
}
# web_stop: SIGTERM; succeeds when the server exits 0 (a sanitizer report
# makes it fail, and web.err shows it).
web_stop() {
  local rc=0
  if [ -n "$WEB_PID" ]; then
    kill "$WEB_PID" 2>/dev/null
    wait "$WEB_PID" 2>/dev/null
    rc=$?
  fi
  WEB_PID=""
  [ "$rc" -eq 0 ] || { echo "jorch web exited with $rc:" >&2; tail -40 "$WEB_TMP/web.err" >&2; }
  return "$rc"
}
# hmac_sig SECRET FILE: the X-Hub-Signature value Jira sends for FILE's bytes.
hmac_sig() {
  python3 - "$1" "$2" <<'PY'
import hashlib, hmac, sys
with open(sys.argv[2], "rb") as f:
    body = f.read()
print("sha256=" + hmac.new(sys.argv[1].encode(), body, hashlib.sha256).hexdigest())
PY
}
# http_code ARGS...: curl's status code for the request.
http_code() { curl -s -o "$WEB_TMP/body" -w '%{http_code}' "$@"; }
