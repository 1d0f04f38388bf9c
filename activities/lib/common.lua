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

-- jorch's own secrets are not a child program's business: the agent acts on
-- issue text anyone with access to the issue may have written, and the test
-- command runs code the agent wrote. They are blanked in its environment
-- (everything else, e.g. the agent's own API key, PATH and HOME, is kept).
local SECRET_ENV = {"JIRA_API_TOKEN", "JIRA_BEARER_TOKEN", "SLACK_WEBHOOK_URL", "TEMPORAL_API_KEY"}
function M.child_env()
  local env = {}
  for _, name in ipairs(SECRET_ENV) do
    if jorch.env(name) ~= nil then env[name] = "" end
  end
  return env
end

return M
