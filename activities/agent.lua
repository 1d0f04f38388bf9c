-- activities/agent.lua: runs the configured AI coding agent for one phase.
--
-- The agent is an external program (agent.argv in jorch.yaml, e.g. a coding
-- CLI in non-interactive mode). It runs in the target repository with the
-- phase prompt on stdin. The prompt is a template from workflows/prompts/
-- <agent>.md filled with the issue and earlier phase results. Issue text
-- only ever travels on stdin: never in argv, never through a shell.
-- Without configuration the clearly labelled demo agent
-- (examples/demo-agent) is used. Full prompt and output are saved as
-- artifacts; the result carries bounded excerpts only.

local common = require("lib.common")

local M = {}

local EXCERPT = 4000       -- characters of output returned in the payload
local VALUE_LIMIT = 20000  -- characters of one value inserted in a prompt

local function fail(type_, message, non_retryable)
  error(activity.error{type = type_, message = message, non_retryable = non_retryable or false})
end

local function cfg() return common.section("agent") end

local home = common.home

local function source_root()
  local src = debug and debug.getinfo and debug.getinfo(1, "S").source or ""
  return src:match("^@(.*)/activities/[^/]*$") or "."
end

local function exec_ok(argv)
  local r = common.exec{argv = argv, timeout = 60}
  return r.status == 0 and not r.timed_out, (r.stdout or ""):gsub("%s+$", ""), r.stderr
end

local function absolute(path)
  local ok, out = exec_ok({"realpath", "--", path})
  return ok and out or path
end

local function write_file(path, data)
  local f, err = io.open(path, "wb")
  if not f then fail("StorageError", "cannot write " .. path .. ": " .. tostring(err)) end
  f:write(data)
  f:close()
end

local read_file = common.read_file

local safe_name = common.safe_name

local function excerpt(s, limit)
  s = tostring(s or "")
  if #s <= limit then return s end
  local half = limit // 2
  return s:sub(1, half) .. "\n[... " .. (#s - limit) .. " characters omitted; see the artifact ...]\n"
    .. s:sub(-half)
end


---------------------------------------------------------------- prompts

local config_path = common.config_path

local function prompts_dir()
  local d = jorch.env("JORCH_PROMPTS_DIR")
  if d and d ~= "" then return d end
  d = config_path(cfg().prompts_dir)
  if d then return d end
  return source_root() .. "/workflows/prompts"
end

-- "{{issue.summary}}" -> values.issue.summary; one pass, so text inserted
-- from the issue is never itself expanded.
local function fill(template, values)
  return (template:gsub("{{%s*([%w_.]+)%s*}}", function(path)
    local v = values
    for part in path:gmatch("[^.]+") do
      if type(v) ~= "table" then v = nil; break end
      v = v[part]
    end
    if v == nil then return "" end
    if type(v) == "table" then
      local parts = {}
      for _, x in ipairs(v) do parts[#parts + 1] = tostring(x) end
      v = table.concat(parts, ", ")
    end
    return excerpt(tostring(v), VALUE_LIMIT)
  end))
end

---------------------------------------------------------------- the agent program

-- The agent's environment: the common allow-list plus agent.env and
-- agents.<name>.env from jorch.yaml.
local function agent_env(name)
  local conf = jorch.config or {}
  local per = type(conf.agents) == "table" and conf.agents[name] or nil
  return common.child_env({{cfg().env, "agent.env"},
    {type(per) == "table" and per.env or nil, "agents." .. name .. ".env"}})
end

-- argv from JORCH_AGENT_ARGV (a JSON array; the environment overrides the
-- file), else agents.<name>.argv, else agent.argv, else the demo agent.
local function agent_argv(name)
  local conf = jorch.config or {}
  local per = type(conf.agents) == "table" and conf.agents[name] or nil
  local argv = type(per) == "table" and per.argv or cfg().argv
  local env = jorch.env("JORCH_AGENT_ARGV")
  if env and env ~= "" then
    local ok, v = pcall(jorch.json.decode, env)
    if not ok then
      fail("ConfigurationError", "JORCH_AGENT_ARGV is not a JSON array of strings: " .. tostring(v), true)
    end
    argv = v
  end
  if argv == nil then return {absolute(source_root() .. "/examples/demo-agent")}, true end
  if type(argv) ~= "table" or #argv == 0 then
    fail("ConfigurationError", "agent.argv must be a non-empty list of strings, e.g. "
      .. "[\"my-agent\", \"--print\"]", true)
  end
  local out = {}
  for i, a in ipairs(argv) do
    if type(a) ~= "string" then fail("ConfigurationError", "agent.argv[" .. i .. "] is not a string", true) end
    out[i] = a
  end
  return out, false
end

--- Runs agent `args.agent` for `args.phase`. args: {agent, phase, issue,
--- repo, workflowId, context = {explore=, plan=, code=, test=, ...}, round}.
--- Returns {agent, phase, exitCode, output (excerpt), artifact, prompt,
--- durationSeconds, demo}.
function M.run(args)
  args = args or {}
  local name = args.agent
  if type(name) ~= "string" or not name:match("^[a-z][a-z0-9-]*$") then
    fail("ValidationError", "agent name must be lowercase letters, digits and dashes", true)
  end
  local template_path = prompts_dir() .. "/" .. name .. ".md"
  local template = read_file(template_path)
  if not template then
    fail("ConfigurationError", "no prompt template for agent '" .. name .. "' at " .. template_path, true)
  end
  if type(args.repo) ~= "string" or args.repo == "" then
    fail("ValidationError", "agent.run needs the repository path (repo)", true)
  end
  local prompt = fill(template, {
    issue = args.issue or {},
    phase = args.phase,
    agent = name,
    round = args.round,
    context = args.context or {},
    repo = args.repo,
    branch = args.branch,
  })

  local dir = home() .. "/artifacts/" .. safe_name(args.workflowId)
  local ok, _, err = exec_ok({"mkdir", "-p", "--", dir})
  if not ok then fail("StorageError", "cannot create " .. dir .. ": " .. tostring(err)) end
  local stem = dir .. "/" .. safe_name(args.phase) .. "-" .. name
    .. (args.round and ("-" .. math.tointeger(args.round)) or "")
  write_file(stem .. ".prompt.md", prompt)

  local argv, demo = agent_argv(name)
  local timeout = tonumber(jorch.env("JORCH_AGENT_TIMEOUT") or "") or tonumber(cfg().timeout) or 3600
  activity.heartbeat({agent = name, phase = args.phase})
  local started = jorch.now and jorch.now() or os.time()
  activity.log(string.format("agent: running %s for %s in %s%s", name, tostring(args.phase),
    args.repo, demo and " (DEMO agent)" or ""))
  local r = jorch.exec{argv = argv, cwd = args.repo, stdin = prompt, timeout = timeout, heartbeat = 10,
    env = agent_env(name), env_clear = true}
  local elapsed = (jorch.now and jorch.now() or os.time()) - started
  local output = (r.stdout or "")
  if r.stderr and r.stderr ~= "" then output = output .. "\n--- stderr ---\n" .. r.stderr end
  write_file(stem .. ".output.txt", output)

  if r.timed_out then
    fail("AgentTimeout", "agent '" .. name .. "' did not finish within " .. timeout
      .. "s (agent.timeout in jorch.yaml); output so far in " .. stem .. ".output.txt")
  end
  if r.status ~= 0 then
    fail("AgentFailed", "agent '" .. name .. "' exited with " .. (r.status and ("status " .. r.status) or ("signal " .. tostring(r.signal)))
      .. " (" .. table.concat(argv, " ") .. "); output in " .. stem .. ".output.txt:\n"
      .. excerpt(r.stderr ~= "" and r.stderr or r.stdout, 1000))
  end
  return {
    agent = name,
    phase = args.phase,
    exitCode = r.status,
    output = excerpt(r.stdout or "", EXCERPT),
    artifact = absolute(stem .. ".output.txt"),
    prompt = absolute(stem .. ".prompt.md"),
    durationSeconds = elapsed,
    demo = demo,
  }
end

return M
