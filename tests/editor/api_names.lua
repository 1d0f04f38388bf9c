-- api_names.lua - a workflow that lists the API the runtime gives workflow
-- scripts, for tests/cli/annotations.sh: every global that is not Lua's own,
-- every field of `workflow` (functions as NAME, other values as NAME=TYPE),
-- the module name it is required by,
-- the methods of a future, and the fields of workflow.info().
local lua_globals = {}
for _, n in ipairs{"_G", "_VERSION", "assert", "collectgarbage", "dofile", "error", "getmetatable",
  "ipairs", "load", "loadfile", "next", "pairs", "pcall", "print", "rawequal", "rawget", "rawlen",
  "rawset", "require", "select", "setmetatable", "tonumber", "tostring", "type", "warn", "xpcall",
  "coroutine", "debug", "io", "math", "os", "package", "string", "table", "utf8"} do
  lua_globals[n] = true
end

local function walk(prefix, t, out)
  for k, v in pairs(t) do
    local name = prefix .. k
    if type(v) == "function" then
      out[#out + 1] = name
    else
      out[#out + 1] = name .. "=" .. type(v)
    end
  end
end

return function()
  local out = {}
  for k in pairs(_ENV) do
    if not lua_globals[k] then out[#out + 1] = "global " .. k end
  end
  walk("workflow.", workflow, out)
  if require("jorch.workflow") == workflow then out[#out + 1] = "module jorch.workflow" end
  local future = workflow.timer(0)
  walk("Future:", getmetatable(future).__index, out)
  local info = {}
  walk("info.", workflow.info(), info)
  for _, v in ipairs(info) do out[#out + 1] = (v:gsub("=.*", "")) end
  table.sort(out)
  return out
end
