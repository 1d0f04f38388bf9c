-- activities/repo.lua: the target repository of the orchestrator.
--
-- prepareWorkspace finds the repository to work in (the workflow input's
-- `repo`, or repo.path in jorch.yaml) or, for the zero-setup demo, copies
-- examples/demo-repo to $JORCH_HOME/work/<KEY> and makes it a git repo.
-- startBranch and finishCommits bracket the CODE phase: the implementer works
-- on a branch named after the issue and the commits it made are recorded.
-- Every git call is an argv list; branch names and commit messages are
-- built from the validated issue key only, never from issue text.
--
-- The work tree is the agent's: it can write .git/config, .git/hooks and
-- .gitattributes. So git runs here with everything a repository's
-- configuration can make it execute switched off (GIT_SAFE below, plus
-- every filter driver the configuration defines), with an allow-listed
-- environment (lib.common.child_env; repo.env in jorch.yaml adds names),
-- and never with jorch's secrets.

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

-- Settings (command scope: they win over every configuration file) that
-- switch off what git 2.39 would otherwise run on a repository's say:
-- hooks (post-checkout, post-commit, reference-transaction, ... including
-- those --no-verify does not cover), the fsmonitor program, a pager,
-- credential helpers, any transport (and with it core.sshCommand, remote
-- helpers, core.askPass), gpg.program for signing or showing signatures,
-- background gc/maintenance, and recursion into submodules, whose own
-- configuration would apply. Filter drivers are added per repository
-- (safe_git_env). Diff drivers and diff.external only run for diffs, which
-- jorch never asks for (git log gets --no-ext-diff --no-textconv too).
local GIT_SAFE = {
  {"core.hooksPath", "/dev/null"},
  {"core.fsmonitor", "false"},
  {"core.pager", "cat"},
  {"credential.helper", ""},
  {"protocol.allow", "never"},
  {"commit.gpgSign", "false"},
  {"tag.gpgSign", "false"},
  {"log.showSignature", "false"},
  {"gc.auto", "0"},
  {"maintenance.auto", "false"},
  {"submodule.recurse", "false"},
}

-- GIT_CONFIG_COUNT/KEY_n/VALUE_n (git >= 2.31) rather than "-c k=v": a key
-- may then hold any byte, '=' included (a filter driver's name can).
local function git_env(settings)
  local extra = {GIT_CONFIG_NOSYSTEM = "1", GIT_ATTR_NOSYSTEM = "1", GIT_TERMINAL_PROMPT = "0",
    GIT_CONFIG_COUNT = tostring(#settings)}
  for i, kv in ipairs(settings) do
    extra["GIT_CONFIG_KEY_" .. (i - 1)] = kv[1]
    extra["GIT_CONFIG_VALUE_" .. (i - 1)] = kv[2]
  end
  return common.child_env({{((jorch.config or {}).repo or {}).env, "repo.env"}}, extra)
end

local function exec(argv, cwd, env)
  return jorch.exec{argv = argv, cwd = cwd, timeout = 120, env = env or common.child_env(), env_clear = true}
end

-- The environment for git in `repo`: GIT_SAFE, plus every filter driver
-- the configuration defines (filter.<driver>.clean/smudge/process, which
-- .gitattributes select) emptied and made optional, so `git add`, `status`
-- and `checkout` run none of them. Reading the configuration runs nothing.
local function safe_git_env(repo)
  local settings = {}
  for i, kv in ipairs(GIT_SAFE) do settings[i] = kv end
  local r = exec({"git", "config", "--null", "--name-only", "--get-regexp", "^filter\\."}, repo,
    git_env(settings))
  local seen = {}
  for name in (r.stdout or ""):gmatch("([^\0]+)\0") do
    local driver = name:match("^filter%.(.*)%.[^.]*$")
    if driver and not seen[driver] then
      seen[driver] = true
      for _, key in ipairs({"clean", "smudge", "process"}) do
        settings[#settings + 1] = {"filter." .. driver .. "." .. key, ""}
      end
      settings[#settings + 1] = {"filter." .. driver .. ".required", "false"}
    end
  end
  return git_env(settings)
end

-- A git command (argv starting with "git") in repo; env from safe_git_env.
local function run_git(argv, cwd, env, what)
  local r = exec(argv, cwd, env)
  if r.timed_out or r.status ~= 0 then
    fail("GitError", what .. " failed (" .. table.concat(argv, " ") .. " in " .. tostring(cwd)
      .. "): " .. tostring(r.stderr or ""):sub(1, 500))
  end
  return (r.stdout or ""):gsub("%s+$", "")
end

local function try_git(argv, cwd, env)
  local r = exec(argv, cwd, env)
  return r.status == 0 and not r.timed_out, (r.stdout or ""):gsub("%s+$", "")
end

-- Other programs (realpath, cp, ...): the allow-listed environment only.
local function run(argv, cwd, what)
  local r = exec(argv, cwd)
  if r.timed_out or r.status ~= 0 then
    fail("GitError", what .. " failed (" .. table.concat(argv, " ") .. " in " .. tostring(cwd)
      .. "): " .. tostring(r.stderr or ""):sub(1, 500))
  end
  return (r.stdout or ""):gsub("%s+$", "")
end

local function try(argv, cwd)
  local r = exec(argv, cwd)
  return r.status == 0 and not r.timed_out, (r.stdout or ""):gsub("%s+$", "")
end

local function absolute(path)
  return run({"realpath", "--", path}, nil, "resolving " .. path)
end

-- Commits made here need an identity; keep the user's own when they have one.
local function identity_args(repo, env)
  local ok, email = try_git({"git", "config", "user.email"}, repo, env)
  if ok and email ~= "" then return {} end
  return {"-c", "user.name=jorch", "-c", "user.email=jorch@localhost"}
end

local function git_commit(repo, env, message)
  local argv = {"git"}
  for _, a in ipairs(identity_args(repo, env)) do argv[#argv + 1] = a end
  for _, a in ipairs({"commit", "--no-verify", "-q", "-m", message}) do argv[#argv + 1] = a end
  run_git(argv, repo, env, "committing")
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
  local env = git_env(GIT_SAFE)
  run_git({"git", "init", "-q", "-b", "main"}, dst, env, "git init")
  run_git({"git", "config", "user.name", "jorch demo"}, dst, env, "git config")
  run_git({"git", "config", "user.email", "demo@jorch.invalid"}, dst, env, "git config")
  run_git({"git", "add", "-A"}, dst, env, "git add")
  git_commit(dst, env, "Initial demo repository")
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
  local ok = try_git({"git", "rev-parse", "--show-toplevel"}, repo, git_env(GIT_SAFE))
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
  local env = safe_git_env(repo)
  local base = run_git({"git", "rev-parse", "HEAD"}, repo, env, "reading HEAD")
  run_git({"git", "checkout", "-q", "-B", branch}, repo, env, "creating branch " .. branch)
  return {branch = branch, base = base}
end

--- Commits whatever the agent left uncommitted, then lists the commits made
--- since base: {commits = {{sha, subject}...}, head}.
function M.finishCommits(repo, key, base, agent_name)
  check_key(key)
  if type(base) ~= "string" or not base:match("^%x+$") then fail("ValidationError", "bad base commit", true) end
  if type(agent_name) ~= "string" or not agent_name:match("^[a-z][a-z0-9-]*$") then agent_name = "agent" end
  local env = safe_git_env(repo)
  local status = run_git({"git", "status", "--porcelain", "--ignore-submodules=dirty"}, repo, env,
    "git status")
  if status ~= "" then
    run_git({"git", "add", "-A"}, repo, env, "git add")
    git_commit(repo, env, key .. ": uncommitted changes left by the " .. agent_name .. " agent")
  end
  local log = run_git({"git", "log", "--no-ext-diff", "--no-textconv", "--reverse", "--format=%H%x09%s",
    base .. "..HEAD"}, repo, env, "git log")
  local commits = {}
  for line in (log .. "\n"):gmatch("([^\n]*)\n") do
    local sha, subject = line:match("^(%x+)\t(.*)$")
    if sha then commits[#commits + 1] = {sha = sha, subject = subject} end
  end
  return {commits = commits, head = run_git({"git", "rev-parse", "HEAD"}, repo, env, "reading HEAD")}
end

return M
