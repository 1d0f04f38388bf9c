#!/usr/bin/env bash
# tests/integration/worker_sticky.sh - sticky execution and concurrency of
# `jorch worker` (issue 11 items 1 and 2) against a real Temporal dev server:
#  (1) the run cache on and off (--max-cached-workflows 0) give the same
#      results and event sequences; with it on the server schedules the
#      run's later tasks on the worker's sticky queue, with it off never;
#  (2) a cache of one run with 50 workflows at once: all complete, no
#      workflow task fails, runs are evicted and replay;
#  (3) a cache miss: a `jorch upgrade` record (the script's version changes)
#      under a cached run makes the worker read the whole history and
#      replay (a miss, never a failed task);
#  (4) kill -9 of one of two workers mid-run: the run's sticky task times
#      out (sticky schedule-to-start) and the other worker finishes it;
#  (5) a worker restarted with a different --workflows directory keeps
#      pinned runs on their version; the stopping worker hands its cached
#      runs back to the normal queue (ResetStickyTaskQueue).
#
#   JORCH=build/jorch JORCH_SOURCE_DIR=. bash tests/integration/worker_sticky.sh

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_setup
ACT=$SRC/tests/cli/activities

WF=$TC_TMP/wf
mkdir -p "$WF"
cat >"$WF/flow.lua" <<'EOF'
-- Activities, a timer and more activities: several workflow tasks per run.
local acts = workflow.activities{start_to_close_timeout = "20s"}
return function(issue)
  local s = acts.fetch(issue)
  workflow.sleep(0.1)
  local b = acts.build(s)
  local m = acts.mark("M", issue)
  return {acts.publish(b), m}
end
EOF
cat >"$WF/waiter.lua" <<'EOF'
-- Waits for a signal, then one activity.
local acts = workflow.activities{start_to_close_timeout = "20s"}
return function(issue)
  local got = nil
  workflow.on_signal("go", function(v) got = v end)
  local s = acts.fetch(issue)
  workflow.wait_condition(function() return got ~= nil end)
  return acts.build(s) .. "+" .. got
end
EOF
ln -s "$SRC/tests/histories/three_steps.lua" "$WF/"

# No WorkflowTaskFailed in the run's history (jorch history prints event names).
no_task_failure() { jr history --temporal "$1"; [ "$RC" = 0 ] && ! grep -qi "WorkflowTaskFailed" <<<"$OUT"; }
# The run's events but the workflow task bookkeeping (a task may time out
# on a loaded machine, with the cache on or off).
types_of() { tcli workflow show -w "$1" -o json | jq -c '[.events[].eventType | select(startswith("EVENT_TYPE_WORKFLOW_TASK_") | not)]'; }
sticky_tasks() { # how many workflow tasks of the run were scheduled on a sticky queue
    tcli workflow show -w "$1" -o json |
        jq '[.events[] | select(.eventType == "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED" and
                                .workflowTaskScheduledEventAttributes.taskQueue.kind == "TASK_QUEUE_KIND_STICKY")] | length'
}
# waiting ID: the run's first workflow task completed (it waits for "go")
waiting() { history_has "$1" '.eventType == "EVENT_TYPE_ACTIVITY_TASK_COMPLETED"' &&
            [ "$(tcli workflow show -w "$1" -o json | jq '[.events[] | select(.eventType == "EVENT_TYPE_WORKFLOW_TASK_COMPLETED")] | length')" -ge 2 ]; }

# ------------------------------------------------------------ (1) on and off
QS=sticky-on-$$
QN=sticky-off-$$
it_worker_start "$TC_TMP/on.log" "$QS" --workflows "$WF" --activities "$ACT"
it_worker_start "$TC_TMP/off.log" "$QN" --workflows "$WF" --activities "$ACT" --max-cached-workflows 0
for q in "$QS" "$QN"; do
    jr start --temporal --task-queue "$q" --id "flow-$q" "$WF/flow.lua" PROJ-1
    jr start --temporal --task-queue "$q" --id "three-$q" "$SRC/tests/histories/three_steps.lua" ada
    jr signal --temporal "three-$q" approve '"zed"'
done
for q in "$QS" "$QN"; do
    jr result --temporal "flow-$q" --timeout 60s
    eval "FLOW_${q//-/_}=\"\$RC:\$OUT\""
    jr result --temporal "three-$q" --timeout 60s
    eval "THREE_${q//-/_}=\"\$RC:\$OUT\""
done
FON=$(eval echo "\$FLOW_${QS//-/_}") FOFF=$(eval echo "\$FLOW_${QN//-/_}")
TON=$(eval echo "\$THREE_${QS//-/_}") TOFF=$(eval echo "\$THREE_${QN//-/_}")
check "(1) flow: the same result with the cache on and off ($FON)" \
    test "$FON" = "$FOFF" -a "$FON" = '0:["https://example.invalid/bin-src-PROJ-1","M:PROJ-1"]'
check "(1) three_steps with a signal: the same result with the cache on and off ($TON)" \
    test "$TON" = "$TOFF" -a "$TON" = '0:["A:ada","B:zed","C:ada"]'
EON=$(types_of "flow-$QS")
EOFF=$(types_of "flow-$QN")
if [ -n "$EON" ] && [ "$EON" = "$EOFF" ]; then ok "(1) flow: the same event sequence with the cache on and off"; else
    bad "(1) flow: the same event sequence with the cache on and off" "on:  $EON" "off: $EOFF"; fi
NS=$(sticky_tasks "flow-$QS")
check "(1) cache on: the run's later workflow tasks went to the worker's sticky queue ($NS)" test "${NS:-0}" -ge 3
check "(1) cache off: no task on a sticky queue" test "$(sticky_tasks "flow-$QN")" = 0
it_workers_stop
check "(1) cache on: the worker continued cached runs, with no cache miss" \
    grep -Eq "^worker: run cache: [1-9][0-9]* task\(s\) continued a cached run, 0 cache miss" "$TC_TMP/on.log"
check "(1) cache off: no run cache" eval '! grep -q "run cache:" "$TC_TMP/off.log"'

# ------------------------------------------------------------ (2) 50 runs, a cache of 1
QC=cache1-$$
it_worker_start "$TC_TMP/c1.log" "$QC" --workflows "$WF" --activities "$ACT" --max-cached-workflows 1 \
    --max-concurrent-workflow-task-executions 4 --max-concurrent-activity-executions 8
t0=$(date +%s)
starts=()
for i in $(seq 1 50); do
    "$JORCH" start --temporal --task-queue "$QC" --id "c1-$$-$i" "$WF/flow.lua" "P$i" >/dev/null 2>>"$TC_TMP/c1-start.err" &
    starts+=($!)
done
wait "${starts[@]}" # not the worker, also a child of this shell
ok_n=0
bad_list=""
for i in $(seq 1 50); do
    jr result --temporal "c1-$$-$i" --timeout 90s
    if [ "$RC:$OUT" = "0:[\"https://example.invalid/bin-src-P$i\",\"M:P$i\"]" ]; then
        ok_n=$((ok_n + 1))
    else
        bad_list="$bad_list $i($RC:$OUT$ERR)"
    fi
done
check "(2) a cache of one run: all 50 concurrent workflows complete with their results ($ok_n, $(($(date +%s) - t0)) s)" \
    test "$ok_n" = 50
[ -n "$bad_list" ] && echo "       not completed:${bad_list:0:600}" >&2
failed_n=0
for i in $(seq 1 50); do no_task_failure "c1-$$-$i" || failed_n=$((failed_n + 1)); done
check "(2) no workflow task failed in any of the 50 histories ($failed_n did)" test "$failed_n" = 0
it_workers_stop
check "(2) runs were evicted and replayed (the stop line counts evictions)" \
    grep -Eq "^worker: run cache: .* [1-9][0-9]* run\(s\) evicted" "$TC_TMP/c1.log"

# ------------------------------------------------------------ (3) a cache miss
QM=miss-$$
it_worker_start "$TC_TMP/miss.log" "$QM" --workflows "$WF" --activities "$ACT"
tcli workflow start --type waiter --task-queue "$QM" -w "miss-$$" --input '"PROJ-3"' >/dev/null 2>&1
wait_for 20 waiting "miss-$$"
# The edit changes nothing the run did; the upgrade record moves the run to
# it, and the cached run was built on the old version: the next (sticky,
# partial-history) task is a cache miss.
printf '\n-- edited while a run waits\n' >>"$WF/waiter.lua"
jr upgrade --temporal "miss-$$" --to "$WF/waiter.lua"
check "(3) the run is upgraded to the edited script" test "$RC" = 0
jr signal --temporal "miss-$$" go '"yes"'
jr result --temporal "miss-$$" --timeout 30s
check "(3) the run completes after the cache miss" test "$RC:$OUT" = '0:"bin-src-PROJ-3+yes"'
check "(3) ... without a failed workflow task" no_task_failure "miss-$$"
it_workers_stop
check "(3) the worker counted the miss (it read the whole history)" \
    grep -Eq "^worker: run cache: .* [1-9][0-9]* cache miss" "$TC_TMP/miss.log"

# ------------------------------------------------------------ (4) kill -9 one of two
QK=kill-$$
it_worker_start "$TC_TMP/ka.log" "$QK" --workflows "$WF" --activities "$ACT" --sticky-schedule-to-start-timeout 1s
WA=$WORKER
tcli workflow start --type waiter --task-queue "$QK" -w "kill-$$" --input '"PROJ-4"' >/dev/null 2>&1
wait_for 20 waiting "kill-$$"
it_worker_start "$TC_TMP/kb.log" "$QK" --workflows "$WF" --activities "$ACT"
kill -KILL "$WA"
jr signal --temporal "kill-$$" go '"after"'
jr result --temporal "kill-$$" --timeout 40s
check "(4) kill -9 of the worker that had the run cached: the other one completes it" \
    test "$RC:$OUT" = '0:"bin-src-PROJ-4+after"'
check "(4) ... the sticky task timed out to the normal queue, no workflow task failed" \
    eval 'history_has "kill-$$" ".eventType == \"EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT\"" && no_task_failure "kill-$$"'
it_workers_stop

# ------------------------------------------------------------ (5) another --workflows
QP=pin-$$
D1=$TC_TMP/v1
D2=$TC_TMP/v2
mkdir -p "$D1" "$D2"
cat >"$D1/pinned.lua" <<'EOF'
local acts = workflow.activities{start_to_close_timeout = "20s"}
return function(issue)
  local got = nil
  workflow.on_signal("go", function(v) got = v end)
  local s = acts.fetch(issue)
  workflow.wait_condition(function() return got ~= nil end)
  return "v1:" .. s .. ":" .. got
end
EOF
cat >"$D2/pinned.lua" <<'EOF'
-- A different version: a timer first, another result.
return function(issue)
  workflow.sleep(1)
  return "v2:" .. issue
end
EOF
it_worker_start "$TC_TMP/p1.log" "$QP" --workflows "$D1" --activities "$ACT"
jr start --temporal --task-queue "$QP" --id "pin-$$" "$D1/pinned.lua" PROJ-5
wait_for 20 waiting "pin-$$"
it_workers_stop
check "(5) the stopping worker handed its cached run back to the task queue" \
    grep -Eq "^worker: run cache: .* 1 run\(s\) handed back" "$TC_TMP/p1.log"
it_worker_start "$TC_TMP/p2.log" "$QP" --workflows "$D2" --activities "$ACT"
jr signal --temporal "pin-$$" go '"two"'
jr result --temporal "pin-$$" --timeout 30s
check "(5) restarted with another --workflows: the pinned run finishes on its own version" \
    test "$RC:$OUT" = '0:"v1:src-PROJ-5:two"'
check "(5) ... without a failed workflow task, and no sticky timeout (it was handed back)" \
    eval 'no_task_failure "pin-$$" && ! history_has "pin-$$" ".eventType == \"EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT\""'
jr start --temporal --task-queue "$QP" --id "pin2-$$" "$D2/pinned.lua" PROJ-6
jr result --temporal "pin2-$$" --timeout 30s
check "(5) a new run there runs the new version" test "$RC:$OUT" = '0:"v2:PROJ-6"'
it_workers_stop

it_no_sanitizer_reports "sanitizer reports in the worker logs" "$TC_TMP"/*.log
it_summary
