#!/usr/bin/env bash
# Runs that say what they wait for (issue 12, items 8, 9, 11):
# describe shows the wait_condition's description and line, the signals the
# workflow handles, pending timers and activities (attempt, last failure,
# next retry) and which process executes the run, alive or dead; list has
# scannable columns and --status/--type filters; the live status line (forced
# with JORCH_PROGRESS=tty) says what the workflow waits for and groups lines
# under its current details; history shows each event's essentials, and its
# JSON shows payloads as JSON values unless --no-json-shorthand-payloads,
# both forms replaying.
. "$(dirname "$0")/lib.sh"
t_begin "observe"
# This test is about executors of one run each (kill -9 of a run's process,
# 'jorch resume'): start and run --detach start one per run, not the service
# (tests/cli/serve*.sh cover the service).
export JORCH_SERVICE=off

# pyjson FILE EXPR: evaluates EXPR on the JSON document `d` in FILE
pyjson() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

mkdir -p "$T_DIR/acts"
cat >"$T_DIR/acts/obs.lua" <<'LUA'
local M = {}
function M.echo(v) return v end
function M.broken() error("the service answered 503") end
return M
LUA

cat >"$T_DIR/gate.lua" <<'LUA'
local acts = workflow.activities{start_to_close_timeout = "10s"}
return function(who)
  local proceeds = 0
  workflow.on_signal("proceed", function() proceeds = proceeds + 1 end)
  workflow.on_signal("reject", function() end)
  workflow.on_query("proceeds", function() return proceeds end)
  workflow.set_current_details("REVIEW")
  acts.echo("before")
  workflow.wait_condition(function() return proceeds > 0 end, "7 days", "signal proceed (REVIEW gate)")
  workflow.set_current_details("WORK")
  return acts.echo("hello " .. who)
end
LUA

cat >"$T_DIR/plain_wait.lua" <<'LUA'
return function()
  local done = false
  workflow.on_signal("finish", function() done = true end)
  workflow.wait_condition(function() return done end)
  return "finished"
end
LUA

cat >"$T_DIR/retrying.lua" <<'LUA'
return function(attempts)
  return workflow.execute_activity("broken", {}, {start_to_close_timeout = "10s",
    retry_policy = {initial_interval = "1 hour", maximum_attempts = attempts}})
end
LUA

# wait_for CMD...: polls until CMD succeeds (10 s at most)
wait_for() { for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
waiting_at_gate() { "$JORCH" describe "$1" 2>/dev/null | grep -q "Waiting for:  signal proceed"; }

# ---------------------------------------------------------------- describe
"$JORCH" start --id g1 --activities "$T_DIR/acts" "$T_DIR/gate.lua" ada >/dev/null
check "the run reaches its gate" wait_for waiting_at_gate g1
run_jorch describe g1
expect_contains "describe: what it waits for, in the script's words" "$OUT" "Waiting for:  signal proceed (REVIEW gate), since "
expect_contains "describe: the workflow's current details" "$OUT" "Details:      REVIEW"
expect_contains "describe: the line it waits at" "$OUT" "main: condition at $T_DIR/gate.lua:9 (signal proceed (REVIEW gate))"
expect_contains "describe: the signals it handles" "$OUT" "Signals:      proceed, reject"
expect_contains "describe: its queries" "$OUT" "Queries:      proceeds"
check "describe: the pending timer (the gate's timeout), firing in about 7 days" \
  grep -Eq "^  timer [0-9]+: fires at .*\(in 16[78]h" <<<"$OUT"
check "describe: the executing process, alive" grep -Eq "^Executed by:  process [0-9]+ on .* \(alive\)$" <<<"$OUT"

"$JORCH" describe g1 --output json >"$T_DIR/d.json"
expect_eq "describe json: jorch.waitingFor" "$(pyjson "$T_DIR/d.json" 'd["jorch"]["waitingFor"]')" "signal proceed (REVIEW gate)"
expect_eq "describe json: jorch.currentDetails" "$(pyjson "$T_DIR/d.json" 'd["jorch"]["currentDetails"]')" "REVIEW"
expect_eq "describe json: the wait's kind and line" \
  "$(pyjson "$T_DIR/d.json" 'd["jorch"]["waits"][0]["kind"] + " " + d["jorch"]["waits"][0]["site"].rsplit("/",1)[1]')" \
  "condition gate.lua:9"
timer_id=$(pyjson "$T_DIR/d.json" '",".join(t["timerId"] for t in d["jorch"]["pendingTimers"])')
expect_eq "describe json: one pending timer, the wait's timeout" "$timer_id" \
  "$(pyjson "$T_DIR/d.json" 'd["jorch"]["waits"][0]["timeoutTimerId"]')"
expect_eq "describe json: executor alive" "$(pyjson "$T_DIR/d.json" 'd["jorch"]["executor"]["alive"]')" "True"
pid=$(pyjson "$T_DIR/d.json" 'd["jorch"]["executor"]["pid"]')
check "describe json: the executor's pid is a jorch process" grep -q jorch "/proc/$pid/cmdline"
expect_eq "describe json: Temporal's fields are still there" \
  "$(pyjson "$T_DIR/d.json" 'd["workflowExecutionInfo"]["status"]')" "WORKFLOW_EXECUTION_STATUS_RUNNING"

# ---------------------------------------------------------------- list
"$JORCH" run --quiet --id done1 --activities "$T_DIR/acts" "$T_DIR/retrying.lua" 5 >/dev/null 2>&1 &
runpid=$!
check "a retrying run has its first failure recorded" wait_for sh -c "'$JORCH' describe done1 | grep -q 'next retry at'"
run_jorch list
header=$(head -1 <<<"$OUT")
expect_contains "list: scannable columns" "$header" "WORKFLOW ID"
for col in TYPE STATUS SINCE "WAITING FOR"; do expect_contains "list: column $col" "$header" "$col"; done
check "list: g1 row says what it waits for" grep -Eq "^g1 +gate +Running +[0-9-]+ [0-9:]+ +signal proceed \(REVIEW gate\)$" <<<"$OUT"
check "list: the retrying run says which activity and when it retries" \
  grep -Eq "^done1 +retrying +Running .*activity broken \(attempt 2, retry in " <<<"$OUT"
run_jorch list --type gate
check "list --type keeps that type" grep -q "^g1 " <<<"$OUT"
check "list --type drops the others" bash -c '! grep -q "^done1 " <<<"$1"' _ "$OUT"
run_jorch list --status completed
check "list --status filters" bash -c '! grep -q "^g1 " <<<"$1"' _ "$OUT"
run_jorch list --status nonsense
expect_eq "list: unknown status is a usage error" "$RC" "2"

# ---------------------------------------------------------------- pending activities
run_jorch describe done1
expect_contains "describe: pending activity with attempt, last failure" "$OUT" "broken (id 1): attempt 2 of 5, scheduled, next retry at "
check "describe: the last failure's message" grep -Eq "last failure: .*obs.lua:3: the service answered 503$" <<<"$OUT"
"$JORCH" describe done1 --output json >"$T_DIR/r.json"
expect_eq "describe json: Temporal's nextAttemptScheduleTime" \
  "$(pyjson "$T_DIR/r.json" '"nextAttemptScheduleTime" in d["pendingActivities"][0]')" "True"
expect_eq "describe json: lastFailure message" \
  "$(pyjson "$T_DIR/r.json" 'd["pendingActivities"][0]["lastFailure"]["message"].endswith("the service answered 503")')" "True"
"$JORCH" terminate done1 >/dev/null
wait $runpid 2>/dev/null

# ---------------------------------------------------------------- a wait without description
"$JORCH" start --id p1 "$T_DIR/plain_wait.lua" >/dev/null
check "an undescribed wait names its line and the signals that could end it" \
  wait_for sh -c "'$JORCH' describe p1 | grep -qF 'Waiting for:  a condition at $T_DIR/plain_wait.lua:4 (signals it handles: finish)'"
"$JORCH" describe p1 --output json >"$T_DIR/p.json"
ppid1=$(pyjson "$T_DIR/p.json" 'd["jorch"]["executor"]["pid"]')
kill -9 "$ppid1"
for _ in $(seq 100); do kill -0 "$ppid1" 2>/dev/null || break; sleep 0.05; done
"$JORCH" signal p1 finish '{"why": "done", "n": 12345678901234567}'
run_jorch describe p1
expect_contains "a signal no process will handle: the run waits for a process" "$OUT" \
  "Waiting for:  a process to execute it ('jorch resume p1')"
run_jorch list
check "list says so too" grep -q "^p1 .* a process to execute it ('jorch resume p1')$" <<<"$OUT"
run_jorch resume --quiet p1
expect_eq "resume runs the signal's workflow task" "$OUT" '"finished"'

# ---------------------------------------------------------------- a sleeping run
cat >"$T_DIR/sleeper.lua" <<'LUA'
return function()
  workflow.sleep("1 hour")
end
LUA
"$JORCH" start --id s1 "$T_DIR/sleeper.lua" >/dev/null
check "a sleep is a timer at its line, with when it fires" \
  wait_for sh -c "'$JORCH' describe s1 | grep -Eq 'Waiting for:  a timer at $T_DIR/sleeper.lua:2 \(fires in 59m'"
"$JORCH" terminate s1 >/dev/null

# ---------------------------------------------------------------- dead executor
kill -9 "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
sleep 0.1
run_jorch describe g1
check "describe: a dead executor is called dead, with the way on" \
  grep -Eq "^Executed by:  process $pid on .* \(dead\); 'jorch resume g1' continues the run$" <<<"$OUT"
"$JORCH" describe g1 --output json >"$T_DIR/d2.json"
expect_eq "describe json: executor not alive" "$(pyjson "$T_DIR/d2.json" 'd["jorch"]["executor"]["alive"]')" "False"

# ---------------------------------------------------------------- the live status line
JORCH_PROGRESS=tty "$JORCH" resume --activities "$T_DIR/acts" g1 >"$T_DIR/res.out" 2>"$T_DIR/res.err" &
rpid=$!
check "status line: what the workflow waits for, since when" \
  wait_for grep -Eq "g1: waiting for signal proceed \(REVIEW gate\) since [0-9]{2}:[0-9]{2}" "$T_DIR/res.err"
check "status line: no more 'activities running, next timer'" bash -c '! grep -q "next timer or retry" "$1"' _ "$T_DIR/res.err"
"$JORCH" signal g1 proceed
wait $rpid
expect_eq "resumed run finished" "$(cat "$T_DIR/res.out")" '"hello ada"'
check "terminal: the new details are a header" grep -q "== WORK" "$T_DIR/res.err"
check "terminal: routine activity lines are quiet" bash -c '! grep -q "activity echo (id .*) started" "$1"' _ "$T_DIR/res.err"

JORCH_PROGRESS=tty "$JORCH" run --verbose --id v1 --activities "$T_DIR/acts" "$T_DIR/gate.lua" bob \
  >/dev/null 2>"$T_DIR/v.err" &
vpid=$!
check "terminal --verbose: activity lines shown, grouped under the header" \
  wait_for grep -Eq "^  activity echo \(id 1\) started, attempt 1" "$T_DIR/v.err"
check "terminal: the first header" grep -q "== REVIEW" "$T_DIR/v.err"
"$JORCH" signal v1 proceed
wait $vpid

"$JORCH" run --id plain1 --activities "$T_DIR/acts" "$T_DIR/gate.lua" cy >/dev/null 2>"$T_DIR/plain.err" &
ppid=$!
wait_for waiting_at_gate plain1
"$JORCH" signal plain1 proceed
wait $ppid
check "redirected output: every line, prefixed" grep -q "^\[plain1\] activity echo (id 1) started, attempt 1" "$T_DIR/plain.err"
check "redirected output: details as a plain line" grep -q "^\[plain1\] == REVIEW" "$T_DIR/plain.err"
check "redirected output: no status line" bash -c '! grep -q "waiting for" "$1"' _ "$T_DIR/plain.err"

# ---------------------------------------------------------------- history
run_jorch history g1
expect_contains "history: header" "$(head -1 <<<"$OUT")" "DETAILS"
check "history: workflow start with type and input" grep -Eq "WorkflowExecutionStarted +gate on jorch, input \[\"ada\"\]" <<<"$OUT"
check "history: activity name and id" grep -Eq "ActivityTaskScheduled +echo \(id 1\), input \[\"before\"\]" <<<"$OUT"
check "history: activity attempt" grep -Eq "ActivityTaskStarted +echo, attempt 1" <<<"$OUT"
check "history: activity result" grep -Eq "ActivityTaskCompleted +echo, result \[\"before\"\]" <<<"$OUT"
check "history: timer duration" grep -Eq "TimerStarted +timer $timer_id, 7 days" <<<"$OUT"
check "history: signal name and input" grep -Eq "WorkflowExecutionSignaled +signal proceed, input none" <<<"$OUT"
check "history: result" grep -Eq "WorkflowExecutionCompleted +result \[\"hello ada\"\]" <<<"$OUT"
run_jorch history done1
check "history: termination reason" grep -Eq "WorkflowExecutionTerminated +reason: " <<<"$OUT"
"$JORCH" run --quiet --id once1 --activities "$T_DIR/acts" "$T_DIR/retrying.lua" 1 >/dev/null 2>&1
run_jorch history once1
check "history: activity failure message and retry state" \
  grep -Eq "ActivityTaskFailed +broken, MAXIMUM_ATTEMPTS_REACHED: .*the service answered 503" <<<"$OUT"
check "history: workflow failure message" \
  grep -Eq "WorkflowExecutionFailed +failure: .*the service answered 503" <<<"$OUT"
run_jorch history p1
check "history: signal input as JSON" grep -Fq 'signal finish, input [{"n":12345678901234567,"why":"done"}]' <<<"$OUT"

"$JORCH" history g1 --output json >"$T_DIR/h.json"
expect_eq "history json: input as a JSON value (shorthand)" \
  "$(pyjson "$T_DIR/h.json" 'd["events"][0]["workflowExecutionStartedEventAttributes"]["input"]')" "['ada']"
expect_eq "history json: result as a JSON value" \
  "$(pyjson "$T_DIR/h.json" '[e for e in d["events"] if e["eventType"]=="EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"][0]["workflowExecutionCompletedEventAttributes"]["result"]')" \
  "['hello ada']"
"$JORCH" history p1 --output json >"$T_DIR/hp.json"
check "history json: big integers keep every digit" grep -q '"n": 12345678901234567' "$T_DIR/hp.json"
"$JORCH" history g1 --output json --no-json-shorthand-payloads >"$T_DIR/hraw.json"
expect_eq "history json raw: payloads with metadata and base64 data" \
  "$(pyjson "$T_DIR/hraw.json" 'd["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]["metadata"]["encoding"]')" \
  "anNvbi9wbGFpbg=="
"$JORCH" history g1 --output json --raw >"$T_DIR/hraw2.json"
check "--raw is the same as --no-json-shorthand-payloads" cmp -s "$T_DIR/hraw.json" "$T_DIR/hraw2.json"
run_jorch replay "$T_DIR/gate.lua" "$T_DIR/h.json"
expect_eq "replay reads the shorthand form" "$RC" "0"
run_jorch replay "$T_DIR/gate.lua" "$T_DIR/hraw.json"
expect_eq "replay reads the raw form" "$RC" "0"
run_jorch replay "$T_DIR/plain_wait.lua" "$T_DIR/hp.json"
expect_eq "replay reads a shorthand signal input" "$RC" "0"
"$JORCH" describe g1 --output json >"$T_DIR/dc.json"
expect_eq "describe json: memo payloads as JSON values" \
  "$(pyjson "$T_DIR/dc.json" 'd["workflowExecutionInfo"]["memo"]["fields"]["jorch.script"]')" "$T_DIR/gate.lua"
check "describe json of a closed run has no jorch view" bash -c '! grep -q "\"jorch\":" "$1"' _ "$T_DIR/dc.json"

t_end
