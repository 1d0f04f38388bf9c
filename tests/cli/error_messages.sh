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
