#!/usr/bin/env bash
# A foreground `jorch run` holds its run from the transaction that creates
# it: a `jorch serve` that starts while the run's process is paused between
# the run's creation and its runner (JORCH_FAULT=runner-open:stop) leaves the
# run alone, and so it does with the new run of a continue-as-new that the
# foreground process goes on with. Were the run free in that gap, the
# service would take it and the foreground process would stop with "is
# being executed by process N" (exit 2).
. "$(dirname "$0")/lib.sh"
t_begin "foreground lease"
W=$T_DIR/wf
mkdir -p "$W"
cat >"$W/gate.lua" <<'LUA'
return function(name)
  local got
  workflow.on_signal("go", function(v) got = v end)
  workflow.wait_condition(function() return got ~= nil end)
  return name .. ":" .. got
end
LUA
cat >"$W/again.lua" <<'LUA'
return function(gen)
  if gen < 2 then workflow.continue_as_new(gen + 1) end
  local got
  workflow.on_signal("go", function(v) got = v end)
  workflow.wait_condition(function() return got ~= nil end)
  return "gen" .. gen .. ":" .. got
end
LUA

# stopped PID: waits (up to 10 s) until PID is stopped (SIGSTOP: state T)
stopped() {
  local st
  for _ in $(seq 200); do
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ "$st" = T ] && return 0
    [ -z "$st" ] && return 1
    sleep 0.05
  done
  return 1
}
# serve_passed: starts the service and waits until its first pass has
# handled the open runs it found: it logs "taking N open run(s)", then takes
# them in its first group, before it answers any request (serve --status)
serve_passed() {
  "$JORCH" serve >/dev/null 2>&1 || return 1
  for _ in $(seq 200); do
    grep -q "taking 1 open run" "$JORCH_HOME/logs/serve.log" 2>/dev/null && break
    sleep 0.05
  done
  grep -q "taking 1 open run" "$JORCH_HOME/logs/serve.log" && "$JORCH" serve --status >"$T_DIR/status" 2>&1
}
serve_stop() {
  local p
  p=$(cat "$JORCH_HOME/serve.lock" 2>/dev/null)
  [ -n "$p" ] && kill -TERM "$p" 2>/dev/null
  for _ in $(seq 100); do [ -n "$p" ] && kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
}
# owned_by PID ID: waits (up to 10 s) until describe names PID as ID's executor
owned_by() {
  for _ in $(seq 200); do
    "$JORCH" describe "$2" 2>/dev/null | grep -Eq "^Executed by:  process $1 on " && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# 1. a new run: paused before its runner takes it, a service starts and passes
export JORCH_HOME="$T_DIR/new"
JORCH_FAULT=runner-open:stop "$JORCH" run --quiet --id fg1 "$W/gate.lua" ada >"$T_DIR/out1" 2>"$T_DIR/err1" &
pid=$!
check "new run: the foreground process pauses before its runner" stopped $pid
check "new run: a service starts and makes its first pass meanwhile" serve_passed
check "new run: the service left the run alone" bash -c "! grep -q '^fg1 ' '$T_DIR/status'"
kill -CONT $pid
check "new run: the foreground process executes it" owned_by $pid fg1
"$JORCH" signal fg1 go 1 >/dev/null 2>&1
wait $pid
RC=$?
expect_eq "new run: the foreground run completes (exit 0)" "$RC:$(cat "$T_DIR/out1")" '0:"ada:1"'
case "$(cat "$T_DIR/err1")" in
  *"being executed by"*) fail "new run: no 'being executed by' refusal" "$(cat "$T_DIR/err1")" ;;
  *) ok "new run: no 'being executed by' refusal" ;;
esac
serve_stop

# 2. continue-as-new: paused before its runner takes the new run
export JORCH_HOME="$T_DIR/can"
JORCH_FAULT=runner-open:2:stop "$JORCH" run --quiet --id fg2 "$W/again.lua" 1 >"$T_DIR/out2" 2>"$T_DIR/err2" &
pid=$!
check "continue-as-new: the foreground process pauses before the new run's runner" stopped $pid
expect_eq "continue-as-new: the first run is closed" \
  "$("$JORCH" list --output json 2>/dev/null | grep -c WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW)" "1"
check "continue-as-new: a service starts and makes its first pass meanwhile" serve_passed
check "continue-as-new: the service left the new run alone" bash -c "! grep -q '^fg2 ' '$T_DIR/status'"
kill -CONT $pid
check "continue-as-new: the foreground process executes the new run" owned_by $pid fg2
"$JORCH" signal fg2 go 2 >/dev/null 2>&1
wait $pid
RC=$?
expect_eq "continue-as-new: the foreground run completes (exit 0)" "$RC:$(cat "$T_DIR/out2")" '0:"gen2:2"'
case "$(cat "$T_DIR/err2")" in
  *"being executed by"*) fail "continue-as-new: no 'being executed by' refusal" "$(cat "$T_DIR/err2")" ;;
  *) ok "continue-as-new: no 'being executed by' refusal" ;;
esac
serve_stop
t_end
