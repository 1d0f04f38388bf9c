-- expect: memory limit of
return function(input)
  local s = "x"
  while true do s = s .. s end
end
