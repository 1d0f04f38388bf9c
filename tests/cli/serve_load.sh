#!/usr/bin/env bash
# jorch serve under load: 2,000 runs waiting on a signal, started
# concurrently from 8 processes with no service running: no failed start,
# no "database is locked", exactly one service process (started on demand),
# and every run completes after its signal with the right result.
# JORCH_SERVE_TEST_RUNS sets the number of runs (default 2000; the
# sanitizer build uses fewer, see scripts/test).
. "$(dirname "$0")/lib.sh"
t_begin "serve_load"
J=$JORCH
N=${JORCH_SERVE_TEST_RUNS:-2000}
P=8
cat >"$T_DIR/gate.lua" <<'LUA'
return function(n)
  local got
  workflow.on_signal("proceed", function(v) got = v end)
  workflow.wait_condition(function() return got ~= nil end)
  return n * 1000 + got
end
LUA
svc_count() { pgrep -c -f -- "serve --foreground --home $JORCH_HOME" 2>/dev/null || true; }

# a store exists before the storm (as in everyday use); no service runs
"$J" list >/dev/null
check "no service runs before" test "$(svc_count)" = 0

# P processes start N runs at once
t0=$(date +%s%N)
for p in $(seq 0 $((P - 1))); do
  (
    for i in $(seq "$p" "$P" $((N - 1))); do
      "$J" start --id "r$i" "$T_DIR/gate.lua" "$i" >/dev/null 2>>"$T_DIR/start-$p.err" || echo "r$i" >>"$T_DIR/failed"
    done
  ) &
done
wait
t1=$(date +%s%N)
echo "     $N starts from $P processes: $(((t1 - t0) / 1000000)) ms, $((N * 1000000000 / (t1 - t0))) starts/s"
expect_eq "no failed start" "$(cat "$T_DIR/failed" 2>/dev/null | wc -l)" "0"
check "no 'database is locked' (nor any other error) on any starter's stderr" \
  bash -c '! cat "$1"/start-*.err | grep -q .' _ "$T_DIR"
if cat "$T_DIR"/start-*.err | grep -q .; then cat "$T_DIR"/start-*.err | sort | uniq -c | head -5; fi
expect_eq "exactly one service process" "$(svc_count)" "1"
pid=$(cat "$JORCH_HOME/serve.lock")

# every run is taken by the service and waits at its gate
for _ in $(seq 600); do
  n=$("$J" serve --status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs_count"])')
  [ "$n" -ge "$N" ] && break
  sleep 0.1
done
expect_eq "the service executes all $N runs" "$n" "$N"
echo "     service RSS with $N waiting runs: $(awk '/VmRSS/ {print $2, $3}' "/proc/$pid/status")"
grep -q "database is locked" "$JORCH_HOME/logs/serve.log" && fail "the service's log has 'database is locked'"

# signals from P processes; each run completes with n*1000 + its signal
t0=$(date +%s%N)
for p in $(seq 0 $((P - 1))); do
  (
    for i in $(seq "$p" "$P" $((N - 1))); do
      "$J" signal "r$i" proceed $((i % 7)) >/dev/null 2>>"$T_DIR/signal-$p.err" || echo "r$i" >>"$T_DIR/sigfailed"
    done
  ) &
done
wait
t1=$(date +%s%N)
echo "     $N signals from $P processes: $(((t1 - t0) / 1000000)) ms"
expect_eq "no failed signal" "$(cat "$T_DIR/sigfailed" 2>/dev/null | wc -l)" "0"
check "no error on any signaller's stderr" bash -c '! cat "$1"/signal-*.err | grep -q .' _ "$T_DIR"
for _ in $(seq 600); do
  n=$("$J" serve --status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs_count"])')
  [ "$n" -eq 0 ] && break
  sleep 0.1
done
expect_eq "every run closed" "$n" "0"
# results, from P processes
for p in $(seq 0 $((P - 1))); do
  (
    for i in $(seq "$p" "$P" $((N - 1))); do
      r=$("$J" result "r$i" --timeout 5s 2>/dev/null)
      [ "$r" = "$((i * 1000 + i % 7))" ] || echo "r$i: got '$r'" >>"$T_DIR/wrong"
    done
  ) &
done
wait
expect_eq "all $N completed with the right result" "$(cat "$T_DIR/wrong" 2>/dev/null | wc -l)" "0"
head -3 "$T_DIR/wrong" 2>/dev/null
expect_eq "still one service process" "$(svc_count)" "1"
kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
t_end
