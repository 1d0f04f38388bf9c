/*
 * tc_worker.c - the Temporal worker: serves a workflows directory and an
 * activities directory on a task queue. `jorch worker` (runtime/cli/
 * cli_worker.c) runs it until a signal; `jorch run --temporal` runs it in
 * its own process on a queue of its own (run mode: progress lines as the
 * embedded runner prints them instead of the worker's log).
 *
 * Two threads besides the main one (which only waits for SIGINT/SIGTERM):
 *  - the workflow thread long-polls PollWorkflowTaskQueue; for each task it
 *    reads the whole history (the task's events plus GetWorkflowExecutionHistory
 *    pages), replays it from event 1 in a fresh engine_run built from
 *    <workflows>/<type>.lua, and answers RespondWorkflowTaskCompleted (with
 *    the answers of attached queries), RespondWorkflowTaskFailed, or, for a
 *    legacy query task, RespondQueryTaskCompleted. Nothing is cached between
 *    tasks and no sticky queue is used, so the server always sends full
 *    histories: simple and always correct, at the price of a replay per task.
 *  - the activity thread long-polls PollActivityTaskQueue whenever fewer than
 *    WORKER_ACT_SLOTS attempts are in flight, runs them on an act_host and
 *    reports each outcome (Completed, Failed, Canceled). The attempts in
 *    flight are an act_slots table (runtime/activity).
 * Heartbeats come from the host's threads; they go out on a connection of
 * their own, under a mutex (a tc_conn is not thread-safe), throttled.
 *
 * Every connection is made and freed on the main thread: tc_conn_new and
 * tc_conn_free call curl_global_init/cleanup, which are not thread-safe.
 */
#include <errno.h>
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

/* Activity attempts in flight at once (the host's thread count). */
#define WORKER_ACT_SLOTS 4
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
/* Bounds on a history read (as the client's `jorch history`). */
#define HISTORY_MAX_EVENTS ((size_t)10000000)

#define SVC_POLL_WFT "PollWorkflowTaskQueue"

typedef Temporal__Api__History__V1__HistoryEvent HistoryEvent;
typedef Temporal__Api__Common__V1__Payloads Payloads;
typedef Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse WftTask;
typedef Temporal__Api__Workflowservice__V1__PollActivityTaskQueueResponse ActTask;

typedef struct tc_worker {
    tc_config cfg;
    char *task_queue;
    char *wf_dir;
    char *act_dir;
    jbuf conf;           /* jorch.config of the activities (JSON) */
    bool require_known;  /* --require-known-scripts */
    bool run_mode;       /* in-process for `jorch run --temporal`: progress lines as the embedded runner's */
    bool quiet;          /* run_mode with --quiet: no progress lines */
    bool task_failed;    /* run_mode: a workflow task failed (under mu) */
    char task_failure[sizeof ((jerr *)0)->msg + 64];
    bool mu_ok;
    pthread_t wf_thread, act_thread;
    bool wf_started, act_started;
    tc_conn *wf_conn;   /* the workflow thread's */
    tc_conn *act_conn;  /* the activity thread's */
    tc_conn *hb_conn;   /* heartbeats, under hb_mu */
    act_host *host;
    pthread_mutex_t mu; /* next_token, task_failed */
    pthread_mutex_t hb_mu;
    act_slots *slots;   /* the activity attempts in flight; each task is the polled ActTask (owned) */
    uint64_t next_token;
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

/* The task's events, then the pages behind its next_page_token. */
static int collect_history(worker *w, const WftTask *t, wft_history *h, jerr *err) {
    if (t->history != NULL && history_add(h, t->history->events, t->history->n_events, err) != 0) return -1;
    ProtobufCBinaryData token = t->next_page_token;
    while (token.len > 0) {
        Temporal__Api__Common__V1__WorkflowExecution ex;
        temporal__api__common__v1__workflow_execution__init(&ex);
        ex.workflow_id = t->workflow_execution->workflow_id;
        ex.run_id = t->workflow_execution->run_id;
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest req;
        temporal__api__workflowservice__v1__get_workflow_execution_history_request__init(&req);
        req.namespace_ = w->cfg.namespace_;
        req.execution = &ex;
        req.next_page_token = token;
        tc_status st;
        tc_status_init(&st);
        tc_call_opts opts = {.timeout_ms = RESPOND_TIMEOUT_MS, .retry_safe = true};
        ProtobufCMessage *resp = NULL;
        if (tc_unary(w->wf_conn, "GetWorkflowExecutionHistory", &req.base,
                     &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor,
                     &opts, &resp, &st) != 0) {
            char text[1200];
            status_text(&st, text, sizeof text);
            tc_status_clear(&st);
            return jerr_set(err, JERR_BACKEND, "cannot read the rest of the history: %s", text);
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

/* As `jorch run` loads a script (the same bound, the same words). */
static int read_script(const char *path, char **src, size_t *len, jerr *err) {
    if (file_read_all(path, 16u << 20, src, len, err) != 0) {
        jerr_prefix(err, "cannot load workflow script");
        err->code = JERR_USAGE;
        return -1;
    }
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

static void respond_wft_failed(worker *w, const WftTask *t, int cause, const char *message) {
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
    wcall(w->wf_conn, "RespondWorkflowTaskFailed", &req.base,
          &temporal__api__workflowservice__v1__respond_workflow_task_failed_response__descriptor, RESPOND_TIMEOUT_MS,
          true, what, NULL, NULL);
}

static void respond_query(worker *w, const WftTask *t, const Payloads *answer, const char *error) {
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
    wcall(w->wf_conn, "RespondQueryTaskCompleted", &req.base,
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
static void fail_task(worker *w, const WftTask *t, int cause, const char *message) {
    const char *wid = t->workflow_execution->workflow_id;
    if (t->query != NULL) {
        wlog("query '%s' on %s failed: %s", t->query->query_type, wid, message);
        respond_query(w, t, NULL, message);
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
        if (t->attempt == 1) respond_wft_failed(w, t, cause, message);
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
    respond_wft_failed(w, t, cause, message);
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

static void handle_wft(worker *w, const WftTask *t) {
    if (t->workflow_execution == NULL || t->workflow_type == NULL) {
        wlog("a workflow task came without its workflow execution or type; ignored (it will time out)");
        return;
    }
    const char *wid = t->workflow_execution->workflow_id;
    const char *type = t->workflow_type->name;
    const int FAILED_UNHANDLED =
        TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE;
    const int FAILED_NONDET =
        TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR;
    char msg[1400];
    if (!type_is_safe(type)) {
        snprintf(msg, sizeof msg, "workflow type '%.200s' cannot name a script in %.900s (it must be a file name "
                 "without '/' or a leading '.')", type, w->wf_dir);
        fail_task(w, t, FAILED_UNHANDLED, msg);
        return;
    }
    char path[4096];
    int pn = snprintf(path, sizeof path, "%s/%s.lua", w->wf_dir, type);
    if (pn < 0 || (size_t)pn >= sizeof path) {
        snprintf(msg, sizeof msg, "the script path for workflow type '%.200s' is too long", type);
        fail_task(w, t, FAILED_UNHANDLED, msg);
        return;
    }
    jerr err = {0};
    char *src = NULL;
    size_t len = 0;
    if (read_script(path, &src, &len, &err) != 0) {
        snprintf(msg, sizeof msg, "no script for workflow type '%.200s': %.900s (the worker serves %.200s/<type>.lua; "
                 "check --workflows)", type, err.msg, w->wf_dir);
        fail_task(w, t, FAILED_UNHANDLED, msg);
        return;
    }
    wft_history h;
    memset(&h, 0, sizeof h);
    if (collect_history(w, t, &h, &err) != 0) {
        /* Transient (or a history too large): let the task time out and be retried. */
        wlog("workflow task of %s: %s; leaving it to time out and be retried", wid, err.msg);
        history_free(&h);
        free(src);
        return;
    }
    /* a run started with its script version replays on that version */
    char *pinned_src = NULL, *pinned_name = NULL;
    size_t pinned_len = 0;
    char pinned_sha[65];
    int pinned = tc_pin_from_history(h.events, h.n, &pinned_src, &pinned_len, pinned_sha, &pinned_name, &err);
    if (pinned > 0) {
        char own_sha[65];
        sha256_hex(src, len, own_sha);
        if (w->require_known && strcmp(own_sha, pinned_sha) != 0) {
            snprintf(msg, sizeof msg, "workflow '%.200s' runs script version %.12s (%.200s), which is not this "
                     "worker's %.300s (sha256 %.12s): with --require-known-scripts the worker runs only the scripts "
                     "in its own workflows directory; deploy that version to it, or serve the run with another worker",
                     wid, pinned_sha, pinned_name, path, own_sha);
            pinned = -1;
        } else {
            free(src);
            src = pinned_src;
            len = pinned_len;
            pinned_src = NULL;
        }
    } else if (pinned < 0) {
        snprintf(msg, sizeof msg, "%s", err.msg);
    }
    free(pinned_src);
    if (pinned < 0) {
        fail_task(w, t, FAILED_UNHANDLED, msg);
        free(pinned_name);
        free(src);
        history_free(&h);
        return;
    }
    engine_run_config ec = {
        .script_name = pinned > 0 ? pinned_name : path, .script_src = src, .script_len = len,
        .limits = engine_limits_default(),
        .finder = engine_find_module_in_dir, .finder_ud = (void *)w->wf_dir, .namespace_ = w->cfg.namespace_,
        .workflow_id = wid, .run_id = t->workflow_execution->run_id, .log_fn = wf_log, .log_ud = w,
    };
    engine_run *run = engine_run_new(&ec, &err);
    free(src);
    free(pinned_name);
    if (run == NULL) {
        fail_task(w, t, FAILED_UNHANDLED, err.msg);
        history_free(&h);
        return;
    }
    engine_output out;
    memset(&out, 0, sizeof out);
    if (engine_run_feed(run, h.events, h.n, &out, &err) != 0) {
        fail_task(w, t, out.failure == ENGINE_NONDETERMINISM ? FAILED_NONDET : FAILED_UNHANDLED, err.msg);
        engine_run_free(run);
        history_free(&h);
        return;
    }
    if (t->query != NULL) {
        /* Legacy query: answered on its own, never with RespondWorkflowTaskCompleted. */
        Payloads *answer = NULL;
        if (engine_run_query(run, t->query->query_type, t->query->query_args, &answer, &err) != 0) {
            fail_task(w, t, FAILED_UNHANDLED, err.msg);
        } else {
            respond_query(w, t, answer, NULL);
            winfo(w, "query '%s' on %s answered", t->query->query_type, wid);
            protobuf_c_message_free_unpacked(&answer->base, NULL);
        }
        engine_run_free(run);
        history_free(&h);
        return;
    }
    query_answers qa;
    memset(&qa, 0, sizeof qa);
    if (answer_attached(run, t, &qa, &err) != 0) {
        fail_task(w, t, FAILED_UNHANDLED, err.msg);
        answers_free(&qa);
        engine_run_free(run);
        history_free(&h);
        return;
    }
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedRequest req;
    temporal__api__workflowservice__v1__respond_workflow_task_completed_request__init(&req);
    req.task_token = t->task_token;
    req.commands = out.commands;
    req.n_commands = out.n_commands;
    req.identity = w->cfg.identity;
    req.namespace_ = w->cfg.namespace_;
    req.query_results = qa.ptrs;
    req.n_query_results = qa.n;
    /* runtime flags this task used first, and jorch's name on the first task */
    if (engine_task_metadata(&out, &req.sdk_metadata, &err) != 0) {
        fail_task(w, t, FAILED_UNHANDLED, err.msg);
        answers_free(&qa);
        engine_run_free(run);
        history_free(&h);
        return;
    }
    char what[400];
    snprintf(what, sizeof what, "completing the workflow task of '%.300s'", wid);
    int code = 0;
    char refusal[1024];
    if (wcall_q(w->wf_conn, "RespondWorkflowTaskCompleted", &req.base,
                &temporal__api__workflowservice__v1__respond_workflow_task_completed_response__descriptor,
                RESPOND_TIMEOUT_MS, true, what, NULL, &code, refusal, sizeof refusal) == 0) {
        char cmds[256] = "";
        size_t used = 0;
        for (size_t i = 0; i < out.n_commands && used + 40 < sizeof cmds; i++) {
            int k = snprintf(cmds + used, sizeof cmds - used, "%s%s", i ? ", " : "",
                             command_type_name((int)out.commands[i]->command_type));
            if (k > 0) used += (size_t)k;
        }
        winfo(w, "workflow task of %s (%s, %zu events%s, attempt %d): %zu command(s)%s%s%s%s", wid, type, h.n,
             h.n_pages > 0 ? " over several pages" : "", t->attempt, out.n_commands, out.n_commands ? " " : "", cmds, engine_run_closed(run) ? "; the run is closing" : "",
             qa.n ? "; queries answered" : "");
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
    engine_run_free(run);
    history_free(&h);
}

static void *workflow_thread(void *arg) {
    worker *w = arg;
    int backoff = 0;
    while (!stopping(w)) {
        Temporal__Api__Taskqueue__V1__TaskQueue tq;
        temporal__api__taskqueue__v1__task_queue__init(&tq);
        tq.name = (char *)w->task_queue;
        tq.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
        Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueRequest req;
        temporal__api__workflowservice__v1__poll_workflow_task_queue_request__init(&req);
        req.namespace_ = w->cfg.namespace_;
        req.task_queue = &tq;
        req.identity = w->cfg.identity;
        tc_call_opts opts = {.timeout_ms = TC_LONG_POLL_TIMEOUT_MS};
        jerr err = {0};
        tc_call *call = tc_call_start(w->wf_conn, SVC_POLL_WFT, &req.base,
                                      &temporal__api__workflowservice__v1__poll_workflow_task_queue_response__descriptor,
                                      &opts, &err);
        if (call == NULL) {
            wlog("cannot poll for workflow tasks: %s", err.msg);
            backoff = next_backoff(backoff);
            nap(w, backoff);
            continue;
        }
        bool broken = false;
        while (!tc_call_done(call) && !stopping(w)) {
            if (tc_conn_perform(w->wf_conn, 250, &err) < 0) {
                broken = true;
                break;
            }
        }
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
                wlog("polling %s for workflow tasks failed: %s; retrying in %.1f s", w->task_queue, text,
                     backoff / 1000.0);
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
        if (t->task_token.len > 0) handle_wft(w, t);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return NULL;
}

/* ----------------------------------------------------------- activities */

static int slots_used(worker *w) { return (int)act_slots_used(w->slots); }

/* Runs on an activity thread of the host. */
static bool on_heartbeat(void *ud, uint64_t token, const Payloads *details) {
    worker *w = ud;
    act_beat b = act_slots_beat(w->slots, token, details, false);
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

static void respond_activity_failed(worker *w, const ActTask *t, Temporal__Api__Failure__V1__Failure *f) {
    Temporal__Api__Workflowservice__V1__RespondActivityTaskFailedRequest req;
    temporal__api__workflowservice__v1__respond_activity_task_failed_request__init(&req);
    req.task_token = t->task_token;
    req.failure = f;
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
        respond_activity_failed(w, t, o->failure != NULL ? o->failure : &generic);
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
    protobuf_c_message_free_unpacked(&t->base, NULL);
}

static void *activity_thread(void *arg) {
    worker *w = arg;
    tc_call *poll = NULL;
    int backoff = 0;
    int64_t retry_at_ms = 0;
    int64_t stop_deadline_ms = -1;
    bool cancelled_rest = false;
    for (;;) {
        int64_t now_ms = time_now_nanos() / 1000000;
        if (stopping(w)) {
            if (poll != NULL) {
                tc_call_free(poll); /* abandons the long poll */
                poll = NULL;
            }
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
        } else if (poll == NULL && now_ms >= retry_at_ms && slots_used(w) < WORKER_ACT_SLOTS) {
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
            poll = tc_call_start(w->act_conn, "PollActivityTaskQueue", &req.base,
                                 &temporal__api__workflowservice__v1__poll_activity_task_queue_response__descriptor,
                                 &opts, &err);
            if (poll == NULL) {
                backoff = next_backoff(backoff);
                retry_at_ms = now_ms + backoff;
                wlog("cannot poll for activity tasks: %s", err.msg);
            }
        }
        if (poll != NULL) {
            jerr err = {0};
            if (tc_conn_perform(w->act_conn, 50, &err) < 0) {
                tc_call_free(poll);
                poll = NULL;
                backoff = next_backoff(backoff);
                retry_at_ms = now_ms + backoff;
                wlog("polling for activity tasks failed: %s", err.msg);
            } else if (tc_call_done(poll)) {
                tc_status st;
                tc_status_init(&st);
                ProtobufCMessage *resp = NULL;
                int rc = tc_call_result(poll, &resp, &st);
                tc_call_free(poll);
                poll = NULL;
                if (rc != 0) {
                    if (!(st.transport && st.code == TC_DEADLINE_EXCEEDED)) {
                        char text[1200];
                        status_text(&st, text, sizeof text);
                        backoff = next_backoff(backoff);
                        retry_at_ms = now_ms + backoff;
                        wlog("polling %s for activity tasks failed: %s; retrying in %.1f s", w->task_queue, text,
                             backoff / 1000.0);
                    }
                } else {
                    backoff = 0;
                    ActTask *t = (void *)resp;
                    int src = t->task_token.len > 0 ? start_activity(w, t) : -1;
                    if (src == -2) {
                        Temporal__Api__Failure__V1__Failure f;
                        temporal__api__failure__v1__failure__init(&f);
                        f.message = "the worker could not start the activity (out of memory?)";
                        f.source = "jorch";
                        respond_activity_failed(w, t, &f);
                    }
                    if (src != 0) protobuf_c_message_free_unpacked(resp, NULL);
                }
                tc_status_clear(&st);
            }
        }
        /* Outcomes: wait a little when nothing else paces the loop. */
        act_outcome o;
        memset(&o, 0, sizeof o);
        while (act_host_wait(w->host, poll == NULL ? 50 : 0, &o) == 1) {
            on_outcome(w, &o);
            act_outcome_clear(&o);
            memset(&o, 0, sizeof o);
            if (poll == NULL && !stopping(w)) break; /* go poll again */
        }
    }
    if (poll != NULL) tc_call_free(poll);
    return NULL;
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
 * the start-up check, the locks and the activity host. worker_close undoes
 * whatever of it was done. */
static int worker_open(worker *w, jerr *err) {
    w->wf_conn = tc_conn_new(&w->cfg, err);
    if (w->wf_conn == NULL) return -1;
    w->act_conn = tc_conn_new(&w->cfg, err);
    if (w->act_conn == NULL) return -1;
    w->hb_conn = tc_conn_new(&w->cfg, err);
    if (w->hb_conn == NULL) return -1;
    if (check_server(w, err) != 0) return -1;
    w->slots = act_slots_new(WORKER_ACT_SLOTS, err);
    if (w->slots == NULL) return -1;
    if (pthread_mutex_init(&w->mu, NULL) != 0) return jerr_set(err, JERR_FAILED, "cannot create the worker's locks");
    if (pthread_mutex_init(&w->hb_mu, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        return jerr_set(err, JERR_FAILED, "cannot create the worker's locks");
    }
    w->mu_ok = true;
    act_host_config hc = {.activities_dir = w->act_dir, .threads = WORKER_ACT_SLOTS, .on_heartbeat = on_heartbeat,
                          .ud = w, .log_fn = act_log, .config_json = w->conf.data};
    w->host = act_host_new(&hc, err);
    if (w->host == NULL) return jerr_prefix(err, "cannot start the activity host on '%s'", w->act_dir);
    return 0;
}

static void worker_threads_stop(worker *w);

/* The two threads; they never take SIGINT/SIGTERM (the main thread does). */
static int worker_threads_start(worker *w) {
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    w->wf_started = pthread_create(&w->wf_thread, NULL, workflow_thread, w) == 0;
    w->act_started = w->wf_started && pthread_create(&w->act_thread, NULL, activity_thread, w) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!w->act_started) {
        worker_threads_stop(w);
        return -1;
    }
    return 0;
}

static void worker_threads_stop(worker *w) {
    atomic_store(&w->stop, true);
    if (w->wf_started) pthread_join(w->wf_thread, NULL);
    if (w->act_started) pthread_join(w->act_thread, NULL);
    w->wf_started = w->act_started = false;
}

static void free_task(void *task) { protobuf_c_message_free_unpacked(task, NULL); }

static void worker_close(worker *w) {
    if (w->host != NULL) act_host_free(w->host);
    w->host = NULL;
    /* Outcomes never collected (the grace period ran out) leave tasks behind. */
    act_slots_free(w->slots, free_task);
    w->slots = NULL;
    if (w->mu_ok) {
        pthread_mutex_destroy(&w->mu);
        pthread_mutex_destroy(&w->hb_mu);
    }
    w->mu_ok = false;
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
    worker_free(w);
}
