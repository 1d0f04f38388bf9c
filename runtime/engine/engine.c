/*
 * engine.c - the deterministic workflow engine: Temporal history events
 * in, Temporal commands out.
 *
 * Model (after sdk-core's workflow machines): the history is read in order.
 * Each workflow task (WFT) started event is an activation point: events
 * since the previous one have resolved futures, delivered signals and so
 * on; the activation then runs every ready workflow coroutine until all are
 * blocked, collecting commands in one queue. If the history shows that task
 * completed, the command events that follow the completion are matched in
 * order against the queue (type and key attributes); a mismatch is a
 * nondeterminism error naming the event, the command and the script line.
 * If the history ends in the open task, its commands are the reply.
 *
 * The coroutine scheduler and futures live in lua/jorch/workflow.lua; this
 * file owns events, commands, matching and the C primitives that scripts
 * reach through `workflow.*`.
 */
#include "engine/engine.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine/engine_int.h"
#include "engine/globals.h"
#include "engine/sandbox.h"

struct lua_embedded {
    const char *name;
    const char *src;
    size_t len;
};
extern const struct lua_embedded lua_embedded_modules[];

#define PATCH_MARKER "core_patch"
#define PATCH_DETAILS_KEY "patch-data"
#define SIDE_EFFECT_MARKER "SideEffect"
#define SIDE_EFFECT_ID_KEY "side-effect-id"
#define SIDE_EFFECT_DATA_KEY "data"

enum { M_ACTIVITY = 1, M_TIMER, M_OTHER, M_KINDS };

#define FLAG_BIT(f) (UINT32_C(1) << (f))
/* Flags a run takes on at its first workflow task or never (they change
 * ids and values the whole run must agree on); the others are taken on by
 * the first task that needs them. */
#define START_FLAGS (FLAG_BIT(ENGINE_FLAG_KIND_IDS) | FLAG_BIT(ENGINE_FLAG_DETAILS_LIST))
#define CORE_FLAG_ID_AND_TYPE_CHECKS 1 /* sdk-core's IdAndTypeDeterminismChecks */
#define CORE_FLAG_UPSERT_ON_PATCH 2    /* sdk-core's UpsertSearchAttributeOnPatch */
#define CHANGE_VERSION_SA "TemporalChangeVersion"

/* Temporal's size limits on what one workflow task sends (the server's
 * limit.blobSize.warn / .error on each command's payloads, and the 4 MiB
 * gRPC message that carries a whole task completion). Past an error limit
 * the server fails the workflow; so does the engine, on both backends,
 * before anything is sent or stored. */
#define PAYLOAD_WARN_BYTES ((size_t)512 << 10)
#define PAYLOAD_ERROR_BYTES ((size_t)2 << 20)
#define TASK_PAYLOAD_ERROR_BYTES ((size_t)4 << 20)
/* How such a failure's message starts: replay recognises it by this. */
#define SIZE_FAILURE_PREFIX "payload size limit: "

/* An activity or timer the script started, indexed by its sequence number. */
typedef struct machine {
    int kind;
    int64_t id;       /* the number in its command id (activity_id, timer_id, side-effect-id) */
    int64_t event_id; /* ACTIVITY_TASK_SCHEDULED / TIMER_STARTED event, once matched */
    bool done;
} machine;

/* A command produced by the script and not yet matched to its event. */
typedef struct pending_cmd {
    Command *cmd;
    int64_t seq;     /* machine (0 if none) */
    char *where;     /* "workflows/x.lua:12" */
    bool dropped;    /* cancelled before it was ever sent: neither sent nor matched */
} pending_cmd;

typedef struct patch_memo {
    char *id;
    bool value;
    bool marker;      /* its marker was recorded (listed in TemporalChangeVersion) */
} patch_memo;

struct engine_run {
    char *script_name;
    char *script_src;            /* until the sandbox is set up (then NULL): the bytecode is all it needs */
    size_t script_len;
    char script_sha[65];         /* workflow.info().script_sha256 */
    engine_limits limits;
    engine_module_finder finder;
    void *finder_ud;
    engine_bundle modules;    /* the version's modules, preloaded ahead of the finder (a copy) */
    char *namespace_, *workflow_id, *run_id;
    void (*log_fn)(void *ud, const char *workflow_id, const char *line);
    void *log_ud;

    sandbox *sb;
    lua_State *L;
    int rt_ref;       /* registry: the runtime table from workflow.lua */
    int main_ref;     /* registry: the workflow function */
    int input_ref;    /* registry: the workflow input, a packed table */

    /* from WorkflowExecutionStarted */
    char *workflow_type, *task_queue, *first_run_id, *original_run_id, *continued_run_id;
    int32_t attempt;
    int64_t start_time;
    bool embedded;            /* started by the embedded store (its memo pins the script) */

    int64_t last_event_id;
    int64_t wft_started_id;
    int64_t now;              /* nanos: event time of the current WFT started */
    bool replaying;
    bool in_activation;
    bool main_started;
    bool closed;
    bool matching;            /* reading the command events of a completed WFT */
    /* The first non-command event met while matching (a server may write one
     * between a task's command events, e.g. an immediate ActivityTaskCanceled):
     * named when the task turns out to lack a command event. */
    int64_t gap_event_id;
    char gap_event[400];
    bool skipped_patch;       /* last command event skipped was a deprecated patch marker */

    /* Runtime flags (docs/development.md): bit n = flag n in effect for this
     * run; flags_new = first used by the task being executed (recorded in
     * its completion). core_history: the run was recorded by an sdk-core
     * SDK (its flags are sdk-core's, read as such). */
    uint32_t flags, flags_new;
    bool seen_completion;     /* a WorkflowTaskCompleted was read: not the first task */
    bool core_history;
    int64_t kind_seq[M_KINDS]; /* per-kind id counters (ENGINE_FLAG_KIND_IDS) */

    machine *machines;        /* [seq], seq starts at 1 */
    size_t n_machines, cap_machines;
    pending_cmd *queue;
    size_t q_head, q_len, q_cap;
    Command **out_cmds;
    size_t out_cap;
    Command *building;        /* a command being filled in; freed if a Lua error interrupts */

    /* command events of the WFT being replayed (lookahead for patches, side effects) */
    HistoryEvent **upcoming;
    size_t n_upcoming;

    patch_memo *patches;
    size_t n_patches, cap_patches;

    uint64_t uuid_state;
    jerr *err;                /* where primitives report task-level failures */

    size_t task_bytes;        /* encoded size of the commands queued in this activation */
    char *size_failure;       /* set when a command broke a size limit: the workflow fails */
    bool size_exempt;         /* queueing that failure itself: no limit applies */
    bool replay_unlimited;    /* a replayed task that did not fail on a limit when it ran */
};

/* ------------------------------------------------------------ small helpers */

static uint64_t fnv1a(const char *s) {
    uint64_t h = UINT64_C(1469598103934665603);
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static char *dup_or_empty(const char *s) { return jstrdup(s ? s : ""); }

static const char *str_or(const char *s, const char *dflt) { return (s && *s) ? s : dflt; }

engine_limits engine_limits_default(void);

void engine_workflow_type(const char *script_path, char *out, size_t outlen) {
    const char *base = strrchr(script_path, '/');
    base = base ? base + 1 : script_path;
    size_t n = strlen(base);
    if (n > 4 && strcmp(base + n - 4, ".lua") == 0) n -= 4;
    if (n >= outlen) n = outlen - 1;
    memcpy(out, base, n);
    out[n] = '\0';
}

/* The first stack frame that belongs to a script file (not jorch's own Lua):
 * "workflows/x.lua:12", for messages that must point at the user's line. */
static void user_where(lua_State *L, char *buf, size_t buflen) {
    lua_Debug ar;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar)) continue;
        /* jorch's own Lua is loaded as "@[jorch]/...": never the user's line */
        if (ar.source[0] == '@' && strncmp(ar.source, "@[jorch]", 8) != 0 && ar.currentline > 0) {
            snprintf(buf, buflen, "%s:%d", ar.short_src, ar.currentline);
            return;
        }
    }
    snprintf(buf, buflen, "?");
}

/* lua_error, not luaL_error: luaL_error would put the position of the
 * primitive's caller ("[jorch]/workflow.lua:331:") in front of the user's. */
static int raise_at_user(lua_State *L, const char *fmt, const char *detail) {
    char where[256];
    user_where(L, where, sizeof where);
    if (strcmp(where, "?") == 0) /* no script line (tail calls): Lua's own position */
        return luaL_error(L, "%s%s", fmt, detail ? detail : "");
    lua_pushfstring(L, "%s: %s%s", where, fmt, detail ? detail : "");
    return lua_error(L);
}

/* ------------------------------------------------------------ machines, queue */

static int64_t machine_new(engine_run *r, int kind) {
    if (r->n_machines + 1 >= r->cap_machines) {
        size_t ncap = r->cap_machines ? r->cap_machines * 2 : 64;
        machine *m = realloc(r->machines, ncap * sizeof *m);
        if (!m) return -1;
        r->machines = m;
        r->cap_machines = ncap;
        if (r->n_machines == 0) r->n_machines = 1; /* slot 0 unused: seq starts at 1 */
    }
    int64_t seq = (int64_t)r->n_machines++;
    /* sdk-core numbers each kind of command on its own (A1, T1, A2); jorch
     * before flag 1 used one counter for all (A1, T2, A3). */
    int64_t id = (r->flags & FLAG_BIT(ENGINE_FLAG_KIND_IDS)) ? ++r->kind_seq[kind] : seq;
    r->machines[seq] = (machine){.kind = kind, .id = id};
    return seq;
}

/* Whether the run may use a flag that is not a start flag: yes if history
 * has it; while replaying a task recorded without it, no; in a new task,
 * yes, and the task records it. */
static bool flag_use(engine_run *r, int flag) {
    if (r->flags & FLAG_BIT(flag)) return true;
    if (r->replaying || r->core_history) return false;
    r->flags |= FLAG_BIT(flag);
    r->flags_new |= FLAG_BIT(flag);
    return true;
}

static machine *machine_get(engine_run *r, int64_t seq) {
    if (seq <= 0 || (size_t)seq >= r->n_machines) return NULL;
    return &r->machines[seq];
}

static int64_t machine_by_event(engine_run *r, int kind, int64_t event_id) {
    for (size_t i = r->n_machines; i-- > 1;) {
        if (r->machines[i].kind == kind && r->machines[i].event_id == event_id) return (int64_t)i;
    }
    return 0;
}

static void pending_free(pending_cmd *p) {
    if (p->cmd) protobuf_c_message_free_unpacked(&p->cmd->base, NULL);
    free(p->where);
    p->cmd = NULL;
    p->where = NULL;
}

static void describe_command(const Command *c, char *buf, size_t len);
static void discard_building(engine_run *r);

/* Enforces the size limits on r->building (see PAYLOAD_ERROR_BYTES): a
 * command over a limit is dropped, the workflow is to fail (r->size_failure,
 * acted on when the activation ends) and the script gets an error, as does
 * every later command of this activation, so nothing piles up however
 * often the script catches it. */
static void check_command_size(engine_run *r, lua_State *L, const char *where) {
    /* A task in history was judged when it ran, by this jorch or an older
     * one without these limits: replay re-judges only a task whose recorded
     * outcome is a size failure, so histories from before the limits still
     * replay (the determinism contract) and the failure replays too. */
    if (r->size_exempt || r->replay_unlimited) return;
    if (r->size_failure) {
        discard_building(r);
        luaL_error(L, "%s", r->size_failure);
        return;
    }
    size_t sz = protobuf_c_message_get_packed_size(&r->building->base);
    char what[400];
    describe_command(r->building, what, sizeof what);
    char msg[1200];
    msg[0] = '\0';
    if (sz > PAYLOAD_ERROR_BYTES) {
        snprintf(msg, sizeof msg,
                 SIZE_FAILURE_PREFIX "%s at %s is %.1f MiB, over the 2 MiB limit on one command "
                 "(Temporal's blob size limit); the workflow fails. Keep large data out of workflow "
                 "values: store it in a file or a database and pass its name",
                 what, where, (double)sz / 1048576.0);
    } else if (sz > TASK_PAYLOAD_ERROR_BYTES - r->task_bytes) {
        snprintf(msg, sizeof msg,
                 SIZE_FAILURE_PREFIX "%s at %s brings this workflow task's commands to %.1f MiB, over the "
                 "4 MiB limit on one workflow task (Temporal's gRPC message limit); the workflow fails. "
                 "Keep large data out of workflow values",
                 what, where, (double)(r->task_bytes + sz) / 1048576.0);
    }
    if (msg[0]) {
        discard_building(r);
        r->size_failure = jstrdup(msg);
        luaL_error(L, "%s", msg);
        return;
    }
    r->task_bytes += sz;
    if (sz > PAYLOAD_WARN_BYTES && !r->replaying) {
        snprintf(msg, sizeof msg, "warning: %s at %s is %zu KiB; Temporal warns above 512 KiB and fails the "
                 "workflow above 2 MiB", what, where, sz >> 10);
        if (r->log_fn) r->log_fn(r->log_ud, r->workflow_id, msg);
        else fprintf(stderr, "[%s] %s\n", r->workflow_id ? r->workflow_id : "workflow", msg);
    }
}

/* Moves r->building into the queue. Called with a complete command. */
static int queue_push(engine_run *r, lua_State *L, int64_t seq) {
    if (r->q_head > 0 && r->q_head == r->q_len) {
        r->q_head = r->q_len = 0;
    }
    if (r->q_len == r->q_cap) {
        size_t ncap = r->q_cap ? r->q_cap * 2 : 32;
        pending_cmd *q = realloc(r->queue, ncap * sizeof *q);
        if (!q) return luaL_error(L, "out of memory queueing a command");
        r->queue = q;
        r->q_cap = ncap;
    }
    char where[256];
    user_where(L, where, sizeof where);
    check_command_size(r, L, where);
    char *w = jstrdup(where);
    if (!w) return luaL_error(L, "out of memory queueing a command");
    r->queue[r->q_len++] = (pending_cmd){.cmd = r->building, .seq = seq, .where = w};
    r->building = NULL;
    return 0;
}

static void queue_clear(engine_run *r) {
    for (size_t i = r->q_head; i < r->q_len; i++) pending_free(&r->queue[i]);
    r->q_head = r->q_len = 0;
}

static void discard_building(engine_run *r) {
    if (r->building) protobuf_c_message_free_unpacked(&r->building->base, NULL);
    r->building = NULL;
}

static Command *command_begin(engine_run *r, lua_State *L, int type) {
    discard_building(r);
    Command *c = malloc(sizeof *c);
    if (!c) {
        luaL_error(L, "out of memory creating a command");
        return NULL;
    }
    temporal__api__command__v1__command__init(c);
    c->command_type = type;
    r->building = c;
    return c;
}

#define ALLOC_MSG(L, var, T, init)                                    \
    do {                                                              \
        var = malloc(sizeof(T));                                      \
        if (!var) return luaL_error(L, "out of memory building " #T); \
        init(var);                                                    \
    } while (0)

static char *lua_strdup_or_raise(lua_State *L, const char *s) {
    char *d = jstrdup(s);
    if (!d) luaL_error(L, "out of memory");
    return d;
}

static engine_run *run_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static void check_not_closed(lua_State *L, engine_run *r, const char *what) {
    if (r->closed) raise_at_user(L, what, " called after the workflow already finished");
    if (r->size_failure) luaL_error(L, "%s", r->size_failure); /* the workflow is failing: no more work */
    if (!r->in_activation)
        raise_at_user(L, what, " cannot be called outside the workflow's own execution (e.g. in a query handler)");
}

/* -------------------------------------------------------- Lua <-> payloads */

static Payloads *payloads_from_table(engine_run *r, lua_State *L, int tidx, const char *what) {
    tidx = lua_absindex(L, tidx);
    lua_Integer n;
    lua_getfield(L, tidx, "n"); /* table.pack style */
    if (lua_isinteger(L, -1))
        n = lua_tointeger(L, -1);
    else
        n = (lua_Integer)lua_rawlen(L, tidx);
    lua_pop(L, 1);
    if (n < 0 || n > 1000) {
        raise_at_user(L, what, ": too many arguments (at most 1000)");
        return NULL;
    }
    luaL_checkstack(L, (int)n + 4, "too many arguments");
    for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, tidx, i);
    jerr e = {0};
    Payloads *ps = payloads_from_lua(L, lua_gettop(L) - (int)n + 1, (int)n, &r->limits.payload, &e);
    lua_pop(L, (int)n);
    if (!ps) {
        char msg[1200];
        snprintf(msg, sizeof msg, ": %s", e.msg);
        raise_at_user(L, what, msg);
    }
    return ps;
}

/* Pushes the payloads' values; returns their count. Raises on bad data. */
static int push_payloads(engine_run *r, lua_State *L, const Payloads *ps, const char *what) {
    int pushed = 0;
    jerr e = {0};
    if (payloads_to_lua(L, ps, &r->limits.payload, &pushed, &e) != 0)
        return luaL_error(L, "cannot decode %s: %s", what, e.msg);
    return pushed;
}

/* ------------------------------------------------------------- durations */

static int64_t opt_duration(lua_State *L, int idx, const char *what, bool *present) {
    *present = false;
    if (lua_isnil(L, idx)) return 0;
    int64_t ns = 0;
    jerr e = {0};
    if (lua_type(L, idx) == LUA_TNUMBER) {
        if (duration_from_seconds(lua_tonumber(L, idx), &ns, &e) != 0) {
            char msg[1200];
            snprintf(msg, sizeof msg, ": %s", e.msg);
            raise_at_user(L, what, msg);
        }
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        if (duration_parse(lua_tostring(L, idx), &ns, &e) != 0) {
            char msg[1200];
            snprintf(msg, sizeof msg, ": %s", e.msg);
            raise_at_user(L, what, msg);
        }
    } else {
        raise_at_user(L, what, ": a duration must be a number of seconds or a string like \"5s\"");
    }
    *present = true;
    return ns;
}

static Google__Protobuf__Duration *duration_field(lua_State *L, int tidx, const char *key,
                                                  const char *what) {
    lua_getfield(L, tidx, key);
    bool present;
    char w[200];
    snprintf(w, sizeof w, "%s: option %s", what, key);
    int64_t ns = opt_duration(L, -1, w, &present);
    lua_pop(L, 1);
    if (!present) return NULL;
    Google__Protobuf__Duration *d = pb_duration_new(ns);
    if (!d) luaL_error(L, "out of memory");
    return d;
}

/* ---------------------------------------------------------- activity options */

static const char *const activity_option_names[] = {
    "start_to_close_timeout", "schedule_to_close_timeout", "schedule_to_start_timeout",
    "heartbeat_timeout", "task_queue", "activity_id", "retry_policy", NULL};
static const char *const retry_option_names[] = {
    "initial_interval", "backoff_coefficient", "maximum_interval", "maximum_attempts",
    "non_retryable_error_types", NULL};

/* Rejects unknown keys so a typo ("start_to_close") is an error, not a
 * silently ignored option. */
static void check_known_keys(lua_State *L, int tidx, const char *const *names, const char *what) {
    lua_pushnil(L);
    while (lua_next(L, tidx) != 0) {
        lua_pop(L, 1);
        bool ok = false;
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -1);
            for (size_t i = 0; names[i]; i++)
                if (strcmp(k, names[i]) == 0) ok = true;
        }
        if (!ok) {
            char msg[300];
            snprintf(msg, sizeof msg, ": unknown option '%s'",
                     lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(non-string key)");
            raise_at_user(L, what, msg);
        }
    }
}

static Temporal__Api__Common__V1__RetryPolicy *retry_policy_from(lua_State *L, int tidx,
                                                                 const char *what) {
    tidx = lua_absindex(L, tidx);
    if (!lua_istable(L, tidx)) {
        raise_at_user(L, what, ": retry_policy must be a table");
        return NULL;
    }
    char w[200];
    snprintf(w, sizeof w, "%s: retry_policy", what);
    check_known_keys(L, tidx, retry_option_names, w);
    Temporal__Api__Common__V1__RetryPolicy *rp = malloc(sizeof *rp);
    if (!rp) {
        luaL_error(L, "out of memory");
        return NULL;
    }
    temporal__api__common__v1__retry_policy__init(rp);
    /* attach immediately so a later error frees it with the command */
    return rp;
}

static void retry_policy_fill(lua_State *L, Temporal__Api__Common__V1__RetryPolicy *rp, int tidx,
                              const char *what) {
    char w[200];
    snprintf(w, sizeof w, "%s: retry_policy", what);
    rp->initial_interval = duration_field(L, tidx, "initial_interval", w);
    rp->maximum_interval = duration_field(L, tidx, "maximum_interval", w);
    lua_getfield(L, tidx, "backoff_coefficient");
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1) || !(lua_tonumber(L, -1) >= 1.0) || lua_tonumber(L, -1) > 1000.0)
            raise_at_user(L, w, ": backoff_coefficient must be a number from 1 to 1000");
        rp->backoff_coefficient = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, tidx, "maximum_attempts");
    if (!lua_isnil(L, -1)) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > INT32_MAX)
            raise_at_user(L, w, ": maximum_attempts must be a whole number >= 0 (0 = unlimited)");
        rp->maximum_attempts = (int32_t)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, tidx, "non_retryable_error_types");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1)) raise_at_user(L, w, ": non_retryable_error_types must be a list of strings");
        size_t n = lua_rawlen(L, -1);
        if (n > 1000) raise_at_user(L, w, ": non_retryable_error_types is too long");
        if (n) {
            rp->non_retryable_error_types = calloc(n, sizeof(char *));
            if (!rp->non_retryable_error_types) luaL_error(L, "out of memory");
            for (size_t i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, (lua_Integer)i);
                if (lua_type(L, -1) != LUA_TSTRING)
                    raise_at_user(L, w, ": non_retryable_error_types must be a list of strings");
                rp->non_retryable_error_types[i - 1] = lua_strdup_or_raise(L, lua_tostring(L, -1));
                rp->n_non_retryable_error_types = i;
                lua_pop(L, 1);
            }
        }
    }
    lua_pop(L, 1);
}

/* ----------------------------------------------------------- C primitives */

/* eng.schedule_activity(name, args, opts) -> seq */
static int prim_schedule_activity(lua_State *L) {
    engine_run *r = run_of(L);
    check_not_closed(L, r, "workflow.execute_activity");
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    jerr ve = {0};
    if (id_check("activity name", name, ID_MAX_BYTES, &ve) != 0)
        return raise_at_user(L, "workflow.execute_activity: ", ve.msg);
    char what[300];
    snprintf(what, sizeof what, "activity '%s'", name);
    check_known_keys(L, 3, activity_option_names, what);

    int64_t seq = machine_new(r, M_ACTIVITY);
    if (seq < 0) return luaL_error(L, "out of memory");
    Command *c = command_begin(r, L, CT(SCHEDULE_ACTIVITY_TASK));
    Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *a;
    ALLOC_MSG(L, a, Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes,
              temporal__api__command__v1__schedule_activity_task_command_attributes__init);
    c->attributes_case = CMD_ATTR(SCHEDULE_ACTIVITY_TASK);
    c->schedule_activity_task_command_attributes = a;

    lua_getfield(L, 3, "activity_id");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING) raise_at_user(L, what, ": activity_id must be a string");
        if (id_check("activity_id", lua_tostring(L, -1), ID_MAX_BYTES, &ve) != 0)
            raise_at_user(L, "workflow.execute_activity: ", ve.msg);
        a->activity_id = lua_strdup_or_raise(L, lua_tostring(L, -1));
    } else {
        char id[32];
        snprintf(id, sizeof id, "%" PRId64, machine_get(r, seq)->id);
        a->activity_id = lua_strdup_or_raise(L, id);
    }
    lua_pop(L, 1);
    ALLOC_MSG(L, a->activity_type, Temporal__Api__Common__V1__ActivityType,
              temporal__api__common__v1__activity_type__init);
    a->activity_type->name = lua_strdup_or_raise(L, name);
    ALLOC_MSG(L, a->task_queue, Temporal__Api__Taskqueue__V1__TaskQueue,
              temporal__api__taskqueue__v1__task_queue__init);
    lua_getfield(L, 3, "task_queue");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        raise_at_user(L, what, ": task_queue must be a string");
    if (lua_type(L, -1) == LUA_TSTRING && id_check("task_queue", lua_tostring(L, -1), ID_MAX_BYTES, &ve) != 0)
        raise_at_user(L, "workflow.execute_activity: ", ve.msg);
    a->task_queue->name = lua_strdup_or_raise(L, str_or(lua_tostring(L, -1), r->task_queue));
    a->task_queue->kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
    lua_pop(L, 1);
    a->start_to_close_timeout = duration_field(L, 3, "start_to_close_timeout", what);
    a->schedule_to_close_timeout = duration_field(L, 3, "schedule_to_close_timeout", what);
    a->schedule_to_start_timeout = duration_field(L, 3, "schedule_to_start_timeout", what);
    a->heartbeat_timeout = duration_field(L, 3, "heartbeat_timeout", what);
    if (!a->start_to_close_timeout && !a->schedule_to_close_timeout)
        raise_at_user(L, what, ": set start_to_close_timeout or schedule_to_close_timeout "
                               "(e.g. workflow.activities{start_to_close_timeout = \"10 minutes\"})");
    lua_getfield(L, 3, "retry_policy");
    if (!lua_isnil(L, -1)) {
        a->retry_policy = retry_policy_from(L, -1, what);
        retry_policy_fill(L, a->retry_policy, lua_gettop(L), what);
    }
    lua_pop(L, 1);
    a->input = payloads_from_table(r, L, 2, what);
    queue_push(r, L, seq);
    lua_pushinteger(L, seq);
    return 1;
}

/* eng.start_timer(duration) -> seq, or nil for a zero duration */
static int prim_start_timer(lua_State *L) {
    engine_run *r = run_of(L);
    check_not_closed(L, r, "workflow.sleep");
    bool present;
    int64_t ns = opt_duration(L, 1, "workflow.sleep", &present);
    if (!present) raise_at_user(L, "workflow.sleep", ": a duration is required");
    if (ns <= 0) {
        lua_pushnil(L);
        return 1;
    }
    int64_t seq = machine_new(r, M_TIMER);
    if (seq < 0) return luaL_error(L, "out of memory");
    Command *c = command_begin(r, L, CT(START_TIMER));
    Temporal__Api__Command__V1__StartTimerCommandAttributes *a;
    ALLOC_MSG(L, a, Temporal__Api__Command__V1__StartTimerCommandAttributes,
              temporal__api__command__v1__start_timer_command_attributes__init);
    c->attributes_case = CMD_ATTR(START_TIMER);
    c->start_timer_command_attributes = a;
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, machine_get(r, seq)->id);
    a->timer_id = lua_strdup_or_raise(L, id);
    a->start_to_fire_timeout = pb_duration_new(ns);
    if (!a->start_to_fire_timeout) return luaL_error(L, "out of memory");
    queue_push(r, L, seq);
    lua_pushinteger(L, seq);
    return 1;
}

/* If the command that started machine seq was never sent (it is still in
 * the queue of the activation running now), drop it: there is nothing to
 * cancel on the backend. Returns true when dropped. */
static bool drop_unsent(engine_run *r, int64_t seq) {
    machine *m = machine_get(r, seq);
    if (!m || m->event_id != 0) return false;
    for (size_t i = r->q_head; i < r->q_len; i++) {
        if (r->queue[i].seq == seq && !r->queue[i].dropped) {
            r->queue[i].dropped = true;
            return true;
        }
    }
    return false;
}

/* The machine a cancel command is for, or NULL when there is nothing to
 * send: unknown, already done, or never sent (then dropped here). */
static machine *cancel_target(lua_State *L, engine_run *r, int kind, const char *what, int64_t *seq) {
    check_not_closed(L, r, what);
    *seq = luaL_checkinteger(L, 1);
    machine *m = machine_get(r, *seq);
    if (!m || m->kind != kind || m->done) return NULL;
    m->done = true;
    return drop_unsent(r, *seq) ? NULL : m;
}

static int prim_cancel_timer(lua_State *L) {
    engine_run *r = run_of(L);
    int64_t seq;
    machine *m = cancel_target(L, r, M_TIMER, "cancelling a timer", &seq);
    if (!m) return 0;
    Command *c = command_begin(r, L, CT(CANCEL_TIMER));
    Temporal__Api__Command__V1__CancelTimerCommandAttributes *a;
    ALLOC_MSG(L, a, Temporal__Api__Command__V1__CancelTimerCommandAttributes,
              temporal__api__command__v1__cancel_timer_command_attributes__init);
    c->attributes_case = CMD_ATTR(CANCEL_TIMER);
    c->cancel_timer_command_attributes = a;
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, m->id);
    a->timer_id = lua_strdup_or_raise(L, id);
    queue_push(r, L, seq);
    return 0;
}

static int prim_cancel_activity(lua_State *L) {
    engine_run *r = run_of(L);
    int64_t seq;
    machine *m = cancel_target(L, r, M_ACTIVITY, "cancelling an activity", &seq);
    if (!m) return 0;
    Command *c = command_begin(r, L, CT(REQUEST_CANCEL_ACTIVITY_TASK));
    Temporal__Api__Command__V1__RequestCancelActivityTaskCommandAttributes *a;
    ALLOC_MSG(L, a, Temporal__Api__Command__V1__RequestCancelActivityTaskCommandAttributes,
              temporal__api__command__v1__request_cancel_activity_task_command_attributes__init);
    c->attributes_case = CMD_ATTR(REQUEST_CANCEL_ACTIVITY_TASK);
    c->request_cancel_activity_task_command_attributes = a;
    a->scheduled_event_id = m->event_id;
    queue_push(r, L, seq);
    return 0;
}

/* Adds details[key] = payloads to a RecordMarker command being built. */
static void marker_add_detail(lua_State *L, Temporal__Api__Command__V1__RecordMarkerCommandAttributes *a,
                              const char *key, Payloads *ps) {
    size_t n = a->n_details + 1;
    Temporal__Api__Command__V1__RecordMarkerCommandAttributes__DetailsEntry **d =
        realloc(a->details, n * sizeof *d);
    if (!d) {
        protobuf_c_message_free_unpacked(&ps->base, NULL);
        luaL_error(L, "out of memory");
        return;
    }
    a->details = d;
    Temporal__Api__Command__V1__RecordMarkerCommandAttributes__DetailsEntry *e = malloc(sizeof *e);
    if (!e) {
        protobuf_c_message_free_unpacked(&ps->base, NULL);
        luaL_error(L, "out of memory");
        return;
    }
    temporal__api__command__v1__record_marker_command_attributes__details_entry__init(e);
    e->value = ps;
    a->details[a->n_details++] = e;
    e->key = lua_strdup_or_raise(L, key);
}

static Temporal__Api__Command__V1__RecordMarkerCommandAttributes *marker_begin(engine_run *r, lua_State *L,
                                                                              const char *name) {
    Command *c = command_begin(r, L, CT(RECORD_MARKER));
    Temporal__Api__Command__V1__RecordMarkerCommandAttributes *a = malloc(sizeof *a);
    if (!a) {
        luaL_error(L, "out of memory");
        return NULL;
    }
    temporal__api__command__v1__record_marker_command_attributes__init(a);
    c->attributes_case = CMD_ATTR(RECORD_MARKER);
    c->record_marker_command_attributes = a;
    a->marker_name = lua_strdup_or_raise(L, name);
    return a;
}

static Payloads *payloads_of_json(lua_State *L, const char *json) {
    Payloads *ps = payloads_new();
    Payload *p = payload_new_json(json, strlen(json));
    if (!ps || !p || payloads_add(ps, p) != 0) {
        if (ps) protobuf_c_message_free_unpacked(&ps->base, NULL);
        if (p) protobuf_c_message_free_unpacked(&p->base, NULL);
        luaL_error(L, "out of memory");
        return NULL;
    }
    return ps;
}

/* Finds the details entry `key` of a marker event. */
static Payloads *marker_detail(const HistoryEvent *e, const char *key) {
    const Temporal__Api__History__V1__MarkerRecordedEventAttributes *m = e->marker_recorded_event_attributes;
    if (e->attributes_case != EV_ATTR(MARKER_RECORDED) || !m) return NULL;
    for (size_t i = 0; i < m->n_details; i++)
        if (m->details[i] && m->details[i]->key && strcmp(m->details[i]->key, key) == 0)
            return m->details[i]->value;
    return NULL;
}

/* The patch id and deprecated flag of a core_patch marker event (sdk-core's
 * "patch-data" JSON, or the legacy "patch_id"/"deprecated" keys). */
static bool patch_marker_info(const HistoryEvent *e, char *id, size_t idlen, bool *deprecated) {
    if (e->event_type != ET(MARKER_RECORDED) || !e->marker_recorded_event_attributes ||
        strcmp(e->marker_recorded_event_attributes->marker_name, PATCH_MARKER) != 0)
        return false;
    *deprecated = false;
    Payloads *pd = marker_detail(e, PATCH_DETAILS_KEY);
    if (pd && pd->n_payloads > 0) {
        /* {"deprecated":false,"id":"x"}: parsed with a throwaway Lua state would
         * be heavy; the JSON is tiny and produced by SDKs, so find the fields. */
        const ProtobufCBinaryData *d = &pd->payloads[0]->data;
        char buf[512];
        size_t n = d->len < sizeof buf - 1 ? d->len : sizeof buf - 1;
        memcpy(buf, d->data, n);
        buf[n] = '\0';
        const char *p = strstr(buf, "\"id\"");
        if (!p) return false;
        p = strchr(p + 4, '"');
        if (!p) return false;
        const char *q = strchr(p + 1, '"');
        if (!q) return false;
        size_t l = (size_t)(q - p - 1);
        if (l >= idlen) l = idlen - 1;
        memcpy(id, p + 1, l);
        id[l] = '\0';
        *deprecated = strstr(buf, "\"deprecated\":true") != NULL || strstr(buf, "\"deprecated\": true") != NULL;
        return true;
    }
    Payloads *pid = marker_detail(e, "patch_id");
    if (pid && pid->n_payloads > 0) {
        const ProtobufCBinaryData *d = &pid->payloads[0]->data;
        size_t l = d->len < idlen - 1 ? d->len : idlen - 1;
        /* legacy: the payload is JSON text of a string, or raw bytes */
        if (l >= 2 && d->data[0] == '"' && d->data[l - 1] == '"') {
            memcpy(id, d->data + 1, l - 2);
            id[l - 2] = '\0';
        } else {
            memcpy(id, d->data, l);
            id[l] = '\0';
        }
        Payloads *dep = marker_detail(e, "deprecated");
        *deprecated = dep && dep->n_payloads > 0 && dep->payloads[0]->data.len > 0 &&
                      (dep->payloads[0]->data.data[0] == 1 || dep->payloads[0]->data.data[0] == 't');
        return true;
    }
    return false;
}

static int patch_memo_find(engine_run *r, const char *id) {
    for (size_t i = 0; i < r->n_patches; i++)
        if (strcmp(r->patches[i].id, id) == 0) return (int)i;
    return -1;
}

/* sdk-core's companion of a patch marker: TemporalChangeVersion (a
 * KeywordList) set to every patch id whose marker the run recorded. */
static void upsert_change_version(engine_run *r, lua_State *L) {
    lua_createtable(L, (int)r->n_patches, 0);
    lua_Integer k = 0;
    for (size_t i = 0; i < r->n_patches; i++) {
        if (!r->patches[i].marker) continue;
        lua_pushstring(L, r->patches[i].id);
        lua_rawseti(L, -2, ++k);
    }
    jbuf b;
    jbuf_init(&b, 256);
    jerr e = {0};
    if (payload_lua_to_json(L, -1, &r->limits.payload, &b, &e) != 0) {
        jbuf_free(&b);
        luaL_error(L, "workflow.patched: %s", e.msg);
        return;
    }
    lua_pop(L, 1);
    Payload *p = payload_new_json(b.data, b.len);
    jbuf_free(&b);
    if (!p) {
        luaL_error(L, "out of memory");
        return;
    }
    static const char kl[] = "KeywordList";
    Temporal__Api__Common__V1__Payload__MetadataEntry **md = realloc(p->metadata, (p->n_metadata + 1) * sizeof *md);
    Temporal__Api__Common__V1__Payload__MetadataEntry *me = malloc(sizeof *me);
    uint8_t *v = malloc(sizeof kl - 1);
    if (md) p->metadata = md;
    if (!md || !me || !v) {
        free(me);
        free(v);
        protobuf_c_message_free_unpacked(&p->base, NULL);
        luaL_error(L, "out of memory");
        return;
    }
    temporal__api__common__v1__payload__metadata_entry__init(me);
    me->key = jstrdup("type");
    memcpy(v, kl, sizeof kl - 1);
    me->value.data = v;
    me->value.len = sizeof kl - 1;
    p->metadata[p->n_metadata++] = me;
    if (!me->key) {
        protobuf_c_message_free_unpacked(&p->base, NULL);
        luaL_error(L, "out of memory");
        return;
    }
    Command *c = command_begin(r, L, CT(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES));
    Temporal__Api__Command__V1__UpsertWorkflowSearchAttributesCommandAttributes *a = malloc(sizeof *a);
    Temporal__Api__Common__V1__SearchAttributes *sa = malloc(sizeof *sa);
    Temporal__Api__Common__V1__SearchAttributes__IndexedFieldsEntry **fe = malloc(sizeof *fe);
    Temporal__Api__Common__V1__SearchAttributes__IndexedFieldsEntry *f = malloc(sizeof *f);
    if (!a || !sa || !fe || !f) {
        free(a);
        free(sa);
        free(fe);
        free(f);
        protobuf_c_message_free_unpacked(&p->base, NULL);
        luaL_error(L, "out of memory");
        return;
    }
    temporal__api__command__v1__upsert_workflow_search_attributes_command_attributes__init(a);
    temporal__api__common__v1__search_attributes__init(sa);
    temporal__api__common__v1__search_attributes__indexed_fields_entry__init(f);
    c->attributes_case = CMD_ATTR(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES);
    c->upsert_workflow_search_attributes_command_attributes = a;
    a->search_attributes = sa;
    sa->indexed_fields = fe;
    fe[0] = f;
    sa->n_indexed_fields = 1;
    f->value = p;
    f->key = lua_strdup_or_raise(L, CHANGE_VERSION_SA);
    queue_push(r, L, 0);
}

/* eng.patched(id, deprecated) -> bool (sdk-core patch semantics) */
static int prim_patched(lua_State *L) {
    engine_run *r = run_of(L);
    const char *id = luaL_checkstring(L, 1);
    bool deprecated = lua_toboolean(L, 2);
    check_not_closed(L, r, "workflow.patched");
    int i = patch_memo_find(r, id);
    if (i >= 0) {
        lua_pushboolean(L, r->patches[i].value);
        return 1;
    }
    bool value = true, emit = true;
    if (r->replaying) {
        bool found = false;
        for (size_t k = 0; k < r->n_upcoming; k++) {
            char pid[256];
            bool dep;
            if (patch_marker_info(r->upcoming[k], pid, sizeof pid, &dep) && strcmp(pid, id) == 0) {
                found = true;
                break;
            }
        }
        value = found || deprecated;
        emit = found;
    }
    if (r->n_patches == r->cap_patches) {
        size_t ncap = r->cap_patches ? r->cap_patches * 2 : 8;
        patch_memo *p = realloc(r->patches, ncap * sizeof *p);
        if (!p) return luaL_error(L, "out of memory");
        r->patches = p;
        r->cap_patches = ncap;
    }
    char *idc = lua_strdup_or_raise(L, id);
    r->patches[r->n_patches++] = (patch_memo){.id = idc, .value = value};
    if (emit) {
        Temporal__Api__Command__V1__RecordMarkerCommandAttributes *a = marker_begin(r, L, PATCH_MARKER);
        jbuf b;
        jbuf_init(&b, 4096);
        lua_pushstring(L, id);
        jerr e = {0};
        if (payload_lua_to_json(L, -1, &r->limits.payload, &b, &e) != 0) {
            jbuf_free(&b);
            return luaL_error(L, "workflow.patched: %s", e.msg);
        }
        lua_pop(L, 1);
        char json[700];
        snprintf(json, sizeof json, "{\"deprecated\":%s,\"id\":%s}", deprecated ? "true" : "false",
                 b.data ? b.data : "\"\"");
        jbuf_free(&b);
        marker_add_detail(L, a, PATCH_DETAILS_KEY, payloads_of_json(L, json));
        queue_push(r, L, 0);
        r->patches[r->n_patches - 1].marker = true;
        if (flag_use(r, ENGINE_FLAG_PATCH_UPSERT)) upsert_change_version(r, L);
    }
    lua_pushboolean(L, value);
    return 1;
}

/* The message of a size-limit failure this (replayed) task recorded, or NULL. */
static const char *recorded_size_failure(engine_run *r) {
    for (size_t k = 0; k < r->n_upcoming; k++) {
        const HistoryEvent *e = r->upcoming[k];
        /* the attributes are a oneof: trust them only when their case says so */
        if (e->event_type != ET(WORKFLOW_EXECUTION_FAILED) ||
            e->attributes_case != EV_ATTR(WORKFLOW_EXECUTION_FAILED) || !e->workflow_execution_failed_event_attributes)
            continue;
        const Failure *f = e->workflow_execution_failed_event_attributes->failure;
        if (f && f->failure_info_case == FAILURE_INFO(SERVER) && f->message &&
            strncmp(f->message, SIZE_FAILURE_PREFIX, strlen(SIZE_FAILURE_PREFIX)) == 0)
            return f->message;
    }
    return NULL;
}

/* eng.side_effect(fn) -> value */
static int prim_side_effect(lua_State *L) {
    engine_run *r = run_of(L);
    check_not_closed(L, r, "workflow.side_effect");
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int64_t seq = machine_new(r, M_OTHER);
    if (seq < 0) return luaL_error(L, "out of memory");
    char idjson[32];
    snprintf(idjson, sizeof idjson, "%" PRId64, machine_get(r, seq)->id);
    if (r->replaying) {
        for (size_t k = 0; k < r->n_upcoming; k++) {
            HistoryEvent *e = r->upcoming[k];
            if (e->event_type != ET(MARKER_RECORDED) ||
                strcmp(e->marker_recorded_event_attributes->marker_name, SIDE_EFFECT_MARKER) != 0)
                continue;
            Payloads *id = marker_detail(e, SIDE_EFFECT_ID_KEY);
            if (!id || id->n_payloads < 1 || id->payloads[0]->data.len != strlen(idjson) ||
                memcmp(id->payloads[0]->data.data, idjson, strlen(idjson)) != 0)
                continue;
            Payloads *data = marker_detail(e, SIDE_EFFECT_DATA_KEY);
            /* re-emit the same marker so matching sees the command */
            Temporal__Api__Command__V1__RecordMarkerCommandAttributes *a = marker_begin(r, L, SIDE_EFFECT_MARKER);
            marker_add_detail(L, a, SIDE_EFFECT_ID_KEY, payloads_of_json(L, idjson));
            Payloads *copy = payloads_new();
            if (!copy) return luaL_error(L, "out of memory");
            marker_add_detail(L, a, SIDE_EFFECT_DATA_KEY, copy);
            for (size_t j = 0; data && j < data->n_payloads; j++) {
                uint8_t *buf = NULL;
                size_t len = protobuf_c_message_get_packed_size(&data->payloads[j]->base);
                buf = malloc(len ? len : 1);
                if (!buf) return luaL_error(L, "out of memory");
                protobuf_c_message_pack(&data->payloads[j]->base, buf);
                Payload *pc = temporal__api__common__v1__payload__unpack(NULL, len, buf);
                free(buf);
                if (!pc || payloads_add(copy, pc) != 0) return luaL_error(L, "out of memory");
            }
            queue_push(r, L, seq);
            lua_settop(L, 0);
            return push_payloads(r, L, data, "a recorded side effect");
        }
        /* its result broke a size limit when it first ran: that failed the workflow */
        const char *sf = recorded_size_failure(r);
        if (sf) {
            r->size_failure = jstrdup(sf);
            return luaL_error(L, "%s", sf);
        }
        char msg[200];
        snprintf(msg, sizeof msg, "nondeterminism: workflow.side_effect #%" PRId64
                                  " has no recorded SideEffect marker in this workflow task", seq);
        return raise_at_user(L, msg, NULL);
    }
    lua_pushvalue(L, 1);
    lua_call(L, 0, 1);
    Payloads *ps = payloads_new();
    if (!ps) return luaL_error(L, "out of memory");
    jerr e = {0};
    Payload *p = payload_from_lua(L, -1, &r->limits.payload, &e);
    if (!p || payloads_add(ps, p) != 0) {
        protobuf_c_message_free_unpacked(&ps->base, NULL);
        if (p) protobuf_c_message_free_unpacked(&p->base, NULL);
        return raise_at_user(L, "workflow.side_effect: ", e.msg);
    }
    Temporal__Api__Command__V1__RecordMarkerCommandAttributes *a = marker_begin(r, L, SIDE_EFFECT_MARKER);
    marker_add_detail(L, a, SIDE_EFFECT_ID_KEY, payloads_of_json(L, idjson));
    marker_add_detail(L, a, SIDE_EFFECT_DATA_KEY, ps);
    queue_push(r, L, seq);
    return 1;
}

static int prim_upsert_search_attributes(lua_State *L) {
    engine_run *r = run_of(L);
    check_not_closed(L, r, "workflow.upsert_search_attributes");
    luaL_checktype(L, 1, LUA_TTABLE);
    Command *c = command_begin(r, L, CT(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES));
    Temporal__Api__Command__V1__UpsertWorkflowSearchAttributesCommandAttributes *a;
    ALLOC_MSG(L, a, Temporal__Api__Command__V1__UpsertWorkflowSearchAttributesCommandAttributes,
              temporal__api__command__v1__upsert_workflow_search_attributes_command_attributes__init);
    c->attributes_case = CMD_ATTR(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES);
    c->upsert_workflow_search_attributes_command_attributes = a;
    ALLOC_MSG(L, a->search_attributes, Temporal__Api__Common__V1__SearchAttributes,
              temporal__api__common__v1__search_attributes__init);
    Temporal__Api__Common__V1__SearchAttributes *sa = a->search_attributes;
    /* keys in canonical order so the command is the same on every replay */
    lua_newtable(L);
    int keys = lua_gettop(L);
    lua_Integer nk = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            return raise_at_user(L, "workflow.upsert_search_attributes: ", "keys must be strings");
        lua_pushvalue(L, -1);
        lua_rawseti(L, keys, ++nk);
    }
    uint64_t steps = 0;
    for (lua_Integer i = 1; i <= nk; i++) /* insertion sort: few keys (charged: a script may pass many) */
        for (lua_Integer j = i; j > 1; j--) {
            if (++steps % 1024 == 0) sandbox_charge(L, 1024);
            lua_rawgeti(L, keys, j - 1);
            lua_rawgeti(L, keys, j);
            bool swap = strcmp(lua_tostring(L, -2), lua_tostring(L, -1)) > 0;
            if (swap) {
                lua_rawseti(L, keys, j - 1);
                lua_rawseti(L, keys, j);
            } else {
                lua_pop(L, 2);
                break;
            }
        }
    if (nk > 0) {
        sa->indexed_fields = calloc((size_t)nk, sizeof *sa->indexed_fields);
        if (!sa->indexed_fields) return luaL_error(L, "out of memory");
    }
    for (lua_Integer i = 1; i <= nk; i++) {
        lua_rawgeti(L, keys, i);
        const char *k = lua_tostring(L, -1);
        Temporal__Api__Common__V1__SearchAttributes__IndexedFieldsEntry *e = malloc(sizeof *e);
        if (!e) return luaL_error(L, "out of memory");
        temporal__api__common__v1__search_attributes__indexed_fields_entry__init(e);
        sa->indexed_fields[sa->n_indexed_fields++] = e;
        e->key = lua_strdup_or_raise(L, k);
        lua_rawget(L, 1);
        jerr er = {0};
        e->value = payload_from_lua(L, -1, &r->limits.payload, &er);
        if (!e->value) return raise_at_user(L, "workflow.upsert_search_attributes: ", er.msg);
        lua_pop(L, 1);
    }
    queue_push(r, L, 0);
    return 0;
}

static int prim_now(lua_State *L) {
    engine_run *r = run_of(L);
    /* milliseconds, like every SDK's workflow clock */
    lua_pushnumber(L, (double)(r->now / 1000000) / 1000.0);
    return 1;
}

static int prim_time_iso(lua_State *L) {
    engine_run *r = run_of(L);
    int64_t ns = r->now;
    if (!lua_isnoneornil(L, 1)) {
        /* What int64 nanoseconds hold (years 1678 to 2261); beyond, or NaN,
         * the conversion below would overflow. */
        double secs = luaL_checknumber(L, 1);
        if (!(secs >= -9.2e9 && secs <= 9.2e9)) {
            char msg[160];
            snprintf(msg, sizeof msg, ": %g is not a time it can format (seconds since 1970, "
                     "from -9.2e9 to 9.2e9)", secs);
            return raise_at_user(L, "workflow.time_iso", msg);
        }
        ns = (int64_t)llround(secs * 1e3) * 1000000;
    }
    char buf[48];
    time_format_rfc3339(ns, buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

static int prim_uuid(lua_State *L) {
    engine_run *r = run_of(L);
    unsigned char b[16];
    uint64_t a = splitmix64(&r->uuid_state), c = splitmix64(&r->uuid_state);
    memcpy(b, &a, 8);
    memcpy(b + 8, &c, 8);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char out[37];
    snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    lua_pushstring(L, out);
    return 1;
}

static void set_str(lua_State *L, const char *k, const char *v) {
    /* pushlstring: lua_pushstring caches long strings by their C address,
     * so whether it allocates would differ between processes (see the
     * heap in sandbox.c) */
    if (!v) v = "";
    lua_pushlstring(L, v, strlen(v));
    lua_setfield(L, -2, k);
}

static int prim_info(lua_State *L) {
    engine_run *r = run_of(L);
    lua_createtable(L, 0, 12);
    set_str(L, "namespace", r->namespace_);
    set_str(L, "workflow_id", r->workflow_id);
    set_str(L, "run_id", r->run_id);
    set_str(L, "workflow_type", r->workflow_type);
    set_str(L, "task_queue", r->task_queue);
    set_str(L, "first_execution_run_id", r->first_run_id);
    set_str(L, "continued_run_id", r->continued_run_id);
    lua_pushinteger(L, r->attempt);
    lua_setfield(L, -2, "attempt");
    lua_pushnumber(L, (double)(r->start_time / 1000000) / 1000.0);
    lua_setfield(L, -2, "start_time");
    lua_pushinteger(L, r->wft_started_id);
    lua_setfield(L, -2, "history_length");
    set_str(L, "script_sha256", r->script_sha);
    set_str(L, "script", r->script_name);
    set_str(L, "backend", r->embedded ? "embedded" : "temporal");
    return 1;
}

static int prim_is_replaying(lua_State *L) {
    lua_pushboolean(L, run_of(L)->replaying);
    return 1;
}

static int prim_log(lua_State *L) {
    engine_run *r = run_of(L);
    const char *s = luaL_checkstring(L, 1);
    if (r->replaying) return 0;
    if (r->log_fn)
        r->log_fn(r->log_ud, r->workflow_id, s);
    else
        fprintf(stderr, "[%s] %s\n", r->workflow_id ? r->workflow_id : "workflow", s);
    return 0;
}

/* Length of a leading "[jorch]/file.lua:N: " position in msg, or 0. */
static size_t internal_prefix_len(const char *msg) {
    if (strncmp(msg, "[jorch]/", 8) != 0) return 0;
    const char *p = strstr(msg, ".lua:");
    if (!p) return 0;
    p += 5;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    if (p[0] != ':' || p[1] != ' ') return 0;
    return (size_t)(p + 2 - msg);
}

/* The message and stack of a failed workflow coroutine, as the user should
 * read them: an error raised inside jorch's own Lua (a wrong argument to a
 * workflow.* function) is reported at the script line that made the call,
 * not at "[jorch]/workflow.lua:331:", and jorch's own frames are left out
 * of the stack (they say nothing about the script). */
static int prim_traceback(lua_State *L) {
    lua_State *co = lua_tothread(L, 1);
    const char *msg = lua_tostring(L, 2);
    char text[1024];
    if (msg == NULL && !lua_isnoneornil(L, 2)) { /* an object: its __tostring, safely */
        sandbox_error_text(L, 2, text, sizeof text);
        msg = text;
    }
    if (!co) {
        lua_pushvalue(L, 2);
        return 1;
    }
    char where[256] = "?";
    size_t skip = msg ? internal_prefix_len(msg) : 0;
    if (skip > 0) user_where(co, where, sizeof where);
    luaL_traceback(L, co, NULL, 0);
    int tb_idx = lua_gettop(L);
    const char *tb = lua_tostring(L, tb_idx);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (msg) {
        size_t wl = strlen(where);
        /* the message may already name the user's line after the prefix */
        if (skip > 0 && strcmp(where, "?") != 0 &&
            !(strncmp(msg + skip, where, wl) == 0 && msg[skip + wl] == ':')) {
            luaL_addstring(&b, where);
            luaL_addstring(&b, ": ");
        }
        luaL_addstring(&b, msg + skip);
        luaL_addchar(&b, '\n');
    }
    /* every line except jorch's own frames */
    bool first = true;
    for (const char *line = tb; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        if (!(n >= 9 && strncmp(line, "\t[jorch]/", 9) == 0)) {
            if (!first) luaL_addchar(&b, '\n');
            luaL_addlstring(&b, line, n);
            first = false;
        }
        line = nl ? nl + 1 : NULL;
    }
    luaL_pushresult(&b);
    lua_remove(L, tb_idx);
    return 1;
}

/* eng.where(co): the script line a suspended coroutine waits at. */
static int prim_where(lua_State *L) {
    lua_State *co = lua_tothread(L, 1);
    char where[256];
    if (co)
        user_where(co, where, sizeof where);
    else
        snprintf(where, sizeof where, "?");
    lua_pushstring(L, where);
    return 1;
}

/* eng.machine_id(seq): the number in the command id (timer_id, default
 * activity_id) of the timer or activity started as seq, or nil. */
static int prim_machine_id(lua_State *L) {
    machine *m = machine_get(run_of(L), luaL_checkinteger(L, 1));
    if (!m) return 0;
    lua_pushinteger(L, m->id);
    return 1;
}

static const luaL_Reg primitives[] = {
    {"schedule_activity", prim_schedule_activity},
    {"start_timer", prim_start_timer},
    {"cancel_timer", prim_cancel_timer},
    {"cancel_activity", prim_cancel_activity},
    {"patched", prim_patched},
    {"side_effect", prim_side_effect},
    {"upsert_search_attributes", prim_upsert_search_attributes},
    {"now", prim_now},
    {"time_iso", prim_time_iso},
    {"uuid", prim_uuid},
    {"info", prim_info},
    {"is_replaying", prim_is_replaying},
    {"log", prim_log},
    {"traceback", prim_traceback},
    {"where", prim_where},
    {"machine_id", prim_machine_id},
    {NULL, NULL},
};

/* ------------------------------------------------------- protected calls */

typedef struct pcall_ctx {
    engine_run *r;
    int (*fn)(lua_State *L, engine_run *r, void *ud);
    void *ud;
} pcall_ctx;

static int pcall_tramp(lua_State *L) {
    pcall_ctx *c = lua_touserdata(L, 1);
    lua_remove(L, 1);
    return c->fn(L, c->r, c->ud);
}

/* Runs fn inside lua_pcall; a Lua error becomes a task failure in err. */
static int run_protected(engine_run *r, int (*fn)(lua_State *L, engine_run *r, void *ud), void *ud,
                         jerr *err) {
    lua_State *L = r->L;
    int top = lua_gettop(L);
    pcall_ctx c = {r, fn, ud};
    /* Work between activations (resolutions, signals, queries) gets limits
     * of its own, not the rest of an earlier activation's (long past) ones. */
    if (!r->in_activation) sandbox_begin_activation(r->sb);
    lua_pushcfunction(L, pcall_tramp);
    lua_pushlightuserdata(L, &c);
    int st = lua_pcall(L, 1, 0, 0);
    if (st != LUA_OK) {
        jerr lim = {0};
        if (sandbox_tripped(r->sb, &lim)) {
            jerr_set(err, JERR_FAILED, "%s", lim.msg);
        } else {
            char m[sizeof err->msg];
            sandbox_error_text(L, -1, m, sizeof m);
            jerr_set(err, JERR_FAILED, "%s", m);
        }
        lua_settop(L, top);
        discard_building(r);
        return -1;
    }
    lua_settop(L, top);
    return 0;
}

static void push_rt_fn(lua_State *L, engine_run *r, const char *name) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->rt_ref);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/* ------------------------------------------------------ failures <-> Lua */

static const char *timeout_type_name(int t) {
    switch (t) {
    case 1: return "START_TO_CLOSE";
    case 2: return "SCHEDULE_TO_START";
    case 3: return "SCHEDULE_TO_CLOSE";
    case 4: return "HEARTBEAT";
    default: return "UNSPECIFIED";
    }
}

static const char *retry_state_name(int s) {
    switch (s) {
    case 1: return "IN_PROGRESS";
    case 2: return "NON_RETRYABLE_FAILURE";
    case 3: return "TIMEOUT";
    case 4: return "MAXIMUM_ATTEMPTS_REACHED";
    case 5: return "RETRY_POLICY_NOT_SET";
    case 6: return "INTERNAL_SERVER_ERROR";
    case 7: return "CANCEL_REQUESTED";
    default: return "UNSPECIFIED";
    }
}

/* With flag 3, sets field `key` of the table on top to the list of the
 * payloads' values (heartbeat details of a timeout, details of a
 * cancellation): one element per payload. */
static void push_details_list(lua_State *L, engine_run *r, const Payloads *ps, const char *key) {
    if (!(r->flags & FLAG_BIT(ENGINE_FLAG_DETAILS_LIST)) || !ps || ps->n_payloads == 0) return;
    lua_newtable(L);
    int t = lua_gettop(L);
    int n = push_payloads(r, L, ps, key);
    for (int k = n; k >= 1; k--) lua_rawseti(L, t, k);
    lua_setfield(L, -2, key);
}

/* Pushes an error object (workflow.lua's error metatable) for a Failure. */
static void push_failure(lua_State *L, engine_run *r, const Failure *f, int depth) {
    luaL_checkstack(L, 8, "failure too deep");
    lua_createtable(L, 0, 8);
    const char *kind = "application";
    const char *type = "Error";
    if (f) {
        set_str(L, "message", f->message);
        if (f->stack_trace && *f->stack_trace) set_str(L, "stack_trace", f->stack_trace);
        switch (f->failure_info_case) {
        case FAILURE_INFO(APPLICATION):
            type = str_or(f->application_failure_info->type, "ApplicationError");
            lua_pushboolean(L, f->application_failure_info->non_retryable);
            lua_setfield(L, -2, "non_retryable");
            if (f->application_failure_info->details && f->application_failure_info->details->n_payloads) {
                if (r->flags & FLAG_BIT(ENGINE_FLAG_DETAILS_LIST)) {
                    /* details are a list of payloads: one list element each */
                    lua_newtable(L);
                    int t = lua_gettop(L);
                    int n = push_payloads(r, L, f->application_failure_info->details, "failure details");
                    for (int k = n; k >= 1; k--) lua_rawseti(L, t, k);
                } else {
                    int n = push_payloads(r, L, f->application_failure_info->details, "failure details");
                    if (n > 1) lua_pop(L, n - 1);
                }
                lua_setfield(L, -2, "details");
            }
            break;
        case FAILURE_INFO(TIMEOUT):
            type = "TimeoutError";
            set_str(L, "timeout_type", timeout_type_name(f->timeout_failure_info->timeout_type));
            push_details_list(L, r, f->timeout_failure_info->last_heartbeat_details, "last_heartbeat_details");
            break;
        case FAILURE_INFO(CANCELED):
            type = "CancelledError";
            kind = "cancelled";
            push_details_list(L, r, f->canceled_failure_info->details, "details");
            break;
        case FAILURE_INFO(TERMINATED):
            type = "TerminatedError";
            break;
        case FAILURE_INFO(SERVER):
            type = "ServerError";
            break;
        case FAILURE_INFO(ACTIVITY):
            type = "ActivityError";
            kind = "activity";
            break;
        default:
            break;
        }
        if (f->cause && depth < 16) {
            push_failure(L, r, f->cause, depth + 1);
            lua_setfield(L, -2, "cause");
        }
    }
    set_str(L, "type", type);
    /* rt.make_error(kind, t) sets the metatable */
    push_rt_fn(L, r, "make_error");
    lua_pushstring(L, kind);
    lua_pushvalue(L, -3);
    lua_call(L, 2, 0);
}

/* ----------------------------------------------------- events -> the script */

struct resolve_args {
    int64_t seq;
    const HistoryEvent *e;
};

static int do_resolve(lua_State *L, engine_run *r, void *ud) {
    struct resolve_args *a = ud;
    const HistoryEvent *e = a->e;
    push_rt_fn(L, r, "resolve");
    lua_pushinteger(L, a->seq);
    int nargs = 2;
    switch (e->event_type) {
    case ET(ACTIVITY_TASK_COMPLETED): {
        lua_pushboolean(L, 1);
        nargs += push_payloads(r, L, e->activity_task_completed_event_attributes->result, "an activity result");
        break;
    }
    case ET(TIMER_FIRED):
        lua_pushboolean(L, 1);
        break;
    case ET(ACTIVITY_TASK_FAILED):
    case ET(ACTIVITY_TASK_TIMED_OUT):
    case ET(ACTIVITY_TASK_CANCELED): {
        lua_pushboolean(L, 0);
        const Failure *cause = NULL;
        int retry_state = 0;
        const char *what = "failed";
        Failure canceled = TEMPORAL__API__FAILURE__V1__FAILURE__INIT;
        Temporal__Api__Failure__V1__CanceledFailureInfo cinfo =
            TEMPORAL__API__FAILURE__V1__CANCELED_FAILURE_INFO__INIT;
        if (e->event_type == ET(ACTIVITY_TASK_FAILED)) {
            cause = e->activity_task_failed_event_attributes->failure;
            retry_state = e->activity_task_failed_event_attributes->retry_state;
        } else if (e->event_type == ET(ACTIVITY_TASK_TIMED_OUT)) {
            cause = e->activity_task_timed_out_event_attributes->failure;
            retry_state = e->activity_task_timed_out_event_attributes->retry_state;
            what = "timed out";
        } else {
            canceled.message = (char *)"activity cancelled";
            canceled.failure_info_case = FAILURE_INFO(CANCELED);
            canceled.canceled_failure_info = &cinfo;
            /* what the activity (or the server) said: its last heartbeat details */
            cinfo.details = e->activity_task_canceled_event_attributes->details;
            cause = &canceled;
            what = "was cancelled";
        }
        lua_createtable(L, 0, 8);
        set_str(L, "type", "ActivityError");
        set_str(L, "retry_state", retry_state_name(retry_state));
        lua_pushinteger(L, a->seq);
        lua_setfield(L, -2, "activity_seq");
        char msg[256];
        snprintf(msg, sizeof msg, "activity %s", what);
        set_str(L, "message", msg);
        push_failure(L, r, cause, 0);
        lua_setfield(L, -2, "cause");
        push_rt_fn(L, r, "make_error");
        lua_pushstring(L, e->event_type == ET(ACTIVITY_TASK_CANCELED) ? "cancelled" : "activity");
        lua_pushvalue(L, -3);
        lua_call(L, 2, 0);
        nargs++; /* the error object */
        break;
    }
    default:
        lua_pushboolean(L, 1);
        break;
    }
    lua_call(L, nargs, 0);
    return 0;
}

static int do_signal(lua_State *L, engine_run *r, void *ud) {
    const Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *s = ud;
    push_rt_fn(L, r, "signal");
    lua_pushlstring(L, s->signal_name, strlen(s->signal_name)); /* not pushstring: see set_str */
    int n = push_payloads(r, L, s->input, "signal input");
    lua_call(L, 1 + n, 0);
    return 0;
}

static int do_cancel_request(lua_State *L, engine_run *r, void *ud) {
    const Temporal__Api__History__V1__WorkflowExecutionCancelRequestedEventAttributes *a = ud;
    push_rt_fn(L, r, "cancel_request");
    /* the reason given to `cancel --reason` (Temporal records it as the cause) */
    if (a && a->cause && *a->cause)
        lua_pushstring(L, a->cause);
    else
        lua_pushnil(L);
    lua_call(L, 1, 0);
    return 0;
}

/* --------------------------------------------------------- run set-up */

static int finder_bridge(void *ud, const char *name, char **src, size_t *len, char **chunkname, jerr *err) {
    engine_run *r = ud;
    if (!r->finder) return 1;
    return r->finder(r->finder_ud, name, src, len, chunkname, err);
}

static const struct lua_embedded *embedded(const char *name) {
    for (const struct lua_embedded *m = lua_embedded_modules; m->name; m++)
        if (strcmp(m->name, name) == 0) return m;
    return NULL;
}

/* Loads jorch.workflow with the primitives, then the script; keeps the
 * runtime table and the workflow function in the registry. */
static int do_setup(lua_State *L, engine_run *r, void *ud) {
    const struct lua_embedded *wf = embedded("jorch.workflow");
    if (!wf) return luaL_error(L, "internal error: jorch.workflow is not embedded in this binary");
    jerr e = {0};
    if (sandbox_load(r->sb, "[jorch]/workflow.lua", wf->src, wf->len, &e) != 0)
        return luaL_error(L, "internal error loading jorch.workflow: %s", e.msg);
    lua_createtable(L, 0, 16);
    lua_pushlightuserdata(L, r);
    luaL_setfuncs(L, primitives, 1);
    lua_call(L, 1, 2);
    /* rt.make_error is defined here so C can build error objects */
    r->rt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    sandbox_push_env(r->sb);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "workflow");
    lua_getfield(L, -2, "log");
    lua_setfield(L, -2, "print");
    lua_pop(L, 2);
    if (sandbox_preload(r->sb, "jorch.workflow", "[jorch]/workflow-module.lua", "return workflow", 15, &e) != 0)
        return luaL_error(L, "%s", e.msg);
    for (size_t i = 0; i < r->modules.n; i++) {
        const engine_bundle_module *m = &r->modules.m[i];
        if (sandbox_preload(r->sb, m->name, m->chunkname, m->src, m->len, &e) != 0) return luaL_error(L, "%s", e.msg);
    }
    if (sandbox_load(r->sb, r->script_name, r->script_src, r->script_len, &e) != 0)
        return luaL_error(L, "%s", e.msg);
    lua_call(L, 0, 1);
    if (lua_type(L, -1) != LUA_TFUNCTION)
        return luaL_error(L, "%s: the script must return its workflow function (it returned %s)",
                          r->script_name, luaL_typename(L, -1));
    r->main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int setup_sandbox(engine_run *r, uint64_t seed, jerr *err) {
    r->sb = sandbox_new(&r->limits, seed, finder_bridge, r, err);
    if (!r->sb) return -1;
    r->L = sandbox_state(r->sb);
    r->uuid_state = seed ^ UINT64_C(0x6a09e667f3bcc909);
    sandbox_begin_activation(r->sb);
    return run_protected(r, do_setup, NULL, err);
}

static int do_store_input(lua_State *L, engine_run *r, void *ud) {
    const Payloads *in = ud;
    lua_newtable(L);
    int t = lua_gettop(L);
    int n = push_payloads(r, L, in, "the workflow input");
    for (int i = n; i >= 1; i--) lua_rawseti(L, t, i);
    lua_pushinteger(L, n);
    lua_setfield(L, t, "n");
    r->input_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int on_started(engine_run *r, const HistoryEvent *e, jerr *err) {
    const Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *a =
        e->workflow_execution_started_event_attributes;
    if (!a) return jerr_set(err, JERR_FAILED, "history event 1 (WorkflowExecutionStarted) has no attributes");
    free(r->workflow_type);
    free(r->task_queue);
    free(r->first_run_id);
    free(r->original_run_id);
    free(r->continued_run_id);
    r->workflow_type = dup_or_empty(a->workflow_type ? a->workflow_type->name : "");
    r->task_queue = dup_or_empty(a->task_queue ? a->task_queue->name : "");
    r->first_run_id = dup_or_empty(a->first_execution_run_id);
    r->original_run_id = dup_or_empty(a->original_execution_run_id);
    r->continued_run_id = dup_or_empty(a->continued_execution_run_id);
    if (!r->workflow_type || !r->task_queue || !r->first_run_id || !r->original_run_id || !r->continued_run_id)
        return jerr_oom(err, "reading the start event");
    if ((!r->workflow_id || !*r->workflow_id) && a->workflow_id && *a->workflow_id) {
        free(r->workflow_id);
        r->workflow_id = jstrdup(a->workflow_id);
    }
    r->attempt = a->attempt;
    r->start_time = pb_timestamp_nanos(e->event_time);
    /* Which backend the run lives on, from history so replays agree: the
     * embedded store marks its start events with memo jorch.backend =
     * "embedded" (store.c, script_memo). Its runs from before that marker
     * have jorch.script without jorch.script_source (which only
     * `jorch start --temporal` records, cli_pin.c). Anything else is a run
     * a Temporal server started. */
    r->embedded = false;
    bool has_script = false, has_source = false, has_backend = false;
    if (a->memo)
        for (size_t i = 0; i < a->memo->n_fields; i++) {
            const Temporal__Api__Common__V1__Memo__FieldsEntry *f = a->memo->fields[i];
            if (!f || !f->key) continue;
            if (strcmp(f->key, "jorch.script") == 0) has_script = true;
            if (strcmp(f->key, "jorch.script_source") == 0) has_source = true;
            if (strcmp(f->key, "jorch.backend") == 0) {
                has_backend = true;
                r->embedded = f->value && f->value->data.len == 10 &&
                              memcmp(f->value->data.data, "\"embedded\"", 10) == 0;
            }
        }
    if (!has_backend) r->embedded = has_script && !has_source;
    /* sdk-core seeds workflow randomness from the original execution run id */
    const char *seed_src = *r->original_run_id ? r->original_run_id
                           : (r->run_id && *r->run_id) ? r->run_id
                           : (r->workflow_id ? r->workflow_id : "jorch");
    if (setup_sandbox(r, fnv1a(seed_src), err) != 0) return -1;
    /* The run's sandbox holds the script and its modules now: a cached run
     * need not keep a copy of their text too. */
    free(r->script_src);
    r->script_src = NULL;
    engine_bundle_free(&r->modules);
    return run_protected(r, do_store_input, a->input, err);
}

/* ------------------------------------------------------------ activation */

struct activation_result {
    int kind; /* 0 blocked, 1 complete, 2 fail, 3 cancelled, 4 continue-as-new, 5 task error */
};

static void failure_from_error(lua_State *L, engine_run *r, int idx, int depth, Failure **slot);

static char *field_str(lua_State *L, int t, const char *k) {
    lua_getfield(L, t, k);
    const char *s = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : "";
    char *d = jstrdup(s);
    lua_pop(L, 1);
    if (!d) luaL_error(L, "out of memory");
    return d;
}

/* A table read as a list of error details: a sequence (or empty). A map
 * such as {k = 1} is one detail. */
static bool is_list(lua_State *L, int idx) {
    if (!lua_istable(L, idx)) return false;
    if (lua_rawlen(L, idx) > 0) return true;
    int t = lua_absindex(L, idx);
    lua_pushnil(L);
    if (lua_next(L, t) == 0) return true;
    lua_pop(L, 2);
    return false;
}

/* Fills *slot with the Failure for an error object from workflow.lua
 * (fields type, message, non_retryable, details, cause). slot is already
 * part of r->building's tree and each piece is attached as soon as it is
 * allocated, so a Lua error half way (the script's __index or __tostring
 * may raise) frees what was built with the command. */
static void failure_from_error(lua_State *L, engine_run *r, int idx, int depth, Failure **slot) {
    idx = lua_absindex(L, idx);
    Failure *f = malloc(sizeof *f);
    if (!f) {
        luaL_error(L, "out of memory");
        return;
    }
    temporal__api__failure__v1__failure__init(f);
    *slot = f;
    f->source = jstrdup("jorch");
    if (!f->source) luaL_error(L, "out of memory");
    if (!lua_istable(L, idx)) {
        f->message = jstrdup(sandbox_tostring(L, idx));
        lua_pop(L, 1);
        if (!f->message) luaL_error(L, "out of memory");
        return;
    }
    f->message = field_str(L, idx, "message");
    f->stack_trace = field_str(L, idx, "stack_trace");
    Temporal__Api__Failure__V1__ApplicationFailureInfo *ai = malloc(sizeof *ai);
    if (!ai) {
        luaL_error(L, "out of memory");
        return;
    }
    temporal__api__failure__v1__application_failure_info__init(ai);
    f->failure_info_case = FAILURE_INFO(APPLICATION);
    f->application_failure_info = ai;
    ai->type = field_str(L, idx, "type");
    lua_getfield(L, idx, "non_retryable");
    ai->non_retryable = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, idx, "details");
    if (!lua_isnil(L, -1)) {
        jerr e = {0};
        if ((r->flags & FLAG_BIT(ENGINE_FLAG_DETAILS_LIST)) && is_list(L, -1))
            ai->details = payloads_from_table(r, L, -1, "error details");
        else
            ai->details = payloads_from_lua(L, lua_gettop(L), 1, &r->limits.payload, &e);
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "cause");
    if (lua_istable(L, -1) && depth < 16) failure_from_error(L, r, -1, depth + 1, &f->cause);
    lua_pop(L, 1);
}

static int do_activate(lua_State *L, engine_run *r, void *ud) {
    struct activation_result *res = ud;
    if (!r->main_started) {
        r->main_started = true;
        push_rt_fn(L, r, "start");
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->main_ref);
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->input_ref);
        lua_getfield(L, -1, "n");
        int n = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        luaL_checkstack(L, n + 2, "too many workflow arguments");
        int t = lua_gettop(L);
        for (int i = 1; i <= n; i++) lua_rawgeti(L, t, i);
        lua_remove(L, t);
        lua_call(L, 1 + n, 0);
    }
    push_rt_fn(L, r, "run");
    lua_call(L, 0, 2);
    const char *kind = lua_tostring(L, -2);
    if (!kind || strcmp(kind, "blocked") == 0) {
        res->kind = 0;
        return 0;
    }
    if (strcmp(kind, "task_error") == 0) {
        res->kind = 5;
        const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : sandbox_tostring(L, -1);
        return luaL_error(L, "%s", m);
    }
    if (strcmp(kind, "complete") == 0) {
        res->kind = 1;
        Command *c = command_begin(r, L, CT(COMPLETE_WORKFLOW_EXECUTION));
        Temporal__Api__Command__V1__CompleteWorkflowExecutionCommandAttributes *a;
        ALLOC_MSG(L, a, Temporal__Api__Command__V1__CompleteWorkflowExecutionCommandAttributes,
                  temporal__api__command__v1__complete_workflow_execution_command_attributes__init);
        c->attributes_case = CMD_ATTR(COMPLETE_WORKFLOW_EXECUTION);
        c->complete_workflow_execution_command_attributes = a;
        /* one result value, as in every Temporal SDK */
        lua_getfield(L, -1, "n");
        lua_Integer n = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (n > 0) {
            lua_rawgeti(L, -1, 1);
            jerr e = {0};
            a->result = payloads_from_lua(L, lua_gettop(L), 1, &r->limits.payload, &e);
            if (!a->result) return luaL_error(L, "%s: the workflow result cannot be encoded: %s", r->script_name, e.msg);
            lua_pop(L, 1);
        }
    } else if (strcmp(kind, "fail") == 0) {
        res->kind = 2;
        Command *c = command_begin(r, L, CT(FAIL_WORKFLOW_EXECUTION));
        Temporal__Api__Command__V1__FailWorkflowExecutionCommandAttributes *a;
        ALLOC_MSG(L, a, Temporal__Api__Command__V1__FailWorkflowExecutionCommandAttributes,
                  temporal__api__command__v1__fail_workflow_execution_command_attributes__init);
        c->attributes_case = CMD_ATTR(FAIL_WORKFLOW_EXECUTION);
        c->fail_workflow_execution_command_attributes = a;
        failure_from_error(L, r, -1, 0, &a->failure);
    } else if (strcmp(kind, "cancelled") == 0) {
        res->kind = 3;
        Command *c = command_begin(r, L, CT(CANCEL_WORKFLOW_EXECUTION));
        Temporal__Api__Command__V1__CancelWorkflowExecutionCommandAttributes *a;
        ALLOC_MSG(L, a, Temporal__Api__Command__V1__CancelWorkflowExecutionCommandAttributes,
                  temporal__api__command__v1__cancel_workflow_execution_command_attributes__init);
        c->attributes_case = CMD_ATTR(CANCEL_WORKFLOW_EXECUTION);
        c->cancel_workflow_execution_command_attributes = a;
    } else if (strcmp(kind, "continue_as_new") == 0) {
        res->kind = 4;
        Command *c = command_begin(r, L, CT(CONTINUE_AS_NEW_WORKFLOW_EXECUTION));
        Temporal__Api__Command__V1__ContinueAsNewWorkflowExecutionCommandAttributes *a;
        ALLOC_MSG(L, a, Temporal__Api__Command__V1__ContinueAsNewWorkflowExecutionCommandAttributes,
                  temporal__api__command__v1__continue_as_new_workflow_execution_command_attributes__init);
        c->attributes_case = CMD_ATTR(CONTINUE_AS_NEW_WORKFLOW_EXECUTION);
        c->continue_as_new_workflow_execution_command_attributes = a;
        ALLOC_MSG(L, a->workflow_type, Temporal__Api__Common__V1__WorkflowType,
                  temporal__api__common__v1__workflow_type__init);
        a->workflow_type->name = lua_strdup_or_raise(L, r->workflow_type);
        ALLOC_MSG(L, a->task_queue, Temporal__Api__Taskqueue__V1__TaskQueue,
                  temporal__api__taskqueue__v1__task_queue__init);
        a->task_queue->name = lua_strdup_or_raise(L, r->task_queue);
        a->task_queue->kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
        a->input = payloads_from_table(r, L, -1, "workflow.continue_as_new");
    } else {
        return luaL_error(L, "internal error: unknown outcome '%s'", kind);
    }
    queue_push(r, L, 0);
    r->closed = true;
    return 0;
}

/* The count hook cannot fire while a single library call runs in C (a
 * pathological string pattern can take hours), so a process-wide watchdog
 * thread is the last line of defence: an activation that overruns its
 * wall-clock limit by WATCHDOG_GRACE_S ends the process with a message
 * rather than hanging it. The run itself is left intact in its backend.
 * Runs execute in parallel (a worker's workflow task threads), so each
 * activation arms a deadline of its own: a node on its stack, listed while
 * it runs, that names its script and workflow. */
#define WATCHDOG_GRACE_S 10
typedef struct watch {
    int64_t deadline;          /* CLOCK_MONOTONIC nanos */
    char what[512];
    bool armed;
    struct watch *prev, *next;
} watch;
static pthread_mutex_t watchdog_mu = PTHREAD_MUTEX_INITIALIZER;
static watch *watchdog_armed;      /* the activations running now, under watchdog_mu */
static pthread_once_t watchdog_once = PTHREAD_ONCE_INIT;

static int64_t mono_nanos(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *watchdog_main(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
        int64_t now = mono_nanos();
        pthread_mutex_lock(&watchdog_mu);
        for (const watch *wd = watchdog_armed; wd != NULL; wd = wd->next) {
            if (now <= wd->deadline) continue;
            char msg[700];
            int n = snprintf(msg, sizeof msg,
                             "jorch: %s: a workflow task ran far past its wall-clock limit inside a single "
                             "library call (a pathological string pattern?); stopping this process. The run "
                             "is intact: fix the script, then resume it.\n", wd->what);
            if (n > 0) {
                ssize_t w = write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
                (void)w;
            }
            _exit(1);
        }
        pthread_mutex_unlock(&watchdog_mu);
    }
    return NULL;
}

static void watchdog_start(void) {
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &at, watchdog_main, NULL) != 0)
        jlog(JLOG_WARN, "cannot start the workflow watchdog thread; a stuck library call would hang");
    pthread_attr_destroy(&at);
}

static void watchdog_arm(engine_run *r, watch *wd) {
    wd->armed = false;
    if (r->limits.wall_clock_limit <= 0) return;
    pthread_once(&watchdog_once, watchdog_start);
    snprintf(wd->what, sizeof wd->what, "%s (workflow %s)", r->script_name, r->workflow_id ? r->workflow_id : "?");
    int64_t limit = (int64_t)(r->limits.wall_clock_limit * 1e9) + (int64_t)WATCHDOG_GRACE_S * 1000000000;
    wd->deadline = mono_nanos() + limit;
    pthread_mutex_lock(&watchdog_mu);
    wd->prev = NULL;
    wd->next = watchdog_armed;
    if (watchdog_armed != NULL) watchdog_armed->prev = wd;
    watchdog_armed = wd;
    wd->armed = true;
    pthread_mutex_unlock(&watchdog_mu);
}

static void watchdog_disarm(watch *wd) {
    if (!wd->armed) return;
    pthread_mutex_lock(&watchdog_mu);
    if (wd->prev != NULL)
        wd->prev->next = wd->next;
    else
        watchdog_armed = wd->next;
    if (wd->next != NULL) wd->next->prev = wd->prev;
    wd->armed = false;
    pthread_mutex_unlock(&watchdog_mu);
}

/* FailWorkflowExecution with the size failure (a ServerFailure, not
 * retryable, like the one a Temporal server records). */
static int do_size_failure(lua_State *L, engine_run *r, void *ud) {
    (void)ud;
    Command *c = command_begin(r, L, CT(FAIL_WORKFLOW_EXECUTION));
    Temporal__Api__Command__V1__FailWorkflowExecutionCommandAttributes *a;
    ALLOC_MSG(L, a, Temporal__Api__Command__V1__FailWorkflowExecutionCommandAttributes,
              temporal__api__command__v1__fail_workflow_execution_command_attributes__init);
    c->attributes_case = CMD_ATTR(FAIL_WORKFLOW_EXECUTION);
    c->fail_workflow_execution_command_attributes = a;
    ALLOC_MSG(L, a->failure, Failure, temporal__api__failure__v1__failure__init);
    Temporal__Api__Failure__V1__ServerFailureInfo *si;
    ALLOC_MSG(L, si, Temporal__Api__Failure__V1__ServerFailureInfo,
              temporal__api__failure__v1__server_failure_info__init);
    si->non_retryable = true;
    a->failure->failure_info_case = FAILURE_INFO(SERVER);
    a->failure->server_failure_info = si;
    a->failure->message = lua_strdup_or_raise(L, r->size_failure);
    a->failure->source = lua_strdup_or_raise(L, "jorch");
    /* not counted against the limits: it is the limit's own outcome */
    r->size_exempt = true;
    int rc = queue_push(r, L, 0);
    r->size_exempt = false;
    r->closed = true;
    return rc;
}

static int activate(engine_run *r, const HistoryEvent *started, bool replaying, HistoryEvent **upcoming,
                    size_t n_upcoming, engine_output *out, jerr *err) {
    if (r->closed) return 0;
    if (!r->sb) {
        out->failure = ENGINE_TASK_FAILED;
        return jerr_set(err, JERR_FAILED, "history has no WorkflowExecutionStarted event before event %" PRId64,
                        started->event_id);
    }
    r->now = pb_timestamp_nanos(started->event_time);
    r->wft_started_id = started->event_id;
    r->replaying = replaying;
    r->upcoming = upcoming;
    r->n_upcoming = n_upcoming;
    sandbox_set_replaying(r->sb, replaying);
    sandbox_begin_activation(r->sb);
    r->in_activation = true;
    r->task_bytes = 0;
    r->replay_unlimited = replaying && recorded_size_failure(r) == NULL;
    struct activation_result res = {0};
    watch wd;
    watchdog_arm(r, &wd);
    int rc = run_protected(r, do_activate, &res, err);
    watchdog_disarm(&wd);
    r->in_activation = false;
    r->upcoming = NULL;
    r->n_upcoming = 0;
    if (r->size_failure && !r->closed) {
        /* whatever the script did with the error: the workflow fails, as on a Temporal server */
        memset(err, 0, sizeof *err);
        rc = run_protected(r, do_size_failure, NULL, err);
    }
    jerr lim = {0};
    if (rc == 0 && !r->size_failure && sandbox_tripped(r->sb, &lim)) {
        /* the script swallowed the limit error: the task fails all the same */
        jerr_set(err, JERR_FAILED, "%s", lim.msg);
        rc = -1;
    }
    if (rc != 0) {
        out->failure = ENGINE_TASK_FAILED;
        jerr_prefix(err, "workflow task %" PRId64 " failed", started->event_id);
        err->code = JERR_FAILED;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- matching */

static bool is_command_event(int t) {
    switch (t) {
    case ET(ACTIVITY_TASK_SCHEDULED):
    case ET(ACTIVITY_TASK_CANCEL_REQUESTED):
    case ET(TIMER_STARTED):
    case ET(TIMER_CANCELED):
    case ET(MARKER_RECORDED):
    case ET(START_CHILD_WORKFLOW_EXECUTION_INITIATED):
    case ET(SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED):
    case ET(REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED):
    case ET(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES):
    case ET(WORKFLOW_PROPERTIES_MODIFIED):
    case ET(WORKFLOW_EXECUTION_COMPLETED):
    case ET(WORKFLOW_EXECUTION_FAILED):
    case ET(WORKFLOW_EXECUTION_CANCELED):
    case ET(WORKFLOW_EXECUTION_CONTINUED_AS_NEW):
    case ET(WORKFLOW_EXECUTION_UPDATE_ACCEPTED):
    case ET(WORKFLOW_EXECUTION_UPDATE_REJECTED):
    case ET(WORKFLOW_EXECUTION_UPDATE_COMPLETED):
    case ET(NEXUS_OPERATION_SCHEDULED):
    case ET(NEXUS_OPERATION_CANCEL_REQUESTED):
        return true;
    default:
        return false;
    }
}

static int event_for_command(int ct) {
    switch (ct) {
    case CT(SCHEDULE_ACTIVITY_TASK): return ET(ACTIVITY_TASK_SCHEDULED);
    case CT(REQUEST_CANCEL_ACTIVITY_TASK): return ET(ACTIVITY_TASK_CANCEL_REQUESTED);
    case CT(START_TIMER): return ET(TIMER_STARTED);
    case CT(CANCEL_TIMER): return ET(TIMER_CANCELED);
    case CT(COMPLETE_WORKFLOW_EXECUTION): return ET(WORKFLOW_EXECUTION_COMPLETED);
    case CT(FAIL_WORKFLOW_EXECUTION): return ET(WORKFLOW_EXECUTION_FAILED);
    case CT(CANCEL_WORKFLOW_EXECUTION): return ET(WORKFLOW_EXECUTION_CANCELED);
    case CT(CONTINUE_AS_NEW_WORKFLOW_EXECUTION): return ET(WORKFLOW_EXECUTION_CONTINUED_AS_NEW);
    case CT(RECORD_MARKER): return ET(MARKER_RECORDED);
    case CT(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES): return ET(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES);
    default: return -1;
    }
}

/* The last dot-separated segment, as sdk-go compares activity type names. */
static const char *last_segment(const char *s) {
    const char *d = strrchr(s, '.');
    return d ? d + 1 : s;
}

static void describe_event(const HistoryEvent *e, char *buf, size_t len) {
    const char *tn = event_type_name(e->event_type);
    switch (e->attributes_case) {
    case EV_ATTR(ACTIVITY_TASK_SCHEDULED): {
        const Temporal__Api__History__V1__ActivityTaskScheduledEventAttributes *a =
            e->activity_task_scheduled_event_attributes;
        snprintf(buf, len, "%" PRId64 " %s (activity '%s', id '%s')", e->event_id, tn,
                 a->activity_type ? a->activity_type->name : "", a->activity_id);
        return;
    }
    case EV_ATTR(TIMER_STARTED):
        snprintf(buf, len, "%" PRId64 " %s (timer '%s')", e->event_id, tn, e->timer_started_event_attributes->timer_id);
        return;
    case EV_ATTR(TIMER_CANCELED):
        snprintf(buf, len, "%" PRId64 " %s (timer '%s')", e->event_id, tn, e->timer_canceled_event_attributes->timer_id);
        return;
    case EV_ATTR(MARKER_RECORDED):
        snprintf(buf, len, "%" PRId64 " %s (marker '%s')", e->event_id, tn,
                 e->marker_recorded_event_attributes->marker_name);
        return;
    default:
        snprintf(buf, len, "%" PRId64 " %s", e->event_id, tn);
    }
}

static void describe_command(const Command *c, char *buf, size_t len) {
    const char *tn = command_type_name(c->command_type);
    switch (c->attributes_case) {
    case CMD_ATTR(SCHEDULE_ACTIVITY_TASK): {
        const Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *a =
            c->schedule_activity_task_command_attributes;
        snprintf(buf, len, "%s (activity '%s', id '%s')", tn, a->activity_type->name, a->activity_id);
        return;
    }
    case CMD_ATTR(START_TIMER):
        snprintf(buf, len, "%s (timer '%s')", tn, c->start_timer_command_attributes->timer_id);
        return;
    case CMD_ATTR(CANCEL_TIMER):
        snprintf(buf, len, "%s (timer '%s')", tn, c->cancel_timer_command_attributes->timer_id);
        return;
    case CMD_ATTR(RECORD_MARKER):
        snprintf(buf, len, "%s (marker '%s')", tn, c->record_marker_command_attributes->marker_name);
        return;
    default:
        snprintf(buf, len, "%s", tn);
    }
}

/* Key attributes must agree (protocol reference 5.5). */
static bool keys_match(engine_run *r, const Command *c, const HistoryEvent *e) {
    switch (c->command_type) {
    case CT(SCHEDULE_ACTIVITY_TASK): {
        const Temporal__Api__History__V1__ActivityTaskScheduledEventAttributes *a =
            e->activity_task_scheduled_event_attributes;
        const Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *ca =
            c->schedule_activity_task_command_attributes;
        if (!a || !a->activity_type) return false;
        return strcmp(a->activity_id, ca->activity_id) == 0 &&
               strcmp(last_segment(a->activity_type->name), last_segment(ca->activity_type->name)) == 0;
    }
    case CT(REQUEST_CANCEL_ACTIVITY_TASK):
        return e->activity_task_cancel_requested_event_attributes &&
               e->activity_task_cancel_requested_event_attributes->scheduled_event_id ==
                   c->request_cancel_activity_task_command_attributes->scheduled_event_id;
    case CT(START_TIMER):
        return e->timer_started_event_attributes &&
               strcmp(e->timer_started_event_attributes->timer_id, c->start_timer_command_attributes->timer_id) == 0;
    case CT(CANCEL_TIMER):
        return e->timer_canceled_event_attributes &&
               strcmp(e->timer_canceled_event_attributes->timer_id, c->cancel_timer_command_attributes->timer_id) == 0;
    case CT(RECORD_MARKER): {
        if (!e->marker_recorded_event_attributes) return false;
        const char *cm = c->record_marker_command_attributes->marker_name;
        if (strcmp(e->marker_recorded_event_attributes->marker_name, cm) != 0) return false;
        if (strcmp(cm, PATCH_MARKER) == 0) {
            /* the patch ids must agree too */
            HistoryEvent fake = *e;
            char a[256], b[256];
            bool da, db;
            if (!patch_marker_info(e, a, sizeof a, &da)) return false;
            Temporal__Api__History__V1__MarkerRecordedEventAttributes ma =
                TEMPORAL__API__HISTORY__V1__MARKER_RECORDED_EVENT_ATTRIBUTES__INIT;
            ma.marker_name = (char *)cm;
            ma.n_details = c->record_marker_command_attributes->n_details;
            ma.details = (Temporal__Api__History__V1__MarkerRecordedEventAttributes__DetailsEntry **)
                             c->record_marker_command_attributes->details;
            fake.marker_recorded_event_attributes = &ma;
            if (!patch_marker_info(&fake, b, sizeof b, &db)) return false;
            return strcmp(a, b) == 0;
        }
        return true;
    }
    default:
        (void)r;
        return true;
    }
}

static void bind_event(engine_run *r, const pending_cmd *p, const HistoryEvent *e) {
    machine *m = machine_get(r, p->seq);
    if (!m) return;
    if (p->cmd->command_type == CT(SCHEDULE_ACTIVITY_TASK) || p->cmd->command_type == CT(START_TIMER))
        m->event_id = e->event_id;
}

static pending_cmd *queue_front(engine_run *r) {
    while (r->q_head < r->q_len && r->queue[r->q_head].dropped) {
        pending_free(&r->queue[r->q_head]);
        r->q_head++;
    }
    return r->q_head < r->q_len ? &r->queue[r->q_head] : NULL;
}

static int match_event(engine_run *r, const HistoryEvent *e, engine_output *out, jerr *err) {
    pending_cmd *p = queue_front(r);
    char evd[400], cmdd[400];
    describe_event(e, evd, sizeof evd);
    bool dep = false;
    char pid[256];
    bool is_patch = patch_marker_info(e, pid, sizeof pid, &dep);
    if (!p || event_for_command(p->cmd->command_type) != (int)e->event_type || !keys_match(r, p->cmd, e)) {
        /* a deprecated patch marker with no patch call: skip it (sdk-core) */
        if (is_patch && dep && (!p || p->cmd->command_type != CT(RECORD_MARKER) || !keys_match(r, p->cmd, e))) {
            r->skipped_patch = true;
            return 0;
        }
        if (r->skipped_patch && e->event_type == ET(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES)) {
            r->skipped_patch = false;
            return 0;
        }
        out->failure = ENGINE_NONDETERMINISM;
        out->failed_event_id = e->event_id;
        if (!p)
            return jerr_set(err, JERR_FAILED,
                            "nondeterminism: history event %s has no matching command: the script produced "
                            "no further command in workflow task %" PRId64,
                            evd, r->wft_started_id);
        describe_command(p->cmd, cmdd, sizeof cmdd);
        return jerr_set(err, JERR_FAILED,
                        "nondeterminism at history event %s: the script produced %s at %s instead",
                        evd, cmdd, p->where);
    }
    r->skipped_patch = false;
    bind_event(r, p, e);
    pending_free(p);
    r->q_head++;
    return 0;
}

/* Commands the script produced that history does not have. */
static int unmatched_commands(engine_run *r, const HistoryEvent *next, engine_output *out, jerr *err) {
    pending_cmd *p = queue_front(r);
    if (!p) return 0;
    char cmdd[400], evd[400];
    describe_command(p->cmd, cmdd, sizeof cmdd);
    out->failure = ENGINE_NONDETERMINISM;
    if (r->gap_event_id != 0 || next) {
        /* name the first event where history went on without the command */
        if (r->gap_event_id != 0) {
            snprintf(evd, sizeof evd, "%s", r->gap_event);
            out->failed_event_id = r->gap_event_id;
        } else {
            describe_event(next, evd, sizeof evd);
            out->failed_event_id = next->event_id;
        }
        return jerr_set(err, JERR_FAILED,
                        "nondeterminism: the script produced %s at %s in workflow task %" PRId64
                        ", but history has no such command event (it continues with event %s)",
                        cmdd, p->where, r->wft_started_id, evd);
    }
    return jerr_set(err, JERR_FAILED,
                    "nondeterminism: the script produced %s at %s in workflow task %" PRId64
                    ", but history has no such command event",
                    cmdd, p->where, r->wft_started_id);
}

/* ---------------------------------------------------------------- feed */

static int on_resolution(engine_run *r, const HistoryEvent *e, int kind, int64_t sched_id, jerr *err,
                         engine_output *out) {
    int64_t seq = machine_by_event(r, kind, sched_id);
    if (seq == 0) {
        out->failure = ENGINE_NONDETERMINISM;
        out->failed_event_id = e->event_id;
        return jerr_set(err, JERR_FAILED,
                        "history event %" PRId64 " %s refers to event %" PRId64
                        ", which no command of this script started",
                        e->event_id, event_type_name(e->event_type), sched_id);
    }
    machine_get(r, seq)->done = true;
    struct resolve_args a = {seq, e};
    if (run_protected(r, do_resolve, &a, err) != 0) {
        out->failure = ENGINE_TASK_FAILED;
        return -1;
    }
    return 0;
}

/* The timer machine whose id is timer_id (the newest, should ids repeat). */
static int64_t timer_seq(engine_run *r, const char *timer_id) {
    char *end;
    long long v = strtoll(timer_id, &end, 10);
    if (*end != '\0' || v <= 0) return 0;
    for (size_t i = r->n_machines; i-- > 1;)
        if (r->machines[i].kind == M_TIMER && r->machines[i].id == v) return (int64_t)i;
    return 0;
}

/* Takes the runtime flags a WorkflowTaskCompleted event records. The run's
 * first completion also says who recorded the run: sdk-core based SDKs
 * (Python, TypeScript, .NET, Ruby) write their name and core's flags; jorch
 * writes "jorch"; jorch before flags wrote no metadata at all. */
static int read_flags(engine_run *r, const HistoryEvent *e, engine_output *out, jerr *err) {
    /* Read ahead of the check that each event carries its own attributes
     * (the event after WorkflowTaskStarted): trust the oneof case only. */
    const Temporal__Api__History__V1__WorkflowTaskCompletedEventAttributes *a =
        e->attributes_case == EV_ATTR(WORKFLOW_TASK_COMPLETED) ? e->workflow_task_completed_event_attributes : NULL;
    const Temporal__Api__Sdk__V1__WorkflowTaskCompletedMetadata *md = a ? a->sdk_metadata : NULL;
    if (!r->seen_completion) {
        /* jorch names itself in a run's first completion (and lists the
         * sdk-core flags whose behaviour it shares: engine_task_metadata) */
        bool named = md && md->sdk_name && *md->sdk_name;
        r->core_history = md && (named ? strcmp(md->sdk_name, ENGINE_SDK_NAME) != 0 : md->n_core_used_flags > 0);
        /* what sdk-core always does: ids per kind, details as payload lists */
        if (r->core_history) r->flags |= START_FLAGS;
    }
    if (!md) return 0;
    if (r->core_history) {
        for (size_t i = 0; i < md->n_core_used_flags; i++)
            if (md->core_used_flags[i] == CORE_FLAG_UPSERT_ON_PATCH) r->flags |= FLAG_BIT(ENGINE_FLAG_PATCH_UPSERT);
        return 0;
    }
    for (size_t i = 0; i < md->n_lang_used_flags; i++) {
        uint32_t f = md->lang_used_flags[i];
        if (f == 0 || f > ENGINE_FLAG_MAX) {
            out->failure = ENGINE_TASK_FAILED;
            out->failed_event_id = e->event_id;
            return jerr_set(err, JERR_FAILED,
                            "history event %" PRId64 " (WorkflowTaskCompleted) records runtime flag %" PRIu32
                            ", which this jorch (" JORCH_VERSION ", flags 1-%d) does not know: the run was "
                            "recorded by a newer jorch; run or replay it with that version",
                            e->event_id, f, (int)ENGINE_FLAG_MAX);
        }
        r->flags |= FLAG_BIT(f);
    }
    return 0;
}

/* A worker's record of the run's script version (a memo upsert that only
 * sets ENGINE_VERSION_MEMO_PREFIX keys): added by the worker, not produced
 * by the script, so no command matches it. */
static bool version_record(const HistoryEvent *e) {
    if (e->event_type != ET(WORKFLOW_PROPERTIES_MODIFIED) ||
        e->attributes_case != EV_ATTR(WORKFLOW_PROPERTIES_MODIFIED))
        return false;
    const Temporal__Api__History__V1__WorkflowPropertiesModifiedEventAttributes *a =
        e->workflow_properties_modified_event_attributes;
    if (!a || !a->upserted_memo ||
        a->upserted_memo->n_fields == 0)
        return false;
    const size_t plen = strlen(ENGINE_VERSION_MEMO_PREFIX);
    for (size_t i = 0; i < a->upserted_memo->n_fields; i++) {
        const char *k = a->upserted_memo->fields[i]->key;
        if (!k || strncmp(k, ENGINE_VERSION_MEMO_PREFIX, plen) != 0) return false;
    }
    return true;
}

static int handle_event(engine_run *r, HistoryEvent **events, size_t n, size_t i, engine_output *out, jerr *err) {
    HistoryEvent *e = events[i];
    if (version_record(e)) return 0;
    if (r->matching) {
        /* As in sdk-core, a task's command events run up to the next
         * WorkflowTaskStarted; the non-command events among them (what the
         * commands caused, or what arrived meanwhile) are applied as usual. */
        if (is_command_event(e->event_type)) return match_event(r, e, out, err);
        if (e->event_type == ET(WORKFLOW_TASK_STARTED)) {
            r->matching = false;
            if (unmatched_commands(r, e, out, err) != 0) return -1;
        } else if (r->gap_event_id == 0) {
            r->gap_event_id = e->event_id;
            describe_event(e, r->gap_event, sizeof r->gap_event);
        }
    }
    switch (e->event_type) {
    case ET(WORKFLOW_EXECUTION_STARTED):
        if (e->event_id != 1 || r->sb)
            return jerr_set(err, JERR_FAILED, "history event %" PRId64 ": WorkflowExecutionStarted must be event 1",
                            e->event_id);
        if (on_started(r, e, err) != 0) {
            out->failure = ENGINE_TASK_FAILED;
            return -1;
        }
        return 0;
    case ET(WORKFLOW_TASK_SCHEDULED):
        return 0;
    case ET(WORKFLOW_TASK_STARTED): {
        if (i + 1 < n) {
            HistoryEvent *next = events[i + 1];
            if (next->event_type == ET(WORKFLOW_TASK_COMPLETED)) {
                /* the flags this task ran with are in its completion */
                if (read_flags(r, next, out, err) != 0) return -1;
                /* lookahead (patches, side effects): up to the next task */
                size_t j = i + 2;
                while (j < n && events[j]->event_type != ET(WORKFLOW_TASK_STARTED)) j++;
                return activate(r, e, true, events + i + 2, j - (i + 2), out, err);
            }
            /* failed or timed out: this task's work was thrown away */
            return 0;
        }
        out->has_task = true;
        r->flags_new = 0;
        if (!r->seen_completion && !r->core_history) {
            /* a new run: it takes on every start flag now */
            r->flags_new = START_FLAGS & ~r->flags;
            r->flags |= r->flags_new;
        }
        if (activate(r, e, false, NULL, 0, out, err) != 0) return -1;
        out->first_task = !r->seen_completion;
        out->n_new_flags = 0;
        for (int f = 1; f <= ENGINE_FLAG_MAX; f++)
            if (r->flags_new & FLAG_BIT(f)) out->new_flags[out->n_new_flags++] = (uint32_t)f;
        /* the reply: everything queued and not dropped */
        size_t cnt = 0;
        for (size_t k = r->q_head; k < r->q_len; k++)
            if (!r->queue[k].dropped) cnt++;
        if (cnt > r->out_cap) {
            Command **oc = realloc(r->out_cmds, cnt * sizeof *oc);
            if (!oc) return jerr_oom(err, "collecting commands");
            r->out_cmds = oc;
            r->out_cap = cnt;
        }
        out->n_commands = 0;
        for (size_t k = r->q_head; k < r->q_len; k++)
            if (!r->queue[k].dropped) r->out_cmds[out->n_commands++] = r->queue[k].cmd;
        out->commands = r->out_cmds;
        return 0;
    }
    case ET(WORKFLOW_TASK_COMPLETED):
        if (read_flags(r, e, out, err) != 0) return -1;
        r->seen_completion = true;
        r->matching = true;
        r->gap_event_id = 0;
        return 0;
    case ET(WORKFLOW_TASK_FAILED):
    case ET(WORKFLOW_TASK_TIMED_OUT):
        if (queue_front(r)) {
            /* this object ran the task that failed; its coroutines moved on */
            out->failure = ENGINE_TASK_FAILED;
            return jerr_set(err, JERR_FAILED,
                            "workflow task %" PRId64 " failed after this run object executed it: rebuild the "
                            "run from its full history",
                            e->event_id);
        }
        return 0;
    case ET(ACTIVITY_TASK_STARTED):
        return 0;
    case ET(ACTIVITY_TASK_COMPLETED):
        return on_resolution(r, e, M_ACTIVITY, e->activity_task_completed_event_attributes->scheduled_event_id, err, out);
    case ET(ACTIVITY_TASK_FAILED):
        return on_resolution(r, e, M_ACTIVITY, e->activity_task_failed_event_attributes->scheduled_event_id, err, out);
    case ET(ACTIVITY_TASK_TIMED_OUT):
        return on_resolution(r, e, M_ACTIVITY, e->activity_task_timed_out_event_attributes->scheduled_event_id, err, out);
    case ET(ACTIVITY_TASK_CANCELED):
        return on_resolution(r, e, M_ACTIVITY, e->activity_task_canceled_event_attributes->scheduled_event_id, err, out);
    case ET(TIMER_FIRED): {
        int64_t seq = timer_seq(r, e->timer_fired_event_attributes->timer_id);
        machine *m = machine_get(r, seq);
        if (!m || m->kind != M_TIMER) {
            out->failure = ENGINE_NONDETERMINISM;
            out->failed_event_id = e->event_id;
            return jerr_set(err, JERR_FAILED,
                            "history event %" PRId64 " TimerFired names timer '%s', which this script never started",
                            e->event_id, e->timer_fired_event_attributes->timer_id);
        }
        m->done = true;
        struct resolve_args ra = {seq, e};
        if (run_protected(r, do_resolve, &ra, err) != 0) {
            out->failure = ENGINE_TASK_FAILED;
            return -1;
        }
        return 0;
    }
    case ET(WORKFLOW_EXECUTION_SIGNALED):
        if (!r->sb) return jerr_set(err, JERR_FAILED, "signal before the workflow started");
        /* a backend's record of a version change, not the script's business */
        if (e->workflow_execution_signaled_event_attributes->signal_name &&
            strcmp(e->workflow_execution_signaled_event_attributes->signal_name, ENGINE_UPGRADE_SIGNAL) == 0)
            return 0;
        if (run_protected(r, do_signal, e->workflow_execution_signaled_event_attributes, err) != 0) {
            out->failure = ENGINE_TASK_FAILED;
            return -1;
        }
        return 0;
    case ET(WORKFLOW_EXECUTION_CANCEL_REQUESTED):
        if (run_protected(r, do_cancel_request, (void *)e->workflow_execution_cancel_requested_event_attributes,
                          err) != 0) {
            out->failure = ENGINE_TASK_FAILED;
            return -1;
        }
        return 0;
    case ET(WORKFLOW_EXECUTION_TERMINATED):
    case ET(WORKFLOW_EXECUTION_TIMED_OUT):
        r->closed = true;
        return 0;
    default:
        break;
    }
    if (is_command_event(e->event_type)) {
        /* a command event outside a completed task's batch: nothing produced it */
        return match_event(r, e, out, err);
    }
    if (e->worker_may_ignore) return 0;
    out->failure = ENGINE_TASK_FAILED;
    out->failed_event_id = e->event_id;
    return jerr_set(err, JERR_FAILED,
                    "history event %" PRId64 " has type %s, which jorch's engine does not handle "
                    "(child workflows, external signals, updates and Nexus are not supported yet)",
                    e->event_id, event_type_name(e->event_type));
}

/* The oneof field each event type must carry (protocol reference, section
 * 2: not event_type + 5 everywhere); 0 for types this table does not know. */
static int expected_attributes(int type) {
    if (type >= 1 && type <= 14) return type + 5;
    switch (type) {
    case 15: return 22;
    case 16: return 23;
    case 17: return 20;
    case 18: return 21;
    case 19: return 24;
    case 20: return 28;
    case 21: return 29;
    case 22: return 30;
    case 23: return 31;
    case 24: return 32;
    case 25: return 25;
    case 26: return 26;
    case 27: return 27;
    case 28: return 33;
    case 46: return 51;
    default: return (type >= 29 && type <= 40) ? type + 5 : 0;
    }
}

int engine_run_feed(engine_run *r, HistoryEvent **events, size_t n, engine_output *out, jerr *err) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        HistoryEvent *e = events[i];
        if (!e || e->event_id != r->last_event_id + 1) {
            out->failure = ENGINE_TASK_FAILED;
            return jerr_set(err, JERR_FAILED, "history events out of order: expected event %" PRId64 ", got %" PRId64,
                            r->last_event_id + 1, e ? e->event_id : -1);
        }
        int want = expected_attributes(e->event_type);
        /* a server always sends a known event's attributes; a damaged history
         * might not, and nothing below may trust it then */
        if (want != 0 && (int)e->attributes_case != want) {
            out->failure = ENGINE_TASK_FAILED;
            out->failed_event_id = e->event_id;
            return jerr_set(err, JERR_FAILED, "history event %" PRId64 " (%s) does not carry its attributes: "
                            "the history is damaged", e->event_id, event_type_name(e->event_type));
        }
        r->last_event_id = e->event_id;
        if (handle_event(r, events, n, i, out, err) != 0) {
            if (!out->failure) out->failure = ENGINE_TASK_FAILED;
            if (err && err->code == JERR_OK) err->code = JERR_FAILED;
            return -1;
        }
    }
    return 0;
}

int engine_run_check_end(engine_run *r, engine_output *out, jerr *err) {
    memset(out, 0, sizeof *out);
    if (r->matching) {
        r->matching = false;
        return unmatched_commands(r, NULL, out, err);
    }
    return 0;
}

/* ------------------------------------------------------------- queries */

struct query_args {
    const char *name;
    const Payloads *args;
    Payloads *answer;
};

static int do_query(lua_State *L, engine_run *r, void *ud) {
    struct query_args *q = ud;
    if (strcmp(q->name, "__stack_trace") == 0) {
        push_rt_fn(L, r, "stack_trace");
        lua_call(L, 0, 1);
    } else if (strcmp(q->name, ENGINE_SIGNAL_CHECK_QUERY) == 0) {
        push_rt_fn(L, r, "signal_check");
        int n = push_payloads(r, L, q->args, "signal check arguments");
        lua_call(L, n, 1);
    } else if (strcmp(q->name, ENGINE_STATUS_QUERY) == 0) {
        push_rt_fn(L, r, "status");
        lua_call(L, 0, 1);
    } else {
        push_rt_fn(L, r, "query");
        lua_pushlstring(L, q->name, strlen(q->name)); /* not pushstring: see set_str */
        int n = push_payloads(r, L, q->args, "query arguments");
        lua_call(L, 1 + n, 1);
    }
    jerr e = {0};
    q->answer = payloads_from_lua(L, lua_gettop(L), 1, &r->limits.payload, &e);
    if (!q->answer) return luaL_error(L, "the query result cannot be encoded: %s", e.msg);
    return 0;
}

int engine_run_query(engine_run *r, const char *name, const Payloads *args, Payloads **answer, jerr *err) {
    *answer = NULL;
    if (id_check("query name", name, ID_MAX_BYTES, err) != 0) return -1;
    if (!r->sb || !r->main_started)
        return jerr_set(err, JERR_FAILED, "query '%s': the workflow has not started running yet", name);
    sandbox_begin_activation(r->sb);
    struct query_args q = {name, args, NULL};
    bool was = r->replaying;
    r->replaying = true; /* queries never log */
    int rc = run_protected(r, do_query, &q, err);
    r->replaying = was;
    if (rc != 0) {
        jerr_prefix(err, "query '%s' failed", name);
        return -1;
    }
    *answer = q.answer;
    return 0;
}

/* ------------------------------------------------------------- lifetime */

engine_run *engine_run_new(const engine_run_config *cfg, jerr *err) {
    /* compile now so a syntax error is reported before any history is
     * touched; the bytecode is kept for the run's sandbox (sandbox_compile) */
    if (sandbox_compile(cfg->script_name, cfg->script_src, cfg->script_len, err) != 0) return NULL;
    engine_run *r = calloc(1, sizeof *r);
    if (!r) {
        jerr_oom(err, "creating a run");
        return NULL;
    }
    r->script_name = jstrdup(cfg->script_name);
    r->script_src = jstrndup(cfg->script_src, cfg->script_len);
    r->script_len = cfg->script_len;
    sha256_hex(cfg->script_src, cfg->script_len, r->script_sha);
    r->namespace_ = dup_or_empty(cfg->namespace_);
    r->workflow_id = dup_or_empty(cfg->workflow_id);
    r->run_id = dup_or_empty(cfg->run_id);
    r->limits = cfg->limits.memory_limit ? cfg->limits : engine_limits_default();
    r->finder = cfg->finder;
    r->finder_ud = cfg->finder_ud;
    for (size_t i = 0; cfg->modules && i < cfg->modules->n; i++) {
        const engine_bundle_module *m = &cfg->modules->m[i];
        if (engine_bundle_add(&r->modules, m->name, m->chunkname, m->src, m->len, err) != 0) {
            engine_run_free(r);
            return NULL;
        }
    }
    r->log_fn = cfg->log_fn;
    r->log_ud = cfg->log_ud;
    r->rt_ref = r->main_ref = r->input_ref = LUA_NOREF;
    if (!r->script_name || !r->script_src || !r->namespace_ || !r->workflow_id || !r->run_id) {
        engine_run_free(r);
        jerr_oom(err, "creating a run");
        return NULL;
    }
    return r;
}

void engine_run_free(engine_run *r) {
    if (!r) return;
    queue_clear(r);
    discard_building(r);
    if (r->sb) sandbox_free(r->sb);
    free(r->queue);
    free(r->machines);
    free(r->out_cmds);
    for (size_t i = 0; i < r->n_patches; i++) free(r->patches[i].id);
    free(r->patches);
    free(r->script_name);
    free(r->script_src);
    engine_bundle_free(&r->modules);
    free(r->namespace_);
    free(r->workflow_id);
    free(r->run_id);
    free(r->workflow_type);
    free(r->task_queue);
    free(r->first_run_id);
    free(r->original_run_id);
    free(r->continued_run_id);
    free(r->size_failure);
    free(r);
}

bool engine_run_closed(const engine_run *r) { return r->closed; }

size_t engine_run_memory(const engine_run *r) { return r->sb ? sandbox_memory_used(r->sb) : 0; }

/* ------------------------------------------------- free names (check) */

typedef struct global_use {
    int kind, line;
    char *name, *lib;
    const char *chunk;
} global_use;

typedef struct global_uses {
    global_use *v;
    size_t n, cap;
    const char *chunk; /* the chunk being scanned */
    bool oom;
} global_uses;

#define MAX_GLOBAL_USES 200000 /* beyond this, later uses go unchecked */

static void collect_use(void *ud, int kind, const char *name, const char *lib, int line) {
    global_uses *u = ud;
    if (u->oom || u->n >= MAX_GLOBAL_USES) return;
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 256;
        global_use *v = realloc(u->v, cap * sizeof *v);
        if (!v) {
            u->oom = true;
            return;
        }
        u->v = v;
        u->cap = cap;
    }
    global_use *g = &u->v[u->n];
    g->kind = kind;
    g->line = line;
    g->chunk = u->chunk;
    g->name = jstrdup(name);
    g->lib = lib ? jstrdup(lib) : NULL;
    if (!g->name || (lib && !g->lib)) {
        free(g->name);
        free(g->lib);
        u->oom = true;
        return;
    }
    u->n++;
}

typedef struct chunk_src {
    char *name;
    const char *src;
    size_t len;
} chunk_src;

typedef struct chunk_list {
    chunk_src v[64]; /* the script and the modules it requires at load time */
    size_t n;
} chunk_list;

static void add_required(void *ud, const char *name, const char *chunkname, const char *src, size_t len) {
    (void)name;
    chunk_list *l = ud;
    /* jorch's own modules are not the user's to fix */
    if (l->n >= sizeof l->v / sizeof l->v[0] || strncmp(chunkname, "[jorch]", 7) == 0) return;
    l->v[l->n++] = (chunk_src){(char *)chunkname, src, len};
}

/* field lib.name (lib NULL: the global name) of the run's environment is set */
static bool env_has(lua_State *L, sandbox *sb, const char *lib, const char *name) {
    sandbox_push_env(sb);
    if (lib) {
        lua_pushstring(L, lib);
        if (lua_rawget(L, -2) != LUA_TTABLE) {
            lua_pop(L, 2);
            return true; /* not a library table: nothing to say about its fields */
        }
        lua_remove(L, -2);
    }
    lua_pushstring(L, name);
    bool has = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return has;
}

/* t[key] is set, for the set tables of do_judge_names */
static bool set_has(lua_State *L, int t, const char *key) {
    lua_pushstring(L, key);
    bool has = lua_rawget(L, t) != LUA_TNIL;
    lua_pop(L, 1);
    return has;
}

static void set_add(lua_State *L, int t, const char *key) {
    lua_pushstring(L, key);
    lua_pushboolean(L, 1);
    lua_rawset(L, t);
}

typedef struct judge_ctx {
    const global_uses *u;
    jbuf *out;
    size_t found, shown;
} judge_ctx;

/* Runs protected (Lua tables as sets): writes the reports to ctx->out. */
static int do_judge_names(lua_State *L, engine_run *r, void *ud) {
    judge_ctx *c = ud;
    const global_uses *u = c->u;
    lua_newtable(L); /* names the script defines: global writes, and t.name = v (t may be _G) */
    int written = lua_gettop(L);
    lua_newtable(L); /* "kind line chunk name" already reported */
    int seen = lua_gettop(L);
    bool dynamic = false;
    for (size_t i = 0; i < u->n; i++) {
        const global_use *g = &u->v[i];
        if (g->kind == ENGINE_GLOBAL_WRITE || g->kind == ENGINE_GLOBAL_FIELD_WRITE) set_add(L, written, g->name);
        if (g->kind == ENGINE_GLOBAL_ENV_VALUE ||
            (g->kind == ENGINE_GLOBAL_READ && (strcmp(g->name, "_G") == 0 || strcmp(g->name, "load") == 0)))
            dynamic = true;
    }
    for (size_t i = 0; i < u->n; i++) {
        const global_use *g = &u->v[i];
        const char *hint = NULL;
        if (g->kind == ENGINE_GLOBAL_READ) {
            hint = sandbox_forbidden_hint(NULL, g->name);
            if ((!hint && dynamic) || env_has(L, r->sb, NULL, g->name) || set_has(L, written, g->name)) continue;
        } else if (g->kind == ENGINE_GLOBAL_LIB_FIELD) {
            hint = sandbox_forbidden_hint(g->lib, g->name);
            if (!hint || env_has(L, r->sb, g->lib, g->name) || set_has(L, written, g->name)) continue;
        } else {
            continue;
        }
        lua_pushfstring(L, "%d %d %s %s", g->kind, g->line, g->chunk, g->name);
        const char *key = lua_tostring(L, -1);
        bool dup = set_has(L, seen, key);
        if (!dup) set_add(L, seen, key);
        lua_pop(L, 1);
        if (dup) continue;
        c->found++;
        if (c->shown >= 12) continue;
        c->shown++;
        if (c->shown > 1) jbuf_putc(c->out, '\n');
        if (g->kind == ENGINE_GLOBAL_LIB_FIELD)
            jbuf_printf(c->out, "%s:%d: %s.%s is not available in workflows %s", g->chunk, g->line, g->lib,
                        g->name, hint);
        else if (hint)
            jbuf_printf(c->out, "%s:%d: '%s' is not available in workflows %s", g->chunk, g->line, g->name, hint);
        else
            jbuf_printf(c->out, "%s:%d: '%s' is not defined: not a local, and neither the sandbox nor the script "
                        "defines a global of that name (a typo, or a missing 'local'?)", g->chunk, g->line,
                        g->name);
    }
    return 0;
}

/* Reports, in err, the globals that the script (and the modules it loaded)
 * reads but the sandbox does not have and the script never defines; -1 when
 * there are any. Conservative: when the script can define globals out of
 * sight (_ENV or _G as a value, load), only the names workflows may not use
 * (os, io, ...) are reported. */
static int check_free_names(engine_run *r, jerr *err) {
    chunk_list chunks = {.n = 0};
    chunks.v[chunks.n++] = (chunk_src){r->script_name, r->script_src, r->script_len};
    sandbox_each_required(r->sb, add_required, &chunks);
    global_uses u = {0};
    for (size_t i = 0; i < chunks.n; i++) {
        u.chunk = chunks.v[i].name;
        jerr e = {0};
        /* < 0: does not compile (it did in the sandbox a moment ago); > 0:
         * a Lua whose compiled form the scanner does not read: nothing to say */
        engine_globals_scan(chunks.v[i].name, chunks.v[i].src, chunks.v[i].len, collect_use, &u, &e);
    }
    int rc = 0;
    jbuf out;
    jbuf_init(&out, sizeof err->msg * 4);
    judge_ctx c = {&u, &out, 0, 0};
    if (u.oom) {
        rc = jerr_oom(err, "checking the script's global names");
    } else if (u.n > 0) {
        sandbox_begin_activation(r->sb);
        rc = run_protected(r, do_judge_names, &c, err);
    }
    if (rc == 0 && c.found > 0) {
        if (c.found > c.shown) jbuf_printf(&out, "\n... and %zu more", c.found - c.shown);
        rc = jerr_set(err, JERR_FAILED, "%s", out.data ? out.data : "global names not available in workflows");
        /* jerr's buffer is bounded: say so when the list did not fit */
        if (out.len >= sizeof err->msg - 1) snprintf(err->msg + sizeof err->msg - 32, 32, "\n... (and more)");
    }
    jbuf_free(&out);
    for (size_t i = 0; i < u.n; i++) {
        free(u.v[i].name);
        free(u.v[i].lib);
    }
    free(u.v);
    return rc;
}

int engine_check_script(const char *script_name, const char *src, size_t len, engine_module_finder finder,
                        void *finder_ud, jerr *err) {
    engine_run_config cfg = {
        .script_name = script_name, .script_src = src, .script_len = len,
        .limits = engine_limits_default(), .finder = finder, .finder_ud = finder_ud,
        .workflow_id = "check", .run_id = "check",
    };
    engine_run *r = engine_run_new(&cfg, err);
    if (!r) return -1;
    int rc = setup_sandbox(r, fnv1a("check"), err);
    if (rc == 0) rc = check_free_names(r, err);
    engine_run_free(r);
    return rc;
}

typedef struct default_id_ctx {
    const Payloads *input;
    char *id;
    size_t idlen;
} default_id_ctx;

static int do_default_id(lua_State *L, engine_run *r, void *ud) {
    default_id_ctx *c = ud;
    push_rt_fn(L, r, "default_id");
    int n = push_payloads(r, L, c->input, "the workflow input");
    lua_call(L, n, 1);
    if (lua_isnil(L, -1)) return 0;
    size_t len = 0;
    const char *id = lua_tolstring(L, -1, &len);
    if (len == 0) return 0; /* "" means: no default, like nil */
    if (strlen(id) != len)
        return luaL_error(L, "it returned an id that contains a NUL byte (at byte %d)",
                          (int)strlen(id));
    if (len >= c->idlen)
        return luaL_error(L, "it returned an id of %I bytes; the limit is %d bytes",
                          (lua_Integer)len, (int)(c->idlen - 1));
    memcpy(c->id, id, len + 1);
    return 0;
}

int engine_start_check(const char *script_name, const char *src, size_t len, engine_module_finder finder,
                       void *finder_ud, const Payloads *input, char *id, size_t idlen, jerr *err) {
    if (idlen == 0) return jerr_set(err, JERR_INTERNAL, "engine_start_check: no room for the id");
    id[0] = '\0';
    engine_run_config cfg = {
        .script_name = script_name, .script_src = src, .script_len = len,
        .limits = engine_limits_default(), .finder = finder, .finder_ud = finder_ud,
        .workflow_id = "start", .run_id = "start",
    };
    engine_run *r = engine_run_new(&cfg, err);
    if (!r) return -1;
    int rc = setup_sandbox(r, fnv1a("start"), err);
    if (rc == 0) {
        sandbox_begin_activation(r->sb);
        default_id_ctx c = {input, id, idlen};
        rc = run_protected(r, do_default_id, &c, err);
        if (rc != 0) {
            id[0] = '\0';
            /* the fix is in the script or --id: no hint at this command's options */
            jerr_prefix(err, "%s: workflow.default_id gave no usable id for this input", script_name);
            size_t n = strlen(err->msg);
            snprintf(err->msg + n, sizeof err->msg - n, ". Fix the function (it gets the workflow's arguments), or "
                     "give the run an id with --id ID");
        }
    }
    engine_run_free(r);
    return rc;
}

int engine_find_module_in_dir(void *ud, const char *name, char **src, size_t *len, char **chunkname,
                              jerr *err) {
    const char *dir = ud ? ud : ".";
    char rel[512];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof rel - 5)
        return jerr_set(err, JERR_USAGE, "module name '%s' is empty or too long", name);
    for (size_t i = 0; i <= n; i++) rel[i] = name[i] == '.' ? '/' : name[i];
    char path[1100];
    snprintf(path, sizeof path, "%s/%s.lua", dir, rel);
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    fclose(f);
    if (file_read_all(path, 16u << 20, src, len, err) != 0) return -1;
    *chunkname = jstrdup(path);
    if (!*chunkname) {
        free(*src);
        *src = NULL;
        return jerr_oom(err, "loading a module");
    }
    return 0;
}

int engine_task_metadata(const engine_output *out, Temporal__Api__Sdk__V1__WorkflowTaskCompletedMetadata **md,
                         jerr *err) {
    *md = NULL;
    if (!out->first_task && out->n_new_flags == 0) return 0;
    Temporal__Api__Sdk__V1__WorkflowTaskCompletedMetadata *m = malloc(sizeof *m);
    if (!m) return jerr_oom(err, "recording runtime flags");
    temporal__api__sdk__v1__workflow_task_completed_metadata__init(m);
    if (out->n_new_flags) {
        m->lang_used_flags = malloc(out->n_new_flags * sizeof *m->lang_used_flags);
        m->core_used_flags = malloc(out->n_new_flags * sizeof *m->core_used_flags);
        if (!m->lang_used_flags || !m->core_used_flags) {
            free(m->lang_used_flags);
            free(m->core_used_flags);
            free(m);
            return jerr_oom(err, "recording runtime flags");
        }
        memcpy(m->lang_used_flags, out->new_flags, out->n_new_flags * sizeof *m->lang_used_flags);
        m->n_lang_used_flags = out->n_new_flags;
        /* sdk-core replayers (the Python SDK's Replayer) follow core's flags:
         * list the ones whose behaviour jorch's flag shares, so they replay
         * a jorch run the way jorch ran it */
        for (size_t i = 0; i < out->n_new_flags; i++) {
            if (out->new_flags[i] == ENGINE_FLAG_KIND_IDS)
                m->core_used_flags[m->n_core_used_flags++] = CORE_FLAG_ID_AND_TYPE_CHECKS;
            else if (out->new_flags[i] == ENGINE_FLAG_PATCH_UPSERT)
                m->core_used_flags[m->n_core_used_flags++] = CORE_FLAG_UPSERT_ON_PATCH;
        }
    }
    if (out->first_task) {
        m->sdk_name = jstrdup(ENGINE_SDK_NAME);
        m->sdk_version = jstrdup(JORCH_VERSION);
        if (!m->sdk_name || !m->sdk_version) {
            protobuf_c_message_free_unpacked(&m->base, NULL);
            return jerr_oom(err, "recording runtime flags");
        }
    }
    *md = m;
    return 0;
}
