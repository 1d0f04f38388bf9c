#!/usr/bin/env bash
# Configuration of workflow limits and other bad configuration values
# (issue 14, item 9): invalid JORCH_* limits are refused (exit 2) instead of
# meaning "no limit"; jorch.yaml's limits: section sets them and the
# environment wins; workflow.time_iso refuses times it cannot format; an
# oversized TEMPORAL_API_KEY gets a clear message, not "out of memory".
. "$(dirname "$0")/lib.sh"
t_begin "limits and configuration values"
unset JORCH_MEMORY_LIMIT_MB JORCH_INSTRUCTION_BUDGET JORCH_WALL_CLOCK_LIMIT JORCH_CONFIG
cd "$T_DIR" || exit 1
cat >bomb.lua <<'LUA'
return function() local s = "x" while true do s = s .. s end end
LUA
cat >loop.lua <<'LUA'
return function() while true do end end
LUA
cat >ok.lua <<'LUA'
return function() return "ok" end
LUA

for v in 0.5 0 -3 abc 17592186044416 1e300 nan; do
  JORCH_MEMORY_LIMIT_MB=$v run_jorch run --quiet ok.lua
  expect_eq "JORCH_MEMORY_LIMIT_MB=$v is refused (exit 2)" "$RC" "2"
  expect_contains "JORCH_MEMORY_LIMIT_MB=$v: the message names the variable" "$ERR" \
    "environment variable JORCH_MEMORY_LIMIT_MB: the memory limit '$v' is not a number of MiB"
done
JORCH_INSTRUCTION_BUDGET=1.5 run_jorch run --quiet ok.lua
expect_eq "JORCH_INSTRUCTION_BUDGET=1.5 is refused" "$RC" "2"
JORCH_WALL_CLOCK_LIMIT=0 run_jorch run --quiet ok.lua
expect_eq "JORCH_WALL_CLOCK_LIMIT=0 is refused" "$RC" "2"
JORCH_MEMORY_LIMIT_MB=1.5 JORCH_WALL_CLOCK_LIMIT="2 minutes" run_jorch run --quiet ok.lua
expect_eq "valid values run (1.5 MiB, '2 minutes')" "$RC:$OUT" '0:"ok"'
JORCH_MEMORY_LIMIT_MB=8 run_jorch run --quiet bomb.lua
expect_contains "JORCH_MEMORY_LIMIT_MB=8 is the limit" "$ERR" "memory limit of 8 MiB exceeded"

cat >jorch.yaml <<'YAML'
limits:
  memory_mb: 4
  instruction_budget: 1000000
  wall_clock: 30s
YAML
run_jorch run --quiet bomb.lua
expect_contains "jorch.yaml limits.memory_mb" "$ERR" "memory limit of 4 MiB exceeded"
run_jorch run --quiet loop.lua
expect_contains "jorch.yaml limits.instruction_budget" "$ERR" "loop.lua:1: instruction budget exceeded"
JORCH_MEMORY_LIMIT_MB=16 run_jorch run --quiet bomb.lua
expect_contains "the environment wins over jorch.yaml" "$ERR" "memory limit of 16 MiB exceeded"
printf 'limits:\n  wall_clock: 1\n  instruction_budget: 1e15\n' >jorch.yaml
start=$(date +%s)
run_jorch run --quiet loop.lua
expect_contains "jorch.yaml limits.wall_clock" "$ERR" "loop.lua:1: wall-clock limit of 1 s exceeded"
check "... within seconds" test $(($(date +%s) - start)) -le 10
printf 'limits:\n  memory_mb: 0.5\n' >jorch.yaml
run_jorch run --quiet ok.lua
expect_eq "jorch.yaml memory_mb: 0.5 is refused (exit 2)" "$RC" "2"
expect_contains "... naming the file and key" "$ERR" "jorch.yaml: limits.memory_mb: the memory limit '0.5'"
printf 'limits:\n  memory: 64\n' >jorch.yaml
run_jorch run --quiet ok.lua
expect_eq "an unknown key in limits: is refused" "$RC" "2"
expect_contains "... naming the known keys" "$ERR" "known: memory_mb, instruction_budget, wall_clock"
printf 'limits: 64\n' >jorch.yaml
run_jorch list
expect_eq "limits: that is not a mapping is refused" "$RC" "2"
rm jorch.yaml

# workflow.time_iso of times it cannot format
cat >time.lua <<'LUA'
return function(x)
  local s = workflow.time_iso(x == "nan" and 0 / 0 or x)
  return s
end
LUA
for x in 1e300 '"nan"' 9.3e15 -1e11; do
  run_jorch run --quiet time.lua "$x"
  expect_eq "time_iso($x) fails the task" "$RC" "1"
  expect_contains "time_iso($x): says why, at the script line" "$ERR" "time.lua:2: workflow.time_iso:"
  expect_contains "time_iso($x): out of range" "$ERR" "is not a time it can format"
done
run_jorch run --quiet time.lua 1700000000.5
expect_eq "time_iso of an ordinary time" "$OUT" '"2023-11-14T22:13:20.500Z"'
run_jorch run --quiet time.lua 0
expect_eq "time_iso(0)" "$OUT" '"1970-01-01T00:00:00Z"'

# An API key far too long is a configuration error, not "out of memory".
key=$(head -c 100000 /dev/zero | tr '\0' k)
TEMPORAL_API_KEY=$key TEMPORAL_ADDRESS=127.0.0.1:1 run_jorch list --temporal
expect_eq "a 100 KB TEMPORAL_API_KEY: exit 2" "$RC" "2"
expect_contains "... saying the key is too long" "$ERR" "the Temporal API key is 100000 bytes long"
case "$ERR" in *kkkkkkkk*) fail "... without printing the key" ;; *) ok "... without printing the key" ;; esac
t_end
