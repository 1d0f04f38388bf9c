-- expect: attempt to index a nil value
-- getmetatable("").__index would be the host's string library if the
-- string metatable were not locked.
return function(input)
  return getmetatable("").__index.dump(function() end)
end
