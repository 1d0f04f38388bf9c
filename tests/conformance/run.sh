#!/usr/bin/env bash
# tests/conformance/run.sh - jorch's histories against Temporal's and
# sdk-core's (issue 8). Every workflow shape is written twice, in Lua
# (shapes/NAME.lua) and with the official Python SDK (shapes.py), and run on
# a real Temporal dev server: the Lua one by `jorch worker`, the Python one by
# a Python worker. Then, per shape:
#  (a) the Python-recorded history replays with `jorch replay` against the
#      Lua script, and the jorch-recorded one with the Python SDK's Replayer;
#  (b) the embedded backend's history of the Lua shape has the same event
#      types in the same order with the same key attributes as the server's
#      (conform.py compare). Where events of two workers meet (an activity
#      completing while a workflow task waits for a worker), a loaded
#      machine can order them differently on the two backends: a shape that
#      differs runs again on both, up to twice, before it fails;
#  and both languages and both backends return the same result.
#
#   JORCH=build/jorch JORCH_SOURCE_DIR=. bash tests/conformance/run.sh
#
# To add a shape: shapes/NAME.lua, the same workflow (name NAME) in
# shapes.py with its input in SHAPES, and NAME in the list below. Keep each
# shape free of races between workers (e.g. space parallel activities'
# completions a second apart), so both backends write one order.
# Needs the temporal CLI and the temporalio Python package (scripts/setup);
# fails, never skips, without them.

PASSED=0
FAILED=0
if [ -z "${JORCH_SOURCE_DIR:-}" ] || [ ! -f "$JORCH_SOURCE_DIR/tests/integration/lib.sh" ]; then
    echo "FAIL: set JORCH_SOURCE_DIR to the jorch source tree (got '${JORCH_SOURCE_DIR:-}')" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
SRC=$(cd "$JORCH_SOURCE_DIR" && pwd)
C=$SRC/tests/conformance
. "$SRC/tests/integration/lib.sh"
it_require
if ! python3 -c 'import temporalio' 2>/dev/null; then
    echo "FAIL: the temporalio Python package is missing: run scripts/setup, which installs it with pip" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
temporal_dev_start
set +e +o pipefail
it_home
OUT=$TC_TMP/out
mkdir -p "$OUT"

ok() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
bad() {
    FAILED=$((FAILED + 1))
    echo "FAIL - $1" >&2
    shift
    for d in "$@"; do printf '%s\n' "$d" | sed 's/^/       /' >&2; done
}

it_worker_start "$TC_TMP/worker.log" conform-lua --workflows "$C/shapes" --activities "$C/activities"

SHAPES="sequential timer timer_activity signal_gate wait_timeout parallel retry_twice cancel_backoff"
SHAPES="$SHAPES cancel_running patch continue_as_new"

# Runs a Lua shape on the embedded backend as emb-NAME (or emb-NAME-SUFFIX).
embedded() { # NAME [ID-SUFFIX]
    local n=$1 id="emb-$1${2:+-$2}" args=()
    [ "$n" = continue_as_new ] && args=(0)
    if [ "$n" = signal_gate ]; then
        "$JORCH" start --id "$id" --activities "$C/activities" "$C/shapes/$n.lua" >/dev/null 2>&1
        for _ in $(seq 1 200); do
            "$JORCH" history "$id" --output json 2>/dev/null | grep -q EVENT_TYPE_WORKFLOW_TASK_COMPLETED && break
            sleep 0.05
        done
        "$JORCH" signal "$id" go '"yes"' >/dev/null 2>&1
        timeout 60 "$JORCH" result "$id" >"$OUT/$id.result" 2>"$OUT/$id.err"
    else
        timeout 60 "$JORCH" run --quiet --id "$id" --activities "$C/activities" "$C/shapes/$n.lua" "${args[@]}" \
            >"$OUT/$id.result" 2>"$OUT/$id.err"
    fi
    # raw payloads, as `temporal workflow show` prints them: the Python SDK's
    # replayer reads only that form
    "$JORCH" history "$id" --output json --no-json-shorthand-payloads >"$OUT/$id.json" 2>>"$OUT/$id.err"
}

echo "# $(date +%T) servers up; running the shapes on the dev server"
timeout 120 python3 "$C/conform.py" run "$TEMPORAL_ADDRESS" "$OUT" >"$TC_TMP/driver.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then bad "the Python driver ran every shape on the dev server" "$(tail -20 "$TC_TMP/driver.log")"; fi
# then on the embedded backend (not at the same time: less load, fewer races)
echo "# $(date +%T) running the Lua shapes on the embedded backend"
EPIDS=()
for n in $SHAPES; do embedded "$n" & EPIDS+=($!); done
for p in "${EPIDS[@]}"; do wait "$p"; done

echo "# $(date +%T) shapes done; replaying and comparing"
for n in $SHAPES; do
    py=$(jq -r --arg k "py-$n" '.[$k] // "missing"' "$OUT/results.json" 2>/dev/null)
    lua=$(jq -r --arg k "lua-$n" '.[$k] // "missing"' "$OUT/results.json" 2>/dev/null)
    emb=$(jq -c -S . "$OUT/emb-$n.result" 2>/dev/null)
    if [ "$py" = "$lua" ] && [ "$py" = "$emb" ] && [ "${py#ERROR}" = "$py" ]; then
        ok "$n: the same result in Python, on jorch worker and embedded: $py"
    else
        bad "$n: results differ" "python: $py" "jorch worker: $lua" "embedded: $emb $(head -3 "$OUT/emb-$n.err")"
    fi
    # (a) Python-recorded history -> jorch replay against the Lua script
    for h in "$OUT/py-$n.json" "$OUT/py-$n.2.json"; do
        [ -f "$h" ] || continue
        if out=$("$JORCH" replay --quiet "$C/shapes/$n.lua" "$h" 2>&1); then
            ok "$n: the Python-recorded $(basename "$h") replays with jorch replay"
        else
            bad "$n: the Python-recorded $(basename "$h") does not replay with jorch replay" "$out"
        fi
    done
    # (b) embedded history = server history of the same Lua shape
    srv=$OUT/lua-$n.json
    [ "$n" = continue_as_new ] && srv=$OUT/lua-$n.2.json
    out=$(python3 "$C/conform.py" compare "$srv" "$OUT/emb-$n.json" 2>&1)
    same=$?
    for try in r1 r2; do
        [ $same -ne 0 ] && [ "$n" != continue_as_new ] || break
        echo "# $n: the histories differ; running it again on both backends ($try)"
        timeout 60 python3 "$C/conform.py" again "$TEMPORAL_ADDRESS" "$OUT" "$n" "$try" >>"$TC_TMP/driver.log" 2>&1
        embedded "$n" "$try"
        out=$(python3 "$C/conform.py" compare "$OUT/lua-$n-$try.json" "$OUT/emb-$n-$try.json" 2>&1)
        same=$?
    done
    if [ $same -eq 0 ]; then
        ok "$n: the embedded history has the server's events, order and key attributes"
    else
        bad "$n: the embedded history differs from the server's" "$out"
    fi
done
# (a) jorch-recorded (jorch worker) histories -> the Python SDK's Replayer
while IFS= read -r line; do
    case "$line" in
        ok*) ok "${line#ok   }" ;;
        FAIL*) bad "${line#FAIL }" ;;
    esac
done < <(python3 "$C/conform.py" replay "$OUT"/lua-*.json 2>&1)

if grep -qi "Sanitizer\|runtime error" "$TC_TMP/worker.log" "$OUT"/*.err 2>/dev/null; then
    bad "sanitizer reports" "$(grep -i -A5 "Sanitizer\|runtime error" "$TC_TMP/worker.log" "$OUT"/*.err | head -40)"
fi
it_workers_stop
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
