/*
 * fuzz_pattern - differential fuzzing of the sandbox's own pattern matcher
 * (runtime/engine/sandbox_pattern.c) against the stock Lua 5.4 string
 * library. Scripts are outside input, and their patterns must behave in the
 * sandbox exactly as the Lua manual says: the same results, the same
 * captures, the same errors. Any difference aborts with both transcripts.
 *
 * Input: subject NUL pattern NUL replacement (missing parts are empty).
 * Sizes and quantifiers are capped so that stock Lua's backtracking, which
 * no limit interrupts, stays fast; the sandbox's step charging is what the
 * other tests cover.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "engine/sandbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The same chunk runs in both states; its transcript is the result. */
static const char probe[] =
    "local s, p, r = ...\n"
    "local out = {}\n"
    "local function add(ok, ...)\n"
    "  out[#out + 1] = tostring(ok)\n"
    "  for i = 1, select('#', ...) do\n"
    "    local v = select(i, ...)\n"
    "    out[#out + 1] = type(v) .. ':' .. tostring(v)\n"
    "  end\n"
    "end\n"
    "add(pcall(string.find, s, p))\n"
    "add(pcall(string.find, s, p, 2))\n"
    "add(pcall(string.find, s, p, -3, false))\n"
    "add(pcall(string.match, s, p))\n"
    "add(pcall(string.gsub, s, p, r))\n"
    "add(pcall(string.gsub, s, p, r, 2))\n"
    "add(pcall(string.gsub, s, p, function(a) return a end))\n"
    "local ok, it = pcall(string.gmatch, s, p)\n"
    "if ok then\n"
    "  add(pcall(function()\n"
    "    local n = 0\n"
    "    for a, b in it do\n"
    "      n = n + 1\n"
    "      out[#out + 1] = tostring(a) .. ',' .. tostring(b)\n"
    "      if n > 64 then break end\n"
    "    end\n"
    "    return n\n"
    "  end))\n"
    "else add(ok, it) end\n"
    "return table.concat(out, '|')\n";

/* Runs the probe with (s, p, r) on the stack of L; returns the transcript
 * (malloc'ed) or NULL when the probe itself failed (ok_out false). */
static char *transcript(lua_State *L, int loaded, const char *s, size_t ls, const char *p, size_t lp,
                        const char *r, size_t lr) {
    if (!loaded) return NULL;
    lua_pushlstring(L, s, ls);
    lua_pushlstring(L, p, lp);
    lua_pushlstring(L, r, lr);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) return NULL;
    size_t n = 0;
    const char *t = lua_tolstring(L, -1, &n);
    if (!t) return NULL;
    char *copy = malloc(n + 1);
    if (!copy) return NULL;
    memcpy(copy, t, n);
    copy[n] = '\0';
    return copy;
}

static size_t quantifiers(const char *p, size_t lp) {
    size_t q = 0;
    for (size_t i = 0; i < lp; i++)
        if (p[i] == '*' || p[i] == '+' || p[i] == '-' || p[i] == '?') q++;
    return q;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *parts[3] = {"", "", ""};
    size_t lens[3] = {0, 0, 0};
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= size && k < 3; i++) {
        if (i == size || data[i] == '\0') {
            parts[k] = (const char *)data + start;
            lens[k] = i - start;
            k++;
            start = i + 1;
        }
    }
    /* keep stock Lua's unbounded backtracking small */
    if (lens[0] > 24 || lens[1] > 16 || lens[2] > 16 || quantifiers(parts[1], lens[1]) > 3) return 0;

    lua_State *plain = luaL_newstate();
    if (!plain) return 0;
    luaL_openlibs(plain);
    int plain_loaded = luaL_loadbufferx(plain, probe, sizeof probe - 1, "=probe", "t") == LUA_OK;

    engine_limits lim = engine_limits_default();
    lim.instruction_budget = UINT64_C(1) << 40; /* the caps above bound the work */
    lim.wall_clock_limit = 60;
    jerr err = {0, ""};
    sandbox *sb = sandbox_new(&lim, 1, NULL, NULL, &err);
    if (!sb) {
        lua_close(plain);
        return 0;
    }
    int sb_loaded = sandbox_load(sb, "probe", probe, sizeof probe - 1, &err) == 0;

    char *want = transcript(plain, plain_loaded, parts[0], lens[0], parts[1], lens[1], parts[2], lens[2]);
    char *got = transcript(sandbox_state(sb), sb_loaded, parts[0], lens[0], parts[1], lens[1], parts[2],
                           lens[2]);
    if (want && got && strcmp(want, got) != 0) {
        fprintf(stderr, "pattern matcher differs from Lua's\n  lua:     %s\n  sandbox: %s\n", want, got);
        abort();
    }
    if ((want == NULL) != (got == NULL)) {
        fprintf(stderr, "the probe failed in only one state (lua %s, sandbox %s)\n", want ? "ok" : "failed",
                got ? "ok" : "failed");
        abort();
    }
    free(want);
    free(got);
    sandbox_free(sb);
    lua_close(plain);
    return 0;
}
