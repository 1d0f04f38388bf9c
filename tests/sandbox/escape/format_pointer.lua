-- expect: string.format: '%p' is not available in workflows
-- Formats an address, which differs between processes.
return function(input)
  return string.format("%p", {})
end
