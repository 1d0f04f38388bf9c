-- expect: instruction budget exceeded (possible infinite loop)
-- Loops inside the message handler, which runs while the error unwinds.
return function(input)
  while true do
    xpcall(function() while true do end end, function(m) while true do end end)
  end
end
