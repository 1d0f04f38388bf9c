-- activities/jira.lua: Jira Cloud REST API v3, or an offline stand-in.
--
-- Online when a base URL is configured (JIRA_BASE_URL, or jira.base_url in
-- jorch.yaml): basic auth with JIRA_EMAIL + JIRA_API_TOKEN, or a bearer
-- token (JIRA_BEARER_TOKEN). Offline otherwise: issues are read from JSON
-- files shaped like the REST answer (examples/issues/<KEY>.json) and every
-- write (comment, labels, transition) is appended to
-- $JORCH_HOME/jira-offline/<KEY>.jsonl and logged, so the zero-setup demo
-- shows what would have been sent.
--
-- Errors: 401/403 -> AuthenticationError, 404 -> NotFound (both not
-- retried); 429/5xx are retried inside the attempt while Retry-After is
-- short, then raised as retryable errors for the workflow's retry policy.

local common = require("lib.common")

local M = {}

local KEY_PATTERN = "^[A-Z][A-Z0-9_]*%-[1-9][0-9]*$"
local MAX_IN_ATTEMPT_RETRIES = 2
local MAX_RETRY_AFTER = 30 -- seconds we are willing to sleep inside one attempt

---------------------------------------------------------------- config

local function cfg() return common.section("jira") end

local function setting(env_name, cfg_name)
  local v = jorch.env(env_name)
  if v ~= nil and v ~= "" then return v end
  v = cfg()[cfg_name]
  if v ~= nil and v ~= "" then return v end
  return nil
end


-- Secrets may also come from files (jira.api_token_file), never from the YAML itself.
local function secret(env_name, file_key)
  local v = jorch.env(env_name)
  if v ~= nil and v ~= "" then return v end
  return common.secret_file(cfg()[file_key])
end

local function check_key(key)
  if type(key) ~= "string" or #key > 64 or not key:match(KEY_PATTERN) then
    error(activity.error{type = "ValidationError", non_retryable = true,
      message = "invalid Jira issue key " .. string.format("%q", tostring(key)):sub(1, 80)
        .. " (expected PROJECT-123)"})
  end
end

local function source_root()
  local src = debug and debug.getinfo and debug.getinfo(1, "S").source or ""
  local dir = src:match("^@(.*)/activities/[^/]*$") or src:match("^@(.*)/[^/]*/[^/]*$")
  return dir or "."
end

local home = common.home

local function log(fmt, ...)
  local line = string.format(fmt, ...)
  if activity.log then activity.log(line) else io.stderr:write(line, "\n") end
end

local function mkdir_p(dir)
  local r = common.exec{argv = {"mkdir", "-p", "--", dir}, timeout = 30}
  if r.status ~= 0 then
    error(activity.error{type = "StorageError", message = "cannot create " .. dir .. ": " .. (r.stderr or "")})
  end
end

local read_file = common.read_file

---------------------------------------------------------------- ADF

-- Plain text -> Atlassian Document Format: blank lines separate paragraphs,
-- single newlines become hard breaks (ADF forbids empty text nodes).
local function text_to_adf(text)
  local doc = {type = "doc", version = 1, content = {}}
  text = tostring(text or ""):gsub("\r\n", "\n")
  for para in (text .. "\n\n"):gmatch("(.-)\n\n+") do
    if para:match("%S") then
      local content = {}
      local first = true
      for line in (para .. "\n"):gmatch("(.-)\n") do
        if not first then content[#content + 1] = {type = "hardBreak"} end
        if line ~= "" then content[#content + 1] = {type = "text", text = line} end
        first = false
      end
      doc.content[#doc.content + 1] = {type = "paragraph", content = content}
    end
  end
  if #doc.content == 0 then
    doc.content[1] = {type = "paragraph", content = {{type = "text", text = "(empty)"}}}
  end
  return doc
end

-- ADF (or a plain string) -> plain text, for prompts.
local function adf_to_text(node, out)
  out = out or {}
  if type(node) == "string" then out[#out + 1] = node; return out end
  if type(node) ~= "table" then return out end
  if node.type == "text" and type(node.text) == "string" then out[#out + 1] = node.text end
  if node.type == "hardBreak" then out[#out + 1] = "\n" end
  if type(node.content) == "table" then
    for _, child in ipairs(node.content) do adf_to_text(child, out) end
  end
  if node.type == "paragraph" or node.type == "heading" or node.type == "listItem"
    or node.type == "codeBlock" then
    out[#out + 1] = "\n"
  end
  return out
end

local function name_of(v)
  if type(v) ~= "table" then return nil end
  return v.name or v.displayName or v.value
end

-- The REST issue shape -> the small record the workflow and prompts use.
local function normalise_issue(raw, key, base_url)
  local f = type(raw.fields) == "table" and raw.fields or {}
  local labels = {}
  if type(f.labels) == "table" then
    for _, l in ipairs(f.labels) do labels[#labels + 1] = tostring(l) end
  end
  local desc = f.description
  if type(desc) == "table" then desc = table.concat(adf_to_text(desc)) end
  return {
    key = raw.key or key,
    summary = tostring(f.summary or ""),
    description = tostring(desc or ""):gsub("\n\n\n+", "\n\n"),
    issueType = name_of(f.issuetype),
    status = name_of(f.status),
    priority = name_of(f.priority),
    project = type(f.project) == "table" and f.project.key or nil,
    reporter = name_of(f.reporter),
    assignee = name_of(f.assignee),
    labels = labels,
    url = base_url and (base_url .. "/browse/" .. key) or nil,
  }
end

---------------------------------------------------------------- online

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local chunk = {}
    for j = 3, 0, -1 do
      local idx = (n >> (6 * j)) & 63
      chunk[#chunk + 1] = B64:sub(idx + 1, idx + 1)
    end
    if not b then chunk[3], chunk[4] = "=", "=" elseif not c then chunk[4] = "=" end
    out[#out + 1] = table.concat(chunk)
  end
  return table.concat(out)
end

local function base_url()
  local u = setting("JIRA_BASE_URL", "base_url")
  if u then u = u:gsub("/+$", "") end
  return u
end

local function auth_header()
  local bearer = secret("JIRA_BEARER_TOKEN", "bearer_token_file")
  if bearer then return "Bearer " .. bearer end
  local email = setting("JIRA_EMAIL", "email")
  local token = secret("JIRA_API_TOKEN", "api_token_file")
  if email and token then return "Basic " .. base64(email .. ":" .. token) end
  error(activity.error{type = "AuthenticationError", non_retryable = true,
    message = "Jira credentials missing: set JIRA_EMAIL and JIRA_API_TOKEN (or JIRA_BEARER_TOKEN)"})
end

local function header(resp, name)
  local h = resp.headers
  if type(h) ~= "table" then return nil end
  name = name:lower()
  for k, v in pairs(h) do
    if type(k) == "string" and k:lower() == name then return v end
  end
  return nil
end

local function short(body)
  body = tostring(body or ""):gsub("%s+", " ")
  if #body > 300 then body = body:sub(1, 300) .. "..." end
  return body
end

-- One REST call with the status mapping; returns the decoded body (or nil).
local function rest(method, path, body)
  local url = base_url() .. path
  local headers = {
    ["Authorization"] = auth_header(),
    ["Accept"] = "application/json",
  }
  local payload
  if body ~= nil then
    headers["Content-Type"] = "application/json"
    payload = jorch.json.encode(body)
  end
  local timeout = tonumber(cfg().timeout) or 30
  for attempt = 0, MAX_IN_ATTEMPT_RETRIES do
    local resp = jorch.http.request{method = method, url = url, headers = headers,
      body = payload, timeout = timeout}
    local st = resp.status
    if st >= 200 and st < 300 then
      if resp.body and resp.body:match("%S") then return jorch.json.decode(resp.body) end
      return nil
    end
    local what = method .. " " .. path .. " -> HTTP " .. st
    if st == 401 or st == 403 then
      error(activity.error{type = "AuthenticationError", non_retryable = true,
        message = what .. ": Jira refused the credentials (check JIRA_EMAIL/JIRA_API_TOKEN "
          .. "or JIRA_BEARER_TOKEN and the account's permissions)"})
    elseif st == 404 then
      error(activity.error{type = "NotFound", non_retryable = true,
        message = what .. ": not found (check the issue key and JIRA_BASE_URL)"})
    elseif st == 429 or st >= 500 then
      local wait = tonumber(header(resp, "Retry-After") or "")
      if wait and wait >= 0 and wait <= MAX_RETRY_AFTER and attempt < MAX_IN_ATTEMPT_RETRIES then
        log("jira: %s, retrying in %ds (Retry-After)", what, math.floor(wait))
        if activity.heartbeat then activity.heartbeat({retry_after = wait}) end
        jorch.sleep(wait)
      elseif attempt < MAX_IN_ATTEMPT_RETRIES and not wait then
        jorch.sleep(1 << attempt)
      else
        error(activity.error{type = st == 429 and "RateLimited" or "JiraUnavailable",
          non_retryable = false,
          message = what .. (wait and (" (Retry-After " .. math.floor(wait) .. "s)") or "")
            .. ": will be retried"})
      end
    else
      error(activity.error{type = "JiraError", non_retryable = st >= 400 and st < 500,
        message = what .. ": " .. short(resp.body)})
    end
  end
end

---------------------------------------------------------------- offline

local function offline_issue_dirs()
  local dirs = {}
  local d = jorch.env("JORCH_JIRA_OFFLINE_DIR") or cfg().offline_issues_dir
  if d and d ~= "" then dirs[#dirs + 1] = d end
  dirs[#dirs + 1] = home() .. "/issues"
  dirs[#dirs + 1] = source_root() .. "/examples/issues"
  return dirs
end

local function offline_log_path(key)
  return home() .. "/jira-offline/" .. key .. ".jsonl"
end

-- Appends one record of what would have been sent to Jira.
local function offline_record(key, op, fields)
  local dir = home() .. "/jira-offline"
  mkdir_p(dir)
  local rec = {op = op, key = key, at = os.date("!%Y-%m-%dT%H:%M:%SZ")}
  for k, v in pairs(fields) do rec[k] = v end
  local f, err = io.open(offline_log_path(key), "ab")
  if not f then
    error(activity.error{type = "StorageError", message = "cannot write " .. offline_log_path(key)
      .. ": " .. tostring(err)})
  end
  f:write(jorch.json.encode(rec), "\n")
  f:close()
  return offline_log_path(key)
end

local function first_line(s)
  s = tostring(s or "")
  local l = s:match("^[^\n]*")
  if #l > 120 then l = l:sub(1, 120) .. "..." end
  return l
end

---------------------------------------------------------------- activities

--- The issue as {key, summary, description (plain text), issueType, status,
--- priority, project, reporter, assignee, labels, url, backend}.
function M.getIssue(key)
  check_key(key)
  local url = base_url()
  if url then
    local raw = rest("GET", "/rest/api/3/issue/" .. key
      .. "?fields=summary,description,issuetype,status,priority,labels,reporter,assignee,project")
    local issue = normalise_issue(raw or {}, key, url)
    issue.backend = "jira"
    return issue
  end
  local tried = {}
  for _, dir in ipairs(offline_issue_dirs()) do
    local path = dir .. "/" .. key .. ".json"
    tried[#tried + 1] = path
    local s = read_file(path)
    if s then
      local issue = normalise_issue(jorch.json.decode(s), key, nil)
      issue.backend = "offline"
      issue.source = path
      issue.recordedIn = offline_log_path(key)
      log("jira(offline): read %s from %s", key, path)
      return issue
    end
  end
  error(activity.error{type = "NotFound", non_retryable = true,
    message = "issue " .. key .. " not found offline (looked for " .. table.concat(tried, ", ")
      .. "); set JIRA_BASE_URL to use a real Jira"})
end

--- Adds a comment (plain text, sent as ADF). Returns {backend, id|recordedIn}.
function M.addComment(key, text)
  check_key(key)
  text = tostring(text or "")
  if base_url() then
    local r = rest("POST", "/rest/api/3/issue/" .. key .. "/comment", {body = text_to_adf(text)})
    return {backend = "jira", id = r and r.id}
  end
  local path = offline_record(key, "comment", {body = text})
  log("jira(offline): %s comment: %s", key, first_line(text))
  return {backend = "offline", recordedIn = path}
end

--- Adds and removes labels in one update.
function M.updateLabels(key, add, remove)
  check_key(key)
  local ops = {}
  for _, l in ipairs(remove or {}) do ops[#ops + 1] = {remove = tostring(l)} end
  for _, l in ipairs(add or {}) do ops[#ops + 1] = {add = tostring(l)} end
  if #ops == 0 then return {backend = base_url() and "jira" or "offline"} end
  if base_url() then
    rest("PUT", "/rest/api/3/issue/" .. key, {update = {labels = ops}})
    return {backend = "jira"}
  end
  local path = offline_record(key, "labels", {add = add or {}, remove = remove or {}})
  log("jira(offline): %s labels +[%s] -[%s]", key, table.concat(add or {}, ", "),
    table.concat(remove or {}, ", "))
  return {backend = "offline", recordedIn = path}
end

--- Moves the issue to the status named `target` (e.g. "Done", "Blocked"),
--- looking the transition up first. NoSuchTransition when the workflow of
--- the issue has none leading there.
function M.transition(key, target)
  check_key(key)
  target = tostring(target or "")
  if base_url() then
    local r = rest("GET", "/rest/api/3/issue/" .. key .. "/transitions")
    local want = target:lower()
    local names = {}
    for _, t in ipairs((r or {}).transitions or {}) do
      local to = type(t.to) == "table" and t.to.name or nil
      names[#names + 1] = tostring(to or t.name)
      if (to and to:lower() == want) or (t.name and t.name:lower() == want) then
        rest("POST", "/rest/api/3/issue/" .. key .. "/transitions", {transition = {id = tostring(t.id)}})
        return {backend = "jira", transition = t.id, status = to or t.name}
      end
    end
    error(activity.error{type = "NoSuchTransition", non_retryable = true,
      message = "issue " .. key .. " has no transition to '" .. target .. "' (available: "
        .. (#names > 0 and table.concat(names, ", ") or "none") .. ")"})
  end
  local path = offline_record(key, "transition", {to = target})
  log("jira(offline): %s transition -> %s", key, target)
  return {backend = "offline", status = target, recordedIn = path}
end

return M
