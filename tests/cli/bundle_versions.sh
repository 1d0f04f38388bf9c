#!/usr/bin/env bash
# A script version is a bundle: the script and the workflow modules it
# requires. The version's SHA-256 covers the modules (a module edit is a
# new version, named as docs/versioning.md says); a run pins the modules
# when it starts, so it keeps their text even for a module it loads only
# after an edit; jorch scripts, list --version, upgrade (also a module-only
# change), auto_upgrade (a module-only change is adopted) and prune work on
# bundles.
. "$(dirname "$0")/lib.sh"
t_begin "bundle_versions"
A=(--activities "$ACTS")
W="$T_DIR/wf"
mkdir -p "$W/lib"
# version_of ID: the version describe shows (the bundle's, else the script's)
version_of() {
  local d
  d=$("$JORCH" describe "$1")
  if grep -q '^Bundle:' <<<"$d"; then sed -n 's/^Bundle: *sha256 \([0-9a-f]*\) .*/\1/p' <<<"$d"
  else sed -n 's/^Script: .*(sha256 \([0-9a-f]*\))$/\1/p' <<<"$d"; fi
}
# digest SCRIPT MODULE-NAME=FILE...: the documented bundle digest
digest() {
  local s=$1
  shift
  {
    printf 'jorch-version 1\nscript %s\n' "$(sha256sum "$s" | cut -d' ' -f1)"
    for m in "$@"; do printf 'module %s %s\n' "${m%%=*}" "$(sha256sum "${m#*=}" | cut -d' ' -f1)"; done
  } | sha256sum | cut -d' ' -f1
}

write_main() { # FILE HEADER
  cat >"$1" <<LUA
$2
local acts = workflow.activities{start_to_close_timeout = "10s"}
local steps = require "lib.steps"
return function(name)
  local go = false
  workflow.on_signal("proceed", function() go = true end)
  local a = acts.fetch(name)
  local b = acts.echo(steps.first())
  workflow.wait_condition(function() return go end)
  -- loaded only after the gate: the run must still get the text it started with
  local later = require("lib.later")
  return {a, b, later.word()}
end
LUA
}
write_main "$W/main.lua" "-- jorch: version 1"
cat >"$W/lib/steps.lua" <<'LUA'
-- a comment that mentions require "lib.nothere" is not a require
local s = "require 'lib.nothere2'"
local M = {}
function M.first() return "B" end
return M
LUA
cat >"$W/lib/later.lua" <<'LUA'
local M = {}
function M.word() return "old" end
return M
LUA

"$JORCH" start --id b1 "${A[@]}" "$W/main.lua" '"x"' >/dev/null
check "b1 waits at the gate" at_gate b1
v1=$(version_of b1)
expect_eq "the version is the documented digest of the script and its modules" "$v1" \
  "$(digest "$W/main.lua" "lib.later=$W/lib/later.lua" "lib.steps=$W/lib/steps.lua")"
check "the version is not the script's own sha256" test "$v1" != "$(sha256sum "$W/main.lua" | cut -d' ' -f1)"
run_jorch describe b1
expect_contains "describe names the modules" "$OUT" "lib.later (sha256 "
expect_contains "describe names both modules" "$OUT" "lib.steps (sha256 "
run_jorch scripts
expect_contains "scripts counts the modules" "$OUT" "main.lua + 2 modules"

# a module edit is a new version; the pinned run keeps the text it started with
sed -i 's/"old"/"new"/' "$W/lib/later.lua"
"$JORCH" start --id b2 "${A[@]}" "$W/main.lua" '"y"' >/dev/null
check "b2 waits at the gate" at_gate b2
v2=$(version_of b2)
check "a module edit is a new version" test -n "$v2" -a "$v2" != "$v1"
run_jorch list --version "${v1:0:12}"
expect_contains "list --version: b1 has the old bundle" "$OUT" "b1"
case "$OUT" in *b2*) fail "list --version: b2 is not on the old bundle" ;; *) ok "list --version: b2 is not on the old bundle" ;; esac
"$JORCH" signal b1 proceed
run_jorch result b1 --timeout 20s
expect_eq "the pinned run loads the module text it started with" "$OUT" '["src-x","B","old"]'
"$JORCH" signal b2 proceed
run_jorch result b2 --timeout 20s
expect_eq "the new run has the new module" "$OUT" '["src-y","B","new"]'

# upgrade to a module-only change (same script file)
"$JORCH" start --id b3 "${A[@]}" "$W/main.lua" '"z"' >/dev/null
check "b3 waits at the gate" at_gate b3
sed -i 's/"new"/"newer"/' "$W/lib/later.lua"
run_jorch upgrade b3 --dry-run
expect_contains "dry run: a module-only change can be upgraded" "$OUT" "can be upgraded"
run_jorch upgrade b3
expect_eq "upgrade to a module-only change: exit 0" "$RC" "0"
expect_eq "the run has the new bundle" "$(version_of b3)" \
  "$(digest "$W/main.lua" "lib.later=$W/lib/later.lua" "lib.steps=$W/lib/steps.lua")"
"$JORCH" signal b3 proceed
run_jorch result b3 --timeout 20s
expect_eq "the upgraded run uses the new module" "$OUT" '["src-z","B","newer"]'

# auto_upgrade adopts a module-only change
write_main "$W/auto.lua" "-- jorch: auto_upgrade"
"$JORCH" start --id b4 "${A[@]}" "$W/auto.lua" '"w"' >/dev/null
check "b4 waits at the gate" at_gate b4
va=$(version_of b4)
sed -i 's/"newer"/"auto"/' "$W/lib/later.lua"
"$JORCH" signal b4 proceed
run_jorch result b4 --timeout 20s
expect_eq "auto_upgrade adopts a module-only change" "$OUT" '["src-w","B","auto"]'
check "auto_upgrade moved the run to another bundle" test "$(version_of b4)" != "$va"

# prune: no open run, nothing kept
run_jorch scripts --prune
expect_contains "prune counts versions" "$OUT" "pruned 5 versions"
expect_eq "no versions left" "$(printf '%s\n' "$OUT" | grep -c '^[0-9a-f]\{64\}')" "0"

# a module that cannot be read refuses the start, saying which
printf 'local m = require "lib.bad"\nreturn function() return 1 end\n' >"$W/bad.lua"
mkdir -p "$W/lib/bad.lua"
run_jorch start --id b5 "${A[@]}" "$W/bad.lua"
expect_eq "an unreadable module refuses the start" "$RC" "2"
expect_contains "... naming the module" "$ERR" "lib.bad"
t_end
