-- activities/checkpoint.lua: a durable record of where an orchestration is.
--
-- The workflow's own history is the source of truth; checkpoints are for
-- people and other tools: one JSON file per phase under
-- $JORCH_HOME/checkpoints/<workflow id>/, plus latest.json.

local common = require("lib.common")

local M = {}

local home = common.home

local function dir_of(workflow_id)
  return home() .. "/checkpoints/" .. common.safe_name(workflow_id)
end

local function write(path, data)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then
    error(activity.error{type = "StorageError", message = "cannot write " .. tmp .. ": " .. tostring(err)})
  end
  f:write(data)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then
    error(activity.error{type = "StorageError", message = "cannot rename " .. tmp .. ": " .. tostring(rerr)})
  end
end

--- Saves {workflowId, issueKey, phase, seq, state, at}; returns the file path.
function M.save(cp)
  cp = cp or {}
  local dir = dir_of(cp.workflowId)
  local r = common.exec{argv = {"mkdir", "-p", "--", dir}, timeout = 30}
  if r.status ~= 0 then
    error(activity.error{type = "StorageError", message = "cannot create " .. dir .. ": " .. tostring(r.stderr)})
  end
  local text = jorch.json.encode(cp)
  local name = string.format("%02d-%s.json", math.tointeger(cp.seq) or 0,
    (tostring(cp.phase or "phase"):gsub("[^%w_-]", "_")))
  write(dir .. "/" .. name, text)
  write(dir .. "/latest.json", text)
  return {path = dir .. "/" .. name}
end

--- The latest checkpoint of a workflow, or nil.
function M.load(workflow_id)
  local f = io.open(dir_of(workflow_id) .. "/latest.json", "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return jorch.json.decode(s)
end

return M
