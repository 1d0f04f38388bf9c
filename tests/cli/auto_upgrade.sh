#!/usr/bin/env bash
# auto_upgrade: a script that declares `-- jorch: auto_upgrade` has its
# runs follow the newest version of its file, checked by replay at each
# workflow task: a compatible edit is adopted at the next task, an
# incompatible one leaves the run pinned, and describe says which. Without
# the declaration a run stays pinned (the default).
. "$(dirname "$0")/lib.sh"
t_begin "auto_upgrade"
A=(--activities "$ACTS")
W="$T_DIR/wf"
mkdir -p "$W"
write() { # write FILE HEADER BEFORE AFTER
  cat >"$1" <<LUA
$2
local acts = workflow.activities{start_to_close_timeout = "10s"}
return function(name)
  local go = false
  workflow.on_signal("proceed", function() go = true end)
$3
  workflow.wait_condition(function() return go end)
$4
end
LUA
}
BEFORE='  local a = acts.fetch(name)
  local b = acts.echo("B")'
SWAPPED='  local b = acts.echo("B")
  local a = acts.fetch(name)'
AFTER='  return {a, b, "v1"}'
AFTER2='  return {a, b, acts.echo("v2")}'

# compatible edit: adopted at the next workflow task
write "$W/a.lua" "-- jorch: auto_upgrade" "$BEFORE" "$AFTER"
"$JORCH" start --id a1 "${A[@]}" "$W/a.lua" '"x"' >/dev/null
check "a1 waits at the gate" at_gate a1
run_jorch describe a1
expect_contains "describe shows the policy" "$OUT" "Auto-upgrade: follows the newest version"
write "$W/a.lua" "-- jorch: auto_upgrade" "$BEFORE" "$AFTER2"
"$JORCH" signal a1 proceed
run_jorch result a1 --timeout 20s
expect_eq "compatible edit adopted at the next task" "$OUT" '["src-x","B","v2"]'
expect_eq "describe shows the new version" "$(sha_of a1)" "$(sha256sum "$W/a.lua" | cut -d' ' -f1)"
run_jorch describe a1
expect_contains "describe says it moved" "$OUT" "moved from"
expect_eq "the move is in history" "$("$JORCH" history a1 --output json | grep -c '"__jorch_upgrade"')" "1"

# incompatible edit: stays pinned, describe says why
write "$W/b.lua" "-- jorch: auto_upgrade" "$BEFORE" "$AFTER"
"$JORCH" start --id b1 "${A[@]}" "$W/b.lua" '"y"' >/dev/null
check "b1 waits at the gate" at_gate b1
old=$(sha_of b1)
write "$W/b.lua" "-- jorch: auto_upgrade" "$SWAPPED" "$AFTER2"
"$JORCH" signal b1 proceed
run_jorch result b1 --timeout 20s
expect_eq "incompatible edit: the run finishes on its version" "$OUT" '["src-y","B","v1"]'
expect_eq "incompatible edit: still pinned" "$(sha_of b1)" "$old"
run_jorch describe b1
expect_contains "describe says why it stayed" "$OUT" "Auto-upgrade: stays on ${old:0:12}"
expect_contains "describe names the nondeterminism" "$OUT" "nondeterminism"
expect_eq "no move recorded" "$("$JORCH" history b1 --output json | grep -c '"__jorch_upgrade"')" "0"

# the default: pinned, a compatible edit is not adopted
write "$W/c.lua" "-- no policy" "$BEFORE" "$AFTER"
"$JORCH" start --id c1 "${A[@]}" "$W/c.lua" '"z"' >/dev/null
check "c1 waits at the gate" at_gate c1
write "$W/c.lua" "-- no policy" "$BEFORE" "$AFTER2"
"$JORCH" signal c1 proceed
run_jorch result c1 --timeout 20s
expect_eq "default: pinned" "$OUT" '["src-z","B","v1"]'
run_jorch describe c1
case "$OUT" in *Auto-upgrade*) fail "default: no policy line" ;; *) ok "default: no policy line" ;; esac
t_end
