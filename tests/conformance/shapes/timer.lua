-- One durable timer.
return function()
  workflow.sleep("500ms")
  return "slept"
end
