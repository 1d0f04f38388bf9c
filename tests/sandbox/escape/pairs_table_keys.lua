-- expect: pairs: keys of type 'table' have no deterministic order
-- Iterates keys ordered by address.
return function(input)
  local t = {[{}] = 1, [{}] = 2}
  local n = 0
  for k in pairs(t) do n = n + 1 end
  return n
end
