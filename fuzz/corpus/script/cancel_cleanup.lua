-- Cancelled while sleeping: runs a cleanup activity, then ends cancelled.
return function()
  local acts = workflow.activities{start_to_close_timeout = "10s"}
  local ok, e = pcall(workflow.sleep, "1 hour")
  if not ok and workflow.is_cancelled(e) then
    acts.mark("cleanup", "cancelled")
    error(e, 0)
  end
  return "slept"
end
