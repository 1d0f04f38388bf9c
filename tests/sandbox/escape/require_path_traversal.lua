-- expect: is not a valid workflow module name
-- Reaches a file outside the workflows directory.
return function(input)
  return require("../../etc/passwd")
end
