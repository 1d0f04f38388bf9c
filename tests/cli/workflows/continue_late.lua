-- Generation 1 starts a slow activity and continues as new before it ends;
-- generation 2's first activity has the same event id and must get its
-- own result, never the late one of generation 1.
return function(gen)
  if gen == 1 then
    workflow.start_activity("slow", {"gen1", 1.5}, {start_to_close_timeout = "30s"})
    workflow.sleep(0.2)
    workflow.continue_as_new(2)
  end
  return "gen2 got: " .. workflow.execute_activity("slow", {"gen2", 3}, {start_to_close_timeout = "30s"})
end
