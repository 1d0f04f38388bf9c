-- expect: rawset: __mode is not available in workflows
-- Makes a metatable weak after the setmetatable check.
return function(input)
  local mt = {}
  local t = setmetatable({}, mt)
  rawset(mt, "__mode", "k")
  return t
end
