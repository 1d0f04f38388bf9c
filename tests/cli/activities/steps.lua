-- Test activities. mark() appends a line to $MARK_FILE (when set) so tests
-- can count how often each step really ran.
local M = {}

function M.mark(step, value)
  local f = os.getenv("MARK_FILE")
  if f then
    local h = assert(io.open(f, "a"))
    h:write(step, "\n")
    h:close()
  end
  local delay = tonumber(os.getenv("MARK_DELAY") or "0")
  if delay > 0 then jorch.sleep(delay) end
  return step .. ":" .. tostring(value)
end

function M.flaky(n)
  local info = activity.info()
  if info.attempt < n then error("attempt " .. info.attempt .. " fails on purpose") end
  return info.attempt
end

function M.invalid()
  activity.error{type = "ValidationError", message = "bad input", non_retryable = true}
end

function M.fetch(issue) return "src-" .. issue end
function M.build(source) return "bin-" .. source end
function M.publish(artifact) return "https://example.invalid/" .. artifact end

function M.returnsFunction()
  return function() end
end

-- Heartbeats every 0.3 s for `seconds`.
function M.beating(seconds)
  local t0 = jorch.now()
  while jorch.now() - t0 < seconds do
    activity.heartbeat({at = jorch.now() - t0})
    jorch.sleep(0.3)
  end
  return "beat for " .. seconds .. "s"
end

-- Says nothing for `seconds`.
function M.silent(seconds)
  jorch.sleep(seconds)
  return "slept"
end

function M.slow(tag, seconds)
  jorch.sleep(seconds)
  return tag
end

function M.echo(x) return x end

-- Attempt 1 heartbeats twice (the second at once: a worker throttles it)
-- and fails; attempt 2 fails without a heartbeat; attempt 3 returns what it
-- is given of the last heartbeat (attempt 1's: details outlive attempts
-- that send none, as on Temporal's server).
function M.resumable()
  local info = activity.info()
  if info.attempt == 1 then
    activity.heartbeat("page", 1)
    activity.heartbeat("page", nil, {cursor = 7})
    error("attempt 1 fails after its heartbeats")
  end
  if info.attempt == 2 then error("attempt 2 fails without a heartbeat") end
  local a, b, c = activity.heartbeat_details()
  return {count = select("#", activity.heartbeat_details()), a = a, b_nil = b == nil, c = c,
          first = info.heartbeat_details, attempt = info.attempt}
end

function M.hang()
  while true do end
end

return M
