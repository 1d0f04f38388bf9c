-- More heartbeating activities than activity threads: the queued ones must
-- not be timed out for silence before they start.
return function(n)
  local opts = {start_to_close_timeout = "30s", heartbeat_timeout = "1s",
                retry_policy = {maximum_attempts = 1}}
  local fs = {}
  for i = 1, n do fs[i] = workflow.start_activity("beating", {1.5}, opts) end
  local out = {}
  for i = 1, n do
    local ok, e = pcall(fs[i].get, fs[i])
    out[i] = ok and "ok" or ("failed: " .. tostring(e.cause and e.cause.timeout_type))
  end
  return out
end
