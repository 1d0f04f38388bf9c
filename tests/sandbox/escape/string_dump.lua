-- expect: string.dump is not available in workflows
-- Produces bytecode to load back as a binary chunk.
return function(input)
  return string.dump(function() return 1 end)
end
