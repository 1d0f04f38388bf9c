-- wait_condition that runs out of time: false.
return function()
  return workflow.wait_condition(function() return false end, "500ms")
end
