-- A timer, then an activity (ids per kind: timer 1, activity 1).
return function()
  workflow.sleep("500ms")
  return workflow.execute_activity("step", {"t", "1"}, {start_to_close_timeout = "10s"})
end
