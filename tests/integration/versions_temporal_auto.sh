#!/usr/bin/env bash
# tests/integration/versions_temporal_auto.sh - script versions on Temporal
# (real dev server), continued from versions_temporal.sh:
#  - auto_upgrade: a worker whose script is a compatible newer version moves
#    the run (describe says so), an incompatible one leaves it pinned and
#    describe says why;
#  - jorch scripts --temporal lists the open runs' versions (--prune is
#    refused: nothing is stored apart from the runs), upgrade --all-of moves
#    every open run of a version, list --version finds them by it.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_setup
export MARK_FILE=$TC_TMP/marks
Q=versions-auto-it-$$
mkdir -p "$TC_TMP/w1/lib" "$TC_TMP/w2/lib"

# ------------------------------------------------------------ auto_upgrade
it_gate "$TC_TMP/w1/auto.lua" "-- jorch: auto_upgrade" "$IT_BEFORE" '  return {a, b, "v1"}'
it_gate "$TC_TMP/w2/auto.lua" "-- jorch: auto_upgrade" "$IT_BEFORE" '  return {a, b, acts.echo("v2")}'
mkdir -p "$TC_TMP/w3"
it_gate "$TC_TMP/w3/auto.lua" "-- jorch: auto_upgrade" "$IT_SWAPPED" '  return {a, b, "v3"}'
it_gate_worker_start "$Q" "$TC_TMP/w1" "$TC_TMP/worker7.log"
jr start --temporal --task-queue "$Q" --id auto-1 "$TC_TMP/w1/auto.lua" '"c"'
jr start --temporal --task-queue "$Q" --id auto-2 "$TC_TMP/w1/auto.lua" '"i"'
wait_for 30 it_at_gate auto-1
wait_for 30 it_at_gate auto-2
check "auto-1 and auto-2 wait at the gate" eval 'it_at_gate auto-1 && it_at_gate auto-2'
it_workers_stop
it_gate_worker_start "$Q" "$TC_TMP/w2" "$TC_TMP/worker8.log"
jr signal --temporal auto-1 proceed
jr result --temporal auto-1 --timeout 30s
check "auto_upgrade: a compatible newer version is adopted at the next task" \
    test "$RC" = 0 -a "$OUT" = '["src-c","B","v2"]'
jr describe --temporal auto-1
check "describe says the run moved" grep -q "Auto-upgrade: follows the newest version of its script; moved from" <<<"$OUT"
check "describe shows the new version" grep -q "sha256 $(sha256sum "$TC_TMP/w2/auto.lua" | cut -d' ' -f1)" <<<"$OUT"
it_workers_stop
it_gate_worker_start "$Q" "$TC_TMP/w3" "$TC_TMP/worker9.log"
jr signal --temporal auto-2 proceed
jr result --temporal auto-2 --timeout 30s
check "auto_upgrade: an incompatible version leaves the run on its own" \
    test "$RC" = 0 -a "$OUT" = '["src-i","B","v1"]'
jr describe --temporal auto-2
check "describe says why it stayed" eval 'grep -q "Auto-upgrade: stays on" <<<"$OUT" && grep -q "nondeterminism" <<<"$OUT"'
it_workers_stop
# ------------------------------------------------------------ scripts, --all-of, list --version
it_gate "$TC_TMP/w1/all.lua" "-- jorch: version a1" "$IT_BEFORE" '  return {a, b, "a1"}'
it_gate "$TC_TMP/all2.lua" "-- jorch: version a2" "$IT_BEFORE" '  return {a, b, "a2"}'
A1=$(sha256sum "$TC_TMP/w1/all.lua" | cut -d' ' -f1)
A2=$(sha256sum "$TC_TMP/all2.lua" | cut -d' ' -f1)
it_gate_worker_start "$Q" "$TC_TMP/w1" "$TC_TMP/worker10.log"
jr start --temporal --task-queue "$Q" --id all-1 "$TC_TMP/w1/all.lua" '"m"'
jr start --temporal --task-queue "$Q" --id all-2 "$TC_TMP/w1/all.lua" '"n"'
wait_for 30 it_at_gate all-1
wait_for 30 it_at_gate all-2
jr scripts --temporal
check "scripts --temporal lists the version with its open runs" \
    eval 'grep -q "^$A1 a1 *2 " <<<"$OUT" && grep -q "open: .*all-1" <<<"$OUT" && grep -q "open: .*all-2" <<<"$OUT"'
jr scripts --temporal --prune
check "scripts --temporal --prune: refused, saying why" \
    eval '[ "$RC" = 2 ] && grep -q "nothing to prune on Temporal" <<<"$ERR"'
jr upgrade --temporal --all-of "${A1:0:12}" --to "$TC_TMP/all2.lua"
check "upgrade --temporal --all-of: both runs" eval '[ "$RC" = 0 ] && grep -q "2 runs upgraded, 0 refused" <<<"$ERR"'
jr signal --temporal all-1 proceed
jr signal --temporal all-2 proceed
jr result --temporal all-1 --timeout 30s
check "all-1 finished on the new version" test "$RC" = 0 -a "$OUT" = '["src-m","B","a2"]'
jr result --temporal all-2 --timeout 30s
check "all-2 finished on the new version" test "$RC" = 0 -a "$OUT" = '["src-n","B","a2"]'
jr list --temporal --version "${A2:0:12}"
check "list --temporal --version: the memo names the version the runs moved to" \
    eval 'grep -q "^all-1 " <<<"$OUT" && grep -q "^all-2 " <<<"$OUT"'
it_workers_stop

it_no_sanitizer_reports "sanitizer reports" "$TC_TMP"/worker*.log
it_summary
