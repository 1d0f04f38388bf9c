-- An error object whose __tostring raises another such object, reached
-- while jorch turns the workflow's failure into a Temporal Failure: the
-- task fails with "its __tostring failed", jorch never aborts.
-- (tests/cli/hostile_scripts.sh, tests/integration/worker_hostile.sh)
local function evil()
  return setmetatable({}, {__tostring = function()
    error(setmetatable({}, {__tostring = function() error({}) end}))
  end})
end
return function()
  local e = workflow.ApplicationError("x")
  getmetatable(e).__index = function() error(evil()) end
  error(e)
end
