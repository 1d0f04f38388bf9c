-- Heartbeat details across attempts: "resumable" heartbeats twice on its
-- first attempt and fails, fails again on the second without a heartbeat;
-- the third returns every value of the last heartbeat
-- (activity.heartbeat_details()) and info().heartbeat_details.
-- Run on both backends (tests/cli/retry_policy.sh, tests/integration/run_temporal.sh).
return function()
  return workflow.execute_activity("resumable", {}, {start_to_close_timeout = "30s",
    retry_policy = {initial_interval = "100ms", maximum_attempts = 3}})
end
