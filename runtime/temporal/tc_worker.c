/*
 * tc_worker.c - the Temporal worker: serves a workflows directory and an
 * activities directory on a task queue. `jorch worker` (runtime/cli/
 * cli_worker.c) runs it until a signal; `jorch run --temporal` runs it in
 * its own process on a queue of its own (run mode: progress lines as the
 * embedded runner prints them instead of the worker's log).
 *
 * Threads besides the main one (which only waits for SIGINT/SIGTERM):
 *  - workflow threads, one per workflow task slot
 *    (max_concurrent_workflow_task_executions), each with its own
 *    connection. A thread takes a poll permit (at most
 *    max_concurrent_workflow_task_pollers polls at once), long-polls the
 *    normal task queue or this worker's sticky queue, gives the permit
 *    back, and executes the task it got: so tasks of different runs run in
 *    parallel, and a run's tasks one at a time (a run is checked out of the
 *    run cache while a thread works on it; another task of the same run
 *    waits for it).
 *  - the run cache (sticky execution): after a completed task the run's
 *    engine_run stays in memory, and the completion names this worker's
 *    sticky queue (sticky_attributes), so the server sends the run's next
 *    task there with only the new events, which are fed to the cached run.
 *    The cache is bounded by max_cached_workflows and a memory budget (LRU);
 *    an evicted run is told to the server (ResetStickyTaskQueue), and its
 *    next task comes on the normal queue with the full history and replays.
 *    A run is evicted on a failed task, nondeterminism, a refused or lost
 *    completion, a script that changed under it, and when a task's history
 *    does not continue the cached run: that is a cache miss, and the full
 *    history is read (GetWorkflowExecutionHistory) and replayed, never a
 *    task failure. max_cached_workflows = 0 turns all of this off: every task
 *    then comes with the full history and replays from event 1.
 *  - the activity thread keeps up to max_concurrent_activity_task_pollers
 *    PollActivityTaskQueue calls in flight while attempts plus polls stay
 *    within max_concurrent_activity_executions, runs the attempts on an
 *    act_host (as many threads) and reports each outcome (Completed, Failed,
 *    Canceled). The attempts in flight are an act_slots table
 *    (runtime/activity).
 * Heartbeats come from the host's threads; they go out on a connection of
 * their own, under a mutex (a tc_conn is not thread-safe), throttled.
 *
 * Every connection is made and freed on the main thread: tc_conn_new and
 * tc_conn_free call curl_global_init/cleanup, which are not thread-safe.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "activity/activity.h"
#include "engine/engine.h"
#include "temporal/temporal.h"

/* Back-off after a failed poll: doubling from the first to the last. */
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 10000
/* Deadline of the start-up check, of responses and of history pages. */
#define STARTUP_TIMEOUT_MS 10000
#define RESPOND_TIMEOUT_MS 10000
#define HEARTBEAT_TIMEOUT_MS 5000
/* Heartbeats are sent at most once per this interval, or per half the
 * heartbeat timeout when that is shorter; the first is always sent. */
#define HEARTBEAT_MAX_INTERVAL_NS ((int64_t)5000000000)
/* On SIGINT/SIGTERM, running activities get this long to finish and be
 * reported; after it they are cancelled and left to the server's timeouts. */
#define SHUTDOWN_GRACE_MS 10000
/* At shutdown the cached runs are handed back to the normal queue
 * (ResetStickyTaskQueue) for at most this long. */
#define SHUTDOWN_RESET_MS 3000
/* Bounds on a history read (as the client's `jorch history`). */
#define HISTORY_MAX_EVENTS ((size_t)10000000)
/* Bounds of the settings. */
#define MAX_TASK_SLOTS 1000
#define MAX_CACHED_RUNS 1000000

#define SVC_POLL_WFT "PollWorkflowTaskQueue"

typedef Temporal__Api__History__V1__HistoryEvent HistoryEvent;
typedef Temporal__Api__Common__V1__Payloads Payloads;
typedef Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse WftTask;
typedef Temporal__Api__Workflowservice__V1__PollActivityTaskQueueResponse ActTask;

/* A run in the cache, or a run some thread works on (busy). */
typedef struct cached_run {
    char *run_id;
    char *workflow_id;
    engine_run *run;          /* NULL: nothing cached (busy only) */
    int64_t last_event_id;    /* the last event fed to run */
    tc_pin_version *version;  /* the script version run executes (tc_pin.c) */
    char refused[65];         /* an auto_upgrade version refused for the run, or "" */
    size_t bytes;             /* engine_run_memory when checked in */
    bool busy;
    struct cached_run *prev, *next; /* most recently used first */
} cached_run;

typedef struct run_cache {
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* a busy run was checked in */
    cached_run *head, *tail;
    size_t n_runs;            /* entries holding a run */
    size_t bytes;             /* their memory */
    size_t max_runs;          /* 0: no cache, no sticky queue */
    size_t max_bytes;
    uint64_t hits, misses, evictions; /* for the log at the end */
} run_cache;

/* One workflow task slot: a thread and its connection. */
typedef struct wf_thread {
    struct tc_worker *w;
    pthread_t thread;
    bool started;
    tc_conn *conn;
} wf_thread;

typedef struct tc_worker {
    tc_config cfg;
    tc_worker_settings set;
    char *task_queue;
    char sticky_queue[80]; /* this worker's own sticky queue ("" without a cache) */
    char *wf_dir;
    char *act_dir;
    jbuf conf;           /* jorch.config of the activities (JSON) */
    bool require_known;  /* --require-known-scripts */
    bool run_mode;       /* in-process for `jorch run --temporal`: progress lines as the embedded runner's */
    bool quiet;          /* run_mode with --quiet: no progress lines */
    bool task_failed;    /* run_mode: a workflow task failed (under mu) */
    char task_failure[sizeof ((jerr *)0)->msg + 64];
    bool mu_ok;
    wf_thread *wft;      /* set.max_concurrent_workflow_task_executions of them */
    size_t n_wft;
    pthread_t act_thread;
    bool act_started;
    tc_conn *wf_conn;   /* the main thread's: start-up check, shutdown */
    tc_conn *act_conn;  /* the activity thread's */
    tc_conn *hb_conn;   /* heartbeats, under hb_mu */
    act_host *host;
    pthread_mutex_t mu; /* next_token, task_failed, poll counts */
    pthread_cond_t poll_cv; /* a poll permit came back */
    int polls_normal, polls_sticky; /* workflow polls in flight */
    bool poll_toggle;
    pthread_mutex_t hb_mu;
    act_slots *slots;   /* the activity attempts in flight; each task is the polled ActTask (owned) */
    int act_polls;      /* activity polls in flight (under mu) */
    int act_eager;      /* slots held for eager activities of completions in flight (under mu) */
    uint64_t next_token;
    run_cache cache;
    atomic_bool stop;
} worker;

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void wlogv(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static void wlogv(const char *fmt, va_list ap) {
    char text[4096];
    vsnprintf(text, sizeof text, fmt, ap);
    jbuf b;
    jbuf_init(&b, 0);
    int rc = text_escape(&b, text, strlen(text), true); /* ids and messages from outside */
    pthread_mutex_lock(&out_mu);
    if (rc == 0 && b.data) fprintf(stderr, "worker: %s\n", b.data);
    fflush(stderr);
    pthread_mutex_unlock(&out_mu);
    jbuf_free(&b);
}

static void wlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void wlog(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wlogv(fmt, ap);
    va_end(ap);
}

void tc_worker_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wlogv(fmt, ap);
    va_end(ap);
}

/* "[prefix name] line": ids come from any Temporal client and lines from
 * scripts, so control characters are escaped (no forged lines, nothing for
 * the terminal to interpret) and a line is cut at 8 KiB, as on the
 * embedded backend (runlog.c). */
#define WORKER_LINE_MAX ((size_t)8 << 10)
static void worker_line(const char *open, const char *name, const char *line) {
    size_t len = strlen(line), keep = len > WORKER_LINE_MAX ? WORKER_LINE_MAX : len;
    while (keep < len && keep > 0 && ((unsigned char)line[keep] & 0xC0) == 0x80) keep--;
    jbuf b;
    jbuf_init(&b, 0);
    int rc = jbuf_printf(&b, "[%s", open);
    if (rc == 0) rc = text_escape(&b, name, strlen(name), false);
    if (rc == 0) rc = jbuf_puts(&b, "] ");
    if (rc == 0) rc = text_escape(&b, line, keep, false);
    if (rc == 0 && keep < len) rc = jbuf_printf(&b, " [... %zu more bytes not shown]", len - keep);
    pthread_mutex_lock(&out_mu);
    if (rc == 0 && b.data) fprintf(stderr, "%s\n", b.data);
    fflush(stderr);
    pthread_mutex_unlock(&out_mu);
    jbuf_free(&b);
}

static void wf_log(void *ud, const char *wid, const char *line) {
    (void)ud;
    worker_line("", wid, line);
}

/* An informational line: the worker's log, or nothing in run mode (where
 * progress() says what the embedded runner would). */
static void winfo(const worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void winfo(const worker *w, const char *fmt, ...) {
    if (w->run_mode) return;
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&out_mu);
    fputs("worker: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    pthread_mutex_unlock(&out_mu);
    va_end(ap);
}

/* Run mode: "[wid] ..." progress lines in the embedded runner's words. */
static void progress(const worker *w, const char *wid, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void progress(const worker *w, const char *wid, const char *fmt, ...) {
    if (!w->run_mode || w->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&out_mu);
    fprintf(stderr, "[%s] ", wid);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    pthread_mutex_unlock(&out_mu);
    va_end(ap);
}

static void act_log(void *ud, const char *activity_type, const char *line) {
    (void)ud;
    worker_line("activity ", activity_type, line);
}

static bool stopping(worker *w) { return atomic_load(&w->stop); }

/* Sleep ms milliseconds, waking early when the worker stops. */
static void nap(worker *w, int ms) {
    while (ms > 0 && !stopping(w)) {
        int step = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static int next_backoff(int ms) {
    if (ms < BACKOFF_MIN_MS) return BACKOFF_MIN_MS;
    return ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : ms * 2;
}

/* "UNAVAILABLE: message" or "cannot reach ...: message" for a log line. */
static void status_text(const tc_status *st, char *out, size_t cap) {
    char cbuf[16];
    if (st->transport)
        snprintf(out, cap, "cannot reach the server: %s", st->message);
    else
        snprintf(out, cap, "%s: %s", tc_code_name(st->code, cbuf, sizeof cbuf), st->message);
}

/* One blocking call; on failure logs "<what> failed: ..." (unless quiet)
 * and returns -1 (with the gRPC code in *code_out when given). */
static int wcall_q(tc_conn *conn, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *desc, int64_t timeout_ms, bool retry_safe, const char *what,
                   ProtobufCMessage **resp, int *code_out, char *msg_out, size_t msg_cap) {
    tc_status st;
    tc_status_init(&st);
    tc_call_opts opts = {.timeout_ms = timeout_ms, .retry_safe = retry_safe};
    ProtobufCMessage *r = NULL;
    int rc = tc_unary(conn, method, req, desc, &opts, &r, &st);
    if (code_out != NULL) *code_out = st.transport ? -1 : st.code;
    if (msg_out != NULL && msg_cap > 0) snprintf(msg_out, msg_cap, "%s", rc != 0 ? st.message : "");
    if (rc != 0 && msg_out == NULL) {
        char text[1200];
        status_text(&st, text, sizeof text);
        wlog("%s failed: %s", what, text);
    }
    tc_status_clear(&st);
    if (resp != NULL)
        *resp = r;
    else if (r != NULL)
        protobuf_c_message_free_unpacked(r, NULL);
    return rc;
}

static int wcall(tc_conn *conn, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *desc, int64_t timeout_ms, bool retry_safe, const char *what,
                 ProtobufCMessage **resp, int *code_out) {
    return wcall_q(conn, method, req, desc, timeout_ms, retry_safe, what, resp, code_out, NULL, 0);
}

/* ------------------------------------------------------------ workflows */

/* The history of a task: pointers to events owned by the task or by the
 * extra pages read, which are kept until the task is done. */
typedef struct wft_history {
    HistoryEvent **events;
    size_t n, cap;
    ProtobufCMessage **pages;
    size_t n_pages, cap_pages;
} wft_history;

static int grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t ncap = *cap > 0 ? *cap : 64;
    while (ncap < need) {
        if (!size_mul(ncap, 2, &ncap)) return -1;
    }
    size_t bytes;
    if (!size_mul(ncap, elem, &bytes)) return -1;
    void *p = realloc(*arr, bytes);
    if (p == NULL) return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static int history_add(wft_history *h, HistoryEvent **events, size_t n, jerr *err) {
    size_t need;
    if (n == 0) return 0;
    if (!size_add(h->n, n, &need) || need > HISTORY_MAX_EVENTS)
        return jerr_set(err, JERR_FAILED, "the history has more than %zu events", HISTORY_MAX_EVENTS);
    if (grow((void **)&h->events, &h->cap, need, sizeof *h->events) != 0)
        return jerr_oom(err, "the history of a workflow task");
    memcpy(h->events + h->n, events, n * sizeof *events);
    h->n = need;
    return 0;
}

static void history_free(wft_history *h) {
    for (size_t i = 0; i < h->n_pages; i++) protobuf_c_message_free_unpacked(h->pages[i], NULL);
    free(h->pages);
    free(h->events);
    memset(h, 0, sizeof *h);
}

/* History pages of the run into h: from token, or (from_start) from the
 * first page. */
static int read_pages(worker *w, tc_conn *conn, const Temporal__Api__Common__V1__WorkflowExecution *exec,
                      ProtobufCBinaryData token, bool from_start, wft_history *h, jerr *err) {
    bool first = from_start;
    while (first || token.len > 0) {
        first = false;
        Temporal__Api__Common__V1__WorkflowExecution ex;
        temporal__api__common__v1__workflow_execution__init(&ex);
        ex.workflow_id = exec->workflow_id;
        ex.run_id = exec->run_id;
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest req;
        temporal__api__workflowservice__v1__get_workflow_execution_history_request__init(&req);
        req.namespace_ = w->cfg.namespace_;
        req.execution = &ex;
        req.next_page_token = token;
        tc_status st;
        tc_status_init(&st);
        tc_call_opts opts = {.timeout_ms = RESPOND_TIMEOUT_MS, .retry_safe = true};
        ProtobufCMessage *resp = NULL;
        if (tc_unary(conn, "GetWorkflowExecutionHistory", &req.base,
                     &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor,
                     &opts, &resp, &st) != 0) {
            char text[1200];
            status_text(&st, text, sizeof text);
            tc_status_clear(&st);
            return jerr_set(err, JERR_BACKEND, "cannot read %s of the history: %s", from_start ? "all" : "the rest",
                            text);
        }
        tc_status_clear(&st);
        if (grow((void **)&h->pages, &h->cap_pages, h->n_pages + 1, sizeof *h->pages) != 0) {
            protobuf_c_message_free_unpacked(resp, NULL);
            return jerr_oom(err, "a history page");
        }
        h->pages[h->n_pages++] = resp;
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *page = (void *)resp;
        size_t got = page->history != NULL ? page->history->n_events : 0;
        if (got > 0 && history_add(h, page->history->events, got, err) != 0) return -1;
        /* An empty page that still carries a token ends the history (as in sdk-core). */
        if (got == 0) break;
        token = page->next_page_token;
    }
    return 0;
}

/* The task's events, then the pages behind its next_page_token. */
static int collect_history(worker *w, tc_conn *conn, const WftTask *t, wft_history *h, jerr *err) {
    if (t->history != NULL && history_add(h, t->history->events, t->history->n_events, err) != 0) return -1;
    return read_pages(w, conn, t->workflow_execution, t->next_page_token, false, h, err);
}

/* The whole history from event 1 (a sticky task carries only the events
 * since the run's last task), up to the task's WorkflowTaskStarted. */
static int fetch_full_history(worker *w, tc_conn *conn, const WftTask *t, wft_history *h, jerr *err) {
    ProtobufCBinaryData none = {0, NULL};
    if (read_pages(w, conn, t->workflow_execution, none, true, h, err) != 0) return -1;
    while (t->started_event_id > 0 && h->n > 0 && h->events[h->n - 1]->event_id > t->started_event_id) h->n--;
    return 0;
}

/* A workflow type names a file in the workflows directory: no separators,
 * no leading dot (so no "..", no hidden files), nothing odd. */
static bool type_is_safe(const char *type) {
    if (type == NULL || type[0] == '\0' || type[0] == '.' || strlen(type) > 200) return false;
    for (const char *p = type; *p; p++)
        if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x20) return false;
    return true;
}

/* The engine's message of a script error ends in the Lua traceback
 * ("...\nstack traceback:\n\t..."): the Failure carries the two apart, as
 * the SDKs do, so the Web UI and `temporal workflow show` show the message
 * and the stack trace each in its place. */
#define TRACEBACK_MARK "\nstack traceback:\n"

static void respond_wft_failed(worker *w, tc_conn *conn, const WftTask *t, int cause, const char *message) {
    Temporal__Api__Failure__V1__Failure f;
    temporal__api__failure__v1__failure__init(&f);
    char head[sizeof ((jerr *)0)->msg + 400];
    const char *tb = strstr(message, TRACEBACK_MARK);
    if (tb != NULL && (size_t)(tb - message) < sizeof head) {
        memcpy(head, message, (size_t)(tb - message));
        head[tb - message] = '\0';
        f.message = head;
        f.stack_trace = (char *)(tb + 1); /* "stack traceback:\n\t..." */
    } else {
        f.message = (char *)message;
    }
    f.source = "jorch";
    /* An application failure, as the SDKs report a workflow task's panic or
     * exception: the UI shows its type. */
    Temporal__Api__Failure__V1__ApplicationFailureInfo ai;
    temporal__api__failure__v1__application_failure_info__init(&ai);
    ai.type = cause == TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR
                  ? "NondeterminismError" : "WorkflowTaskError";
    f.failure_info_case = TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_APPLICATION_FAILURE_INFO;
    f.application_failure_info = &ai;
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskFailedRequest req;
    temporal__api__workflowservice__v1__respond_workflow_task_failed_request__init(&req);
    req.task_token = t->task_token;
    req.cause = (Temporal__Api__Enums__V1__WorkflowTaskFailedCause)cause;
    req.failure = &f;
    req.identity = w->cfg.identity;
    req.namespace_ = w->cfg.namespace_;
    char what[400];
    snprintf(what, sizeof what, "reporting the failed workflow task of '%.300s'", t->workflow_execution->workflow_id);
    wcall(conn, "RespondWorkflowTaskFailed", &req.base,
          &temporal__api__workflowservice__v1__respond_workflow_task_failed_response__descriptor, RESPOND_TIMEOUT_MS,
          true, what, NULL, NULL);
}

static void respond_query(worker *w, tc_conn *conn, const WftTask *t, const Payloads *answer, const char *error) {
    Temporal__Api__Workflowservice__V1__RespondQueryTaskCompletedRequest req;
    temporal__api__workflowservice__v1__respond_query_task_completed_request__init(&req);
    req.task_token = t->task_token;
    req.namespace_ = w->cfg.namespace_;
    Temporal__Api__Failure__V1__Failure f;
    temporal__api__failure__v1__failure__init(&f);
    if (error != NULL) {
        req.completed_type = TEMPORAL__API__ENUMS__V1__QUERY_RESULT_TYPE__QUERY_RESULT_TYPE_FAILED;
        req.error_message = (char *)error;
        f.message = (char *)error;
        f.source = "jorch";
        req.failure = &f;
    } else {
        req.completed_type = TEMPORAL__API__ENUMS__V1__QUERY_RESULT_TYPE__QUERY_RESULT_TYPE_ANSWERED;
        req.query_result = (Payloads *)answer;
    }
    if (t->poller_group_id != NULL && t->poller_group_id[0] != '\0') req.poller_group_id = t->poller_group_id;
    char what[400];
    snprintf(what, sizeof what, "answering a query on '%.300s'", t->workflow_execution->workflow_id);
    wcall(conn, "RespondQueryTaskCompleted", &req.base,
          &temporal__api__workflowservice__v1__respond_query_task_completed_response__descriptor, RESPOND_TIMEOUT_MS,
          true, what, NULL, NULL);
}

/* Fails the task: a query task gets a FAILED answer, a workflow task a
 * RespondWorkflowTaskFailed, but only on its first attempt, as sdk-core
 * does: the server records only the first of consecutive failures, and it
 * schedules the next attempt at once after a reported failure, so reporting
 * every attempt would replay a broken script in a tight loop. A later
 * attempt is left to time out (the workflow task timeout, 10 s by default),
 * which paces the retries; a fixed script is picked up at the next one. */
static void fail_task(worker *w, tc_conn *conn, const WftTask *t, int cause, const char *message) {
    const char *wid = t->workflow_execution->workflow_id;
    if (t->query != NULL) {
        wlog("query '%s' on %s failed: %s", t->query->query_type, wid, message);
        respond_query(w, conn, t, NULL, message);
        return;
    }
    const char *kind =
        cause == TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR
            ? "non-determinism" : "unhandled failure";
    if (w->run_mode) {
        /* `jorch run` stops at the first failed task, as on the embedded backend */
        pthread_mutex_lock(&w->mu);
        bool first = !w->task_failed;
        if (first) {
            w->task_failed = true;
            snprintf(w->task_failure, sizeof w->task_failure, "%s", message);
        }
        pthread_mutex_unlock(&w->mu);
        if (first) progress(w, wid, "workflow task failed: %s", message);
        /* poll no more: the next attempt waits in the queue for a worker
         * (the `jorch worker --task-queue` that `run` suggests), rather
         * than being taken here and left to time out */
        atomic_store(&w->stop, true);
        if (t->attempt == 1) respond_wft_failed(w, conn, t, cause, message);
        return;
    }
    if (t->attempt > 1) {
        size_t first = strcspn(message, "\n");
        wlog("workflow task of %s failed again (attempt %d, %s): %.*s; not reported (Temporal keeps the first "
             "failure): the server retries after the workflow task timeout", wid, t->attempt, kind,
             (int)(first < 600 ? first : 600), message);
        return;
    }
    winfo(w, "workflow task of %s failed (attempt %d, %s): %s", wid, t->attempt, kind, message);
    respond_wft_failed(w, conn, t, cause, message);
}

/* Answers of attached queries, built for RespondWorkflowTaskCompleted. */
typedef struct query_answers {
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedRequest__QueryResultsEntry *entries;
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedRequest__QueryResultsEntry **ptrs;
    Temporal__Api__Query__V1__WorkflowQueryResult *results;
    char **errors;
    size_t n;
} query_answers;

static void answers_free(query_answers *qa) {
    for (size_t i = 0; i < qa->n; i++) {
        if (qa->results != NULL && qa->results[i].answer != NULL)
            protobuf_c_message_free_unpacked(&qa->results[i].answer->base, NULL);
        if (qa->errors != NULL) free(qa->errors[i]);
    }
    free(qa->entries);
    free(qa->ptrs);
    free(qa->results);
    free(qa->errors);
    memset(qa, 0, sizeof *qa);
}

static int answer_attached(engine_run *run, const WftTask *t, query_answers *qa, jerr *err) {
    size_t n = t->n_queries;
    if (n == 0) return 0;
    qa->entries = calloc(n, sizeof *qa->entries);
    qa->ptrs = calloc(n, sizeof *qa->ptrs);
    qa->results = calloc(n, sizeof *qa->results);
    qa->errors = calloc(n, sizeof *qa->errors);
    if (qa->entries == NULL || qa->ptrs == NULL || qa->results == NULL || qa->errors == NULL)
        return jerr_oom(err, "query answers");
    qa->n = n;
    for (size_t i = 0; i < n; i++) {
        const Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse__QueriesEntry *q = t->queries[i];
        Temporal__Api__Query__V1__WorkflowQueryResult *res = &qa->results[i];
        temporal__api__query__v1__workflow_query_result__init(res);
        temporal__api__workflowservice__v1__respond_workflow_task_completed_request__query_results_entry__init(
            &qa->entries[i]);
        qa->entries[i].key = q->key;
        qa->entries[i].value = res;
        qa->ptrs[i] = &qa->entries[i];
        jerr qe = {0};
        Payloads *answer = NULL;
        const char *qname = q->value != NULL ? q->value->query_type : "";
        if (q->value == NULL) {
            jerr_set(&qe, JERR_FAILED, "the query carries no query type");
        } else if (engine_run_query(run, qname, q->value->query_args, &answer, &qe) == 0) {
            res->result_type = TEMPORAL__API__ENUMS__V1__QUERY_RESULT_TYPE__QUERY_RESULT_TYPE_ANSWERED;
            res->answer = answer;
            continue;
        }
        qa->errors[i] = jstrdup(qe.msg);
        if (qa->errors[i] == NULL) return jerr_oom(err, "a query error");
        res->result_type = TEMPORAL__API__ENUMS__V1__QUERY_RESULT_TYPE__QUERY_RESULT_TYPE_FAILED;
        res->error_message = qa->errors[i];
    }
    return 0;
}

/* ------------------------------------------------------------ run cache */

static void cache_unlink(run_cache *c, cached_run *e) {
    if (e->prev != NULL) e->prev->next = e->next; else c->head = e->next;
    if (e->next != NULL) e->next->prev = e->prev; else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void cache_push_front(run_cache *c, cached_run *e) {
    e->prev = NULL;
    e->next = c->head;
    if (c->head != NULL) c->head->prev = e; else c->tail = e;
    c->head = e;
}

static void entry_free(cached_run *e) {
    if (e == NULL) return;
    engine_run_free(e->run);
    tc_pin_version_free(e->version);
    free(e->run_id);
    free(e->workflow_id);
    free(e);
}

/* Checks a run out for this thread, waiting while another thread works on
 * it, so that one run's tasks never run concurrently. The entry holds the
 * cached engine_run, if any. NULL when out of memory. */
static cached_run *cache_checkout(worker *w, const char *wid, const char *run_id) {
    run_cache *c = &w->cache;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        cached_run *e = c->head;
        while (e != NULL && strcmp(e->run_id, run_id) != 0) e = e->next;
        if (e == NULL) {
            e = calloc(1, sizeof *e);
            if (e != NULL) {
                e->run_id = jstrdup(run_id);
                e->workflow_id = jstrdup(wid);
            }
            if (e == NULL || e->run_id == NULL || e->workflow_id == NULL) {
                pthread_mutex_unlock(&c->mu);
                entry_free(e);
                return NULL;
            }
            e->busy = true;
            cache_push_front(c, e);
            pthread_mutex_unlock(&c->mu);
            return e;
        }
        if (!e->busy) {
            e->busy = true;
            pthread_mutex_unlock(&c->mu);
            return e;
        }
        /* the entry may be gone when this wakes: look it up again */
        pthread_cond_wait(&c->cv, &c->mu);
    }
}

/* Takes the cached run out of a checked-out entry: the caller owns it. */
static engine_run *cache_take(worker *w, cached_run *e) {
    run_cache *c = &w->cache;
    pthread_mutex_lock(&c->mu);
    engine_run *r = e->run;
    if (r != NULL) {
        e->run = NULL;
        c->n_runs--;
        c->bytes -= e->bytes;
        e->bytes = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return r;
}

/* Hands an entry back: with run (kept in the cache, most recently used) or
 * without (dropped). Runs beyond the limits, least recently used first, are
 * evicted: returned as a list (linked by next) for the caller to free and
 * hand back to the normal queue, outside the lock. */
static cached_run *cache_checkin(worker *w, cached_run *e, engine_run *run) {
    run_cache *c = &w->cache;
    cached_run *evicted = NULL, *dropped = NULL;
    pthread_mutex_lock(&c->mu);
    e->busy = false;
    cache_unlink(c, e);
    if (run != NULL && c->max_runs > 0) {
        e->run = run;
        e->bytes = engine_run_memory(run);
        c->n_runs++;
        c->bytes += e->bytes;
        cache_push_front(c, e);
        run = NULL;
    } else {
        dropped = e;
    }
    for (cached_run *x = c->tail; x != NULL && (c->n_runs > c->max_runs || c->bytes > c->max_bytes);) {
        cached_run *prev = x->prev;
        if (!x->busy && x->run != NULL) {
            cache_unlink(c, x);
            c->n_runs--;
            c->bytes -= x->bytes;
            c->evictions++;
            x->next = evicted;
            evicted = x;
        }
        x = prev;
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    engine_run_free(run);
    entry_free(dropped);
    return evicted;
}

static void cache_count(worker *w, bool hit) {
    pthread_mutex_lock(&w->cache.mu);
    if (hit)
        w->cache.hits++;
    else
        w->cache.misses++;
    pthread_mutex_unlock(&w->cache.mu);
}

/* Tells the server the run is no longer in this worker's cache, so its next
 * task goes to the normal queue with the full history at once instead of
 * waiting on the sticky queue for the sticky schedule-to-start timeout. */
static void reset_sticky(worker *w, tc_conn *conn, const char *wid, const char *run_id) {
    Temporal__Api__Common__V1__WorkflowExecution ex;
    temporal__api__common__v1__workflow_execution__init(&ex);
    ex.workflow_id = (char *)wid;
    ex.run_id = (char *)run_id;
    Temporal__Api__Workflowservice__V1__ResetStickyTaskQueueRequest req;
    temporal__api__workflowservice__v1__reset_sticky_task_queue_request__init(&req);
    req.namespace_ = w->cfg.namespace_;
    req.execution = &ex;
    int code = 0;
    char msg[1024];
    if (wcall_q(conn, "ResetStickyTaskQueue", &req.base,
                &temporal__api__workflowservice__v1__reset_sticky_task_queue_response__descriptor,
                RESPOND_TIMEOUT_MS, true, "ResetStickyTaskQueue", NULL, &code, msg, sizeof msg) != 0 &&
        code != TC_NOT_FOUND) /* NOT_FOUND: the run closed meanwhile */
        wlog("cannot hand %s back to the normal task queue (ResetStickyTaskQueue): %s; its next task waits for "
             "the sticky queue's schedule-to-start timeout", wid, msg);
}

static void evict_all(worker *w, tc_conn *conn, cached_run *evicted) {
    while (evicted != NULL) {
        cached_run *next = evicted->next;
        if (conn != NULL) reset_sticky(w, conn, evicted->workflow_id, evicted->run_id);
        entry_free(evicted);
        evicted = next;
    }
}

/* ------------------------------------------------------------ workflow tasks */

/* Whether events hold a jorch upgrade record: the run's script version
 * may change there, which a cached run (built on the old one) cannot follow. */
static bool has_upgrade(const wft_history *h) {
    for (size_t i = 0; i < h->n; i++) {
        const Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *a =
            h->events[i]->workflow_execution_signaled_event_attributes;
        if (h->events[i]->event_type == TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED &&
            a != NULL && a->signal_name != NULL && strcmp(a->signal_name, ENGINE_UPGRADE_SIGNAL) == 0)
            return true;
    }
    return false;
}

static const int FAILED_UNHANDLED =
    TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE;
static const int FAILED_NONDET =
    TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR;

/* The version record and the replay of a run (tc_pin.c) for task t. */
static tc_pin_in pin_in_for(worker *w, const WftTask *t, bool completes) {
    tc_pin_in in = {
        .wf_dir = w->wf_dir, .type = t->workflow_type->name, .require_known = w->require_known,
        .completes = completes, .namespace_ = w->cfg.namespace_, .workflow_id = t->workflow_execution->workflow_id,
        .run_id = t->workflow_execution->run_id, .log_fn = wf_log, .log_ud = w,
    };
    return in;
}

/* A legacy query task: answered from a fresh replay of the whole history
 * (never from the cached run, which may be ahead of or behind it). */
static void answer_query_task(worker *w, tc_conn *conn, const WftTask *t, wft_history *h) {
    const char *wid = t->workflow_execution->workflow_id;
    jerr err = {0};
    if (h->n == 0 || h->events[0]->event_id != 1) {
        /* on the sticky queue a query task carries no history (or only the
         * events since the run's last task) */
        history_free(h);
        if (fetch_full_history(w, conn, t, h, &err) != 0) {
            wlog("query task on %s: %s; leaving it to time out", wid, err.msg);
            return;
        }
    }
    tc_pin_in in = pin_in_for(w, t, false);
    tc_pin_task pin;
    Payloads *answer = NULL;
    if (tc_pin_task_run(&in, h->events, h->n, &pin, &err) != 0) {
        fail_task(w, conn, t, pin.nondeterminism ? FAILED_NONDET : FAILED_UNHANDLED, err.msg);
    } else if (engine_run_query(pin.run, t->query->query_type, t->query->query_args, &answer, &err) != 0) {
        fail_task(w, conn, t, FAILED_UNHANDLED, err.msg);
    } else {
        respond_query(w, conn, t, answer, NULL);
        winfo(w, "query '%s' on %s answered", t->query->query_type, wid);
        protobuf_c_message_free_unpacked(&answer->base, NULL);
    }
    tc_pin_task_free(&pin);
}

/* Whether the cached run of e can go on with the task's new events h: they
 * follow the last one it saw, hold no upgrade record, and what the worker's
 * own version decides (--require-known-scripts, auto_upgrade) still holds. */
static bool can_continue(worker *w, const WftTask *t, const cached_run *e, const engine_run *run,
                         const wft_history *h) {
    int64_t first = h->n > 0 ? h->events[0]->event_id : 0;
    if (run == NULL || e->version == NULL || first != e->last_event_id + 1 || has_upgrade(h)) return false;
    bool follows = tc_pin_version_auto(e->version);
    if (!w->require_known && !follows) return true; /* a run replays on its version whatever the file holds */
    char own[65];
    jerr ignore = {0};
    bool have = tc_pin_own_digest(w->wf_dir, t->workflow_type->name, own, &ignore) == 0;
    const char *v = tc_pin_version_digest(e->version);
    if (w->require_known && (!have || strcmp(own, v) != 0)) return false;
    if (follows && have && strcmp(own, v) != 0 && strcmp(own, e->refused) != 0) return false;
    return true;
}

/* Executes one workflow task of the checked-out run e. *runp is the cached
 * engine_run (or NULL) on entry, and on return the run to keep in the cache
 * (or NULL: drop it). */
static bool act_reserve(worker *w, bool eager);
static void act_unreserve(worker *w, bool eager, int n);
static int start_activity(worker *w, ActTask *t);
static void respond_activity_failed(worker *w, const ActTask *t, Temporal__Api__Failure__V1__Failure *f,
                                    Payloads *last);

/* Eager activities: an activity scheduled on this worker's own task queue
 * is asked to come back in the completion's response when an activity
 * slot is free (held until then), which spares the server the activity
 * task's matching and this worker a poll. A transport hint on the
 * command, not part of what the script produced: replay never sees it.
 * Returns the slots held. */
static int eager_request(worker *w, Temporal__Api__Command__V1__Command **cmds, size_t n) {
    int held = 0;
    for (size_t i = 0; i < n && !w->set.disable_eager_activities; i++) {
        Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *a =
            cmds[i]->schedule_activity_task_command_attributes;
        if (cmds[i]->command_type != TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK ||
            a == NULL)
            continue;
        const char *q = a->task_queue != NULL ? a->task_queue->name : NULL;
        if (q != NULL && q[0] != '\0' && strcmp(q, w->task_queue) != 0) continue;
        if (!act_reserve(w, true)) break;
        a->request_eager_execution = true;
        held++;
    }
    return held;
}

/* Starts the activity tasks a completion's response brought (each in a
 * slot held by eager_request), then lets the held slots go. */
static void eager_start(worker *w, Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedResponse *resp,
                        int held) {
    for (size_t i = 0; resp != NULL && i < resp->n_activity_tasks; i++) {
        ActTask *t = resp->activity_tasks[i];
        resp->activity_tasks[i] = NULL; /* a message of its own now: start_activity owns it */
        if (t == NULL) continue;
        /* a task without a token cannot be answered; one beyond the slots
         * held (the server never sends more than asked) is failed back */
        int src = t->task_token.len == 0 ? -1 : (int)i < held ? start_activity(w, t) : -2;
        if (src != 0 && t->task_token.len > 0) {
            Temporal__Api__Failure__V1__Failure f;
            temporal__api__failure__v1__failure__init(&f);
            f.message = "the worker could not start the eager activity (no slot was held for it, or out of memory)";
            f.source = "jorch";
            respond_activity_failed(w, t, &f, NULL);
        }
        if (src != 0) protobuf_c_message_free_unpacked(&t->base, NULL);
    }
    if (resp != NULL) resp->n_activity_tasks = 0; /* the response frees only its array */
    if (held > 0) act_unreserve(w, true, held);
}

/* *closed: the task closed the run and the server took it. */
static void execute_wft(worker *w, tc_conn *conn, const WftTask *t, cached_run *e, engine_run **runp,
                        bool *closed) {
    const char *wid = t->workflow_execution->workflow_id;
    const char *type = t->workflow_type->name;
    engine_run *run = *runp;
    *runp = NULL; /* until the task ends well */
    char msg[1400];
    if (!type_is_safe(type)) {
        snprintf(msg, sizeof msg, "workflow type '%.200s' cannot name a script in %.900s (it must be a file name "
                 "without '/' or a leading '.')", type, w->wf_dir);
        fail_task(w, conn, t, FAILED_UNHANDLED, msg);
        engine_run_free(run);
        return;
    }
    jerr err = {0};
    wft_history h;
    memset(&h, 0, sizeof h);
    if (collect_history(w, conn, t, &h, &err) != 0) {
        /* Transient (or a history too large): let the task time out and be retried. */
        wlog("workflow task of %s: %s; leaving it to time out and be retried", wid, err.msg);
        history_free(&h);
        engine_run_free(run);
        return;
    }
    if (t->query != NULL) {
        /* Legacy query: answered on its own, never with RespondWorkflowTaskCompleted. */
        answer_query_task(w, conn, t, &h);
        *runp = run; /* the cached run is untouched */
        history_free(&h);
        return;
    }
    /* Continue the cached run, or replay the whole history on the run's
     * version (tc_pin.c: recorded in its history, or the worker's own for a
     * run started without one). */
    tc_pin_in pin_in = pin_in_for(w, t, true);
    tc_pin_task pin;
    bool cont = can_continue(w, t, e, run, &h);
    int rc;
    if (cont) {
        cache_count(w, true);
        rc = tc_pin_task_continue(&pin_in, run, e->version, h.events, h.n, &pin, &err);
    } else {
        engine_run_free(run);
        run = NULL;
        if (h.n > 0 && h.events[0]->event_id != 1) {
            /* A sticky task's events since the run's last task, and this
             * worker does not have the run as they leave it (evicted,
             * restarted, or the cached run diverged): a cache miss, served
             * by reading the whole history, never a failed task. */
            history_free(&h);
            memset(&h, 0, sizeof h);
            if (fetch_full_history(w, conn, t, &h, &err) != 0) {
                wlog("workflow task of %s: %s; leaving it to time out and be retried", wid, err.msg);
                history_free(&h);
                return;
            }
            if (w->cache.max_runs > 0) cache_count(w, false);
        }
        rc = tc_pin_task_run(&pin_in, h.events, h.n, &pin, &err);
        if (rc == 0) {
            run = pin.run;
            pin.run = NULL;
            tc_pin_version_free(e->version);
            e->version = pin.version;
            pin.version = NULL;
            memcpy(e->refused, pin.refused, sizeof e->refused);
        }
    }
    if (rc != 0) {
        fail_task(w, conn, t, pin.nondeterminism ? FAILED_NONDET : FAILED_UNHANDLED, err.msg);
        tc_pin_task_free(&pin);
        engine_run_free(run);
        history_free(&h);
        return;
    }
    if (pin.said[0]) winfo(w, "workflow task of %s: %s", wid, pin.said);
    engine_output out = pin.out;
    e->last_event_id = h.n > 0 ? h.events[h.n - 1]->event_id : e->last_event_id;
    query_answers qa;
    memset(&qa, 0, sizeof qa);
    if (answer_attached(run, t, &qa, &err) != 0) {
        fail_task(w, conn, t, FAILED_UNHANDLED, err.msg);
        answers_free(&qa);
        tc_pin_task_free(&pin);
        engine_run_free(run);
        history_free(&h);
        return;
    }
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedRequest req;
    temporal__api__workflowservice__v1__respond_workflow_task_completed_request__init(&req);
    req.task_token = t->task_token;
    req.commands = pin.commands;
    req.n_commands = pin.n_commands;
    req.identity = w->cfg.identity;
    req.namespace_ = w->cfg.namespace_;
    req.query_results = qa.ptrs;
    req.n_query_results = qa.n;
    /* The run stays in the cache after this task: its next task comes to
     * this worker's sticky queue, with only the new events. */
    bool keep = w->cache.max_runs > 0 && !engine_run_closed(run);
    Temporal__Api__Taskqueue__V1__TaskQueue sticky_tq;
    temporal__api__taskqueue__v1__task_queue__init(&sticky_tq);
    sticky_tq.name = w->sticky_queue;
    sticky_tq.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_STICKY;
    sticky_tq.normal_name = w->task_queue;
    Google__Protobuf__Duration sticky_timeout;
    google__protobuf__duration__init(&sticky_timeout);
    sticky_timeout.seconds = w->set.sticky_schedule_to_start_timeout_ms / 1000;
    sticky_timeout.nanos = (int32_t)(w->set.sticky_schedule_to_start_timeout_ms % 1000) * 1000000;
    Temporal__Api__Taskqueue__V1__StickyExecutionAttributes sticky;
    temporal__api__taskqueue__v1__sticky_execution_attributes__init(&sticky);
    sticky.worker_task_queue = &sticky_tq;
    sticky.schedule_to_start_timeout = &sticky_timeout;
    if (keep) req.sticky_attributes = &sticky;
    /* runtime flags this task used first, and jorch's name on the first task */
    if (engine_task_metadata(&out, &req.sdk_metadata, &err) != 0) {
        fail_task(w, conn, t, FAILED_UNHANDLED, err.msg);
        answers_free(&qa);
        tc_pin_task_free(&pin);
        engine_run_free(run);
        history_free(&h);
        return;
    }
    char what[400];
    snprintf(what, sizeof what, "completing the workflow task of '%.300s'", wid);
    int code = 0;
    char refusal[1024];
    int eager = eager_request(w, pin.commands, pin.n_commands);
    ProtobufCMessage *resp = NULL;
    int done = wcall_q(conn, "RespondWorkflowTaskCompleted", &req.base,
                       &temporal__api__workflowservice__v1__respond_workflow_task_completed_response__descriptor,
                       RESPOND_TIMEOUT_MS, true, what, &resp, &code, refusal, sizeof refusal);
    eager_start(w, (void *)resp, eager);
    if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
    if (done == 0) {
        char cmds[256] = "";
        size_t used = 0;
        for (size_t i = 0; i < pin.n_commands && used + 40 < sizeof cmds; i++) {
            int k = snprintf(cmds + used, sizeof cmds - used, "%s%s", i ? ", " : "",
                             command_type_name((int)pin.commands[i]->command_type));
            if (k > 0) used += (size_t)k;
        }
        winfo(w, "workflow task of %s (%s, %zu %s%s, attempt %d): %zu command(s)%s%s%s%s", wid, type, h.n,
              cont ? "new events on the cached run" : "events", h.n_pages > 0 ? " over several pages" : "",
              t->attempt, pin.n_commands, pin.n_commands ? " " : "", cmds,
              engine_run_closed(run) ? "; the run is closing" : "", qa.n ? "; queries answered" : "");
        *closed = engine_run_closed(run);
        if (keep) {
            *runp = run;
            run = NULL;
        }
    } else if (code == TC_NOT_FOUND) {
        wlog("the workflow task of %s was already gone (timed out, or the run closed): %s", wid, refusal);
    } else if (code == TC_INVALID_ARGUMENT) {
        /* The server failed the task itself (a WorkflowTaskFailed in the
         * history names the cause) and schedules another one: its message
         * says why (UnhandledCommand: new events arrived meanwhile, e.g. a
         * signal; BadSearchAttributes; a command over a size limit...). */
        wlog("the server refused the commands of %s (%s, attempt %d): INVALID_ARGUMENT: %s; it records a "
             "WorkflowTaskFailed and schedules another workflow task", wid, type, t->attempt, refusal);
    } else {
        char cbuf[16];
        wlog("%s failed: %s: %s", what, code < 0 ? "cannot reach the server" : tc_code_name(code, cbuf, sizeof cbuf),
             refusal);
    }
    if (req.sdk_metadata) protobuf_c_message_free_unpacked(&req.sdk_metadata->base, NULL);
    answers_free(&qa);
    tc_pin_task_free(&pin); /* the commands; not the run */
    engine_run_free(run); /* NULL when kept */
    history_free(&h);
}

static void handle_wft(worker *w, tc_conn *conn, const WftTask *t) {
    if (t->workflow_execution == NULL || t->workflow_type == NULL || t->workflow_execution->run_id == NULL) {
        wlog("a workflow task came without its workflow execution or type; ignored (it will time out)");
        return;
    }
    const char *wid = t->workflow_execution->workflow_id;
    cached_run *e = cache_checkout(w, wid, t->workflow_execution->run_id);
    if (e == NULL) {
        wlog("workflow task of %s: out of memory; leaving it to time out and be retried", wid);
        return;
    }
    engine_run *run = cache_take(w, e);
    bool had_run = run != NULL, closed = false;
    execute_wft(w, conn, t, e, &run, &closed);
    bool dropped = had_run && run == NULL;
    cached_run *evicted = cache_checkin(w, e, run);
    /* e may be freed now; a closed run has no next task to send elsewhere */
    if (dropped && !closed && w->cache.max_runs > 0) reset_sticky(w, conn, wid, t->workflow_execution->run_id);
    evict_all(w, conn, evicted);
}

/* A poll permit: at most max_concurrent_workflow_task_pollers polls at
 * once, split between the normal and the sticky queue. false when the
 * worker stops. */
static bool poll_permit(worker *w, bool *sticky) {
    int limit = w->set.max_concurrent_workflow_task_pollers;
    pthread_mutex_lock(&w->mu);
    while (!stopping(w) && w->polls_normal + w->polls_sticky >= limit) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->poll_cv, &w->mu, &ts);
    }
    bool ok = !stopping(w);
    if (ok) {
        /* After a run's first task its tasks come to the sticky queue, so
         * most polls go there: one in five (at least one) polls the normal
         * queue, where new runs and runs nobody has cached arrive; a
         * single poller alternates. */
        int normal_share = limit / 5 > 0 ? limit / 5 : 1;
        if (w->sticky_queue[0] == '\0')
            *sticky = false;
        else if (limit > 1)
            *sticky = w->polls_normal >= normal_share;
        else {
            w->poll_toggle = !w->poll_toggle;
            *sticky = w->poll_toggle;
        }
        if (*sticky)
            w->polls_sticky++;
        else
            w->polls_normal++;
    }
    pthread_mutex_unlock(&w->mu);
    return ok;
}

static void poll_done(worker *w, bool sticky) {
    pthread_mutex_lock(&w->mu);
    if (sticky)
        w->polls_sticky--;
    else
        w->polls_normal--;
    pthread_cond_signal(&w->poll_cv);
    pthread_mutex_unlock(&w->mu);
}

static void *workflow_thread(void *arg) {
    wf_thread *wt = arg;
    worker *w = wt->w;
    int backoff = 0;
    while (!stopping(w)) {
        bool sticky = false;
        if (!poll_permit(w, &sticky)) break;
        const char *queue = sticky ? w->sticky_queue : w->task_queue;
        Temporal__Api__Taskqueue__V1__TaskQueue tq;
        temporal__api__taskqueue__v1__task_queue__init(&tq);
        tq.name = (char *)queue;
        tq.kind = sticky ? TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_STICKY
                         : TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
        if (sticky) tq.normal_name = w->task_queue;
        Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueRequest req;
        temporal__api__workflowservice__v1__poll_workflow_task_queue_request__init(&req);
        req.namespace_ = w->cfg.namespace_;
        req.task_queue = &tq;
        req.identity = w->cfg.identity;
        tc_call_opts opts = {.timeout_ms = TC_LONG_POLL_TIMEOUT_MS};
        jerr err = {0};
        tc_call *call = tc_call_start(wt->conn, SVC_POLL_WFT, &req.base,
                                      &temporal__api__workflowservice__v1__poll_workflow_task_queue_response__descriptor,
                                      &opts, &err);
        if (call == NULL) {
            poll_done(w, sticky);
            wlog("cannot poll for workflow tasks: %s", err.msg);
            backoff = next_backoff(backoff);
            nap(w, backoff);
            continue;
        }
        bool broken = false;
        while (!tc_call_done(call) && !stopping(w)) {
            if (tc_conn_perform(wt->conn, 250, &err) < 0) {
                broken = true;
                break;
            }
        }
        poll_done(w, sticky);
        if (stopping(w) || broken) {
            tc_call_free(call); /* abandons the long poll */
            if (broken) {
                wlog("polling for workflow tasks failed: %s", err.msg);
                backoff = next_backoff(backoff);
                nap(w, backoff);
            }
            continue;
        }
        tc_status st;
        tc_status_init(&st);
        ProtobufCMessage *resp = NULL;
        int rc = tc_call_result(call, &resp, &st);
        tc_call_free(call);
        if (rc != 0) {
            /* Our own deadline passing is an empty poll, not an error. */
            if (!(st.transport && st.code == TC_DEADLINE_EXCEEDED)) {
                char text[1200];
                status_text(&st, text, sizeof text);
                backoff = next_backoff(backoff);
                wlog("polling %s for workflow tasks failed: %s; retrying in %.1f s", queue, text, backoff / 1000.0);
                tc_status_clear(&st);
                nap(w, backoff);
                continue;
            }
            tc_status_clear(&st);
            continue;
        }
        tc_status_clear(&st);
        backoff = 0;
        WftTask *t = (void *)resp;
        if (t->task_token.len > 0) handle_wft(w, wt->conn, t);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return NULL;
}

/* ----------------------------------------------------------- activities */

static int slots_used(worker *w) { return (int)act_slots_used(w->slots); }

/* Every activity task this worker can be handed has a slot waiting: the
 * attempts running, the polls out and the slots held for eager activities
 * stay within max_concurrent_activity_executions. Takes one (a poll when
 * eager is false) if there is room. */
static bool act_reserve(worker *w, bool eager) {
    pthread_mutex_lock(&w->mu);
    bool room = !stopping(w) && slots_used(w) + w->act_polls + w->act_eager < w->set.max_concurrent_activity_executions;
    if (room && eager) w->act_eager++;
    else if (room) w->act_polls++;
    pthread_mutex_unlock(&w->mu);
    return room;
}

static void act_unreserve(worker *w, bool eager, int n) {
    pthread_mutex_lock(&w->mu);
    if (eager) w->act_eager -= n;
    else w->act_polls -= n;
    pthread_mutex_unlock(&w->mu);
}

/* Runs on an activity thread of the host. */
static bool on_heartbeat(void *ud, uint64_t token, const Payloads *details) {
    worker *w = ud;
    /* the details are kept: a failure reports the last ones, sent or not */
    act_beat b = act_slots_beat(w->slots, token, details, true);
    if (!b.known) return false;
    bool cancel = b.cancel;
    if (!b.send) return cancel;
    /* The task stays owned by the slot until the attempt's outcome, which
     * comes after this callback returns: it may be used unlocked. */
    const ActTask *task = b.task;
    ProtobufCBinaryData task_token = task->task_token;
    const char *atype = task->activity_type != NULL ? task->activity_type->name : "?";

    Temporal__Api__Workflowservice__V1__RecordActivityTaskHeartbeatRequest req;
    temporal__api__workflowservice__v1__record_activity_task_heartbeat_request__init(&req);
    req.task_token = task_token;
    req.details = (Payloads *)details;
    req.identity = w->cfg.identity;
    req.namespace_ = w->cfg.namespace_;
    char what[300];
    snprintf(what, sizeof what, "heartbeat of activity %.200s", atype);
    ProtobufCMessage *resp = NULL;
    int code = 0;
    pthread_mutex_lock(&w->hb_mu);
    int rc = wcall(w->hb_conn, "RecordActivityTaskHeartbeat", &req.base,
                   &temporal__api__workflowservice__v1__record_activity_task_heartbeat_response__descriptor,
                   HEARTBEAT_TIMEOUT_MS, false, what, &resp, &code);
    pthread_mutex_unlock(&w->hb_mu);
    bool requested = false, gone = false;
    if (rc == 0) {
        requested = ((Temporal__Api__Workflowservice__V1__RecordActivityTaskHeartbeatResponse *)resp)->cancel_requested;
        protobuf_c_message_free_unpacked(resp, NULL);
    } else if (code == TC_NOT_FOUND) {
        /* The attempt timed out, or its workflow closed: stop working on it. */
        gone = true;
    }
    if (requested || gone) {
        act_slots_mark(w->slots, token, requested, gone, false);
        cancel = true;
    }
    return cancel;
}

/* Takes ownership of t on success. */
static int start_activity(worker *w, ActTask *t) {
    pthread_mutex_lock(&w->mu);
    uint64_t token = ++w->next_token;
    pthread_mutex_unlock(&w->mu);
    int64_t hb = pb_duration_nanos(t->heartbeat_timeout);
    int64_t hb_interval_ns = hb > 0 && hb / 2 < HEARTBEAT_MAX_INTERVAL_NS ? hb / 2 : HEARTBEAT_MAX_INTERVAL_NS;
    if (act_slots_add(w->slots, token, t, hb_interval_ns) != 0) return -1;

    const char *wid = t->workflow_execution != NULL ? t->workflow_execution->workflow_id : "";
    const char *atype = t->activity_type != NULL ? t->activity_type->name : "";
    act_task at = {
        .activity_type = atype,
        .activity_id = t->activity_id,
        .workflow_id = wid,
        .run_id = t->workflow_execution != NULL ? t->workflow_execution->run_id : "",
        .workflow_type = t->workflow_type != NULL ? t->workflow_type->name : "",
        .attempt = t->attempt > 0 ? t->attempt : 1,
        .input = t->input,
        .heartbeat_details = t->heartbeat_details,
        .start_to_close_ns = pb_duration_nanos(t->start_to_close_timeout),
        .heartbeat_timeout_ns = pb_duration_nanos(t->heartbeat_timeout),
        .token = token,
    };
    jerr err = {0};
    if (act_host_submit(w->host, &at, &err) != 0) {
        act_slots_release(w->slots, token, NULL);
        wlog("cannot start activity %s of %s: %s", atype, wid, err.msg);
        return -2; /* the caller fails the attempt */
    }
    winfo(w, "activity %s (id %s) of %s: attempt %d started", atype, t->activity_id, wid, at.attempt);
    progress(w, wid, "activity %s (id %s) started, attempt %d", atype, t->activity_id, at.attempt);
    return 0;
}

/* last: the attempt's last heartbeat details (NULL: none), so that the next
 * attempt gets them even when that heartbeat was not sent (throttled), as
 * on the embedded backend, which keeps every heartbeat's details. */
static void respond_activity_failed(worker *w, const ActTask *t, Temporal__Api__Failure__V1__Failure *f,
                                    Payloads *last) {
    Temporal__Api__Workflowservice__V1__RespondActivityTaskFailedRequest req;
    temporal__api__workflowservice__v1__respond_activity_task_failed_request__init(&req);
    req.task_token = t->task_token;
    req.failure = f;
    req.last_heartbeat_details = last;
    req.identity = w->cfg.identity;
    req.namespace_ = w->cfg.namespace_;
    wcall(w->act_conn, "RespondActivityTaskFailed", &req.base,
          &temporal__api__workflowservice__v1__respond_activity_task_failed_response__descriptor, RESPOND_TIMEOUT_MS,
          true, "reporting a failed activity", NULL, NULL);
}

static void on_outcome(worker *w, act_outcome *o) {
    act_slot_info copy;
    if (!act_slots_release(w->slots, o->token, &copy)) return;
    ActTask *t = copy.task;
    const char *wid = t->workflow_execution != NULL ? t->workflow_execution->workflow_id : "";
    const char *atype = t->activity_type != NULL ? t->activity_type->name : "";
    int code = 0;
    if (copy.gone) {
        wlog("activity %s (id %s) of %s: attempt %d ended after the server dropped it (timed out or its workflow "
             "closed); not reported", atype, t->activity_id, wid, t->attempt);
    } else if (o->kind == ACT_COMPLETED) {
        Temporal__Api__Workflowservice__V1__RespondActivityTaskCompletedRequest req;
        temporal__api__workflowservice__v1__respond_activity_task_completed_request__init(&req);
        req.task_token = t->task_token;
        req.result = o->result;
        req.identity = w->cfg.identity;
        req.namespace_ = w->cfg.namespace_;
        if (wcall(w->act_conn, "RespondActivityTaskCompleted", &req.base,
                  &temporal__api__workflowservice__v1__respond_activity_task_completed_response__descriptor,
                  RESPOND_TIMEOUT_MS, true, "reporting a completed activity", NULL, &code) == 0)
        {
            winfo(w, "activity %s (id %s) of %s: attempt %d completed", atype, t->activity_id, wid, t->attempt);
            progress(w, wid, "activity %s (id %s) completed", atype, t->activity_id);
        }
    } else if (o->kind == ACT_FAILED) {
        Temporal__Api__Failure__V1__Failure generic;
        temporal__api__failure__v1__failure__init(&generic);
        generic.message = "the activity failed without a failure message";
        generic.source = "jorch";
        respond_activity_failed(w, t, o->failure != NULL ? o->failure : &generic, copy.details);
        const char *fm = o->failure != NULL && o->failure->message != NULL ? o->failure->message : "(no message)";
        winfo(w, "activity %s (id %s) of %s: attempt %d failed: %s", atype, t->activity_id, wid, t->attempt, fm);
        progress(w, wid, "activity %s (id %s) failed on attempt %d (Temporal applies the retry policy): %s", atype,
                 t->activity_id, t->attempt, fm);
    } else if (o->kind == ACT_CANCELED && copy.cancel_requested) {
        Temporal__Api__Workflowservice__V1__RespondActivityTaskCanceledRequest req;
        temporal__api__workflowservice__v1__respond_activity_task_canceled_request__init(&req);
        req.task_token = t->task_token;
        req.details = o->details;
        req.identity = w->cfg.identity;
        req.namespace_ = w->cfg.namespace_;
        if (wcall(w->act_conn, "RespondActivityTaskCanceled", &req.base,
                  &temporal__api__workflowservice__v1__respond_activity_task_canceled_response__descriptor,
                  RESPOND_TIMEOUT_MS, true, "reporting a canceled activity", NULL, &code) == 0)
        {
            winfo(w, "activity %s (id %s) of %s: attempt %d canceled", atype, t->activity_id, wid, t->attempt);
            progress(w, wid, "activity %s (id %s) cancelled", atype, t->activity_id);
        }
    } else {
        /* Canceled by this worker (shutting down): leave the attempt to the
         * server's timeouts, which retry it elsewhere. */
        wlog("activity %s (id %s) of %s: attempt %d abandoned (the worker is stopping)", atype, t->activity_id,
             wid, t->attempt);
    }
    if (copy.details != NULL) protobuf_c_message_free_unpacked(&copy.details->base, NULL);
    protobuf_c_message_free_unpacked(&t->base, NULL);
}

/* A finished activity poll: start its attempt. */
static void activity_polled(worker *w, tc_call *poll, int *backoff, int64_t *retry_at_ms, int64_t now_ms) {
    tc_status st;
    tc_status_init(&st);
    ProtobufCMessage *resp = NULL;
    int rc = tc_call_result(poll, &resp, &st);
    if (rc != 0) {
        if (!(st.transport && st.code == TC_DEADLINE_EXCEEDED)) {
            char text[1200];
            status_text(&st, text, sizeof text);
            *backoff = next_backoff(*backoff);
            *retry_at_ms = now_ms + *backoff;
            wlog("polling %s for activity tasks failed: %s; retrying in %.1f s", w->task_queue, text,
                 *backoff / 1000.0);
        }
    } else {
        *backoff = 0;
        ActTask *t = (void *)resp;
        int src = t->task_token.len > 0 ? start_activity(w, t) : -1;
        if (src == -2) {
            Temporal__Api__Failure__V1__Failure f;
            temporal__api__failure__v1__failure__init(&f);
            f.message = "the worker could not start the activity (out of memory?)";
            f.source = "jorch";
            respond_activity_failed(w, t, &f, NULL);
        }
        if (src != 0) protobuf_c_message_free_unpacked(resp, NULL);
    }
    tc_status_clear(&st);
}

static void *activity_thread(void *arg) {
    worker *w = arg;
    /* Polls in flight, all on act_conn (driven together); a poll only
     * starts with a slot held for what it brings (act_reserve). */
    enum { MAX_POLLS = 64 };
    tc_call *polls[MAX_POLLS] = {0};
    int max_polls = w->set.max_concurrent_activity_task_pollers;
    if (max_polls > MAX_POLLS) max_polls = MAX_POLLS;
    int backoff = 0;
    int64_t retry_at_ms = 0;
    int64_t stop_deadline_ms = -1;
    bool cancelled_rest = false;
    for (;;) {
        int64_t now_ms = time_now_nanos() / 1000000;
        int out = 0;
        for (int i = 0; i < max_polls; i++) out += polls[i] != NULL ? 1 : 0;
        if (stopping(w)) {
            for (int i = 0; i < max_polls; i++) {
                if (polls[i] != NULL) tc_call_free(polls[i]); /* abandons the long poll */
                polls[i] = NULL;
            }
            act_unreserve(w, false, out);
            out = 0;
            if (stop_deadline_ms < 0) {
                stop_deadline_ms = now_ms + SHUTDOWN_GRACE_MS;
                int n = slots_used(w);
                if (n > 0) wlog("waiting up to %d s for %d running activit%s", SHUTDOWN_GRACE_MS / 1000, n,
                                n == 1 ? "y" : "ies");
            }
            if (slots_used(w) == 0) break;
            if (now_ms >= stop_deadline_ms && !cancelled_rest) {
                /* not marked: abandoned, left to the server's timeouts */
                act_slots_cancel_where(w->slots, w->host, NULL, NULL, false);
                cancelled_rest = true;
                stop_deadline_ms = now_ms + 5000; /* for the cancelled ones to come back */
            } else if (now_ms >= stop_deadline_ms && cancelled_rest) {
                break; /* act_host_free will deal with what is left */
            }
        } else if (now_ms >= retry_at_ms) {
            for (int i = 0; i < max_polls; i++) {
                if (polls[i] != NULL) continue;
                if (!act_reserve(w, false)) break;
                Temporal__Api__Taskqueue__V1__TaskQueue tq;
                temporal__api__taskqueue__v1__task_queue__init(&tq);
                tq.name = (char *)w->task_queue;
                tq.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
                Temporal__Api__Workflowservice__V1__PollActivityTaskQueueRequest req;
                temporal__api__workflowservice__v1__poll_activity_task_queue_request__init(&req);
                req.namespace_ = w->cfg.namespace_;
                req.task_queue = &tq;
                req.identity = w->cfg.identity;
                tc_call_opts opts = {.timeout_ms = TC_LONG_POLL_TIMEOUT_MS};
                jerr err = {0};
                polls[i] = tc_call_start(w->act_conn, "PollActivityTaskQueue", &req.base,
                                         &temporal__api__workflowservice__v1__poll_activity_task_queue_response__descriptor,
                                         &opts, &err);
                if (polls[i] == NULL) {
                    act_unreserve(w, false, 1);
                    backoff = next_backoff(backoff);
                    retry_at_ms = now_ms + backoff;
                    wlog("cannot poll for activity tasks: %s", err.msg);
                    break;
                }
                out++;
            }
        }
        if (out > 0) {
            jerr err = {0};
            if (tc_conn_perform(w->act_conn, 50, &err) < 0) {
                for (int i = 0; i < max_polls; i++) {
                    if (polls[i] != NULL) tc_call_free(polls[i]);
                    polls[i] = NULL;
                }
                act_unreserve(w, false, out);
                out = 0;
                backoff = next_backoff(backoff);
                retry_at_ms = now_ms + backoff;
                wlog("polling for activity tasks failed: %s", err.msg);
            } else {
                for (int i = 0; i < max_polls; i++) {
                    if (polls[i] == NULL || !tc_call_done(polls[i])) continue;
                    activity_polled(w, polls[i], &backoff, &retry_at_ms, now_ms);
                    tc_call_free(polls[i]);
                    polls[i] = NULL;
                    act_unreserve(w, false, 1); /* its task, if any, holds a slot of its own now */
                    out--;
                }
            }
        }
        /* Outcomes: wait a little when nothing else paces the loop. */
        act_outcome o;
        memset(&o, 0, sizeof o);
        while (act_host_wait(w->host, out == 0 ? 50 : 0, &o) == 1) {
            on_outcome(w, &o);
            act_outcome_clear(&o);
            memset(&o, 0, sizeof o);
            if (out == 0 && !stopping(w)) break; /* go poll again */
        }
    }
    for (int i = 0; i < max_polls; i++) {
        if (polls[i] == NULL) continue;
        tc_call_free(polls[i]);
        act_unreserve(w, false, 1);
    }
    return NULL;
}

/* ------------------------------------------------------------ settings */

void tc_worker_settings_default(tc_worker_settings *s) {
    s->max_concurrent_workflow_task_executions = 4;
    s->max_concurrent_activity_executions = 8;
    s->max_concurrent_workflow_task_pollers = 4;
    s->max_concurrent_activity_task_pollers = 2;
    s->max_cached_workflows = 1000;
    s->cache_memory_mb = 512;
    s->sticky_schedule_to_start_timeout_ms = 5000;
    s->disable_eager_activities = false;
}

static const struct {
    const char *key;
    long long min, max;
} int_settings[] = {
    {"max_concurrent_workflow_task_executions", 1, MAX_TASK_SLOTS},
    {"max_concurrent_activity_executions", 1, MAX_TASK_SLOTS},
    {"max_concurrent_workflow_task_pollers", 1, MAX_TASK_SLOTS},
    {"max_concurrent_activity_task_pollers", 1, 64},
    {"max_cached_workflows", 0, MAX_CACHED_RUNS},
    {"cache_memory_mb", 1, 1048576},
};

static int *int_setting(tc_worker_settings *s, size_t i) {
    switch (i) {
    case 0: return &s->max_concurrent_workflow_task_executions;
    case 1: return &s->max_concurrent_activity_executions;
    case 2: return &s->max_concurrent_workflow_task_pollers;
    case 3: return &s->max_concurrent_activity_task_pollers;
    case 4: return &s->max_cached_workflows;
    default: return &s->cache_memory_mb;
    }
}

int tc_worker_settings_set(tc_worker_settings *s, const char *key, const char *value, const char *source,
                           jerr *err) {
    if (value == NULL) value = "";
    for (size_t i = 0; i < sizeof int_settings / sizeof int_settings[0]; i++) {
        if (strcmp(key, int_settings[i].key) != 0) continue;
        char *end = NULL;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (value[0] == '\0' || end == NULL || *end != '\0' || errno != 0 || v < int_settings[i].min ||
            v > int_settings[i].max)
            return jerr_set(err, JERR_USAGE, "%s: '%.40s' is not a whole number from %lld to %lld", source, value,
                            int_settings[i].min, int_settings[i].max);
        *int_setting(s, i) = (int)v;
        return 0;
    }
    if (strcmp(key, "disable_eager_activities") == 0) {
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0) {
            s->disable_eager_activities = true;
        } else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0) {
            s->disable_eager_activities = false;
        } else {
            return jerr_set(err, JERR_USAGE, "%s: '%.40s' is not true or false", source, value);
        }
        return 0;
    }
    if (strcmp(key, "sticky_schedule_to_start_timeout") == 0) {
        int64_t ns = 0;
        jerr derr = {0};
        char *end = NULL;
        double secs = strtod(value, &end);
        if (value[0] != '\0' && end != NULL && *end == '\0')
            ns = secs >= 0 && secs <= 3600 ? (int64_t)(secs * 1e9) : -1;
        else if (duration_parse(value, &ns, &derr) != 0)
            ns = -1;
        if (ns < 1000000 || ns > (int64_t)3600 * 1000000000)
            return jerr_set(err, JERR_USAGE, "%s: '%.40s' is not a duration from 1 ms to 1 hour (e.g. 5 or \"10s\")",
                            source, value);
        s->sticky_schedule_to_start_timeout_ms = ns / 1000000;
        return 0;
    }
    return jerr_set(err, JERR_USAGE, "%s: unknown worker setting '%.60s' (known: max_concurrent_workflow_task_executions, "
                    "max_concurrent_activity_executions, max_concurrent_workflow_task_pollers, "
                    "max_concurrent_activity_task_pollers, max_cached_workflows, cache_memory_mb, "
                    "sticky_schedule_to_start_timeout, disable_eager_activities)", source, key);
}

static int settings_set(void *target, const char *key, const char *value, const char *source, jerr *err) {
    return tc_worker_settings_set(target, key, value, source, err);
}

static const config_section worker_section = {
    .name = "worker",
    .mapping_hint = "of settings (max_cached_workflows:, ...)",
    .value_hint = "a number, a duration or true/false",
    .booleans = true,
    .set = settings_set,
};

int tc_worker_settings_load(tc_worker_settings *s, jerr *err) {
    const char *path = NULL;
    int found = config_locate(&path, err);
    if (found <= 0) return found;
    return config_section_apply(path, &worker_section, s, err);
}

/* Pollers beyond the slots could only wait: at most one poll per slot. */
static int settings_settle(tc_worker_settings *s, jerr *err) {
    tc_worker_settings d;
    tc_worker_settings_default(&d);
    if (s->max_concurrent_workflow_task_executions < 1 || s->max_concurrent_activity_executions < 1)
        return jerr_set(err, JERR_USAGE, "the worker needs at least one workflow task slot and one activity slot");
    if (s->max_concurrent_workflow_task_pollers < 1) s->max_concurrent_workflow_task_pollers = 1;
    if (s->max_concurrent_activity_task_pollers < 1) s->max_concurrent_activity_task_pollers = 1;
    if (s->max_concurrent_workflow_task_pollers > s->max_concurrent_workflow_task_executions)
        s->max_concurrent_workflow_task_pollers = s->max_concurrent_workflow_task_executions;
    if (s->max_concurrent_activity_task_pollers > s->max_concurrent_activity_executions)
        s->max_concurrent_activity_task_pollers = s->max_concurrent_activity_executions;
    if (s->max_cached_workflows < 0) s->max_cached_workflows = 0;
    if (s->cache_memory_mb < 1) s->cache_memory_mb = d.cache_memory_mb;
    if (s->sticky_schedule_to_start_timeout_ms < 1) s->sticky_schedule_to_start_timeout_ms = d.sticky_schedule_to_start_timeout_ms;
    return 0;
}

/* ------------------------------------------------------------ lifecycle */

/* The start-up check: one call that needs the namespace to exist. */
static int check_server(worker *w, jerr *err) {
    Temporal__Api__Workflowservice__V1__DescribeNamespaceRequest req;
    temporal__api__workflowservice__v1__describe_namespace_request__init(&req);
    req.namespace_ = w->cfg.namespace_;
    tc_status st;
    tc_status_init(&st);
    tc_call_opts opts = {.timeout_ms = STARTUP_TIMEOUT_MS, .retry_safe = true, .max_attempts = 2};
    ProtobufCMessage *resp = NULL;
    if (tc_unary(w->wf_conn, "DescribeNamespace", &req.base,
                 &temporal__api__workflowservice__v1__describe_namespace_response__descriptor, &opts, &resp,
                 &st) != 0) {
        tc_call_error(&w->cfg, &st, "describe the namespace", NULL, err);
        tc_status_clear(&st);
        return -1;
    }
    tc_status_clear(&st);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

/* Connections (made here, on the main thread: see the top of the file),
 * the start-up check, the locks, the run cache and the activity host.
 * worker_close undoes whatever of it was done. */
static int worker_open(worker *w, jerr *err) {
    w->wf_conn = tc_conn_new(&w->cfg, err);
    if (w->wf_conn == NULL) return -1;
    w->act_conn = tc_conn_new(&w->cfg, err);
    if (w->act_conn == NULL) return -1;
    w->hb_conn = tc_conn_new(&w->cfg, err);
    if (w->hb_conn == NULL) return -1;
    if (check_server(w, err) != 0) return -1;
    size_t n = (size_t)w->set.max_concurrent_workflow_task_executions;
    w->wft = calloc(n, sizeof *w->wft);
    if (w->wft == NULL) return jerr_oom(err, "the workflow task slots");
    w->n_wft = n;
    for (size_t i = 0; i < n; i++) {
        w->wft[i].w = w;
        w->wft[i].conn = tc_conn_new(&w->cfg, err);
        if (w->wft[i].conn == NULL) return -1;
    }
    w->slots = act_slots_new((size_t)w->set.max_concurrent_activity_executions, err);
    if (w->slots == NULL) return -1;
    if (pthread_mutex_init(&w->mu, NULL) != 0) return jerr_set(err, JERR_FAILED, "cannot create the worker's locks");
    if (pthread_mutex_init(&w->hb_mu, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        return jerr_set(err, JERR_FAILED, "cannot create the worker's locks");
    }
    if (pthread_mutex_init(&w->cache.mu, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_mutex_destroy(&w->hb_mu);
        return jerr_set(err, JERR_FAILED, "cannot create the worker's locks");
    }
    if (pthread_cond_init(&w->cache.cv, NULL) != 0 || pthread_cond_init(&w->poll_cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_mutex_destroy(&w->hb_mu);
        pthread_mutex_destroy(&w->cache.mu);
        return jerr_set(err, JERR_FAILED, "cannot create the worker's locks");
    }
    w->mu_ok = true;
    act_host_config hc = {.activities_dir = w->act_dir, .threads = w->set.max_concurrent_activity_executions,
                          .on_heartbeat = on_heartbeat, .ud = w, .log_fn = act_log, .config_json = w->conf.data};
    w->host = act_host_new(&hc, err);
    if (w->host == NULL) return jerr_prefix(err, "cannot start the activity host on '%s'", w->act_dir);
    return 0;
}

static void worker_threads_stop(worker *w);

/* The threads; they never take SIGINT/SIGTERM (the main thread does). */
static int worker_threads_start(worker *w) {
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    bool ok = true;
    for (size_t i = 0; i < w->n_wft && ok; i++) {
        w->wft[i].started = pthread_create(&w->wft[i].thread, NULL, workflow_thread, &w->wft[i]) == 0;
        ok = w->wft[i].started;
    }
    w->act_started = ok && pthread_create(&w->act_thread, NULL, activity_thread, w) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!w->act_started) {
        worker_threads_stop(w);
        return -1;
    }
    return 0;
}

static void worker_threads_stop(worker *w) {
    atomic_store(&w->stop, true);
    for (size_t i = 0; i < w->n_wft; i++) {
        if (w->wft[i].started) pthread_join(w->wft[i].thread, NULL);
        w->wft[i].started = false;
    }
    if (w->act_started) pthread_join(w->act_thread, NULL);
    w->act_started = false;
}

/* After the threads stopped: the cached runs are freed and, for a few
 * seconds at most, handed back to the normal queue, so their next tasks do
 * not wait out the sticky timeout for a worker that is gone. */
static void cache_release(worker *w, bool reset) {
    if (!w->mu_ok) return;
    int64_t deadline = time_now_nanos() + (int64_t)SHUTDOWN_RESET_MS * 1000000;
    size_t n = 0;
    cached_run *e = w->cache.head;
    while (e != NULL) {
        cached_run *next = e->next;
        if (reset && e->run != NULL && w->wf_conn != NULL && time_now_nanos() < deadline) {
            reset_sticky(w, w->wf_conn, e->workflow_id, e->run_id);
            n++;
        }
        entry_free(e);
        e = next;
    }
    w->cache.head = w->cache.tail = NULL;
    w->cache.n_runs = 0;
    w->cache.bytes = 0;
    if (reset && w->cache.max_runs > 0 && !w->run_mode)
        wlog("run cache: %" PRIu64 " task(s) continued a cached run, %" PRIu64 " cache miss(es) read the full "
             "history, %" PRIu64 " run(s) evicted; %zu run(s) handed back to the task queue", w->cache.hits,
             w->cache.misses, w->cache.evictions, n);
}

static void free_task(void *task) { protobuf_c_message_free_unpacked(task, NULL); }

static void worker_close(worker *w) {
    if (w->host != NULL) act_host_free(w->host);
    w->host = NULL;
    /* Outcomes never collected (the grace period ran out) leave tasks behind. */
    act_slots_free(w->slots, free_task);
    w->slots = NULL;
    cache_release(w, false);
    if (w->mu_ok) {
        pthread_mutex_destroy(&w->mu);
        pthread_mutex_destroy(&w->hb_mu);
        pthread_mutex_destroy(&w->cache.mu);
        pthread_cond_destroy(&w->cache.cv);
        pthread_cond_destroy(&w->poll_cv);
    }
    w->mu_ok = false;
    for (size_t i = 0; i < w->n_wft; i++) tc_conn_free(w->wft[i].conn);
    free(w->wft);
    w->wft = NULL;
    w->n_wft = 0;
    tc_conn_free(w->hb_conn);
    tc_conn_free(w->act_conn);
    tc_conn_free(w->wf_conn);
    w->hb_conn = w->act_conn = w->wf_conn = NULL;
    tc_config_free(&w->cfg);
}

/* What activities see as jorch.config (as `jorch run` builds it). */
static int activity_config(worker *w, jerr *err) {
    const char *home = getenv("JORCH_HOME");
    if (config_activity_json(home != NULL && home[0] ? home : ".jorch", &w->conf, err) != 0) {
        err->code = JERR_USAGE;
        return -1;
    }
    return 0;
}

static void worker_free(worker *w) {
    worker_close(w);
    jbuf_free(&w->conf);
    free(w->task_queue);
    free(w->wf_dir);
    free(w->act_dir);
    free(w);
}

tc_worker *tc_worker_start(const tc_worker_opts *o, jerr *err) {
    worker *w = calloc(1, sizeof *w);
    if (w == NULL) {
        jerr_oom(err, "the worker");
        return NULL;
    }
    atomic_init(&w->stop, false);
    jbuf_init(&w->conf, 0);
    w->require_known = o->require_known_scripts;
    w->run_mode = o->run_mode;
    w->quiet = o->quiet;
    w->wf_dir = jstrdup(o->workflows_dir != NULL ? o->workflows_dir : "workflows");
    w->act_dir = jstrdup(o->activities_dir != NULL ? o->activities_dir : "activities");
    if (w->wf_dir == NULL || w->act_dir == NULL) {
        jerr_oom(err, "the worker's directories");
        worker_free(w);
        return NULL;
    }
    if (tc_config_load(&w->cfg, err) != 0) {
        worker_free(w);
        return NULL;
    }
    const char *q = o->task_queue != NULL ? o->task_queue : w->cfg.task_queue;
    if (q == NULL || q[0] == '\0') {
        jerr_set(err, JERR_USAGE, "--task-queue needs a queue name");
        worker_free(w);
        return NULL;
    }
    w->task_queue = jstrdup(q);
    if (w->task_queue == NULL) {
        jerr_oom(err, "a task queue name");
        worker_free(w);
        return NULL;
    }
    if (o->settings != NULL) {
        w->set = *o->settings;
    } else {
        tc_worker_settings_default(&w->set);
        if (tc_worker_settings_load(&w->set, err) != 0) {
            worker_free(w);
            return NULL;
        }
    }
    if (settings_settle(&w->set, err) != 0) {
        worker_free(w);
        return NULL;
    }
    w->cache.max_runs = (size_t)w->set.max_cached_workflows;
    w->cache.max_bytes = (size_t)w->set.cache_memory_mb << 20;
    if (w->cache.max_runs > 0) {
        /* this worker's own sticky queue: unique per process */
        char uuid[37];
        if (uuid_random(uuid) != 0) {
            jerr_set(err, JERR_INTERNAL, "cannot read random bytes for the sticky queue's name");
            worker_free(w);
            return NULL;
        }
        snprintf(w->sticky_queue, sizeof w->sticky_queue, "jorch-sticky-%s", uuid);
    }
    if (activity_config(w, err) != 0 || worker_open(w, err) != 0) {
        worker_free(w);
        return NULL;
    }
    if (worker_threads_start(w) != 0) {
        jerr_set(err, JERR_FAILED, "cannot start the worker's threads");
        worker_free(w);
        return NULL;
    }
    return w;
}

const tc_config *tc_worker_config(const tc_worker *w) { return &w->cfg; }
const char *tc_worker_task_queue(const tc_worker *w) { return w->task_queue; }

bool tc_worker_task_failed(tc_worker *w, char *msg, size_t cap) {
    pthread_mutex_lock(&w->mu);
    bool failed = w->task_failed;
    if (failed && msg != NULL && cap > 0) snprintf(msg, cap, "%s", w->task_failure);
    pthread_mutex_unlock(&w->mu);
    return failed;
}

void tc_worker_stop(tc_worker *w) {
    if (w == NULL) return;
    worker_threads_stop(w);
    cache_release(w, true);
    worker_free(w);
}
