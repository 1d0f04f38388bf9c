-- Exercises the backend's retry policy: which attempts run, and how the
-- final failure reaches the workflow.
return function(mode)
  local base = {start_to_close_timeout = "5s",
                retry_policy = {initial_interval = "200ms", backoff_coefficient = 2, maximum_attempts = 4}}
  if mode == "flaky" then
    return workflow.execute_activity("flaky", {3}, base)
  elseif mode == "exhausted" then
    local ok, e = pcall(workflow.execute_activity, "flaky", {10}, base)
    return {ok = ok, type = e.type, retry_state = e.retry_state, cause = e.cause.message}
  elseif mode == "non_retryable" then
    local ok, e = pcall(workflow.execute_activity, "invalid", {}, base)
    return {ok = ok, cause = e.cause.type, retry_state = e.retry_state}
  elseif mode == "listed" then
    local opts = {start_to_close_timeout = "5s",
                  retry_policy = {maximum_attempts = 5, non_retryable_error_types = {"Error"}}}
    local ok, e = pcall(workflow.execute_activity, "flaky", {3}, opts)
    return {ok = ok, retry_state = e.retry_state}
  elseif mode == "hang" then
    local opts = {start_to_close_timeout = "1s",
                  retry_policy = {initial_interval = "100ms", maximum_attempts = 2}}
    local ok, e = pcall(workflow.execute_activity, "hang", {}, opts)
    return {ok = ok, cause = e.cause.type, timeout = e.cause.timeout_type, retry_state = e.retry_state}
  elseif mode == "unknown" then
    return workflow.execute_activity("doesNotExist", {}, base)
  elseif mode == "bad_result" then
    return workflow.execute_activity("returnsFunction", {}, base)
  end
  error("unknown mode " .. tostring(mode))
end
