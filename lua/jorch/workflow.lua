-- jorch.workflow: the workflow-side API, thin over the engine's C primitives.
--
-- Loaded by the engine into each run's sandbox before the script, with the
-- primitives table as its argument. It returns the public `workflow` table
-- (a global in every workflow script, also `require("jorch.workflow")`) and
-- the private runtime table the engine drives (scheduler, resolution of
-- futures, signals, queries). Library functions are captured as locals now,
-- so a script that reassigns globals cannot disturb the scheduler.

local eng = ...

local co_create, co_resume, co_yield, co_status, co_running =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.status, coroutine.running
local setmetatable, getmetatable, type, error, select, tostring, pairs, ipairs, rawget =
  setmetatable, getmetatable, type, error, select, tostring, pairs, ipairs, rawget
local t_pack, t_unpack, t_remove = table.pack, table.unpack, table.remove
local t_sort = table.sort
local s_format = string.format

local workflow = {}
local rt = {}

---------------------------------------------------------------- errors

local ErrorMT = {}
ErrorMT.__index = ErrorMT
ErrorMT.__tostring = function(e)
  local s = e.type or "Error"
  if e.message and e.message ~= "" then s = s .. ": " .. e.message end
  if e.cause then s = s .. " (caused by " .. tostring(e.cause) .. ")" end
  return s
end

local function is_error(v) return type(v) == "table" and getmetatable(v) == ErrorMT end

local function new_error(kind, t)
  t.kind = kind
  return setmetatable(t, ErrorMT)
end

--- An error that fails the workflow (not just the workflow task) when it
--- escapes the workflow function: `error(workflow.ApplicationError{type=,
--- message=, non_retryable=, details=})`.
function workflow.ApplicationError(t)
  if type(t) == "string" then t = {message = t} end
  if type(t) ~= "table" then error("workflow.ApplicationError expects a table {type=, message=}", 2) end
  return new_error("application", {
    type = t.type or "ApplicationError",
    message = t.message ~= nil and tostring(t.message) or "",
    non_retryable = t.non_retryable and true or false,
    details = t.details,
  })
end

function workflow.CancelledError(message)
  return new_error("cancelled", {type = "CancelledError", message = message or "cancelled"})
end

workflow.is_error = is_error

--- True when `e` is an error raised by cancellation (of the workflow, or of
--- the awaited activity or timer).
function workflow.is_cancelled(e) return is_error(e) and e.kind == "cancelled" end

---------------------------------------------------------------- futures

local Future = {}
Future.__index = Future

local function new_future(kind, seq)
  return setmetatable({kind = kind, seq = seq, done = false}, Future)
end

local function resolve(f, ok, values)
  if f.done then return end
  f.done = true
  f.ok = ok
  f.values = values
end

local threads = {}        -- scheduler-managed coroutines, in creation order
local thread_of = {}      -- coroutine -> thread record
local pending = {}        -- command seq -> future awaiting its event
local COND = {}           -- yielded by wait_condition: "re-check me"
local in_query = false

local function current_thread(what)
  local co, main = co_running()
  local th = thread_of[co]
  if th == nil then
    if in_query then
      error(what .. " cannot be called in a query handler (queries are read-only and never block)", 3)
    end
    error(what .. " must be called from the workflow function or a workflow.go coroutine, "
      .. "not from a coroutine made with coroutine.create/wrap", 3)
  end
  return th
end

-- A thread blocked when cancellation of the workflow arrives is woken once
-- with workflow.CancelledError (after that, cleanup code may block again).
local function check_cancel(th)
  if th.cancel then
    th.cancel = nil
    local e = workflow.CancelledError("workflow cancelled")
    e.reason = cancel_reason
    error(e, 0)
  end
end

local function await(f, what)
  local th = current_thread(what or "waiting")
  while not f.done do
    th.wait = f
    co_yield(f)
    th.wait = nil
    check_cancel(th)
  end
  th.wait = nil
  if f.ok then return t_unpack(f.values, 1, f.values.n) end
  error(f.values[1], 0)
end

--- Waits for the future and returns its values (raises its error).
function Future:get() return await(self, "future:get()") end
function Future:is_ready() return self.done end

--- Cancels the activity or timer behind this future; a waiter gets
--- workflow.CancelledError.
function Future:cancel()
  if self.done then return end
  if self.kind == "activity" then eng.cancel_activity(self.seq)
  elseif self.kind == "timer" then eng.cancel_timer(self.seq)
  else error("only activity and timer futures can be cancelled", 2) end
  pending[self.seq] = nil
  resolve(self, false, {workflow.CancelledError(self.kind .. " cancelled"), n = 1})
end

---------------------------------------------------------------- scheduler

local function spawn(fn, name, ...)
  local f = new_future("coroutine")
  local args = t_pack(...)
  local co = co_create(function()
    return fn(t_unpack(args, 1, args.n))
  end)
  local th = {co = co, future = f, name = name, first = true}
  threads[#threads + 1] = th
  thread_of[co] = th
  return th
end

--- Spawns a workflow coroutine running fn(...); returns a future of its result.
function workflow.go(fn, ...)
  if type(fn) ~= "function" then error("workflow.go expects a function", 2) end
  return spawn(fn, "go", ...).future
end

local main_thread = nil
local outcome = nil        -- set when the main function ends
local signal_handlers = {}
local signal_validators = {} -- name -> validator (workflow.on_signal's option)
local signal_buffer = {}   -- signals that arrived before a handler existed
local query_handlers = {}
local cancel_requested = false
local cancel_delivered = false
local cancel_reason = nil  -- the text given to `jorch cancel --reason`, if any
local current_details = ""

-- A finished coroutine's return values are lost once it is dead, so threads
-- run through this wrapper, which stores them before returning.
local function run_thread(th)
  local was_cond = th.wait == COND
  local co = th.co
  local r = t_pack(co_resume(co))
  if co_status(co) == "dead" then
    thread_of[co] = nil
    th.dead = true
    if r[1] then
      resolve(th.future, true, t_pack(t_unpack(r, 2, r.n)))
    else
      if not is_error(r[2]) then
        r[2] = eng.traceback(co, r[2])
      end
      resolve(th.future, false, {r[2], n = 1})
    end
    return true
  end
  if r[1] and r[2] == COND then
    th.wait = COND
    return not was_cond
  end
  th.wait = r[2]
  return true
end
local function runnable(th)
  local w = th.wait
  return th.cancel or w == nil or w == COND or (type(w) == "table" and w.done)
end

local function deliver_signals()
  local delivered = false
  local i = 1
  while i <= #signal_buffer do
    local s = signal_buffer[i]
    local h = signal_handlers[s.name] or signal_handlers["*"]
    if h then
      t_remove(signal_buffer, i)
      if signal_handlers[s.name] then
        spawn(h, "signal " .. s.name, t_unpack(s.args, 1, s.args.n))
      else
        spawn(h, "signal " .. s.name, s.name, t_unpack(s.args, 1, s.args.n))
      end
      delivered = true
    else
      i = i + 1
    end
  end
  return delivered
end

local function deliver_cancel()
  cancel_delivered = true
  for _, th in ipairs(threads) do
    if not th.dead and th.wait ~= nil then th.cancel = true end
  end
  local seqs = {}
  for seq in pairs(pending) do seqs[#seqs + 1] = seq end
  for _, seq in ipairs(seqs) do
    local f = pending[seq]
    if f and not f.done then f:cancel() end
  end
end

-- Runs every runnable coroutine until all are blocked or the main function
-- has ended. Returns the outcome kind and its data (see engine.c).
function rt.run()
  if cancel_requested and not cancel_delivered then deliver_cancel() end
  local progress = true
  while progress and outcome == nil do
    progress = deliver_signals()
    local i = 1
    while i <= #threads and outcome == nil do
      local th = threads[i]
      if not th.dead and runnable(th) then
        if run_thread(th) then progress = true end
        if th.dead and th == main_thread then
          local f = th.future
          if f.ok then
            outcome = {"complete", f.values}
          else
            outcome = {"error", f.values[1]}
          end
        elseif th.dead and not th.future.ok and th.name ~= "go" then
          -- a failing signal handler fails like the workflow function would
          outcome = {"error", th.future.values[1]}
        end
      end
      i = i + 1
    end
    -- drop finished threads, keeping order
    local j = 1
    for k = 1, #threads do
      if not threads[k].dead then threads[j] = threads[k]; j = j + 1 end
    end
    for k = #threads, j, -1 do threads[k] = nil end
  end
  if outcome == nil then return "blocked" end
  local kind, v = outcome[1], outcome[2]
  if kind == "complete" then return "complete", v end
  if is_error(v) then
    if v.kind == "cancelled" and cancel_requested then return "cancelled", v end
    if v.kind == "continue_as_new" then return "continue_as_new", v.args end
    return "fail", v
  end
  return "task_error", v
end

function rt.start(fn, ...)
  main_thread = spawn(fn, "main", ...)
end

function rt.resolve(seq, ok, ...)
  local f = pending[seq]
  if f == nil then return end
  pending[seq] = nil
  resolve(f, ok, t_pack(...))
end

function rt.signal(name, ...)
  signal_buffer[#signal_buffer + 1] = {name = name, args = t_pack(...)}
end

function rt.cancel_request(reason)
  cancel_requested = true
  if type(reason) == "string" and reason ~= "" and cancel_reason == nil then cancel_reason = reason end
end

function rt.query(name, ...)
  local h = query_handlers[name]
  if h == nil then
    local known = {}
    for k in pairs(query_handlers) do known[#known + 1] = k end
    error(s_format("unknown query type '%s' (this workflow answers: %s)", name,
      #known > 0 and table.concat(known, ", ") or "none"), 0)
  end
  in_query = true
  local r = t_pack(pcall(h, ...))
  in_query = false
  if not r[1] then error(r[2], 0) end
  return t_unpack(r, 2, r.n)
end

-- The built-in query "__jorch_signal_check" (name, args...): what the
-- sender of a signal should know before it is sent. The names this
-- workflow handles, whether one handles `name` (its own or "*"), and the
-- message of a validator that rejects the arguments. Read-only, like a
-- query: it produces no command.
function rt.signal_check(name, ...)
  local names = {}
  for k in pairs(signal_handlers) do names[#names + 1] = k end
  table.sort(names)
  local own = signal_handlers[name] ~= nil
  local res = {handled = own or signal_handlers["*"] ~= nil, signals = names}
  local v = own and signal_validators[name] or (not own and signal_validators["*"]) or nil
  if res.handled and v then
    in_query = true
    local ok, e
    if own then ok, e = pcall(v, ...) else ok, e = pcall(v, name, ...) end
    in_query = false
    if not ok then
      res.rejected = is_error(e) and tostring(e.message or e) or tostring(e)
    end
  end
  return res
end

-- What each coroutine waits for, the workflow's current details and the
-- signals it handles: the built-in query "__jorch_status" (describe, list
-- and the live status line). Reads state only; produces no command.
function rt.status()
  local waits = {}
  for _, th in ipairs(threads) do
    if not th.dead then
      local w = {thread = th.name, site = eng.where(th.co)}
      local f = th.wait
      if f == COND then
        w.kind = "condition"
        w.description = th.wait_desc
        if th.wait_timer and not th.wait_timer.done and th.wait_timer.seq then
          w.timeoutTimerId = tostring(eng.machine_id(th.wait_timer.seq))
        end
      elseif type(f) == "table" then
        w.kind = f.kind
        w.name = f.name
        w.seq = f.seq
        if f.kind == "timer" and f.seq then w.timerId = tostring(eng.machine_id(f.seq)) end
      else
        w.kind = "ready"
      end
      waits[#waits + 1] = w
    end
  end
  local signals, queries, buffered = {}, {}, {}
  for k in pairs(signal_handlers) do signals[#signals + 1] = k end
  for k in pairs(query_handlers) do queries[#queries + 1] = k end
  for _, s in ipairs(signal_buffer) do buffered[#buffered + 1] = s.name end
  t_sort(signals)
  t_sort(queries)
  return {details = current_details, waiting = waits, signals = signals, queries = queries,
    unhandledSignals = buffered}
end

function rt.stack_trace()
  local parts = {}
  for _, th in ipairs(threads) do
    if not th.dead then parts[#parts + 1] = eng.traceback(th.co, "coroutine " .. th.name) end
  end
  return table.concat(parts, "\n\n")
end

function rt.classify(e)
  if is_error(e) then return e.kind, e end
  return "task_error", e
end

function rt.is_error(e) return is_error(e) end

function rt.make_error(kind, t) return new_error(kind, t) end

---------------------------------------------------------------- activities

local function activity_future(name, args, opts)
  if type(name) ~= "string" then error("activity name must be a string", 3) end
  if args ~= nil and type(args) ~= "table" then
    error("activity arguments must be a list (table), e.g. {\"A\", 2}", 3)
  end
  local seq = eng.schedule_activity(name, args or {}, opts or {})
  local f = new_future("activity", seq)
  f.name = name   -- for describe and the status line only
  pending[seq] = f
  return f
end

--- Schedules an activity and returns a future.
function workflow.start_activity(name, args, opts)
  return activity_future(name, args, opts)
end

--- Runs an activity and returns its result (raises an ActivityError).
function workflow.execute_activity(name, args, opts)
  return await(activity_future(name, args, opts), "workflow.execute_activity")
end

--- A proxy whose fields call activities with these options:
--- `local acts = workflow.activities{start_to_close_timeout = "2 hours"}`
--- then `acts.fetchIssue(key)`.
function workflow.activities(opts)
  opts = opts or {}
  return setmetatable({}, {
    __index = function(_, name)
      return function(...)
        return await(activity_future(name, t_pack(...), opts), "activity " .. name)
      end
    end,
  })
end

---------------------------------------------------------------- timers

--- Sleeps for a duration (seconds or text like "5s", "2 hours").
function workflow.sleep(d)
  current_thread("workflow.sleep")
  local seq = eng.start_timer(d)
  if seq == nil then return end   -- zero duration
  local f = new_future("timer", seq)
  pending[seq] = f
  return await(f, "workflow.sleep")
end

--- A future that is ready after the duration.
function workflow.timer(d)
  local seq = eng.start_timer(d)
  local f = new_future("timer", seq)
  if seq == nil then resolve(f, true, {n = 0}) else pending[seq] = f end
  return f
end

--- Waits until fn() is true. With a timeout, returns false if the time
--- ran out first, true otherwise. The optional description says what the
--- wait is for ("signal proceed (EXPLORE gate)"): `jorch describe`, `list`
--- and the live status line show it. It produces no command.
function workflow.wait_condition(fn, timeout, description)
  if type(fn) ~= "function" then error("workflow.wait_condition expects a function", 2) end
  local th = current_thread("workflow.wait_condition")
  if fn() then return true end
  local timer = nil
  if timeout ~= nil then timer = workflow.timer(timeout) end
  if description ~= nil then description = tostring(description) end
  while true do
    th.wait = COND
    th.wait_desc = description
    th.wait_timer = timer
    co_yield(COND)
    th.wait = nil
    th.wait_desc, th.wait_timer = nil, nil
    if th.cancel then
      if timer and not timer.done then timer:cancel() end
      check_cancel(th)
    end
    if fn() then
      if timer and not timer.done then timer:cancel() end
      return true
    end
    if timer and timer.done then
      if not timer.ok then error(timer.values[1], 0) end
      return false
    end
  end
end

--- Waits for every future; returns their first values in order (raises the
--- first error found in list order).
function workflow.await_all(futures)
  local out = {}
  for i, f in ipairs(futures) do out[i] = await(f, "workflow.await_all") end
  return out
end

--- Waits until one future is ready; returns its index and values.
function workflow.await_any(futures)
  local th = current_thread("workflow.await_any")
  while true do
    for i, f in ipairs(futures) do
      if f.done then
        if f.ok then return i, t_unpack(f.values, 1, f.values.n) end
        error(f.values[1], 0)
      end
    end
    th.wait = COND
    co_yield(COND)
    th.wait = nil
    check_cancel(th)
  end
end

---------------------------------------------------------------- signals, queries

--- Registers a signal handler; it runs as its own coroutine for each signal
--- (signals that arrived earlier are delivered now, in order). Name "*"
--- catches signals that have no handler of their own (handler gets the name first).
--- Option `validator`: a function called with the signal's arguments where the
--- sender sends it (`jorch signal`, embedded backend), before anything is sent:
--- an error it raises refuses the signal with that message, like a Temporal
--- update validator. Read-only, like a query handler; never called in the run.
function workflow.on_signal(name, fn, opts)
  if type(name) ~= "string" or type(fn) ~= "function" then
    error("workflow.on_signal expects a name and a function", 2)
  end
  local validator = nil
  if opts ~= nil then
    if type(opts) ~= "table" then error("workflow.on_signal: options must be a table {validator = fn}", 2) end
    for k in pairs(opts) do
      if k ~= "validator" then error("workflow.on_signal: unknown option '" .. tostring(k) .. "'", 2) end
    end
    validator = opts.validator
    if validator ~= nil and type(validator) ~= "function" then
      error("workflow.on_signal: validator must be a function", 2)
    end
  end
  signal_handlers[name] = fn
  signal_validators[name] = validator
end

--- Registers a read-only query handler.
function workflow.on_query(name, fn)
  if type(name) ~= "string" or type(fn) ~= "function" then
    error("workflow.on_query expects a name and a function", 2)
  end
  query_handlers[name] = fn
end

--- Sets a short text saying what the workflow is doing now (Temporal's
--- "current details"), e.g. the phase: `jorch describe` shows it and `run`
--- prints it as a header above the activity lines that follow. It produces
--- no command, so adding or changing it never breaks a replay.
function workflow.set_current_details(text)
  if text == nil then text = "" end
  if type(text) ~= "string" then error("workflow.set_current_details expects a string", 2) end
  current_details = text
end

function workflow.get_current_details() return current_details end

--- True once cancellation of the workflow was requested.
function workflow.cancelled() return cancel_requested end

--- The reason given with the cancellation request (`jorch cancel ID
--- --reason R`, Temporal's cancel reason), or nil.
function workflow.cancel_reason() return cancel_reason end

---------------------------------------------------------------- default workflow id

local default_id_fn = nil

--- Declares how `jorch start`/`jorch run` name a run when no --id is given:
--- fn receives the workflow input (the same arguments as the workflow
--- function) and returns the workflow id, or nil for a generated one. Call it
--- at the top level of the script; it runs in the sandbox when a run is
--- started, never during the run, so it produces no commands.
function workflow.default_id(fn)
  if type(fn) ~= "function" then error("workflow.default_id expects a function(input, ...) returning an id", 2) end
  if main_thread ~= nil then
    error("workflow.default_id must be called at the top level of the script, not inside the workflow", 2)
  end
  default_id_fn = fn
end

function rt.default_id(...)
  if default_id_fn == nil then return nil end
  local id = default_id_fn(...)
  if id ~= nil and type(id) ~= "string" then
    error(s_format("it returned a %s; it must return a string id or nil",
      type(id)), 0)
  end
  return id
end

---------------------------------------------------------------- determinism helpers

function workflow.now() return eng.now() end
function workflow.time_iso(t) return eng.time_iso(t) end
function workflow.random() return math.random() end
function workflow.uuid() return eng.uuid() end
function workflow.info() return eng.info() end
function workflow.is_replaying() return eng.is_replaying() end

function workflow.patched(id)
  if type(id) ~= "string" then error("workflow.patched expects a patch id string", 2) end
  return eng.patched(id, false)
end

function workflow.deprecate_patch(id)
  if type(id) ~= "string" then error("workflow.deprecate_patch expects a patch id string", 2) end
  eng.patched(id, true)
end

--- Runs fn once and records its result in history; replays return the
--- recorded value without calling fn.
function workflow.side_effect(fn)
  if type(fn) ~= "function" then error("workflow.side_effect expects a function", 2) end
  return eng.side_effect(fn)
end

function workflow.upsert_search_attributes(t)
  if type(t) ~= "table" then error("workflow.upsert_search_attributes expects a table", 2) end
  eng.upsert_search_attributes(t)
end

--- Ends this run and starts a new one of the same workflow with these arguments.
function workflow.continue_as_new(...)
  current_thread("workflow.continue_as_new")
  error(new_error("continue_as_new", {type = "ContinueAsNew", message = "continue as new",
    args = t_pack(...)}), 0)
end

--- Logs a line (silent while replaying history).
function workflow.log(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  eng.log(table.concat(parts, " "))
end

return workflow, rt
