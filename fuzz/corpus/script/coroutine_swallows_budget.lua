-- expect: instruction budget exceeded (possible infinite loop)
-- Runs the loop in a coroutine so the error stops at coroutine.resume.
return function(input)
  while true do
    local co = coroutine.create(function() while true do end end)
    coroutine.resume(co)
  end
end
