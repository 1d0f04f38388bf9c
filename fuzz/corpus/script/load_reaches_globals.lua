-- expect: 'os' is not available in workflows
-- A loaded chunk gets the run's environment, not the host's globals.
return function(input)
  return load("return os.time()")()
end
