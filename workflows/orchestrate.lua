-- workflows/orchestrate.lua: takes a Jira issue through AI coding agents.
--
--   EXPLORE -> gate -> PLAN -> gate -> CODE -> TEST <-> FIX (<= 3 rounds) -> DOCUMENT
--
-- Input: "PROJ-123" (optionally followed by an options table), or one table
-- {issueKey, projectKey, createdBy, autoProceed, repo, testCommand, skipPhases}.
-- Signals: proceed, pause, resume, skipPhase(name), reject(reason).
-- Queries: getState, getPhase.
--
-- This is workflow code: deterministic, no I/O. Everything real happens in
-- activities/ (jira, agent, repo, tests, checkpoint, notify). Arrays are used
-- wherever order matters.

local PHASES = {"EXPLORE", "PLAN", "CODE", "TEST", "FIX", "DOCUMENT"}
local KEY_PATTERN = "^[A-Z][A-Z0-9_]*%-[1-9][0-9]*$"
local MAX_FIX_ROUNDS = 3
local APPROVAL_TIMEOUT = "7 days"
local PAUSE_LIMIT = "30 days"
local EXCERPT = 3000

-- The original system's options: 2 h per attempt, 5 s doubling to 5 min,
-- 3 attempts; bad input and bad credentials are not worth retrying.
local RETRY = {
  initial_interval = "5s",
  backoff_coefficient = 2,
  maximum_interval = "5 minutes",
  maximum_attempts = 3,
  non_retryable_error_types = {"ValidationError", "AuthenticationError"},
}
local SHORT = {start_to_close_timeout = "2 hours", retry_policy = RETRY}
-- Agents and test suites run long: they heartbeat, so a dead worker is
-- noticed in minutes rather than hours.
local LONG = {start_to_close_timeout = "2 hours", heartbeat_timeout = "2 minutes", retry_policy = RETRY}

local function fail(type_, message)
  error(workflow.ApplicationError{type = type_, message = message, non_retryable = true}, 0)
end

local function excerpt(s, n)
  s = tostring(s or "")
  n = n or EXCERPT
  if #s <= n then return s end
  return s:sub(1, n // 2) .. "\n[...]\n" .. s:sub(-(n // 2))
end

local function is_phase(name)
  for _, p in ipairs(PHASES) do
    if p == name then return true end
  end
  return false
end

---------------------------------------------------------------- input

-- Accepts both input shapes; fails fast (non-retryable ValidationError) on a
-- malformed key so nothing touches Jira with it.
local function parse_input(input, extra)
  local p = {}
  if type(input) == "table" then
    for k, v in pairs(input) do p[k] = v end
  elseif type(input) == "string" then
    p.issueKey = input
  else
    fail("ValidationError", "input must be an issue key (\"PROJ-123\") or {issueKey = ...}")
  end
  if type(extra) == "table" then
    for k, v in pairs(extra) do p[k] = v end
  end
  local key = p.issueKey
  if type(key) ~= "string" or #key > 64 or not key:match(KEY_PATTERN) then
    fail("ValidationError", "malformed issue key " .. string.format("%q", tostring(key)):sub(1, 80)
      .. ": expected PROJECT-123 (uppercase project key, dash, number)")
  end
  local project = key:match("^(.-)%-")
  if p.projectKey ~= nil and p.projectKey ~= project then
    fail("ValidationError", "projectKey " .. tostring(p.projectKey):sub(1, 40)
      .. " does not match the issue key " .. key)
  end
  p.projectKey = project
  -- nil: decided after the issue is fetched (see EXPLORE)
  if p.autoProceed ~= nil then p.autoProceed = p.autoProceed == true end
  if p.repo ~= nil and type(p.repo) ~= "string" then fail("ValidationError", "repo must be a path") end
  if p.testCommand ~= nil and type(p.testCommand) ~= "table" and type(p.testCommand) ~= "string" then
    fail("ValidationError", "testCommand must be an argv list")
  end
  -- skipPhases: phases to skip from the start (a skipPhase signal can only
  -- reach phases that have not begun, and EXPLORE begins at once).
  local skips = {}
  if p.skipPhases ~= nil then
    if type(p.skipPhases) ~= "table" then fail("ValidationError", "skipPhases must be a list of phase names") end
    for _, name in ipairs(p.skipPhases) do
      local n = type(name) == "string" and name:upper() or ""
      if not is_phase(n) then
        fail("ValidationError", "skipPhases: unknown phase " .. string.format("%q", tostring(name)):sub(1, 40)
          .. " (one of " .. table.concat(PHASES, ", ") .. ")")
      end
      skips[#skips + 1] = n
    end
  end
  p.skipPhases = skips
  return p
end

-- One run per issue: without --id, `jorch start`/`jorch run` name the run
-- after the issue key, so a second start of the same issue while one runs is
-- refused (two runs would share one work tree and one branch). An explicit
-- --id still starts more. A malformed key gets a generated id; the run then
-- fails with its ValidationError.
workflow.default_id(function(input)
  local key = type(input) == "table" and input.issueKey or input
  if type(key) == "string" and #key <= 64 and key:match(KEY_PATTERN) then return key end
  return nil
end)

---------------------------------------------------------------- the workflow

return function(input, options)
  local info = workflow.info()
  local state = {
    issueKey = type(input) == "table" and input.issueKey or input,
    currentPhase = "INIT",
    status = "running",
    awaitingApproval = false,
    startedAt = workflow.time_iso(),
    phaseResults = {},
    fixAttempts = 0,
  }
  if type(state.issueKey) ~= "string" then state.issueKey = nil end

  -- Signal-driven flags. A proceed that arrives before its gate is kept
  -- for that gate.
  local proceeds, paused, rejected = 0, false, nil
  local skip = {}
  -- Who sent each proceed, in order (false: not said). `jorch web` and the
  -- Jira webhook send {by = "alice", via = "web"}; the CLI sends nothing.
  local approvers = {}
  local function sender(arg)
    if type(arg) ~= "table" or arg.by == nil then return false end
    return {by = tostring(arg.by):sub(1, 200), via = arg.via ~= nil and tostring(arg.via):sub(1, 40) or nil}
  end

  workflow.on_signal("proceed", function(arg)
    proceeds = proceeds + 1
    approvers[#approvers + 1] = sender(arg)
  end)
  workflow.on_signal("pause", function() paused = true end)
  workflow.on_signal("resume", function() paused = false end)
  workflow.on_signal("reject", function(reason)
    rejected = type(reason) == "table" and tostring(reason.reason or "rejected")
      or tostring(reason or "rejected")
    local who = sender(reason)
    if who then rejected = rejected .. " (by " .. who.by .. ")" end
  end)
  local function phase_arg(name)
    if type(name) == "table" then name = name.phase or name.name end
    return type(name) == "string" and name:upper() or ""
  end
  local function unknown_phase(name)
    return "unknown phase " .. string.format("%q", name):sub(1, 40) .. " (one of " .. table.concat(PHASES, ", ") .. ")"
  end
  workflow.on_signal("skipPhase", function(name)
    name = phase_arg(name)
    if is_phase(name) then
      skip[name] = true
      workflow.log("skipPhase: " .. name .. " will be skipped")
    else
      -- A bad signal must not fail the run; it is reported and ignored.
      workflow.log("skipPhase: ignoring " .. unknown_phase(name))
    end
  end, {validator = function(name)
    -- `jorch signal ID skipPhase tset` is refused in the sender's terminal
    if not is_phase(phase_arg(name)) then error(unknown_phase(phase_arg(name)), 0) end
  end})

  workflow.on_query("getState", function() return state end)
  workflow.on_query("getPhase", function()
    return {phase = state.currentPhase, status = state.status,
      result = state.phaseResults[state.currentPhase]}
  end)

  local p, key
  local cleaning = false  -- once set, activities run even though the run was cancelled
  local labels = {}   -- labels this run has set, to swap on the next change
  local ctx = {}      -- excerpts of earlier phases, for later prompts
  local issue, repo, branch
  local seq = 0

  -- A cancellation that arrives between activities is noticed here, so
  -- the run stops at the next step instead of carrying on.
  local function check_cancelled()
    if workflow.cancelled() and not cleaning then
      error(workflow.CancelledError("workflow cancelled"), 0)
    end
  end

  local function act(name, args, opts)
    check_cancelled()
    return workflow.execute_activity(name, args, opts or SHORT)
  end

  local function set_labels(phase, status)
    local add = {"orchestration-phase:" .. phase, "orchestration-status:" .. status}
    local remove = {}
    for _, l in ipairs(labels) do
      if l ~= add[1] and l ~= add[2] then remove[#remove + 1] = l end
    end
    act("jira.updateLabels", {key, add, remove})
    labels = add
  end

  local function comment(text)
    local r = act("jira.addComment", {key, text})
    if r and r.recordedIn then state.jiraRecord = r.recordedIn end
  end

  local function checkpoint(phase)
    seq = seq + 1
    act("checkpoint.save", {{workflowId = info.workflow_id, issueKey = key, phase = phase, seq = seq,
      state = state, at = workflow.time_iso()}})
  end

  local function agent(name, phase, extra)
    local r = act("agent.run", {{agent = name, phase = phase, issue = issue, repo = repo.path,
      branch = branch and branch.branch, workflowId = info.workflow_id, context = ctx,
      round = extra and extra.round}}, LONG)
    state.artifacts = r.artifact and r.artifact:match("^(.*)/[^/]*$") or state.artifacts
    return r
  end

  -- The command that reaches this run from a shell, for the backend it runs
  -- on (info.backend comes from the run's history, so replays agree).
  local function signal_command(name)
    if info.backend == "temporal" then
      return "jorch signal --temporal " .. info.workflow_id .. " " .. name
    end
    return "jorch signal " .. info.workflow_id .. " " .. name
  end

  local function check_rejected()
    if rejected then fail("Rejected", "rejected: " .. rejected) end
  end

  -- Holds at a phase boundary while paused (at most 30 days, then carries on).
  local function hold_if_paused()
    if not paused then return end
    local before = state.status
    state.status = "paused"
    set_labels(state.currentPhase, "paused")
    local resumed = workflow.wait_condition(function() return not paused or rejected ~= nil end, PAUSE_LIMIT,
      "signal resume (paused)")
    check_cancelled()
    if not resumed then
      paused = false
      workflow.log("pause: no resume within " .. PAUSE_LIMIT .. "; continuing")
    end
    state.status = before
  end

  -- Approval after EXPLORE and PLAN, unless autoProceed.
  local function gate(after)
    check_rejected()
    if p.autoProceed then return end
    state.status, state.awaitingApproval = "awaiting_approval", true
    set_labels(after, "awaiting_approval")
    comment(after .. " is complete; the orchestration is awaiting approval to continue.\n"
      .. "Send the proceed signal to continue, or reject (with a reason) to stop:\n"
      .. signal_command("proceed"))
    local ok = workflow.wait_condition(function() return proceeds > 0 or rejected ~= nil end,
      APPROVAL_TIMEOUT, "signal proceed (" .. after .. " gate)")
    state.awaitingApproval = false
    check_cancelled()
    check_rejected()
    if not ok then
      fail("ApprovalTimeout", "no approval within " .. APPROVAL_TIMEOUT .. " after " .. after)
    end
    proceeds = proceeds - 1
    local who = table.remove(approvers, 1)
    if who then
      state.approvals = state.approvals or {}
      state.approvals[#state.approvals + 1] = {gate = after, by = who.by, via = who.via, at = workflow.time_iso()}
      -- runs started before approvers were named never reach this (their
      -- proceed signals carry no "by"), and the patch keeps replays exact
      if workflow.patched("gate-approver-comment") then
        comment(after .. " was approved by " .. who.by .. (who.via and (" (via " .. who.via .. ")") or "")
          .. "; the orchestration continues.")
      end
    end
    state.status = "running"
  end

  -- Runs one phase: pause/skip/reject checks, labels, timings, checkpoint.
  local function phase(name, body)
    check_cancelled()
    hold_if_paused()
    check_rejected()
    state.currentPhase = name
    workflow.set_current_details(name)
    if skip[name] then
      state.phaseResults[name] = {status = "skipped", at = workflow.time_iso()}
      workflow.log(name .. ": skipped")
      checkpoint(name)
      return nil
    end
    state.status = "running"
    set_labels(name, "running")
    local t0 = workflow.now()
    local result = body() or {}
    result.status = result.status or "completed"
    result.startedAt = workflow.time_iso(t0)
    result.finishedAt = workflow.time_iso()
    result.durationSeconds = workflow.now() - t0
    local prev = state.phaseResults[name]
    result.runs = (prev and prev.runs or 0) + 1
    state.phaseResults[name] = result
    checkpoint(name)
    return result
  end

  local function test_round(round)
    return phase("TEST", function()
      local t = act("tests.run", {{repo = repo.path, command = p.testCommand or repo.testCommand,
        workflowId = info.workflow_id, round = round}}, LONG)
      ctx.test = excerpt(t.tail)
      return {status = t.passed and "passed" or "failed", passed = t.passed, exitCode = t.exitCode, timedOut = t.timedOut, counts = t.counts,
        tail = excerpt(t.tail, 1500), artifact = t.artifact}
    end)
  end

  -- Cleanup must not mask the original error: each step is best effort.
  local function try(what, fn)
    local ok, e = pcall(fn)
    if not ok then workflow.log("cleanup: " .. what .. " failed: " .. tostring(e)) end
  end

  local function summary_lines()
    local lines = {}
    for _, name in ipairs(PHASES) do
      local r = state.phaseResults[name]
      if r then
        local extra = ""
        if name == "TEST" and r.counts and r.counts.passed then
          extra = string.format(", %d passed, %d failed", r.counts.passed, r.counts.failed or 0)
        end
        lines[#lines + 1] = string.format("- %s: %s%s", name, r.status, extra)
      end
    end
    return table.concat(lines, "\n")
  end

  -- The issue and the workspace: every later phase needs them, so they are
  -- fetched even when EXPLORE is skipped (skipping it skips its agents).
  local function setup()
    if issue then return end
    issue = act("jira.getIssue", {key})
    -- The offline demo has nobody to approve: it proceeds unless told otherwise.
    if p.autoProceed == nil then p.autoProceed = issue.backend == "offline" end
    repo = act("repo.prepareWorkspace", {{issueKey = key, repo = p.repo}})
  end

  -- The issue's branch; made by CODE, or on first need when CODE was skipped
  -- (FIX and DOCUMENT commit on it and list the commits since its base).
  local function ensure_branch()
    if not branch then
      branch = act("repo.startBranch", {repo.path, key})
      state.branch = branch.branch
    end
    return branch
  end

  local function run_all()
    p = parse_input(input, options)
    key = p.issueKey
    state.issueKey, state.projectKey = key, p.projectKey
    for _, name in ipairs(p.skipPhases) do skip[name] = true end

    phase("EXPLORE", function()
      setup()
      local triage = agent("triage", "EXPLORE")
      ctx.triage = excerpt(triage.output)
      local req = agent("requirements", "EXPLORE")
      ctx.explore = excerpt(req.output)
      return {summary = issue.summary, repo = repo.path, demo = repo.demo,
        artifacts = {triage.artifact, req.artifact}}
    end)
    setup()
    gate("EXPLORE")

    phase("PLAN", function()
      local plan = agent("planner", "PLAN")
      ctx.plan = excerpt(plan.output)
      local arch = agent("architect", "PLAN")
      ctx.architecture = excerpt(arch.output)
      return {artifacts = {plan.artifact, arch.artifact}}
    end)
    gate("PLAN")

    phase("CODE", function()
      ensure_branch()
      local impl = agent("implementer", "CODE")
      ctx.code = excerpt(impl.output)
      local c = act("repo.finishCommits", {repo.path, key, branch.base, "implementer"})
      state.branch, state.commits = branch.branch, c.commits
      return {branch = branch.branch, base = branch.base, commits = c.commits, artifact = impl.artifact}
    end)

    -- TEST, then FIX and re-TEST until green, at most MAX_FIX_ROUNDS fixes.
    local t = test_round(0)
    local passed = t == nil or t.passed
    while not passed and state.fixAttempts < MAX_FIX_ROUNDS and not skip.FIX do
      state.fixAttempts = state.fixAttempts + 1
      local round = state.fixAttempts
      phase("FIX", function()
        local base = ensure_branch().base  -- before the agent: its commits go on the branch
        local fix = agent("bugfixer", "FIX", {round = round})
        ctx.fix = excerpt(fix.output)
        local c = act("repo.finishCommits", {repo.path, key, base, "bugfixer"})
        state.commits = c.commits
        return {round = round, commits = c.commits, artifact = fix.artifact}
      end)
      t = test_round(round)
      passed = t == nil or t.passed
    end
    if not passed then
      fail("TestsFailed", "tests still failing after " .. state.fixAttempts .. " fix round(s)"
        .. (t and t.counts and t.counts.failed and (" (" .. t.counts.failed .. " failing)") or ""))
    end

    phase("DOCUMENT", function()
      local base = ensure_branch().base
      local docs = agent("docs", "DOCUMENT")
      local c = act("repo.finishCommits", {repo.path, key, base, "docs"})
      state.commits = c.commits
      return {artifact = docs.artifact, commits = c.commits}
    end)

    check_cancelled()
    state.currentPhase = "DONE"
    set_labels("DONE", "completed")
    act("jira.transition", {key, "Done"})
    local commits = {}
    for _, c in ipairs(state.commits or {}) do commits[#commits + 1] = "- " .. c.sha:sub(1, 10) .. " " .. c.subject end
    comment("jorch orchestration completed.\n\n" .. summary_lines()
      .. "\n\nBranch " .. tostring(state.branch) .. " in " .. tostring(repo and repo.path)
      .. (#commits > 0 and (":\n" .. table.concat(commits, "\n")) or "")
      .. (state.fixAttempts > 0 and ("\n\nFix rounds: " .. state.fixAttempts) or ""))
  end

  local ok, err = pcall(run_all)
  if ok then
    state.status = "completed"
    -- latest.json says "completed" (runs started before this change skip it:
    -- their histories have no checkpoint here)
    if workflow.patched("checkpoint-on-completion") then
      try("checkpoint", function() checkpoint("DONE") end)
    end
    try("notify", function()
      act("notify.send", {{issueKey = key, status = "completed",
        text = key .. ": orchestration completed (" .. #(state.commits or {}) .. " commits on "
          .. tostring(state.branch) .. ")"}})
    end)
    if state.jiraRecord then workflow.log("Jira comments and labels recorded in " .. state.jiraRecord) end
    if state.artifacts then workflow.log("agent prompts, outputs and test logs in " .. state.artifacts) end
    return {issueKey = key, status = "completed", branch = state.branch, commits = state.commits,
      repo = repo and repo.path, fixAttempts = state.fixAttempts, phaseResults = state.phaseResults,
      jiraRecord = state.jiraRecord, artifacts = state.artifacts}
  end

  -- A plain Lua error is a bug in this script: let it fail the workflow
  -- task (retried after a fix) instead of failing the run.
  if not workflow.is_error(err) then error(err, 0) end

  local cancelled = workflow.is_cancelled(err) and workflow.cancelled()
  local etype = err.type
  if etype == "ActivityError" and err.cause then etype = err.cause.type or etype end
  local message = err.message
  if err.cause and err.cause.message and err.cause.message ~= "" then message = err.cause.message end
  if cancelled and workflow.cancel_reason() then
    message = "workflow cancelled: " .. workflow.cancel_reason():sub(1, 500)
  end
  cleaning = true
  state.awaitingApproval = false
  state.error = {type = etype, message = message, phase = state.currentPhase}
  if cancelled then
    state.status = "cancelled"
  elseif etype == "Rejected" then
    state.status = "rejected"
  else
    state.status = "failed"
  end

  -- Nothing can be said to Jira about a key that was never valid.
  if key ~= nil then
    try("labels", function() set_labels(state.currentPhase, state.status) end)
    if state.status ~= "rejected" then
      try("transition", function() act("jira.transition", {key, "Blocked"}) end)
    end
    try("comment", function()
      comment("jorch orchestration " .. state.status .. " in phase " .. state.currentPhase .. ": "
        .. tostring(etype) .. ": " .. tostring(message) .. "\n\n" .. summary_lines())
    end)
    try("notify", function()
      act("notify.send", {{issueKey = key, status = state.status,
        text = key .. ": orchestration " .. state.status .. " in " .. state.currentPhase .. " ("
          .. tostring(etype) .. ")"}})
    end)
    try("checkpoint", function() checkpoint(state.currentPhase) end)
  end

  if cancelled then error(err, 0) end
  error(workflow.ApplicationError{type = etype or "OrchestrationFailed", non_retryable = true,
    message = state.currentPhase .. ": " .. tostring(message)}, 0)
end
