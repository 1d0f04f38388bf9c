/*
 * sandbox.c - the deterministic, restricted Lua 5.4 state of one workflow
 * run (rules: docs/sandbox.md). This is the one file that knows which Lua
 * libraries exist: it opens a fixed set, copies an allow-list of their
 * functions into a fresh per-run environment, and replaces everything whose
 * result depends on the process (iteration order, addresses, randomness,
 * sort pivots, garbage collection timing).
 *
 * Limits: a counting allocator (memory), a count hook (instruction budget
 * and wall-clock deadline). A tripped limit is sticky until the next
 * activation so the script cannot swallow it with pcall or coroutines.
 */
#define _GNU_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE, MADV_DONTNEED */
#include "engine/sandbox.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

/* Instructions between two hook calls: small enough to stop a loop
 * promptly, large enough to cost nothing measurable. */
#define SB_HOOK_COUNT 1000

/* Loads source text through the cache of compiled chunks (see there). */
static int load_text_chunk(lua_State *L, const char *src, size_t len, const char *name);

enum trip_kind { TRIP_NONE, TRIP_INSTRUCTIONS, TRIP_WALL_CLOCK, TRIP_MEMORY, TRIP_CLOSING };

typedef struct required_module {
    char *name;
    char *chunkname;
    char *src;
    size_t len;
} required_module;

/* ------------------------------------------------------------- the heap
 *
 * Lua hashes a table key that is an object (a table, function, coroutine)
 * by its address, the low 32 bits of it (point2uint in Lua's sources). Where
 * such keys land decides when a table rehashes, and so its array size and
 * what `#t` gives for a table with holes. With malloc those addresses
 * differ from process to process, so a replay could branch differently from
 * the original run. Each run therefore allocates from its own heap: one
 * reservation whose start is a multiple of 4 GiB, carved up by a
 * deterministic allocator (size classes, LIFO free lists, a bump pointer).
 * The low 32 bits of every address are then its offset in the heap, which
 * depends only on the run's sequence of allocations and frees: the same in
 * every process, on every machine, whatever the ASLR. (Keys that are strings
 * are hashed with Lua's per-process seed instead, which no host can set; see
 * docs/workflows.md.) */

#define HEAP_ALIGN ((uintptr_t)1 << 32)
#define HEAP_SMALL_MAX 512 /* classes every 16 bytes up to here, then 4 per doubling */
#define HEAP_CLASSES (32 + 4 * 55)
#define HEAP_RELEASE_MIN ((size_t)64 << 10) /* freed blocks this big give their pages back */

typedef struct heap {
    char *base;   /* a multiple of HEAP_ALIGN */
    size_t size;  /* bytes reserved */
    size_t top;   /* bytes handed out by the bump pointer */
    void *free_list[HEAP_CLASSES];
} heap;

/* The size class of an n-byte block (n > 0) and the class's block size. */
static int heap_class(size_t n, size_t *class_size) {
    if (n <= HEAP_SMALL_MAX) {
        size_t c = (n + 15) / 16;
        *class_size = c * 16;
        return (int)c - 1;
    }
    unsigned e = 63u - (unsigned)__builtin_clzll((unsigned long long)(n - 1)); /* 2^e < n <= 2^(e+1) */
    size_t quarter = (size_t)1 << (e - 2);
    size_t k = (n - ((size_t)1 << e) + quarter - 1) / quarter; /* 1..4 */
    *class_size = ((size_t)1 << e) + k * quarter;
    return 32 + (int)(e - 9) * 4 + (int)(k - 1);
}

static void *heap_alloc(heap *h, size_t n) {
    size_t size;
    if (n > h->size) return NULL;
    int c = heap_class(n, &size);
    void *p = h->free_list[c];
    if (p != NULL) {
        h->free_list[c] = *(void **)p;
        return p;
    }
    if (size > h->size - h->top) return NULL;
    p = h->base + h->top;
    h->top += size;
    return p;
}

static void heap_free(heap *h, void *p, size_t n) {
    size_t size;
    int c = heap_class(n, &size);
    if (size >= HEAP_RELEASE_MIN) {
        /* The pages past the free-list link go back to the system. */
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        uintptr_t from = ((uintptr_t)p + sizeof(void *) + page - 1) & ~(uintptr_t)(page - 1);
        uintptr_t to = ((uintptr_t)p + size) & ~(uintptr_t)(page - 1);
        if (to > from) madvise((void *)from, to - from, MADV_DONTNEED);
    }
    *(void **)p = h->free_list[c];
    h->free_list[c] = p;
}

/* Lua's realloc contract on the heap; a shrink that finds no smaller block
 * keeps the old one (Lua then knows it by its new, smaller size). */
static void *heap_realloc(heap *h, void *p, size_t osize, size_t nsize) {
    size_t osz, nsz;
    if (p == NULL) return heap_alloc(h, nsize);
    if (heap_class(osize, &osz) == heap_class(nsize, &nsz)) return p;
    void *q = heap_alloc(h, nsize);
    if (q == NULL) return nsize < osize ? p : NULL;
    memcpy(q, p, osize < nsize ? osize : nsize);
    heap_free(h, p, osize);
    return q;
}

/* Reserves the heap: room for fragmentation beyond the memory limit, at an
 * address that is a multiple of HEAP_ALIGN (reserve HEAP_ALIGN more, keep
 * the aligned part). Address space only: pages are used as touched. */
static int heap_init(heap *h, size_t limit) {
    const size_t slack = (size_t)64 << 20, most = (size_t)1 << 46;
    size_t tries[3];
    tries[0] = limit < (most - slack) / 8 ? limit * 8 + slack : most;
    tries[1] = limit < (most - slack) / 2 ? limit * 2 + slack : most;
    tries[2] = limit < most - slack ? limit + slack : most;
    memset(h, 0, sizeof *h);
    for (size_t i = 0; i < 3; i++) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        size_t size = (tries[i] + page - 1) & ~(page - 1);
        size_t total = size + HEAP_ALIGN;
        char *m = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) continue;
        uintptr_t start = ((uintptr_t)m + HEAP_ALIGN - 1) & ~(HEAP_ALIGN - 1);
        size_t head = (size_t)(start - (uintptr_t)m), tail = total - head - size;
        if (head) munmap(m, head);
        if (tail) munmap((char *)start + size, tail);
        if (mprotect((void *)start, size, PROT_READ | PROT_WRITE) != 0) {
            munmap((void *)start, size);
            continue;
        }
        h->base = (char *)start;
        h->size = size;
        return 0;
    }
    return -1;
}

static void heap_destroy(heap *h) {
    if (h->base != NULL) munmap(h->base, h->size);
    h->base = NULL;
}

struct sandbox {
    heap heap;
    lua_State *L;
    engine_limits lim;
    size_t mem_used;
    int trip;               /* enum trip_kind */
    char trip_reason[160];  /* the limit's message, without a position */
    char trip_msg[512];     /* the first trip, with the script position */
    uint64_t instructions;  /* executed in this activation, to hook granularity */
    bool has_deadline;
    struct timespec deadline;
    uint64_t rng[4];        /* xoshiro256** state for math.random */
    lua_Integer next_object_id;
    sandbox_module_finder finder;
    void *finder_ud;
    required_module *required;
    size_t n_required, cap_required;
    bool replaying;
};

/* Registry keys (their addresses are the keys); host-internal tables. */
static const char reg_env = 'e';        /* the run environment            */
static const char reg_loaded = 'l';     /* require: name -> module value  */
static const char reg_loading = 'i';    /* require: names being loaded    */
static const char reg_preload = 'p';    /* require: name -> {chunkname, src} */
static const char reg_object_ids = 'o'; /* weak-keyed: object -> sequence */

static sandbox *sb_from(lua_State *L) {
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

/* Pushes fn as a C closure, an object on the run's heap: a light C
 * function used as a table key is hashed by its code address, which ASLR
 * makes differ between processes (see "the heap" above). The upvalue is
 * only there to make it a closure. */
static void push_cfunction_object(lua_State *L, lua_CFunction fn) {
    lua_pushboolean(L, 1);
    lua_pushcclosure(L, fn, 1);
}

/* ------------------------------------------------------------- memory */

static void format_bytes(size_t n, char *buf, size_t buflen) {
    if (n != 0 && n % ((size_t)1 << 20) == 0)
        snprintf(buf, buflen, "%zu MiB", n >> 20);
    else if (n != 0 && n % 1024 == 0)
        snprintf(buf, buflen, "%zu KiB", n >> 10);
    else
        snprintf(buf, buflen, "%zu bytes", n);
}

static void trip_memory(sandbox *sb) {
    char limit[48];
    if (sb->trip != TRIP_NONE) return;
    format_bytes(sb->lim.memory_limit, limit, sizeof limit);
    sb->trip = TRIP_MEMORY;
    snprintf(sb->trip_reason, sizeof sb->trip_reason, "memory limit of %s exceeded", limit);
    snprintf(sb->trip_msg, sizeof sb->trip_msg, "%s", sb->trip_reason);
}

/* Lua's allocator contract: free on nsize 0, never fail a shrink. Growth
 * beyond the limit (or any growth after a memory trip, until the next
 * activation) is refused; Lua then collects garbage and raises a memory
 * error, which unwinds to the host's protected call. */
static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    sandbox *sb = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        if (ptr != NULL) heap_free(&sb->heap, ptr, osize);
        sb->mem_used -= old;
        return NULL;
    }
    if (nsize > old) {
        size_t grow = nsize - old;
        size_t total;
        if (sb->trip == TRIP_MEMORY) return NULL;
        if (!size_add(sb->mem_used, grow, &total) ||
            (sb->lim.memory_limit != 0 && total > sb->lim.memory_limit)) {
            trip_memory(sb);
            return NULL;
        }
    }
    void *p = heap_realloc(&sb->heap, ptr, old, nsize);
    if (p == NULL) {
        /* Below the limit but out of heap: fragmentation used up the reservation. */
        trip_memory(sb);
        return nsize <= old ? ptr : NULL; /* a failed shrink keeps the block */
    }
    sb->mem_used = sb->mem_used - old + nsize;
    return p;
}

/* ------------------------------------------------ instruction/clock limits */

static void monotonic_now(struct timespec *ts) {
    if (clock_gettime(CLOCK_MONOTONIC, ts) != 0) {
        ts->tv_sec = 0;
        ts->tv_nsec = 0;
    }
}

static bool deadline_passed(const sandbox *sb) {
    struct timespec now;
    if (!sb->has_deadline) return false;
    monotonic_now(&now);
    if (now.tv_sec != sb->deadline.tv_sec) return now.tv_sec > sb->deadline.tv_sec;
    return now.tv_nsec >= sb->deadline.tv_nsec;
}

/* The script position to blame: in a hook, level 0 is the Lua function
 * running; in a library function written in C, its caller. */
static bool blame_frame(lua_State *L, lua_Debug *ar) {
    for (int level = 0; level <= 1; level++)
        if (lua_getstack(L, level, ar) && lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
            return true;
    return false;
}

static void sb_hook(lua_State *L, lua_Debug *ar_unused);

static void trip_here(lua_State *L, sandbox *sb, int kind, const char *reason) {
    lua_Debug ar;
    sb->trip = kind;
    snprintf(sb->trip_reason, sizeof sb->trip_reason, "%s", reason);
    if (blame_frame(L, &ar))
        snprintf(sb->trip_msg, sizeof sb->trip_msg, "%s:%d: %s", ar.short_src, ar.currentline,
                 reason);
    else
        snprintf(sb->trip_msg, sizeof sb->trip_msg, "%s", reason);
}

/* Trips the instruction budget or the wall clock if either ran out. */
static void check_limits(lua_State *L, sandbox *sb) {
    if (sb->lim.instruction_budget != 0 && sb->instructions > sb->lim.instruction_budget) {
        trip_here(L, sb, TRIP_INSTRUCTIONS, "instruction budget exceeded (possible infinite loop)");
    } else if (deadline_passed(sb)) {
        char reason[96];
        snprintf(reason, sizeof reason, "wall-clock limit of %g s exceeded",
                 sb->lim.wall_clock_limit);
        trip_here(L, sb, TRIP_WALL_CLOCK, reason);
    }
}

/* Sticky: from now on this thread (and the main thread, where a
 * coroutine's error surfaces) raises at its very next instruction, so a
 * pcall or coroutine.resume around the work cannot swallow the trip.
 * Other suspended coroutines get here within SB_HOOK_COUNT instructions. */
static int raise_trip(lua_State *L, sandbox *sb) {
    lua_Debug ar;
    lua_sethook(L, sb_hook, LUA_MASKCOUNT, 1);
    if (L != sb->L) lua_sethook(sb->L, sb_hook, LUA_MASKCOUNT, 1);
    if (blame_frame(L, &ar))
        lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, sb->trip_reason);
    else
        lua_pushlstring(L, sb->trip_reason, strlen(sb->trip_reason));
    return lua_error(L);
}

static void sb_hook(lua_State *L, lua_Debug *ar_unused) {
    sandbox *sb = sb_from(L);
    (void)ar_unused;
    if (sb->trip == TRIP_NONE) {
        int count = lua_gethookcount(L);
        sb->instructions += count > 0 ? (uint64_t)count : 0;
        /* A thread left at count 1 by an earlier trip goes back to normal. */
        if (count != SB_HOOK_COUNT) lua_sethook(L, sb_hook, LUA_MASKCOUNT, SB_HOOK_COUNT);
        check_limits(L, sb);
        if (sb->trip == TRIP_NONE) return;
    }
    raise_trip(L, sb);
}

/* Library functions whose loops run in C, where the count hook never
 * fires, charge their iterations here (one instruction each) in batches
 * of SB_STEP_BATCH, so the budget and the wall clock hold inside them. */
#define SB_STEP_BATCH 1024

void sandbox_charge(lua_State *L, uint64_t steps) {
    sandbox *sb = sb_from(L);
    if (sb->trip == TRIP_NONE) {
        sb->instructions += steps;
        check_limits(L, sb);
        if (sb->trip == TRIP_NONE) return;
    }
    raise_trip(L, sb);
}

/* One iteration of a C loop; *n counts them. */
static void step(lua_State *L, uint64_t *n) {
    if ((++*n % SB_STEP_BATCH) == 0) sandbox_charge(L, SB_STEP_BATCH);
}

static void set_deadline(sandbox *sb) {
    double secs = sb->lim.wall_clock_limit;
    sb->has_deadline = false;
    if (!(secs > 0)) return; /* 0, negative or NaN: no wall-clock limit */
    if (secs > 1e9) secs = 1e9;
    monotonic_now(&sb->deadline);
    double whole = floor(secs);
    long nanos = (long)((secs - whole) * 1e9);
    sb->deadline.tv_sec += (time_t)whole;
    sb->deadline.tv_nsec += nanos;
    if (sb->deadline.tv_nsec >= 1000000000L) {
        sb->deadline.tv_sec += 1;
        sb->deadline.tv_nsec -= 1000000000L;
    }
    sb->has_deadline = true;
}

void sandbox_begin_activation(sandbox *sb) {
    sb->trip = TRIP_NONE;
    sb->trip_reason[0] = '\0';
    sb->trip_msg[0] = '\0';
    sb->instructions = 0;
    set_deadline(sb);
    lua_sethook(sb->L, sb_hook, LUA_MASKCOUNT, SB_HOOK_COUNT);
}

bool sandbox_tripped(sandbox *sb, jerr *err) {
    if (sb->trip == TRIP_NONE || sb->trip == TRIP_CLOSING) return false;
    jerr_set(err, JERR_FAILED, "%s", sb->trip_msg);
    return true;
}

size_t sandbox_memory_used(sandbox *sb) { return sb->mem_used; }

void sandbox_set_replaying(sandbox *sb, bool replaying) { sb->replaying = replaying; }

lua_State *sandbox_state(sandbox *sb) { return sb->L; }

void sandbox_push_env(sandbox *sb) { lua_rawgetp(sb->L, LUA_REGISTRYINDEX, &reg_env); }

/* ----------------------------------------------------------- forbidden */

/* What a script reading a forbidden name is told. lib NULL: a global. */
static const struct forbidden_name {
    const char *lib;
    const char *name;
    const char *hint;
} forbidden_names[] = {
    {NULL, "io", "(use an activity)"},
    {NULL, "os", "(use workflow.now() / an activity)"},
    {NULL, "package", "(use require for workflow modules)"},
    {NULL, "debug", "(it would break determinism and isolation)"},
    {NULL, "dofile", "(use require for workflow modules)"},
    {NULL, "loadfile", "(use require for workflow modules)"},
    {NULL, "loadstring", "(use load)"},
    {NULL, "collectgarbage", "(garbage collection runs at nondeterministic times)"},
    {NULL, "warn", "(use workflow.log)"},
    {NULL, "print", "(use workflow.log)"},
    {NULL, "module", "(a Lua 5.1 function; use require and return a table)"},
    {NULL, "setfenv", "(a Lua 5.1 function; use load with an env argument)"},
    {NULL, "getfenv", "(a Lua 5.1 function)"},
    {NULL, "newproxy", "(a Lua 5.1 function)"},
    {NULL, "gcinfo", "(garbage collection runs at nondeterministic times)"},
    {"string", "dump", "(binary chunks are not accepted)"},
    {"math", "randomseed", "(math.random is seeded by the run, the same on every replay)"},
};

const char *sandbox_forbidden_hint(const char *lib, const char *name) {
    for (size_t i = 0; i < sizeof forbidden_names / sizeof forbidden_names[0]; i++) {
        const struct forbidden_name *f = &forbidden_names[i];
        if (strcmp(f->name, name) != 0) continue;
        if ((lib == NULL && f->lib == NULL) || (lib != NULL && f->lib != NULL && strcmp(lib, f->lib) == 0))
            return f->hint;
    }
    return NULL;
}

/* __index of the environment and of the library copies: a forbidden name
 * raises a helpful error at the script line; anything else reads as nil. */
static int forbidden_index(lua_State *L) {
    const char *lib = lua_tostring(L, lua_upvalueindex(1)); /* NULL for the env */
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    const char *key = lua_tostring(L, 2);
    for (size_t i = 0; i < sizeof forbidden_names / sizeof forbidden_names[0]; i++) {
        const struct forbidden_name *f = &forbidden_names[i];
        if (strcmp(f->name, key) != 0) continue;
        if (lib == NULL && f->lib == NULL)
            return luaL_error(L, "'%s' is not available in workflows %s", key, f->hint);
        if (lib != NULL && f->lib != NULL && strcmp(lib, f->lib) == 0)
            return luaL_error(L, "%s.%s is not available in workflows %s", lib, key, f->hint);
    }
    return 0;
}

/* Gives the table at -1 the locked metatable with forbidden_index (lib may
 * be NULL for the environment). */
static void lock_table(lua_State *L, const char *lib) {
    lua_createtable(L, 0, 2);
    if (lib)
        lua_pushstring(L, lib);
    else
        lua_pushnil(L);
    lua_pushcclosure(L, forbidden_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

/* ----------------------------------------------------- canonical order */

typedef struct sort_key {
    int rank;  /* 0 number, 1 string, 2 boolean */
    bool is_int;
    lua_Integer i;
    lua_Number n;
    const char *s;
    size_t len;
    int b;
    lua_Integer slot;
} sort_key;

/* Fills k from the key at idx; raises for key types without a
 * deterministic order. Strings are not copied: the caller keeps the key
 * anchored while k is in use. */
static void sort_key_of(lua_State *L, int idx, sort_key *k, const char *who) {
    memset(k, 0, sizeof *k);
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        k->rank = 0;
        k->is_int = lua_isinteger(L, idx);
        if (k->is_int)
            k->i = lua_tointeger(L, idx);
        else
            k->n = lua_tonumber(L, idx);
        break;
    case LUA_TSTRING:
        k->rank = 1;
        k->s = lua_tolstring(L, idx, &k->len);
        break;
    case LUA_TBOOLEAN:
        k->rank = 2;
        k->b = lua_toboolean(L, idx);
        break;
    default:
        luaL_error(L, "%s: keys of type '%s' have no deterministic order", who,
                   luaL_typename(L, idx));
    }
}

/* Exact comparison of an integer with a float (never NaN: keys can't be). */
static int cmp_int_float(lua_Integer i, lua_Number f) {
    if (f >= 0x1p63) return -1;
    if (f < -0x1p63) return 1;
    lua_Number fl = floor(f);
    lua_Integer fi = (lua_Integer)fl;
    if (i != fi) return i < fi ? -1 : 1;
    return f > fl ? -1 : 0;
}

static int cmp_sort_keys(const sort_key *a, const sort_key *b) {
    if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
    switch (a->rank) {
    case 0:
        if (a->is_int && b->is_int) return a->i < b->i ? -1 : a->i > b->i;
        if (!a->is_int && !b->is_int) return a->n < b->n ? -1 : a->n > b->n;
        if (a->is_int) return cmp_int_float(a->i, b->n);
        return -cmp_int_float(b->i, a->n);
    case 1: {
        size_t m = a->len < b->len ? a->len : b->len;
        int c = m ? memcmp(a->s, b->s, m) : 0;
        if (c != 0) return c < 0 ? -1 : 1;
        return a->len < b->len ? -1 : a->len > b->len;
    }
    default:
        return a->b < b->b ? -1 : a->b > b->b;
    }
}

static int qsort_keys(const void *a, const void *b) { return cmp_sort_keys(a, b); }

/* Pushes an array of t's keys (t at idx) in canonical order. */
static void push_sorted_keys(lua_State *L, int idx, const char *who) {
    lua_Integer n = 0;
    size_t bytes = 0;
    idx = lua_absindex(L, idx);
    lua_newtable(L); /* keys in table order, anchoring the strings */
    int keys = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TNUMBER && lua_type(L, -1) != LUA_TSTRING &&
            lua_type(L, -1) != LUA_TBOOLEAN)
            luaL_error(L, "%s: keys of type '%s' have no deterministic order", who,
                       luaL_typename(L, -1));
        lua_pushvalue(L, -1);
        lua_rawseti(L, keys, ++n);
    }
    if (!size_mul((size_t)n, sizeof(sort_key), &bytes)) luaL_error(L, "%s: table too large", who);
    sort_key *sk = lua_newuserdatauv(L, bytes ? bytes : 1, 0); /* GC'd even if we raise */
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, keys, i + 1);
        sort_key_of(L, -1, &sk[i], who);
        sk[i].slot = i + 1;
        lua_pop(L, 1);
    }
    /* Keys are distinct under a total order, so an unstable sort is fine. */
    if (n > 1) qsort(sk, (size_t)n, sizeof *sk, qsort_keys);
    lua_createtable(L, n < INT_MAX ? (int)n : INT_MAX, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, keys, sk[i].slot);
        lua_rawseti(L, -2, i + 1);
    }
    lua_replace(L, keys);
    lua_pop(L, 1); /* the sort keys */
}

/* The pairs iterator: upvalues (sorted keys, position, table). Visits a
 * snapshot of the keys, skipping those whose value is nil by now. */
static int pairs_iter(lua_State *L) {
    lua_Integer pos = lua_tointeger(L, lua_upvalueindex(2));
    lua_Integer n = (lua_Integer)lua_rawlen(L, lua_upvalueindex(1));
    while (pos < n) {
        pos++;
        lua_rawgeti(L, lua_upvalueindex(1), pos);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, lua_upvalueindex(3)) != LUA_TNIL) {
            lua_pushinteger(L, pos);
            lua_replace(L, lua_upvalueindex(2));
            return 2;
        }
        lua_pop(L, 2);
    }
    lua_pushinteger(L, pos);
    lua_replace(L, lua_upvalueindex(2));
    lua_pushnil(L);
    return 1;
}

static int sb_pairs(lua_State *L) {
    luaL_checkany(L, 1);
    if (luaL_getmetafield(L, 1, "__pairs") != LUA_TNIL) { /* the script's own choice */
        lua_pushvalue(L, 1);
        lua_call(L, 1, 3);
        return 3;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    push_sorted_keys(L, 1, "pairs");
    lua_pushinteger(L, 0);
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, pairs_iter, 3);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* next(t, k): the smallest key greater than k in canonical order, found by
 * one scan (O(n) per call). k need not be present any more. */
static int sb_next(lua_State *L) {
    sort_key after, best, cur;
    bool have_after, have_best = false;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    have_after = !lua_isnil(L, 2);
    if (have_after) sort_key_of(L, 2, &after, "next");
    lua_pushnil(L); /* 3: best key so far (anchors its string) */
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pop(L, 1);
        sort_key_of(L, -1, &cur, "next");
        if (have_after && cmp_sort_keys(&cur, &after) <= 0) continue;
        if (!have_best || cmp_sort_keys(&cur, &best) < 0) {
            lua_pushvalue(L, -1);
            lua_replace(L, 3);
            best = cur;
            have_best = true;
        }
    }
    if (!have_best) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 3);
    lua_rawget(L, 1);
    return 2;
}

/* ------------------------------------------------------------ tostring */

const char *sandbox_tostring(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    if (luaL_callmeta(L, idx, "__tostring")) {
        if (!lua_isstring(L, -1)) luaL_error(L, "'__tostring' must return a string");
        return lua_tostring(L, -1);
    }
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
        else
            lua_pushfstring(L, "%f", (LUAI_UACNUMBER)lua_tonumber(L, idx));
        return lua_tostring(L, -1);
    case LUA_TSTRING:
        lua_pushvalue(L, idx);
        return lua_tostring(L, -1);
    case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
        return lua_tostring(L, -1);
    case LUA_TNIL:
        lua_pushliteral(L, "nil");
        return lua_tostring(L, -1);
    default:
        break;
    }
    /* Objects: a per-run number assigned on first use instead of an
     * address, which differs between processes. */
    sandbox *sb = sb_from(L);
    luaL_checkstack(L, 4, "tostring");
    int tt = luaL_getmetafield(L, idx, "__name");
    const char *kind = tt == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &reg_object_ids);
    lua_pushvalue(L, idx);
    lua_Integer id;
    if (lua_rawget(L, -2) == LUA_TNUMBER) {
        id = lua_tointeger(L, -1);
        lua_pop(L, 1);
    } else {
        lua_pop(L, 1);
        id = ++sb->next_object_id;
        lua_pushvalue(L, idx);
        lua_pushinteger(L, id);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1); /* ids */
    lua_pushfstring(L, "%s: #%I", kind, (LUAI_UACINT)id);
    if (tt != LUA_TNIL) lua_remove(L, -2);
    return lua_tostring(L, -1);
}

static int sb_tostring(lua_State *L) {
    luaL_checkany(L, 1);
    sandbox_tostring(L, 1);
    return 1;
}

/* ---------------------------------------------- metatables and rawset */

/* __newindex of the guard: new keys land as usual, except the two the
 * collector reads at run time. */
static int sb_metatable_guard(lua_State *L) {
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *k = lua_tostring(L, 2);
        if (strcmp(k, "__gc") == 0 || strcmp(k, "__mode") == 0)
            return luaL_error(L, "%s is not available in workflows (garbage collection runs at "
                                 "nondeterministic times)", k);
    }
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
}

static const char GUARD_KEY = 'g';

/* The collector reads __mode from a metatable whenever it runs, so setting
 * it by plain assignment after setmetatable would make a table weak. A
 * metatable therefore gets a guard on new keys: its own metatable's
 * __newindex (added when it has none; a script that already defined one
 * keeps it). */
static void guard_metatable(lua_State *L, int mt) {
    mt = lua_absindex(L, mt);
    if (lua_getmetatable(L, mt)) {
        lua_pushliteral(L, "__newindex");
        int has = lua_rawget(L, -2) != LUA_TNIL;
        lua_pop(L, 1);
        lua_pushliteral(L, "__metatable");
        int locked = lua_rawget(L, -2) != LUA_TNIL;
        lua_pop(L, 1);
        if (!has && !locked) {
            push_cfunction_object(L, sb_metatable_guard);
            lua_setfield(L, -2, "__newindex");
        }
        lua_pop(L, 1);
        return;
    }
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &GUARD_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 1);
        push_cfunction_object(L, sb_metatable_guard);
        lua_setfield(L, -2, "__newindex");
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &GUARD_KEY);
    }
    lua_setmetatable(L, mt);
}

static int sb_setmetatable(lua_State *L) {
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        /* Raw, like the collector's own lookup; even `__gc = false` marks
         * the object for finalization, so any non-nil value is refused. */
        lua_settop(L, 2);
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc is not available in workflows (finalizers "
                                 "run at nondeterministic times)");
        lua_pop(L, 1);
        lua_pushliteral(L, "__mode");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __mode is not available in workflows (weak "
                                 "tables lose entries at nondeterministic times)");
        lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    if (t == LUA_TTABLE) guard_metatable(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

static int sb_rawset(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *k = lua_tostring(L, 2);
        if (strcmp(k, "__gc") == 0 || strcmp(k, "__mode") == 0)
            return luaL_error(L, "rawset: %s is not available in workflows (garbage collection "
                                 "runs at nondeterministic times)", k);
    }
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

/* ------------------------------------------------------- string.format */

static bool is_format_flag(char c) {
    return c == '-' || c == '+' || c == ' ' || c == '#' || c == '0';
}

/* string.format without addresses: '%p' is refused and '%s' of tables,
 * functions and threads uses the stable tostring. The real format (upvalue
 * 1) does the rest; its argument errors get the script position here,
 * since it is called from C. */
static int sb_format(lua_State *L) {
    size_t len;
    const char *fmt = luaL_checklstring(L, 1, &len);
    int top = lua_gettop(L);
    int arg = 1;
    for (size_t i = 0; i < len; i++) {
        if (fmt[i] != '%') continue;
        if (++i >= len) break; /* the real format reports it */
        if (fmt[i] == '%') continue;
        while (i < len && is_format_flag(fmt[i])) i++;
        while (i < len && ((fmt[i] >= '0' && fmt[i] <= '9') || fmt[i] == '.')) i++;
        if (i >= len) break;
        arg++;
        if (fmt[i] == 'p')
            return luaL_error(L, "string.format: '%%p' is not available in workflows (addresses "
                                 "differ between runs)");
        if (fmt[i] == 's' && arg <= top && lua_type(L, arg) != LUA_TSTRING &&
            lua_type(L, arg) != LUA_TNUMBER) {
            sandbox_tostring(L, arg);
            lua_replace(L, arg);
        }
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    int status = lua_pcall(L, top, 1, 0);
    if (status != LUA_OK) {
        if (status == LUA_ERRRUN && lua_type(L, -1) == LUA_TSTRING) {
            luaL_where(L, 1);
            lua_insert(L, -2);
            lua_concat(L, 2);
        }
        return lua_error(L); /* everything is re-raised: nothing is swallowed here */
    }
    return 1;
}

/* ---------------------------------------------------------- table.sort */

/* A table, or something with the metamethods sort needs (as ltablib). */
static void check_sortable(lua_State *L, int arg) {
    if (lua_type(L, arg) == LUA_TTABLE) return;
    int n = 1;
    if (lua_getmetatable(L, arg)) {
        static const char *const need[] = {"__index", "__newindex", "__len"};
        bool ok = true;
        for (size_t i = 0; i < 3 && ok; i++) {
            lua_pushstring(L, need[i]);
            ok = lua_rawget(L, -++n) != LUA_TNIL;
        }
        lua_pop(L, n);
        if (ok) return;
    }
    luaL_checktype(L, arg, LUA_TTABLE);
}

/* a[x] < a[y] with the comparator at stack slot 2, or with '<'. */
static bool sort_less(lua_State *L, int a, lua_Integer x, lua_Integer y, bool custom) {
    bool r;
    if (custom) {
        lua_pushvalue(L, 2);
        lua_rawgeti(L, a, x);
        lua_rawgeti(L, a, y);
        lua_call(L, 2, 1);
        r = lua_toboolean(L, -1);
        lua_pop(L, 1);
    } else {
        lua_rawgeti(L, a, x);
        lua_rawgeti(L, a, y);
        r = lua_compare(L, -2, -1, LUA_OPLT);
        lua_pop(L, 2);
    }
    return r;
}

static void sort_copy(lua_State *L, int from, lua_Integer i, int to, lua_Integer k) {
    lua_rawgeti(L, from, i);
    lua_rawseti(L, to, k);
}

/* Stable bottom-up merge sort: deterministic (no random pivot as in
 * ltablib for large arrays) and equal elements keep their order. */
static int sb_sort(lua_State *L) {
    check_sortable(L, 1);
    lua_Integer n = luaL_len(L, 1);
    if (n < 2) return 0;
    luaL_argcheck(L, n < INT_MAX, 1, "array too big");
    bool custom = !lua_isnoneornil(L, 2);
    if (custom) luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    lua_createtable(L, (int)n, 0);
    int a = lua_gettop(L);
    lua_createtable(L, (int)n, 0);
    int b = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 1, i);
        lua_rawseti(L, a, i);
    }
    for (lua_Integer width = 1; width < n; width *= 2) {
        for (lua_Integer lo = 1; lo <= n; lo += 2 * width) {
            lua_Integer mid = lo + width; /* right run starts here */
            lua_Integer hi = lo + 2 * width - 1;
            if (mid > n) mid = n + 1;
            if (hi > n) hi = n;
            lua_Integer i = lo, j = mid, k = lo;
            while (i < mid && j <= hi) {
                if (sort_less(L, a, j, i, custom)) /* right first only if strictly less */
                    sort_copy(L, a, j++, b, k++);
                else
                    sort_copy(L, a, i++, b, k++);
            }
            while (i < mid) sort_copy(L, a, i++, b, k++);
            while (j <= hi) sort_copy(L, a, j++, b, k++);
        }
        int t = a; /* the merged runs become the input of the next pass */
        a = b;
        b = t;
    }
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, a, i);
        lua_seti(L, 1, i);
    }
    return 0;
}

/* ---------------------------------------------- bounded library loops */

/* The table functions below replace Lua's own so that their loops, which
 * run in C where no hook fires, charge the instruction budget and watch
 * the wall clock (table.move({}, 1, 1 << 50, 1, {}) would otherwise run
 * for days). Arguments, results, errors and the order of element reads
 * and writes (so of metamethod calls) are as the Lua 5.4 manual gives
 * them. */

enum { TAB_READ = 1, TAB_WRITE = 2, TAB_LEN = 4 };

/* A table, or a value whose metatable has the metamethods `need` asks for. */
static void check_tab(lua_State *L, int arg, int need) {
    static const struct { int flag; const char *name; } mm[] = {
        {TAB_READ, "__index"}, {TAB_WRITE, "__newindex"}, {TAB_LEN, "__len"}};
    if (lua_type(L, arg) == LUA_TTABLE) return;
    if (lua_getmetatable(L, arg)) {
        bool ok = true;
        for (size_t i = 0; i < 3 && ok; i++) {
            if (!(need & mm[i].flag)) continue;
            lua_pushstring(L, mm[i].name);
            ok = lua_rawget(L, -2) != LUA_TNIL;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (ok) return;
    }
    luaL_checktype(L, arg, LUA_TTABLE); /* raises "table expected" */
}

/* table.move(a1, f, e, t [, a2]) */
static int sb_move(lua_State *L) {
    uint64_t steps = 0;
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    lua_Integer t = luaL_checkinteger(L, 4);
    int dst = lua_isnoneornil(L, 5) ? 1 : 5;
    check_tab(L, 1, TAB_READ);
    check_tab(L, dst, TAB_WRITE);
    if (e >= f) {
        luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
        lua_Integer last = e - f; /* offset of the last element */
        luaL_argcheck(L, t <= LUA_MAXINTEGER - last, 4, "destination wrap around");
        /* Copying upwards inside one table must start at the top. */
        bool down = !(t > e || t <= f || (dst != 1 && !lua_compare(L, 1, dst, LUA_OPEQ)));
        for (lua_Integer k = 0; k <= last; k++) {
            lua_Integer off = down ? last - k : k;
            lua_geti(L, 1, f + off);
            lua_seti(L, dst, t + off);
            step(L, &steps);
        }
    }
    lua_pushvalue(L, dst);
    return 1;
}

/* table.concat(list [, sep [, i [, j]]]) */
static int sb_concat(lua_State *L) {
    uint64_t steps = 0;
    luaL_Buffer b;
    size_t seplen;
    check_tab(L, 1, TAB_READ | TAB_LEN);
    lua_Integer last = luaL_len(L, 1);
    const char *sep = luaL_optlstring(L, 2, "", &seplen);
    lua_Integer i = luaL_optinteger(L, 3, 1);
    last = luaL_optinteger(L, 4, last);
    luaL_buffinit(L, &b);
    for (; i <= last; i++) {
        lua_geti(L, 1, i);
        if (!lua_isstring(L, -1))
            return luaL_error(L, "invalid value (%s) at index %I in table for 'concat'",
                              luaL_typename(L, -1), (LUAI_UACINT)i);
        luaL_addvalue(&b);
        if (i == last) break; /* also keeps i + 1 from overflowing */
        luaL_addlstring(&b, sep, seplen);
        step(L, &steps);
    }
    luaL_pushresult(&b);
    return 1;
}

/* table.unpack(list [, i [, j]]) */
static int sb_unpack(lua_State *L) {
    uint64_t steps = 0;
    lua_Integer i = luaL_optinteger(L, 2, 1);
    lua_Integer e = lua_isnoneornil(L, 3) ? luaL_len(L, 1) : luaL_checkinteger(L, 3);
    if (i > e) return 0;
    lua_Unsigned n = (lua_Unsigned)e - (lua_Unsigned)i; /* one less than the count */
    if (n >= (lua_Unsigned)INT_MAX || !lua_checkstack(L, (int)(n + 1)))
        return luaL_error(L, "too many results to unpack");
    for (lua_Unsigned k = 0; k <= n; k++) {
        lua_geti(L, 1, (lua_Integer)((lua_Unsigned)i + k));
        step(L, &steps);
    }
    return (int)(n + 1);
}

/* table.insert(list, [pos,] value) */
static int sb_insert(lua_State *L) {
    uint64_t steps = 0;
    check_tab(L, 1, TAB_READ | TAB_WRITE | TAB_LEN);
    lua_Integer end = luaL_len(L, 1);
    end = (lua_Integer)((lua_Unsigned)end + 1u); /* the first free slot (wraps as Lua's does) */
    lua_Integer pos;
    switch (lua_gettop(L)) {
    case 2:
        pos = end;
        break;
    case 3:
        pos = luaL_checkinteger(L, 2);
        luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)end, 2, "position out of bounds");
        for (lua_Integer k = end; k > pos; k--) { /* shift up, from the top */
            lua_geti(L, 1, k - 1);
            lua_seti(L, 1, k);
            step(L, &steps);
        }
        break;
    default:
        return luaL_error(L, "wrong number of arguments to 'insert'");
    }
    lua_seti(L, 1, pos);
    return 0;
}

/* table.remove(list [, pos]) */
static int sb_remove(lua_State *L) {
    uint64_t steps = 0;
    check_tab(L, 1, TAB_READ | TAB_WRITE | TAB_LEN);
    lua_Integer size = luaL_len(L, 1);
    lua_Integer pos = luaL_optinteger(L, 2, size);
    if (pos != size) /* Lua 5.4.4 blames argument 1 here */
        luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 1, "position out of bounds");
    lua_geti(L, 1, pos); /* the result */
    for (; pos < size; pos++) { /* shift down */
        lua_geti(L, 1, pos + 1);
        lua_seti(L, 1, pos);
        step(L, &steps);
    }
    lua_pushnil(L);
    lua_seti(L, 1, pos);
    return 1;
}

/* string.rep(s, n [, sep]): Lua's own, except that an empty result is
 * returned at once (Lua loops n times even when every piece is empty;
 * any other result is as long as its loop and bounded by the memory
 * limit, which is checked before the loop starts). */
static int sb_rep(lua_State *L) {
    size_t len, seplen;
    luaL_checklstring(L, 1, &len);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &seplen);
    if (n <= 0 || (len == 0 && seplen == 0)) {
        lua_pushliteral(L, "");
        return 1;
    }
    return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

/* --------------------------------------------------------- math.random */

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256**, the generator Lua 5.4 itself uses, seeded from the run. */
static uint64_t rng_next(sandbox *sb) {
    uint64_t *s = sb->rng;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

static void rng_seed(sandbox *sb, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) { /* splitmix64 spreads the seed over the state */
        uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        sb->rng[i] = z ^ (z >> 31);
    }
}

/* A value in [0, n], unbiased (as lmathlib's project). */
static uint64_t rng_project(sandbox *sb, uint64_t ran, uint64_t n) {
    if ((n & (n + 1)) == 0) return ran & n;
    uint64_t lim = n;
    lim |= lim >> 1;
    lim |= lim >> 2;
    lim |= lim >> 4;
    lim |= lim >> 8;
    lim |= lim >> 16;
    lim |= lim >> 32;
    while ((ran &= lim) > n) ran = rng_next(sb);
    return ran;
}

/* math.random with Lua 5.4's argument rules: () float in [0,1), (0) a
 * full 64-bit integer, (m) in [1,m], (m,n) in [m,n]. */
static int sb_random(lua_State *L) {
    sandbox *sb = sb_from(L);
    lua_Integer low, up;
    uint64_t rv = rng_next(sb);
    switch (lua_gettop(L)) {
    case 0:
        lua_pushnumber(L, (lua_Number)(rv >> 11) * 0x1.0p-53);
        return 1;
    case 1:
        low = 1;
        up = luaL_checkinteger(L, 1);
        if (up == 0) {
            lua_pushinteger(L, (lua_Integer)rv);
            return 1;
        }
        break;
    case 2:
        low = luaL_checkinteger(L, 1);
        up = luaL_checkinteger(L, 2);
        break;
    default:
        return luaL_error(L, "wrong number of arguments");
    }
    luaL_argcheck(L, low <= up, 1, "interval is empty");
    uint64_t p = rng_project(sb, rv, (uint64_t)up - (uint64_t)low);
    lua_pushinteger(L, (lua_Integer)(p + (uint64_t)low));
    return 1;
}

/* ---------------------------------------------------------------- load */

#define LOAD_READER_SLOT 5

/* Reader for load(function): calls it for pieces, as lbaselib does. */
static const char *load_reader(lua_State *L, void *ud, size_t *size) {
    (void)ud;
    luaL_checkstack(L, 2, "too many nested functions");
    lua_pushvalue(L, 1);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        *size = 0;
        return NULL;
    }
    if (!lua_isstring(L, -1)) luaL_error(L, "reader function must return a string");
    lua_replace(L, LOAD_READER_SLOT);
    return lua_tolstring(L, LOAD_READER_SLOT, size);
}

/* load(chunk [, chunkname [, mode [, env]]]): text only, whatever mode
 * says; the default environment is the run's, never the host's globals. */
static int sb_load(lua_State *L) {
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    bool has_env = !lua_isnone(L, 4);
    int status;
    if (s != NULL) {
        if (len > 0 && s[0] == LUA_SIGNATURE[0]) {
            luaL_pushfail(L);
            lua_pushliteral(L, "load: binary chunks are not available in workflows (load Lua "
                               "source text)");
            return 2;
        }
        const char *chunkname = luaL_optstring(L, 2, s);
        status = luaL_loadbufferx(L, s, len, chunkname, "t");
    } else {
        const char *chunkname = luaL_optstring(L, 2, "=(load)");
        luaL_checktype(L, 1, LUA_TFUNCTION);
        lua_settop(L, LOAD_READER_SLOT);
        status = lua_load(L, load_reader, NULL, chunkname, "t");
    }
    if (status != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (has_env)
        lua_pushvalue(L, 4);
    else
        lua_rawgetp(L, LUA_REGISTRYINDEX, &reg_env);
    if (lua_setupvalue(L, -2, 1) == NULL) lua_pop(L, 1);
    return 1;
}

/* ------------------------------------------------------------- require */

static bool valid_module_name(const char *name, size_t len) {
    return len > 0 && strlen(name) == len && name[0] != '.' && strchr(name, '/') == NULL &&
           strchr(name, '\\') == NULL && strstr(name, "..") == NULL;
}

struct found_module {
    char *src;
    size_t len;
    char *chunkname;
};

/* Pushes the finder's malloc'ed strings (chunkname, src) as Lua strings;
 * run under lua_pcall so the caller can free them whatever happens. */
static int push_found_module(lua_State *L) {
    const struct found_module *f = lua_touserdata(L, 1);
    lua_pushlstring(L, f->chunkname, strlen(f->chunkname));
    lua_pushlstring(L, f->src, f->len);
    return 2;
}

static char *dup_bytes(const char *s, size_t len) {
    size_t n;
    if (!size_add(len, 1, &n)) return NULL;
    char *p = malloc(n);
    if (p == NULL) return NULL;
    if (len) memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static int record_required(sandbox *sb, const char *name, const char *chunkname, const char *src,
                           size_t len) {
    if (sb->n_required == sb->cap_required) {
        size_t cap = sb->cap_required ? sb->cap_required * 2 : 8;
        size_t bytes;
        if (!size_mul(cap, sizeof *sb->required, &bytes)) return -1;
        required_module *r = realloc(sb->required, bytes);
        if (r == NULL) return -1;
        sb->required = r;
        sb->cap_required = cap;
    }
    required_module *m = &sb->required[sb->n_required];
    m->name = jstrdup(name);
    m->chunkname = jstrdup(chunkname);
    m->src = dup_bytes(src, len);
    m->len = len;
    if (m->name == NULL || m->chunkname == NULL || m->src == NULL) {
        free(m->name);
        free(m->chunkname);
        free(m->src);
        return -1;
    }
    sb->n_required++;
    return 0;
}

/* Leaves (chunkname, src) of module `name` on the stack, or raises. */
static void find_module(lua_State *L, sandbox *sb, const char *name) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &reg_preload);
    if (lua_getfield(L, -1, name) == LUA_TTABLE) {
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        lua_remove(L, -3);
        lua_remove(L, -3);
        return;
    }
    lua_pop(L, 2);
    if (sb->finder != NULL) {
        struct found_module f = {NULL, 0, NULL};
        jerr err = {0, ""};
        int rc = sb->finder(sb->finder_ud, name, &f.src, &f.len, &f.chunkname, &err);
        if (rc < 0) {
            free(f.src);
            free(f.chunkname);
            luaL_error(L, "require '%s': %s", name, err.msg);
        }
        if (rc == 0) {
            if (f.src == NULL || f.chunkname == NULL) {
                free(f.src);
                free(f.chunkname);
                luaL_error(L, "require '%s': the module finder returned no source", name);
            }
            lua_pushcfunction(L, push_found_module);
            lua_pushlightuserdata(L, &f);
            int status = lua_pcall(L, 1, 2, 0);
            free(f.src);
            free(f.chunkname);
            if (status != LUA_OK) lua_error(L);
            return;
        }
    }
    luaL_error(L, "module '%s' not found (workflow modules are looked up in the workflows "
                  "directory and lua/jorch)", name);
}

/* require(name): workflow-side modules only, compiled as text with the
 * run environment, cached per run, recorded for pinning. */
static int sb_require(lua_State *L) {
    sandbox *sb = sb_from(L);
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    lua_settop(L, 1);
    if (!valid_module_name(name, len))
        return luaL_error(L, "require: '%s' is not a valid workflow module name (use dotted "
                             "names like 'lib.prompts'; no '/', '..' or leading '.')", name);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &reg_loaded); /* 2 */
    if (lua_getfield(L, 2, name) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &reg_loading); /* 3 */
    if (lua_getfield(L, 3, name) != LUA_TNIL)
        return luaL_error(L, "require '%s': the module requires itself (a require cycle)", name);
    lua_pop(L, 1);

    find_module(L, sb, name); /* 4 chunkname, 5 src */
    const char *chunkname = lua_tostring(L, 4);
    size_t srclen;
    const char *src = lua_tolstring(L, 5, &srclen);
    lua_pushfstring(L, "@%s", chunkname); /* 6 */
    if (load_text_chunk(L, src, srclen, lua_tostring(L, 6)) != LUA_OK) return lua_error(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &reg_env);
    if (lua_setupvalue(L, -2, 1) == NULL) lua_pop(L, 1);

    lua_pushboolean(L, 1);
    lua_setfield(L, 3, name);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 4);
    int status = lua_pcall(L, 2, 1, 0); /* re-raised below: nothing is swallowed */
    lua_pushnil(L);
    lua_setfield(L, 3, name);
    if (status != LUA_OK) return lua_error(L);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, 2, name);
    if (record_required(sb, name, chunkname, src, srclen) != 0)
        return luaL_error(L, "require '%s': out of memory recording the module", name);
    return 1;
}

void sandbox_each_required(sandbox *sb,
                           void (*fn)(void *ud, const char *name, const char *chunkname,
                                      const char *src, size_t len),
                           void *ud) {
    for (size_t i = 0; i < sb->n_required; i++) {
        const required_module *m = &sb->required[i];
        fn(ud, m->name, m->chunkname, m->src, m->len);
    }
}

/* ------------------------------------------------------ xpcall */

/* The script's message handler runs while an error unwinds, so a tripped
 * limit would re-enter it with every new error. Once a limit has tripped,
 * the guard hands the error through without running script code. */
static int sb_msgh(lua_State *L) {
    sandbox *sb = sb_from(L);
    if (sb->trip != TRIP_NONE) return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int sb_xpcall_finish(lua_State *L, int status, lua_KContext extra) {
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

/* xpcall(f, handler, ...) with the handler behind sb_msgh; a continuation
 * keeps workflow code inside it able to wait (yield). */
static int sb_xpcall(lua_State *L) {
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, sb_msgh, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, sb_xpcall_finish);
    return sb_xpcall_finish(L, status, 2);
}

/* ------------------------------------------------------ the environment */

static const char *const base_allowed[] = {
    "assert", "error", "getmetatable", "ipairs", "pcall", "rawequal", "rawget", "rawlen",
    "select", "tonumber", "type", "_VERSION", NULL};
static const char *const string_allowed[] = {
    "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower", "match", "pack",
    "packsize", "rep", "reverse", "sub", "unpack", "upper", NULL};
static const char *const table_allowed[] = {
    "concat", "insert", "move", "pack", "remove", "unpack", NULL};
static const char *const math_allowed[] = {
    "abs", "acos", "asin", "atan", "ceil", "cos", "deg", "exp", "floor", "fmod", "huge", "log",
    "max", "maxinteger", "min", "mininteger", "modf", "pi", "rad", "sin", "sqrt", "tan",
    "tointeger", "type", "ult", NULL};
static const char *const utf8_allowed[] = {
    "char", "charpattern", "codepoint", "codes", "len", "offset", NULL};
static const char *const coroutine_allowed[] = {
    "close", "create", "isyieldable", "resume", "running", "status", "wrap", "yield", NULL};

/* Copies the allow-listed fields of the table at `from` into the table on
 * top of the stack; a missing one means a Lua we were not built for. */
/* Host code pushes C strings with lua_pushlstring, never lua_pushstring:
 * the latter caches long strings by their C address, so whether it
 * allocates (and so every later address on the heap) would depend on where
 * the C string happens to live in this process. */

/* Replaces a light C function on top of the stack by a closure object. */
static bool objectify_cfunction(lua_State *L) {
    if (!lua_iscfunction(L, -1)) return false;
    if (lua_getupvalue(L, -1, 1) != NULL) { /* already a closure */
        lua_pop(L, 1);
        return false;
    }
    lua_CFunction fn = lua_tocfunction(L, -1);
    lua_pop(L, 1);
    push_cfunction_object(L, fn);
    return true;
}

/* Copies the allow-listed fields of the table at `from` into the table on
 * top of the stack; a missing one means a Lua we were not built for. C
 * functions become closure objects, also in `from` (the host's table, which
 * Lua searches to name a function in error messages and tracebacks). */
static void copy_allowed(lua_State *L, int from, const char *lib, const char *const *names) {
    for (size_t i = 0; names[i] != NULL; i++) {
        lua_pushstring(L, names[i]);
        if (lua_rawget(L, from) == LUA_TNIL)
            luaL_error(L, "this Lua has no %s%s%s (jorch needs Lua 5.4)", lib ? lib : "",
                       lib ? "." : "", names[i]);
        if (objectify_cfunction(L)) {
            lua_pushvalue(L, -1);
            lua_setfield(L, from, names[i]);
        }
        lua_setfield(L, -2, names[i]);
    }
}

static void set_cfunction(lua_State *L, const char *name, lua_CFunction fn) {
    push_cfunction_object(L, fn);
    lua_setfield(L, -2, name);
}

/* ipairs and utf8.codes return an iterator that is a light C function;
 * these return it as a closure object instead (upvalue 1: the library's
 * function; 2 and 3: iterator objects for the results it gives). */
static int sb_iterator_maker(lua_State *L) {
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    if (lua_gettop(L) >= 1 && lua_iscfunction(L, 1)) {
        lua_CFunction got = lua_tocfunction(L, 1);
        for (int up = 2; up <= 3; up++) {
            if (lua_tocfunction(L, lua_upvalueindex(up)) == got) {
                lua_pushvalue(L, lua_upvalueindex(up));
                lua_replace(L, 1);
                break;
            }
        }
    }
    return lua_gettop(L);
}

/* Sets field `name` of the copy on top of the stack to an iterator maker
 * around the (already objectified) function there; probes are two calls
 * whose iterators are learnt (pushed by the caller as functions taking no
 * arguments that return the library's iterator). */
static void wrap_iterator_maker(lua_State *L, const char *name, lua_CFunction probe_a,
                                lua_CFunction probe_b) {
    lua_getfield(L, -1, name);
    lua_CFunction probes[2] = {probe_a, probe_b};
    for (int i = 0; i < 2; i++) {
        lua_pushcfunction(L, probes[i]);
        lua_pushvalue(L, -2 - i);
        lua_call(L, 1, 1);
        if (!objectify_cfunction(L)) luaL_error(L, "%s: unexpected iterator (jorch needs Lua 5.4)", name);
    }
    lua_pushcclosure(L, sb_iterator_maker, 3);
    lua_setfield(L, -2, name);
}

static int probe_ipairs(lua_State *L) {
    lua_newtable(L);
    lua_call(L, 1, 1);
    return 1;
}
static int probe_codes_strict(lua_State *L) {
    lua_pushliteral(L, "");
    lua_call(L, 1, 1);
    return 1;
}
static int probe_codes_lax(lua_State *L) {
    lua_pushliteral(L, "");
    lua_pushboolean(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

/* Functions the sandbox replaces with its own bounded versions. */
static const char *const string_replaced[] = {"rep", "find", "match", "gmatch", "gsub", NULL};
static const char *const table_replaced[] = {"move", "concat", "unpack", "insert", "remove", NULL};

/* Lua names a C function in an argument error by finding it in the loaded
 * libraries ("bad argument #1 to 'table.move'"); the host's real library
 * table (at `real`, never visible to scripts) gets the replacements from
 * the copy on top of the stack so those messages stay as they were. */
static void name_replacements(lua_State *L, int real, const char *const *names) {
    for (size_t i = 0; names[i] != NULL; i++) {
        lua_getfield(L, -1, names[i]);
        lua_setfield(L, real, names[i]);
    }
}

/* Opens one library the host way and pushes the per-run copy of its
 * allow-listed fields (locked, with forbidden_index). The real library
 * table stays at the returned index for the caller's use. */
static int open_copy(lua_State *L, const char *lib, lua_CFunction open,
                     const char *const *names) {
    luaL_requiref(L, lib, open, 0);
    int real = lua_gettop(L);
    lua_newtable(L);
    copy_allowed(L, real, lib, names);
    return real;
}

/* Runs under lua_pcall in sandbox_new: builds the run environment. */
static int build_env(lua_State *L) {
    luaL_requiref(L, LUA_GNAME, luaopen_base, 0); /* host-only globals, never exposed */
    int base = lua_gettop(L);
    lua_newtable(L);
    int env = lua_gettop(L);
    copy_allowed(L, base, NULL, base_allowed);
    wrap_iterator_maker(L, "ipairs", probe_ipairs, probe_ipairs);
    set_cfunction(L, "pairs", sb_pairs);
    set_cfunction(L, "next", sb_next);
    set_cfunction(L, "tostring", sb_tostring);
    set_cfunction(L, "setmetatable", sb_setmetatable);
    set_cfunction(L, "rawset", sb_rawset);
    set_cfunction(L, "load", sb_load);
    set_cfunction(L, "require", sb_require);
    set_cfunction(L, "xpcall", sb_xpcall);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");

    int real = open_copy(L, LUA_STRLIBNAME, luaopen_string, string_allowed);
    lua_getfield(L, real, "format");
    lua_pushcclosure(L, sb_format, 1);
    lua_setfield(L, -2, "format");
    lua_getfield(L, real, "rep");
    lua_pushcclosure(L, sb_rep, 1);
    lua_setfield(L, -2, "rep");
    sandbox_set_pattern_functions(L);
    name_replacements(L, real, string_replaced);
    lock_table(L, LUA_STRLIBNAME);
    /* The per-state string metatable: methods come from the run's copy and
     * getmetatable("") gives "locked", not the host's string table. */
    lua_pushliteral(L, "");
    if (!lua_getmetatable(L, -1)) luaL_error(L, "the string library set no string metatable");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    lua_setfield(L, env, LUA_STRLIBNAME);
    lua_settop(L, env);

    real = open_copy(L, LUA_TABLIBNAME, luaopen_table, table_allowed);
    set_cfunction(L, "sort", sb_sort);
    set_cfunction(L, "move", sb_move);
    set_cfunction(L, "concat", sb_concat);
    set_cfunction(L, "unpack", sb_unpack);
    set_cfunction(L, "insert", sb_insert);
    set_cfunction(L, "remove", sb_remove);
    name_replacements(L, real, table_replaced);
    lock_table(L, LUA_TABLIBNAME);
    lua_setfield(L, env, LUA_TABLIBNAME);
    lua_settop(L, env);

    open_copy(L, LUA_MATHLIBNAME, luaopen_math, math_allowed);
    set_cfunction(L, "random", sb_random);
    lock_table(L, LUA_MATHLIBNAME);
    lua_setfield(L, env, LUA_MATHLIBNAME);
    lua_settop(L, env);

    open_copy(L, LUA_UTF8LIBNAME, luaopen_utf8, utf8_allowed);
    wrap_iterator_maker(L, "codes", probe_codes_strict, probe_codes_lax);
    lock_table(L, LUA_UTF8LIBNAME);
    lua_setfield(L, env, LUA_UTF8LIBNAME);
    lua_settop(L, env);

    open_copy(L, LUA_COLIBNAME, luaopen_coroutine, coroutine_allowed);
    lock_table(L, LUA_COLIBNAME);
    lua_setfield(L, env, LUA_COLIBNAME);
    lua_settop(L, env);

    lock_table(L, NULL);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &reg_env);

    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &reg_loaded);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &reg_loading);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &reg_preload);
    /* Weak keys so numbering an object does not keep it alive. Host-only:
     * the script never sees this table. */
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &reg_object_ids);
    return 0;
}

static int sb_panic(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    jlog(JLOG_ERROR, "unprotected error in a workflow sandbox (a jorch bug): %s",
         msg ? msg : "(error object is not a string)");
    return 0; /* Lua aborts */
}

/* Runs under lua_pcall in sandbox_error_text: the value's text as the
 * script's tostring gives it (which may run its __tostring). */
static int error_text_protected(lua_State *L) {
    sandbox_tostring(L, 1);
    return 1;
}

void sandbox_error_text(lua_State *L, int idx, char *buf, size_t buflen) {
    sandbox *sb = sb_from(L);
    int t = lua_type(L, idx);
    idx = lua_absindex(L, idx);
    if (buflen == 0) return;
    switch (t) {
    case LUA_TSTRING: /* no conversion, no allocation */
        snprintf(buf, buflen, "%s", lua_tostring(L, idx));
        return;
    case LUA_TNUMBER: /* formatted here: lua_tostring would allocate */
        if (lua_isinteger(L, idx))
            snprintf(buf, buflen, "%lld", (long long)lua_tointeger(L, idx));
        else
            snprintf(buf, buflen, "%.14g", (double)lua_tonumber(L, idx));
        return;
    case LUA_TNIL:
        snprintf(buf, buflen, "nil");
        return;
    case LUA_TBOOLEAN:
        snprintf(buf, buflen, "%s", lua_toboolean(L, idx) ? "true" : "false");
        return;
    default:
        break;
    }
    /* A table or other object: its __tostring is script code, run like any
     * other under the limits; whatever it does, the host gets text. */
    int top = lua_gettop(L);
    if (lua_checkstack(L, 3)) {
        lua_pushcfunction(L, error_text_protected);
        lua_pushvalue(L, idx);
        int status = lua_pcall(L, 1, 1, 0);
        if (status == LUA_OK && lua_type(L, -1) == LUA_TSTRING) {
            snprintf(buf, buflen, "%s", lua_tostring(L, -1));
            lua_settop(L, top);
            return;
        }
        if (sb->trip != TRIP_NONE && sb->trip != TRIP_CLOSING) {
            snprintf(buf, buflen, "(error object of type %s; converting it to text failed: %s)",
                     lua_typename(L, t), sb->trip_msg);
            lua_settop(L, top);
            return;
        }
        if (status != LUA_OK) {
            if (lua_type(L, -1) == LUA_TSTRING)
                snprintf(buf, buflen, "(error object of type %s; its __tostring failed: %s)",
                         lua_typename(L, t), lua_tostring(L, -1));
            else
                snprintf(buf, buflen, "(error object of type %s; its __tostring failed with "
                         "another error object)", lua_typename(L, t));
            lua_settop(L, top);
            return;
        }
    }
    lua_settop(L, top);
    snprintf(buf, buflen, "(error object of type %s that cannot be converted to text)",
             lua_typename(L, t));
}

static const char *error_text(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    return msg ? msg : "(error object is not a string)";
}

sandbox *sandbox_new(const engine_limits *lim, uint64_t seed, sandbox_module_finder finder,
                     void *finder_ud, jerr *err) {
    sandbox *sb = calloc(1, sizeof *sb);
    if (sb == NULL) {
        jerr_oom(err, "a workflow sandbox");
        return NULL;
    }
    sb->lim = lim ? *lim : engine_limits_default();
    sb->finder = finder;
    sb->finder_ud = finder_ud;
    rng_seed(sb, seed);
    if (heap_init(&sb->heap, sb->lim.memory_limit) != 0) {
        char limit[48];
        format_bytes(sb->lim.memory_limit, limit, sizeof limit);
        jerr_set(err, JERR_INTERNAL,
                 "cannot reserve address space for a workflow run's heap (memory limit %s): %s "
                 "(lower the memory limit or check ulimit -v)", limit, strerror(errno));
        free(sb);
        return NULL;
    }
    sb->L = lua_newstate(sb_alloc, sb);
    if (sb->L == NULL) {
        heap_destroy(&sb->heap);
        char limit[48];
        format_bytes(sb->lim.memory_limit, limit, sizeof limit);
        jerr_set(err, JERR_INTERNAL,
                 "cannot create the Lua state for a workflow run: out of memory (memory limit "
                 "%s)", limit);
        free(sb);
        return NULL;
    }
    lua_atpanic(sb->L, sb_panic);
    sandbox_begin_activation(sb);
    lua_pushcfunction(sb->L, build_env);
    if (lua_pcall(sb->L, 0, 0, 0) != LUA_OK) {
        jerr_set(err, JERR_INTERNAL, "cannot set up the workflow sandbox: %s",
                 error_text(sb->L));
        sandbox_free(sb);
        return NULL;
    }
    sandbox_begin_activation(sb); /* a memory trip during setup is reported above */
    return sb;
}

void sandbox_free(sandbox *sb) {
    if (sb == NULL) return;
    /* Any script code still run by lua_close (pending to-be-closed
     * variables) stops at its first hook. */
    sb->trip = TRIP_CLOSING;
    snprintf(sb->trip_reason, sizeof sb->trip_reason, "the workflow run is being closed");
    lua_sethook(sb->L, sb_hook, LUA_MASKCOUNT, 1);
    lua_close(sb->L);
    heap_destroy(&sb->heap);
    for (size_t i = 0; i < sb->n_required; i++) {
        free(sb->required[i].name);
        free(sb->required[i].chunkname);
        free(sb->required[i].src);
    }
    free(sb->required);
    free(sb);
}

/* ------------------------------------------------- compiled chunks
 *
 * jorch.workflow, the script and its modules are the same text for every
 * workflow task of a version, and a worker without a live run builds a new
 * state for each task: compiling them every time cost more than the task.
 * They are compiled once per (chunk name, SHA-256 of the text) into a
 * scratch state and kept as bytecode (lua_dump, debug information kept, so
 * error messages and tracebacks name the same lines); every run loads that
 * bytecode in mode "b". Always the bytecode, on a hit or a miss: the run's
 * heap then sees the same allocations either way (compiling in it would
 * leave the parser's allocations behind, and addresses must depend only on
 * the run's own history; see "the heap"). The cache is filled only here,
 * from text compiled in mode "t", and never from outside input: scripts
 * still cannot load bytecode (load() and the chunks themselves refuse it).
 */

#define CHUNK_SLOTS 64
#define CHUNK_BYTES_MAX ((size_t)64 << 20)

typedef struct chunk_code {
    char *name; /* "@workflows/x.lua" */
    char sha[65];
    char *code;
    size_t len;
    uint64_t used; /* chunk_clock at the last use: the least recent goes first */
} chunk_code;

static pthread_mutex_t chunk_mu = PTHREAD_MUTEX_INITIALIZER;
static chunk_code chunks[CHUNK_SLOTS];
static size_t chunk_bytes;
static uint64_t chunk_clock;

static void chunk_drop(chunk_code *c) {
    chunk_bytes -= c->len;
    free(c->name);
    free(c->code);
    memset(c, 0, sizeof *c);
}

static int dump_to_jbuf(lua_State *L, const void *p, size_t n, void *ud) {
    (void)L;
    return jbuf_append(ud, p, n) == 0 ? 0 : 1;
}

/* A malloc'ed copy of the bytecode of chunk `name` ("@file") with text
 * src, compiling it on a miss. -1 with the compiler's message ("file:line:
 * ...") or an out-of-memory note in msg. */
static int chunk_bytecode(const char *name, const char *src, size_t len, char **code, size_t *code_len,
                          char *msg, size_t msglen) {
    char sha[65];
    sha256_hex(src, len, sha);
    *code = NULL;
    pthread_mutex_lock(&chunk_mu);
    for (size_t i = 0; i < CHUNK_SLOTS; i++) {
        chunk_code *c = &chunks[i];
        if (!c->code || strcmp(c->sha, sha) != 0 || strcmp(c->name, name) != 0) continue;
        *code = malloc(c->len);
        if (*code) {
            memcpy(*code, c->code, c->len);
            *code_len = c->len;
            c->used = ++chunk_clock;
        }
        break;
    }
    pthread_mutex_unlock(&chunk_mu);
    if (*code) return 0;

    lua_State *T = luaL_newstate();
    if (!T) {
        snprintf(msg, msglen, "%s: out of memory compiling the chunk", name + 1);
        return -1;
    }
    if (luaL_loadbufferx(T, src, len, name, "t") != LUA_OK) {
        const char *m = lua_tostring(T, -1);
        snprintf(msg, msglen, "%s", m ? m : "cannot compile the chunk");
        lua_close(T);
        return -1;
    }
    jbuf b;
    jbuf_init(&b, CHUNK_BYTES_MAX);
    int rc = lua_dump(T, dump_to_jbuf, &b, 0);
    lua_close(T);
    size_t blen = b.len;
    char *bytes = rc == 0 ? jbuf_take(&b, &blen) : NULL;
    jbuf_free(&b);
    char *kept = bytes ? malloc(blen) : NULL;
    char *kept_name = kept ? jstrdup(name) : NULL;
    if (!bytes || !kept_name) {
        free(bytes);
        free(kept);
        snprintf(msg, msglen, "%s: out of memory compiling the chunk", name + 1);
        return -1;
    }
    memcpy(kept, bytes, blen);
    pthread_mutex_lock(&chunk_mu);
    chunk_code *slot = NULL;
    bool known = false; /* another thread compiled it meanwhile */
    for (size_t i = 0; i < CHUNK_SLOTS && !known; i++) {
        chunk_code *c = &chunks[i];
        if (!c->code) {
            if (!slot || slot->code) slot = c; /* an empty slot first */
        } else if (strcmp(c->sha, sha) == 0 && strcmp(c->name, name) == 0) {
            known = true;
        } else if (!slot || (slot->code && c->used < slot->used)) {
            slot = c; /* else the least recently used */
        }
    }
    if (!known && blen <= CHUNK_BYTES_MAX / 4) {
        if (slot->code) chunk_drop(slot);
        while (chunk_bytes + blen > CHUNK_BYTES_MAX) {
            chunk_code *old = NULL;
            for (size_t i = 0; i < CHUNK_SLOTS; i++)
                if (chunks[i].code && (!old || chunks[i].used < old->used)) old = &chunks[i];
            if (!old) break;
            chunk_drop(old);
        }
        slot->name = kept_name;
        memcpy(slot->sha, sha, sizeof slot->sha);
        slot->code = kept;
        slot->len = blen;
        slot->used = ++chunk_clock;
        chunk_bytes += blen;
        kept = NULL;
        kept_name = NULL;
    }
    free(kept);
    free(kept_name);
    pthread_mutex_unlock(&chunk_mu);
    *code = bytes;
    *code_len = blen;
    return 0;
}

int sandbox_compile(const char *chunkname, const char *src, size_t len, jerr *err) {
    char name[1100], msg[1024];
    snprintf(name, sizeof name, "@%s", chunkname);
    char *code = NULL;
    size_t clen = 0;
    if (chunk_bytecode(name, src, len, &code, &clen, msg, sizeof msg) != 0)
        return jerr_set(err, JERR_USAGE, "%s", msg);
    free(code);
    return 0;
}

/* luaL_loadbufferx(L, src, len, name, "t") through the cache: pushes the
 * function or the error message, and returns the status. */
static int load_text_chunk(lua_State *L, const char *src, size_t len, const char *name) {
    char *code = NULL;
    size_t clen = 0;
    char msg[1024];
    if (chunk_bytecode(name, src, len, &code, &clen, msg, sizeof msg) != 0) {
        lua_pushstring(L, msg);
        return LUA_ERRSYNTAX;
    }
    int status = luaL_loadbufferx(L, code, clen, name, "b");
    free(code);
    return status;
}

/* ------------------------------------------------- loading host chunks */

struct load_args {
    const char *chunkname;
    const char *src;
    size_t len;
};

static int load_protected(lua_State *L) {
    const struct load_args *a = lua_touserdata(L, 1);
    if (a->len > 0 && a->src[0] == LUA_SIGNATURE[0])
        return luaL_error(L, "%s: binary chunks are not accepted (workflow scripts must be Lua "
                             "source text)", a->chunkname);
    lua_pushfstring(L, "@%s", a->chunkname);
    int status = load_text_chunk(L, a->src, a->len, lua_tostring(L, -1));
    if (status != LUA_OK) return lua_error(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &reg_env);
    if (lua_setupvalue(L, -2, 1) == NULL) lua_pop(L, 1);
    return 1;
}

int sandbox_load(sandbox *sb, const char *chunkname, const char *src, size_t len, jerr *err) {
    lua_State *L = sb->L;
    struct load_args a = {chunkname, src, len};
    if (!lua_checkstack(L, 3))
        return jerr_set(err, JERR_INTERNAL, "cannot load %s: Lua stack exhausted", chunkname);
    lua_pushcfunction(L, load_protected);
    lua_pushlightuserdata(L, &a);
    int status = lua_pcall(L, 1, 1, 0);
    if (status != LUA_OK) {
        /* A syntax error is bad input; running out of memory fails the task. */
        if (sb->trip == TRIP_MEMORY)
            jerr_set(err, JERR_FAILED, "cannot load %s: %s", chunkname, sb->trip_msg);
        else
            jerr_set(err, status == LUA_ERRRUN ? JERR_USAGE : JERR_FAILED, "%s", error_text(L));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

struct preload_args {
    const char *name;
    const char *chunkname;
    const char *src;
    size_t len;
};

static int preload_protected(lua_State *L) {
    const struct preload_args *a = lua_touserdata(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &reg_preload);
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, a->chunkname, strlen(a->chunkname));
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, a->src, a->len);
    lua_rawseti(L, -2, 2);
    lua_pushlstring(L, a->name, strlen(a->name)); /* not lua_setfield: see "Host code pushes C strings" */
    lua_insert(L, -2);
    lua_rawset(L, -3);
    return 0;
}

int sandbox_preload(sandbox *sb, const char *name, const char *chunkname, const char *src,
                    size_t len, jerr *err) {
    lua_State *L = sb->L;
    struct preload_args a = {name, chunkname, src, len};
    if (!valid_module_name(name, strlen(name)))
        return jerr_set(err, JERR_USAGE,
                        "cannot preload module '%s' from %s: not a valid module name", name,
                        chunkname);
    if (!lua_checkstack(L, 3))
        return jerr_set(err, JERR_INTERNAL, "cannot preload %s: Lua stack exhausted", name);
    lua_pushcfunction(L, preload_protected);
    lua_pushlightuserdata(L, &a);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        jerr_set(err, JERR_INTERNAL, "cannot preload module '%s' from %s: %s", name, chunkname,
                 error_text(L));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- limits */

/* The largest limits accepted: beyond them a value is a typo, and a byte
 * count computed from a huge MiB value would wrap around to "no limit". */
#define LIMIT_MAX_MEMORY_MB 1048576.0 /* 1 TiB */
#define LIMIT_MAX_INSTRUCTIONS 1e18
#define LIMIT_MAX_WALL_CLOCK_S 1e6

static bool limits_configured;
static engine_limits configured_limits;

engine_limits engine_limits_builtin(void) {
    engine_limits l;
    l.memory_limit = (size_t)64 << 20;
    l.instruction_budget = 200000000;
    l.wall_clock_limit = 30.0;
    l.payload = payload_default_limits;
    return l;
}

static bool parse_number(const char *v, double *out) {
    char *end = NULL;
    if (v == NULL || *v == '\0') return false;
    *out = strtod(v, &end);
    return end != v && *end == '\0' && isfinite(*out);
}

int engine_limits_set(engine_limits *l, const char *key, const char *value, const char *source,
                      jerr *err) {
    double d = 0;
    if (strcmp(key, "memory_mb") == 0) {
        if (!parse_number(value, &d) || !(d >= 1) || d > LIMIT_MAX_MEMORY_MB)
            return jerr_set(err, JERR_USAGE,
                            "%s: the memory limit '%.40s' is not a number of MiB from 1 to %.0f "
                            "(e.g. 64)", source, value, LIMIT_MAX_MEMORY_MB);
        l->memory_limit = (size_t)(d * 1048576.0);
        return 0;
    }
    if (strcmp(key, "instruction_budget") == 0) {
        if (!parse_number(value, &d) || !(d >= 1) || d > LIMIT_MAX_INSTRUCTIONS || floor(d) != d)
            return jerr_set(err, JERR_USAGE,
                            "%s: the instruction budget '%.40s' is not a whole number from 1 to "
                            "1e18 (e.g. 200000000)", source, value);
        l->instruction_budget = (uint64_t)d;
        return 0;
    }
    if (strcmp(key, "wall_clock") == 0) {
        int64_t ns = 0;
        jerr derr = {0, ""};
        if (parse_number(value, &d)) {
            /* seconds */
        } else if (value != NULL && duration_parse(value, &ns, &derr) == 0) {
            d = (double)ns / 1e9; /* "30s", "2 minutes" */
        } else {
            d = -1;
        }
        if (!(d > 0) || d > LIMIT_MAX_WALL_CLOCK_S)
            return jerr_set(err, JERR_USAGE,
                            "%s: the wall-clock limit '%.40s' is not a duration above 0 and at most "
                            "%.0f seconds (e.g. 30 or \"2 minutes\")", source, value,
                            LIMIT_MAX_WALL_CLOCK_S);
        l->wall_clock_limit = d;
        return 0;
    }
    return jerr_set(err, JERR_USAGE,
                    "%s: unknown limit '%.60s' (known: memory_mb, instruction_budget, wall_clock)",
                    source, key);
}

static const struct {
    const char *var;
    const char *key;
} limit_vars[] = {
    {"JORCH_MEMORY_LIMIT_MB", "memory_mb"},
    {"JORCH_INSTRUCTION_BUDGET", "instruction_budget"},
    {"JORCH_WALL_CLOCK_LIMIT", "wall_clock"},
};

int engine_limits_from_env(engine_limits *l, jerr *err) {
    for (size_t i = 0; i < sizeof limit_vars / sizeof limit_vars[0]; i++) {
        const char *v = getenv(limit_vars[i].var);
        char source[64];
        if (v == NULL || *v == '\0') continue;
        snprintf(source, sizeof source, "environment variable %s", limit_vars[i].var);
        if (engine_limits_set(l, limit_vars[i].key, v, source, err) != 0) return -1;
    }
    return 0;
}

void engine_limits_use(const engine_limits *l) {
    configured_limits = *l;
    limits_configured = true;
}

engine_limits engine_limits_default(void) {
    if (limits_configured) return configured_limits;
    /* Not configured by the CLI (a library user, a unit test): the
     * environment where it is valid, with a warning where it is not. */
    engine_limits l = engine_limits_builtin();
    for (size_t i = 0; i < sizeof limit_vars / sizeof limit_vars[0]; i++) {
        const char *v = getenv(limit_vars[i].var);
        jerr err = {0, ""};
        char source[64];
        if (v == NULL || *v == '\0') continue;
        snprintf(source, sizeof source, "environment variable %s", limit_vars[i].var);
        if (engine_limits_set(&l, limit_vars[i].key, v, source, &err) != 0)
            jlog(JLOG_WARN, "ignoring %s", err.msg);
    }
    return l;
}
