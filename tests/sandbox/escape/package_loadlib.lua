-- expect: 'package' is not available in workflows
-- Loads a C library through package.loadlib.
return function(input)
  return package.loadlib("libc.so.6", "system")
end
