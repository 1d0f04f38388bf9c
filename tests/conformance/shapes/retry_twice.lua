-- An activity that fails twice, then succeeds on attempt 3.
return function()
  return workflow.execute_activity("flaky_until", {"3"}, {start_to_close_timeout = "10s",
    retry_policy = {initial_interval = "200ms", backoff_coefficient = 1, maximum_attempts = 5}})
end
