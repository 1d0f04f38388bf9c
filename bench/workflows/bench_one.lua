-- bench/scale: one activity (bench/go/main.go's BenchOne).
return function(x)
  return workflow.execute_activity("echo", {x}, {start_to_close_timeout = 10})
end
