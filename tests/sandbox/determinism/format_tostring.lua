-- Formats tables, functions and numbers: no address may appear, and the
-- per-run numbering must be the same on every replay.
return function(input)
  local a, b = {}, {}
  local f = function() end
  local co = coroutine.create(f)
  local s = string.format("%s %s %s %s %5.2f %d %q %s", a, b, f, co, math.pi, 42, 1 / 3, a)
  return s .. "|" .. tostring(a) .. "|" .. tostring(setmetatable({}, {__name = "Job"}))
end
