-- Heartbeat timeouts are enforced by the backend: an activity that keeps
-- beating runs past the timeout; one that falls silent is stopped.
return function(name)
  local opts = {start_to_close_timeout = "30s", heartbeat_timeout = "1s",
                retry_policy = {initial_interval = "100ms", maximum_attempts = 2}}
  local ok, e = pcall(workflow.execute_activity, name, {2.5}, opts)
  if ok then return {ok = true, value = e} end
  return {ok = false, cause = e.cause.type, timeout = e.cause.timeout_type, retry_state = e.retry_state}
end
