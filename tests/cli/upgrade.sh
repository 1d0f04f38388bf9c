#!/usr/bin/env bash
# jorch upgrade: a run waiting at a signal gate moves to a new script
# version only when its whole history replays against it (an incompatible
# edit is refused with the report and the run finishes on its original
# version; a compatible or patched edit is adopted by the live executor);
# a script bug that failed a workflow task is fixed with upgrade + resume
# without re-running committed activities; --all-of, list --version,
# jorch scripts [--prune], describe's version label.
. "$(dirname "$0")/lib.sh"
t_begin "upgrade"
export MARK_FILE="$T_DIR/marks"
A=(--activities "$ACTS")
W="$T_DIR/wf"
mkdir -p "$W"

write_gate() { # write_gate FILE LABEL BODY-BEFORE-GATE BODY-AFTER-GATE
  cat >"$1" <<LUA
-- jorch: version $2
local acts = workflow.activities{start_to_close_timeout = "10s"}
return function(name)
  local go = false
  workflow.on_signal("proceed", function() go = true end)
  workflow.on_query("phase", function() return go and "after" or "gate" end)
$3
  workflow.wait_condition(function() return go end)
$4
end
LUA
}
ORIG_BEFORE='  local a = acts.fetch(name)
  local b = acts.echo("B")'
ORIG_AFTER='  local c = acts.echo("C")
  return {a, b, c}'
SWAPPED_BEFORE='  local b = acts.echo("B")
  local a = acts.fetch(name)'


# --- incompatible edit: refused with the report, the run keeps its version
write_gate "$W/gate.lua" 1 "$ORIG_BEFORE" "$ORIG_AFTER"
"$JORCH" start --id g1 "${A[@]}" "$W/gate.lua" '"x"' >/dev/null
check "g1 waits at the gate" at_gate g1
sha1=$(sha_of g1)
run_jorch describe g1
expect_contains "describe shows the version label" "$OUT" "Version:      1"
write_gate "$W/gate.lua" 2 "$SWAPPED_BEFORE" "$ORIG_AFTER"
run_jorch upgrade g1 --dry-run
expect_eq "dry run of an incompatible edit: exit 1" "$RC" "1"
run_jorch upgrade g1
expect_eq "incompatible edit: exit 1" "$RC" "1"
expect_contains "refusal says nothing changed" "$ERR" "nothing changed"
expect_contains "report: nondeterminism" "$ERR" "nondeterminism"
expect_contains "report: the event" "$ERR" "ActivityTaskScheduled"
expect_contains "report: the command" "$ERR" "ScheduleActivityTask (activity 'echo'"
expect_contains "report: the script line" "$ERR" "gate.lua:7"
expect_eq "the run keeps its version" "$(sha_of g1)" "$sha1"
expect_eq "no upgrade recorded" "$("$JORCH" history g1 --output json | grep -c __jorch_upgrade)" "0"
"$JORCH" signal g1 proceed
run_jorch result g1 --timeout 20s
expect_eq "refused run finishes on its original version" "$OUT" '["src-x","B","C"]'

# --- compatible edit: adopted by the live executor at the gate
write_gate "$W/gate.lua" 1 "$ORIG_BEFORE" "$ORIG_AFTER"
"$JORCH" start --id g2 "${A[@]}" "$W/gate.lua" '"y"' >/dev/null
check "g2 waits at the gate" at_gate g2
sha_before=$(sha_of g2)
write_gate "$W/gate.lua" 1.1 "$ORIG_BEFORE" '  local c = acts.mark("C2", name)
  return {a, b, c, "new"}'
run_jorch upgrade g2 --dry-run
expect_eq "dry run of a compatible edit: exit 0" "$RC" "0"
expect_contains "dry run says it can" "$OUT" "can be upgraded"
expect_eq "dry run changes nothing" "$(sha_of g2)" "$sha_before"
run_jorch upgrade g2
expect_eq "compatible edit: exit 0" "$RC" "0"
expect_contains "compatible edit: upgraded" "$OUT" "upgraded workflow 'g2'"
sha2=$(sha_of g2)
check "describe shows the new sha" test "$sha2" != "$sha_before"
expect_eq "the new sha is the edited file's" "$sha2" "$(sha256sum "$W/gate.lua" | cut -d' ' -f1)"
run_jorch describe g2
expect_contains "describe shows the new label" "$OUT" "Version:      1.1"
expect_eq "the upgrade is in history" "$("$JORCH" history g2 --output json | grep -c '"__jorch_upgrade"')" "1"
run_jorch upgrade g2
expect_contains "upgrading again: nothing to do" "$OUT" "nothing to do"
"$JORCH" signal g2 proceed
run_jorch result g2 --timeout 20s
expect_eq "the run finishes with the new behaviour" "$OUT" '["src-y","B","C2:y","new"]'
"$JORCH" history g2 --output json >"$T_DIR/g2.json"
check "the upgraded history replays against the new version" "$JORCH" replay --quiet "$W/gate.lua" "$T_DIR/g2.json"

# --- patched: old history takes the old branch, the rest the new one
write_gate "$W/p.lua" 1 "$ORIG_BEFORE" "$ORIG_AFTER"
"$JORCH" start --id g3 "${A[@]}" "$W/p.lua" '"z"' >/dev/null
check "g3 waits at the gate" at_gate g3
write_gate "$W/p.lua" 2 '  if workflow.patched("early") then acts.mark("EARLY", name) end
'"$ORIG_BEFORE" '  local c = acts.echo("C")
  if workflow.patched("late") then c = acts.mark("LATE", name) end
  return {a, b, c}'
run_jorch upgrade g3
expect_eq "patched edit: exit 0" "$RC" "0"
"$JORCH" signal g3 proceed
run_jorch result g3 --timeout 20s
expect_eq "patched: new branch after the upgrade" "$OUT" '["src-z","B","LATE:z"]'
expect_eq "patched: the replayed part took the old branch" "$(grep -c EARLY "$MARK_FILE")" "0"

# --- a script bug fails a workflow task: fix, upgrade, resume
: >"$MARK_FILE"
cat >"$W/bug.lua" <<'LUA'
local acts = workflow.activities{start_to_close_timeout = "10s"}
return function()
  local a = acts.mark("ONCE", 1)
  local t = os.time()
  return {a, t}
end
LUA
run_jorch run --id b1 "${A[@]}" "$W/bug.lua"
expect_eq "script bug: exit 1" "$RC" "1"
expect_contains "the message says to upgrade" "$ERR" "'jorch upgrade b1'"
run_jorch resume b1 "${A[@]}"
expect_eq "resume without upgrade fails again (pinned)" "$RC" "1"
sed -i 's/os.time()/"fixed"/' "$W/bug.lua"
cp "$W/bug.lua" "$W/still_bad.lua"
sed -i 's/"fixed"/nosuch.call()/' "$W/still_bad.lua"
run_jorch upgrade b1 --to "$W/still_bad.lua"
expect_eq "a fix that still fails the task is refused" "$RC" "1"
expect_contains "refusal names the pending task" "$ERR" "fails the pending workflow task"
run_jorch upgrade b1
expect_eq "upgrade to the fixed script: exit 0" "$RC" "0"
run_jorch resume --quiet b1 "${A[@]}"
expect_eq "resume completes" "$RC" "0"
expect_eq "resume result" "$OUT" '["ONCE:1","fixed"]'
expect_eq "the committed activity ran once" "$(grep -c ONCE "$MARK_FILE")" "1"

# --- --all-of, list --version, scripts, prune
write_gate "$W/all.lua" 1 "$ORIG_BEFORE" "$ORIG_AFTER"
"$JORCH" start --id m1 "${A[@]}" "$W/all.lua" '"m"' >/dev/null
"$JORCH" start --id m2 "${A[@]}" "$W/all.lua" '"n"' >/dev/null
check "m1 at the gate" at_gate m1
check "m2 at the gate" at_gate m2
old=$(sha_of m1)
run_jorch scripts
expect_contains "scripts lists the version with its open runs" "$OUT" "open: m1 m2"
write_gate "$W/all2.lua" 2 "$ORIG_BEFORE" '  return {a, b, "v2"}'
run_jorch upgrade --all-of "${old:0:12}" --to "$W/all2.lua"
expect_eq "--all-of: exit 0" "$RC" "0"
expect_contains "--all-of: both" "$ERR" "2 runs upgraded, 0 refused"
new=$(sha256sum "$W/all2.lua" | cut -d' ' -f1)
run_jorch list --version "$new"
expect_contains "list --version: m1" "$OUT" "m1"
expect_contains "list --version: m2" "$OUT" "m2"
run_jorch list --version "$old"
expect_eq "list --version old: none left" "$(printf '%s\n' "$OUT" | grep -c '^m[12] ')" "0"
"$JORCH" signal m1 proceed
"$JORCH" signal m2 proceed
run_jorch result m1 --timeout 20s
expect_eq "m1 finished on v2" "$OUT" '["src-m","B","v2"]'
run_jorch result m2 --timeout 20s
expect_eq "m2 finished on v2" "$OUT" '["src-n","B","v2"]'
run_jorch scripts --prune
expect_eq "prune: exit 0" "$RC" "0"
expect_contains "prune removed the unused versions" "$OUT" "pruned"
expect_eq "no versions left (no open runs)" "$(printf '%s\n' "$OUT" | grep -c '^[0-9a-f]\{64\}')" "0"

# --- bad input
run_jorch signal m1 __jorch_upgrade '{}'
expect_eq "the reserved signal name is refused" "$RC" "2"
run_jorch upgrade m1
expect_eq "a closed run: exit 2" "$RC" "2"
expect_contains "a closed run: says so" "$ERR" "not running"
run_jorch upgrade nosuch
expect_eq "unknown id: exit 2" "$RC" "2"
run_jorch upgrade --all-of xyz
expect_eq "bad --all-of: exit 2" "$RC" "2"
run_jorch upgrade g1 --to "$W/missing.lua"
expect_eq "missing script: exit 2" "$RC" "2"
t_end
