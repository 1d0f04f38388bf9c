-- expect: instruction budget exceeded (possible infinite loop)
return function(input)
  while true do
    pcall(coroutine.wrap(function() while true do end end))
  end
end
