#!/usr/bin/env bash
# jorch serve retries a failed workflow task by itself, as Temporal does:
# after a first delay (JORCH_TASK_RETRY_MS here, 10 s by default), doubling
# per failure in a row. The script fails its task until the task's own time
# (workflow.now(), from history) passes a bound given as input, so only the
# retries themselves can let it complete: no request is sent. describe and
# serve --status show the attempts and the next retry; the run's log has one
# line per attempt; only the first failure in a row is recorded in the
# history (as on Temporal); a foreground run does not retry.
. "$(dirname "$0")/lib.sh"
t_begin "serve_retry"
J=$JORCH
W=$T_DIR/wf
mkdir -p "$W"
cat >"$W/notyet.lua" <<'LUA'
return function(not_before)
  if workflow.now() < not_before then
    error("not yet: " .. string.format("%.3f", not_before - workflow.now()) .. " s to go")
  end
  return "done"
end
LUA
svc_pid() { cat "$JORCH_HOME/serve.lock" 2>/dev/null; }
now_plus() { python3 -c "import time,sys; print(round(time.time() + float(sys.argv[1]), 3))" "$1"; }
failed_count() { "$J" history "$1" | grep -c WorkflowTaskFailed; }
# attempts ID: the failed attempts in a row that describe shows (0: none)
attempts() { "$J" describe "$1" 2>/dev/null | sed -nE 's/^Failed task: +([0-9]+) attempts? in a row.*/\1/p' | grep . || echo 0; }
# watch_attempts ID FILE: in the background, the wall time at which describe
# first shows each attempt count, and when the run completed, one per line
watch_attempts() {
    python3 - "$J" "$1" >"$2" <<'PY' &
import re, subprocess, sys, time
j, wid = sys.argv[1], sys.argv[2]
seen, end = 0, time.time() + 30
while time.time() < end:
    out = subprocess.run([j, "describe", wid], capture_output=True, text=True).stdout
    m = re.search(r"^Failed task: +([0-9]+) attempts? in a row", out, re.M)
    n = int(m.group(1)) if m else 0
    if n > seen:
        seen = n
        print(n, time.time(), flush=True)
    if re.search(r"^Status: +Completed", out, re.M):
        print("done", time.time(), flush=True)
        break
    time.sleep(0.01)
PY
}

# ---------------------------------------------------------------- bad setting
JORCH_TASK_RETRY_MS=soon run_jorch serve
expect_eq "a bad JORCH_TASK_RETRY_MS: usage error" "$RC" "2"
expect_contains "it names the variable and the default" "$ERR" "JORCH_TASK_RETRY_MS (for tests; unset it for the default of 10 s)"

# ---------------------------------------------------------------- retried until it completes
# first delay 500 ms: failures at about 0, 0.5, 1.5 s, success at 3.5 s
JORCH_TASK_RETRY_MS=500 "$J" serve >/dev/null
watch_attempts nb1 "$T_DIR/nb1.times" # watching before the run exists: it sees attempt 1 at once
watcher=$!
sleep 0.3
"$J" start --id nb1 "$W/notyet.lua" "$(now_plus 2.5)" >/dev/null
for _ in $(seq 100); do [ "$(attempts nb1)" -ge 2 ] && break; sleep 0.05; done
run_jorch describe nb1
check "describe: the attempts in a row and the next retry" \
  grep -Eq "^Failed task:  [23] attempts in a row; the service tries it again at .*\(in [0-9]" <<<"$OUT"
run_jorch serve --status
check "serve --status: the attempt and when it is tried again" \
  grep -Eq "^nb1 +a fix: workflow task failed: .*not yet.* \(attempt [23], tried again at [0-9:]+\)" <<<"$OUT"
att=$("$J" serve --status --output json | python3 -c '
import json, sys
r = [r for r in json.load(sys.stdin)["runs"] if r["workflow_id"] == "nb1"][0]
print(r["task_failed"], r["task_attempts"] >= 2, r["task_retry_at"] > 0)')
expect_eq "serve --status --output json: task_attempts, task_retry_at" "$att" "True True True"
run_jorch result nb1 --timeout 20s
expect_eq "the run completes with no request sent" "$OUT" '"done"'
wait "$watcher"
expect_eq "only the first of the failures in a row is in its history, as on Temporal" "$(failed_count nb1)" "1"
# as seen by describe, polled: attempt 1, 2, 3, then completed
gaps=$(python3 - "$T_DIR/nb1.times" <<'PY'
import sys
t = dict(l.split() for l in open(sys.argv[1]))
try:
    g = [float(t["2"]) - float(t["1"]), float(t["3"]) - float(t["2"]), float(t["done"]) - float(t["3"])]
except KeyError as e:
    print("missing", e, open(sys.argv[1]).read().replace("\n", "; "))
    sys.exit()
print(" ".join("ok" if x >= want * 0.8 else "%.3f<%.1f" % (x, want) for x, want in zip(g, [0.5, 1.0, 2.0])))
PY
)
expect_eq "the delays double (0.5, 1, 2 s)" "$gaps" "ok ok ok"
log=$JORCH_HOME/logs/nb1.log
expect_eq "the run's log: one line per failed attempt" "$(grep -c "workflow task failed" "$log")" "3"
check "each with its attempt and next retry" grep -Eq "workflow task failed \(attempt 3; tried again at [0-9:]+, in 2 s\)" "$log"
run_jorch describe nb1
check "describe of the completed run: no failed task" bash -c "! grep -q '^Failed task' <<<\"\$1\"" _ "$OUT"

# ---------------------------------------------------------------- a request resets the backoff
"$J" start --id nb2 "$W/notyet.lua" "$(now_plus 3600)" >/dev/null
for _ in $(seq 100); do [ "$(attempts nb2)" -ge 3 ] && break; sleep 0.05; done
"$J" signal nb2 anything 1 >/dev/null 2>&1
for _ in $(seq 100); do "$J" describe nb2 | grep -q "^Failed task:  1 attempt in a row" && break; sleep 0.05; done
run_jorch describe nb2
check "after a request the count starts again" grep -Eq "^Failed task:  1 attempt in a row; the service tries it again" <<<"$OUT"
"$J" terminate nb2 >/dev/null

# ---------------------------------------------------------------- foreground run: no retry
pid=$(svc_pid)
kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
run_jorch run --quiet --id fg1 "$W/notyet.lua" "$(now_plus 3600)"
expect_eq "a foreground run still exits 1 on a failed task" "$RC" "1"
run_jorch describe fg1
check "describe: no automatic retry without the service" \
  grep -Eq "^Failed task:  1 attempt in a row; a request, 'jorch resume' or the service's next start tries it again" <<<"$OUT"
"$J" terminate fg1 >/dev/null
t_end
