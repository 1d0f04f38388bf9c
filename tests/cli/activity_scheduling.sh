#!/usr/bin/env bash
# How the embedded backend hands attempts to the activity host: attempts of
# an earlier run in a continue-as-new chain never answer for the new run,
# and attempts queued behind busy threads are not timed out for silence.
. "$(dirname "$0")/lib.sh"
t_begin "activity scheduling"
W="$JORCH_SOURCE_DIR/tests/cli/workflows"
run_jorch run --quiet --activities "$ACTS" "$W/continue_late.lua" 1
expect_eq "a late attempt of the old run is not the new run's result" "$OUT" '"gen2 got: gen2"'

run_jorch run --quiet --activities "$ACTS" "$W/queued_heartbeats.lua" 6
expect_eq "queued attempts (6 on 4 threads) are not timed out before they start" "$OUT" '["ok","ok","ok","ok","ok","ok"]'
t_end
