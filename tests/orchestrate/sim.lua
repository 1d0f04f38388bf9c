-- tests/orchestrate/sim.lua: drives workflows/orchestrate.lua through the
-- real lua/jorch/workflow.lua scheduler with a fake engine, in plain lua5.4.
-- Activities are mocks, timers fire as soon as nothing else can happen
-- (like `jorch run --time-skip`). A fast check of the workflow's logic that
-- needs no jorch binary: `lua5.4 tests/orchestrate/sim.lua` from the repo root.

local ROOT = os.getenv("JORCH_SOURCE_DIR") or "."

local function new_sim(opts)
  local sim = {now = 1700000000.0, seq = 0, acts = {}, timers = {}, calls = {}, logs = {}}
  local eng = {}
  function eng.schedule_activity(name, args, o)
    sim.seq = sim.seq + 1
    sim.acts[#sim.acts + 1] = {seq = sim.seq, name = name, args = args, opts = o}
    return sim.seq
  end
  local function secs(d)
    if type(d) == "number" then return d end
    local n, unit = d:match("^(%d+)%s*(%a+)$")
    local mult = ({s = 1, days = 86400, minutes = 60, hours = 3600})[unit] or 1
    return tonumber(n) * mult
  end
  function eng.start_timer(d)
    sim.seq = sim.seq + 1
    sim.timers[#sim.timers + 1] = {seq = sim.seq, at = sim.now + secs(d)}
    return sim.seq
  end
  function eng.cancel_timer(seq)
    for i, t in ipairs(sim.timers) do if t.seq == seq then table.remove(sim.timers, i); return end end
  end
  function eng.cancel_activity(seq)
    for i, a in ipairs(sim.acts) do if a.seq == seq then table.remove(sim.acts, i); return end end
    sim.cancelled_running = seq
  end
  function eng.now() return sim.now end
  function eng.time_iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t or sim.now)) end
  function eng.info() return {workflow_id = "wf-1", run_id = "r1", start_time = 1700000000.0} end
  function eng.log(s) sim.logs[#sim.logs + 1] = s end
  function eng.traceback(co, msg) return debug.traceback(co, tostring(msg)) end
  function eng.uuid() return "uuid" end
  function eng.is_replaying() return false end
  function eng.patched(id, deprecated) return true end  -- a new run: every patch applies

  local chunk = assert(loadfile(ROOT .. "/lua/jorch/workflow.lua"))
  local wf, rt = chunk(eng)
  sim.rt, sim.wf = rt, wf
  _G.workflow = wf
  local main = assert(loadfile(ROOT .. "/workflows/orchestrate.lua"))()
  sim.main = main
  sim.mock = opts.mock
  sim.on_block = opts.on_block
  return sim
end

local function act_error(t, msg, nr)
  return workflow.is_error and setmetatable({}, {}) and
    (function()
      local e = sim_rt.make_error("activity", {type = "ActivityError", message = "activity failed"})
      e.cause = sim_rt.make_error("application", {type = t, message = msg, non_retryable = nr})
      return e
    end)()
end

local function run(sim, ...)
  sim_rt = sim.rt
  sim.rt.start(sim.main, ...)
  for _ = 1, 10000 do
    local kind, v = sim.rt.run()
    if kind ~= "blocked" then return kind, v end
    -- a signal gets its own activation, before any timer can fire
    local signalled = sim.on_block and sim.on_block(sim)
    if signalled then
      -- run again
    elseif #sim.acts > 0 then
      local a = table.remove(sim.acts, 1)
      sim.calls[#sim.calls + 1] = a
      local ok, res = sim.mock(sim, a.name, table.unpack(a.args, 1, a.args.n or #a.args))
      if ok then sim.rt.resolve(a.seq, true, res)
      else sim.rt.resolve(a.seq, false, act_error(res[1], res[2], res[3])) end
    elseif #sim.timers > 0 then
      table.sort(sim.timers, function(x, y) return x.at < y.at end)
      local t = table.remove(sim.timers, 1)
      sim.now = t.at
      sim.rt.resolve(t.seq, true)
    else
      return "stuck"
    end
  end
  return "loop"
end

---------------------------------------------------------------- mocks

local function default_mock(tests_results)
  local test_i = 0
  return function(sim, name, a1, a2, a3)
    if name == "jira.getIssue" then return true, {key = a1, summary = "S", description = "D"} end
    if name == "repo.prepareWorkspace" then return true, {path = "/tmp/x", demo = true, testCommand = {"sh"}} end
    if name == "repo.startBranch" then return true, {branch = "jorch/" .. a2, base = "abc"} end
    if name == "repo.finishCommits" then return true, {commits = {{sha = "0123456789ab", subject = "c"}}} end
    if name == "agent.run" then return true, {output = "out " .. a1.agent, artifact = "/a/" .. a1.agent} end
    if name == "tests.run" then
      test_i = test_i + 1
      local passed = tests_results[test_i]
      if passed == nil then passed = tests_results[#tests_results] end
      return true, {passed = passed, exitCode = passed and 0 or 1, tail = "t", counts = {passed = 1, failed = passed and 0 or 1}}
    end
    return true, {recordedIn = "/j"}
  end
end

local function count(sim, name, pred)
  local n = 0
  for _, c in ipairs(sim.calls) do
    if c.name == name and (not pred or pred(c.args)) then n = n + 1 end
  end
  return n
end

local passed, failed = 0, 0
local function case(name, fn)
  local ok, err = pcall(fn)
  if ok then passed = passed + 1; print("ok   " .. name)
  else failed = failed + 1; print("FAIL " .. name .. ": " .. tostring(err)) end
end

local function query(sim) return sim.rt.query("getState") end

case("happy path autoProceed", function()
  local sim = new_sim{mock = default_mock({true})}
  local kind, v = run(sim, "PROJ-123", {autoProceed = true})
  assert(kind == "complete", kind .. " " .. tostring(v and v[1]))
  local st = query(sim)
  assert(st.status == "completed", st.status)
  assert(count(sim, "jira.transition", function(a) return a[2] == "Done" end) == 1)
  -- one per phase, then the final one: latest.json says completed
  assert(count(sim, "checkpoint.save") == 6, count(sim, "checkpoint.save"))
  local last
  for _, c in ipairs(sim.calls) do if c.name == "checkpoint.save" then last = c.args[1] end end
  assert(last.phase == "DONE" and last.state.status == "completed", last.phase .. " " .. last.state.status)
  assert(st.phaseResults.FIX == nil)
end)

case("gates with proceed", function()
  local sent = 0
  local sim = new_sim{mock = default_mock({true}), on_block = function(sim)
    local st = sim.rt.query("getState")
    if st.awaitingApproval and #sim.acts == 0 then sim.rt.signal("proceed"); sent = sent + 1; return true end
  end}
  local kind, v = run(sim, {issueKey = "PROJ-1", autoProceed = false})
  assert(kind == "complete", kind .. " " .. tostring(v))
  assert(sent == 2, sent)
end)

case("gate timeout", function()
  local sim = new_sim{mock = default_mock({true})}
  local kind, v = run(sim, "PROJ-1", {autoProceed = false})
  assert(kind == "fail", kind)
  assert(v.type == "ApprovalTimeout", v.type)
  assert(query(sim).status == "failed")
  assert(count(sim, "jira.transition", function(a) return a[2] == "Blocked" end) == 1)
end)

case("reject", function()
  local sim = new_sim{mock = default_mock({true}), on_block = function(sim)
    if query(sim).awaitingApproval and #sim.acts == 0 then sim.rt.signal("reject", "not now"); return true end
  end}
  local kind, v = run(sim, "PROJ-1", {autoProceed = false})
  assert(kind == "fail" and v.type == "Rejected", tostring(v.type))
  assert(query(sim).status == "rejected")
  assert(count(sim, "jira.transition", function(a) return a[2] == "Blocked" end) == 0)
end)

case("fail once then pass", function()
  local sim = new_sim{mock = default_mock({false, true})}
  local kind = run(sim, "PROJ-1", {autoProceed = true})
  assert(kind == "complete", kind)
  assert(query(sim).fixAttempts == 1)
  assert(count(sim, "agent.run", function(a) return a[1].agent == "bugfixer" end) == 1)
end)

case("never pass", function()
  local sim = new_sim{mock = default_mock({false})}
  local kind, v = run(sim, "PROJ-1", {autoProceed = true})
  assert(kind == "fail" and v.type == "TestsFailed", tostring(v.type))
  assert(query(sim).fixAttempts == 3)
  assert(count(sim, "tests.run") == 4)
  assert(count(sim, "jira.transition", function(a) return a[2] == "Blocked" end) == 1)
end)

case("malformed key", function()
  local sim = new_sim{mock = default_mock({true})}
  local kind, v = run(sim, "proj-1; rm -rf /")
  assert(kind == "fail" and v.type == "ValidationError", tostring(v.type))
  assert(#sim.calls == 0)
  assert(query(sim).status == "failed")
end)

case("skipPhase TEST and bad name", function()
  local sent = false
  local sim = new_sim{mock = default_mock({false}), on_block = function(sim)
    if not sent then sim.rt.signal("skipPhase", "nonsense"); sim.rt.signal("skipPhase", "TEST"); sent = true; return true end
  end}
  local kind = run(sim, "PROJ-1", {autoProceed = true})
  assert(kind == "complete", kind)
  assert(count(sim, "tests.run") == 0)
  assert(query(sim).phaseResults.TEST.status == "skipped")
end)

case("skipPhases EXPLORE: issue and workspace still fetched, agents skipped", function()
  local sim = new_sim{mock = default_mock({true})}
  local kind, v = run(sim, "PROJ-1", {autoProceed = true, skipPhases = {"explore"}})
  assert(kind == "complete", kind .. " " .. tostring(v and (v.message or v[1])))
  local st = query(sim)
  assert(st.phaseResults.EXPLORE.status == "skipped", st.phaseResults.EXPLORE.status)
  assert(count(sim, "jira.getIssue") == 1 and count(sim, "repo.prepareWorkspace") == 1)
  assert(count(sim, "agent.run", function(a) return a[1].agent == "triage" end) == 0)
  assert(count(sim, "agent.run", function(a) return a[1].agent == "planner" and a[1].repo == "/tmp/x" end) == 1)
end)

case("skipPhase CODE: FIX and DOCUMENT still commit on the issue branch", function()
  local sent = false
  local sim = new_sim{mock = default_mock({false, true}), on_block = function(sim)
    if not sent then sim.rt.signal("skipPhase", "code"); sent = true; return true end
  end}
  local kind, v = run(sim, "PROJ-1", {autoProceed = true})
  assert(kind == "complete", kind .. " " .. tostring(v and (v.message or v[1])))
  local st = query(sim)
  assert(st.phaseResults.CODE.status == "skipped")
  assert(count(sim, "agent.run", function(a) return a[1].agent == "implementer" end) == 0)
  assert(count(sim, "repo.startBranch") == 1, count(sim, "repo.startBranch"))
  local first_branch, first_fixer
  for i, c in ipairs(sim.calls) do
    if c.name == "repo.startBranch" and not first_branch then first_branch = i end
    if c.name == "agent.run" and c.args[1].agent == "bugfixer" and not first_fixer then first_fixer = i end
  end
  assert(first_branch < first_fixer, "the branch must exist before the bug fixer works")
  assert(count(sim, "agent.run", function(a) return a[1].agent == "bugfixer" and a[1].branch == "jorch/PROJ-1" end) == 1)
  assert(count(sim, "repo.finishCommits", function(a) return a[3] == "abc" end) == 2)
  assert(st.branch == "jorch/PROJ-1" and st.fixAttempts == 1)
end)

case("skipPhases: unknown name is a ValidationError", function()
  local sim = new_sim{mock = default_mock({true})}
  local kind, v = run(sim, {issueKey = "PROJ-1", skipPhases = {"TEST", "DEPLOY"}})
  assert(kind == "fail" and v.type == "ValidationError", tostring(v and v.type))
  assert(#sim.calls == 0)
end)

case("pause resume", function()
  local step = 0
  local sim = new_sim{mock = default_mock({true}), on_block = function(sim)
    step = step + 1
    if step == 1 then sim.rt.signal("pause"); return true end
    if query(sim).status == "paused" and #sim.acts == 0 then sim.paused_seen = true; sim.rt.signal("resume"); return true end
  end}
  local kind = run(sim, "PROJ-1", {autoProceed = true})
  assert(kind == "complete", kind)
  assert(sim.paused_seen)
end)

case("activity auth error", function()
  local m = default_mock({true})
  local sim = new_sim{mock = function(sim, name, ...)
    if name == "jira.getIssue" then return false, {"AuthenticationError", "bad creds", true} end
    return m(sim, name, ...)
  end}
  local kind, v = run(sim, "PROJ-1", {autoProceed = true})
  assert(kind == "fail" and v.type == "AuthenticationError", tostring(v.type))
  assert(query(sim).error.type == "AuthenticationError")
end)

case("cancel mid CODE", function()
  local m = default_mock({true})
  local sim
  sim = new_sim{mock = function(s, name, a1, ...)
    if name == "agent.run" and a1.agent == "implementer" then
      s.rt.cancel_request()
      return false, {"CancelledError", "cancelled"}
    end
    return m(s, name, a1, ...)
  end}
  -- a cancelled activity resolves as a CancelledError (kind cancelled)
  local orig = act_error
  act_error = function(t, msg, nr)
    if t == "CancelledError" then return sim.rt.make_error("cancelled", {type = "CancelledError", message = msg}) end
    return orig(t, msg, nr)
  end
  local kind = run(sim, "PROJ-1", {autoProceed = true})
  act_error = orig
  assert(kind == "cancelled", kind)
  local st = query(sim)
  assert(st.status == "cancelled" and st.currentPhase == "CODE", st.status .. " " .. st.currentPhase)
  assert(count(sim, "jira.transition", function(a) return a[2] == "Blocked" end) == 1)
end)

print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
