---@meta jorch.activity
-- Editor annotations (LuaCATS, for lua-language-server) of the global
-- `activity` of activity modules (also require("jorch.activity")). Never
-- loaded by jorch; tests/cli/annotations.sh checks them against the runtime.
-- See docs/activities.md.

---What activity.info() returns.
---@class jorch.ActivityInfo
---@field activity_type string
---@field activity_id string
---@field workflow_id string
---@field run_id string
---@field workflow_type string
---@field attempt integer 1 for the first attempt
---@field start_to_close_timeout? number seconds, when the activity has one
---@field heartbeat_details? any the first value the previous attempt heartbeated (all of them: activity.heartbeat_details())

---Fields of activity.error{...}.
---@class jorch.ActivityErrorFields
---@field type? string error type (default "ApplicationError"); retry policies match on it
---@field message? string
---@field non_retryable? boolean true: never retried
---@field details? any JSON-encodable details

---The running activity attempt.
---@class jorch.activity
activity = {}

---Reports progress to the backend; the details are kept for the next attempt
---(activity.info().heartbeat_details). Raises a CancelledError when the
---workflow cancelled the activity: clean up, then re-raise it (or return).
---@param ... any JSON-encodable details
function activity.heartbeat(...) end

---Every value the previous attempt's last heartbeat sent, in order
---(activity.heartbeat(a, b) on attempt 1 -> a, b on attempt 2); nothing on a
---first attempt.
---@return any ...
function activity.heartbeat_details() end

---True once cancellation of this activity was requested.
---@return boolean
function activity.cancelled() end

---About this attempt.
---@return jorch.ActivityInfo
function activity.info() end

---Fails the attempt with a typed error (retried unless non_retryable or
---listed in the retry policy's non_retryable_error_types). Does not return.
---@param t jorch.ActivityErrorFields|string fields, or just the message (type "Error")
function activity.error(t) end

---Writes one line `[activity NAME] ...` to the worker's log (print does the same).
---@param ... any
function activity.log(...) end

return activity
