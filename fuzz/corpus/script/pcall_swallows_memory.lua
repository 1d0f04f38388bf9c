-- expect: memory limit of
-- Catches the out-of-memory error and carries on.
return function(input)
  local ok = pcall(string.rep, "x", 1 << 30)
  local n = 0
  for i = 1, 1e7 do n = n + i end
  return n
end
