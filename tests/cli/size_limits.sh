#!/usr/bin/env bash
# size_limits.sh - Temporal's size limits on both backends' engine and on
# the embedded store: a command over 2 MiB or a workflow task over 4 MiB
# fails the workflow (quickly, in little memory, with a history that still
# replays); payloads over 512 KiB warn; a history over 50 MiB is
# terminated; run logs cut long lines and rotate.
. "$(dirname "$0")/lib.sh"
t_begin "size limits"
W="$T_DIR/w"
mkdir -p "$W" "$JORCH_HOME"
# max RSS (KiB) of a command, and its exit status, via getrusage
rss_run() { python3 - "$@" <<'PY'
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)
PY
}
replays() { # replays ID SCRIPT: the recorded history exports and replays
  "$JORCH" history "$1" --output json > "$T_DIR/h.json" && "$JORCH" replay "$2" "$T_DIR/h.json" >/dev/null 2>&1
}

# 300 side effects of 3 MiB, each error caught by the script, 16 MiB heap:
# once reached 932 MiB RSS and a 902 MiB store.
cat > "$W/se.lua" <<'LUA'
return function()
  local n = 0
  for i = 1, 300 do
    if pcall(workflow.side_effect, function() return string.rep("x", 3 << 20) end) then n = n + 1 end
  end
  return n
end
LUA
start=$(date +%s)
read -r rss rc < <(JORCH_MEMORY_LIMIT_MB=16 rss_run "$JORCH" run --quiet --id se "$W/se.lua")
expect_eq "3 MiB side effects: the workflow fails" "$rc" 1
check "3 MiB side effects: at most 150 MiB of memory (got ${rss} KiB)" [ "$rss" -lt 153600 ]
check "3 MiB side effects: done in seconds" [ $(( $(date +%s) - start )) -lt 20 ]
check "3 MiB side effects: the store stays small" [ "$(cat "$JORCH_HOME"/jorch.db* | wc -c)" -lt $((10 << 20)) ]
run_jorch result se
expect_contains "3 MiB side effects: the reason" "$ERR" "payload size limit: RecordMarker (marker 'SideEffect') at"
expect_contains "3 MiB side effects: names the limit" "$ERR" "over the 2 MiB limit on one command"
check "3 MiB side effects: the history replays" replays se "$W/se.lua"

# activity input and workflow result over 2 MiB
cat > "$W/bigarg.lua" <<'LUA'
local acts = workflow.activities{start_to_close_timeout = "10s"}
return function(what)
  if what == "input" then
    local r = acts.mark("A", string.rep("a", 2200 * 1024))
    return r
  end
  return string.rep("r", 2200 * 1024)
end
LUA
for what in input result; do
  run_jorch run --quiet --activities "$ACTS" --id "big-$what" "$W/bigarg.lua" "$what"
  expect_eq "a 2.1 MiB $what: the workflow fails" "$RC" 1
  expect_contains "a 2.1 MiB $what: the reason" "$ERR" "payload size limit:"
  check "a 2.1 MiB $what: the history replays" replays "big-$what" "$W/bigarg.lua"
done
check "the activity with a 2.1 MiB input never ran" sh -c '! "$1" history big-input | grep -q ActivityTaskScheduled' _ "$JORCH"

# a workflow input over 2 MiB in total is refused before anything is stored
# (one argument can hold 128 KiB, so 18 of them; a larger stack limit lets
# the kernel pass 2.2 MiB of arguments; a signal's one argument cannot
# reach 2 MiB from the command line, the store checks it all the same)
part=$(python3 -c 'import json; print(json.dumps("i" * (125 * 1024)))')
args=()
for i in $(seq 18); do args+=("$part"); done
(ulimit -s 65536; "$JORCH" start --id bigin "$W/se.lua" "${args[@]}") >/dev/null 2>"$T_DIR/bigin.err"
expect_eq "a 2.2 MiB workflow input: refused (exit 2)" "$?" 2
check "a 2.2 MiB workflow input: the message says so" grep -q "over Temporal's 2 MiB blob size limit" "$T_DIR/bigin.err"

# one task's commands over 4 MiB in total; 1.5 MiB each warns
cat > "$W/total.lua" <<'LUA'
return function()
  for i = 1, 3 do workflow.side_effect(function() return string.rep("t", 1536 * 1024) end) end
  return "unreachable"
end
LUA
run_jorch run --id total "$W/total.lua"
expect_eq "4 MiB per task: the workflow fails" "$RC" 1
expect_contains "4 MiB per task: the reason" "$ERR" "over the 4 MiB limit on one workflow task"
expect_contains "512 KiB: a warning" "$ERR" "Temporal warns above 512 KiB"
check "4 MiB per task: the history replays" replays total "$W/total.lua"
run_jorch history total
expect_eq "4 MiB per task: the first two side effects are kept" "$(printf '%s\n' "$OUT" | grep -c MarkerRecorded)" 2

# a small script is untouched: same commands, no warning
cat > "$W/ok.lua" <<'LUA'
return function() return workflow.side_effect(function() return string.rep("o", 400 * 1024) end):len() end
LUA
run_jorch run --id ok "$W/ok.lua"
expect_eq "400 KiB: completes" "$OUT" 409600
check "400 KiB: no warning" sh -c '! printf "%s" "$1" | grep -q warns' _ "$ERR"

# a history over 50 MiB is terminated as the server does (warned at 10 MiB)
cat > "$W/grow.lua" <<'LUA'
return function()
  for t = 1, 20 do
    for k = 1, 2 do workflow.side_effect(function() return string.rep("g", 1900 * 1024) end) end
    workflow.sleep(1)
  end
  return "done"
end
LUA
run_jorch run --time-skip --id grow "$W/grow.lua"
expect_eq "50 MiB history: the run ends with exit 1" "$RC" 1
expect_contains "50 MiB history: terminated with the server's reason" "$ERR" "terminated: Workflow history size exceeds limit."
expect_contains "10 MiB history: a warning first" "$ERR" "warning: the history is"
run_jorch describe grow
expect_contains "50 MiB history: status Terminated" "$OUT" "Terminated"

# run logs: long lines cut, the file rotated, at most 4 files of ~10 MiB
cat > "$W/chatty.lua" <<'LUA'
return function()
  local mib = string.rep("m", 1 << 20)
  for i = 1, 600 do workflow.log(mib) end
  local line = string.rep("l", 8000)
  for i = 1, 6000 do workflow.log(i .. " " .. line) end
  return "done"
end
LUA
id=$("$JORCH" start --id chatty "$W/chatty.lua")
"$JORCH" result chatty --timeout 60s >/dev/null 2>&1
L="$JORCH_HOME/logs/chatty.log"
check "log: rotated files exist (.1 .. .3)" sh -c '[ -f "$1.1" ] && [ -f "$1.3" ]' _ "$L"
check "log: no more than 3 old files kept" [ ! -e "$L.4" ]
total=$(cat "$L" "$L".* | wc -c)
check "log: total under 41 MiB (got $total bytes; 600 MiB before)" [ "$total" -lt $((41 << 20)) ]
check "log: the run's last lines are in the current file" grep -q "^\[chatty\] 6000 l" "$L"
longest=$(cat "$L" "$L".* | awk '{ if (length($0) > m) m = length($0) } END { print m }')
check "log: no line longer than 9 KiB (got $longest)" [ "$longest" -lt 9216 ]
cat > "$W/oneline.lua" <<'LUA'
return function() workflow.log(string.rep("m", 1 << 20)) return "done" end
LUA
# (checked on files: a failing check must not print a megabyte)
"$JORCH" run --id oneline "$W/oneline.lua" >/dev/null 2>"$T_DIR/oneline.err"
check "log: a 1 MiB line is cut, with a marker" grep -qF "m [... 1040384 more bytes not shown]" "$T_DIR/oneline.err"
check "log: the cut line is about 8 KiB" [ "$(wc -c < "$T_DIR/oneline.err")" -lt 9000 ]
t_end
