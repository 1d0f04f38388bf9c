#!/usr/bin/env bash
# tests/integration/worker_eager.sh - eager activities of `jorch worker`
# against a real Temporal dev server (which allows them): an activity a
# workflow task schedules on the worker's own task queue comes back in the
# completion's response and runs at once, so the server neither queues it
# for matching nor records its start on a poll. Counted by the server's own
# metrics (RecordActivityTaskStarted is the call a polled activity costs):
#  (1) eager (the default): results right, and (almost) no activity start
#      went through matching;
#  (2) --disable-eager-activities: the same results, every activity polled;
#  (3) a workflow closing on its last task does not make the worker call
#      ResetStickyTaskQueue (the server forgets a closed run's stickiness).
#
#   JORCH=build/jorch JORCH_SOURCE_DIR=. bash tests/integration/worker_eager.sh

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_setup
ACT=$SRC/tests/cli/activities
command -v curl >/dev/null || tc_fail "curl is needed to read the dev server's metrics (scripts/setup installs it)"

WF=$TC_TMP/wf
mkdir -p "$WF"
cat >"$WF/chain.lua" <<'EOF'
-- Four activities one after another: four of them scheduled by workflow tasks.
local acts = workflow.activities{start_to_close_timeout = "20s"}
return function(issue)
  local s = acts.fetch(issue)
  local b = acts.build(s)
  local m = acts.mark("M", issue)
  return {acts.publish(b), m}
end
EOF
RUNS=5
ACTS=$((RUNS * 4))

# server_requests SERVICE OPERATION: as tc_server_requests, once the
# server's metrics settled (they are reported in batches).
server_requests() {
    local a b
    a=$(tc_server_requests "$1" "$2")
    for _ in $(seq 1 20); do
        sleep 1
        b=$(tc_server_requests "$1" "$2")
        [ "$a" = "$b" ] && break
        a=$b
    done
    echo "$a"
}

# run_all QUEUE TAG: RUNS runs of chain.lua, all awaited; prints how many
# came back with the right result.
run_all() {
    local q=$1 tag=$2 i good=0
    for i in $(seq 1 "$RUNS"); do
        jr start --temporal --task-queue "$q" --id "$tag-$$-$i" "$WF/chain.lua" "P$i"
    done
    for i in $(seq 1 "$RUNS"); do
        jr result --temporal "$tag-$$-$i" --timeout 60s
        [ "$RC:$OUT" = "0:[\"https://example.invalid/bin-src-P$i\",\"M:P$i\"]" ] && good=$((good + 1))
    done
    echo "$good"
}

# ------------------------------------------------------------ (1) eager
QE=eager-on-$$
it_worker_start "$TC_TMP/on.log" "$QE" --workflows "$WF" --activities "$ACT"
s0=$(server_requests history RecordActivityTaskStarted)
r0=$(server_requests frontend ResetStickyTaskQueue)
good=$(run_all "$QE" on)
s1=$(server_requests history RecordActivityTaskStarted)
r1=$(server_requests frontend ResetStickyTaskQueue)
check "(1) eager: all $RUNS runs complete with their results ($good)" test "$good" = "$RUNS"
polled=$((s1 - s0))
# a slot may be busy when a task completes, so a few may still be polled
check "(1) eager: at most a quarter of the $ACTS activities were started through a poll ($polled were)" \
    test "$polled" -le $((ACTS / 4))
check "(3) runs that closed cost no ResetStickyTaskQueue call ($((r1 - r0)) made)" test $((r1 - r0)) = 0
it_workers_stop

# ------------------------------------------------------------ (2) disabled
QD=eager-off-$$
it_worker_start "$TC_TMP/off.log" "$QD" --workflows "$WF" --activities "$ACT" --disable-eager-activities
s0=$(server_requests history RecordActivityTaskStarted)
good=$(run_all "$QD" off)
s1=$(server_requests history RecordActivityTaskStarted)
check "(2) --disable-eager-activities: all $RUNS runs complete with their results ($good)" test "$good" = "$RUNS"
check "(2) --disable-eager-activities: every activity was started through a poll ($((s1 - s0)) of $ACTS)" \
    test $((s1 - s0)) -ge "$ACTS"
it_workers_stop

# the setting in jorch.yaml: a bad value is refused before connecting
printf 'worker:\n  disable_eager_activities: maybe\n' >"$JORCH_CONFIG"
jr worker --workflows "$WF" --activities "$ACT" --task-queue never-$$
check "a bad disable_eager_activities in jorch.yaml: exit 2 naming the key" \
    eval '[ "$RC" = 2 ] && grep -q "worker.disable_eager_activities" <<<"$ERR" && grep -q "true or false" <<<"$ERR"'
: >"$JORCH_CONFIG"

it_summary
