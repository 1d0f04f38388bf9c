-- expect: 'os' is not available in workflows (use workflow.now() / an activity)
-- Reads the wall clock directly instead of workflow.now().
return function(input)
  return os.time()
end
