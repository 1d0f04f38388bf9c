-- Continue-as-new: each run sleeps, then starts over with n - 1.
return function(n)
  workflow.log("countdown at", n)
  if n <= 0 then return "liftoff" end
  workflow.sleep(1)
  workflow.continue_as_new(n - 1)
end
