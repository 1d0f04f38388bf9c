-- expect: 'debug' is not available in workflows
-- Reaches the host's registry (and the real globals) through the debug library.
return function(input)
  return debug.getregistry()
end
