/*
 * act_host.c - the activity host: a fixed pool of worker threads that run
 * one attempt at a time each, the attempt life cycle (resolve the activity
 * in the activities directory, call it, turn what happened into an act_outcome) and
 * the `activity` object (heartbeat, info, error, log, cancelled).
 *
 * Every attempt gets a fresh Lua state, closed when the attempt ends, so
 * nothing an attempt does to its globals, package.loaded or open files can
 * leak into the next one, and an attempt abandoned by a timeout leaves no
 * half-updated shared state behind. What does not change between attempts
 * is done once per version of the files: the directory is listed again
 * only when its stat changes, and each module is compiled once per version
 * of its file (its bytecode kept in memory, never read from outside) and
 * only run in each attempt's state. An edited module is seen by the next
 * attempt, as docs/activities.md promises.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "activity/act_int.h"

typedef Temporal__Api__Common__V1__Payloads Payloads;
typedef Temporal__Api__Failure__V1__Failure Failure;

#define DEFAULT_THREADS 4
#define MAX_THREADS 256
/* How often (in VM instructions) the hook looks at the clock and flags. */
#define HOOK_COUNT 1000
/* Budget for loading modules in act_host_has: a module whose top level
 * never returns must not hang the caller. */
#define HAS_BUDGET_NS (10LL * 1000000000LL)
#define MSG_MAX 4096
#define LOG_LINE_MAX 8192

struct act_attempt {
    act_host *host;
    uint64_t token;
    char *activity_type, *activity_id, *workflow_id, *run_id, *workflow_type;
    int32_t attempt;
    Payloads *input;        /* owned copies */
    Payloads *prev_details; /* heartbeat details of an earlier attempt */
    Payloads *last_details; /* latest activity.heartbeat of this attempt */
    int64_t start_to_close_ns;
    int64_t deadline; /* monotonic ns; 0: none */
    atomic_int cancel;
    atomic_int timed_out;
    act_outcome out;
    bool has_out;
    bool probe; /* act_host_has's stand-in: no activity is running */
    struct act_attempt *next;
};

/* One compiled module: the stat of its file when it was read, and the
 * bytecode lua_dump made of it (debug information kept for tracebacks). */
typedef struct mod_code {
    char *name; /* "jira.lua" */
    struct stat st;
    char *code;
    size_t len;
} mod_code;

struct act_host {
    char *dir;
    char *config_json; /* jorch.config for every attempt, or NULL */
    act_heartbeat_fn on_heartbeat;
    void *ud;
    void (*log_fn)(void *ud, const char *activity_type, const char *line);
    void (*log_token_fn)(void *ud, uint64_t token, const char *activity_type, const char *line);
    int wake_fd; /* > 0: poked at each queued outcome */
    void (*on_start)(void *ud, uint64_t token);
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    pthread_cond_t done_cv; /* CLOCK_MONOTONIC */
    act_attempt *queue_head, *queue_tail;
    act_attempt *running;
    act_attempt *done_head, *done_tail;
    int busy;
    atomic_int stopping;
    pthread_t *threads;
    int nthreads;
    /* the module cache (cache_mu): the directory's listing as of dir_st,
     * and the compiled modules */
    pthread_mutex_t cache_mu;
    bool dir_known;
    struct stat dir_st;
    char **dir_names;
    size_t dir_n;
    mod_code *mods;
    size_t nmods, capmods;
};

/* Registry keys and markers (their addresses are the keys). */
static const char ERROR_MT_KEY = 'e';
static const char TRACEBACK_KEY = 't';
static const char STOP_MARKER = 's';

/* ------------------------------------------------------------ small bits */

int64_t act_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static char *dup_or_empty(const char *s) { return jstrdup(s ? s : ""); }

/* Deep copy through the wire form: the copy is then freed like any
 * unpacked message, with protobuf_c_message_free_unpacked(m, NULL). */
static int payloads_copy(const Payloads *src, Payloads **dst) {
    *dst = NULL;
    if (!src) return 0;
    size_t n = temporal__api__common__v1__payloads__get_packed_size(src);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return -1;
    temporal__api__common__v1__payloads__pack(src, buf);
    *dst = temporal__api__common__v1__payloads__unpack(NULL, n, buf);
    free(buf);
    return *dst ? 0 : -1;
}

static void payloads_free(Payloads *p) {
    if (p) protobuf_c_message_free_unpacked(&p->base, NULL);
}

void act_outcome_clear(act_outcome *o) {
    if (!o) return;
    payloads_free(o->result);
    if (o->failure) protobuf_c_message_free_unpacked(&o->failure->base, NULL);
    payloads_free(o->details);
    memset(o, 0, sizeof *o);
}

static void attempt_free(act_attempt *a) {
    if (!a) return;
    free(a->activity_type);
    free(a->activity_id);
    free(a->workflow_id);
    free(a->run_id);
    free(a->workflow_type);
    payloads_free(a->input);
    payloads_free(a->prev_details);
    payloads_free(a->last_details);
    act_outcome_clear(&a->out);
    free(a);
}

act_attempt *act_attempt_of(lua_State *L) { return *(act_attempt **)lua_getextraspace(L); }

int act_attempt_check(act_attempt *a) {
    if (!a) return ACT_GO;
    if (a->host && atomic_load(&a->host->stopping)) return ACT_STOP_ABORT;
    if (atomic_load(&a->timed_out)) return ACT_STOP_TIMEOUT;
    if (a->deadline && act_mono_ns() >= a->deadline) {
        atomic_store(&a->timed_out, 1);
        return ACT_STOP_TIMEOUT;
    }
    if (atomic_load(&a->cancel)) return ACT_STOP_CANCEL;
    return ACT_GO;
}

/* Builds the table activity.error{} makes, with the marker metatable. */
static void push_error_object(lua_State *L, const char *type, const char *message, bool non_retryable) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, non_retryable);
    lua_setfield(L, -2, "non_retryable");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ERROR_MT_KEY);
    lua_setmetatable(L, -2);
}

int act_attempt_raise_stop(lua_State *L, int reason) {
    act_attempt *a = act_attempt_of(L);
    if (reason == ACT_STOP_CANCEL) {
        char msg[512];
        snprintf(msg, sizeof msg, "activity '%s' was cancelled", a ? a->activity_type : "?");
        push_error_object(L, "CancelledError", msg, false);
        return lua_error(L);
    }
    /* Timeouts and shutdown are decided by the attempt's flags, not by the
     * error value, so an activity that catches this cannot change them. */
    lua_pushlightuserdata(L, (void *)&STOP_MARKER);
    return lua_error(L);
}

/* The count hook: stops runaway Lua code at the deadline or at shutdown.
 * Once tripped it fires at every instruction, so a pcall in the activity
 * that swallows the error gets the next one immediately. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    int r = act_attempt_check(act_attempt_of(L));
    if (r == ACT_STOP_TIMEOUT || r == ACT_STOP_ABORT) {
        lua_sethook(L, stop_hook, LUA_MASKCOUNT, 1);
        act_attempt_raise_stop(L, r);
    }
}

/* ------------------------------------------------------------- outcomes */

static Failure *failure_new(const char *message, const char *stack) {
    Failure *f = malloc(sizeof *f);
    if (!f) return NULL;
    temporal__api__failure__v1__failure__init(f);
    f->message = jstrdup(message ? message : "");
    f->source = jstrdup("jorch");
    f->stack_trace = jstrdup(stack ? stack : "");
    if (!f->message || !f->source || !f->stack_trace) {
        protobuf_c_message_free_unpacked(&f->base, NULL);
        return NULL;
    }
    return f;
}

static void oom_outcome(act_attempt *a) {
    /* Nothing left to build a message with: the backend sees a failure
     * without details and retries per its policy. */
    jlog(JLOG_ERROR, "out of memory building the outcome of activity '%s'", a->activity_type);
    a->out.kind = ACT_FAILED;
    a->has_out = true;
}

/* Takes ownership of details. */
static void set_app_failure(act_attempt *a, const char *type, const char *message, bool non_retryable,
                            Payloads *details, const char *stack) {
    if (a->has_out) {
        payloads_free(details);
        return;
    }
    a->has_out = true;
    a->out.kind = ACT_FAILED;
    Failure *f = failure_new(message, stack);
    Temporal__Api__Failure__V1__ApplicationFailureInfo *info = malloc(sizeof *info);
    char *t = jstrdup(type);
    if (!f || !info || !t) {
        if (f) protobuf_c_message_free_unpacked(&f->base, NULL);
        free(info);
        free(t);
        payloads_free(details);
        oom_outcome(a);
        return;
    }
    temporal__api__failure__v1__application_failure_info__init(info);
    info->type = t;
    info->non_retryable = non_retryable;
    info->details = details;
    f->failure_info_case = TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_APPLICATION_FAILURE_INFO;
    f->application_failure_info = info;
    a->out.failure = f;
}

static void set_timeout_failure(act_attempt *a) {
    act_outcome_clear(&a->out);
    a->has_out = true;
    a->out.kind = ACT_FAILED;
    char human[32], msg[512];
    duration_human(a->start_to_close_ns, human, sizeof human);
    snprintf(msg, sizeof msg, "activity '%s' exceeded its start-to-close timeout of %s", a->activity_type,
             human);
    Failure *f = failure_new(msg, NULL);
    Temporal__Api__Failure__V1__TimeoutFailureInfo *info = malloc(sizeof *info);
    Payloads *last = NULL;
    if (!f || !info || payloads_copy(a->last_details ? a->last_details : a->prev_details, &last) < 0) {
        if (f) protobuf_c_message_free_unpacked(&f->base, NULL);
        free(info);
        oom_outcome(a);
        return;
    }
    temporal__api__failure__v1__timeout_failure_info__init(info);
    info->timeout_type = TEMPORAL__API__ENUMS__V1__TIMEOUT_TYPE__TIMEOUT_TYPE_START_TO_CLOSE;
    info->last_heartbeat_details = last;
    f->failure_info_case = TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_TIMEOUT_FAILURE_INFO;
    f->timeout_failure_info = info;
    a->out.failure = f;
}

static void set_canceled(act_attempt *a) {
    act_outcome_clear(&a->out);
    a->has_out = true;
    a->out.kind = ACT_CANCELED;
    if (payloads_copy(a->last_details ? a->last_details : a->prev_details, &a->out.details) < 0)
        jlog(JLOG_ERROR, "out of memory copying the heartbeat details of cancelled activity '%s'",
             a->activity_type);
}

static void set_completed(act_attempt *a, Payloads *result) {
    a->has_out = true;
    a->out.kind = ACT_COMPLETED;
    a->out.result = result;
}

/* --------------------------------------------------- module resolution */

typedef struct modlist {
    char **names; /* "jira.lua", sorted */
    size_t n;
} modlist;

static void modlist_free(modlist *m) {
    for (size_t i = 0; i < m->n; i++) free(m->names[i]);
    free(m->names);
    m->names = NULL;
    m->n = 0;
}

static int cmp_str(const void *x, const void *y) {
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static bool has_lua_suffix(const char *name, size_t len) {
    return len > 4 && strcmp(name + len - 4, ".lua") == 0;
}

/* A file or directory is taken as unchanged when its stat is: same inode,
 * size and modification and change times. A time within a second of now
 * is not trusted (another write in the same clock tick would not change
 * it), so a file just written is read again until it has settled. */
static bool same_stat(const struct stat *a, const struct stat *b) {
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static bool settled(const struct stat *st) {
    time_t now = time(NULL);
    return st->st_mtim.tv_sec < now - 1 && st->st_ctim.tv_sec < now - 1;
}

static int scan_modules(const char *dir, modlist *out, jerr *err);

static int copy_names(char *const *names, size_t n, modlist *out) {
    memset(out, 0, sizeof *out);
    if (n == 0) return 0;
    out->names = calloc(n, sizeof *out->names);
    if (!out->names) return -1;
    for (size_t i = 0; i < n; i++) {
        out->names[i] = jstrdup(names[i]);
        if (!out->names[i]) {
            out->n = i;
            modlist_free(out);
            return -1;
        }
    }
    out->n = n;
    return 0;
}

static void forget_listing(act_host *h) {
    for (size_t i = 0; i < h->dir_n; i++) free(h->dir_names[i]);
    free(h->dir_names);
    h->dir_names = NULL;
    h->dir_n = 0;
    h->dir_known = false;
}

/* The *.lua files of the host's directory, from the cache while the
 * directory's stat is unchanged (one stat instead of a listing). */
static int list_modules(act_host *h, modlist *out, jerr *err) {
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(h->dir, &st) != 0 || !S_ISDIR(st.st_mode)) return scan_modules(h->dir, out, err);
    pthread_mutex_lock(&h->cache_mu);
    if (h->dir_known && same_stat(&st, &h->dir_st)) {
        int rc = copy_names(h->dir_names, h->dir_n, out);
        pthread_mutex_unlock(&h->cache_mu);
        return rc == 0 ? 0 : jerr_oom(err, "listing the activities directory");
    }
    pthread_mutex_unlock(&h->cache_mu);
    if (scan_modules(h->dir, out, err) != 0) return -1;
    if (!settled(&st)) return 0;
    modlist keep;
    if (copy_names(out->names, out->n, &keep) != 0) return 0; /* not cached: listed again next time */
    pthread_mutex_lock(&h->cache_mu);
    forget_listing(h);
    h->dir_names = keep.names;
    h->dir_n = keep.n;
    h->dir_st = st;
    h->dir_known = true;
    pthread_mutex_unlock(&h->cache_mu);
    return 0;
}

/* The *.lua regular files of dir, sorted by name. A missing directory is
 * an empty list (the caller's "unknown activity" message names the dir). */
static int scan_modules(const char *dir, modlist *out, jerr *err) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR) return 0;
        return jerr_set(err, JERR_USAGE, "cannot read the activities directory %s: %s", dir,
                        strerror(errno));
    }
    size_t cap = 0;
    struct dirent *e;
    for (;;) {
        e = readdir(d);
        if (!e) break;
        size_t len = strlen(e->d_name);
        if (!has_lua_suffix(e->d_name, len) || e->d_name[0] == '.') continue;
        if (out->n == cap) {
            size_t ncap, bytes;
            if (!size_mul(cap ? cap : 8, cap ? 2 : 1, &ncap) || !size_mul(ncap, sizeof(char *), &bytes))
                goto oom;
            char **nn = realloc(out->names, bytes);
            if (!nn) goto oom;
            out->names = nn;
            cap = ncap;
        }
        out->names[out->n] = jstrdup(e->d_name);
        if (!out->names[out->n]) goto oom;
        out->n++;
    }
    closedir(d);
    if (out->n > 1) /* qsort's array may not be NULL, even for 0 elements */
        qsort(out->names, out->n, sizeof(char *), cmp_str);
    return 0;
oom:
    closedir(d);
    modlist_free(out);
    return jerr_oom(err, "listing the activities directory");
}

/* Error handler for every pcall into activity code: keeps the error value
 * as it is (typed errors stay tables) and records a traceback beside it. */
static int traceback_handler(lua_State *L) {
    const char *msg = NULL;
    if (lua_type(L, 1) == LUA_TSTRING) {
        msg = lua_tostring(L, 1);
    } else if (lua_type(L, 1) == LUA_TTABLE) {
        lua_getfield(L, 1, "message");
        msg = lua_tostring(L, -1);
        lua_pop(L, 1); /* the table still anchors the string */
    }
    luaL_traceback(L, L, msg, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &TRACEBACK_KEY);
    lua_settop(L, 1);
    return 1;
}

static const char *last_traceback(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &TRACEBACK_KEY);
    const char *tb = lua_tostring(L, -1);
    lua_pop(L, 1); /* anchored in the registry */
    return tb;
}

/* Why a module or activity call failed, as text for messages. */
static const char *error_text(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TTABLE) {
        lua_getfield(L, idx, "message");
        const char *m = lua_tostring(L, -1);
        lua_pop(L, 1);
        if (m) return m;
    }
    const char *s = lua_tostring(L, idx);
    return s ? s : "(error object is not a string)";
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
    (void)L;
    return jbuf_append(ud, p, n) == 0 ? 0 : 1;
}

/* Pushes module `file` (at path) compiled: from the cache while the file's
 * stat is unchanged, else compiled from its text (mode "t": a file of
 * bytecode is refused) and its bytecode kept. Only bytecode this function
 * made is ever loaded in mode "b". */
static int load_chunk(lua_State *L, act_host *host, const char *file, const char *path) {
    struct stat st;
    bool have_st = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    if (have_st) {
        char *code = NULL;
        size_t len = 0;
        pthread_mutex_lock(&host->cache_mu);
        for (size_t i = 0; i < host->nmods; i++) {
            mod_code *m = &host->mods[i];
            if (strcmp(m->name, file) != 0) continue;
            if (same_stat(&st, &m->st) && (code = malloc(m->len)) != NULL) {
                memcpy(code, m->code, m->len);
                len = m->len;
            }
            break;
        }
        pthread_mutex_unlock(&host->cache_mu);
        if (code) {
            int rc = luaL_loadbufferx(L, code, len, path, "b");
            free(code);
            return rc;
        }
    }
    int rc = luaL_loadfilex(L, path, "t");
    if (rc != LUA_OK || !have_st || !settled(&st)) return rc;
    jbuf b;
    jbuf_init(&b, (size_t)64 << 20);
    if (lua_dump(L, dump_writer, &b, 0) != 0 || !b.data) {
        jbuf_free(&b);
        return rc; /* not cached: compiled again next time */
    }
    pthread_mutex_lock(&host->cache_mu);
    mod_code *slot = NULL;
    for (size_t i = 0; i < host->nmods && !slot; i++)
        if (strcmp(host->mods[i].name, file) == 0) slot = &host->mods[i];
    if (!slot && host->nmods == host->capmods) {
        size_t ncap = host->capmods ? host->capmods * 2 : 8, bytes;
        mod_code *nm = size_mul(ncap, sizeof *nm, &bytes) ? realloc(host->mods, bytes) : NULL;
        if (nm) {
            host->mods = nm;
            host->capmods = ncap;
        }
    }
    if (!slot && host->nmods < host->capmods) {
        char *name = jstrdup(file);
        if (name) {
            slot = &host->mods[host->nmods++];
            memset(slot, 0, sizeof *slot);
            slot->name = name;
        }
    }
    if (slot) {
        free(slot->code);
        slot->st = st;
        slot->code = jbuf_take(&b, &slot->len);
        if (!slot->code) { /* never matches a file */
            memset(&slot->st, 0, sizeof slot->st);
            slot->len = 0;
        }
    }
    pthread_mutex_unlock(&host->cache_mu);
    jbuf_free(&b);
    return rc;
}

/* Loads module `file` of the host's dir and leaves its table on the stack.
 * On failure sets an ActivityModuleError outcome and returns -1. */
static int load_module(lua_State *L, act_attempt *a, const char *file) {
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", a->host->dir, file);
    if (n < 0 || (size_t)n >= sizeof path) {
        set_app_failure(a, "ActivityModuleError", "activity module path is too long", false, NULL, NULL);
        return -1;
    }
    lua_pushcfunction(L, traceback_handler);
    int h = lua_gettop(L);
    int st = load_chunk(L, a->host, file, path);
    if (st == LUA_OK) st = lua_pcall(L, 0, 1, h);
    if (st != LUA_OK) {
        const char *msg = lua_pushfstring(L, "activity module %s failed to load: %s (fix the module and retry)",
                                          path, error_text(L, -1));
        set_app_failure(a, "ActivityModuleError", msg, false, NULL, st == LUA_ERRSYNTAX ? NULL : last_traceback(L));
        lua_pop(L, 3);
        return -1;
    }
    lua_remove(L, h);
    if (!lua_istable(L, -1)) {
        const char *msg = lua_pushfstring(
            L, "activity module %s returned a %s; it must return a table of name -> function", path,
            luaL_typename(L, -1));
        set_app_failure(a, "ActivityModuleError", msg, false, NULL, NULL);
        lua_pop(L, 2);
        return -1;
    }
    return 0;
}

/* "a.lua, b.lua" into buf (bounded). */
static void join_names(const modlist *m, jbuf *b) {
    if (m->n == 0) {
        jbuf_puts(b, "no *.lua modules there");
        return;
    }
    for (size_t i = 0; i < m->n; i++) {
        if (i) jbuf_puts(b, ", ");
        jbuf_puts(b, m->names[i]);
    }
}

/* An unknown activity is retryable, as on Temporal: it is a deployment
 * mistake (a missing module, a wrong --activities), and a run must survive
 * it until the activity exists. */
static void not_found(act_attempt *a, const modlist *m) {
    jbuf b;
    jbuf_init(&b, MSG_MAX);
    jbuf_printf(&b, "unknown activity '%s' (looked in %s/: ", a->activity_type, a->host->dir);
    join_names(m, &b);
    jbuf_puts(&b, ")");
    set_app_failure(a, "ActivityNotFound", b.data ? b.data : "unknown activity", false, NULL, NULL);
    jbuf_free(&b);
}

/* Functions a module table defines, for "unknown activity" hints. */
static void not_in_module(lua_State *L, act_attempt *a, const char *file, const char *fn) {
    jbuf b;
    jbuf_init(&b, MSG_MAX);
    jbuf_printf(&b, "unknown activity '%s' (%s/%s has no function '%s'; it defines:", a->activity_type,
                a->host->dir, file, fn);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_isfunction(L, -1))
            jbuf_printf(&b, " %s", lua_tostring(L, -2));
        lua_pop(L, 1);
    }
    jbuf_puts(&b, ")");
    set_app_failure(a, "ActivityNotFound", b.data ? b.data : "unknown activity", false, NULL, NULL);
    jbuf_free(&b);
}

/* Pushes the activity function, or sets a failure outcome and returns -1.
 * "mod.fn" names module mod.lua when that file exists; anything else is
 * searched in every module, in sorted file order, and must be unique. */
static int resolve_activity(lua_State *L, act_attempt *a) {
    modlist m;
    jerr err = {0};
    if (list_modules(a->host, &m, &err) < 0) {
        set_app_failure(a, "ActivityModuleError", err.msg, false, NULL, NULL);
        return -1;
    }
    const char *name = a->activity_type;
    const char *dot = strrchr(name, '.');
    int rc = -1;
    if (dot && dot != name && dot[1]) {
        size_t mlen = (size_t)(dot - name);
        for (size_t i = 0; i < m.n; i++) {
            if (strlen(m.names[i]) == mlen + 4 && strncmp(m.names[i], name, mlen) == 0) {
                if (load_module(L, a, m.names[i]) < 0) goto done;
                lua_getfield(L, -1, dot + 1);
                if (lua_isfunction(L, -1)) {
                    lua_remove(L, -2);
                    rc = 0;
                } else {
                    lua_pop(L, 1);
                    not_in_module(L, a, m.names[i], dot + 1);
                    lua_pop(L, 1);
                }
                goto done;
            }
        }
    }
    size_t found_in = SIZE_MAX;
    for (size_t i = 0; i < m.n; i++) {
        if (load_module(L, a, m.names[i]) < 0) {
            if (found_in != SIZE_MAX) lua_pop(L, 1);
            goto done;
        }
        lua_getfield(L, -1, name);
        if (!lua_isfunction(L, -1)) {
            lua_pop(L, 2);
            continue;
        }
        lua_remove(L, -2);
        if (found_in != SIZE_MAX) {
            char msg[MSG_MAX];
            snprintf(msg, sizeof msg,
                     "activity '%s' is defined in both %s/%s and %s/%s; call it as '%.*s.%s' or '%.*s.%s'",
                     name, a->host->dir, m.names[found_in], a->host->dir, m.names[i],
                     (int)(strlen(m.names[found_in]) - 4), m.names[found_in], name,
                     (int)(strlen(m.names[i]) - 4), m.names[i], name);
            set_app_failure(a, "AmbiguousActivity", msg, true, NULL, NULL);
            lua_pop(L, 2);
            goto done;
        }
        found_in = i;
    }
    if (found_in == SIZE_MAX) not_found(a, &m);
    else rc = 0;
done:
    modlist_free(&m);
    return rc;
}

/* ---------------------------------------------------- the activity object */

static act_attempt *check_attempt(lua_State *L, const char *fn) {
    act_attempt *a = act_attempt_of(L);
    if (!a || a->probe)
        luaL_error(L, "activity.%s: no activity is running (call it from inside an activity function, "
                      "not at module load)", fn);
    return a;
}

static int l_heartbeat(lua_State *L) {
    act_attempt *a = check_attempt(L, "heartbeat");
    jerr err = {0};
    Payloads *d = payloads_from_lua(L, 1, lua_gettop(L), NULL, &err);
    if (!d) return luaL_error(L, "activity.heartbeat: cannot encode the details: %s", err.msg);
    payloads_free(a->last_details);
    a->last_details = d;
    if (a->host->on_heartbeat && a->host->on_heartbeat(a->host->ud, a->token, d)) atomic_store(&a->cancel, 1);
    int r = act_attempt_check(a);
    if (r != ACT_GO) return act_attempt_raise_stop(L, r);
    return 0;
}

bool act_attempt_heartbeat_again(act_attempt *a) {
    if (!a || a->probe || !a->host->on_heartbeat) return false;
    Payloads empty = TEMPORAL__API__COMMON__V1__PAYLOADS__INIT;
    if (a->host->on_heartbeat(a->host->ud, a->token, a->last_details ? a->last_details : &empty))
        atomic_store(&a->cancel, 1);
    return atomic_load(&a->cancel) != 0;
}

static void set_string_field(lua_State *L, const char *k, const char *v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static int l_info(lua_State *L) {
    act_attempt *a = check_attempt(L, "info");
    lua_createtable(L, 0, 8);
    set_string_field(L, "activity_type", a->activity_type);
    set_string_field(L, "activity_id", a->activity_id);
    set_string_field(L, "workflow_id", a->workflow_id);
    set_string_field(L, "run_id", a->run_id);
    set_string_field(L, "workflow_type", a->workflow_type);
    lua_pushinteger(L, a->attempt);
    lua_setfield(L, -2, "attempt");
    if (a->start_to_close_ns > 0) {
        lua_pushnumber(L, (double)a->start_to_close_ns / 1e9);
        lua_setfield(L, -2, "start_to_close_timeout");
    }
    if (a->prev_details && a->prev_details->n_payloads > 0) {
        /* The first value, as activity.heartbeat(details) sent it (all of
         * them: activity.heartbeat_details()). */
        jerr err = {0};
        if (payload_to_lua(L, a->prev_details->payloads[0], NULL, &err) < 0)
            return luaL_error(L, "activity.info: cannot decode the heartbeat details: %s", err.msg);
        lua_setfield(L, -2, "heartbeat_details");
    }
    return 1;
}

/* Every value the previous attempt's last heartbeat sent, as Lua values:
 * activity.heartbeat(a, nil, c) -> a, nil, c (a list would lose the nil);
 * nothing on a first attempt or one whose predecessors never heartbeated.
 * info().heartbeat_details stays the first of them, as documented. */
static int l_heartbeat_details(lua_State *L) {
    act_attempt *a = check_attempt(L, "heartbeat_details");
    int n = 0;
    jerr err = {0};
    if (payloads_to_lua(L, a->prev_details, NULL, &n, &err) < 0)
        return luaL_error(L, "activity.heartbeat_details: cannot decode the heartbeat details: %s", err.msg);
    return n;
}

/* activity.error{type=, message=, non_retryable=, details=} or
 * activity.error("message"): raises a typed failure. */
static int l_error(lua_State *L) {
    if (lua_type(L, 1) == LUA_TSTRING) {
        push_error_object(L, "Error", lua_tostring(L, 1), false);
        return lua_error(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "type");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "activity.error: type must be a string such as \"NotFound\" (got a %s)",
                          luaL_typename(L, -1));
    const char *type = lua_isnil(L, -1) ? "ApplicationError" : lua_tostring(L, -1);
    lua_getfield(L, 1, "message");
    const char *msg = lua_isnil(L, -1) ? type : luaL_tolstring(L, -1, NULL);
    lua_getfield(L, 1, "non_retryable");
    bool nr = lua_toboolean(L, -1);
    push_error_object(L, type, msg, nr);
    lua_getfield(L, 1, "details");
    lua_setfield(L, -2, "details");
    return lua_error(L);
}

static int l_log(lua_State *L) {
    act_attempt *a = check_attempt(L, "log");
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, ' ');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t len;
    const char *line = lua_tolstring(L, -1, &len);
    if (len > LOG_LINE_MAX) {
        lua_pushfstring(L, "%s... (%d bytes cut)", lua_pushlstring(L, line, LOG_LINE_MAX),
                        (int)(len - LOG_LINE_MAX));
        line = lua_tostring(L, -1);
    }
    if (a->host->log_token_fn) a->host->log_token_fn(a->host->ud, a->token, a->activity_type, line);
    else if (a->host->log_fn) a->host->log_fn(a->host->ud, a->activity_type, line);
    else fprintf(stderr, "[activity %s] %s\n", a->activity_type, line);
    return 0;
}

/* os.exit would take the whole worker (and every other running activity)
 * down with it. */
static int l_no_exit(lua_State *L) {
    return luaL_error(L, "os.exit is not available to activities: it would stop the whole worker; "
                         "return a result or raise activity.error{...} instead");
}

static int l_cancelled(lua_State *L) {
    act_attempt *a = check_attempt(L, "cancelled");
    lua_pushboolean(L, atomic_load(&a->cancel) != 0);
    return 1;
}

static int error_tostring(lua_State *L) {
    lua_getfield(L, 1, "type");
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "%s: %s", luaL_optstring(L, -2, "Error"), luaL_optstring(L, -1, ""));
    return 1;
}

static const luaL_Reg activity_fns[] = {
    {"cancelled", l_cancelled}, {"error", l_error}, {"heartbeat", l_heartbeat},
    {"heartbeat_details", l_heartbeat_details},     {"info", l_info},
    {"log", l_log},             {NULL, NULL},
};

/* Standard libraries (activities are trusted), jorch, activity, a
 * package.path that finds helpers under the activities directory, and the
 * stop hook. Runs inside lua_pcall. */
static void open_environment(lua_State *L, act_attempt *a) {
    luaL_openlibs(L);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "jorch.activity.error");
    lua_setfield(L, -2, "__name");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ERROR_MT_KEY);

    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    const char *dir = a->host->dir;
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, luaL_optstring(L, -1, ""));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_getfield(L, -1, "loaded");

    act_toolkit_push(L);
    if (a->host->config_json) {
        jerr e = {0};
        if (payload_json_to_lua(L, a->host->config_json, strlen(a->host->config_json), &payload_default_limits,
                                &e) == 0)
            lua_setfield(L, -2, "config");
        else
            luaL_error(L, "jorch.config: %s", e.msg);
    }
    lua_pushvalue(L, -1);
    lua_setglobal(L, "jorch");
    lua_setfield(L, -2, "jorch");

    luaL_newlib(L, activity_fns);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "activity");
    lua_setfield(L, -2, "jorch.activity");
    lua_pop(L, 2);

    /* print goes to the activity log: stdout carries results (jorch activity). */
    lua_pushcfunction(L, l_log);
    lua_setglobal(L, "print");
    lua_getglobal(L, "os");
    lua_pushcfunction(L, l_no_exit);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);

    lua_sethook(L, stop_hook, LUA_MASKCOUNT, HOOK_COUNT);
}

/* ------------------------------------------------------- one attempt */

static bool is_typed_error(lua_State *L, int idx) {
    if (!lua_istable(L, idx)) return false;
    lua_getfield(L, idx, "type");
    bool typed = lua_type(L, -1) == LUA_TSTRING;
    lua_pop(L, 1);
    return typed;
}

static void classify_error(lua_State *L, act_attempt *a, int idx) {
    idx = lua_absindex(L, idx);
    const char *tb = last_traceback(L);
    if (!is_typed_error(L, idx)) {
        set_app_failure(a, "Error", error_text(L, idx), false, NULL, tb);
        return;
    }
    lua_getfield(L, idx, "type");
    const char *type = lua_tostring(L, -1);
    if (strcmp(type, "CancelledError") == 0 && atomic_load(&a->cancel)) {
        set_canceled(a);
        lua_pop(L, 1);
        return;
    }
    lua_getfield(L, idx, "non_retryable");
    bool nr = lua_toboolean(L, -1);
    lua_pop(L, 1);
    const char *msg = error_text(L, idx);
    char note[MSG_MAX];
    Payloads *details = NULL;
    lua_getfield(L, idx, "details");
    if (!lua_isnil(L, -1)) {
        jerr err = {0};
        /* details are a list of payloads on the wire: a Lua list sends one
         * payload per element (as the SDKs' ApplicationError(msg, *details));
         * any other value is one payload */
        size_t nd = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
        if (nd > 0 && nd <= 1000) {
            int t = lua_gettop(L);
            luaL_checkstack(L, (int)nd + 4, "too many error details");
            for (size_t i = 1; i <= nd; i++) lua_rawgeti(L, t, (lua_Integer)i);
            details = payloads_from_lua(L, t + 1, (int)nd, NULL, &err);
            lua_settop(L, t);
        } else {
            details = payloads_from_lua(L, -1, 1, NULL, &err);
        }
        if (!details) {
            snprintf(note, sizeof note, "%s (its details were dropped: %s)", msg, err.msg);
            msg = note;
        }
    }
    set_app_failure(a, type, msg, nr, details, tb);
    lua_pop(L, 2);
}

static void encode_result(lua_State *L, act_attempt *a, int idx) {
    idx = lua_absindex(L, idx);
    jerr err = {0};
    Temporal__Api__Common__V1__Payload *p = payload_from_lua(L, idx, NULL, &err);
    if (!p) {
        char msg[MSG_MAX];
        snprintf(msg, sizeof msg, "activity '%s' returned a value that cannot be encoded as JSON: %s",
                 a->activity_type, err.msg);
        set_app_failure(a, "EncodingError", msg, false, NULL, NULL);
        return;
    }
    Payloads *ps = payloads_new();
    if (!ps || payloads_add(ps, p) < 0) {
        protobuf_c_message_free_unpacked(&p->base, NULL);
        payloads_free(ps);
        oom_outcome(a);
        return;
    }
    set_completed(a, ps);
}

static int attempt_main(lua_State *L) {
    act_attempt *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    open_environment(L, a);
    lua_pushcfunction(L, traceback_handler);
    if (resolve_activity(L, a) < 0) return 0;
    int nargs = 0;
    jerr err = {0};
    if (payloads_to_lua(L, a->input, NULL, &nargs, &err) < 0) {
        char msg[MSG_MAX];
        snprintf(msg, sizeof msg, "activity '%s': cannot decode its input: %s", a->activity_type, err.msg);
        set_app_failure(a, "DecodingError", msg, true, NULL, NULL);
        return 0;
    }
    int st = lua_pcall(L, nargs, 1, 1);
    lua_sethook(L, NULL, 0, 0);
    if (atomic_load(&a->timed_out) || atomic_load(&a->host->stopping)) return 0; /* run_attempt decides */
    if (st == LUA_OK) encode_result(L, a, -1);
    else classify_error(L, a, -1);
    return 0;
}

static void run_attempt(act_attempt *a) {
    int64_t now = act_mono_ns();
    a->deadline = 0;
    if (a->start_to_close_ns > 0 && a->start_to_close_ns < INT64_MAX - now) a->deadline = now + a->start_to_close_ns;
    lua_State *L = luaL_newstate();
    if (!L) {
        set_app_failure(a, "Error", "out of memory creating a Lua state for the activity", false, NULL, NULL);
        return;
    }
    *(act_attempt **)lua_getextraspace(L) = a;
    lua_pushcfunction(L, attempt_main);
    lua_pushlightuserdata(L, a);
    int st = lua_pcall(L, 1, 0, 0);
    lua_sethook(L, NULL, 0, 0);
    if (atomic_load(&a->timed_out)) {
        set_timeout_failure(a);
    } else if (atomic_load(&a->host->stopping) && !a->has_out) {
        set_app_failure(a, "WorkerShutdown", "the activity was stopped because its worker is shutting down",
                        false, NULL, NULL);
    } else if (st != LUA_OK) {
        char msg[MSG_MAX];
        snprintf(msg, sizeof msg, "activity '%s' could not run: %s", a->activity_type, error_text(L, -1));
        set_app_failure(a, "Error", msg, false, NULL, NULL);
    } else if (!a->has_out) {
        set_app_failure(a, "Error", "the activity ended without an outcome (bug in jorch)", false, NULL, NULL);
    }
    lua_close(L);
}

/* --------------------------------------------------------- the pool */

/* Tells a polling event loop that an outcome is queued. A full pipe
 * already has a wake-up pending, so EAGAIN is fine. */
static void wake(act_host *h) {
    if (h->wake_fd <= 0) return;
    char b = 1;
    ssize_t w = write(h->wake_fd, &b, 1);
    (void)w;
}

static void *worker_main(void *arg) {
    act_host *h = arg;
    /* A child that closes its stdin early must give jorch.exec EPIPE, not
     * kill the process; libcurl is told CURLOPT_NOSIGNAL for the same reason. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    for (;;) {
        pthread_mutex_lock(&h->mu);
        while (!atomic_load(&h->stopping) && !h->queue_head) pthread_cond_wait(&h->work_cv, &h->mu);
        if (atomic_load(&h->stopping)) {
            pthread_mutex_unlock(&h->mu);
            return NULL;
        }
        act_attempt *a = h->queue_head;
        h->queue_head = a->next;
        if (!h->queue_head) h->queue_tail = NULL;
        a->next = h->running;
        h->running = a;
        pthread_mutex_unlock(&h->mu);

        if (h->on_start) h->on_start(h->ud, a->token);
        run_attempt(a);

        pthread_mutex_lock(&h->mu);
        for (act_attempt **pp = &h->running; *pp; pp = &(*pp)->next) {
            if (*pp == a) {
                *pp = a->next;
                break;
            }
        }
        a->next = NULL;
        if (h->done_tail) h->done_tail->next = a;
        else h->done_head = a;
        h->done_tail = a;
        h->busy--;
        pthread_cond_broadcast(&h->done_cv);
        pthread_mutex_unlock(&h->mu);
        wake(h);
    }
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static void free_list(act_attempt *a) {
    while (a) {
        act_attempt *next = a->next;
        attempt_free(a);
        a = next;
    }
}

act_host *act_host_new(const act_host_config *cfg, jerr *err) {
    act_host_config c = {0};
    if (cfg) c = *cfg;
    int threads = c.threads ? c.threads : DEFAULT_THREADS;
    if (threads < 1 || threads > MAX_THREADS) {
        jerr_set(err, JERR_USAGE, "activity host: threads = %d is out of range (use 1..%d)", threads, MAX_THREADS);
        return NULL;
    }
    pthread_once(&curl_once, curl_init_once);
    act_host *h = calloc(1, sizeof *h);
    if (!h) {
        jerr_oom(err, "creating the activity host");
        return NULL;
    }
    h->dir = jstrdup(c.activities_dir && *c.activities_dir ? c.activities_dir : "activities");
    if (c.config_json) {
        h->config_json = jstrdup(c.config_json);
        if (!h->config_json) {
            free(h->dir);
            free(h);
            jerr_oom(err, "starting the activity host");
            return NULL;
        }
    }
    h->threads = calloc((size_t)threads, sizeof *h->threads);
    if (!h->dir || !h->threads) {
        free(h->dir);
        free(h->config_json);
        free(h->threads);
        free(h);
        jerr_oom(err, "creating the activity host");
        return NULL;
    }
    size_t dl = strlen(h->dir);
    while (dl > 1 && h->dir[dl - 1] == '/') h->dir[--dl] = '\0';
    h->on_heartbeat = c.on_heartbeat;
    h->ud = c.ud;
    h->log_fn = c.log_fn;
    h->log_token_fn = c.log_token_fn;
    h->wake_fd = c.wake_fd;
    h->on_start = c.on_start;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->cache_mu, NULL);
    pthread_cond_init(&h->work_cv, NULL);
    pthread_cond_init(&h->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    for (int i = 0; i < threads; i++) {
        int rc = pthread_create(&h->threads[i], NULL, worker_main, h);
        if (rc != 0) {
            jerr_set(err, JERR_INTERNAL, "activity host: cannot start worker thread %d of %d: %s", i + 1,
                     threads, strerror(rc));
            act_host_free(h);
            return NULL;
        }
        h->nthreads++;
    }
    return h;
}

void act_host_free(act_host *h) {
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    atomic_store(&h->stopping, 1);
    for (act_attempt *a = h->running; a; a = a->next) atomic_store(&a->cancel, 1);
    pthread_cond_broadcast(&h->work_cv);
    pthread_mutex_unlock(&h->mu);
    for (int i = 0; i < h->nthreads; i++) pthread_join(h->threads[i], NULL);
    free_list(h->queue_head);
    free_list(h->running);
    free_list(h->done_head);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->work_cv);
    pthread_cond_destroy(&h->done_cv);
    forget_listing(h);
    for (size_t i = 0; i < h->nmods; i++) {
        free(h->mods[i].name);
        free(h->mods[i].code);
    }
    free(h->mods);
    pthread_mutex_destroy(&h->cache_mu);
    free(h->threads);
    free(h->dir);
    free(h->config_json);
    free(h);
}

int act_host_submit(act_host *h, const act_task *t, jerr *err) {
    if (!h || !t || !t->activity_type || !*t->activity_type)
        return jerr_set(err, JERR_USAGE, "activity host: a task needs an activity type");
    act_attempt *a = calloc(1, sizeof *a);
    if (!a) return jerr_oom(err, "queueing an activity");
    a->host = h;
    a->token = t->token;
    a->attempt = t->attempt > 0 ? t->attempt : 1;
    a->start_to_close_ns = t->start_to_close_ns > 0 ? t->start_to_close_ns : 0;
    a->activity_type = jstrdup(t->activity_type);
    a->activity_id = dup_or_empty(t->activity_id);
    a->workflow_id = dup_or_empty(t->workflow_id);
    a->run_id = dup_or_empty(t->run_id);
    a->workflow_type = dup_or_empty(t->workflow_type);
    if (!a->activity_type || !a->activity_id || !a->workflow_id || !a->run_id || !a->workflow_type ||
        payloads_copy(t->input, &a->input) < 0 || payloads_copy(t->heartbeat_details, &a->prev_details) < 0) {
        attempt_free(a);
        return jerr_oom(err, "queueing an activity");
    }
    pthread_mutex_lock(&h->mu);
    if (atomic_load(&h->stopping)) {
        pthread_mutex_unlock(&h->mu);
        attempt_free(a);
        return jerr_set(err, JERR_INTERNAL, "activity host: shutting down, cannot take activity '%s'",
                        t->activity_type);
    }
    if (h->queue_tail) h->queue_tail->next = a;
    else h->queue_head = a;
    h->queue_tail = a;
    h->busy++;
    pthread_cond_signal(&h->work_cv);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

void act_host_cancel(act_host *h, uint64_t token) {
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    for (act_attempt **pp = &h->queue_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        act_attempt *a = *pp;
        if (a->token != token) continue;
        *pp = a->next;
        if (h->queue_tail == a) h->queue_tail = prev;
        a->next = NULL;
        set_canceled(a);
        if (h->done_tail) h->done_tail->next = a;
        else h->done_head = a;
        h->done_tail = a;
        h->busy--;
        pthread_cond_broadcast(&h->done_cv);
        wake(h);
        break;
    }
    for (act_attempt *a = h->running; a; a = a->next)
        if (a->token == token) atomic_store(&a->cancel, 1);
    pthread_mutex_unlock(&h->mu);
}

int act_host_wait(act_host *h, int timeout_ms, act_outcome *out) {
    if (!h || !out) return 0;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (timeout_ms > 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&h->mu);
    while (!h->done_head) {
        if (timeout_ms == 0) break;
        int rc = timeout_ms < 0 ? pthread_cond_wait(&h->done_cv, &h->mu)
                                : pthread_cond_timedwait(&h->done_cv, &h->mu, &until);
        if (rc == ETIMEDOUT) break;
    }
    act_attempt *a = h->done_head;
    if (a) {
        h->done_head = a->next;
        if (!h->done_head) h->done_tail = NULL;
    }
    pthread_mutex_unlock(&h->mu);
    if (!a) return 0;
    *out = a->out;
    out->token = a->token;
    memset(&a->out, 0, sizeof a->out);
    attempt_free(a);
    return 1;
}

int act_host_busy(act_host *h) {
    if (!h) return 0;
    pthread_mutex_lock(&h->mu);
    int n = h->busy;
    pthread_mutex_unlock(&h->mu);
    return n;
}

static int probe_main(lua_State *L) {
    act_attempt *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    open_environment(L, a);
    resolve_activity(L, a);
    return 0;
}

bool act_host_has(act_host *h, const char *name) {
    if (!h || !name || !*name) return false;
    act_attempt a;
    memset(&a, 0, sizeof a);
    a.host = h;
    a.activity_type = (char *)name; /* borrowed; a is never attempt_free'd */
    a.probe = true;
    a.start_to_close_ns = HAS_BUDGET_NS;
    a.deadline = act_mono_ns() + HAS_BUDGET_NS;
    lua_State *L = luaL_newstate();
    if (!L) return true; /* cannot tell: let the attempt report what is wrong */
    *(act_attempt **)lua_getextraspace(L) = &a;
    lua_pushcfunction(L, probe_main);
    lua_pushlightuserdata(L, &a);
    int st = lua_pcall(L, 1, 0, 0);
    lua_close(L);
    bool known = true;
    /* Only a clean "not found" is false. A module that fails to load (or an
     * ambiguous name) answers true so the attempt fails with the precise
     * message instead of a misleading "unknown activity". */
    if (st == LUA_OK && a.has_out && a.out.failure &&
        a.out.failure->failure_info_case == TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_APPLICATION_FAILURE_INFO &&
        strcmp(a.out.failure->application_failure_info->type, "ActivityNotFound") == 0) {
        known = false;
    } else if (a.has_out || st != LUA_OK || atomic_load(&a.timed_out)) {
        jlog(JLOG_WARN, "looking up activity '%s': %s", name,
             a.out.failure ? a.out.failure->message : "its modules did not load in time");
    }
    act_outcome_clear(&a.out);
    return known;
}
