/*
 * service.c - `jorch serve`: one long-lived process executes every open run
 * of a store.
 *
 * One thread runs an event loop over many runners (runner.c): each run is
 * stepped when something happened to it (a request poked through the
 * socket, an activity outcome, a deadline), never polled. Deadlines (timers,
 * retry backoffs, heartbeat checks) sit in one min-heap; activity outcomes
 * wake poll() through a pipe the shared activity host writes to; leases of
 * all runs are renewed by one statement. Live engines are kept in an LRU
 * cache with a size and a memory budget: an evicted run replays its history
 * at its next workflow task. Other processes reach the service through a
 * Unix domain socket, $JORCH_HOME/serve.sock, with one JSON object per line
 * each way (see store.h, store_service_request).
 *
 * The store stays the truth: every state change is committed by the runner
 * exactly as in `jorch run`, so `kill -9` of the service loses nothing, and
 * the next service (or `jorch resume`) continues each run from its store.
 */
#define _GNU_SOURCE /* accept4, pipe2, flock */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define NS INT64_C(1000000000)
#define SVC_BUCKETS 4096u
#define SVC_LINE_MAX ((size_t)64 << 10) /* one request or reply line */
#define SVC_MAX_CLIENTS 512
#define SVC_REPLY_MAX ((size_t)64 << 20) /* a reply line (status lists up to 1000 runs) */
#define SVC_GROUP_MAX 256              /* runs stepped in one group commit */
#define SVC_GROUP_NS (200 * 1000000)   /* ... or for at most this long */
#define SVC_ERROR_RETRY (5 * NS)     /* a run whose step failed (store busy, ...) is tried again after this */

typedef struct svc_run {
    runner *r;
    char run_id[40];
    char workflow_id[256];
    uint32_t gen;
    int64_t due;            /* wall clock: step again at, 0 never */
    size_t heap_idx;        /* SIZE_MAX: not in the heap */
    bool ready;             /* in the ready list */
    bool parked;            /* its last workflow task failed: waits for its retry (in the heap) or a request */
    bool in_lru;
    size_t mem;             /* engine heap at its last step */
    int64_t picked_at;
    char last_error[300];
    act_host *host;
    struct svc_run *next_ready;
    struct svc_run *id_next, *gen_next;
    struct svc_run *lru_prev, *lru_next;
} svc_run;

typedef struct svc_host {
    char dir[1024];
    act_host *h;
} svc_host;

typedef struct svc_client {
    int fd;
    char *buf;
    size_t len;
    char wait_run[40];      /* `result`: answer when this run closes */
    char wait_wid[256];
} svc_client;

typedef struct service {
    store *s;
    store_service_opts o;
    store_runner_opts ro;   /* shared by every runner */
    char *config_json;
    int wake[2];            /* activity outcomes */
    int listen_fd;
    int lock_fd;
    pthread_mutex_t mu;     /* the gen table, against activity threads (heartbeats, logs) */
    svc_run *by_id[SVC_BUCKETS], *by_gen[SVC_BUCKETS];
    size_t n_runs;
    svc_run **heap;
    size_t nheap, capheap;
    svc_run *ready_head, *ready_tail;
    svc_run *lru_head, *lru_tail;
    size_t n_cached, mem_cached;
    svc_host hosts[32];
    size_t nhosts;
    svc_client *clients[SVC_MAX_CLIENTS];
    size_t nclients;
    char (*pending)[40];    /* runs poked but not taken yet (taken in the next group) */
    size_t npending, cappending;
    char (*closed)[40];     /* runs closed in the current group: waiters are told after its commit */
    size_t nclosed, capclosed;
    int64_t started;
    int64_t next_housekeeping;
    uint64_t steps, tasks_failed;
} service;

static volatile sig_atomic_t stop_requested;
static int sig_pipe[2] = {-1, -1};

static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
    char b = 1;
    ssize_t w = write(sig_pipe[1], &b, 1);
    (void)w;
}

static void svc_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void svc_log(const char *fmt, ...) {
    char text[2048], clock[16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    store_clock_text(time_now_nanos(), clock, sizeof clock);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "[serve %s] ", clock);
    runlog_write(prefix, text);
}

/* ------------------------------------------------------------ tables */

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h % SVC_BUCKETS;
}

static svc_run *find_run(service *sv, const char *run_id) {
    for (svc_run *x = sv->by_id[hash_str(run_id)]; x; x = x->id_next)
        if (strcmp(x->run_id, run_id) == 0) return x;
    return NULL;
}

/* Called with sv->mu held. */
static svc_run *find_gen(service *sv, uint32_t gen) {
    for (svc_run *x = sv->by_gen[gen % SVC_BUCKETS]; x; x = x->gen_next)
        if (x->gen == gen) return x;
    return NULL;
}

/* ------------------------------------------------------------ deadline heap */

static bool heap_less(const svc_run *a, const svc_run *b) { return a->due < b->due; }

static void heap_swap(service *sv, size_t i, size_t j) {
    svc_run *t = sv->heap[i];
    sv->heap[i] = sv->heap[j];
    sv->heap[j] = t;
    sv->heap[i]->heap_idx = i;
    sv->heap[j]->heap_idx = j;
}

static void heap_up(service *sv, size_t i) {
    while (i > 0 && heap_less(sv->heap[i], sv->heap[(i - 1) / 2])) {
        heap_swap(sv, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(service *sv, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < sv->nheap && heap_less(sv->heap[l], sv->heap[m])) m = l;
        if (r < sv->nheap && heap_less(sv->heap[r], sv->heap[m])) m = r;
        if (m == i) return;
        heap_swap(sv, i, m);
        i = m;
    }
}

static void heap_remove(service *sv, svc_run *x) {
    if (x->heap_idx == SIZE_MAX) return;
    size_t i = x->heap_idx;
    x->heap_idx = SIZE_MAX;
    sv->nheap--;
    if (i == sv->nheap) return;
    sv->heap[i] = sv->heap[sv->nheap];
    sv->heap[i]->heap_idx = i;
    heap_up(sv, i);
    heap_down(sv, sv->heap[i]->heap_idx);
}

/* Sets the run's next deadline (0: none). On out of memory the run is
 * stepped again within a second instead of being forgotten. */
static void set_due(service *sv, svc_run *x, int64_t due) {
    heap_remove(sv, x);
    x->due = due;
    if (due <= 0) return;
    if (sv->nheap == sv->capheap) {
        size_t cap = sv->capheap ? sv->capheap * 2 : 256;
        svc_run **h = realloc(sv->heap, cap * sizeof *h);
        if (!h) return; /* not scheduled: the housekeeping pass looks at every run */
        sv->heap = h;
        sv->capheap = cap;
    }
    x->heap_idx = sv->nheap;
    sv->heap[sv->nheap++] = x;
    heap_up(sv, x->heap_idx);
}

/* Appends a run id to a growable list; false when out of memory. */
static bool id_push(char (**list)[40], size_t *n, size_t *cap, const char *id) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        char (*g)[40] = realloc(*list, nc * sizeof *g);
        if (!g) return false;
        *list = g;
        *cap = nc;
    }
    snprintf((*list)[(*n)++], 40, "%s", id);
    return true;
}

/* ------------------------------------------------------------ ready list, cache */

static void make_ready(service *sv, svc_run *x) {
    if (x->ready) return;
    x->ready = true;
    x->next_ready = NULL;
    if (sv->ready_tail) sv->ready_tail->next_ready = x;
    else sv->ready_head = x;
    sv->ready_tail = x;
}

static void lru_unlink(service *sv, svc_run *x) {
    if (!x->in_lru) return;
    if (x->lru_prev) x->lru_prev->lru_next = x->lru_next;
    else sv->lru_head = x->lru_next;
    if (x->lru_next) x->lru_next->lru_prev = x->lru_prev;
    else sv->lru_tail = x->lru_prev;
    x->lru_prev = x->lru_next = NULL;
    x->in_lru = false;
    sv->n_cached--;
    sv->mem_cached -= x->mem;
}

/* After a step: a run with a live engine goes to the front; the least
 * recently used engines are dropped while the cache is over its budget. */
static void lru_touch(service *sv, svc_run *x) {
    lru_unlink(sv, x);
    if (!runner_has_engine(x->r)) return;
    x->mem = runner_engine_memory(x->r);
    x->in_lru = true;
    x->lru_next = sv->lru_head;
    if (sv->lru_head) sv->lru_head->lru_prev = x;
    sv->lru_head = x;
    if (!sv->lru_tail) sv->lru_tail = x;
    sv->n_cached++;
    sv->mem_cached += x->mem;
    while (sv->lru_tail && (sv->n_cached > sv->o.cache_size ||
                            (sv->o.cache_memory > 0 && sv->mem_cached > sv->o.cache_memory && sv->n_cached > 1))) {
        svc_run *v = sv->lru_tail;
        lru_unlink(sv, v);
        runner_evict(v->r);
    }
}

/* ------------------------------------------------------------ activity hosts */

static svc_run *route(service *sv, uint64_t token) { return find_gen(sv, runner_token_generation(token)); }

static bool svc_on_heartbeat(void *ud, uint64_t token, const Payloads *details) {
    service *sv = ud;
    bool cancel = true; /* a run this service no longer executes: stop the attempt */
    pthread_mutex_lock(&sv->mu);
    svc_run *x = route(sv, token);
    if (x) cancel = runner_on_heartbeat(x->r, token, details);
    pthread_mutex_unlock(&sv->mu);
    return cancel;
}

static void svc_on_start(void *ud, uint64_t token) {
    service *sv = ud;
    pthread_mutex_lock(&sv->mu);
    svc_run *x = route(sv, token);
    if (x) runner_on_start(x->r, token);
    pthread_mutex_unlock(&sv->mu);
}

static void svc_act_log(void *ud, uint64_t token, const char *activity_type, const char *line) {
    service *sv = ud;
    pthread_mutex_lock(&sv->mu);
    svc_run *x = route(sv, token);
    if (x) runner_act_log(x->r, activity_type, line);
    pthread_mutex_unlock(&sv->mu);
}

/* The activity host for a run's activities directory: one per directory
 * (a host loads modules from one directory), each with the service's
 * concurrency, all waking the same pipe. */
static act_host *host_for(service *sv, const char *dir, jerr *err) {
    const char *d = dir && *dir ? dir : "activities";
    for (size_t i = 0; i < sv->nhosts; i++)
        if (strcmp(sv->hosts[i].dir, d) == 0) return sv->hosts[i].h;
    if (sv->nhosts == sizeof sv->hosts / sizeof sv->hosts[0]) {
        jerr_set(err, JERR_USAGE, "the service executes runs from at most %zu activities directories; run %s "
                 "names another one (%s): execute it with 'jorch resume'",
                 sizeof sv->hosts / sizeof sv->hosts[0], "?", d);
        return NULL;
    }
    act_host_config hc = {.activities_dir = d, .threads = sv->o.concurrency, .on_heartbeat = svc_on_heartbeat,
                          .ud = sv, .config_json = sv->config_json, .log_token_fn = svc_act_log,
                          .on_start = svc_on_start, .wake_fd = sv->wake[1]};
    act_host *h = act_host_new(&hc, err);
    if (!h) return NULL;
    svc_host *sh = &sv->hosts[sv->nhosts++];
    snprintf(sh->dir, sizeof sh->dir, "%s", d);
    sh->h = h;
    return h;
}

/* ------------------------------------------------------------ runs */

static void run_log_path(service *sv, const char *wid, char *out, size_t len) {
    char fname[3100];
    if (id_file_name(wid, fname, sizeof fname) != 0) snprintf(fname, sizeof fname, "run");
    snprintf(out, len, "%s/logs/%s.log", store_home(sv->s), fname);
}

static void client_notify_closed(service *sv, const char *run_id);

/* Lets a run go: out of every table, its lease released (release=false
 * when another process took it), its runner freed. */
static void drop_run(service *sv, svc_run *x, bool release) {
    heap_remove(sv, x);
    lru_unlink(sv, x);
    if (x->ready) {
        svc_run **pp = &sv->ready_head;
        svc_run *prev = NULL;
        while (*pp && *pp != x) {
            prev = *pp;
            pp = &(*pp)->next_ready;
        }
        if (*pp) {
            *pp = x->next_ready;
            if (sv->ready_tail == x) sv->ready_tail = prev;
        }
        x->ready = false;
    }
    pthread_mutex_lock(&sv->mu);
    for (svc_run **pp = &sv->by_id[hash_str(x->run_id)]; *pp; pp = &(*pp)->id_next)
        if (*pp == x) {
            *pp = x->id_next;
            break;
        }
    for (svc_run **pp = &sv->by_gen[x->gen % SVC_BUCKETS]; *pp; pp = &(*pp)->gen_next)
        if (*pp == x) {
            *pp = x->gen_next;
            break;
        }
    pthread_mutex_unlock(&sv->mu);
    if (release) runner_close(x->r);
    runner_free(x->r);
    sv->n_runs--;
    free(x);
}

/* A lease with this process's owner name that this service does not hold:
 * left by an earlier service with the same pid (a container's pid 1
 * restarted), so it is free. */
static bool owned_by_me(service *sv, const char *run_id) {
    sqlite3_stmt *q = NULL;
    bool mine = false;
    if (sqlite3_prepare_v2(sv->s->db, "SELECT 1 FROM runs WHERE run_id=?1 AND lease_owner=?2", -1, &q, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(q, 1, run_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, sv->s->owner, -1, SQLITE_STATIC);
        mine = sqlite3_step(q) == SQLITE_ROW;
    }
    sqlite3_finalize(q);
    return mine;
}

/* Takes a run into the service: 0 taken (or already here), 1 not taken
 * (closed, or a live process executes it), -1 error. */
static int adopt(service *sv, const char *run_id, jerr *err) {
    svc_run *x = find_run(sv, run_id);
    if (x) return 0;
    store_run cur;
    if (store_run_find(sv->s, run_id, &cur, err) != 0) return -1;
    if (cur.status != RUN_RUNNING) return 1;
    if (!owned_by_me(sv, cur.run_id) && store_run_has_executor(sv->s, cur.run_id)) return 1;
    act_host *h = host_for(sv, cur.activities_dir, err);
    if (!h) return -1;
    x = calloc(1, sizeof *x);
    if (!x) return jerr_oom(err, "taking a run into the service");
    x->heap_idx = SIZE_MAX;
    x->host = h;
    snprintf(x->run_id, sizeof x->run_id, "%s", cur.run_id);
    snprintf(x->workflow_id, sizeof x->workflow_id, "%s", cur.workflow_id);
    x->r = runner_new(sv->s, &sv->ro, cur.run_id, h, err);
    if (!x->r) {
        free(x);
        return -1;
    }
    char logpath[4300];
    run_log_path(sv, cur.workflow_id, logpath, sizeof logpath);
    runner_set_log(x->r, logpath);
    /* the run's log exists from the start, as a background process's does */
    int lfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (lfd >= 0) close(lfd);
    int rc = runner_open(x->r, err);
    if (rc != 0) {
        if (rc < 0 && err->code != JERR_USAGE) svc_log("cannot take run %s (%s): %s", cur.workflow_id, cur.run_id, err->msg);
        runner_close(x->r);
        runner_free(x->r);
        free(x);
        return rc < 0 && err->code != JERR_USAGE ? -1 : 1;
    }
    x->gen = runner_generation(x->r);
    x->picked_at = time_now_nanos();
    pthread_mutex_lock(&sv->mu);
    uint32_t b = hash_str(x->run_id);
    x->id_next = sv->by_id[b];
    sv->by_id[b] = x;
    x->gen_next = sv->by_gen[x->gen % SVC_BUCKETS];
    sv->by_gen[x->gen % SVC_BUCKETS] = x;
    pthread_mutex_unlock(&sv->mu);
    sv->n_runs++;
    make_ready(sv, x);
    return 0;
}

/* One step of one run; what it waits for goes into the heap. */
static void step_run(service *sv, svc_run *x) {
    if (x->parked) return;
    char new_run_id[40] = "";
    runner_wait w;
    jerr e = {0};
    sv->steps++;
    int rc = runner_step(x->r, new_run_id, &w, &e);
    if (rc == RUNNER_WAITING) {
        x->last_error[0] = '\0';
        set_due(sv, x, w.wall_due);
        lru_touch(sv, x);
        return;
    }
    if (rc == RUNNER_CLOSED) {
        const store_run *r = runner_run(x->r);
        char wid[256], next[40] = "";
        snprintf(wid, sizeof wid, "%s", r->workflow_id);
        bool continued = r->status == RUN_CONTINUED_AS_NEW;
        if (continued) {
            store_run nr;
            jerr ignore = {0};
            if (new_run_id[0]) snprintf(next, sizeof next, "%s", new_run_id);
            else if (store_run_find(sv->s, wid, &nr, &ignore) == 0) snprintf(next, sizeof next, "%s", nr.run_id);
        }
        char run_id[40];
        snprintf(run_id, sizeof run_id, "%s", x->run_id);
        drop_run(sv, x, true);
        if (next[0] && strcmp(next, run_id) != 0) {
            jerr ae = {0};
            if (adopt(sv, next, &ae) < 0) svc_log("cannot take run %s (continued as new): %s", next, ae.msg);
        }
        if (!id_push(&sv->closed, &sv->nclosed, &sv->capclosed, run_id)) client_notify_closed(sv, run_id);
        return;
    }
    if (rc == -2) {
        /* the run's own failure (its script, its limits): it waits, open, for a fix
         * (jorch upgrade), a request or the task's retry (as Temporal retries a
         * failed workflow task), backed off per failure in a row; the other runs go on */
        sv->tasks_failed++;
        x->parked = true;
        snprintf(x->last_error, sizeof x->last_error, "workflow task failed: %.270s", e.msg);
        set_due(sv, x, runner_task_retry_at(x->r));
        lru_touch(sv, x);
        return;
    }
    if (e.code == JERR_USAGE) {
        /* another process took the run over (its lease lapsed): it is theirs now */
        svc_log("%s", e.msg);
        drop_run(sv, x, false);
        return;
    }
    snprintf(x->last_error, sizeof x->last_error, "%.290s", e.msg);
    svc_log("run %s (%s): %s; trying again in %d s", x->workflow_id, x->run_id, e.msg, (int)(SVC_ERROR_RETRY / NS));
    set_due(sv, x, time_now_nanos() + SVC_ERROR_RETRY);
}

static void drain_outcomes(service *sv) {
    char buf[256];
    while (read(sv->wake[0], buf, sizeof buf) > 0) {
    }
    /* all outcomes queued now in one group commit (see step_group) */
    jerr ge = {0};
    bool grouped = store_group_begin(sv->s, &ge) == 0;
    for (size_t i = 0; i < sv->nhosts; i++) {
        act_outcome o;
        memset(&o, 0, sizeof o);
        while (act_host_wait(sv->hosts[i].h, 0, &o) == 1) {
            pthread_mutex_lock(&sv->mu);
            svc_run *x = route(sv, o.token);
            pthread_mutex_unlock(&sv->mu);
            if (x) {
                jerr e = {0};
                if (runner_outcome(x->r, &o, &e) != 0) {
                    if (e.code == JERR_USAGE) {
                        svc_log("%s", e.msg);
                        act_outcome_clear(&o);
                        drop_run(sv, x, false);
                        memset(&o, 0, sizeof o);
                        continue;
                    }
                    /* not recorded: the attempt runs again when the run is next taken */
                    svc_log("run %s (%s): recording an activity outcome failed: %s", x->workflow_id, x->run_id, e.msg);
                }
                x->parked = false;
                make_ready(sv, x);
            }
            act_outcome_clear(&o);
            memset(&o, 0, sizeof o);
        }
    }
    if (grouped && store_group_commit(sv->s, &ge) != 0) {
        svc_log("the service stops: %s", ge.msg);
        stop_requested = 1;
    }
}

/* Every lease/3: renews the leases of all runs this process holds (one
 * statement; each commit still checks its run's generation), and takes
 * every open run no live process executes (a new run whose poke was lost,
 * a run whose `jorch run` process died), except runs whose last task failed
 * with nothing new since. */
static void housekeeping(service *sv, bool first) {
    jerr e = {0};
    if (!first) {
        if (store_check_files(sv->s, &e) != 0) {
            svc_log("%s", e.msg);
            stop_requested = 1;
            return;
        }
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(sv->s->db, "UPDATE runs SET lease_until=?1 WHERE lease_owner=?2 AND status=1", -1, &q,
                               NULL) == SQLITE_OK) {
            sqlite3_bind_int64(q, 1, time_now_nanos() + store_lease_nanos());
            sqlite3_bind_text(q, 2, sv->s->owner, -1, SQLITE_STATIC);
            if (sqlite3_step(q) != SQLITE_DONE) {
                store_db_error(sv->s, "renewing the leases of the service's runs", &e);
                svc_log("%s (tried again in %d s)", e.msg, (int)(store_lease_nanos() / 3 / NS));
            }
        }
        sqlite3_finalize(q);
    }
    sqlite3_stmt *q = NULL;
    /* at the first pass also runs whose lease names this process: an earlier
     * service with the same pid left them */
    if (sqlite3_prepare_v2(sv->s->db, "SELECT run_id FROM runs WHERE status=1 AND (?2 OR lease_owner IS NULL OR "
                           "lease_owner != ?1) ORDER BY seq", -1, &q, NULL) != SQLITE_OK) {
        store_db_error(sv->s, "listing open runs", &e);
        svc_log("%s", e.msg);
        return;
    }
    sqlite3_bind_text(q, 1, sv->s->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, first);
    char (*ids)[40] = NULL;
    size_t n = 0, cap = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char (*g)[40] = realloc(ids, nc * sizeof *g);
            if (!g) break;
            ids = g;
            cap = nc;
        }
        snprintf(ids[n++], 40, "%s", (const char *)sqlite3_column_text(q, 0));
    }
    sqlite3_finalize(q);
    size_t taken = 0;
    for (size_t i = 0; i < n; i++) {
        if (find_run(sv, ids[i])) continue;
        /* a run whose last task failed (a foreground `jorch run` that exited
         * on it) waits for a request or `jorch resume`, as a run the service
         * parked does: taking it would only fail the task again and race the
         * user's resume; a restart of the service tries it again */
        if (!first && store_run_task_failed_idle(sv->s, ids[i])) continue;
        /* taken with the next groups (store_run_has_executor is asked there) */
        if (id_push(&sv->pending, &sv->npending, &sv->cappending, ids[i])) taken++;
    }
    free(ids);
    if (taken) svc_log("taking %zu open run%s", taken, taken == 1 ? "" : "s");
}

/* ------------------------------------------------------------ socket */

static int sock_addr(const char *home, struct sockaddr_un *a, int *dirfd, jerr *err) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    *dirfd = -1;
    int n = snprintf(a->sun_path, sizeof a->sun_path, "%s/serve.sock", home);
    if (n > 0 && (size_t)n < sizeof a->sun_path) return 0;
    /* a long $JORCH_HOME: reach the socket through a descriptor of the directory */
    *dirfd = open(home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*dirfd < 0) return jerr_set(err, JERR_BACKEND, "cannot open %s: %s", home, strerror(errno));
    snprintf(a->sun_path, sizeof a->sun_path, "/proc/self/fd/%d/serve.sock", *dirfd);
    return 0;
}

static int listen_socket(service *sv, jerr *err) {
    struct sockaddr_un a;
    int dirfd;
    if (sock_addr(store_home(sv->s), &a, &dirfd, err) != 0) return -1;
    unlink(a.sun_path); /* a stale socket of a dead service (the lock says none runs) */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    mode_t old = umask(077);
    int rc = fd >= 0 ? bind(fd, (struct sockaddr *)&a, sizeof a) : -1;
    umask(old);
    if (rc == 0) rc = listen(fd, 256);
    if (dirfd >= 0) close(dirfd);
    if (rc != 0) {
        jerr_set(err, JERR_BACKEND, "cannot listen on %s/serve.sock: %s", store_home(sv->s), strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    sv->listen_fd = fd;
    return 0;
}

static void client_close(service *sv, size_t i) {
    close(sv->clients[i]->fd);
    free(sv->clients[i]->buf);
    free(sv->clients[i]);
    sv->clients[i] = sv->clients[--sv->nclients];
}

/* Replies are small and clients read them at once; a client that does not
 * is not waited on for long (the socket has a send timeout). */
static void client_reply(svc_client *c, const char *json) {
    size_t len = strlen(json);
    const char *p = json;
    while (len > 0) {
        ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
            if (poll(&pf, 1, 1000) <= 0) return;
            continue;
        }
        if (w <= 0) return;
        p += w;
        len -= (size_t)w;
    }
    ssize_t w = send(c->fd, "\n", 1, MSG_NOSIGNAL);
    (void)w;
}

static void reply_obj(svc_client *c, cJSON *o) {
    char *t = o ? cJSON_PrintUnformatted(o) : NULL;
    client_reply(c, t ? t : "{\"ok\":false,\"error\":\"out of memory\"}");
    free(t);
    cJSON_Delete(o);
}

static void reply_error(svc_client *c, const char *msg) {
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddBoolToObject(o, "ok", false);
        cJSON_AddStringToObject(o, "error", msg);
    }
    reply_obj(c, o);
}

static void client_notify_closed(service *sv, const char *run_id) {
    for (size_t i = 0; i < sv->nclients;) {
        svc_client *c = sv->clients[i];
        if (c->wait_run[0] && strcmp(c->wait_run, run_id) == 0) {
            /* a continued run: the wait goes on with the chain's newest run */
            store_run nr;
            jerr e = {0};
            if (store_run_find(sv->s, c->wait_wid, &nr, &e) == 0 && nr.status == RUN_RUNNING && find_run(sv, nr.run_id)) {
                snprintf(c->wait_run, sizeof c->wait_run, "%s", nr.run_id);
                i++;
                continue;
            }
            client_reply(c, "{\"ok\":true,\"closed\":true}");
            client_close(sv, i);
            continue;
        }
        i++;
    }
}

static const char *waiting_text(service *sv, svc_run *x, char *buf, size_t len) {
    if (x->parked) {
        int64_t at = runner_task_retry_at(x->r);
        char clock[16] = "";
        if (at > 0) store_clock_text(at, clock, sizeof clock);
        snprintf(buf, len, "a fix: %s (attempt %d%s%s)", x->last_error, runner_task_attempts(x->r),
                 at > 0 ? ", tried again at " : "", clock);
        return buf;
    }
    const cJSON *st = runner_status(x->r);
    if (st) store_waiting_text(sv->s, x->run_id, st, buf, len);
    else snprintf(buf, len, "%s", x->last_error[0] ? x->last_error : "its first workflow task");
    return buf;
}

static void handle_status(service *sv, svc_client *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON *runs = o ? cJSON_AddArrayToObject(o, "runs") : NULL;
    if (!runs) {
        cJSON_Delete(o);
        reply_error(c, "out of memory");
        return;
    }
    cJSON_AddBoolToObject(o, "ok", true);
    cJSON_AddNumberToObject(o, "pid", (double)getpid());
    cJSON_AddNumberToObject(o, "started", (double)(sv->started / 1000000));
    cJSON_AddNumberToObject(o, "runs_count", (double)sv->n_runs);
    cJSON_AddNumberToObject(o, "cached", (double)sv->n_cached);
    cJSON_AddNumberToObject(o, "cached_memory", (double)sv->mem_cached);
    cJSON_AddNumberToObject(o, "cache_size", (double)sv->o.cache_size);
    cJSON_AddNumberToObject(o, "cache_memory", (double)sv->o.cache_memory);
    cJSON_AddNumberToObject(o, "concurrency", (double)sv->o.concurrency);
    cJSON_AddNumberToObject(o, "steps", (double)sv->steps);
    size_t listed = 0;
    for (size_t b = 0; b < SVC_BUCKETS; b++)
        for (svc_run *x = sv->by_id[b]; x && listed < 1000; x = x->id_next, listed++) {
            cJSON *r = cJSON_CreateObject();
            if (!r) break;
            char w[600];
            cJSON_AddStringToObject(r, "workflow_id", x->workflow_id);
            cJSON_AddStringToObject(r, "run_id", x->run_id);
            cJSON_AddStringToObject(r, "waiting", waiting_text(sv, x, w, sizeof w));
            cJSON_AddBoolToObject(r, "cached", runner_has_engine(x->r));
            cJSON_AddBoolToObject(r, "task_failed", x->parked);
            if (x->parked) {
                cJSON_AddNumberToObject(r, "task_attempts", runner_task_attempts(x->r));
                /* milliseconds since the epoch, as "started"; 0: no automatic retry */
                cJSON_AddNumberToObject(r, "task_retry_at", (double)(runner_task_retry_at(x->r) / 1000000));
            }
            cJSON_AddItemToArray(runs, r);
        }
    reply_obj(c, o);
}

static void handle_query(service *sv, svc_client *c, const cJSON *req, svc_run *x) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(req, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(req, "args");
    if (!x || x->parked || !runner_has_engine(x->r) || !cJSON_IsString(name)) {
        client_reply(c, "{\"ok\":true,\"live\":false}"); /* the client replays the history itself */
        return;
    }
    jerr e = {0};
    Payloads *in = NULL;
    if (cJSON_IsString(args)) {
        in = (Payloads *)protojson_parse(&temporal__api__common__v1__payloads__descriptor, args->valuestring,
                                         strlen(args->valuestring), &e);
        if (!in) {
            reply_error(c, e.msg);
            return;
        }
    }
    Payloads *ans = NULL;
    int rc = runner_query(x->r, name->valuestring, in, &ans, &e);
    if (in) protobuf_c_message_free_unpacked(&in->base, NULL);
    cJSON *o = cJSON_CreateObject();
    if (o && rc == 0) {
        jbuf b;
        jbuf_init(&b, SVC_LINE_MAX / 2);
        Payloads empty;
        temporal__api__common__v1__payloads__init(&empty);
        if (protojson_write(ans ? &ans->base : &empty.base, 0, &b, &e) == 0 && b.data) {
            cJSON_AddBoolToObject(o, "ok", true);
            cJSON_AddBoolToObject(o, "live", true);
            cJSON_AddStringToObject(o, "answer", b.data);
        } else {
            /* too big for a line: the client replays the history itself */
            cJSON_AddBoolToObject(o, "ok", true);
            cJSON_AddBoolToObject(o, "live", false);
        }
        jbuf_free(&b);
    } else if (o) {
        cJSON_AddBoolToObject(o, "ok", false);
        cJSON_AddStringToObject(o, "error", e.msg);
        cJSON_AddNumberToObject(o, "code", e.code);
    }
    if (ans) protobuf_c_message_free_unpacked(&ans->base, NULL);
    reply_obj(c, o);
}

/* One request line. Returns false when the client is done (closed). */
static bool handle_line(service *sv, size_t ci, const char *line) {
    svc_client *c = sv->clients[ci];
    cJSON *req = cJSON_Parse(line);
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(req, "op");
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(req, "run");
    const char *run_id = cJSON_IsString(run) && strlen(run->valuestring) < 40 ? run->valuestring : NULL;
    if (!cJSON_IsString(op)) {
        reply_error(c, "a request is one JSON object with \"op\"");
        cJSON_Delete(req);
        return true;
    }
    const char *o = op->valuestring;
    if (strcmp(o, "status") == 0) {
        handle_status(sv, c);
    } else if (strcmp(o, "poke") == 0 && run_id) {
        /* a request was queued for the run, or the run was started: act on it now */
        /* a run not taken yet is taken with the next group, not while the client waits */
        svc_run *x = find_run(sv, run_id);
        bool ok = true;
        if (x) {
            x->parked = false;
            make_ready(sv, x);
        } else {
            ok = id_push(&sv->pending, &sv->npending, &sv->cappending, run_id);
        }
        client_reply(c, ok ? "{\"ok\":true,\"executed\":true}" : "{\"ok\":false,\"error\":\"out of memory\"}");
    } else if (strcmp(o, "query") == 0 && run_id) {
        handle_query(sv, c, req, find_run(sv, run_id));
    } else if (strcmp(o, "result") == 0 && run_id) {
        svc_run *x = find_run(sv, run_id);
        if (!x) {
            client_reply(c, "{\"ok\":true,\"executed\":false}");
        } else {
            /* answered when the run closes (client_notify_closed) */
            snprintf(c->wait_run, sizeof c->wait_run, "%s", run_id);
            snprintf(c->wait_wid, sizeof c->wait_wid, "%s", x->workflow_id);
            client_reply(c, "{\"ok\":true,\"executed\":true}");
        }
    } else if (strcmp(o, "release") == 0 && run_id) {
        /* `jorch resume` takes a run whose last workflow task failed over in its own process */
        svc_run *x = find_run(sv, run_id);
        bool released = false;
        if (x && x->parked) {
            drop_run(sv, x, true);
            released = true;
        }
        client_reply(c, released ? "{\"ok\":true,\"released\":true}" : "{\"ok\":true,\"released\":false}");
    } else {
        reply_error(c, "unknown request (status, poke, query, result, release with \"run\")");
    }
    cJSON_Delete(req);
    return true;
}

static void client_read(service *sv, size_t i) {
    svc_client *c = sv->clients[i];
    char tmp[4096];
    ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR && errno != EWOULDBLOCK)) {
        client_close(sv, i);
        return;
    }
    if (n < 0) return;
    if (c->len + (size_t)n >= SVC_LINE_MAX) {
        reply_error(c, "request line too long (at most 64 KiB)");
        client_close(sv, i);
        return;
    }
    memcpy(c->buf + c->len, tmp, (size_t)n);
    c->len += (size_t)n;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (!nl) return;
        *nl = '\0';
        handle_line(sv, i, c->buf);
        size_t used = (size_t)(nl - c->buf) + 1;
        memmove(c->buf, nl + 1, c->len - used);
        c->len -= used;
    }
}

static void accept_clients(service *sv) {
    while (sv->nclients < SVC_MAX_CLIENTS) {
        int fd = accept4(sv->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return;
        svc_client *c = calloc(1, sizeof *c);
        char *buf = malloc(SVC_LINE_MAX);
        if (!c || !buf) {
            free(c);
            free(buf);
            close(fd);
            return;
        }
        c->fd = fd;
        c->buf = buf;
        sv->clients[sv->nclients++] = c;
    }
}

/* Takes the poked runs and steps the ready ones (oldest first), all in
 * one group commit: one transaction and one fsync for up to SVC_GROUP_MAX
 * runs' workflow tasks, timers and requests, each run's changes still a
 * unit of their own (a savepoint). Safe for the crash guarantees: nothing
 * leaves the process before the group commits except activity attempts,
 * which are at-least-once anyway (an attempt started in a group lost to a
 * crash runs again). Waiters on runs that closed are told after the
 * commit. A failed group commit (disk full, store files gone) stops the
 * service: its memory is then ahead of the store, and the next start
 * continues from the store. */
static int step_group(service *sv, jerr *err) {
    int64_t t0 = time_now_nanos();
    if (store_group_begin(sv->s, err) != 0) {
        /* another process holds the store longer than the busy timeout: try again next turn */
        svc_log("%s (tried again)", err->msg);
        return 0;
    }
    size_t took = sv->npending < SVC_GROUP_MAX ? sv->npending : SVC_GROUP_MAX;
    for (size_t i = 0; i < took; i++) {
        jerr e = {0};
        adopt(sv, sv->pending[i], &e);
    }
    memmove(sv->pending, sv->pending + took, (sv->npending - took) * sizeof *sv->pending);
    sv->npending -= took;
    int n = 0;
    while (sv->ready_head && n < SVC_GROUP_MAX && !stop_requested && time_now_nanos() - t0 < SVC_GROUP_NS) {
        svc_run *x = sv->ready_head;
        sv->ready_head = x->next_ready;
        if (!sv->ready_head) sv->ready_tail = NULL;
        x->ready = false;
        step_run(sv, x);
        n++;
    }
    if (store_group_commit(sv->s, err) != 0)
        return jerr_prefix(err, "the service stops: committing the work of %d runs failed", n);
    for (size_t i = 0; i < sv->nclosed; i++) client_notify_closed(sv, sv->closed[i]);
    sv->nclosed = 0;
    return 0;
}

/* ------------------------------------------------------------ the loop */

static int lock_service(service *sv, jerr *err) {
    char path[1100];
    snprintf(path, sizeof path, "%s/serve.lock", store_home(sv->s));
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return jerr_set(err, JERR_BACKEND, "cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        jerr_set(err, JERR_USAGE, "a service already executes the runs of %s (process %s); 'jorch serve --status' "
                 "shows it", store_home(sv->s), pid[0] ? pid : "?");
        return 1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        /* the pid is only shown in messages; the lock is what counts */
    }
    sv->lock_fd = fd;
    return 0;
}

int store_service_run(store *s, const store_service_opts *o, jerr *err) {
    if (s->readonly)
        return jerr_set(err, JERR_BACKEND, "store %s is read-only: the service cannot execute its runs", s->home);
    service *sv = calloc(1, sizeof *sv);
    if (!sv) return jerr_oom(err, "starting the service");
    sv->s = s;
    sv->o = *o;
    if (sv->o.concurrency <= 0) sv->o.concurrency = 8;
    if (sv->o.cache_size == 0) sv->o.cache_size = 1000;
    sv->ro.stop_on_task_failure = true;
    sv->ro.task_retry_first = o->task_retry_first > 0 ? o->task_retry_first : STORE_TASK_RETRY_FIRST;
    sv->ro.follow_continue_as_new = false;
    sv->listen_fd = sv->lock_fd = -1;
    sv->wake[0] = sv->wake[1] = -1;
    pthread_mutex_init(&sv->mu, NULL);
    int rc = lock_service(sv, err);
    if (rc != 0) {
        pthread_mutex_destroy(&sv->mu);
        free(sv);
        return rc;
    }
    if (o->config_json) sv->config_json = jstrdup(o->config_json);
    char logdir[1100];
    snprintf(logdir, sizeof logdir, "%s/logs", s->home);
    mkdir(logdir, 0700);
    if (pipe2(sv->wake, O_CLOEXEC | O_NONBLOCK) != 0 || pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = jerr_set(err, JERR_INTERNAL, "the service cannot make a pipe: %s", strerror(errno));
        goto out;
    }
    if (listen_socket(sv, err) != 0) {
        rc = -1;
        goto out;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sv->started = time_now_nanos();
    svc_log("service %ld started on %s (concurrency %d, cache %zu runs / %zu MiB)", (long)getpid(), s->home,
            sv->o.concurrency, sv->o.cache_size, sv->o.cache_memory >> 20);
    housekeeping(sv, true);
    int64_t period = store_lease_nanos() / 3;
    sv->next_housekeeping = time_now_nanos() + period;
    struct pollfd *pfd = calloc(SVC_MAX_CLIENTS + 3, sizeof *pfd);
    if (!pfd) {
        rc = jerr_oom(err, "running the service");
        goto out;
    }
    while (!stop_requested) {
        /* everything that is ready, oldest first; a run made ready while
         * this pass runs waits for the next pass (after the sockets) */
        if ((sv->ready_head || sv->npending) && !stop_requested && step_group(sv, err) != 0) {
            rc = -1;
            free(pfd);
            goto out;
        }
        int64_t now = time_now_nanos();
        while (sv->nheap > 0 && sv->heap[0]->due <= now) {
            svc_run *x = sv->heap[0];
            heap_remove(sv, x);
            x->due = 0;
            x->parked = false; /* a parked run's deadline is its task's retry */
            make_ready(sv, x);
        }
        if (now >= sv->next_housekeeping) {
            housekeeping(sv, false);
            sv->next_housekeeping = time_now_nanos() + period;
        }
        int64_t until = sv->next_housekeeping;
        if (sv->nheap > 0 && sv->heap[0]->due < until) until = sv->heap[0]->due;
        int timeout = sv->ready_head || sv->npending ? 0 : (int)((until - time_now_nanos() + 999999) / 1000000);
        if (timeout < 0) timeout = 0;
        size_t np = 0;
        pfd[np++] = (struct pollfd){.fd = sig_pipe[0], .events = POLLIN};
        pfd[np++] = (struct pollfd){.fd = sv->wake[0], .events = POLLIN};
        pfd[np++] = (struct pollfd){.fd = sv->nclients < SVC_MAX_CLIENTS ? sv->listen_fd : -1, .events = POLLIN};
        for (size_t i = 0; i < sv->nclients; i++) pfd[np++] = (struct pollfd){.fd = sv->clients[i]->fd, .events = POLLIN};
        int pr = poll(pfd, np, timeout);
        if (pr < 0 && errno != EINTR) {
            rc = jerr_set(err, JERR_INTERNAL, "the service's poll failed: %s", strerror(errno));
            free(pfd);
            goto out;
        }
        if (pr <= 0) continue;
        if (pfd[1].revents) drain_outcomes(sv);
        /* clients: from the last so that closing one (swapped with the last) skips none */
        size_t nc = sv->nclients;
        for (size_t i = nc; i-- > 0;)
            if (pfd[3 + i].revents && i < sv->nclients) client_read(sv, i);
        if (pfd[2].revents) accept_clients(sv);
    }
    free(pfd);
    rc = 0;
out:
    svc_log("service %ld stopping: %zu run%s handed back to the store", (long)getpid(), sv->n_runs,
            sv->n_runs == 1 ? "" : "s");
    /* attempts still running are cancelled; their rows stay started and run
     * again when the runs are taken next (activities are at-least-once) */
    jerr ge = {0};
    bool grouped = store_group_begin(s, &ge) == 0;
    for (size_t b = 0; b < SVC_BUCKETS; b++)
        while (sv->by_id[b]) drop_run(sv, sv->by_id[b], true);
    if (grouped && store_group_commit(s, &ge) != 0) svc_log("releasing the runs' leases: %s", ge.msg);
    for (size_t i = 0; i < sv->nhosts; i++) act_host_free(sv->hosts[i].h);
    while (sv->nclients) client_close(sv, sv->nclients - 1);
    if (sv->listen_fd >= 0) {
        char path[1100];
        snprintf(path, sizeof path, "%s/serve.sock", s->home);
        unlink(path);
        close(sv->listen_fd);
    }
    for (int i = 0; i < 2; i++) {
        if (sv->wake[i] >= 0) close(sv->wake[i]);
        if (sig_pipe[i] >= 0) close(sig_pipe[i]);
        sig_pipe[i] = -1;
    }
    if (sv->lock_fd >= 0) close(sv->lock_fd);
    free(sv->heap);
    free(sv->pending);
    free(sv->closed);
    free(sv->config_json);
    pthread_mutex_destroy(&sv->mu);
    free(sv);
    return rc;
}

/* ------------------------------------------------------------ clients */

static int read_line(int fd, jbuf *b, int64_t deadline, char **line);

int store_service_request(const char *home, const char *line, char **reply, int timeout_ms, jerr *err) {
    *reply = NULL;
    struct sockaddr_un a;
    int dirfd;
    if (sock_addr(home, &a, &dirfd, err) != 0) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = fd >= 0 ? connect(fd, (struct sockaddr *)&a, sizeof a) : -1;
    int saved = errno;
    if (dirfd >= 0) close(dirfd);
    if (rc != 0) {
        if (fd >= 0) close(fd);
        if (saved == ENOENT || saved == ECONNREFUSED) return 1; /* no service */
        return jerr_set(err, JERR_BACKEND, "cannot reach the service at %s/serve.sock: %s", home, strerror(saved));
    }
    size_t len = strlen(line);
    const char *p = line;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            close(fd);
            return jerr_set(err, JERR_BACKEND, "cannot send a request to the service at %s/serve.sock: %s", home,
                            strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    jbuf b;
    jbuf_init(&b, SVC_REPLY_MAX);
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : time_now_nanos() + (int64_t)timeout_ms * 1000000;
    rc = read_line(fd, &b, deadline, reply);
    close(fd);
    jbuf_free(&b);
    if (rc == 2)
        return jerr_set(err, JERR_BACKEND, "the service at %s/serve.sock did not answer within %d ms", home,
                        timeout_ms);
    /* 1: the service stopped (or died) meanwhile: as if there were none */
    return rc;
}

int store_service_poke(const char *home, const char *run_id) {
    char line[128];
    snprintf(line, sizeof line, "{\"op\":\"poke\",\"run\":\"%s\"}\n", run_id);
    char *reply = NULL;
    jerr e = {0};
    int rc = store_service_request(home, line, &reply, 10000, &e);
    if (rc != 0) return rc < 0 ? -1 : 1;
    cJSON *o = cJSON_Parse(reply);
    free(reply);
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, "executed");
    rc = cJSON_IsTrue(x) ? 0 : 2;
    cJSON_Delete(o);
    return rc;
}

/* Reads one reply line from fd into b (at most what b may hold; the rest
 * stays in b) by deadline (ns, INT64_MAX none): 0 and *line (malloc'ed), 1
 * closed by the service (or out of memory), 2 the deadline passed. */
static int read_line(int fd, jbuf *b, int64_t deadline, char **line) {
    *line = NULL;
    for (;;) {
        char *nl = b->data ? memchr(b->data, '\n', b->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - b->data);
            *line = malloc(n + 1);
            if (!*line) return 1;
            memcpy(*line, b->data, n);
            (*line)[n] = '\0';
            memmove(b->data, nl + 1, b->len - n - 1);
            b->len -= n + 1;
            return 0;
        }
        int64_t left = deadline == INT64_MAX ? -1 : (deadline - time_now_nanos()) / 1000000;
        if (deadline != INT64_MAX && left <= 0) return 2;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int pr = poll(&pf, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        char tmp[4096];
        ssize_t n = recv(fd, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || jbuf_append(b, tmp, (size_t)n) != 0) return 1;
    }
}

int store_service_wait(const char *home, const char *run_id, int64_t timeout_ms) {
    struct sockaddr_un a;
    int dirfd;
    jerr e = {0};
    if (strlen(run_id) >= 40 || sock_addr(home, &a, &dirfd, &e) != 0) return 1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = fd >= 0 ? connect(fd, (struct sockaddr *)&a, sizeof a) : -1;
    if (dirfd >= 0) close(dirfd);
    char req[128];
    int n = snprintf(req, sizeof req, "{\"op\":\"result\",\"run\":\"%s\"}\n", run_id);
    if (rc != 0 || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        if (fd >= 0) close(fd);
        return 1;
    }
    jbuf b;
    jbuf_init(&b, SVC_LINE_MAX);
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : time_now_nanos() + timeout_ms * 1000000;
    char *line = NULL;
    /* first: whether the service executes the run; then, when it closes */
    rc = read_line(fd, &b, time_now_nanos() + 10 * NS, &line);
    bool executed = rc == 0 && strstr(line, "\"executed\":true") != NULL;
    free(line);
    line = NULL;
    rc = executed ? read_line(fd, &b, deadline, &line) : 1;
    if (rc == 0 && !strstr(line, "\"closed\":true")) rc = 1;
    free(line);
    jbuf_free(&b);
    close(fd);
    return rc;
}

int store_service_query(const char *home, const char *run_id, const char *name, const Payloads *args,
                        Payloads **answer, jerr *err) {
    *answer = NULL;
    cJSON *req = cJSON_CreateObject();
    if (!req) return jerr_oom(err, "asking the service");
    cJSON_AddStringToObject(req, "op", "query");
    cJSON_AddStringToObject(req, "run", run_id);
    cJSON_AddStringToObject(req, "name", name);
    if (args) {
        jbuf pj;
        jbuf_init(&pj, SVC_LINE_MAX / 2);
        if (protojson_write(&args->base, 0, &pj, err) != 0 || !pj.data) {
            jbuf_free(&pj);
            cJSON_Delete(req);
            return 1; /* too big for the socket: the caller replays */
        }
        cJSON_AddStringToObject(req, "args", pj.data);
        jbuf_free(&pj);
    }
    char *text = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    jbuf line;
    jbuf_init(&line, SVC_LINE_MAX);
    if (!text || jbuf_puts(&line, text) != 0 || jbuf_putc(&line, '\n') != 0) {
        free(text);
        jbuf_free(&line);
        return 1;
    }
    free(text);
    char *reply = NULL;
    jerr re = {0};
    int rc = store_service_request(home, line.data, &reply, 60000, &re);
    jbuf_free(&line);
    if (rc != 0) return 1;
    cJSON *o = cJSON_Parse(reply);
    free(reply);
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(o, "ok");
    const cJSON *live = cJSON_GetObjectItemCaseSensitive(o, "live");
    const cJSON *ans = cJSON_GetObjectItemCaseSensitive(o, "answer");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(o, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(o, "code");
    rc = 1;
    if (cJSON_IsFalse(ok) && cJSON_IsString(msg)) {
        rc = jerr_set(err, cJSON_IsNumber(code) ? code->valueint : JERR_FAILED, "%s", msg->valuestring);
    } else if (cJSON_IsTrue(live) && cJSON_IsString(ans)) {
        *answer = (Payloads *)protojson_parse(&temporal__api__common__v1__payloads__descriptor, ans->valuestring,
                                              strlen(ans->valuestring), err);
        rc = *answer ? 0 : 1;
    }
    cJSON_Delete(o);
    return rc;
}
