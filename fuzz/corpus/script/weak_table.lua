-- expect: setmetatable: __mode is not available in workflows
-- Weak tables lose entries when the collector runs: nondeterministic.
return function(input)
  local cache = setmetatable({}, {__mode = "k"})
  return cache
end
