-- expect: attempt to load a binary chunk
-- Loads bytecode through a reader function instead of a string.
return function(input)
  local parts = {"\27Lua", "\84\0"}
  local f = assert(load(function() return table.remove(parts, 1) end))
  return f()
end
