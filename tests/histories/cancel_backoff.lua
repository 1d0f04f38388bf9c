-- Cancels an activity while it waits for its retry (issue 8): the server
-- ends it at once (ActivityTaskCanceled after the task's command events),
-- and the workflow goes on with another activity.
local O = {start_to_close_timeout = "10s", retry_policy = {initial_interval = "3s", maximum_attempts = 5}}
return function()
  local f = workflow.start_activity("flaky", {99}, O)
  workflow.sleep("1s")
  f:cancel()
  local ok = pcall(function() return f:get() end)
  return {cancelled = not ok, r = workflow.execute_activity("echo", {"after"}, O)}
end
