-- Query handlers that must fail cleanly: an error object with a failing
-- __tostring (boom), and C library loops the count hook never sees, stopped
-- by the wall-clock limit (move, concat, pattern); rep is '' at once, and
-- ok keeps answering afterwards.
-- (tests/cli/hostile_scripts.sh, tests/integration/worker_hostile.sh)
local function evil()
  return setmetatable({}, {__tostring = function()
    error(setmetatable({}, {__tostring = function() error("inner") end}))
  end})
end
return function()
  workflow.on_query("boom", function() error(evil()) end)
  workflow.on_query("move", function() table.move({}, 1, 1 << 50, 1, {}) end)
  workflow.on_query("rep", function() return #string.rep("", math.maxinteger) end)
  workflow.on_query("concat", function()
    return table.concat(setmetatable({}, {__index = table.concat}), "", 1, 1 << 50)
  end)
  workflow.on_query("pattern", function() return ("a"):rep(40000):find(".-.-.-.-.-b") end)
  workflow.on_query("ok", function() return "fine" end)
  workflow.wait_condition(function() return false end)
end
