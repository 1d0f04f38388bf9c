-- expect: 'collectgarbage' is not available in workflows
-- Hides the forbidden name from a reader by computing it.
return function(input)
  return _G["collect" .. "garbage"]("count")
end
