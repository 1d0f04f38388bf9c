-- activities/tests.lua: runs the target repository's real test command.
--
-- The command is an argv list (from the workflow input, tests.command in
-- jorch.yaml, or the demo repository's default); a plain string is split
-- on whitespace, never handed to a shell. A failing suite is a result
-- (passed = false), not an activity error: the workflow decides what to do.
-- Counts are parsed where the runner prints them.

local common = require("lib.common")

local M = {}

local TAIL = 4000

local function fail(type_, message, non_retryable)
  error(activity.error{type = type_, message = message, non_retryable = non_retryable or false})
end

local home = common.home


local function last_number(text, pattern)
  local n
  for v in text:gmatch(pattern) do n = tonumber(v) end
  return n
end

--- Counts from the common runners' summaries: {passed, failed, skipped,
--- total} (fields absent when the runner did not say).
function M.parseCounts(text)
  text = tostring(text or "")
  local c = {}
  -- ctest: "75% tests passed, 1 tests failed out of 4"
  local pct, f, total = nil, nil, nil
  for p, ff, t in text:gmatch("(%d+)%% tests passed, (%d+) tests? failed out of (%d+)") do
    pct, f, total = p, ff, t
  end
  if total then
    c.failed, c.total = tonumber(f), tonumber(total)
    c.passed = c.total - c.failed
    return c
  end
  -- cargo: "test result: ok. 3 passed; 0 failed; 1 ignored"
  local cp, cf, ci = nil, nil, nil
  for a, b, d in text:gmatch("test result: %a+%. (%d+) passed; (%d+) failed; (%d+) ignored") do
    cp, cf, ci = a, b, d
  end
  if cp then return {passed = tonumber(cp), failed = tonumber(cf), skipped = tonumber(ci)} end
  -- jest: "Tests:       1 failed, 3 passed, 4 total"
  local jest = text:match("Tests:%s+([^\n]*%d+ total)")
  if jest then
    c.failed = tonumber(jest:match("(%d+) failed")) or 0
    c.passed = tonumber(jest:match("(%d+) passed")) or 0
    c.skipped = tonumber(jest:match("(%d+) skipped"))
    c.total = tonumber(jest:match("(%d+) total"))
    return c
  end
  -- pytest ("3 passed, 1 failed in 0.12s"), jorch's harness ("N passed, N failed")
  c.passed = last_number(text, "(%d+) passed")
  c.failed = last_number(text, "(%d+) failed")
  local errors = last_number(text, "(%d+) errors?%f[%A]")
  if errors then c.failed = (c.failed or 0) + errors end
  c.skipped = last_number(text, "(%d+) skipped")
  if c.passed or c.failed then
    if c.passed and not c.failed then c.failed = 0 end
    return c
  end
  -- go test -v: "--- PASS: TestX" / "--- FAIL: TestY"
  local gp, gf = 0, 0
  for _ in text:gmatch("%-%-%- PASS: ") do gp = gp + 1 end
  for _ in text:gmatch("%-%-%- FAIL: ") do gf = gf + 1 end
  for _ in text:gmatch("%-%-%- SKIP: ") do c.skipped = (c.skipped or 0) + 1 end
  if gp + gf > 0 then c.passed, c.failed = gp, gf end
  return c
end

local function argv_of(command)
  if type(command) == "string" then
    local argv = {}
    for w in command:gmatch("%S+") do argv[#argv + 1] = w end
    command = argv
  end
  if type(command) ~= "table" or #command == 0 then
    fail("ConfigurationError", "no test command: pass testCommand (an argv list) in the workflow "
      .. "input or set tests.command in jorch.yaml", true)
  end
  for i, a in ipairs(command) do
    if type(a) ~= "string" then fail("ConfigurationError", "test command argument " .. i .. " is not a string", true) end
  end
  return command
end

--- Runs the suite: args {repo, command, timeout, workflowId, round}.
--- Returns {passed, exitCode, timedOut, counts, tail, artifact, durationSeconds, command}.
function M.run(args)
  args = args or {}
  if type(args.repo) ~= "string" or args.repo == "" then
    fail("ValidationError", "tests.run needs the repository path (repo)", true)
  end
  local conf = (jorch.config or {}).tests or {}
  local argv = argv_of(args.command or conf.command)
  local timeout = tonumber(args.timeout) or tonumber(conf.timeout) or 1800
  activity.heartbeat({command = argv[1]})
  local started = jorch.now and jorch.now() or os.time()
  local r = jorch.exec{argv = argv, cwd = args.repo, timeout = timeout, heartbeat = 10, env_clear = true,
    env = common.child_env({{conf.env, "tests.env"}})}
  local elapsed = (jorch.now and jorch.now() or os.time()) - started
  local out = (r.stdout or "") .. (r.stderr ~= nil and r.stderr ~= "" and ("\n" .. r.stderr) or "")

  local artifact
  local dir = home() .. "/artifacts/" .. common.safe_name(args.workflowId)
  local mk = common.exec{argv = {"mkdir", "-p", "--", dir}, timeout = 30}
  if mk.status == 0 then
    artifact = dir .. "/TEST-" .. (math.tointeger(args.round) or 0) .. ".output.txt"
    local f = io.open(artifact, "wb")
    if f then f:write(out); f:close() else artifact = nil end
  end

  local passed = r.status == 0 and not r.timed_out
  local counts = M.parseCounts(out)
  activity.log(string.format("tests: %s (exit %s%s)", passed and "passed" or "FAILED",
    tostring(r.status), r.timed_out and ", timed out" or ""))
  return {
    passed = passed,
    exitCode = r.status,
    timedOut = r.timed_out and true or false,
    counts = counts,
    tail = #out > TAIL and out:sub(-TAIL) or out,
    artifact = artifact,
    durationSeconds = elapsed,
    command = argv,
  }
end

return M
