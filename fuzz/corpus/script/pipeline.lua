-- Three different activities in sequence: the fixture that the
-- nondeterminism test edits by reordering two of them.
local acts = workflow.activities{start_to_close_timeout = "10s"}

return function(issue)
  local source = acts.fetch(issue)
  local artifact = acts.build(source)
  local url = acts.publish(artifact)
  return url
end
