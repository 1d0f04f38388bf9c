-- activities/repo.lua: the target repository of the orchestrator.
--
-- prepareWorkspace finds the repository to work in (the workflow input's
-- `repo`, or repo.path in jorch.yaml) or, for the zero-setup demo, copies
-- examples/demo-repo to $JORCH_HOME/work/<KEY> and makes it a git repo.
-- startBranch and finishCommits bracket the CODE phase: the implementer works
-- on a branch named after the issue and the commits it made are recorded.
-- Every git call is an argv list; branch names and commit messages are
-- built from the validated issue key only, never from issue text.

local common = require("lib.common")

local M = {}

local KEY_PATTERN = "^[A-Z][A-Z0-9_]*%-[1-9][0-9]*$"

local function fail(type_, message, non_retryable)
  error(activity.error{type = type_, message = message, non_retryable = non_retryable or false})
end

local function check_key(key)
  if type(key) ~= "string" or #key > 64 or not key:match(KEY_PATTERN) then
    fail("ValidationError", "invalid issue key (expected PROJECT-123)", true)
  end
end

local home = common.home

local function source_root()
  local src = debug and debug.getinfo and debug.getinfo(1, "S").source or ""
  return src:match("^@(.*)/activities/[^/]*$") or "."
end

local function run(argv, cwd, what)
  local r = jorch.exec{argv = argv, cwd = cwd, timeout = 120}
  if r.timed_out or r.status ~= 0 then
    fail("GitError", what .. " failed (" .. table.concat(argv, " ") .. " in " .. tostring(cwd)
      .. "): " .. tostring(r.stderr or ""):sub(1, 500))
  end
  return (r.stdout or ""):gsub("%s+$", "")
end

local function try(argv, cwd)
  local r = jorch.exec{argv = argv, cwd = cwd, timeout = 120}
  return r.status == 0 and not r.timed_out, (r.stdout or ""):gsub("%s+$", "")
end

local function absolute(path)
  return run({"realpath", "--", path}, nil, "resolving " .. path)
end

-- Commits made here need an identity; keep the user's own when they have one.
local function identity_args(repo)
  local ok, email = try({"git", "config", "user.email"}, repo)
  if ok and email ~= "" then return {} end
  return {"-c", "user.name=jorch", "-c", "user.email=jorch@localhost"}
end

local function git_commit(repo, message)
  local argv = {"git"}
  for _, a in ipairs(identity_args(repo)) do argv[#argv + 1] = a end
  for _, a in ipairs({"commit", "--no-verify", "-q", "-m", message}) do argv[#argv + 1] = a end
  run(argv, repo, "committing")
end

local function demo_workspace(key)
  local template = source_root() .. "/examples/demo-repo"
  local ok = try({"test", "-d", template})
  if not ok then
    fail("ConfigurationError", "no repository configured and the demo template " .. template
      .. " is missing; pass {repo = \"/path/to/repo\"} or set repo.path in jorch.yaml", true)
  end
  local work = home() .. "/work"
  local dst = work .. "/" .. key
  -- A previous demo run's copy is replaced; a real repository never is.
  if try({"test", "-e", dst}) then
    if not try({"test", "-f", dst .. "/.jorch-demo"}) then
      fail("ConfigurationError", dst .. " exists and is not a jorch demo workspace; remove it or "
        .. "pass a repo", true)
    end
    run({"rm", "-rf", "--", dst}, nil, "removing the old demo workspace")
  end
  run({"mkdir", "-p", "--", work}, nil, "creating " .. work)
  run({"cp", "-R", "--", template, dst}, nil, "copying the demo repository")
  run({"touch", dst .. "/.jorch-demo"}, nil, "marking the demo workspace")
  run({"git", "init", "-q", "-b", "main"}, dst, "git init")
  run({"git", "config", "user.name", "jorch demo"}, dst, "git config")
  run({"git", "config", "user.email", "demo@jorch.invalid"}, dst, "git config")
  run({"git", "add", "-A"}, dst, "git add")
  git_commit(dst, "Initial demo repository")
  return absolute(dst)
end

--- {path, demo, testCommand?}: the repository the agents work in.
function M.prepareWorkspace(args)
  args = args or {}
  check_key(args.issueKey)
  local repo = args.repo
  if repo == nil or repo == "" then
    local rc = (jorch.config or {}).repo
    repo = type(rc) == "table" and rc.path or nil
  end
  if repo == nil or repo == "" then
    local path = demo_workspace(args.issueKey)
    activity.log("repo: demo workspace prepared at " .. path)
    return {path = path, demo = true, testCommand = {"sh", "run-tests.sh"}}
  end
  if type(repo) ~= "string" then fail("ValidationError", "repo must be a path string", true) end
  local ok = try({"git", "rev-parse", "--show-toplevel"}, repo)
  if not ok then
    fail("ConfigurationError", "repository " .. repo .. " is not a git work tree (git init it, "
      .. "or point repo at one)", true)
  end
  return {path = absolute(repo), demo = false}
end

--- Creates (or resets) the issue's branch at HEAD; returns {branch, base}.
function M.startBranch(repo, key)
  check_key(key)
  local prefix = ((jorch.config or {}).repo or {}).branch_prefix or "jorch/"
  if type(prefix) ~= "string" or not prefix:match("^[%w._/-]*$") then prefix = "jorch/" end
  local branch = prefix .. key
  local base = run({"git", "rev-parse", "HEAD"}, repo, "reading HEAD")
  run({"git", "checkout", "-q", "-B", branch}, repo, "creating branch " .. branch)
  return {branch = branch, base = base}
end

--- Commits whatever the agent left uncommitted, then lists the commits made
--- since base: {commits = {{sha, subject}...}, head}.
function M.finishCommits(repo, key, base, agent_name)
  check_key(key)
  if type(base) ~= "string" or not base:match("^%x+$") then fail("ValidationError", "bad base commit", true) end
  if type(agent_name) ~= "string" or not agent_name:match("^[a-z][a-z0-9-]*$") then agent_name = "agent" end
  local status = run({"git", "status", "--porcelain"}, repo, "git status")
  if status ~= "" then
    run({"git", "add", "-A"}, repo, "git add")
    git_commit(repo, key .. ": uncommitted changes left by the " .. agent_name .. " agent")
  end
  local log = run({"git", "log", "--reverse", "--format=%H%x09%s", base .. "..HEAD"}, repo, "git log")
  local commits = {}
  for line in (log .. "\n"):gmatch("([^\n]*)\n") do
    local sha, subject = line:match("^(%x+)\t(.*)$")
    if sha then commits[#commits + 1] = {sha = sha, subject = subject} end
  end
  return {commits = commits, head = run({"git", "rev-parse", "HEAD"}, repo, "reading HEAD")}
end

return M
