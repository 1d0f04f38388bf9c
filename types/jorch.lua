---@meta jorch
-- Editor annotations (LuaCATS, for lua-language-server) of the toolkit
-- global `jorch` of activity modules (also require("jorch")): jorch.http,
-- jorch.json, jorch.exec, jorch.fs, jorch.config and the rest. Never loaded by
-- jorch; tests/cli/annotations.sh checks them against the runtime. Workflow
-- scripts do not have `jorch` (they are sandboxed). See docs/activities.md.

---Options of jorch.http.request (and the opts of get/post).
---@class jorch.HttpRequest
---@field url? string http or https URL (required for request)
---@field method? string upper-case method, default "GET"
---@field headers? table<string, string>
---@field body? string
---@field timeout? number seconds, default 120
---@field max_bytes? integer response body limit, default 16 MiB
---@field follow? boolean follow redirects (default false)
---@field ca_file? string extra CA bundle for a private CA

---An HTTP response; a non-2xx status is not an error.
---@class jorch.HttpResponse
---@field status integer
---@field headers table<string, string> names lower-cased
---@field body string

---Options of jorch.exec. There is no shell: argv[1] is looked up on PATH.
---@class jorch.ExecOptions
---@field argv string[] program and arguments, exactly as given
---@field cwd? string working directory
---@field env? table<string, string> variables to add or change
---@field env_clear? boolean start from an empty environment
---@field stdin? string
---@field timeout? number seconds; then SIGTERM to the process group, SIGKILL 2 s later
---@field max_output? integer bytes kept per stream (default 16 MiB)
---@field heartbeat? number heartbeat every N seconds while the child runs

---The result of jorch.exec.
---@class jorch.ExecResult
---@field status? integer exit code (absent when a signal ended the child)
---@field signal? integer the signal that ended the child
---@field stdout string
---@field stderr string
---@field timed_out boolean
---@field truncated boolean output beyond max_output was dropped

---The activity toolkit.
---@class jorch
jorch = {}

---HTTP client: TLS always verified, only http and https URLs; messages never
---contain credentials, query strings or header values.
jorch.http = {}

---Sends a request; raises on a transport failure.
---@param req jorch.HttpRequest
---@return jorch.HttpResponse
function jorch.http.request(req) end

---GET url.
---@param url string
---@param opts? jorch.HttpRequest
---@return jorch.HttpResponse
function jorch.http.get(url, opts) end

---POST body to url.
---@param url string
---@param body? string
---@param opts? jorch.HttpRequest
---@return jorch.HttpResponse
function jorch.http.post(url, body, opts) end

---JSON in jorch's canonical form.
jorch.json = {}

---Encodes a value (sorted keys, no spaces); raises for functions, NaN or cycles.
---@param v any
---@return string
function jorch.json.encode(v) end

---Decodes JSON text (null becomes nil); raises on invalid JSON.
---@param s string
---@return any
function jorch.json.decode(s) end

---Files and directories; errors name the path and the reason.
jorch.fs = {}

---The whole file.
---@param path string
---@return string
function jorch.fs.read(path) end

---Replaces the file atomically (temp file, fsync, rename).
---@param path string
---@param data string
function jorch.fs.write(path, data) end

---Appends to the file (created if missing).
---@param path string
---@param data string
function jorch.fs.append(path, data) end

---True when the path exists.
---@param path string
---@return boolean
function jorch.fs.exists(path) end

---Creates the directory and its parents (no error if it exists).
---@param path string
function jorch.fs.mkdir_p(path) end

---The names in a directory, sorted.
---@param dir string
---@return string[]
function jorch.fs.list(dir) end

---Removes a file or an empty directory; false if it did not exist.
---@param path string
---@return boolean
function jorch.fs.remove(path) end

---Runs a program (no shell) and waits for it; interrupted by cancellation
---and the attempt's timeout. A missing program raises.
---@param opts jorch.ExecOptions
---@return jorch.ExecResult
function jorch.exec(opts) end

---An environment variable, or nil. Keep secrets here, not in workflow arguments.
---@param name string
---@return string?
function jorch.env(name) end

---Sleeps (interrupted by cancellation and the attempt's timeout).
---@param seconds number
function jorch.sleep(seconds) end

---Wall-clock time, seconds since the epoch as a float.
---@return number
function jorch.now() end

---The settings of jorch.yaml as a table, with `home` the store directory
---unless the file sets it; see docs/orchestrator.md.
---@type table<string, any>
jorch.config = {}

return jorch
