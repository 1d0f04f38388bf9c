-- expect: instruction budget exceeded (possible infinite loop)
-- Catches the budget error and keeps going.
return function(input)
  while true do
    pcall(function() while true do end end)
  end
end
