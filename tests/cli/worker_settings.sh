#!/usr/bin/env bash
# The worker's capacity settings (flags and jorch.yaml's worker: section):
# bad values and unknown keys are refused before anything connects, with a
# message naming the flag or the file and key; good ones are taken (the
# worker then reaches the connection, which fails against a closed port).
. "$(dirname "$0")/lib.sh"
t_begin "worker settings"
W="$T_DIR/w"
mkdir -p "$W/wf" "$W/act"
export JORCH_CONFIG="$W/jorch.yaml"
: >"$JORCH_CONFIG"
# A closed port on loopback: nothing listens there.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
export TEMPORAL_ADDRESS=127.0.0.1:$PORT
unset TEMPORAL_API_KEY TEMPORAL_TLS TEMPORAL_NAMESPACE TEMPORAL_TASK_QUEUE
wk() { run_jorch worker --workflows "$W/wf" --activities "$W/act" "$@"; }

wk --max-cached-workflows -1
expect_eq "a negative cache size: usage error" "$RC" "2"
expect_contains "... naming the flag and the range" "$ERR" "--max-cached-workflows: '-1' is not a whole number from 0"
wk --max-concurrent-workflow-task-executions 0
expect_eq "no workflow task slot: usage error" "$RC" "2"
expect_contains "... naming the flag" "$ERR" "--max-concurrent-workflow-task-executions: '0' is not a whole number from 1"
wk --max-concurrent-activity-executions 12abc
expect_eq "a number with junk: usage error" "$RC" "2"
wk --sticky-schedule-to-start-timeout forever
expect_eq "a bad sticky timeout: usage error" "$RC" "2"
expect_contains "... says what a duration looks like" "$ERR" "is not a duration from 1 ms to 1 hour"

printf 'worker:\n  max_cached_workflow: 10\n' >"$JORCH_CONFIG"
wk
expect_eq "an unknown key in worker:: usage error" "$RC" "2"
expect_contains "... naming the file and the key" "$ERR" "jorch.yaml: worker.max_cached_workflow: unknown worker setting"
printf 'worker:\n  max_concurrent_activity_executions: [1, 2]\n' >"$JORCH_CONFIG"
wk
expect_eq "a list for a number: usage error" "$RC" "2"
expect_contains "... naming the key" "$ERR" "worker.max_concurrent_activity_executions must be a number"
printf 'worker: 5\n' >"$JORCH_CONFIG"
wk
expect_eq "worker: not a mapping: usage error" "$RC" "2"

printf 'worker:\n  max_cached_workflows: 0\n  max_concurrent_workflow_task_executions: 16\n  sticky_schedule_to_start_timeout: 2s\n' >"$JORCH_CONFIG"
wk --max-concurrent-activity-task-pollers 3
expect_eq "good settings: on to the connection, which is refused (exit 3)" "$RC" "3"
expect_contains "... the message names the address" "$ERR" "cannot reach Temporal at 127.0.0.1:$PORT"
t_end
