-- Three activities at once, completing in a fixed order.
local O = {start_to_close_timeout = "10s"}
return function()
  local fs = {}
  for i, s in ipairs({"0.1", "1.1", "2.1"}) do
    fs[i] = workflow.start_activity("slow", {"p" .. i, s}, O)
  end
  return table.concat(workflow.await_all(fs), ",")
end
