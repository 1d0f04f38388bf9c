-- activities/lib/common.lua: helpers shared by the orchestrator's activity
-- modules (required as "lib.common"; files under lib/ are not activity
-- modules themselves).
local M = {}

-- The jorch.yaml section `name` as a table ({} when absent or not a table).
function M.section(name)
  local c = (jorch.config or {})[name]
  return type(c) == "table" and c or {}
end

-- The store directory: $JORCH_HOME, else what jorch passes as config.home.
function M.home()
  local h = jorch.env("JORCH_HOME")
  if h and h ~= "" then return h end
  return (jorch.config or {}).home or ".jorch"
end

-- A path from jorch.yaml, resolved as jorch resolves its own (temporal.*):
-- "~/" is $HOME, a relative path is relative to the configuration file's
-- directory ($JORCH_CONFIG's, else the current directory's ./jorch.yaml).
function M.config_path(p)
  if type(p) ~= "string" or p == "" then return nil end
  if p:sub(1, 2) == "~/" then
    local h = jorch.env("HOME")
    if h and h ~= "" then return h .. p:sub(2) end
    return p
  end
  if p:sub(1, 1) == "/" then return p end
  local c = jorch.env("JORCH_CONFIG")
  local dir = c and c ~= "" and c:match("^(.*)/[^/]*$")
  return dir and (dir .. "/" .. p) or p
end

-- A file or directory name for an id (a workflow id, a phase): letters,
-- digits, '-', '_' and '.' stay, every other byte becomes %XX, and so does
-- a leading '.', so no id can name "..", a hidden file or a path, and two
-- different ids never share a name.
function M.safe_name(s)
  s = tostring(s or "run")
  if s == "" then return "run" end
  local out = s:gsub("[^%w._-]", function(c) return string.format("%%%02X", c:byte()) end)
  return (out:gsub("^%.", "%%2E"))
end

-- The whole file, or nil when it cannot be opened.
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- A secret kept in a file named by jorch.yaml (`*_file` settings): its
-- content without trailing white space, or nil.
function M.secret_file(setting)
  local path = M.config_path(setting)
  local s = path and M.read_file(path)
  if not s then return nil end
  s = s:gsub("%s+$", "")
  return s ~= "" and s or nil
end

-- Child programs (git, the agent, the test command, mkdir...) get an
-- allow-listed environment, never jorch's own minus a deny-list: the agent
-- acts on issue text anyone who can edit the issue wrote, the test command
-- and git hooks run code the agent wrote, so nothing reaches them that was
-- not chosen for them. BASE_ENV is what any program needs; a jorch.yaml
-- section's `env:` list adds names for that child (agent.env,
-- agents.<name>.env, tests.env, repo.env), e.g. the agent's own API key.
local BASE_ENV = {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "USER", "LOGNAME", "TZ"}
-- jorch's own secrets never reach a child, even when a list names them.
local SECRET_ENV = {JIRA_API_TOKEN = true, JIRA_BEARER_TOKEN = true, SLACK_WEBHOOK_URL = true,
  TEMPORAL_API_KEY = true}
M.SECRET_ENV = SECRET_ENV

local function config_error(message)
  error(activity.error{type = "ConfigurationError", message = message, non_retryable = true})
end

-- The names listed at `where` (a list of variable names, or nil).
local function env_names(list, where)
  if list == nil then return {} end
  if type(list) ~= "table" then
    config_error(where .. " must be a list of environment variable names, e.g. [\"ANTHROPIC_API_KEY\"]")
  end
  local out = {}
  for i, name in ipairs(list) do
    if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
      config_error(where .. "[" .. i .. "] is not an environment variable name")
    end
    if SECRET_ENV[name] then
      config_error(where .. " lists " .. name .. ", one of jorch's own secrets; child programs never get "
        .. "those (give the program its own credential under another name)")
    end
    out[#out + 1] = name
  end
  return out
end

--- The environment for a child program: BASE_ENV plus the names listed in
--- the given jorch.yaml places, each {list, "where.env"}; for jorch.exec
--- with env_clear = true. `extra` (name -> value) is added as is.
function M.child_env(places, extra)
  local env = {}
  local function take(name)
    local v = jorch.env(name)
    if v ~= nil and not SECRET_ENV[name] then env[name] = v end
  end
  for _, name in ipairs(BASE_ENV) do take(name) end
  for _, place in ipairs(places or {}) do
    for _, name in ipairs(env_names(place[1], place[2])) do take(name) end
  end
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

--- jorch.exec with the allow-listed environment (opts.env, when given, is
--- used instead and must come from child_env).
function M.exec(opts)
  opts.env = opts.env or M.child_env()
  opts.env_clear = true
  return jorch.exec(opts)
end

return M
