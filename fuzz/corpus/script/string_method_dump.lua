-- expect: string.dump is not available in workflows
-- Reaches string.dump through the string metatable (method syntax).
return function(input)
  return ("").dump(function() return 1 end)
end
