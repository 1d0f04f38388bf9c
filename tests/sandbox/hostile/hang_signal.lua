return function()
  workflow.on_signal("hang", function() return ("x"):rep(50000):gsub(".-.-.-.-y", "") end)
  workflow.wait_condition(function() return false end)
end
