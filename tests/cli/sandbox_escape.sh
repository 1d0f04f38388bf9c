#!/usr/bin/env bash
# The sandbox escape suite, through the real binary: every probe in
# tests/sandbox/escape/ is a workflow that tries one trick; each must fail
# cleanly (exit 1 or 2, never a crash or a hang) with the message its first
# line names ("-- expect: ..."), and the process must not be harmed.
. "$(dirname "$0")/lib.sh"
t_begin "sandbox escape suite"
# a smaller budget than the default 200 million keeps the loop probes quick;
# the mechanism is the same
export JORCH_INSTRUCTION_BUDGET=20000000
probes=("$JORCH_SOURCE_DIR"/tests/sandbox/escape/*.lua)
check "there are escape probes (${#probes[@]})" test "${#probes[@]}" -ge 20
for probe in "${probes[@]}"; do
  name=$(basename "$probe" .lua)
  expect=$(sed -n '1s/^-- expect: //p' "$probe")
  if [ -z "$expect" ]; then fail "$name: first line must be '-- expect: MESSAGE'"; continue; fi
  run_jorch run --quiet --id "escape-$name" "$probe" '"probe"'
  if [ "$RC" -ne 1 ] && [ "$RC" -ne 2 ]; then
    fail "$name: exit $RC (expected a clean failure)" "$OUT$ERR"
    continue
  fi
  expect_contains "$name" "$ERR" "$expect"
done
# and the store is still healthy after all of that
run_jorch list
expect_eq "store still usable after the escape suite" "$RC" "0"

# everything a workflow can see from _G, listed: nothing beyond the allow-list
cat >"$T_DIR/enumerate.lua" <<'LUA'
return function()
  local seen, out = {}, {}
  local function walk(prefix, t, depth)
    if seen[t] or depth > 2 then return end
    seen[t] = true
    for k, v in pairs(t) do
      if type(k) == "string" and k ~= "_G" then
        local name = prefix .. k
        out[#out + 1] = name .. ":" .. type(v)
        if type(v) == "table" then walk(name .. ".", v, depth + 1) end
      end
    end
  end
  walk("", _G, 0)
  return out
end
LUA
run_jorch run --quiet "$T_DIR/enumerate.lua"
expect_eq "enumerate: runs" "$RC" "0"
for forbidden in '"io:' '"os:' '"debug:' '"package:' '"dofile:' '"loadfile:' '"collectgarbage:' 'string.dump:' 'math.randomseed:'; do
  case "$OUT" in *"$forbidden"*) fail "enumerate: $forbidden is visible" ;; *) ok "enumerate: $forbidden not visible" ;; esac
done
for allowed in '"workflow:table"' '"pairs:function"' '"string.format:function"' '"table.sort:function"' '"math.random:function"'; do
  expect_contains "enumerate: $allowed visible" "$OUT" "$allowed"
done
t_end
