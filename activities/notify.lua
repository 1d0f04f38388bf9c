-- activities/notify.lua: tells people how an orchestration went.
--
-- A Slack-compatible incoming webhook (SLACK_WEBHOOK_URL, or the file named
-- by notify.slack_webhook_url_file in jorch.yaml) gets {"text": ...}.
-- Without one the notification is skipped with a log line. The webhook URL
-- is a secret: it is never logged or returned.

local common = require("lib.common")

local M = {}


local function webhook()
  local v = jorch.env("SLACK_WEBHOOK_URL")
  if v and v ~= "" then return v end
  local conf = (jorch.config or {}).notify or {}
  if type(conf) ~= "table" then conf = {} end
  -- The URL is a secret: like temporal.api_key, it never goes in jorch.yaml.
  if conf.slack_webhook_url ~= nil then
    error(activity.error{type = "ConfigurationError", non_retryable = true,
      message = "notify.slack_webhook_url: the webhook URL is a secret and does not go in jorch.yaml; "
        .. "put it in a file named by notify.slack_webhook_url_file, or set SLACK_WEBHOOK_URL"})
  end
  return common.secret_file(conf.slack_webhook_url_file)
end

--- Sends {text, issueKey, status}; returns {sent = bool}.
function M.send(msg)
  msg = msg or {}
  local text = tostring(msg.text or "")
  local url = webhook()
  if not url then
    activity.log("notify: skipped (SLACK_WEBHOOK_URL not set): " .. text:match("^[^\n]*"))
    return {sent = false, reason = "SLACK_WEBHOOK_URL not set"}
  end
  -- the webhook URL is a secret: a transport error must not quote it
  local ok, resp = pcall(jorch.http.request, {method = "POST", url = url, timeout = 30,
    headers = {["Content-Type"] = "application/json"},
    body = jorch.json.encode({text = text})})
  if not ok then
    local reason = tostring(resp):gsub("https?://%S+", "<webhook>")
    error(activity.error{type = "NotifyFailed", message = "the Slack webhook could not be reached: " .. reason})
  end
  if resp.status < 200 or resp.status >= 300 then
    error(activity.error{type = "NotifyFailed", non_retryable = resp.status >= 400 and resp.status < 500
      and resp.status ~= 429,
      message = "the Slack webhook answered HTTP " .. tostring(resp.status)})
  end
  activity.log("notify: sent")
  return {sent = true}
end

return M
