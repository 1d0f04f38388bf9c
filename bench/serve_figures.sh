#!/usr/bin/env bash
# bench/serve_figures.sh [JORCH] [N]: figures of `jorch serve` with N runs
# (default 1000) waiting at a signal gate: starts per second from 8
# processes, the service's memory per waiting run with its engine cached
# and evicted (after a restart, before the runs' next task), idle CPU, and
# signal-to-result latency. Uses a temporary store; stops its services.
set -u
J=${1:-build/jorch}
N=${2:-1000}
J=$(realpath "$J")
D=$(mktemp -d "${TMPDIR:-/tmp}/jorch-bench.XXXXXX")
export JORCH_HOME=$D/home
trap 'p=$(cat "$JORCH_HOME/serve.lock" 2>/dev/null); [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; sleep 0.5; rm -rf "$D"' EXIT
cat >"$D/gate.lua" <<'LUA'
return function(n)
  local got
  workflow.on_signal("proceed", function(v) got = v end)
  workflow.wait_condition(function() return got ~= nil end, "7 days")
  return n
end
LUA
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
runs() { "$J" serve --status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs_count"])'; }
spid() { cat "$JORCH_HOME/serve.lock"; }

"$J" serve --cache-size $((N + 10)) --cache-memory 4096 >/dev/null
sleep 0.5
base=$(rss "$(spid)")
t0=$(date +%s%N)
seq 0 $((N - 1)) | xargs -P 8 -I{} "$J" start --id b{} "$D/gate.lua" {} >/dev/null
t1=$(date +%s%N)
echo "starts: $N from 8 processes in $(((t1 - t0) / 1000000)) ms = $((N * 1000000000 / (t1 - t0))) starts/s"
until [ "$(runs)" -ge "$N" ]; do sleep 0.2; done
sleep 1
p=$(spid)
cached=$(rss "$p")
echo "memory: service RSS $base KiB idle, $cached KiB with $N waiting runs cached = $(((cached - base) * 1024 / N)) bytes per run"
c0=$(awk '{print $14 + $15}' "/proc/$p/stat"); s0=$(date +%s%N)
sleep 5
c1=$(awk '{print $14 + $15}' "/proc/$p/stat"); s1=$(date +%s%N)
hz=$(getconf CLK_TCK)
echo "idle CPU: $(((c1 - c0) * 1000000000 / hz * 10000 / (s1 - s0))) hundredths of a percent of one core over 5 s with $N waiting runs"
total=0
for i in $(seq 0 19); do
  a=$(date +%s%N)
  "$J" signal "b$i" proceed 1 >/dev/null
  "$J" result "b$i" >/dev/null
  b=$(date +%s%N)
  total=$((total + b - a))
done
echo "signal to result (two CLI processes, sequential, mean of 20): $((total / 20 / 1000000)) ms"
kill -TERM "$p"
while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
"$J" serve --cache-size 1 >/dev/null
until [ "$(runs)" -ge $((N - 20)) ]; do sleep 0.2; done
sleep 1
p=$(spid)
ev=$(rss "$p")
echo "memory: after a restart (engines not loaded until the next task): $ev KiB with $((N - 20)) runs = $(((ev - base) * 1024 / (N - 20))) bytes per run"
