#!/usr/bin/env bash
# Bad input gets a clear message and a non-zero exit, never a crash, a hang
# or a damaged store.
. "$(dirname "$0")/lib.sh"
t_begin "bad input"
W="$T_DIR/w"
mkdir -p "$W"
no_crash() { # the exit code is a jorch code, not a signal
  if [ "$RC" -ge 128 ]; then fail "$1: crashed with signal $((RC - 128))" "$ERR"; else ok "$1: no crash"; fi
}

run_jorch
expect_eq "no verb: usage error" "$RC" "2"
expect_contains "no verb: hint" "$ERR" "jorch --help"
run_jorch frobnicate
expect_eq "unknown verb" "$RC" "2"
expect_contains "unknown verb named" "$ERR" "unknown verb 'frobnicate'"
run_jorch run --bogus x.lua
expect_eq "unknown option" "$RC" "2"
expect_contains "unknown option hint" "$ERR" "Try 'jorch run --help'"
run_jorch --help
expect_eq "--help exits 0" "$RC" "0"
expect_contains "--help lists verbs" "$OUT" "jorch replay SCRIPT HISTORY"
for v in run start signal query describe list history result cancel terminate resume replay check; do
  run_jorch "$v" --help
  [ "$RC" = 0 ] && [ -n "$OUT" ] && ok "$v --help" || fail "$v --help" "$ERR"
done

printf 'return function(\n  x = \nend\n' >"$W/syntax.lua"
run_jorch run "$W/syntax.lua"
expect_eq "syntax error: exit 2" "$RC" "2"
expect_contains "syntax error: file and line" "$ERR" "syntax.lua:2:"
run_jorch check "$W/syntax.lua"
expect_eq "check syntax error: exit 1" "$RC" "1"

printf 'return function()\n  local t = nil\n  return t.field\nend\n' >"$W/buggy.lua"
run_jorch run --id buggy "$W/buggy.lua"
expect_eq "script error: exit 1" "$RC" "1"
expect_contains "script error: line" "$ERR" "buggy.lua:3"
expect_contains "script error: resume hint" "$ERR" "jorch resume buggy"
expect_contains "script error: run stays open" "$("$JORCH" describe buggy)" "Running"
# fix the script? The run is pinned to the version it started with, so resume fails the same way
run_jorch resume buggy
expect_eq "pinned script: resume fails the same way" "$RC" "1"
expect_contains "history records WorkflowTaskFailed" "$("$JORCH" history buggy)" "WorkflowTaskFailed"

printf 'return function()\n  while true do end\nend\n' >"$W/loop.lua"
start=$(date +%s)
run_jorch run "$W/loop.lua"
expect_eq "infinite loop: exit 1" "$RC" "1"
expect_contains "infinite loop: explained" "$ERR" "instruction budget exceeded (possible infinite loop)"
check "infinite loop: stopped in time" test $(( $(date +%s) - start )) -lt 60

printf 'return function()\n  local t = {}\n  for i = 1, 1e9 do t[i] = string.rep("x", 1000) .. i end\nend\n' >"$W/memory.lua"
run_jorch run "$W/memory.lua"
expect_eq "memory bomb: exit 1" "$RC" "1"
expect_contains "memory bomb: explained" "$ERR" "memory limit"
no_crash "memory bomb"

printf 'return function() return os.time() end\n' >"$W/os.lua"
run_jorch run "$W/os.lua"
expect_eq "forbidden global: exit 1" "$RC" "1"
expect_contains "forbidden global: explained" "$ERR" "'os' is not available in workflows"

printf 'return 42\n' >"$W/noret.lua"
run_jorch run "$W/noret.lua"
expect_eq "no workflow function: exit 2" "$RC" "2"
expect_contains "no workflow function: explained" "$ERR" "must return its workflow function"

run_jorch run "$W/missing.lua"
expect_eq "missing script: exit 2" "$RC" "2"
expect_contains "missing script: named" "$ERR" "missing.lua"

run_jorch signal nobody hello
expect_eq "signal to unknown id: exit 2" "$RC" "2"
expect_contains "signal to unknown id: named" "$ERR" "workflow 'nobody' not found"
run_jorch query nobody state
expect_eq "query unknown id" "$RC" "2"
run_jorch describe nobody
expect_eq "describe unknown id" "$RC" "2"

# JORCH_HOME on a missing path
JORCH_HOME="$T_DIR/does/not/exist" run_jorch list
expect_eq "missing JORCH_HOME parent: exit 2" "$RC" "2"
expect_contains "missing JORCH_HOME: explained" "$ERR" "cannot create the store directory"

# a corrupt store
mkdir -p "$T_DIR/corrupt"
head -c 8192 /dev/urandom >"$T_DIR/corrupt/jorch.db"
cp "$T_DIR/corrupt/jorch.db" "$T_DIR/corrupt.before"
JORCH_HOME="$T_DIR/corrupt" run_jorch list
check "corrupt store: non-zero exit" test "$RC" -ne 0
no_crash "corrupt store"
expect_contains "corrupt store: explained" "$ERR" "store"
check "corrupt store: file left untouched" cmp -s "$T_DIR/corrupt/jorch.db" "$T_DIR/corrupt.before"

# a read-only store (as root, chmod is no obstacle: use a read-only bind of the data instead)
mkdir -p "$T_DIR/ro"
JORCH_HOME="$T_DIR/ro" "$JORCH" run --quiet --id ro1 "$WFS/countdown.lua" 0 >/dev/null 2>&1
if [ "$(id -u)" -ne 0 ]; then
  chmod -R a-w "$T_DIR/ro"
  JORCH_HOME="$T_DIR/ro" run_jorch run --id ro2 "$WFS/countdown.lua" 0
  check "read-only store: non-zero exit" test "$RC" -ne 0
  no_crash "read-only store"
  chmod -R u+w "$T_DIR/ro"
else
  # root ignores file modes; a store file that is a directory cannot be written either
  mkdir -p "$T_DIR/ro2/jorch.db"
  JORCH_HOME="$T_DIR/ro2" run_jorch list
  check "unwritable store: non-zero exit" test "$RC" -ne 0
  no_crash "unwritable store"
fi
JORCH_HOME="$T_DIR/ro" run_jorch result ro1
expect_eq "store still readable after failures" "$OUT" '"liftoff"'

# arguments: JSON is decoded, other text is a string
printf 'return function(a, b, c) return {a = a, b = b, c = c} end\n' >"$W/args.lua"
run_jorch run --quiet "$W/args.lua" '{"k": [1, 2]}' PROJ-123 42
expect_eq "arguments: JSON or string" "$OUT" '{"a":{"k":[1,2]},"b":"PROJ-123","c":42}'
run_jorch run --id dup --detach "$W/loop.lua"
run_jorch run --id dup "$W/args.lua"
expect_eq "duplicate running id: exit 2" "$RC" "2"
expect_contains "duplicate running id: named" "$ERR" "workflow 'dup' is already running"
"$JORCH" terminate dup >/dev/null 2>&1
t_end
