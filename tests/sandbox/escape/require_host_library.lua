-- expect: module 'os' not found
-- Asks require for a host library instead of a workflow module.
return function(input)
  return require("os").time()
end
