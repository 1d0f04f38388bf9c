-- expect: 'dofile' is not available in workflows
return function(input)
  return dofile("/etc/passwd")
end
