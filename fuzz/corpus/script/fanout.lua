-- Parallel activities over a table iterated with pairs (canonical order in
-- the sandbox), a side effect, a patch, uuid and random.
return function()
  local acts = workflow.activities{start_to_close_timeout = "10s"}
  local phases = {explore = 1, plan = 2, code = 3, test = 4, fix = 5, document = 6}
  local futures, names = {}, {}
  for name, i in pairs(phases) do
    names[#names + 1] = name
    futures[#futures + 1] = workflow.go(function() return acts.mark(name, i) end)
  end
  local results = workflow.await_all(futures)
  local id = workflow.side_effect(function() return "fixed-id" end)
  local v2 = workflow.patched("fanout-v2")
  return {names = names, results = results, id = id, v2 = v2,
          uuid_len = #workflow.uuid(), r = workflow.random() < 1}
end
