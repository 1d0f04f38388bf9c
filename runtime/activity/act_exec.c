/*
 * act_exec.c - jorch.exec: run a program with an argv array, never through
 * a shell. fork + execve of a program resolved on PATH beforehand (so the
 * child only makes async-signal-safe calls); the child leads its own
 * process group so a timeout or cancellation kills everything it started;
 * stdin, stdout and stderr are pumped together with poll() so a child that
 * writes a lot while we still feed it cannot deadlock.
 */
#define _GNU_SOURCE /* pipe2, O_CLOEXEC */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "activity/act_int.h"

extern char **environ;

#define EXEC_DEFAULT_MAX_OUTPUT ((size_t)16 << 20)
#define EXEC_KILL_GRACE_NS (2LL * 1000000000LL)
#define EXEC_POLL_MS 50
#define EXEC_CHUNK 65536
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

typedef struct exec_job {
    const char **argv; /* borrowed Lua strings, anchored by the options table */
    char **envp;       /* owned "K=V" strings */
    size_t nenv;
    char *path;        /* resolved program */
    int in_fd, out_fd, err_fd;
    pid_t pid;
    bool reaped;
    int wstatus;
    jbuf out, err;
    bool truncated;
} exec_job;

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* Kills the whole group; used by the box's __gc as the last resort. */
static void job_free(void *p) {
    exec_job *j = p;
    if (j->pid > 0 && !j->reaped) {
        kill(-j->pid, SIGKILL);
        kill(j->pid, SIGKILL);
        while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    close_fd(&j->in_fd);
    close_fd(&j->out_fd);
    close_fd(&j->err_fd);
    for (size_t i = 0; i < j->nenv; i++) free(j->envp[i]);
    free(j->envp);
    free((void *)j->argv);
    free(j->path);
    jbuf_free(&j->out);
    jbuf_free(&j->err);
    free(j);
}

/* ------------------------------------------------------------ options */

static void read_argv(lua_State *L, int opts, exec_job *j) {
    if (lua_getfield(L, opts, "argv") != LUA_TTABLE)
        luaL_error(L, "jorch.exec: argv must be a non-empty array of strings, e.g. argv = {\"git\", \"status\"}");
    int t = lua_gettop(L);
    lua_Integer n = luaL_len(L, t);
    if (n < 1) luaL_error(L, "jorch.exec: argv is empty; give at least the program name");
    size_t bytes = 0;
    if ((uint64_t)n >= SIZE_MAX / sizeof(char *) || !size_mul((size_t)n + 1, sizeof(char *), &bytes))
        luaL_error(L, "jorch.exec: argv is too long");
    j->argv = calloc(1, bytes);
    if (!j->argv) luaL_error(L, "jorch.exec: out of memory");
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, t, i) != LUA_TSTRING)
            luaL_error(L, "jorch.exec: argv[%d] is a %s; every argument must be a string", (int)i,
                       luaL_typename(L, -1));
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len) luaL_error(L, "jorch.exec: argv[%d] contains a NUL byte", (int)i);
        j->argv[i - 1] = s; /* anchored: the argv table stays referenced by opts */
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static int env_add(exec_job *j, size_t *cap, const char *k, size_t kl, const char *v) {
    /* Replace an existing K=... entry (overrides win over the inherited one). */
    size_t vl = strlen(v), len;
    if (!size_add(kl, vl, &len) || !size_add(len, 2, &len)) return -1;
    char *e = malloc(len);
    if (!e) return -1;
    memcpy(e, k, kl);
    e[kl] = '=';
    memcpy(e + kl + 1, v, vl + 1);
    for (size_t i = 0; i < j->nenv; i++) {
        if (strncmp(j->envp[i], k, kl) == 0 && j->envp[i][kl] == '=') {
            free(j->envp[i]);
            j->envp[i] = e;
            return 0;
        }
    }
    if (j->nenv + 1 >= *cap) {
        size_t ncap, bytes;
        if (!size_mul(*cap ? *cap : 16, 2, &ncap) || !size_mul(ncap, sizeof(char *), &bytes)) {
            free(e);
            return -1;
        }
        char **nv = realloc(j->envp, bytes);
        if (!nv) {
            free(e);
            return -1;
        }
        j->envp = nv;
        *cap = ncap;
    }
    j->envp[j->nenv++] = e;
    j->envp[j->nenv] = NULL;
    return 0;
}

static void read_env(lua_State *L, int opts, exec_job *j) {
    size_t cap = 0;
    lua_getfield(L, opts, "env_clear");
    bool clear = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!clear) {
        for (char **e = environ; e && *e; e++) {
            const char *eq = strchr(*e, '=');
            if (!eq) continue;
            if (env_add(j, &cap, *e, (size_t)(eq - *e), eq + 1) < 0) luaL_error(L, "jorch.exec: out of memory");
        }
    }
    int type = lua_getfield(L, opts, "env");
    if (type == LUA_TTABLE) {
        int t = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, t)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "jorch.exec: env must map names to strings");
            size_t kl, vl;
            const char *k = lua_tolstring(L, -2, &kl);
            const char *v = lua_tolstring(L, -1, &vl);
            if (kl == 0 || strlen(k) != kl || strchr(k, '=') || strlen(v) != vl)
                luaL_error(L, "jorch.exec: env name '%s' is empty or contains '=' or NUL (or its value has NUL)", k);
            if (env_add(j, &cap, k, kl, v) < 0) luaL_error(L, "jorch.exec: out of memory");
            lua_pop(L, 1);
        }
    } else if (type != LUA_TNIL) {
        luaL_error(L, "jorch.exec: env must be a table of name = value strings");
    }
    lua_pop(L, 1);
    if (!j->envp) {
        j->envp = calloc(1, sizeof(char *));
        if (!j->envp) luaL_error(L, "jorch.exec: out of memory");
    }
}

static const char *env_lookup(char **envp, const char *name) {
    size_t nl = strlen(name);
    for (char **e = envp; *e; e++)
        if (strncmp(*e, name, nl) == 0 && (*e)[nl] == '=') return *e + nl + 1;
    return NULL;
}

static bool is_executable_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

/* Resolves argv[0] on the child's PATH (before fork: the child must not
 * allocate). Returns an errno for the message, 0 on success. */
static int resolve_program(exec_job *j) {
    const char *prog = j->argv[0];
    if (!*prog) return ENOENT;
    if (strchr(prog, '/')) {
        j->path = jstrdup(prog);
        return j->path ? 0 : ENOMEM;
    }
    const char *path = env_lookup(j->envp, "PATH");
    if (!path) path = getenv("PATH");
    if (!path) path = DEFAULT_PATH;
    int found_err = ENOENT;
    for (const char *p = path;;) {
        const char *end = strchr(p, ':');
        size_t dl = end ? (size_t)(end - p) : strlen(p);
        char cand[PATH_MAX];
        int n = dl ? snprintf(cand, sizeof cand, "%.*s/%s", (int)dl, p, prog) : snprintf(cand, sizeof cand, "./%s", prog);
        if (n > 0 && (size_t)n < sizeof cand) {
            if (is_executable_file(cand)) {
                j->path = jstrdup(cand);
                return j->path ? 0 : ENOMEM;
            }
            if (access(cand, F_OK) == 0) found_err = EACCES;
        }
        if (!end) break;
        p = end + 1;
    }
    return found_err;
}

/* ------------------------------------------------------------ the child */

typedef struct child_report {
    int stage; /* 1: chdir, 2: exec */
    int err;
} child_report;

static void child_fd(int fd, int target) {
    if (fd == target) fcntl(fd, F_SETFD, 0); /* keep it across exec */
    else dup2(fd, target);
}

/* Only async-signal-safe calls between fork and execve. */
static void child_main(exec_job *j, int in_fd, int out_fd, int err_fd, int report_fd, const char *cwd) {
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    child_fd(in_fd, 0);
    child_fd(out_fd, 1);
    child_fd(err_fd, 2);
    child_report r = {1, 0};
    if (cwd && chdir(cwd) < 0) {
        r.err = errno;
    } else {
        execve(j->path, (char *const *)j->argv, j->envp);
        r.stage = 2;
        r.err = errno;
    }
    ssize_t w = write(report_fd, &r, sizeof r);
    (void)w;
    _exit(127);
}

/* ------------------------------------------------------------ waiting */

static void reap(exec_job *j, bool block) {
    if (j->reaped) return;
    for (;;) {
        pid_t r = waitpid(j->pid, &j->wstatus, block ? 0 : WNOHANG);
        if (r == j->pid) {
            j->reaped = true;
            return;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) j->reaped = true; /* ECHILD: someone else reaped it; nothing left to wait for */
        return;
    }
}

/* SIGTERM to the group, up to a grace period for the leader to go, then
 * SIGKILL to whatever is left of the group. */
static void kill_group(exec_job *j) {
    kill(-j->pid, SIGTERM);
    int64_t until = act_mono_ns() + EXEC_KILL_GRACE_NS;
    while (!j->reaped && act_mono_ns() < until) {
        reap(j, false);
        if (!j->reaped) poll(NULL, 0, 10);
    }
    kill(-j->pid, SIGKILL);
    reap(j, true);
}

static void pump_out(int *fd, jbuf *b, size_t max, bool *truncated) {
    char chunk[EXEC_CHUNK];
    for (;;) {
        ssize_t n = read(*fd, chunk, sizeof chunk);
        if (n > 0) {
            size_t room = max > b->len ? max - b->len : 0;
            size_t take = (size_t)n < room ? (size_t)n : room;
            if (take < (size_t)n) *truncated = true; /* keep draining so the child never blocks */
            if (take && jbuf_append(b, chunk, take) < 0) *truncated = true;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        close_fd(fd); /* EOF or error */
        return;
    }
}

static void pump_in(int *fd, const char *data, size_t len, size_t *off) {
    while (*off < len) {
        size_t n = len - *off;
        if (n > EXEC_CHUNK) n = EXEC_CHUNK;
        ssize_t w = write(*fd, data + *off, n);
        if (w > 0) {
            *off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        break; /* EPIPE: the child does not read its stdin; that is its choice */
    }
    close_fd(fd);
}

/* Children run as the same user, so without this any of them (an agent
 * told to by an issue, a git hook it planted, a test) could read this
 * process's environment, with jorch's secrets, from /proc/<pid>/environ,
 * or attach a debugger. A non-dumpable process's /proc files belong to
 * root. Set once, before the first child is started. */
static pthread_once_t undumpable_once = PTHREAD_ONCE_INIT;
static void make_undumpable(void) {
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        jlog(JLOG_WARN, "cannot make this process non-dumpable (%s): child programs could read its "
                        "environment from /proc", strerror(errno));
}

static int set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int act_exec_lua(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    void **slot = act_box_push(L, job_free);
    exec_job *j = calloc(1, sizeof *j);
    if (!j) return luaL_error(L, "jorch.exec: out of memory");
    j->in_fd = j->out_fd = j->err_fd = -1;
    *slot = j;

    read_argv(L, 1, j);
    read_env(L, 1, j);
    lua_getfield(L, 1, "cwd");
    const char *cwd = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_getfield(L, 1, "stdin");
    size_t in_len = 0;
    const char *in_data = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &in_len);
    lua_getfield(L, 1, "timeout");
    double timeout = luaL_optnumber(L, -1, 0);
    lua_getfield(L, 1, "heartbeat");
    double hb = luaL_optnumber(L, -1, 0);
    lua_getfield(L, 1, "max_output");
    double max_d = luaL_optnumber(L, -1, (double)EXEC_DEFAULT_MAX_OUTPUT);
    if (!(timeout >= 0) || timeout > 1e9) return luaL_error(L, "jorch.exec: timeout must be a non-negative number of seconds");
    if (!(hb >= 0) || hb > 1e9) return luaL_error(L, "jorch.exec: heartbeat must be a non-negative number of seconds");
    if (!(max_d >= 0) || max_d > (double)(SIZE_MAX / 2)) return luaL_error(L, "jorch.exec: max_output must be a non-negative number of bytes");
    size_t max_out = (size_t)max_d;
    jbuf_init(&j->out, max_out + 1);
    jbuf_init(&j->err, max_out + 1);

    pthread_once(&undumpable_once, make_undumpable);
    int e = resolve_program(j);
    if (e) return luaL_error(L, "exec: cannot run '%s': %s", j->argv[0], strerror(e));

    int in_p[2] = {-1, -1}, out_p[2] = {-1, -1}, err_p[2] = {-1, -1}, rep_p[2] = {-1, -1};
    bool ok = pipe2(out_p, O_CLOEXEC) == 0 && pipe2(err_p, O_CLOEXEC) == 0 && pipe2(rep_p, O_CLOEXEC) == 0;
    if (ok) {
        if (in_data) ok = pipe2(in_p, O_CLOEXEC) == 0;
        else ok = (in_p[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;
    }
    if (!ok) {
        e = errno;
        for (int k = 0; k < 2; k++) {
            close_fd(&in_p[k]);
            close_fd(&out_p[k]);
            close_fd(&err_p[k]);
            close_fd(&rep_p[k]);
        }
        return luaL_error(L, "exec: cannot create pipes for '%s': %s", j->argv[0], strerror(e));
    }
    pid_t pid = fork();
    if (pid == 0) child_main(j, in_p[0], out_p[1], err_p[1], rep_p[1], cwd);
    e = errno;
    close_fd(&in_p[0]);
    close_fd(&out_p[1]);
    close_fd(&err_p[1]);
    close_fd(&rep_p[1]);
    j->in_fd = in_p[1];
    j->out_fd = out_p[0];
    j->err_fd = err_p[0];
    if (pid < 0) {
        close_fd(&rep_p[0]);
        return luaL_error(L, "exec: cannot run '%s': fork failed: %s", j->argv[0], strerror(e));
    }
    j->pid = pid;
    setpgid(pid, pid); /* also here, so a kill right away already finds the group */

    /* The report pipe closes on a successful execve (O_CLOEXEC). */
    child_report rep;
    ssize_t got;
    do {
        got = read(rep_p[0], &rep, sizeof rep);
    } while (got < 0 && errno == EINTR);
    close_fd(&rep_p[0]);
    if (got == (ssize_t)sizeof rep) {
        reap(j, true);
        if (rep.stage == 1)
            return luaL_error(L, "exec: cannot change to directory '%s' to run '%s': %s", cwd, j->argv[0],
                              strerror(rep.err));
        return luaL_error(L, "exec: cannot run '%s': %s", j->argv[0], strerror(rep.err));
    }

    if ((j->in_fd >= 0 && set_nonblock(j->in_fd) < 0) || set_nonblock(j->out_fd) < 0 || set_nonblock(j->err_fd) < 0) {
        e = errno;
        return luaL_error(L, "exec: cannot configure pipes for '%s': %s", j->argv[0], strerror(e));
    }
    if (j->in_fd >= 0 && in_len == 0) close_fd(&j->in_fd);

    act_attempt *a = act_attempt_of(L);
    int64_t start = act_mono_ns();
    int64_t limit = timeout > 0 ? start + (int64_t)(timeout * 1e9) : 0;
    int64_t hb_ns = hb > 0 ? (int64_t)(hb * 1e9) : 0;
    int64_t next_hb = hb_ns ? start + hb_ns : 0;
    bool timed_out = false;
    size_t in_off = 0;
    while (j->out_fd >= 0 || j->err_fd >= 0 || !j->reaped) {
        int stop = act_attempt_check(a);
        if (stop != ACT_GO) {
            kill_group(j);
            act_box_free(slot);
            return act_attempt_raise_stop(L, stop);
        }
        int64_t now = act_mono_ns();
        if (limit && now >= limit && !timed_out) {
            timed_out = true;
            kill_group(j);
            continue; /* drain what is left, then report */
        }
        if (next_hb && now >= next_hb) {
            act_attempt_heartbeat_again(a);
            next_hb = now + hb_ns;
        }
        struct pollfd p[3];
        nfds_t n = 0;
        if (j->out_fd >= 0) p[n++] = (struct pollfd){j->out_fd, POLLIN, 0};
        if (j->err_fd >= 0) p[n++] = (struct pollfd){j->err_fd, POLLIN, 0};
        if (j->in_fd >= 0) p[n++] = (struct pollfd){j->in_fd, POLLOUT, 0};
        int r = poll(n ? p : NULL, n, EXEC_POLL_MS);
        if (r < 0 && errno != EINTR) {
            e = errno;
            kill_group(j);
            act_box_free(slot);
            return luaL_error(L, "exec: waiting for '%s' failed: %s", j->argv[0], strerror(e));
        }
        for (nfds_t k = 0; r > 0 && k < n; k++) {
            if (!p[k].revents) continue;
            if (p[k].fd == j->out_fd) pump_out(&j->out_fd, &j->out, max_out, &j->truncated);
            else if (p[k].fd == j->err_fd) pump_out(&j->err_fd, &j->err, max_out, &j->truncated);
            else if (p[k].fd == j->in_fd) pump_in(&j->in_fd, in_data, in_len, &in_off);
        }
        reap(j, false);
        if (j->reaped && j->in_fd >= 0) close_fd(&j->in_fd);
    }

    lua_createtable(L, 0, 6);
    if (WIFEXITED(j->wstatus)) {
        lua_pushinteger(L, WEXITSTATUS(j->wstatus));
        lua_setfield(L, -2, "status");
    } else if (WIFSIGNALED(j->wstatus)) {
        lua_pushinteger(L, WTERMSIG(j->wstatus));
        lua_setfield(L, -2, "signal");
    }
    lua_pushlstring(L, j->out.data ? j->out.data : "", j->out.len);
    lua_setfield(L, -2, "stdout");
    lua_pushlstring(L, j->err.data ? j->err.data : "", j->err.len);
    lua_setfield(L, -2, "stderr");
    lua_pushboolean(L, timed_out);
    lua_setfield(L, -2, "timed_out");
    lua_pushboolean(L, j->truncated);
    lua_setfield(L, -2, "truncated");
    act_box_free(slot);
    return 1;
}
