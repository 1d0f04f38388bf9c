-- expect: module 'socket.core' not found
return function(input)
  return require("socket.core")
end
