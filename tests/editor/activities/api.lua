-- api.lua - an activity that lists the API the runtime gives activity
-- modules, for tests/cli/annotations.sh: every global that is not Lua's own,
-- the fields of `activity` and `jorch` (functions as NAME, tables walked,
-- other values as NAME=TYPE), the module names they are required by, and
-- the fields of activity.info().
local lua_globals = {}
for _, n in ipairs{"_G", "_VERSION", "assert", "collectgarbage", "dofile", "error", "getmetatable",
  "ipairs", "load", "loadfile", "next", "pairs", "pcall", "print", "rawequal", "rawget", "rawlen",
  "rawset", "require", "select", "setmetatable", "tonumber", "tostring", "type", "warn", "xpcall",
  "coroutine", "debug", "io", "math", "os", "package", "string", "table", "utf8"} do
  lua_globals[n] = true
end

local function walk(prefix, t, out, deep)
  for k, v in pairs(t) do
    local name = prefix .. k
    if type(v) == "function" then
      out[#out + 1] = name
    elseif type(v) == "table" and deep then
      out[#out + 1] = name .. "=table"
      walk(name .. ".", v, out, false)
    else
      out[#out + 1] = name .. "=" .. type(v)
    end
  end
end

local M = {}

function M.names()
  local out = {}
  for k in pairs(_G) do
    if not lua_globals[k] then out[#out + 1] = "global " .. k end
  end
  walk("activity.", activity, out, false)
  walk("jorch.", jorch, out, true)
  if require("jorch") == jorch then out[#out + 1] = "module jorch" end
  if require("jorch.activity") == activity then out[#out + 1] = "module jorch.activity" end
  for k in pairs(activity.info()) do out[#out + 1] = "info." .. k end
  -- jorch.config is data (jorch.yaml), not API: only the table itself counts
  local kept = {}
  for _, n in ipairs(out) do
    if not n:match("^jorch%.config%.") then kept[#kept + 1] = n end
  end
  table.sort(kept)
  return kept
end

return M
