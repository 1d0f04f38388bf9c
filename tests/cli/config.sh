#!/usr/bin/env bash
# jorch.yaml reaches activities as jorch.config (with "home"), is found via
# JORCH_CONFIG or ./jorch.yaml, and a broken file stops `run` before anything
# is started, naming the file, line and column.
. "$(dirname "$0")/lib.sh"
t_begin "configuration"
mkdir -p "$T_DIR/proj/acts"
cd "$T_DIR/proj"
cat >acts/c.lua <<'LUA'
return { show = function()
  local c = jorch.config or {}
  return {home = c.home, x = c.custom and c.custom.x, list = c.custom and c.custom.list}
end }
LUA
printf 'return function() return workflow.execute_activity("show", {}, {start_to_close_timeout = 5}) end\n' >w.lua
printf 'custom:\n  x: 42\n  list: [a, "b"]\n' >jorch.yaml
run_jorch run --quiet --home "$T_DIR/h1" --activities acts w.lua
expect_eq "./jorch.yaml reaches activities" "$OUT" "{\"home\":\"$T_DIR/h1\",\"list\":[\"a\",\"b\"],\"x\":42}"

printf 'custom:\n  x: 7\n' >"$T_DIR/other.yaml"
JORCH_CONFIG="$T_DIR/other.yaml" run_jorch run --quiet --home "$T_DIR/h1" --activities acts w.lua
expect_eq "JORCH_CONFIG wins over ./jorch.yaml" "$OUT" "{\"home\":\"$T_DIR/h1\",\"x\":7}"

JORCH_CONFIG="$T_DIR/missing.yaml" run_jorch run --quiet --home "$T_DIR/h1" --activities acts w.lua
expect_eq "missing JORCH_CONFIG: exit 2" "$RC" "2"
expect_contains "missing JORCH_CONFIG: named" "$ERR" "missing.yaml"

printf 'custom:\n  x: [1,\n' >jorch.yaml
run_jorch run --quiet --home "$T_DIR/h2" --activities acts w.lua
expect_eq "broken jorch.yaml: exit 2" "$RC" "2"
expect_contains "broken jorch.yaml: file:line:column" "$ERR" "jorch.yaml:3:1"
run_jorch list --home "$T_DIR/h2"
case "$OUT" in *w-*) fail "broken jorch.yaml: nothing was started" ;; *) ok "broken jorch.yaml: nothing was started" ;; esac

rm jorch.yaml
run_jorch run --quiet --home "$T_DIR/h3" --activities acts w.lua
expect_eq "no configuration: only home" "$OUT" "{\"home\":\"$T_DIR/h3\"}"
t_end
