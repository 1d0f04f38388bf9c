-- expect: 'loadfile' is not available in workflows
return function(input)
  return loadfile("/etc/passwd")
end
