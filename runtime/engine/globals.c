/*
 * globals.c - the free names of a workflow script, for `jorch check`.
 *
 * A script that reads `os` inside its workflow function loads fine and
 * fails only when that line runs, perhaps after hours of activities. The
 * Lua compiler already knows which names are locals, upvalues or fields;
 * what is left are reads and writes of _ENV, which it compiles to
 * GETTABUP/SETTABUP on the _ENV upvalue with the name as a constant. So the
 * script is compiled (never run) in a scratch state, dumped with
 * lua_dump, and the dump is read back: no second Lua parser to keep in
 * step with the language.
 *
 * The binary chunk format and opcode numbers are those of Lua 5.4 (lundump.c
 * / lopcodes.h). The header pins the version, and a probe chunk with known
 * answers is scanned before the first real one: if the Lua we run on
 * encodes anything differently, the scan reports nothing rather than
 * something wrong (a missed warning is harmless, a false one is not).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine/globals.h"

/* Lua 5.4 opcodes (lopcodes.h; unchanged from 5.4.0 to 5.4.7). */
enum {
    OP54_LOADK = 3,
    OP54_GETUPVAL = 9,
    OP54_GETTABUP = 11,
    OP54_GETFIELD = 14,
    OP54_SETTABUP = 15,
    OP54_SETFIELD = 18,
};
#define ABSLINEINFO (-0x80)
#define MAX_DEPTH 200 /* nested functions; the compiler allows fewer */

typedef struct reader {
    const unsigned char *p, *end;
    bool bad;
} reader;

static int rd_byte(reader *r) {
    if (r->bad || r->p >= r->end) {
        r->bad = true;
        return 0;
    }
    return *r->p++;
}

/* lundump's loadSize: 7-bit groups, most significant first, the last byte
 * marked with 0x80. */
static size_t rd_size(reader *r) {
    size_t x = 0;
    for (int i = 0; i < 10; i++) {
        int b = rd_byte(r);
        if (r->bad) return 0;
        if (x > (SIZE_MAX >> 7)) break;
        x = (x << 7) | (size_t)(b & 0x7f);
        if (b & 0x80) return x;
    }
    r->bad = true;
    return 0;
}

static const unsigned char *rd_bytes(reader *r, size_t n) {
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *s = r->p;
    r->p += n;
    return s;
}

/* A dumped string: size+1 (0 for none), then the bytes. */
static const char *rd_string(reader *r, size_t *len) {
    size_t n = rd_size(r);
    *len = 0;
    if (r->bad || n == 0) return NULL;
    const unsigned char *s = rd_bytes(r, n - 1);
    if (!s) return NULL;
    *len = n - 1;
    return (const char *)s;
}

typedef struct konst {
    const char *s; /* NULL unless a string */
    size_t len;
} konst;

typedef struct scan {
    engine_globals_fn fn;
    void *ud;
    int uses;
} scan;

static void emit(scan *sc, int kind, const char *name, size_t nlen, const char *lib, size_t llen, int line) {
    char n[ENGINE_GLOBAL_NAME_MAX], l[ENGINE_GLOBAL_NAME_MAX];
    if (nlen >= sizeof n || llen >= sizeof l) return; /* not a plausible name */
    memcpy(n, name, nlen);
    n[nlen] = '\0';
    memcpy(l, lib ? lib : "", llen);
    l[llen] = '\0';
    sc->uses++;
    sc->fn(sc->ud, kind, n, lib ? l : NULL, line);
}

/* Line of instruction pc (ldebug.c's rule: from the last absolute line at
 * or before pc, add the per-instruction deltas). */
static int line_of(const signed char *li, size_t nli, const size_t *abs_pc, const int *abs_line, size_t nabs,
                   int linedefined, size_t pc) {
    size_t base_pc = 0;
    long line = linedefined;
    bool from_start = true;
    for (size_t i = 0; i < nabs; i++) {
        if (abs_pc[i] > pc) break;
        base_pc = abs_pc[i];
        line = abs_line[i];
        from_start = false;
    }
    size_t k = from_start ? 0 : base_pc + 1;
    for (; k <= pc && k < nli; k++)
        if (li[k] != ABSLINEINFO) line += li[k];
    return (int)line;
}

/* One function of the dump and, recursively, its nested functions. env[i]
 * tells whether upvalue i of this function is the chunk's _ENV. */
static void rd_function(reader *r, scan *sc, const bool *parent_env, size_t n_parent_env, bool is_main,
                        int depth) {
    if (depth > MAX_DEPTH) {
        r->bad = true;
        return;
    }
    size_t slen;
    rd_string(r, &slen); /* source */
    int linedefined = (int)rd_size(r);
    rd_size(r); /* lastlinedefined */
    rd_byte(r); /* numparams */
    rd_byte(r); /* is_vararg */
    rd_byte(r); /* maxstacksize */
    size_t ncode = rd_size(r);
    if (r->bad || ncode > (size_t)(r->end - r->p) / 4) {
        r->bad = true;
        return;
    }
    const unsigned char *code = rd_bytes(r, ncode * 4);

    size_t nk = rd_size(r);
    if (r->bad || nk > (size_t)(r->end - r->p)) {
        r->bad = true;
        return;
    }
    konst *k = calloc(nk ? nk : 1, sizeof *k);
    bool *env = NULL;
    size_t *abs_pc = NULL;
    int *abs_line = NULL;
    if (!k) {
        r->bad = true;
        return;
    }
    for (size_t i = 0; i < nk && !r->bad; i++) {
        int tt = rd_byte(r);
        switch (tt) {
        case 0x00: case 0x01: case 0x11: break;      /* nil, false, true */
        case 0x03: case 0x13: rd_bytes(r, 8); break; /* integer, float (sizes checked in the header) */
        case 0x04: case 0x14: k[i].s = rd_string(r, &k[i].len); break;
        default: r->bad = true;
        }
    }

    size_t nup = rd_size(r);
    if (r->bad || nup > 256) {
        r->bad = true;
        goto out;
    }
    env = calloc(nup ? nup : 1, sizeof *env);
    if (!env) {
        r->bad = true;
        goto out;
    }
    for (size_t i = 0; i < nup && !r->bad; i++) {
        int instack = rd_byte(r), idx = rd_byte(r);
        rd_byte(r); /* kind */
        /* main: its one upvalue is _ENV; nested: _ENV when it is the
         * enclosing function's _ENV upvalue (instack 0), not a local the
         * script called _ENV (instack 1) */
        env[i] = is_main ? (i == 0) : (!instack && (size_t)idx < n_parent_env && parent_env[idx]);
    }

    size_t np = rd_size(r);
    if (r->bad || np > (size_t)(r->end - r->p)) {
        r->bad = true;
        goto out;
    }
    for (size_t i = 0; i < np && !r->bad; i++) rd_function(r, sc, env, nup, false, depth + 1);

    /* debug information */
    size_t nli = rd_size(r);
    const signed char *li = (const signed char *)rd_bytes(r, nli);
    size_t nabs = rd_size(r);
    if (r->bad || nabs > (size_t)(r->end - r->p)) {
        r->bad = true;
        goto out;
    }
    abs_pc = calloc(nabs ? nabs : 1, sizeof *abs_pc);
    abs_line = calloc(nabs ? nabs : 1, sizeof *abs_line);
    if (!abs_pc || !abs_line) {
        r->bad = true;
        goto out;
    }
    for (size_t i = 0; i < nabs && !r->bad; i++) {
        abs_pc[i] = rd_size(r);
        abs_line[i] = (int)rd_size(r);
    }
    size_t nloc = rd_size(r);
    for (size_t i = 0; i < nloc && !r->bad; i++) {
        rd_string(r, &slen);
        rd_size(r);
        rd_size(r);
    }
    size_t nupn = rd_size(r);
    for (size_t i = 0; i < nupn && !r->bad; i++) rd_string(r, &slen);
    if (r->bad || nli != ncode) { /* a stripped dump has no lines: useless here */
        r->bad = true;
        goto out;
    }

    for (size_t pc = 0; pc < ncode; pc++) {
        const unsigned char *c = code + pc * 4;
        uint32_t ins = (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 | (uint32_t)c[3] << 24;
        unsigned op = ins & 0x7f, a = (ins >> 7) & 0xff, b = (ins >> 16) & 0xff, cc = (ins >> 24) & 0xff;
        int line = 0;
        switch (op) {
        case OP54_GETTABUP:
            if (b < nup && env[b] && cc < nk && k[cc].s) {
                line = line_of(li, nli, abs_pc, abs_line, nabs, linedefined, pc);
                /* `string.dump`: the library read, then its field at once */
                if (pc + 1 < ncode) {
                    const unsigned char *n = code + (pc + 1) * 4;
                    uint32_t nx = (uint32_t)n[0] | (uint32_t)n[1] << 8 | (uint32_t)n[2] << 16 | (uint32_t)n[3] << 24;
                    unsigned nb = (nx >> 16) & 0xff, nc = (nx >> 24) & 0xff;
                    if ((nx & 0x7f) == OP54_GETFIELD && nb == a && nc < nk && k[nc].s)
                        emit(sc, ENGINE_GLOBAL_LIB_FIELD, k[nc].s, k[nc].len, k[cc].s, k[cc].len, line);
                }
                emit(sc, ENGINE_GLOBAL_READ, k[cc].s, k[cc].len, NULL, 0, line);
            }
            break;
        case OP54_SETTABUP:
            if (a < nup && env[a] && b < nk && k[b].s)
                emit(sc, ENGINE_GLOBAL_WRITE, k[b].s, k[b].len, NULL, 0,
                     line_of(li, nli, abs_pc, abs_line, nabs, linedefined, pc));
            break;
        case OP54_SETFIELD:
            /* t.name = v may be _G.name = v: a global defined out of sight */
            if (b < nk && k[b].s)
                emit(sc, ENGINE_GLOBAL_FIELD_WRITE, k[b].s, k[b].len, NULL, 0,
                     line_of(li, nli, abs_pc, abs_line, nabs, linedefined, pc));
            break;
        case OP54_GETUPVAL:
            /* _ENV as a value (or a function with more than 256 constants,
             * whose global reads go through a register): names may be
             * read or defined in ways this scan does not see */
            if (b < nup && env[b])
                emit(sc, ENGINE_GLOBAL_ENV_VALUE, "_ENV", 4, NULL, 0,
                     line_of(li, nli, abs_pc, abs_line, nabs, linedefined, pc));
            break;
        default:
            break;
        }
    }
out:
    free(k);
    free(env);
    free(abs_pc);
    free(abs_line);
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
    (void)L;
    return jbuf_append(ud, p, sz) == 0 ? 0 : 1;
}

/* Compiles src (text only) and scans its dump. -1: not compiled (err set);
 * 1: the dump could not be read (nothing reported); 0: scanned. */
static int scan_source(const char *chunkname, const char *src, size_t len, engine_globals_fn fn, void *ud, jerr *err) {
    lua_State *L = luaL_newstate();
    if (!L) return jerr_oom(err, "checking a script");
    char name[512];
    snprintf(name, sizeof name, "@%s", chunkname);
    if (luaL_loadbufferx(L, src, len, name, "t") != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        jerr_set(err, JERR_USAGE, "%s", m ? m : "cannot compile");
        lua_close(L);
        return -1;
    }
    jbuf b;
    jbuf_init(&b, (size_t)1 << 30);
    int drc = lua_dump(L, dump_writer, &b, 0);
    lua_close(L);
    if (drc != 0 || !b.data) {
        jbuf_free(&b);
        return 1;
    }
    reader r = {(const unsigned char *)b.data, (const unsigned char *)b.data + b.len, false};
    /* header: signature, version 5.4, format 0, LUAC_DATA, the sizes of
     * Instruction, lua_Integer and lua_Number, then two check values */
    static const unsigned char head[] = {0x1b, 'L', 'u', 'a', 0x54, 0, 0x19, 0x93, '\r', '\n', 0x1a, '\n', 4, 8, 8};
    const unsigned char *h = rd_bytes(&r, sizeof head);
    if (!h || memcmp(h, head, sizeof head) != 0 || sizeof(lua_Integer) != 8 || sizeof(lua_Number) != 8) {
        jbuf_free(&b);
        return 1;
    }
    rd_bytes(&r, 8 + 8); /* LUAC_INT, LUAC_NUM */
    rd_byte(&r);         /* the main function's number of upvalues */
    scan sc = {fn, ud, 0};
    rd_function(&r, &sc, NULL, 0, true, 0);
    bool ok = !r.bad && r.p == r.end;
    jbuf_free(&b);
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------ calibration */

/* The probe's known answers; anything else means this Lua's dump is not
 * the one this file reads. */
static const char probe_src[] =
    "local a = x\n"              /* 1: read x */
    "y = a\n"                    /* 2: write y */
    "local t = {}\n"
    "t.f = 1\n"                  /* 4: field write f */
    "return function()\n"
    "  local d = string.dump\n"  /* 6: read string, lib field string.dump */
    "  return _ENV, d\n"         /* 7: _ENV as a value */
    "end\n";

typedef struct probe_state {
    int seen; /* bit per expected use */
    bool wrong;
} probe_state;

static void probe_fn(void *ud, int kind, const char *name, const char *lib, int line) {
    probe_state *p = ud;
    if (kind == ENGINE_GLOBAL_READ && strcmp(name, "x") == 0 && line == 1) p->seen |= 1;
    else if (kind == ENGINE_GLOBAL_WRITE && strcmp(name, "y") == 0 && line == 2) p->seen |= 2;
    else if (kind == ENGINE_GLOBAL_FIELD_WRITE && strcmp(name, "f") == 0 && line == 4) p->seen |= 4;
    else if (kind == ENGINE_GLOBAL_READ && strcmp(name, "string") == 0 && line == 6) p->seen |= 8;
    else if (kind == ENGINE_GLOBAL_LIB_FIELD && strcmp(name, "dump") == 0 && lib && strcmp(lib, "string") == 0 && line == 6)
        p->seen |= 16;
    else if (kind == ENGINE_GLOBAL_ENV_VALUE && line == 7) p->seen |= 32;
    else p->wrong = true;
}

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool probe_good;

static void run_probe(void) {
    probe_state p = {0, false};
    jerr e = {0};
    int rc = scan_source("probe", probe_src, sizeof probe_src - 1, probe_fn, &p, &e);
    probe_good = rc == 0 && p.seen == 63 && !p.wrong;
}

static bool calibrated(void) {
    pthread_once(&probe_once, run_probe);
    return probe_good;
}

int engine_globals_scan(const char *chunkname, const char *src, size_t len, engine_globals_fn fn, void *ud, jerr *err) {
    if (!calibrated()) return 1;
    return scan_source(chunkname, src, len, fn, ud, err);
}
