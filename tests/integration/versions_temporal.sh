#!/usr/bin/env bash
# tests/integration/versions_temporal.sh - script versions are bundles on
# Temporal too (real dev server):
#  - modules: a run keeps the module text of the version it started with,
#    served by a worker whose own module was edited since; a worker with
#    --require-known-scripts refuses it (the module differs), saying so;
#  - fix-and-resume: a script bug fails a workflow task after a gate; a fix
#    that still fails is refused; `jorch upgrade --temporal` to the fixed
#    script, and the run completes without running its activities again;
#  - a run started without a version (`temporal workflow start`) is pinned
#    to the worker's version at its first task, which history records and
#    `jorch describe` shows; a worker with an incompatible edit finishes it.
#  (auto_upgrade, scripts, --all-of on Temporal: versions_temporal_auto.sh)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_setup
export MARK_FILE=$TC_TMP/marks
Q=versions-it-$$
mkdir -p "$TC_TMP/w1/lib" "$TC_TMP/w2/lib"

# ------------------------------------------------------------ modules
it_gate "$TC_TMP/w1/mod.lua" "-- jorch: version m1" "$IT_BEFORE" '  return {a, b, require("lib.word").word()}'
cp "$TC_TMP/w1/mod.lua" "$TC_TMP/w2/mod.lua"
echo 'return {word = function() return "old" end}' >"$TC_TMP/w1/lib/word.lua"
echo 'return {word = function() return "new" end}' >"$TC_TMP/w2/lib/word.lua"
it_gate_worker_start "$Q" "$TC_TMP/w1" "$TC_TMP/worker1.log"
jr start --temporal --task-queue "$Q" --id mod-1 "$TC_TMP/w1/mod.lua" '"x"'
check "start mod-1" test "$RC" = 0
wait_for 30 it_at_gate mod-1
check "mod-1 waits at the gate" it_at_gate mod-1
jr describe --temporal mod-1
check "describe shows the bundle with its module" grep -q "^Bundle: .*lib.word (sha256 " <<<"$OUT"
it_workers_stop
# w2 has the same script and an edited module: another version
it_gate_worker_start "$Q" "$TC_TMP/w2" "$TC_TMP/worker2.log" --require-known-scripts
jr signal --temporal mod-1 proceed
wait_for 30 it_task_failed_with mod-1 "require-known-scripts"
check "--require-known-scripts refuses a version whose module differs from the worker's" \
    it_task_failed_with mod-1 "is not this worker's"
it_workers_stop
it_gate_worker_start "$Q" "$TC_TMP/w2" "$TC_TMP/worker3.log"
jr result --temporal mod-1 --timeout 30s
check "a worker with an edited module finishes the run with the module text it started with" \
    test "$RC" = 0 -a "$OUT" = '["src-x","B","old"]'
it_workers_stop

# ------------------------------------------------------------ fix and resume
it_gate_worker_start "$Q" "$TC_TMP/w1" "$TC_TMP/worker4.log"
it_gate "$TC_TMP/w1/bug.lua" "" '  local a = acts.mark("ONCE", name)
  local b = acts.echo("B")' '  return {a, b, os.time()}'
jr start --temporal --task-queue "$Q" --id bug-1 "$TC_TMP/w1/bug.lua" '"y"'
wait_for 30 it_at_gate bug-1
check "bug-1 waits at the gate" it_at_gate bug-1
jr signal --temporal bug-1 proceed
wait_for 30 it_task_failed_with bug-1 "os"
check "the script bug fails the workflow task after the gate" it_task_failed_with bug-1 "os"
sed 's/os.time()/nosuch.call()/' "$TC_TMP/w1/bug.lua" >"$TC_TMP/still_bad.lua"
jr upgrade --temporal bug-1 --to "$TC_TMP/still_bad.lua"
check "a fix that still fails the pending task is refused" \
    eval '[ "$RC" = 1 ] && grep -q "fails the pending workflow task" <<<"$ERR"'
sed 's/os.time()/"fixed"/' "$TC_TMP/w1/bug.lua" >"$TC_TMP/fixed.lua"
jr upgrade --temporal bug-1 --to "$TC_TMP/fixed.lua"
check "upgrade to the fixed script: exit 0" test "$RC" = 0
jr result --temporal bug-1 --timeout 30s
check "the run completes on the fixed version" test "$RC" = 0 -a "$OUT" = '["ONCE:y","B","fixed"]'
check "the committed activity ran once" test "$(grep -c ONCE "$MARK_FILE")" = 1
it_workers_stop

# ------------------------------------------------------------ started without a version
it_gate "$TC_TMP/w1/plain.lua" "-- jorch: version p1" "$IT_BEFORE" '  return {a, b, "p1"}'
it_gate "$TC_TMP/w2/plain.lua" "-- jorch: version p2" "$IT_SWAPPED" '  return {a, b, "p2"}'
it_gate_worker_start "$Q" "$TC_TMP/w1" "$TC_TMP/worker5.log"
tcli workflow start --type plain --task-queue "$Q" -w plain-1 --input '"z"' >/dev/null 2>&1
wait_for 30 it_at_gate plain-1
check "plain-1 waits at the gate" it_at_gate plain-1
check "the worker recorded the version at the first task" \
    history_has plain-1 '.eventType == "EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED"'
jr describe --temporal plain-1
check "describe shows the version the worker pinned" \
    eval 'grep -q "sha256 $(sha256sum "$TC_TMP/w1/plain.lua" | cut -d" " -f1)" <<<"$OUT" && grep -q "Version: *p1" <<<"$OUT"'
it_workers_stop
it_gate_worker_start "$Q" "$TC_TMP/w2" "$TC_TMP/worker6.log"
jr signal --temporal plain-1 proceed
jr result --temporal plain-1 --timeout 30s
check "a worker with an incompatible edit finishes the run on its pinned version" \
    test "$RC" = 0 -a "$OUT" = '["src-z","B","p1"]'
it_workers_stop
tcli workflow show -w plain-1 -o json >"$TC_TMP/plain-1.json"
check "jorch replay replays the recorded history (the record matches no command)" \
    "$JORCH" replay --quiet "$TC_TMP/w1/plain.lua" "$TC_TMP/plain-1.json"

it_no_sanitizer_reports "sanitizer reports" "$TC_TMP"/worker*.log
it_summary
