-- expect: __mode is not available in workflows
-- Sets __mode after setmetatable, by plain assignment: the collector would
-- read it and drop entries at nondeterministic times.
return function(input)
  local mt = {}
  local cache = setmetatable({}, mt)
  mt.__mode = "k"
  return cache
end
