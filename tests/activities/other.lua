-- A second module: defines `dup` again (ambiguity test) and a helper.
return {
  dup = function() return "other" end,
  greet = function(name) return "hello " .. name end,
}
