-- expect: 'collectgarbage' is not available in workflows
-- Observes garbage collection, whose timing differs between runs.
return function(input)
  return collectgarbage("count")
end
