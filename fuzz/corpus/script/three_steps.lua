-- Three activities, a signal with a timeout, and a sleep: the shape the
-- crash-safety tests kill at every point.
local acts = workflow.activities{
  start_to_close_timeout = "30s",
  retry_policy = {initial_interval = "100ms", maximum_attempts = 5},
}

return function(name)
  local approved = nil
  workflow.on_signal("approve", function(who) approved = who end)
  workflow.on_query("state", function() return {approved = approved} end)
  local a = acts.mark("A", name)
  local got = workflow.wait_condition(function() return approved ~= nil end, "2s")
  local b = acts.mark("B", got and approved or "timeout")
  workflow.sleep(1)
  local c = acts.mark("C", name)
  return {a, b, c}
end
