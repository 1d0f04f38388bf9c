-- Waits for an activity that always fails with a long retry interval; when
-- the run is cancelled (during the backoff) it runs a cleanup activity and
-- ends cancelled.
local O = {start_to_close_timeout = "10s", retry_policy = {initial_interval = "30s", maximum_attempts = 5}}
return function()
  local ok, e = pcall(workflow.execute_activity, "flaky", {99}, O)
  if not ok and workflow.is_cancelled(e) then
    workflow.execute_activity("mark", {"cleanup", "done"}, O)
    error(e, 0)
  end
  return "not cancelled"
end
