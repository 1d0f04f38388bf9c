-- expect: cannot change a protected metatable
-- Removes the environment's metatable, hoping to reach what it guards.
return function(input)
  setmetatable(_G, nil)
  return os.time()
end
