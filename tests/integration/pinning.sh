#!/usr/bin/env bash
# tests/integration/pinning.sh - script versions on Temporal (real dev
# server): a run started with `jorch start --temporal SCRIPT.lua` carries
# its script version; a second worker whose workflows/ holds an
# incompatible edit of the script replays the run on its own version and
# it finishes as started; describe shows the version; a worker with
# --require-known-scripts fails the workflow task of a version that is not
# in its workflows/ with a message saying so, and serves one that is.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_setup
# gate FILE BEFORE VERSION: it_gate of a script of version VERSION that
# returns {a, b, VERSION}
gate() { it_gate "$1" "-- jorch: version $3" "$2" "  return {a, b, \"$3\"}"; }
Q=pin-it-$$
mkdir -p "$TC_TMP/w1" "$TC_TMP/w2"
gate "$TC_TMP/w1/gate.lua" "$IT_BEFORE" v1
# the incompatible edit: two activities reordered
gate "$TC_TMP/w2/gate.lua" "$IT_SWAPPED" v2
SHA1=$(sha256sum "$TC_TMP/w1/gate.lua" | cut -d' ' -f1)

# a run started on worker 1 waits at the gate; worker 2 (the edited
# checkout) takes over and replays it on the version it started with
it_gate_worker_start "$Q" "$TC_TMP/w1" "$TC_TMP/worker1.log"
jr start --temporal --task-queue "$Q" --id pin-1 "$TC_TMP/w1/gate.lua" '"x"'
check "start pin-1" test "$RC" = 0
wait_for 30 it_at_gate pin-1
check "pin-1 waits at the gate (2 activities completed)" it_at_gate pin-1
jr describe --temporal pin-1
check "describe shows the version" grep -q "sha256 $SHA1" <<<"$OUT"
check "describe shows the label" grep -q "Version: *v1" <<<"$OUT"
it_workers_stop
it_gate_worker_start "$Q" "$TC_TMP/w2" "$TC_TMP/worker2.log"
jr signal --temporal pin-1 proceed
jr result --temporal pin-1 --timeout 30s
check "a worker with an incompatible checkout finishes the run on its version" \
    test "$RC" = 0 -a "$OUT" = '["src-x","B","v1"]'
check "no workflow task failed" test "$(tcli workflow show -w pin-1 -o json | jq '[.events[] | select(.eventType == "EVENT_TYPE_WORKFLOW_TASK_FAILED")] | length')" = 0
it_workers_stop

# --require-known-scripts: worker 2 refuses version v1, worker 1 serves it
it_gate_worker_start "$Q" "$TC_TMP/w2" "$TC_TMP/worker3.log" --require-known-scripts
jr start --temporal --task-queue "$Q" --id pin-2 "$TC_TMP/w1/gate.lua" '"y"'
wait_for 30 it_task_failed_with pin-2 "require-known-scripts"
check "an unknown version fails the workflow task, saying why" it_task_failed_with pin-2 "is not this worker's"
check "the message names the version" it_task_failed_with pin-2 "${SHA1:0:12}"
check "nothing ran" test "$(it_completed_acts pin-2)" = 0
it_workers_stop
it_gate_worker_start "$Q" "$TC_TMP/w1" "$TC_TMP/worker4.log" --require-known-scripts
wait_for 60 it_at_gate pin-2
check "a worker that knows the version serves it" it_at_gate pin-2
jr signal --temporal pin-2 proceed
jr result --temporal pin-2 --timeout 30s
check "pin-2 finishes" test "$RC" = 0 -a "$OUT" = '["src-y","B","v1"]'
it_workers_stop

# jorch upgrade --temporal: refused for the incompatible edit, applied for a
# compatible one; the run then finishes on the new version, served by a
# worker whose own checkout holds neither
mkdir -p "$TC_TMP/w3"
gate "$TC_TMP/w3/gate.lua" "$IT_BEFORE" v3
it_gate_worker_start "$Q" "$TC_TMP/w1" "$TC_TMP/worker5.log"
jr start --temporal --task-queue "$Q" --id pin-3 "$TC_TMP/w1/gate.lua" '"z"'
wait_for 30 it_at_gate pin-3
check "pin-3 waits at the gate" it_at_gate pin-3
jr upgrade --temporal pin-3 --to "$TC_TMP/w2/gate.lua"
check "upgrade to the incompatible edit: exit 1" test "$RC" = 1
check "... with the nondeterminism report" grep -q "nondeterminism" <<<"$ERR"
check "... naming the script line" grep -q "gate.lua:6" <<<"$ERR"
jr upgrade --temporal pin-3 --to "$TC_TMP/w3/gate.lua" --dry-run
check "dry run of the compatible edit: exit 0" test "$RC" = 0
jr upgrade --temporal pin-3 --to "$TC_TMP/w3/gate.lua"
check "upgrade to the compatible edit: exit 0" test "$RC" = 0
it_workers_stop
it_gate_worker_start "$Q" "$TC_TMP/w2" "$TC_TMP/worker6.log"
jr signal --temporal pin-3 proceed
jr result --temporal pin-3 --timeout 30s
check "the upgraded run finishes on the new version" test "$RC" = 0 -a "$OUT" = '["src-z","B","v3"]'
it_workers_stop
it_summary
