-- bench/scale: an orchestrator's shape - three steps, then a wait at an
-- approval gate for the signal "proceed" (bench/go/main.go's BenchGate).
return function(key)
  local notes, phase = {}, "EXPLORE"
  for i = 1, 3 do
    notes[i] = workflow.execute_activity("echo", {key .. "-" .. i}, {start_to_close_timeout = 10})
  end
  local approved = false
  workflow.on_signal("proceed", function(v) approved = v end)
  workflow.wait_condition(function() return approved end)
  phase = "DONE"
  return notes[3] .. ":" .. phase
end
