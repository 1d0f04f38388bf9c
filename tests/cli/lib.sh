# tests/cli/lib.sh - shared helpers for the CLI tests, which drive the real
# jorch binary. Each test sources this, calls `t_begin`, runs checks, and
# ends with `t_end`, which prints "N passed, N failed" and sets the exit code.
set -u
: "${JORCH:?JORCH must name the jorch binary (ctest sets it)}"
: "${JORCH_SOURCE_DIR:?}"
T_PASS=0
T_FAIL=0
T_DIR=$(mktemp -d "${TMPDIR:-/tmp}/jorch-test.XXXXXX")
export JORCH_HOME="$T_DIR/home"
ACTS="$JORCH_SOURCE_DIR/tests/cli/activities"
# the replay fixtures double as the CLI tests' workflows
WFS="$JORCH_SOURCE_DIR/tests/histories"
trap 't_cleanup' EXIT

t_cleanup() {
  # stop background runs of this test: every home it used lies under T_DIR
  # (a test may switch JORCH_HOME midway), and 'jorch start' passes --home
  pkill -f -- "--home $T_DIR" 2>/dev/null || true
  rm -rf "$T_DIR"
}

t_begin() { echo "== $1"; }

ok() { T_PASS=$((T_PASS + 1)); echo "ok   $1"; }
fail() { T_FAIL=$((T_FAIL + 1)); echo "FAIL $1"; [ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/     /'; return 0; }

# check NAME COMMAND...: passes when the command exits 0
check() { local n=$1; shift; if "$@"; then ok "$n"; else fail "$n"; fi; }

# expect_eq NAME ACTUAL EXPECTED
expect_eq() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "got:      $2
expected: $3"; fi; }

# expect_contains NAME TEXT NEEDLE
expect_contains() { case "$2" in *"$3"*) ok "$1" ;; *) fail "$1" "text: $2
does not contain: $3" ;; esac; }

# run_jorch: runs jorch, capturing stdout in $OUT, stderr in $ERR, status in $RC
run_jorch() {
  OUT=$("$JORCH" "$@" 2>"$T_DIR/stderr")
  RC=$?
  ERR=$(cat "$T_DIR/stderr")
}

# at_gate ID: waits (up to 10 s) until ID's history has exactly two completed
# activities (the upgrade tests' gate scripts run two before their gate).
at_gate() {
  for _ in $(seq 200); do
    "$JORCH" history "$1" --output json 2>/dev/null | grep -c EVENT_TYPE_ACTIVITY_TASK_COMPLETED | grep -qx 2 && return 0
    sleep 0.05
  done
  return 1
}
# sha_of ID: the sha256 of the script version describe shows for ID.
sha_of() { "$JORCH" describe "$1" | sed -n 's/^Script: .*(sha256 \([0-9a-f]*\))$/\1/p'; }

t_end() {
  echo "$T_PASS passed, $T_FAIL failed"
  [ "$T_FAIL" -eq 0 ]
  exit $?
}
