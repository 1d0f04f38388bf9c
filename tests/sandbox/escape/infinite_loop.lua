-- expect: instruction budget exceeded (possible infinite loop)
return function(input)
  local n = 0
  while true do n = n + 1 end
end
