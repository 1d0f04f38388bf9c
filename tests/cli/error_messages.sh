#!/usr/bin/env bash
# Error messages point at what the user can fix: the script line (never
# jorch's own Lua), absent globals found by `jorch check` before anything
# runs, and TLS switched on against a server that does not speak it.
. "$(dirname "$0")/lib.sh"
t_begin "error messages"
W="$T_DIR/w"
mkdir -p "$W"

# --- workflow-task errors name the script line, not [jorch]/workflow.lua
printf 'return function()\n  workflow.execute_activity("x", {}, {bogus = 1})\nend\n' >"$W/badopt.lua"
run_jorch run --id badopt "$W/badopt.lua"
expect_eq "bad activity option: exit 1" "$RC" "1"
expect_contains "bad activity option: the script line first" "$ERR" "workflow task 3 failed: $W/badopt.lua:2: activity 'x': unknown option 'bogus'"
case "$ERR" in *"[jorch]"*) fail "bad activity option: no internal frame" "$ERR" ;; *) ok "bad activity option: no internal frame" ;; esac

printf 'return function()\n  workflow.execute_activity(42)\nend\n' >"$W/badname.lua"
run_jorch run --id badname "$W/badname.lua"
expect_contains "activity name not a string: the script line" "$ERR" "failed: $W/badname.lua:2: activity name must be a string"
case "$ERR" in *"[jorch]"*) fail "activity name not a string: no internal frame" "$ERR" ;; *) ok "activity name not a string: no internal frame" ;; esac

printf 'return function()\n  workflow.sleep("soon")\nend\n' >"$W/badsleep.lua"
run_jorch run --id badsleep "$W/badsleep.lua"
expect_contains "bad duration: the script line" "$ERR" "failed: $W/badsleep.lua:2: workflow.sleep: invalid duration"
case "$ERR" in *"[jorch]"*) fail "bad duration: no internal frame" "$ERR" ;; *) ok "bad duration: no internal frame" ;; esac

# --- jorch check finds absent globals inside functions, before a run
# reaches them (the compiler's own view of locals and fields, never a guess)
cat >"$W/late_os.lua" <<'EOF'
local acts = workflow.activities{start_to_close_timeout = "1 minute"}
return function(key)
  acts.fetch(key)
  local stamp = os.time()
  local f = io.open("/tmp/x")
  return {stamp = stamp, f = f, blob = string.dump(print), n = tabel.concat({})}
end
EOF
run_jorch check "$W/late_os.lua"
expect_eq "check: os inside the workflow function: exit 1" "$RC" "1"
expect_contains "check: os, with its line and hint" "$ERR" "late_os.lua:4: 'os' is not available in workflows (use workflow.now() / an activity)"
expect_contains "check: io, with its line" "$ERR" "late_os.lua:5: 'io' is not available in workflows (use an activity)"
expect_contains "check: string.dump" "$ERR" "late_os.lua:6: string.dump is not available in workflows"
expect_contains "check: a misspelt global" "$ERR" "late_os.lua:6: 'tabel' is not defined"
case "$ERR" in *"late_os.lua: ok"*) fail "check: not ok" "$ERR" ;; *) ok "check: not ok" ;; esac

# the same names as locals, fields, table keys, methods, upvalues, a local
# _ENV, and globals the script defines itself (also through _G): not reported
cat >"$W/clean.lua" <<'EOF'
local os = {time = function() return 1 end}
local cfg = {io = "x", debug = false}
function helper(x) return x end
local function uses_env()
  local _ENV = {io = 1}
  return io
end
return function(input)
  local t = os.time() + #cfg.io
  counter = (counter or 0) + helper(1)
  local s = ("x"):rep(2)
  local u = {os = 1, package = 2}
  return {t = t, s = s, u = u.os, d = cfg.debug, e = uses_env(), c = counter, now = workflow.now(),
    m = math.floor(2.5), q = table.concat({}), p = pcall(error, "x"), st = setmetatable({}, {})}
end
EOF
run_jorch check "$W/clean.lua"
expect_eq "check: locals, fields and own globals are not reported" "$RC:$ERR" "0:$W/clean.lua: ok"
printf '_G.shared = 1\nreturn function() return shared end\n' >"$W/viag.lua"
run_jorch check "$W/viag.lua"
expect_eq "check: a global defined through _G is not reported" "$RC" "0"

# a module the script requires is checked too, under its own name
mkdir -p "$W/mods"
printf 'local M = {}\nfunction M.stamp()\n  return os.date()\nend\nreturn M\n' >"$W/mods/util.lua"
printf 'local util = require("util")\nreturn function() return util.stamp() end\n' >"$W/mods/main.lua"
run_jorch check "$W/mods/main.lua"
expect_eq "check: os in a required module: exit 1" "$RC" "1"
expect_contains "check: the module's file and line" "$ERR" "util.lua:3: 'os' is not available in workflows"

# --- workflow.default_id: the script names its runs from the input
printf 'workflow.default_id(function(person) return "greet-" .. person end)\nreturn function(person) workflow.sleep(60) end\n' >"$W/named.lua"
run_jorch start "$W/named.lua" ada
expect_eq "default_id: the id comes from the input" "$RC:$OUT" "0:greet-ada"
run_jorch start "$W/named.lua" ada
expect_eq "default_id: a second start while it runs: exit 2" "$RC" "2"
expect_contains "default_id: the refusal names the id and suggests --id" "$ERR" "workflow 'greet-ada' is already running (run id "
run_jorch start --id greet-ada-2 "$W/named.lua" ada
expect_eq "default_id: an explicit --id starts another" "$RC:$OUT" "0:greet-ada-2"
"$JORCH" terminate greet-ada >/dev/null 2>&1; "$JORCH" terminate greet-ada-2 >/dev/null 2>&1
printf 'workflow.default_id(function(t) return t.key.name end)\nreturn function() end\n' >"$W/badid.lua"
run_jorch start "$W/badid.lua" '{}'
expect_eq "default_id: an error in the function: exit 2" "$RC" "2"
expect_contains "default_id: the error names its line" "$ERR" "badid.lua:1: attempt to index a nil value"
expect_contains "default_id: the error says what to do" "$ERR" "workflow.default_id gave no usable id for this input"
expect_contains "default_id: ... fix the function or pass --id" "$ERR" "Fix the function (it gets the workflow's arguments), or give the run an id with --id ID"
case "$ERR" in *--help*) fail "default_id: no hint at --help (the fix is in the script)" "$ERR" ;; *) ok "default_id: no hint at --help (the fix is in the script)" ;; esac
printf '%s\n' 'workflow.default_id(function(k) return "bad\27[31m" .. k end)' 'return function() end' >"$W/ctlid.lua"
run_jorch start "$W/ctlid.lua" x
expect_eq "default_id: an id with a control character: exit 2" "$RC" "2"
expect_contains "default_id: says what is wrong with the id" "$ERR" "ctlid.lua: workflow.default_id gave no usable id for this input: the workflow id 'bad\x1b[31mx' contains a control character (at byte 3)"
expect_contains "default_id: ... and what to do" "$ERR" "or give the run an id with --id ID"
case "$ERR" in *--help*) fail "default_id: bad id: no hint at --help" "$ERR" ;; *) ok "default_id: bad id: no hint at --help" ;; esac
printf 'workflow.default_id(function(n) return ("k"):rep(n) end)\nreturn function() end\n' >"$W/longid.lua"
run_jorch start "$W/longid.lua" 256
expect_eq "default_id: an id over 255 bytes: exit 2" "$RC" "2"
expect_contains "default_id: says its length and the limit" "$ERR" "it returned an id of 256 bytes; the limit is 255 bytes"
run_jorch start "$W/longid.lua" 255
expect_eq "default_id: an id of 255 bytes is used" "$RC:${#OUT}" "0:255"
printf 'workflow.default_id(function() return 42 end)\nreturn function() end\n' >"$W/numid.lua"
run_jorch start "$W/numid.lua"
expect_eq "default_id: a number: exit 2" "$RC" "2"
expect_contains "default_id: a number: says what it must return" "$ERR" "numid.lua: workflow.default_id gave no usable id for this input: it returned a number; it must return a string id or nil"

# --- TLS against a server that answers in cleartext (as a plain gRPC
# server does): the error suggests TEMPORAL_TLS=false
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
python3 - "$port" <<'PY' &
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
s.settimeout(30)
try:
    for _ in range(8):
        c, _ = s.accept()
        c.settimeout(5)
        try:
            c.recv(4096)
            # an HTTP/2 SETTINGS frame: what a cleartext gRPC server sends first
            c.sendall(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64")
        except OSError:
            pass
        c.close()
except OSError:
    pass
PY
srv=$!
for _ in $(seq 50); do python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$port" 2>/dev/null && break; sleep 0.1; done
OUT=$(TEMPORAL_ADDRESS="127.0.0.1:$port" TEMPORAL_TLS=true TEMPORAL_API_KEY= timeout 60 "$JORCH" list --temporal 2>&1)
RC=$?
kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null
expect_eq "TLS to a cleartext server: exit 3" "$RC" "3"
expect_contains "TLS to a cleartext server: says so" "$OUT" "the server does not speak TLS"
expect_contains "TLS to a cleartext server: suggests TEMPORAL_TLS=false" "$OUT" "set TEMPORAL_TLS=false"

t_end
