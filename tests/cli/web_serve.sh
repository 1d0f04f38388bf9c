#!/usr/bin/env bash
# web_serve.sh - `jorch serve --web`: the embedded service serves the
# approval page in its own process. A run `jorch start` handed to the
# service is approved through the page and moves on; a Jira webhook start
# is handed to the same service; SIGTERM stops both (exit 0); web.serve:
# true in jorch.yaml does what --web does.
. "$JORCH_SOURCE_DIR/tests/cli/lib.sh"
WEB_TMP=$T_DIR
. "$JORCH_SOURCE_DIR/tests/web/lib.sh"
SERVE_PID=""
stop_serve() {
  local rc=0
  if [ -n "$SERVE_PID" ]; then kill -TERM "$SERVE_PID" 2>/dev/null; wait "$SERVE_PID"; rc=$?; fi
  SERVE_PID=""
  return "$rc"
}
trap 'stop_serve; t_cleanup' EXIT
t_begin "jorch serve --web"

mkdir -p "$JORCH_HOME"
export JORCH_JIRA_OFFLINE_DIR="$T_DIR/issues"
for k in PROJ-21 PROJ-22; do web_issue "$JORCH_JIRA_OFFLINE_DIR" "$k"; done
printf 'jira-shared-secret\n' > "$T_DIR/jira-secret"
cat > "$T_DIR/jorch.yaml" <<YAML
web:
  listen: 127.0.0.1:0
  activities: $SRC/activities
  workflow: $SRC/workflows/orchestrate.lua
  jira:
    secret_file: jira-secret
    auto_proceed: false
YAML
export JORCH_CONFIG="$T_DIR/jorch.yaml"
WF="$SRC/workflows/orchestrate.lua"
waits_at() { for _ in $(seq 300); do "$JORCH" list | grep -E "^$1 " | grep -qF "$2" && return 0; sleep 0.1; done; return 1; }
serve_url() { # serve_url LOG: the page's address the service printed
  for _ in $(seq 100); do
    WEB_URL=$(sed -n 's|^jorch serve: approval page, Jira webhook and metrics at \(http://[0-9.:]*\)/$|\1|p' "$1")
    [ -n "$WEB_URL" ] && return 0
    sleep 0.1
  done
  cat "$1" >&2
  return 1
}

"$JORCH" serve --foreground --web --home "$JORCH_HOME" 2>"$T_DIR/serve.err" &
SERVE_PID=$!
check "jorch serve --web prints the page's address" serve_url "$T_DIR/serve.err"
"$JORCH" start --home "$JORCH_HOME" --activities "$SRC/activities" "$WF" PROJ-21 '{"autoProceed":false}' >/dev/null
check "PROJ-21 (executed by the service) waits at the EXPLORE gate" waits_at PROJ-21 "EXPLORE gate"
page=$(curl -s "$WEB_URL/runs/PROJ-21")
expect_contains "the service's page shows the EXPLORE output" "$page" "requirements agent"
csrf=$(sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' <<<"$page" | head -1)
expect_eq "Approve on the service's page" "$(http_code -d "csrf=$csrf" "$WEB_URL/runs/PROJ-21/approve")" 303
check "PROJ-21 moves on to the PLAN gate" waits_at PROJ-21 "PLAN gate"

cat > "$T_DIR/label.json" <<'JSON'
{"webhookEvent":"jira:issue_updated","issue":{"key":"PROJ-22"},
 "changelog":{"items":[{"field":"labels","fromString":"","toString":"ai-orchestrate"}]}}
JSON
expect_eq "a signed label webhook is accepted" \
  "$(http_code -H "X-Hub-Signature: $(hmac_sig jira-shared-secret "$T_DIR/label.json")" --data-binary "@$T_DIR/label.json" "$WEB_URL/webhooks/jira")" 200
check "PROJ-22 waits at the EXPLORE gate" waits_at PROJ-22 "EXPLORE gate"
run_jorch serve --status --home "$JORCH_HOME" --output json
expect_contains "the service executes the webhook's run" "$OUT" '"PROJ-22"'
check "SIGTERM stops the service and its page (exit 0)" stop_serve
check "the page is gone" bash -c '! curl -s -o /dev/null "$1"' _ "$WEB_URL/"

# web.serve: true asks for the page without --web
printf '  serve: true\n' >> "$T_DIR/jorch.yaml"
"$JORCH" serve --foreground --home "$JORCH_HOME" 2>"$T_DIR/serve2.err" &
SERVE_PID=$!
check "web.serve: true serves the page too" serve_url "$T_DIR/serve2.err"
expect_contains "and it lists the runs" "$(curl -s "$WEB_URL/")" 'data-id="PROJ-21"'
check "SIGTERM stops it (exit 0)" stop_serve
t_end
