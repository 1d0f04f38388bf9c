-- expect: __mode is not available in workflows
-- The same trick on a metatable that has its own metatable (a class).
return function(input)
  local Base = {}
  local Class = setmetatable({}, {__index = Base})
  local obj = setmetatable({}, Class)
  Class.__mode = "v"
  return obj
end
