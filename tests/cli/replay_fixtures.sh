#!/usr/bin/env bash
# Every fixture under tests/histories replays against the script it names;
# an edited script that reorders two activities is caught as nondeterminism
# naming the event, the command and the script line.
. "$(dirname "$0")/lib.sh"
t_begin "replay fixtures"
H="$JORCH_SOURCE_DIR/tests/histories"
for json in "$H"/*.json; do
  name=$(basename "$json" .json)
  check "replays: $name" "$JORCH" replay --quiet "$H/$name.lua" "$json"
done

# The replay gate: recorded runs of the real workflows (scripts/record-fixture)
# replay against the CURRENT workflows/TYPE.lua and engine.
n_wf=0
for json in "$H"/workflows/*/*.json; do
  [ -e "$json" ] || continue
  type=$(basename "$(dirname "$json")")
  n_wf=$((n_wf + 1))
  check "replays against workflows/$type.lua: $(basename "$json" .json)" \
    "$JORCH" replay --quiet "$JORCH_SOURCE_DIR/workflows/$type.lua" "$json"
done
check "the gate has orchestrator fixtures ($n_wf)" test "$(ls "$H"/workflows/orchestrate/*.json 2>/dev/null | wc -l)" -ge 7

# an incompatible edit of a copy of orchestrate.lua (the workspace prepared
# before the issue is fetched) fails the gate with the report
mkdir -p "$T_DIR/wf"
awk '/issue = act\("jira.getIssue"/ {hold=$0; next} /repo = act\("repo.prepareWorkspace"/ {print; print hold; next} {print}' \
  "$JORCH_SOURCE_DIR/workflows/orchestrate.lua" >"$T_DIR/wf/orchestrate.lua"
check "the edit changed the copy" test -n "$(diff "$JORCH_SOURCE_DIR/workflows/orchestrate.lua" "$T_DIR/wf/orchestrate.lua")"
for json in "$H"/workflows/orchestrate/*.json; do
  [ -e "$json" ] || continue
  run_jorch replay "$T_DIR/wf/orchestrate.lua" "$json"
  expect_eq "edited orchestrate.lua fails $(basename "$json" .json)" "$RC" "1"
  expect_contains "report names the event: $(basename "$json" .json)" "$ERR" "ActivityTaskScheduled (activity 'jira.getIssue'"
  expect_contains "report names the command: $(basename "$json" .json)" "$ERR" "ScheduleActivityTask (activity 'repo.prepareWorkspace'"
  expect_contains "report names the line: $(basename "$json" .json)" "$ERR" "orchestrate.lua:"
done

# reorder two activities of pipeline.lua
edited="$T_DIR/pipeline.lua"
awk '/local source = acts.fetch/ {hold=$0; next} /local artifact = acts.build/ {print; print hold; next} {print}' \
  "$H/pipeline.lua" >"$edited"
run_jorch replay "$edited" "$H/pipeline.json"
expect_eq "reordered activities: exit 1" "$RC" "1"
expect_contains "reordered activities: nondeterminism" "$ERR" "nondeterminism"
expect_contains "reordered activities: the event" "$ERR" "history event 5 ActivityTaskScheduled (activity 'fetch', id '1')"
expect_contains "reordered activities: the command" "$ERR" "ScheduleActivityTask (activity 'build', id '1')"
expect_contains "reordered activities: the line" "$ERR" "pipeline.lua:6"

# a renamed activity
edited="$T_DIR/three_steps.lua"
sed -e 's/local a = acts.mark("A", name)/local a = acts.stamp("A", name)/' "$H/three_steps.lua" >"$edited"
run_jorch replay "$edited" "$H/three_steps.json"
expect_eq "renamed activity: exit 1" "$RC" "1"
expect_contains "renamed activity: the command" "$ERR" "ScheduleActivityTask (activity 'stamp', id '1')"
expect_contains "renamed activity: the line" "$ERR" "three_steps.lua:12"

# swapping the timer and the second activity
awk '/local b = acts.mark/ {hold=$0; next} /workflow.sleep\(1\)/ {print; print hold; next} {print}' "$H/three_steps.lua" >"$edited"
run_jorch replay "$edited" "$H/three_steps.json"
expect_eq "reordered timer/activity: exit 1" "$RC" "1"
expect_contains "reordered: says which command" "$ERR" "StartTimer"
expect_contains "reordered: says which line" "$ERR" "three_steps.lua:14"

# the unedited script still passes, and bad files give clear errors
check "unedited replays" "$JORCH" replay --quiet "$H/three_steps.lua" "$H/three_steps.json"
printf '{"events": [{"eventId": "1", "eventType": ' >"$T_DIR/trunc.json"
run_jorch replay "$H/three_steps.lua" "$T_DIR/trunc.json"
expect_eq "truncated history: exit 2" "$RC" "2"
expect_contains "truncated history: says where" "$ERR" "trunc.json"
echo 'not json' >"$T_DIR/bad.json"
run_jorch replay "$H/three_steps.lua" "$T_DIR/bad.json"
expect_eq "non-JSON history: exit 2" "$RC" "2"
run_jorch replay "$H/three_steps.lua" "$T_DIR/missing.json"
expect_eq "missing history file: exit 2" "$RC" "2"
expect_contains "missing history file: named" "$ERR" "missing.json"
t_end
