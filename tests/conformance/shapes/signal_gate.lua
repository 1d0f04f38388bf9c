-- Waits for signal "go", then runs an activity with its value.
return function()
  local got = nil
  workflow.on_signal("go", function(v) got = v end)
  workflow.wait_condition(function() return got ~= nil end)
  return workflow.execute_activity("step", {"signal", got}, {start_to_close_timeout = "10s"})
end
