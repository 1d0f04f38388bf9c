-- Two activities, the second using the first's result.
local O = {start_to_close_timeout = "10s"}
return function()
  local a = workflow.execute_activity("step", {"a", "1"}, O)
  return workflow.execute_activity("step", {"b", a}, O)
end
