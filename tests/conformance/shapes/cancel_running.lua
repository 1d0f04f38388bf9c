-- Cancels an activity while it runs (it heartbeats), then waits for the
-- cancellation to reach it.
local O = {start_to_close_timeout = "30s", heartbeat_timeout = "1s", retry_policy = {maximum_attempts = 1}}
return function()
  local f = workflow.start_activity("beating", {"20"}, O)
  workflow.sleep("1s")
  f:cancel()
  local ok = pcall(function() return f:get() end)
  workflow.sleep("3s")
  return {cancelled = not ok}
end
