-- Test activities for tests/unit/test_activity.c (one file per concern
-- would be nicer to read, but "basic" also exercises the unqualified search).
local M = {}

function M.echo(...) return { ... } end

function M.add(a, b) return a + b end

function M.nothing() end

function M.typed()
  activity.error { type = "BadInput", message = "input was bad", non_retryable = true,
                   details = { field = "x" } }
end

function M.typed_list()
  activity.error { type = "BadInput", message = "two details", details = { "a", { n = 1 } } }
end

function M.plain() error("boom") end

function M.bad_result() return { ok = true, fn = function() end } end

function M.info() return activity.info() end

function M.log(...) activity.log("hello", 42, ...) return true end

function M.print(...) print("printed", ...) return true end

-- Records when it ran, so the test can prove attempts overlapped.
function M.window(seconds)
  local start = jorch.now()
  jorch.sleep(seconds)
  return { start = start, finish = jorch.now() }
end

function M.spin() while true do end end

-- Swallows every error it can: the host must still stop it at the deadline.
function M.spin_pcall()
  while true do pcall(function() while true do end end) end
end

-- Heartbeats until cancelled (or 200 beats).
function M.beat(n)
  for i = 1, (n or 200) do
    activity.heartbeat({ i = i })
    jorch.sleep(0.01)
  end
  return "finished"
end

function M.cancelled_after_catch()
  local ok, e = pcall(activity.heartbeat, "x")
  return { ok = ok, type = type(e) == "table" and e.type or tostring(e), cancelled = activity.cancelled() }
end

-- jorch.exec with options straight from the test; returns the result table
-- (stdout replaced by its length when asked, to stay small).
function M.exec(opts, summarize)
  local r = jorch.exec(opts)
  if summarize then
    r.stdout_len = #r.stdout
    r.stdout_ok = r.stdout == string.rep("a", #r.stdout)
    r.stdout = nil
    r.stderr_len = #r.stderr
    r.stderr = nil
  end
  return r
end

function M.try(fname, ...)
  local f = assert(load("return " .. fname))()
  local ok, e = pcall(f, ...)
  return { ok = ok, err = not ok and tostring(e) or nil }
end

function M.exec_stdin_big(n)
  local r = jorch.exec { argv = { "cat" }, stdin = string.rep("a", n) }
  return { status = r.status, len = #r.stdout, same = r.stdout == string.rep("a", n) }
end

function M.http(opts)
  local r = jorch.http.request(opts)
  local ok, decoded = pcall(jorch.json.decode, r.body)
  r.json = ok and decoded or nil
  return r
end

function M.http_get(url) return jorch.http.get(url).status end

function M.json_roundtrip(v)
  local s = jorch.json.encode(v)
  return { text = s, back = jorch.json.decode(s) }
end

function M.fs(dir)
  local fs = jorch.fs
  fs.mkdir_p(dir .. "/a/b")
  fs.write(dir .. "/a/b/f.txt", "one")
  fs.write(dir .. "/a/b/f.txt", "two") -- replaces atomically
  fs.append(dir .. "/a/b/log", "x")
  fs.append(dir .. "/a/b/log", "y")
  fs.write(dir .. "/a/b/c.txt", "")
  local out = {
    read = fs.read(dir .. "/a/b/f.txt"),
    log = fs.read(dir .. "/a/b/log"),
    list = fs.list(dir .. "/a/b"),
    exists = fs.exists(dir .. "/a/b/f.txt"),
    missing = fs.exists(dir .. "/nope"),
    removed = fs.remove(dir .. "/a/b/c.txt"),
    removed_again = fs.remove(dir .. "/a/b/c.txt"),
  }
  out.after = fs.list(dir .. "/a/b")
  local ok, e = pcall(fs.read, dir .. "/nope")
  out.read_missing = tostring(e)
  return out
end

function M.env(name) return jorch.env(name) end

function M.dup() return "basic" end

return M
