-- Cancels an activity while it waits for its retry (issue 8).
local O = {start_to_close_timeout = "10s", retry_policy = {initial_interval = "3s", maximum_attempts = 5}}
return function()
  local f = workflow.start_activity("always_fails", {}, O)
  workflow.sleep("1s")
  f:cancel()
  local ok = pcall(function() return f:get() end)
  -- slow: the task that ActivityTaskCanceled brings runs before it completes
  return {cancelled = not ok, r = workflow.execute_activity("slow", {"after", "1"}, O)}
end
