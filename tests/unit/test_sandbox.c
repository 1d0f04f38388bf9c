/*
 * test_sandbox.c - every sandbox rule of docs/sandbox.md, each test named
 * after the trick it tries (as Redis names its scripting tests), plus a
 * test that enumerates everything a script can reach, and a cross-process
 * check that pairs order does not depend on the Lua hash seed.
 */
#include <math.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "engine/sandbox.h"
#include "test.h"

extern char **environ;

static sandbox *new_sb_limits(size_t mem, uint64_t budget, double wall, uint64_t seed) {
    engine_limits lim = engine_limits_default();
    jerr err = {0, ""};
    lim.memory_limit = mem;
    lim.instruction_budget = budget;
    lim.wall_clock_limit = wall;
    sandbox *sb = sandbox_new(&lim, seed, NULL, NULL, &err);
    if (sb == NULL) fprintf(stderr, "sandbox_new: %s\n", err.msg);
    return sb;
}

static sandbox *new_sb(void) {
    engine_limits d = engine_limits_default();
    return new_sb_limits(d.memory_limit, d.instruction_budget, d.wall_clock_limit, 1);
}

/* Runs src as the chunk "test.lua"; returns its first result as text, or
 * the error message (*ok false). The text lives in a static buffer. */
static const char *run(sandbox *sb, const char *src, bool *ok) {
    static char out[16384];
    jerr err = {0, ""};
    lua_State *L = sandbox_state(sb);
    int top = lua_gettop(L);
    *ok = false;
    if (sandbox_load(sb, "test.lua", src, strlen(src), &err) != 0) {
        snprintf(out, sizeof out, "%s", err.msg);
        return out;
    }
    int status = lua_pcall(L, 0, 1, 0);
    switch (lua_type(L, -1)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
        snprintf(out, sizeof out, "%s", lua_tostring(L, -1));
        break;
    case LUA_TBOOLEAN:
        snprintf(out, sizeof out, "%s", lua_toboolean(L, -1) ? "true" : "false");
        break;
    default:
        snprintf(out, sizeof out, "(%s)", luaL_typename(L, -1));
    }
    lua_settop(L, top);
    *ok = status == LUA_OK;
    return out;
}

#define RUN_OK(sb, src, expected) do { \
    bool ok_; const char *r_ = run((sb), (src), &ok_); \
    CHECK_MSG(ok_, "script failed: %s", r_); \
    CHECK_STREQ(r_, (expected)); } while (0)

#define RUN_ERR(sb, src, needle) do { \
    bool ok_; const char *r_ = run((sb), (src), &ok_); \
    CHECK_MSG(!ok_, "script succeeded: %s", r_); \
    CHECK_CONTAINS(r_, (needle)); } while (0)

/* ------------------------------------------------------ forbidden names */

static void trick_forbidden_globals(void) {
    static const char *const names[] = {
        "io", "os", "package", "debug", "dofile", "loadfile", "loadstring", "collectgarbage",
        "warn", "module", "setfenv", "getfenv", "newproxy", "gcinfo", "print"};
    sandbox *sb = new_sb();
    CHECK(sb != NULL);
    if (!sb) return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char src[128], want[128];
        snprintf(src, sizeof src, "local x = 1\nreturn %s", names[i]);
        snprintf(want, sizeof want, "test.lua:2: '%s' is not available in workflows", names[i]);
        RUN_ERR(sb, src, want);
    }
    RUN_ERR(sb, "local t = os.time()",
            "test.lua:1: 'os' is not available in workflows (use workflow.now() / an activity)");
    RUN_ERR(sb, "return print('x')", "(use workflow.log)");
    RUN_ERR(sb, "return _G['collect' .. 'garbage']", "'collectgarbage' is not available");
    RUN_ERR(sb, "return _ENV.io", "'io' is not available");
    RUN_OK(sb, "return rawget(_G, 'os') == nil and rawget(_G, 'debug') == nil", "true");
    RUN_OK(sb, "return undefined_global == nil", "true");
    RUN_OK(sb, "os = 5 return os", "5"); /* the script's own global is just a global */
    sandbox_free(sb);
}

static void trick_getmetatable_string_index_dump(void) {
    sandbox *sb = new_sb();
    if (!sb) return;
    RUN_OK(sb, "return getmetatable('')", "locked");
    RUN_ERR(sb, "return getmetatable('').__index.dump", "attempt to index a nil value");
    RUN_ERR(sb, "return ('').dump(function() end)",
            "test.lua:1: string.dump is not available in workflows");
    RUN_ERR(sb, "return string.dump(function() end)", "string.dump is not available");
    RUN_ERR(sb, "return math.randomseed(1)", "math.randomseed is not available");
    RUN_OK(sb, "return ('abc'):upper() .. ('x'):rep(3)", "ABCxxx");
    RUN_ERR(sb, "setmetatable(string, nil)", "cannot change a protected metatable");
    sandbox_free(sb);
}

static void trick_env_metatable_removal(void) {
    sandbox *sb = new_sb();
    if (!sb) return;
    RUN_OK(sb, "return getmetatable(_G)", "locked");
    RUN_ERR(sb, "setmetatable(_G, nil)", "cannot change a protected metatable");
    RUN_ERR(sb, "setmetatable(_G, nil) return os", "cannot change a protected metatable");
    RUN_OK(sb, "return getmetatable(math) .. getmetatable(table) .. getmetatable(utf8) .. "
               "getmetatable(coroutine) .. getmetatable(string)",
           "lockedlockedlockedlockedlocked");
    sandbox_free(sb);
}

/* Redis-style: everything reachable from _G, recursively, is exactly the
 * allow-list. A new library function showing up here is a review point. */
static void reachable_from_G_is_the_allow_list(void) {
    static const char expected[] =
        "_G:table _VERSION:string assert:function coroutine:table coroutine.close:function "
        "coroutine.create:function coroutine.isyieldable:function coroutine.resume:function "
        "coroutine.running:function coroutine.status:function coroutine.wrap:function "
        "coroutine.yield:function error:function getmetatable:function ipairs:function "
        "load:function math:table math.abs:function math.acos:function math.asin:function "
        "math.atan:function math.ceil:function math.cos:function math.deg:function "
        "math.exp:function math.floor:function math.fmod:function math.huge:number "
        "math.log:function math.max:function math.maxinteger:number math.min:function "
        "math.mininteger:number math.modf:function math.pi:number math.rad:function "
        "math.random:function math.sin:function math.sqrt:function math.tan:function "
        "math.tointeger:function math.type:function math.ult:function next:function "
        "pairs:function pcall:function rawequal:function rawget:function rawlen:function "
        "rawset:function require:function select:function setmetatable:function "
        "string:table string.byte:function string.char:function string.find:function "
        "string.format:function string.gmatch:function string.gsub:function "
        "string.len:function string.lower:function string.match:function "
        "string.pack:function string.packsize:function string.rep:function "
        "string.reverse:function string.sub:function string.unpack:function "
        "string.upper:function table:table table.concat:function table.insert:function "
        "table.move:function table.pack:function table.remove:function table.sort:function "
        "table.unpack:function tonumber:function tostring:function type:function "
        "utf8:table utf8.char:function utf8.charpattern:string utf8.codepoint:function "
        "utf8.codes:function utf8.len:function utf8.offset:function xpcall:function";
    sandbox *sb = new_sb();
    if (!sb) return;
    RUN_OK(sb,
           "local seen, out = {}, {}\n"
           "local function walk(t, prefix)\n"
           "  seen[t] = true\n"
           "  for k, v in pairs(t) do\n"
           "    out[#out + 1] = prefix .. tostring(k) .. ':' .. type(v)\n"
           "    if type(v) == 'table' and not seen[v] then walk(v, prefix .. k .. '.') end\n"
           "  end\n"
           "end\n"
           "walk(_G, '')\n"
           "return table.concat(out, ' ')",
           expected);
    sandbox_free(sb);
}

/* ----------------------------------------------------------- pairs/next */

static void pairs_order_is_canonical(void) {
    sandbox *sb = new_sb();
    if (!sb) return;
    static const char prelude[] =
        "local function keys(t) local o = {} for k in pairs(t) do o[#o+1] = tostring(k) end "
        "return table.concat(o, ' ') end\n"
        "local function nkeys(t) local o, k = {}, nil repeat k = next(t, k) "
        "if k ~= nil then o[#o+1] = tostring(k) end until k == nil return table.concat(o, ' ') end\n";
    char src[4096];
    /* Same keys, different insertion orders and histories. */
    snprintf(src, sizeof src,
             "%s"
             "local a = {}\n"
             "for _, k in ipairs{3, 'b', true, 1, 'ab', 2.5, '', false, -1, 'a', 10} do a[k] = 1 end\n"
             "local b = {}\n"
             "for _, k in ipairs{'a', false, 10, '', 'zz', -1, 2.5, 'ab', 1, true, 'b', 3} do b[k] = 1 end\n"
             "b.zz = nil\n"
             "local ka, kb = keys(a), keys(b)\n"
             "assert(ka == kb, ka .. ' / ' .. kb)\n"
             "assert(nkeys(a) == ka, nkeys(a))\n"
             "return ka",
             prelude);
    RUN_OK(sb, src, "-1 1 2.5 3 10  a ab b false true");
    /* Integers and floats compare exactly; strings by bytes, shorter first. */
    RUN_OK(sb,
           "local t = {[math.huge] = 1, [-math.huge] = 1, [2^64] = 1, [-2^64] = 1, [2^63] = 1,\n"
           "  [math.maxinteger] = 1, [math.mininteger] = 1, [0] = 1, [1.5] = 1, [2] = 1, [2.5] = 1,\n"
           "  ['\\xff'] = 1, ['a\\0b'] = 1, ['a'] = 1, ['B'] = 1}\n"
           "local o = {}\n"
           "for k in pairs(t) do\n"
           "  o[#o+1] = type(k) == 'string' and ('%q'):format(k) or\n"
           "    (math.type(k) == 'integer' and tostring(k) or ('%.17g'):format(k))\n"
           "end\n"
           "return table.concat(o, ' ')",
           "-inf -1.8446744073709552e+19 -9223372036854775808 0 1.5 2 2.5 9223372036854775807 "
           "9.2233720368547758e+18 1.8446744073709552e+19 inf \"B\" \"a\" \"a\\0b\" \"\xff\"");
    RUN_OK(sb, "return next({})", "(nil)");
    RUN_OK(sb, "return next({'x', y = 1})", "1");
    RUN_OK(sb, "local t = {b = 1, a = 2} return next(t, 'a')", "b");
    RUN_OK(sb, "local t = {b = 1, a = 2} return next(t, 'b')", "(nil)");
    RUN_ERR(sb, "for k in pairs({[{}] = 1}) do end",
            "test.lua:1: pairs: keys of type 'table' have no deterministic order");
    RUN_ERR(sb, "return next({[function() end] = 2})",
            "next: keys of type 'function' have no deterministic order");
    RUN_ERR(sb, "return pairs(nil)", "table expected");
    /* __pairs is the script's own choice. */
    RUN_OK(sb,
           "local t = setmetatable({}, {__pairs = function(t) return function(_, k) "
           "if not k then return 'only', 1 end end, t, nil end})\n"
           "local o = '' for k in pairs(t) do o = o .. k end return o",
           "only");
    /* Modification while iterating: a snapshot, keys removed since are skipped. */
    snprintf(src, sizeof src,
             "%s"
             "local t = {a = 1, b = 2, c = 3, d = 4}\n"
             "local seen = {}\n"
             "for k, v in pairs(t) do seen[#seen+1] = k .. v; t.c = nil; t.z = 9; t[k] = nil end\n"
             "return table.concat(seen, ' ') .. ' | ' .. keys(t)",
             prelude);
    RUN_OK(sb, src, "a1 b2 d4 | z");
    sandbox_free(sb);
}

static const char child_pairs_script[] =
    "local t = {}\n"
    "for i = 1, 50 do t['k' .. (i * 7919 % 1009)] = i end\n"
    "local out = {} for k in pairs(t) do out[#out + 1] = k end\n"
    "return table.concat(out, ',')";

/* The same 50 keys in a plain Lua state: the order lua_next gives, which
 * depends on this process's hash seed. */
static void raw_pairs_order(char *out, size_t outlen) {
    lua_State *L = luaL_newstate();
    out[0] = '\0';
    if (!L) return;
    lua_newtable(L);
    for (int i = 1; i <= 50; i++) {
        lua_pushfstring(L, "k%d", i * 7919 % 1009);
        lua_pushinteger(L, i);
        lua_rawset(L, -3);
    }
    size_t used = 0;
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_pop(L, 1);
        int n = snprintf(out + used, outlen - used, "%s,", lua_tostring(L, -1));
        if (n > 0 && (size_t)n < outlen - used) used += (size_t)n;
    }
    lua_close(L);
}

static void pairs_order_matches_child_processes(void) {
    char canon[4096], raw[4096];
    sandbox *sb = new_sb();
    if (!sb) return;
    bool ok;
    snprintf(canon, sizeof canon, "%s", run(sb, child_pairs_script, &ok));
    CHECK(ok);
    sandbox_free(sb);
    raw_pairs_order(raw, sizeof raw);
    if (getenv("SANDBOX_TEST_CHILD")) { /* we are the child: report and stop */
        printf("CANON %s\nRAW %s\n", canon, raw);
        fflush(stdout);
        return;
    }
    /* The canonical order is byte order of the keys. */
    sb = new_sb();
    if (!sb) return;
    char sorted[4096];
    snprintf(sorted, sizeof sorted, "%s",
             run(sb,
                 "local o = {} for i = 1, 50 do o[#o+1] = 'k' .. (i * 7919 % 1009) end\n"
                 "table.sort(o) return table.concat(o, ',')",
                 &ok));
    sandbox_free(sb);
    CHECK_STREQ(canon, sorted);

    /* Children: a fresh exec gets a fresh hash seed (time and ASLR). */
    size_t nenv = 0;
    while (environ[nenv]) nenv++;
    char **envp = calloc(nenv + 3, sizeof *envp);
    CHECK(envp != NULL);
    if (!envp) return;
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "TEST_ONLY=", 10) != 0) envp[k++] = environ[i];
    envp[k++] = "TEST_ONLY=pairs_order_matches_child_processes";
    envp[k++] = "SANDBOX_TEST_CHILD=1";
    envp[k] = NULL;
    int raw_differs = 0;
    for (int child = 0; child < 3; child++) {
        int fds[2];
        CHECK(pipe(fds) == 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
        posix_spawn_file_actions_addclose(&fa, fds[0]);
        char *argv[] = {"test_sandbox", NULL};
        pid_t pid;
        int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        close(fds[1]);
        CHECK_INT(rc, 0);
        char buf[16384];
        size_t got = 0;
        ssize_t n;
        while (got < sizeof buf - 1 && (n = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
            got += (size_t)n;
        buf[got] = '\0';
        close(fds[0]);
        int status = 0;
        if (rc == 0) waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        char *c = strstr(buf, "CANON ");
        char *r = strstr(buf, "\nRAW ");
        CHECK_MSG(c != NULL && r != NULL, "child output: %s", buf);
        if (!c || !r) continue;
        *r = '\0';
        r += 5;
        char *end = strchr(r, '\n');
        if (end) *end = '\0';
        CHECK_STREQ(c + 6, canon);
        if (strcmp(r, raw) != 0) raw_differs++;
    }
    free(envp);
    /* Not a CHECK: it only shows the test is meaningful on this machine
     * (without ASLR the seed may repeat within a second). */
    fprintf(stderr, "     (plain Lua pairs order differed from this process in %d of 3 children)\n",
            raw_differs);
}

/* ---------------------------------------------------------------- sort */

static void sort_is_stable_and_deterministic(void) {
    sandbox *sb = new_sb();
    if (!sb) return;
    RUN_OK(sb,
           "local t = {}\n"
           "for i = 1, 250 do t[i] = {key = (i * 37) % 7, id = i} end\n"
           "table.sort(t, function(a, b) return a.key < b.key end)\n"
           "for i = 2, #t do\n"
           "  local a, b = t[i-1], t[i]\n"
           "  assert(a.key < b.key or (a.key == b.key and a.id < b.id), 'unstable at ' .. i)\n"
           "end\n"
           "return #t .. ' ' .. t[1].id .. ' ' .. t[250].id",
           "250 7 248");
    RUN_OK(sb,
           "local t = {} for i = 1, 1000 do t[i] = math.random(1, 100000) end\n"
           "table.sort(t) for i = 2, #t do assert(t[i-1] <= t[i]) end\n"
           "local s = {'pear', 'apple', 'fig', 'b', 'a'} table.sort(s, function(x, y) return x > y end)\n"
           "return table.concat(s, ' ')",
           "pear fig b apple a");
    RUN_OK(sb, "local t = {} table.sort(t) local u = {3} table.sort(u) return #t .. u[1]", "03");
    RUN_OK(sb, "local t = {3, 1, 2} table.sort(t, nil) return table.concat(t)", "123");
    RUN_ERR(sb, "table.sort({1, 'x', 2})", "attempt to compare");
    RUN_ERR(sb, "table.sort({2, 1}, 5)", "bad argument #2 to 'sort'");
    RUN_ERR(sb, "table.sort({2, 1}, function() error('boom') end)", "test.lua:1: boom");
    sandbox_free(sb);
}

/* --------------------------------------------------------- math.random */

static void math_random_is_seeded_by_the_run(void) {
    static const char seq[] =
        "local o = {} for i = 1, 20 do o[#o+1] = math.random(1, 1000000) end\n"
        "o[#o+1] = string.format('%.17g', math.random()) o[#o+1] = math.random(0)\n"
        "return table.concat(o, ' ')";
    char a[2048], b[2048], c[2048];
    bool ok;
    engine_limits d = engine_limits_default();
    sandbox *s1 = new_sb_limits(d.memory_limit, d.instruction_budget, d.wall_clock_limit, 42);
    sandbox *s2 = new_sb_limits(d.memory_limit, d.instruction_budget, d.wall_clock_limit, 42);
    sandbox *s3 = new_sb_limits(d.memory_limit, d.instruction_budget, d.wall_clock_limit, 43);
    if (!s1 || !s2 || !s3) return;
    snprintf(a, sizeof a, "%s", run(s1, seq, &ok));
    CHECK(ok);
    snprintf(b, sizeof b, "%s", run(s2, seq, &ok));
    snprintf(c, sizeof c, "%s", run(s3, seq, &ok));
    CHECK_STREQ(a, b);
    CHECK(strcmp(a, c) != 0);
    RUN_OK(s1,
           "for i = 1, 2000 do\n"
           "  local f = math.random() assert(f >= 0 and f < 1)\n"
           "  local m = math.random(5) assert(m >= 1 and m <= 5 and math.type(m) == 'integer')\n"
           "  local r = math.random(-3, 3) assert(r >= -3 and r <= 3)\n"
           "  local w = math.random(math.mininteger, math.maxinteger) assert(math.type(w) == 'integer')\n"
           "end\n"
           "return math.random(7, 7)",
           "7");
    RUN_ERR(s1, "return math.random(2, 1)", "interval is empty");
    RUN_ERR(s1, "return math.random(0.5)", "number has no integer representation");
    RUN_ERR(s1, "return math.random(1, 2, 3)", "wrong number of arguments");
    sandbox_free(s1);
    sandbox_free(s2);
    sandbox_free(s3);
}

/* ------------------------------------------------------------ tostring */

static void tostring_has_no_addresses(void) {
    sandbox *sb = new_sb();
    if (!sb) return;
    RUN_OK(sb,
           "local a, b = {}, {}\n"
           "local f = function() end\n"
           "local co = coroutine.create(f)\n"
           "return table.concat({tostring(a), tostring(b), tostring(a), tostring(f), tostring(co),"
           " tostring(false), tostring(nil), tostring(3), tostring(3.0), tostring(1e100),"
           " tostring(-0.0), tostring('s')}, ' ')",
           "table: #1 table: #2 table: #1 function: #3 thread: #4 false nil 3 3.0 1e+100 -0.0 s");
    RUN_OK(sb,
           "local p = setmetatable({}, {__name = 'Point'})\n"
           "local q = setmetatable({}, {__tostring = function() return 'Q!' end})\n"
           "return tostring(p) .. ' ' .. tostring(q) .. ' ' .. tostring(tostring)",
           "Point: #5 Q! function: #6");
    RUN_ERR(sb, "return tostring(setmetatable({}, {__tostring = function() return {} end}))",
            "'__tostring' must return a string");
    RUN_OK(sb,
           "return string.format('%s|%5s|%d|%s|%s', {}, 'ab', 3, nil, "
           "setmetatable({}, {__tostring = function() return 'T' end}))",
           "table: #7|   ab|3|nil|T");
    RUN_ERR(sb, "return string.format('%p', {})",
            "test.lua:1: string.format: '%p' is not available in workflows");
    RUN_ERR(sb, "return string.format('%d %-10p', 1, {})", "'%p' is not available");
    RUN_OK(sb, "return string.format('100%%p %q', 1/3)", "100%p 0x1.5555555555555p-2");
    RUN_ERR(sb, "return ('%d'):format('x')", "test.lua:1: bad argument #2 to ");
    RUN_ERR(sb, "error(setmetatable({}, {__tostring = function() return 'custom' end}))", "(table)");
    sandbox_free(sb);
    /* A new run numbers from 1 again. */
    sb = new_sb();
    if (!sb) return;
    RUN_OK(sb, "return tostring({})", "table: #1");
    sandbox_free(sb);
}

/* ------------------------------------------------ metatables and rawset */

static void trick_gc_via_setmetatable(void) {
    sandbox *sb = new_sb();
    if (!sb) return;
    RUN_ERR(sb, "setmetatable({}, {__gc = function() end})",
            "test.lua:1: setmetatable: __gc is not available in workflows (finalizers run at "
            "nondeterministic times)");
    /* __gc = false still marks the object; a later function would run. */
    RUN_ERR(sb, "local mt = {__gc = false} setmetatable({}, mt) mt.__gc = function() end",
            "__gc is not available");
    RUN_ERR(sb, "setmetatable({}, {__mode = 'k'})", "setmetatable: __mode is not available");
    RUN_OK(sb, "local t = setmetatable({}, {__index = function(_, k) return k .. '!' end}) "
               "return t.x", "x!");
    sandbox_free(sb);
}

static void trick_rawset_mode(void) {
    sandbox *sb = new_sb();
    if (!sb) return;
    RUN_ERR(sb, "local mt = {} setmetatable({}, mt) rawset(mt, '__mode', 'k')",
            "rawset: __mode is not available in workflows");
    RUN_ERR(sb, "rawset({}, '__gc', 1)", "rawset: __gc is not available");
    RUN_OK(sb, "local t = setmetatable({}, {__newindex = error}) rawset(t, 'a', 1) return t.a",
           "1");
    sandbox_free(sb);
}

/* ----------------------------------------------------------------- load */

static void trick_load_binary_chunk(void) {
    sandbox *sb = new_sb();
    if (!sb) return;
    RUN_OK(sb, "local f, e = load(string.char(27) .. 'Lua\\x54\\0') return e",
           "load: binary chunks are not available in workflows (load Lua source text)");
    RUN_ERR(sb, "assert(load('\\27Lua'))", "binary chunks are not available");
    RUN_OK(sb,
           "local parts = {'\\27Lua', nil}\n"
           "local f, e = load(function() return table.remove(parts, 1) end) return e",
           "attempt to load a binary chunk (mode is 't')");
    RUN_OK(sb, "return load('return 1 + 1', 'x', 'b')()", "2"); /* mode is always text */
    RUN_ERR(sb, "return load('return os.time()')()", "'os' is not available in workflows");
    RUN_OK(sb, "return load('return string.rep(\"a\", 2)')()", "aa");
    RUN_OK(sb, "return load('return x', 'c', 't', {x = 5})()", "5");
    RUN_OK(sb, "local f, e = load('return +', '=probe') return e",
           "probe:1: unexpected symbol near '+'");
    RUN_OK(sb, "local n = 0 return load(function() n = n + 1 if n == 1 then return 'return 7' end end)()",
           "7");
    RUN_ERR(sb, "return loadstring('return 1')", "'loadstring' is not available");
    sandbox_free(sb);
}

static void syntax_error_names_file_and_line(void) {
    sandbox *sb = new_sb();
    if (!sb) return;
    jerr err = {0, ""};
    const char *src = "local x = 1\nif x then\n  x = = 2\nend\n";
    CHECK(sandbox_load(sb, "workflows/x.lua", src, strlen(src), &err) != 0);
    CHECK_STREQ(err.msg, "workflows/x.lua:3: unexpected symbol near '='");
    CHECK_INT(err.code, JERR_USAGE);
    const char bin[] = "\x1bLua\x54";
    CHECK(sandbox_load(sb, "workflows/b.lua", bin, sizeof bin - 1, &err) != 0);
    CHECK_CONTAINS(err.msg, "workflows/b.lua: binary chunks are not accepted");
    CHECK_INT(lua_gettop(sandbox_state(sb)), 0);
    src = "return 1";
    CHECK(sandbox_load(sb, "workflows/ok.lua", src, strlen(src), &err) == 0);
    CHECK_INT(lua_type(sandbox_state(sb), -1), LUA_TFUNCTION);
    lua_settop(sandbox_state(sb), 0);
    RUN_ERR(sb, "local a = 1\nerror('boom')", "test.lua:2: boom");
    sandbox_free(sb);
}

/* Chunks are compiled once per version and every run loads the bytecode
 * (sandbox.c, "compiled chunks"), so the first load in a process (a miss)
 * leaves the run's heap exactly as the next ones (hits) do: addresses, and
 * so the hashing of object keys, depend only on the run's own history. */
static void compiled_chunks_leave_the_same_heap(void) {
    static const char *src = /* text no other test loads */
        "-- compiled_chunks_leave_the_same_heap\n"
        "local t = {}\n"
        "for i = 1, 50 do t[{}] = i end\n"
        "local function f(a, b) return a .. b end\n"
        "return function() local n = 0 for _ in pairs({a = 1, b = 2}) do n = n + 1 end\n"
        "  return f('x', 'y') .. n end\n";
    size_t used[3] = {0};
    for (int round = 0; round < 3; round++) {
        sandbox *sb = new_sb();
        if (!sb) return;
        size_t before = sandbox_memory_used(sb);
        jerr err = {0, ""};
        CHECK(sandbox_load(sb, "workflows/same.lua", src, strlen(src), &err) == 0);
        used[round] = sandbox_memory_used(sb) - before;
        lua_State *L = sandbox_state(sb);
        CHECK_INT(lua_pcall(L, 0, 1, 0), LUA_OK);
        CHECK_INT(lua_pcall(L, 0, 1, 0), LUA_OK);
        CHECK_STREQ(lua_tostring(L, -1), "xy2");
        sandbox_free(sb);
    }
    CHECK(used[0] > 0);
    CHECK_INT(used[1], used[0]);
    CHECK_INT(used[2], used[0]);
    /* the same text under another name is another chunk: errors name it */
    sandbox *sb = new_sb();
    if (!sb) return;
    const char *bad = "local x = 1\nerror('boom')\n";
    jerr err = {0, ""};
    CHECK(sandbox_load(sb, "workflows/one.lua", bad, strlen(bad), &err) == 0);
    CHECK(lua_pcall(sandbox_state(sb), 0, 0, 0) != LUA_OK);
    CHECK_CONTAINS(lua_tostring(sandbox_state(sb), -1), "workflows/one.lua:2: boom");
    lua_settop(sandbox_state(sb), 0);
    CHECK(sandbox_load(sb, "workflows/two.lua", bad, strlen(bad), &err) == 0);
    CHECK(lua_pcall(sandbox_state(sb), 0, 0, 0) != LUA_OK);
    CHECK_CONTAINS(lua_tostring(sandbox_state(sb), -1), "workflows/two.lua:2: boom");
    lua_settop(sandbox_state(sb), 0);
    sandbox_free(sb);
}

/* -------------------------------------------------------------- require */

struct finder_log {
    int calls;
};

static int test_finder(void *ud, const char *name, char **src, size_t *len, char **chunkname,
                       jerr *err) {
    struct finder_log *log = ud;
    log->calls++;
    if (strcmp(name, "found.mod") == 0) {
        *src = jstrdup("return {name = ..., file = select(2, ...)}");
        *chunkname = jstrdup("workflows/found/mod.lua");
        if (!*src || !*chunkname) return jerr_oom(err, "test");
        *len = strlen(*src);
        return 0;
    }
    if (strcmp(name, "broken") == 0) return jerr_set(err, JERR_INTERNAL, "disk on fire");
    return 1;
}

static void collect_required(void *ud, const char *name, const char *chunkname, const char *src,
                             size_t len) {
    char *out = ud;
    size_t used = strlen(out);
    snprintf(out + used, 512 - used, "%s@%s(%zu) ", name, chunkname, len);
    (void)src;
}

static void require_preloaded_and_missing_modules(void) {
    struct finder_log log = {0};
    jerr err = {0, ""};
    sandbox *sb = sandbox_new(NULL, 1, test_finder, &log, &err);
    CHECK(sb != NULL);
    if (!sb) return;
    const char *util = "local M = {} function M.twice(x) return 2 * x end\n"
                       "M.upper = string.upper('a') return M";
    CHECK(sandbox_preload(sb, "lib.util", "workflows/lib/util.lua", util, strlen(util), &err) == 0);
    const char *quiet = "x_from_quiet = 1";
    CHECK(sandbox_preload(sb, "quiet", "workflows/quiet.lua", quiet, strlen(quiet), &err) == 0);
    const char *bad = "return {";
    CHECK(sandbox_preload(sb, "bad", "workflows/bad.lua", bad, strlen(bad), &err) == 0);
    const char *cyc_a = "return require('cyc.b')";
    const char *cyc_b = "return require('cyc.a')";
    CHECK(sandbox_preload(sb, "cyc.a", "workflows/cyc/a.lua", cyc_a, strlen(cyc_a), &err) == 0);
    CHECK(sandbox_preload(sb, "cyc.b", "workflows/cyc/b.lua", cyc_b, strlen(cyc_b), &err) == 0);
    CHECK(sandbox_preload(sb, "../up", "x", "", 0, &err) != 0);

    RUN_OK(sb, "local u = require('lib.util') return u.twice(21) .. u.upper", "42A");
    RUN_OK(sb, "return require('lib.util') == require('lib.util')", "true");
    RUN_OK(sb, "return tostring(require('quiet')) .. ' ' .. x_from_quiet", "true 1");
    RUN_OK(sb, "local m = require('found.mod') return m.name .. ' ' .. m.file",
           "found.mod workflows/found/mod.lua");
    RUN_OK(sb, "require('found.mod') return 1", "1");
    CHECK_INT(log.calls, 1); /* cached after the first load */
    RUN_ERR(sb, "require('nope')",
            "test.lua:1: module 'nope' not found (workflow modules are looked up in the "
            "workflows directory and lua/jorch)");
    RUN_ERR(sb, "require('broken')", "require 'broken': disk on fire");
    RUN_ERR(sb, "require('bad')", "workflows/bad.lua:1: ");
    RUN_ERR(sb, "require('cyc.a')", "require cycle");
    RUN_ERR(sb, "require('os')", "module 'os' not found");
    RUN_ERR(sb, "require('../secret')", "not a valid workflow module name");
    RUN_ERR(sb, "require('a/b')", "not a valid workflow module name");
    RUN_ERR(sb, "require('.hidden')", "not a valid workflow module name");
    RUN_ERR(sb, "require('a\\0b')", "not a valid workflow module name");

    char seen[512] = "", want[512];
    sandbox_each_required(sb, collect_required, seen);
    snprintf(want, sizeof want,
             "lib.util@workflows/lib/util.lua(%zu) quiet@workflows/quiet.lua(%zu) "
             "found.mod@workflows/found/mod.lua(%zu) ",
             strlen(util), strlen(quiet), strlen("return {name = ..., file = select(2, ...)}"));
    CHECK_STREQ(seen, want);
    sandbox_free(sb);
}

/* --------------------------------------------------------------- limits */

static void trick_infinite_loop(void) {
    sandbox *sb = new_sb_limits((size_t)64 << 20, 1000000, 30.0, 1);
    if (!sb) return;
    jerr err = {0, ""};
    RUN_ERR(sb, "local x = 0\nwhile true do x = x + 1 end",
            "test.lua:2: instruction budget exceeded (possible infinite loop)");
    CHECK(sandbox_tripped(sb, &err));
    CHECK_STREQ(err.msg, "test.lua:2: instruction budget exceeded (possible infinite loop)");
    CHECK_INT(err.code, JERR_FAILED);
    /* Still tripped: any further script code fails at once. */
    RUN_ERR(sb, "return 1 + 1", "instruction budget exceeded");
    sandbox_begin_activation(sb);
    CHECK(!sandbox_tripped(sb, &err));
    RUN_OK(sb, "local s = 0 for i = 1, 10000 do s = s + i end return s", "50005000");
    sandbox_free(sb);
}

static void trick_pcall_swallows_the_budget(void) {
    sandbox *sb = new_sb_limits((size_t)64 << 20, 1000000, 30.0, 1);
    if (!sb) return;
    jerr err = {0, ""};
    RUN_ERR(sb, "while true do pcall(function() while true do end end) end",
            "instruction budget exceeded");
    CHECK(sandbox_tripped(sb, &err));
    sandbox_begin_activation(sb);
    RUN_ERR(sb, "for i = 1, 3 do pcall(function() while true do end end) end return 'escaped'",
            "instruction budget exceeded");
    sandbox_begin_activation(sb);
    RUN_ERR(sb,
            "local ok, e = xpcall(function() while true do end end, function(m) return m end)\n"
            "return 'escaped: ' .. tostring(e)",
            "instruction budget exceeded");
    sandbox_begin_activation(sb);
    RUN_ERR(sb,
            "local function f() local ok = pcall(f) while true do end end\n"
            "pcall(f) return 'escaped'",
            "instruction budget exceeded");
    sandbox_free(sb);
}

static void trick_coroutine_wrap_swallows_the_budget(void) {
    sandbox *sb = new_sb_limits((size_t)64 << 20, 1000000, 30.0, 1);
    if (!sb) return;
    jerr err = {0, ""};
    RUN_ERR(sb, "while true do pcall(coroutine.wrap(function() while true do end end)) end",
            "instruction budget exceeded");
    CHECK(sandbox_tripped(sb, &err));
    sandbox_begin_activation(sb);
    RUN_ERR(sb,
            "local co = coroutine.create(function() while true do end end)\n"
            "local ok, e = coroutine.resume(co)\n"
            "local n = 0 while true do n = n + 1 end",
            "instruction budget exceeded");
    sandbox_begin_activation(sb);
    /* A coroutine created before the trip and resumed after it. */
    RUN_ERR(sb,
            "local spare = coroutine.wrap(function() while true do coroutine.yield(1) end end)\n"
            "pcall(function() while true do end end)\n"
            "local n = 0 for i = 1, 100 do n = n + (select(2, pcall(spare)) or 0) end\n"
            "return 'escaped'",
            "instruction budget exceeded");
    sandbox_begin_activation(sb);
    RUN_OK(sb, "local co = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)"
               " return co() + co() + co()", "6");
    sandbox_free(sb);
}

static void trick_wall_clock(void) {
    sandbox *sb = new_sb_limits((size_t)64 << 20, 0, 0.2, 1);
    if (!sb) return;
    jerr err = {0, ""};
    RUN_ERR(sb, "while true do end", "test.lua:1: wall-clock limit of 0.2 s exceeded");
    CHECK(sandbox_tripped(sb, &err));
    CHECK_CONTAINS(err.msg, "wall-clock limit of 0.2 s exceeded");
    sandbox_free(sb);
}

static void trick_memory_bomb(void) {
    size_t limit = (size_t)8 << 20;
    sandbox *sb = new_sb_limits(limit, 200000000, 30.0, 1);
    if (!sb) return;
    jerr err = {0, ""};
    RUN_ERR(sb, "local s = 'x' while true do s = s .. s end", "not enough memory");
    CHECK(sandbox_tripped(sb, &err));
    CHECK_STREQ(err.msg, "memory limit of 8 MiB exceeded");
    CHECK(sandbox_memory_used(sb) <= limit);
    /* The worker goes on: another run is unaffected... */
    sandbox *other = new_sb();
    if (other) {
        RUN_OK(other, "return ('x'):rep(100):len()", "100");
        sandbox_free(other);
    }
    /* ...and this run works again in its next activation. */
    sandbox_begin_activation(sb);
    RUN_OK(sb, "return 1 + 1", "2");
    RUN_ERR(sb, "local t = {} for i = 1, 1e9 do t[i] = i end", "not enough memory");
    CHECK(sandbox_tripped(sb, &err));
    CHECK(sandbox_memory_used(sb) <= limit);
    sandbox_begin_activation(sb);
    RUN_ERR(sb, "local t = {} for i = 1, 1e9 do t['k' .. i] = {} end", "not enough memory");
    sandbox_free(sb);
}

static void trick_pcall_swallows_the_memory_limit(void) {
    sandbox *sb = new_sb_limits((size_t)8 << 20, 200000000, 30.0, 1);
    if (!sb) return;
    jerr err = {0, ""};
    RUN_ERR(sb,
            "local ok, e = pcall(string.rep, 'x', 1 << 30)\n"
            "assert(not ok)\n"
            "local n = 0 for i = 1, 1e6 do n = n + i end\n"
            "return 'escaped: ' .. tostring(e)",
            "");
    CHECK(sandbox_tripped(sb, &err));
    CHECK_STREQ(err.msg, "memory limit of 8 MiB exceeded");
    sandbox_free(sb);
}

static void trick_deep_recursion(void) {
    sandbox *sb = new_sb();
    if (!sb) return;
    jerr err = {0, ""};
    /* Lua's stack limit or the memory limit, whichever comes first. */
    RUN_ERR(sb, "local function f() return 1 + f() end return f()", "");
    if (sandbox_tripped(sb, &err)) CHECK_STREQ(err.msg, "memory limit of 64 MiB exceeded");
    sandbox_begin_activation(sb);
    RUN_ERR(sb, "local t = setmetatable({}, {}) getmetatable(t).__index = t return t.x",
            "'__index' chain too long");
    RUN_OK(sb, "return 1", "1");
    sandbox_free(sb);
}

static void trick_poison_another_run(void) {
    sandbox *a = new_sb(), *b = new_sb();
    if (!a || !b) return;
    RUN_OK(a, "string.upper = function() return 'pwned' end shared = 1 "
              "return ('x'):upper()", "pwned");
    RUN_OK(b, "return ('x'):upper() .. tostring(shared)", "Xnil");
    RUN_ERR(a, "getmetatable('').__index = nil", "attempt to index a string value");
    sandbox_free(a);
    sandbox_free(b);
}

/* ------------------------------------------ C loops, error values */

static void trick_library_loops_are_bounded(void) {
    static const char *const hangs[] = {
        "table.move({}, 1, 1 << 50, 1, {})",
        "return table.concat(setmetatable({}, {__index = table.concat}), '', 1, 1 << 50)",
        "table.insert(setmetatable({}, {__len = function() return 1 << 50 end}), 1, 'x')",
        "table.remove(setmetatable({}, {__len = function() return 1 << 50 end}), 1)",
        "return ('a'):rep(30000):find('.-.-.-.-b')",
        "return ('a'):rep(30000):match('(a*)*b')",
        "return (('a'):rep(30000):gsub('.-.-.-.-b', ''))",
        "for x in ('a'):rep(30000):gmatch('.-.-.-.-b') do end",
        "return ('('):rep(1e6):find('%b()')",
    };
    sandbox *sb = new_sb_limits((size_t)64 << 20, 2000000, 30.0, 1);
    if (!sb) return;
    jerr err = {0, ""};
    for (size_t i = 0; i < sizeof hangs / sizeof hangs[0]; i++) {
        sandbox_begin_activation(sb);
        RUN_ERR(sb, hangs[i], "test.lua:1: instruction budget exceeded (possible infinite loop)");
        CHECK_MSG(sandbox_tripped(sb, &err), "not tripped: %s", hangs[i]);
    }
    sandbox_begin_activation(sb);
    /* The sticky trip also holds for the library functions. */
    RUN_ERR(sb, "pcall(table.move, {}, 1, 1 << 50, 1, {}) return table.concat({'a', 'b'})",
            "instruction budget exceeded");
    sandbox_begin_activation(sb);
    /* Lua's own string.rep loops n times even for an empty result. */
    RUN_OK(sb, "return #string.rep('', math.maxinteger) .. #('x'):rep(0) .. ('ab'):rep(2, ',')",
           "00ab,ab");
    sandbox_free(sb);

    /* Without a budget, the wall clock stops them. */
    sb = new_sb_limits((size_t)64 << 20, 0, 0.3, 1);
    if (!sb) return;
    RUN_ERR(sb, "table.move({}, 1, 1 << 50, 1, {})", "test.lua:1: wall-clock limit of 0.3 s exceeded");
    sandbox_begin_activation(sb);
    RUN_ERR(sb, "local s = ('a'):rep(30000)\nreturn s:find('.-.-.-.-.-b')",
            "test.lua:2: wall-clock limit of 0.3 s exceeded");
    sandbox_free(sb);
}

static char *read_source(const char *rel, size_t *len) {
    const char *dir = getenv("JORCH_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : ".", rel);
    char *buf = NULL;
    jerr err = {0, ""};
    if (file_read_all(path, 1u << 20, &buf, len, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    return buf;
}

/* The sandbox's own string.find/match/gmatch/gsub, table.move/concat/
 * unpack/insert/remove and string.rep against Lua's: the probe scripts
 * return a transcript of many calls (results, errors, metamethod calls),
 * which must be the same text in a plain Lua state and in a sandbox. */
static void library_functions_agree_with_lua(void) {
    static const char *const probes[] = {"tests/sandbox/library/patterns.lua",
                                         "tests/sandbox/library/tables.lua"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        size_t len = 0;
        char *src = read_source(probes[i], &len);
        CHECK(src != NULL);
        if (!src) continue;
        lua_State *plain = luaL_newstate();
        luaL_openlibs(plain);
        int st = luaL_loadbufferx(plain, src, len, "=probe", "t");
        if (st == LUA_OK) st = lua_pcall(plain, 0, 1, 0);
        CHECK_MSG(st == LUA_OK, "plain Lua: %s", lua_tostring(plain, -1));
        sandbox *sb = new_sb();
        jerr err = {0, ""};
        CHECK(sb != NULL && sandbox_load(sb, "probe", src, len, &err) == 0);
        if (sb && st == LUA_OK) {
            lua_State *L = sandbox_state(sb);
            int sst = lua_pcall(L, 0, 1, 0);
            CHECK_MSG(sst == LUA_OK, "sandbox: %s", lua_tostring(L, -1));
            size_t a = 0, b = 0;
            const char *want = lua_tolstring(plain, -1, &a);
            const char *got = lua_tolstring(L, -1, &b);
            CHECK_MSG(want && got && a == b && memcmp(want, got, a) == 0,
                      "%s: the sandbox's transcript differs from Lua's", probes[i]);
            if (want && got && (a != b || memcmp(want, got, a) != 0)) {
                size_t k = 0;
                while (k < a && k < b && want[k] == got[k]) k++;
                size_t from = k > 200 ? k - 200 : 0;
                fprintf(stderr, "  first difference at byte %zu:\n  lua:     %.300s\n  sandbox: %.300s\n",
                        k, want + from, got + from);
            }
        }
        if (sb) sandbox_free(sb);
        lua_close(plain);
        free(src);
    }
}

/* Error objects whose __tostring fails (or never ends) still give the host
 * text, outside any protected call, and leave the state usable. */
static void error_values_become_text_safely(void) {
    sandbox *sb = new_sb_limits((size_t)64 << 20, 1000000, 30.0, 1);
    if (!sb) return;
    lua_State *L = sandbox_state(sb);
    char text[256];
    bool ok;
    static const struct {
        const char *src;
        const char *want;
    } cases[] = {
        {"return 'plain'", "plain"},
        {"return 42", "42"},
        {"return 2.5", "2.5"},
        {"return nil", "nil"},
        {"return setmetatable({}, {__tostring = function() return 'custom' end})", "custom"},
        {"return setmetatable({}, {__tostring = function() error('inner') end})",
         "(error object of type table; its __tostring failed: test.lua:1: inner)"},
        {"local e = setmetatable({}, {__tostring = function() error({}) end})\n"
         "return setmetatable({}, {__tostring = function() error(e) end})",
         "(error object of type table; its __tostring failed with another error object)"},
        {"return setmetatable({}, {__tostring = function() while true do end end})",
         "(error object of type table; converting it to text failed: test.lua:1: instruction "
         "budget exceeded"},
        {"return setmetatable({}, {__tostring = function() return {} end})",
         "(error object of type table; its __tostring failed: '__tostring' must return a string)"},
        {"return function() end", "function: #"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sandbox_begin_activation(sb);
        jerr err = {0, ""};
        CHECK(sandbox_load(sb, "test.lua", cases[i].src, strlen(cases[i].src), &err) == 0);
        ok = lua_pcall(L, 0, 1, 0) == LUA_OK;
        CHECK(ok);
        int top = lua_gettop(L);
        sandbox_error_text(L, -1, text, sizeof text);
        CHECK_CONTAINS(text, cases[i].want);
        CHECK_INT(lua_gettop(L), top);
        lua_settop(L, 0);
    }
    sandbox_begin_activation(sb);
    RUN_OK(sb, "return 1 + 1", "2");
    sandbox_free(sb);
}

/* `#t` of a table with holes keyed by tables, functions and coroutines
 * depends on where Lua hashes those keys, i.e. on their addresses. Each
 * run's heap makes those the same whatever its base address: three runs
 * alive at once (so at three different places) agree. With malloc they
 * did not (tests/sandbox/determinism/table_keys_length.lua checks the same
 * across processes). */
static void object_keys_length_is_the_same_in_every_heap(void) {
    static const char churn[] =
        "local seed = 7\n"
        "local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648 "
        "return (seed >> 8) % n + 1 end\n"
        "local cf = {string.len, math.abs, next, (ipairs({}))}\n"
        "local h = 0\n"
        "for range = 8, 64, 8 do for trial = 1, 4 do\n"
        "  local t, keys = {}, {}\n"
        "  for step = 1, 200 do\n"
        "    local op = rnd(6)\n"
        "    if op <= 2 then\n"
        "      local k = step % 4 == 0 and {} or step % 4 == 1 and function() return step end\n"
        "        or step % 4 == 2 and coroutine.create(function() end) or cf[step % #cf + 1]\n"
        "      keys[#keys + 1] = k t[k] = true\n"
        "    elseif op == 3 and #keys > 0 then t[keys[rnd(#keys)]] = nil\n"
        "    elseif op == 4 then t[rnd(range)] = true\n"
        "    elseif op == 5 then t[rnd(range)] = nil\n"
        "    else h = (h * 31 + #t) % 1000000007 end\n"
        "  end\n"
        "end end\n"
        "return h";
    sandbox *sbs[3];
    char results[3][64];
    for (int i = 0; i < 3; i++) sbs[i] = new_sb(); /* alive together: three heaps */
    for (int i = 0; i < 3; i++) {
        bool ok = false;
        CHECK(sbs[i] != NULL);
        if (!sbs[i]) return;
        snprintf(results[i], sizeof results[i], "%s", run(sbs[i], churn, &ok));
        CHECK_MSG(ok, "script failed: %s", results[i]);
    }
    CHECK_STREQ(results[1], results[0]);
    CHECK_STREQ(results[2], results[0]);
    for (int i = 0; i < 3; i++) sandbox_free(sbs[i]);
}

TEST_MAIN(TEST_CASE(trick_forbidden_globals), TEST_CASE(compiled_chunks_leave_the_same_heap), TEST_CASE(trick_getmetatable_string_index_dump),
          TEST_CASE(trick_env_metatable_removal), TEST_CASE(reachable_from_G_is_the_allow_list),
          TEST_CASE(pairs_order_is_canonical), TEST_CASE(pairs_order_matches_child_processes),
          TEST_CASE(sort_is_stable_and_deterministic), TEST_CASE(math_random_is_seeded_by_the_run),
          TEST_CASE(tostring_has_no_addresses), TEST_CASE(trick_gc_via_setmetatable),
          TEST_CASE(trick_rawset_mode), TEST_CASE(trick_load_binary_chunk),
          TEST_CASE(syntax_error_names_file_and_line),
          TEST_CASE(require_preloaded_and_missing_modules), TEST_CASE(trick_infinite_loop),
          TEST_CASE(trick_pcall_swallows_the_budget),
          TEST_CASE(trick_coroutine_wrap_swallows_the_budget), TEST_CASE(trick_wall_clock),
          TEST_CASE(trick_memory_bomb), TEST_CASE(trick_pcall_swallows_the_memory_limit),
          TEST_CASE(trick_deep_recursion), TEST_CASE(trick_poison_another_run),
          TEST_CASE(trick_library_loops_are_bounded), TEST_CASE(library_functions_agree_with_lua),
          TEST_CASE(error_values_become_text_safely),
          TEST_CASE(object_keys_length_is_the_same_in_every_heap))
