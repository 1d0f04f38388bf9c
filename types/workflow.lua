---@meta jorch.workflow
-- Editor annotations (LuaCATS, for lua-language-server) of the workflow API:
-- the global `workflow` of every workflow script, also require("jorch.workflow").
-- Never loaded by jorch; tests/cli/annotations.sh checks that the functions
-- here are exactly the ones the runtime exposes. See docs/workflows.md.

---A duration: seconds, or text such as "500ms", "5s", "10 minutes", "2 hours", "7 days", "1h30m".
---@alias jorch.Duration number|string

---Retry policy of an activity (the Temporal names). Without one the backend
---retries as Temporal does: 1 s, doubling, up to 100 s, unlimited attempts.
---@class jorch.RetryPolicy
---@field initial_interval? jorch.Duration delay before the first retry
---@field backoff_coefficient? number factor by which the delay grows (>= 1)
---@field maximum_interval? jorch.Duration cap on the delay between attempts
---@field maximum_attempts? integer attempts in all, 0 = unlimited
---@field non_retryable_error_types? string[] error types that are never retried

---Options of an activity call. One of start_to_close_timeout and
---schedule_to_close_timeout is required; an unknown option is an error.
---@class jorch.ActivityOptions
---@field start_to_close_timeout? jorch.Duration limit of one attempt
---@field schedule_to_close_timeout? jorch.Duration limit of all attempts together
---@field schedule_to_start_timeout? jorch.Duration limit of the wait for a worker
---@field heartbeat_timeout? jorch.Duration the attempt fails when no heartbeat arrives within this
---@field task_queue? string task queue of the activity (default: the workflow's)
---@field activity_id? string id of the activity (default: the command's sequence number)
---@field retry_policy? jorch.RetryPolicy

---An error object of the workflow API (workflow.is_error(e) is true).
---@class jorch.Error
---@field kind "application"|"cancelled"|"activity"|string what raised it
---@field type string e.g. "ApplicationError", "CancelledError", "ActivityError", "TimeoutError"
---@field message string
---@field non_retryable? boolean
---@field details? any
---@field stack_trace? string
---@field timeout_type? string for a timeout: "START_TO_CLOSE", "HEARTBEAT", ...
---@field cause? jorch.Error for an ActivityError: the activity's own failure
---@field retry_state? string for an ActivityError: "MAXIMUM_ATTEMPTS_REACHED", "NON_RETRYABLE_FAILURE", "TIMEOUT", ...
---@field activity_seq? integer for an ActivityError: the command's sequence number
---@field reason? string for the workflow's CancelledError: the reason given with the cancel request

---Fields of workflow.ApplicationError{...}.
---@class jorch.ApplicationErrorFields
---@field type? string error type (default "ApplicationError"); retry policies match on it
---@field message? string
---@field non_retryable? boolean
---@field details? any JSON-encodable details

---What workflow.info() returns.
---@class jorch.WorkflowInfo
---@field namespace string
---@field workflow_id string
---@field run_id string
---@field workflow_type string the script's file name without .lua
---@field task_queue string
---@field first_execution_run_id string
---@field continued_run_id string run this one continued from ("" if none)
---@field attempt integer
---@field start_time number seconds since the epoch
---@field history_length integer events in history up to the current workflow task
---@field script_sha256 string SHA-256 of the script this run is pinned to
---@field script string the script's name
---@field backend "embedded"|"temporal" where the run lives (from its start event, so replays agree)

---The result of an activity, a timer or a workflow.go coroutine, ready later.
---@class jorch.Future
local Future = {}

---Waits for the future and returns its values; raises its error.
---@return any ...
function Future:get() end

---True once the future is resolved (with values or an error).
---@return boolean
function Future:is_ready() end

---Cancels the activity or timer behind this future; a waiter gets a
---CancelledError. Only activity and timer futures can be cancelled.
function Future:cancel() end

---The workflow API. Every function that waits must run in the workflow
---function, a workflow.go coroutine or a signal handler.
---@class jorch.workflow
workflow = {}

---An error that fails the workflow (not only the workflow task) when it
---escapes the workflow function: `error(workflow.ApplicationError{type = "X", message = "..."})`.
---@param t jorch.ApplicationErrorFields|string fields, or just the message
---@return jorch.Error
function workflow.ApplicationError(t) end

---The error a cancelled wait raises; letting it escape ends the run as cancelled.
---@param message? string default "cancelled"
---@return jorch.Error
function workflow.CancelledError(message) end

---True when v is an error object of the workflow API.
---@param v any
---@return boolean
function workflow.is_error(v) end

---True when e was raised by cancellation (of the workflow, or of the awaited activity or timer).
---@param e any
---@return boolean
function workflow.is_cancelled(e) end

---Runs fn(...) as a workflow coroutine; returns a future of its result.
---Use it, not coroutine.create, for anything that waits.
---@param fn fun(...): ...
---@param ... any arguments for fn
---@return jorch.Future
function workflow.go(fn, ...) end

---Schedules activity `name` with the argument list `args` and returns a future.
---@param name string activity name, "fn" or "module.fn"
---@param args? any[] arguments: {"A", 2} calls name("A", 2)
---@param opts jorch.ActivityOptions
---@return jorch.Future
function workflow.start_activity(name, args, opts) end

---Runs activity `name` with the argument list `args`, waits and returns its
---result; a failure raises an ActivityError (e.cause is the activity's error).
---@param name string activity name, "fn" or "module.fn"
---@param args? any[] arguments: {"A", 2} calls name("A", 2)
---@param opts jorch.ActivityOptions
---@return any ...
function workflow.execute_activity(name, args, opts) end

---A proxy whose fields call activities with these options:
---`local acts = workflow.activities{start_to_close_timeout = "2 hours"}` then `acts.fetchIssue(key)`.
---@param opts jorch.ActivityOptions
---@return table<string, fun(...): any>
function workflow.activities(opts) end

---Sleeps for a duration on a durable timer (survives restarts).
---@param d jorch.Duration
function workflow.sleep(d) end

---A future that is ready after the duration.
---@param d jorch.Duration
---@return jorch.Future
function workflow.timer(d) end

---Waits until fn() is true (re-checked whenever something happens). With a
---timeout, returns false when the time ran out first, true otherwise. The
---description says what the wait is for ("signal proceed (EXPLORE gate)"):
---`jorch describe`, `jorch list` and the live status line show it. It
---produces no command.
---@param fn fun(): boolean
---@param timeout? jorch.Duration
---@param description? string
---@return boolean
function workflow.wait_condition(fn, timeout, description) end

---Waits for every future; returns their first values in list order (raises
---the first error found in list order).
---@param futures jorch.Future[]
---@return any[]
function workflow.await_all(futures) end

---Waits until one future is ready; returns its index and values.
---@param futures jorch.Future[]
---@return integer index
---@return any ...
function workflow.await_any(futures) end

---Options of workflow.on_signal.
---@class jorch.SignalOptions
---@field validator? fun(...) called with the signal's arguments where it is sent (`jorch signal`), before anything is sent; an error it raises refuses the signal with that message. Read-only, like a query handler.

---Registers a signal handler; it runs as its own coroutine for each signal
---(signals that arrived earlier are delivered now, in order). Name "*"
---catches signals without a handler of their own (fn gets the name first).
---opts.validator refuses bad arguments in the sender's terminal.
---@param name string
---@param fn fun(...)
---@param opts? jorch.SignalOptions
function workflow.on_signal(name, fn, opts) end

---Registers a read-only query handler (it may not wait or start activities).
---@param name string
---@param fn fun(...): any
function workflow.on_query(name, fn) end

---True once cancellation of the workflow was requested.
---@return boolean
function workflow.cancelled() end

---The reason given with the cancellation request (`jorch cancel ID --reason R`,
---Temporal's cancel reason), or nil.
---@return string?
function workflow.cancel_reason() end

---Declares the workflow id `jorch start`/`jorch run` use when no --id is
---given: fn gets the workflow input and returns the id, or nil for a
---generated one. Call at the top level of the script; fn runs when a run is
---started, never during the run.
---@param fn fun(...): string?
function workflow.default_id(fn) end

---Seconds since the epoch (millisecond precision) of the current workflow task, from history.
---@return number
function workflow.now() end

---A time as RFC 3339 text (default: workflow.now()).
---@param t? number seconds since the epoch
---@return string
function workflow.time_iso(t) end

---A deterministic random number in [0, 1) (seeded per run, like math.random).
---@return number
function workflow.random() end

---A deterministic UUID (version 4 layout, seeded per run).
---@return string
function workflow.uuid() end

---About this run.
---@return jorch.WorkflowInfo
function workflow.info() end

---True while the run replays history (log lines are silent then).
---@return boolean
function workflow.is_replaying() end

---True for runs that take the patched path: runs started after the change,
---or ones whose history records the patch marker.
---@param id string patch id
---@return boolean
function workflow.patched(id) end

---Marks a patch as deprecated: every running run has the new code path.
---@param id string patch id
function workflow.deprecate_patch(id) end

---Runs fn once and records its result in history; replays return the
---recorded value without calling fn.
---@generic T
---@param fn fun(): T
---@return T
function workflow.side_effect(fn) end

---Sets search attributes of the run (name -> value).
---@param t table<string, any>
function workflow.upsert_search_attributes(t) end

---Ends this run and starts a new one of the same workflow with these
---arguments (same workflow id), to keep histories short. Does not return.
---@param ... any
function workflow.continue_as_new(...) end

---Logs a line (silent while replaying history); `print` is the same.
---@param ... any
function workflow.log(...) end

---Sets a short text saying what the workflow does now (Temporal's "current
---details"), such as its phase: `jorch describe` shows it and `jorch run`
---prints it as a header above the lines that follow. Produces no command.
---@param text string
function workflow.set_current_details(text) end

---The text last set with workflow.set_current_details ("" if none).
---@return string
function workflow.get_current_details() end

return workflow
