-- expect: next: keys of type 'function' have no deterministic order
return function(input)
  return next({[function() end] = 1})
end
