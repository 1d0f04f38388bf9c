#!/usr/bin/env bash
# jorch serve: one process executes every open run. A timer fires and the
# run moves on while no CLI process runs; a run whose script loops forever
# fails its own workflow task while the others proceed on; a cache of one engine
# still completes 100 concurrent runs; SIGTERM stops the service cleanly and
# a restart continues; idle CPU with many waiting runs is near zero;
# start hands runs to a service it starts on demand, one per store.
. "$(dirname "$0")/lib.sh"
t_begin "serve"
J=$JORCH
W=$T_DIR/wf
mkdir -p "$W" "$T_DIR/acts"
cat >"$W/gate.lua" <<'LUA'
return function(name)
  local got
  workflow.on_signal("proceed", function(v) got = v end)
  workflow.on_query("got", function() return got end)
  workflow.wait_condition(function() return got ~= nil end)
  return name .. ":" .. tostring(got)
end
LUA
cat >"$W/timer.lua" <<'LUA'
local acts = workflow.activities{start_to_close_timeout = "30s"}
return function(name)
  workflow.sleep("2s")
  return acts.echo(name .. " after the timer")
end
LUA
cat >"$W/loop.lua" <<'LUA'
return function()
  while true do end
end
LUA
cat >"$W/steps.lua" <<'LUA'
local acts = workflow.activities{start_to_close_timeout = "30s"}
return function(n)
  local a = acts.echo("a" .. n)
  workflow.sleep("100ms")
  local b = acts.echo("b" .. n)
  return a .. b
end
LUA
cat >"$T_DIR/acts/echo.lua" <<'LUA'
return { echo = function(x) return x end }
LUA
A=(--activities "$T_DIR/acts")
svc_pid() { cat "$JORCH_HOME/serve.lock" 2>/dev/null; }
svc_count() { pgrep -c -f -- "serve --foreground --home $JORCH_HOME" 2>/dev/null || true; }

# ---------------------------------------------------------------- on-demand start
run_jorch start --id g1 "$W/gate.lua" ada
expect_eq "start prints the id" "$OUT" "g1"
check "start started the service" test "$(svc_count)" = 1
check "the service's log is in logs/serve.log" grep -q "service [0-9]* started" "$JORCH_HOME/logs/serve.log"
run_jorch start --id g2 "$W/gate.lua" bob
expect_eq "a second start uses the same service" "$(svc_count)" "1"
run_jorch serve --status
expect_contains "serve --status: the service's process" "$OUT" "service: process $(svc_pid)"
check "serve --status: its runs and what they wait for" grep -Eq "^g1 +a condition at .*gate.lua:5" <<<"$OUT"
run_jorch describe g1
check "describe: the service executes the run" grep -Eq "^Executed by:  the service \(process $(svc_pid) on .*, alive\)$" <<<"$OUT"
run_jorch query g1 got
expect_eq "query on a live run answers (from the service's engine)" "$OUT" "null"
run_jorch serve
expect_eq "a second service for the same store is refused" "$RC" "2"
expect_contains "it names the running one" "$ERR" "a service already executes the runs of"
t0=$(date +%s%N)
"$J" signal g1 proceed '"x"' >/dev/null
out=$("$J" result g1 --timeout 10s)
t1=$(date +%s%N)
expect_eq "a signal reaches the service at once" "$out" '"ada:x"'
echo "     signal to result: $(((t1 - t0) / 1000000)) ms"

# ---------------------------------------------------------------- timers with no CLI process
"$J" start --id t1 "${A[@]}" "$W/timer.lua" tim >/dev/null
sleep 3.5
run_jorch describe t1
expect_contains "the timer fired and the run moved on while no CLI process ran" "$OUT" "Status:       Completed"
expect_eq "its result" "$("$J" result t1)" '"tim after the timer"'

# ---------------------------------------------------------------- a runaway script
JORCH_INSTRUCTION_BUDGET=20000000 "$J" start --id loop1 "$W/loop.lua" >/dev/null 2>&1
"$J" start --id g3 "$W/gate.lua" cy >/dev/null
"$J" signal g3 proceed 3 >/dev/null
expect_eq "the others proceed on while a script loops" "$("$J" result g3 --timeout 60s)" '"cy:3"'
for _ in $(seq 200); do "$J" history loop1 2>/dev/null | grep -q WorkflowTaskFailed && break; sleep 0.1; done
run_jorch history loop1
expect_contains "the looping run failed its own workflow task" "$OUT" "WorkflowTaskFailed"
run_jorch serve --status
check "serve --status shows the failed task" grep -Eq "^loop1 +a fix: workflow task failed" <<<"$OUT"
# (its retries, every 10 s and more, would disturb the idle CPU check below)
"$J" terminate loop1 >/dev/null

# ---------------------------------------------------------------- SIGTERM and restart
pid=$(svc_pid)
kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
check "SIGTERM stops the service" bash -c "! kill -0 $pid 2>/dev/null"
check "it says so in its log" grep -q "service $pid stopping" "$JORCH_HOME/logs/serve.log"
check "the socket is gone" test ! -e "$JORCH_HOME/serve.sock"
run_jorch describe g2
check "its runs are free for the next executor" grep -Eq "^Executed by:  no process" <<<"$OUT"
run_jorch serve --status
expect_eq "serve --status without a service: exit 1" "$RC" "1"
"$J" signal g2 proceed 2 >/dev/null
run_jorch serve --concurrency 4
expect_eq "serve goes to the background" "$RC" "0"
expect_eq "a restart continues the runs" "$("$J" result g2 --timeout 20s)" '"bob:2"'

# ---------------------------------------------------------------- a failed task left by a foreground run
# The service's housekeeping runs every third of the lease (1 s here). A run
# whose foreground `jorch run` exited on a failed task is not taken by it
# (it would only fail the task again and race `jorch resume`).
kill -TERM "$(svc_pid)"
for _ in $(seq 100); do [ -e "$JORCH_HOME/serve.sock" ] || break; sleep 0.05; done
JORCH_LEASE_SECONDS=3 "$J" serve >/dev/null
JORCH_INSTRUCTION_BUDGET=20000000 run_jorch run --quiet --id fl1 "$W/loop.lua"
expect_eq "a foreground run fails its task: exit 1" "$RC" "1"
sleep 2.5
run_jorch describe fl1
check "after two housekeeping passes nobody executes it" grep -Eq "^Executed by:  no process" <<<"$OUT"
expect_eq "its task ran once" "$("$J" history fl1 | grep -c WorkflowTaskFailed)" "1"
JORCH_INSTRUCTION_BUDGET=20000000 run_jorch resume --quiet fl1
expect_eq "resume runs it here and fails the task again: exit 1" "$RC" "1"
expect_contains "resume: the instruction limit, not a refusal" "$ERR" "instruction"
"$J" terminate fl1 >/dev/null

# ---------------------------------------------------------------- a cache of one engine
kill -TERM "$(svc_pid)"
for _ in $(seq 100); do [ -e "$JORCH_HOME/serve.sock" ] || break; sleep 0.05; done
"$J" serve --cache-size 1 >/dev/null
N=100
for i in $(seq $N); do echo "$i"; done | xargs -P 4 -I{} "$J" start --id c{} "${A[@]}" "$W/steps.lua" {} >/dev/null
bad=0
for i in $(seq $N); do
  r=$("$J" result "c$i" --timeout 60s)
  [ "$r" = "\"a${i}b${i}\"" ] || bad=$((bad + 1))
done
expect_eq "a cache of size 1 completes $N concurrent runs" "$bad" "0"
cached=$("$J" serve --status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["cached"])')
check "at most one engine stays cached" test "$cached" -le 1

# ---------------------------------------------------------------- idle CPU
for i in $(seq 200); do echo "$i"; done | xargs -P 4 -I{} "$J" start --id idle{} "$W/gate.lua" {} >/dev/null
for _ in $(seq 100); do
  n=$("$J" serve --status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs_count"])')
  [ "$n" -ge 201 ] && break
  sleep 0.1
done
sleep 1
pid=$(svc_pid)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(ticks); s0=$(date +%s%N)
sleep 3
c1=$(ticks); s1=$(date +%s%N)
hz=$(getconf CLK_TCK)
# (c1-c0)/hz seconds of CPU over (s1-s0) ns, as hundredths of a percent of one core
cpu=$(( (c1 - c0) * 1000000000 / hz * 10000 / (s1 - s0) ))
echo "     idle CPU with $n waiting runs: $((cpu / 100)).$(printf '%02d' $((cpu % 100)))% of a core over 3 s; RSS $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
check "idle CPU with many waiting runs under 5% of a core" test "$cpu" -lt 500

kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
t_end
