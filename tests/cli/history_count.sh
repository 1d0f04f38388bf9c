#!/usr/bin/env bash
# history_count.sh - a run whose history passes Temporal's event count
# limit (51,200; a warning past 10,240) is terminated as a Temporal server
# terminates it, with the server's reason.
. "$(dirname "$0")/lib.sh"
t_begin "history count limit"
W="$T_DIR/w"
mkdir -p "$W"
cat > "$W/many.lua" <<'LUA'
return function()
  for round = 1, 3 do
    for i = 1, 20000 do workflow.side_effect(function() return i end) end
    workflow.sleep(1)
  end
  return "never"
end
LUA
run_jorch run --time-skip --id many "$W/many.lua"
expect_eq "the run ends with exit 1" "$RC" 1
expect_contains "terminated with the server's reason" "$ERR" "terminated: Workflow history count exceeds limit."
expect_contains "a warning past 10,240 events" "$ERR" "warning: the history has 20005 events; Temporal warns above 10240"
run_jorch describe many
expect_contains "status Terminated" "$OUT" "Terminated"
expect_contains "stopped soon after the limit" "$OUT" "History:      60016 events"
t_end
