-- The conformance suite's activities; tests/conformance/shapes.py defines
-- the same ones in Python (same names, arguments and results).
local M = {}

function M.step(tag, x) return tag .. ":" .. x end

-- Sleeps `seconds` (a string), then returns tag: fixes the order in which
-- parallel activities complete.
function M.slow(tag, seconds)
  jorch.sleep(tonumber(seconds))
  return tag
end

-- Fails until attempt n (a string), then returns the attempt number.
function M.flaky_until(n)
  local a = activity.info().attempt
  if a < tonumber(n) then error("attempt " .. a .. " fails on purpose") end
  return a
end

function M.always_fails() error("always fails") end

-- Heartbeats every 0.2 s for `seconds` (a string); a cancellation ends it.
function M.beating(seconds)
  local t0 = jorch.now()
  while jorch.now() - t0 < tonumber(seconds) do
    activity.heartbeat()
    jorch.sleep(0.2)
  end
  return "beat"
end

return M
