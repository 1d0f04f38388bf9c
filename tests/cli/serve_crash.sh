#!/usr/bin/env bash
# kill -9 of jorch serve with 500 runs in flight (activities running,
# timers pending, runs at a signal gate): after a restart every run
# finishes with the right result, an activity whose completion was
# committed never runs again (side effects counted in a file the activity
# appends to), and every signal is delivered exactly once (signals sent
# while no service ran included).
# JORCH_SERVE_TEST_RUNS sets the number of runs (default 500; the
# sanitizer build uses fewer, see scripts/test).
. "$(dirname "$0")/lib.sh"
t_begin "serve_crash"
J=$JORCH
N=${JORCH_SERVE_TEST_RUNS:-500}
P=8
mkdir -p "$T_DIR/acts"
cat >"$T_DIR/acts/marks.lua" <<'LUA'
return {
  -- appends "N STEP" to $MARK_FILE: how often each step of each run really ran
  mark = function(n, step)
    local h = assert(io.open(os.getenv("MARK_FILE"), "a"))
    h:write(n, " ", step, "\n")
    h:close()
    jorch.sleep(tonumber(os.getenv("MARK_DELAY") or "0"))
    return step
  end,
}
LUA
cat >"$T_DIR/flow.lua" <<'LUA'
local acts = workflow.activities{start_to_close_timeout = "30s", retry_policy = {initial_interval = "200ms"}}
return function(n)
  local signals = 0
  workflow.on_signal("approve", function() signals = signals + 1 end)
  local a = acts.mark(n, "A")
  workflow.sleep(2)
  workflow.wait_condition(function() return signals > 0 end)
  local b = acts.mark(n, "B")
  workflow.sleep(n % 3)
  local c = acts.mark(n, "C")
  return string.format("%d:%s%s%s:%d", n, a, b, c, signals)
end
LUA
export MARK_FILE="$T_DIR/marks" MARK_DELAY=0.3
: >"$MARK_FILE"
svc_pid() { cat "$JORCH_HOME/serve.lock" 2>/dev/null; }
status_n() { "$J" serve --status --output json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("runs_count", -1))'; }
par() { # par CMD-WITH-{}: runs it for 0..N-1 from P processes
  seq 0 $((N - 1)) | xargs -P "$P" -I{} bash -c "$1"
}

"$J" serve --concurrency 16 >/dev/null
pid=$(svc_pid)
# each process starts its share; the even runs get their signal right away
# (it arrives while their first activity or their timer is in flight), the
# odd ones only after the kill, while no service runs
par "'$J' start --id c{} --activities '$T_DIR/acts' '$T_DIR/flow.lua' {} >/dev/null 2>>'$T_DIR/start.err' || echo {} >>'$T_DIR/failed'; [ \$(({} % 2)) = 1 ] || '$J' signal c{} approve >/dev/null"
expect_eq "all $N started" "$(cat "$T_DIR/failed" 2>/dev/null | wc -l)" "0"
kill -9 "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
check "the service is dead" bash -c "! kill -0 $pid 2>/dev/null"
nopen=$("$J" list --status running | tail -n +2 | wc -l)
inflight=$(python3 - "$MARK_FILE" <<'PY'
import collections, sys
begun = collections.Counter(l.split()[1] for l in open(sys.argv[1]) if l.strip())
print(" ".join(f"{s}:{begun[s]}" for s in "ABC"))
PY
)
echo "     killed with $nopen runs open; activity attempts begun per step: $inflight"
check "runs were in flight at the kill" test "$nopen" -gt $((N / 2))
seq 1 2 $((N - 1)) | xargs -P "$P" -I{} "$J" signal c{} approve >/dev/null 2>>"$T_DIR/signal.err"
check "signals while no service runs are accepted" bash -c '! grep -q . "$1"' _ "$T_DIR/signal.err"

# what was committed before the restart: completed activities per run
par "echo {} \$('$J' history c{} --output json | grep -c EVENT_TYPE_ACTIVITY_TASK_COMPLETED)" | sort -n >"$T_DIR/committed"
cp "$MARK_FILE" "$T_DIR/marks-before"

"$J" serve --concurrency 32 >/dev/null
check "a new service starts" test -n "$(svc_pid)" -a "$(svc_pid)" != "$pid"
for _ in $(seq 900); do [ "$(status_n)" = 0 ] && break; sleep 0.1; done
expect_eq "every run finished" "$("$J" list --status running | tail -n +2 | wc -l)" "0"
par "r=\$('$J' result c{} --timeout 5s 2>/dev/null); [ \"\$r\" = '\"{}:ABC:1\"' ] || echo \"c{}: \$r\"" >"$T_DIR/wrong"
expect_eq "each with the right result, its signal delivered exactly once" "$(wc -l <"$T_DIR/wrong")" "0"
head -3 "$T_DIR/wrong"

# a step whose completion was committed ran exactly as often as before the restart
python3 - "$T_DIR/committed" "$T_DIR/marks-before" "$MARK_FILE" >"$T_DIR/rerun" <<'PY'
import collections, sys
committed = {int(a): int(b) for a, b in (l.split() for l in open(sys.argv[1]) if l.strip())}
def count(path):
    c = collections.Counter()
    for l in open(path):
        if l.strip():
            n, s = l.split()
            c[(int(n), s)] += 1
    return c
before, after = count(sys.argv[2]), count(sys.argv[3])
for n, k in committed.items():
    for s in "ABC"[:k]:
        if after[(n, s)] != before[(n, s)]:
            print(f"run {n} step {s}: committed before the kill, ran {before[(n, s)]} then {after[(n, s)]} times")
    for s in "ABC":
        if after[(n, s)] < 1:
            print(f"run {n} step {s} never ran")
PY
expect_eq "committed activities never ran again" "$(wc -l <"$T_DIR/rerun")" "0"
head -3 "$T_DIR/rerun"
reran=$(python3 - "$MARK_FILE" <<'PY'
import collections, sys
c = collections.Counter(l.strip() for l in open(sys.argv[1]) if l.strip())
print(sum(v - 1 for v in c.values()))
PY
)
echo "     attempts run again after the kill (in flight, not committed): $reran"
kill -TERM "$(svc_pid)"
t_end
