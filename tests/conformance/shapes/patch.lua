-- A patch: new runs take the patched branch.
local O = {start_to_close_timeout = "10s"}
return function()
  if workflow.patched("p1") then return workflow.execute_activity("step", {"patched", "1"}, O) end
  return workflow.execute_activity("step", {"old", "1"}, O)
end
