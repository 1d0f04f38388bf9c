-- expect: 'io' is not available in workflows
-- Reads a file from workflow code instead of an activity.
return function(input)
  local f = io.open("/etc/passwd")
  return f:read("a")
end
