-- bench/scale: 20 activities one after another (bench/go/main.go's BenchSeq20).
return function(x)
  local r = x
  for i = 1, 20 do
    r = workflow.execute_activity("echo", {x .. "-" .. i}, {start_to_close_timeout = 10})
  end
  return r
end
