/*
 * runner.c - executes one workflow execution on the embedded backend:
 * workflow tasks through the engine, activities through the activity host,
 * timers, retries and requests from other processes, each state change
 * committed in one transaction so `kill -9` at any instant leaves a store
 * that `jorch resume` continues from.
 */
#include "store/store_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "activity/activity.h"
#include "engine/engine.h"

#define NS INT64_C(1000000000)
#define RUNNER_SLOTS 256

/* Renews the run's lease every third of its length on a connection of its
 * own, so a long workflow task never lets it lapse; notices when the run
 * was taken over or the store files were deleted or replaced, and tells
 * the main loop (failed + err). */
typedef struct keeper {
    store *s;                    /* its own connection */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char run_id[40];
    int64_t gen;
    int64_t period_ns;
    bool running, stop, failed;
    jerr err;
} keeper;

struct runner {
    store *s;
    const store_runner_opts *o;
    act_host *host;
    char run_id[40];
    store_run run;
    engine_run *eng;
    int64_t fed;                 /* last event id fed to the engine */
    store_module_ctx modules;    /* require() inside the run: pinned modules */
    bool tty;                    /* stderr is a terminal: draw the live status line */
    bool status_shown;
    int64_t status_at;
    unsigned spin;
    cJSON *wf_status;            /* the workflow's own status (__jorch_status) after its last task */
    char details[256];           /* current details last shown as a header */
    bool grouped;                /* on a terminal, lines are indented under that header */
    char waiting[512];           /* which wait the status line shows (store_waiting_key), since when */
    int64_t waiting_since;
    act_slots *slots;            /* the attempts in the host (activity.h): RUNNER_SLOTS at most, dispatch
                                    waits when full; made at the first, freed when the last ends (a run
                                    waiting in the service holds none). Activity threads touch only this. */
    uint32_t generation;         /* which run of a continue-as-new chain: part of each token */
    int64_t lease_gen;           /* the fencing token of this process's lease on run_id */
    keeper keep;
    bool warned_count, warned_size; /* history limit warnings already printed */
    bool service;                /* executed by the service: shared host, no keeper thread, no terminal */
    bool leased;                 /* holds the lease (runner_open .. runner_close) */
    int64_t hb_due;              /* wall clock: the next heartbeat deadline of a running attempt, or 0 */
    char log_path[1100];         /* the service: this run's log file ("": stderr) */
    int task_attempts;           /* workflow tasks failed in a row (store_task_retry_get) */
    int64_t task_retry_at;       /* wall clock: the service tries the failed task again, 0 not */
};

/* Output: plain lines, and on a terminal also a live status line at the
 * bottom (what the run waits for), erased before each new line. Activity
 * threads log through here too, so lines never tear the status line. */
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void status_clear_locked(runner *r) {
    if (r->status_shown) {
        fputs("\r\033[K", stderr);
        r->status_shown = false;
    }
}

/* One line "[prefix] text" through runlog (escaped, bounded, rotated). On
 * a terminal, lines that follow a header (the workflow's current details,
 * e.g. its phase) are indented under it instead of prefixed. */
static void out_line(runner *r, const char *open, const char *name, const char *text) {
    char prefix[1100];
    if (r->tty && r->grouped)
        snprintf(prefix, sizeof prefix, "  %s%s", *open ? name : "", *open ? ": " : "");
    else
        snprintf(prefix, sizeof prefix, "[%s%s] ", open, name);
    pthread_mutex_lock(&out_mu);
    status_clear_locked(r);
    if (r->log_path[0]) runlog_append(r->log_path, prefix, text);
    else runlog_write(prefix, text);
    pthread_mutex_unlock(&out_mu);
}

static void progress(runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(runner *r, const char *fmt, ...) {
    if (r->o->quiet) return;
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    out_line(r, "", r->run.workflow_id, text);
}

/* Routine steps (an activity started or completed, a timer started or
 * fired): on a terminal only with --verbose, the status line shows them. */
static void progress_routine(runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress_routine(runner *r, const char *fmt, ...) {
    if (r->o->quiet || (r->tty && !r->o->verbose)) return;
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    out_line(r, "", r->run.workflow_id, text);
}

static void wf_log(void *ud, const char *wid, const char *line) {
    runner *r = ud;
    if (r->o->quiet) return;
    out_line(r, "", wid, line);
}

static void act_log(void *ud, const char *activity_type, const char *line) {
    runner *r = ud;
    if (r->o->quiet) return;
    out_line(r, "activity ", activity_type, line);
}

/* After each workflow task: the workflow's own view of what it waits for,
 * and a header line when its current details (the orchestrator: its phase)
 * changed. A workflow that cannot answer is simply not described. */
static void refresh_status(runner *r) {
    if (!r->eng) return;
    Payloads *ans = NULL;
    jerr e = {0};
    if (engine_run_query(r->eng, ENGINE_STATUS_QUERY, NULL, &ans, &e) != 0) return;
    cJSON *st = store_status_from_payloads(ans, &e);
    if (ans) protobuf_c_message_free_unpacked(&ans->base, NULL);
    if (!st) return;
    cJSON_Delete(r->wf_status);
    r->wf_status = st;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(st, "details");
    const char *details = cJSON_IsString(d) ? d->valuestring : "";
    if (!*details || strncmp(details, r->details, sizeof r->details - 1) == 0) return;
    snprintf(r->details, sizeof r->details, "%s", details);
    if (r->o->quiet) return;
    char prefix[300];
    if (r->tty) snprintf(prefix, sizeof prefix, "== ");
    else snprintf(prefix, sizeof prefix, "[%.256s] == ", r->run.workflow_id);
    pthread_mutex_lock(&out_mu);
    status_clear_locked(r);
    if (r->log_path[0]) runlog_append(r->log_path, prefix, details);
    else runlog_write(prefix, details);
    if (r->tty) r->grouped = true;
    pthread_mutex_unlock(&out_mu);
}

/* The live line: redrawn at most five times a second. It says what the
 * workflow waits for ("signal proceed (EXPLORE gate)"), in the workflow's
 * own terms once its first task ran, and since when. */
static void status_draw(runner *r, int running, int64_t due) {
    if (!r->tty || r->o->quiet) return;
    int64_t now = time_now_nanos();
    if (now - r->status_at < 200000000) return;
    r->status_at = now;
    static const char spin[] = "|/-\\";
    char line[768];
    if (r->wf_status) {
        char waiting[512], key[512], clock[16], more[48] = "";
        store_waiting_text(r->s, r->run_id, r->wf_status, waiting, sizeof waiting);
        store_waiting_key(r->wf_status, key, sizeof key);
        if (strcmp(key, r->waiting) != 0) {
            snprintf(r->waiting, sizeof r->waiting, "%s", key);
            r->waiting_since = now;
        }
        store_clock_text(r->waiting_since, clock, sizeof clock);
        if (running > 1) snprintf(more, sizeof more, " (%d activities running)", running);
        snprintf(line, sizeof line, "%c %s: waiting for %s since %s%s", spin[r->spin++ % 4], r->run.workflow_id,
                 waiting, clock, more);
    } else {
        char next[64] = "";
        if (due > 0) {
            int64_t left = due - store_run_now(r->s, r->run_id);
            char human[48];
            duration_human(left > 0 ? left : 0, human, sizeof human);
            snprintf(next, sizeof next, ", next timer or retry in %s", human);
        }
        snprintf(line, sizeof line, "%c %s: %d activit%s running%s", spin[r->spin++ % 4], r->run.workflow_id,
                 running, running == 1 ? "y" : "ies", next);
    }
    /* one terminal row (a wrapped line could not be erased with \r), and
     * nothing from the workflow reaches the terminal unescaped */
    jbuf esc_line;
    jbuf_init(&esc_line, 0);
    text_escape(&esc_line, line, strlen(line), false);
    struct winsize ws;
    size_t cols = ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10 ? ws.ws_col : 80;
    if (esc_line.data && esc_line.len >= cols) {
        size_t cut = cols - 1;
        while (cut > 0 && ((unsigned char)esc_line.data[cut] & 0xC0) == 0x80) cut--; /* whole UTF-8 characters */
        esc_line.data[cut] = '\0';
    }
    pthread_mutex_lock(&out_mu);
    fprintf(stderr, "\r\033[K\033[2m%s\033[0m", esc_line.data ? esc_line.data : "");
    jbuf_free(&esc_line);
    r->status_shown = true;
    pthread_mutex_unlock(&out_mu);
}

/* Event ids restart at 1 in every run of a continue-as-new chain, so an
 * attempt's token carries the run's generation too: an old run's attempt
 * finishing late can never be taken for the new run's. */
static uint64_t token_of(const runner *r, int64_t sched) {
    return ((uint64_t)r->generation << 40) | ((uint64_t)sched & ((UINT64_C(1) << 40) - 1));
}
static int64_t sched_of(uint64_t token) { return (int64_t)(token & ((UINT64_C(1) << 40) - 1)); }
static uint32_t generation_of(uint64_t token) { return (uint32_t)(token >> 40); }

static void on_start(void *ud, uint64_t token) {
    runner *r = ud;
    /* the table exists: it was made before the attempt was submitted */
    if (r->slots) act_slots_started(r->slots, token);
}

static int free_slots(runner *r) {
    return r->slots ? (int)(act_slots_capacity(r->slots) - act_slots_used(r->slots)) : RUNNER_SLOTS;
}

static bool of_this_generation(uint64_t token, void *ud) {
    return generation_of(token) == ((const runner *)ud)->generation;
}

/* The run closed or changed: its attempts still in the host are cancelled
 * (their outcomes are dropped when they arrive). */
static void cancel_generation(runner *r) {
    if (r->slots) act_slots_cancel_where(r->slots, r->host, of_this_generation, r, true);
}

static bool on_heartbeat(void *ud, uint64_t token, const Payloads *details) {
    runner *r = ud;
    return r->slots && act_slots_beat(r->slots, token, details, true).cancel;
}

/* Takes an attempt out of the table: its last heartbeat details (owned by
 * the caller) and whether it was stopped for a missed heartbeat. The table
 * goes when empty: no activity thread can call back for this run then. */
static void slot_release(runner *r, uint64_t token, Payloads **details_out, bool *hb_timed_out) {
    act_slot_info info;
    bool held = r->slots && act_slots_release(r->slots, token, &info);
    *details_out = held ? info.details : NULL;
    *hb_timed_out = held && info.heartbeat_timed_out;
    if (r->slots && act_slots_used(r->slots) == 0) {
        act_slots_free(r->slots, NULL);
        r->slots = NULL;
    }
}

/* ------------------------------------------------------------ helpers */

/* Fault injection for the crash-safety tests: JORCH_FAULT=point[:n] kills
 * this process with SIGKILL the n-th time (default 1st) it reaches `point`,
 * exactly like `kill -9` at that instant. JORCH_FAULT=point[:n]:stop stops
 * it there instead (SIGSTOP), for a test to act while it is paused at that
 * instant and then continue it (SIGCONT). Unset in normal use. */
static void fault_point(const char *point) {
    static int hits = 0;
    const char *spec = getenv("JORCH_FAULT");
    if (!spec || !*spec) return;
    size_t n = strlen(point);
    if (strncmp(spec, point, n) != 0 || (spec[n] != '\0' && spec[n] != ':')) return;
    const char *rest = spec[n] == ':' ? spec + n + 1 : "";
    int want = isdigit((unsigned char)*rest) ? atoi(rest) : 1;
    bool stop = strcmp(rest + strspn(rest, "0123456789"), ":stop") == 0 || strcmp(rest, "stop") == 0;
    if (want < 1) want = 1;
    if (stop) {
        if (++hits == want) raise(SIGSTOP);
        return;
    }
    if (++hits >= want) raise(SIGKILL);
}

static ProtobufCMessage *msg_copy(const ProtobufCMessage *m) {
    if (!m) return NULL;
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(len ? len : 1);
    if (!b) return NULL;
    protobuf_c_message_pack(m, b);
    ProtobufCMessage *c = protobuf_c_message_unpack(m->descriptor, NULL, len, b);
    free(b);
    return c;
}
#define COPY(T, m) ((T *)msg_copy((const ProtobufCMessage *)(m)))

/* From the store's statement cache: hand back with store_release. */
static sqlite3_stmt *q_prep(runner *r, const char *sql, jerr *err) {
    sqlite3_stmt *st = store_prep(r->s, sql, err);
    if (!st) return NULL;
    sqlite3_bind_text(st, 1, r->run_id, -1, SQLITE_TRANSIENT);
    return st;
}

static int q_done(runner *r, sqlite3_stmt *st, const char *what, jerr *err) {
    if (!st) return -1;
    int rc = sqlite3_step(st);
    store_release(r->s, st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_db_error(r->s, what, err);
}

/* Every commit of the runner: only while this process still owns the run
 * (checked inside the transaction, so no other process can have taken it
 * between the check and the commit). */
static int runner_commit(runner *r, jerr *err) {
    if (store_lease_check(r->s, r->run_id, r->lease_gen, err) != 0) {
        store_rollback(r->s);
        return -1;
    }
    return store_commit(r->s, err);
}

/* ------------------------------------------------------------ commands -> events */

static void fill_retry_defaults(Temporal__Api__Common__V1__RetryPolicy **rpp) {
    /* Temporal's server-side defaults: 1s, x2, 100 x initial, unlimited */
    if (!*rpp) {
        *rpp = malloc(sizeof **rpp);
        if (!*rpp) return;
        temporal__api__common__v1__retry_policy__init(*rpp);
    }
    Temporal__Api__Common__V1__RetryPolicy *rp = *rpp;
    if (!rp->initial_interval) rp->initial_interval = pb_duration_new(NS);
    if (rp->backoff_coefficient < 1.0) rp->backoff_coefficient = 2.0;
    if (!rp->maximum_interval) {
        int64_t init = pb_duration_nanos(rp->initial_interval);
        rp->maximum_interval = pb_duration_new(init > INT64_MAX / 100 ? INT64_MAX : 100 * init);
    }
}

static int cmd_schedule_activity(runner *r, const Command *c, int64_t wft_completed, jerr *err) {
    const Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *ca =
        c->schedule_activity_task_command_attributes;
    Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *attrs =
        COPY(Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes, ca);
    if (!attrs) return jerr_oom(err, "scheduling an activity");
    fill_retry_defaults(&attrs->retry_policy);
    if (!attrs->start_to_close_timeout && attrs->schedule_to_close_timeout)
        attrs->start_to_close_timeout = COPY(Google__Protobuf__Duration, attrs->schedule_to_close_timeout);
    HistoryEvent *e = store_event_new(ET(ACTIVITY_TASK_SCHEDULED));
    Temporal__Api__History__V1__ActivityTaskScheduledEventAttributes *a = malloc(sizeof *a);
    if (!e || !a) {
        free(a);
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        protobuf_c_message_free_unpacked(&attrs->base, NULL);
        return jerr_oom(err, "scheduling an activity");
    }
    temporal__api__history__v1__activity_task_scheduled_event_attributes__init(a);
    e->attributes_case = EV_ATTR(ACTIVITY_TASK_SCHEDULED);
    e->activity_task_scheduled_event_attributes = a;
    a->activity_id = jstrdup(attrs->activity_id);
    a->activity_type = COPY(Temporal__Api__Common__V1__ActivityType, attrs->activity_type);
    a->task_queue = COPY(Temporal__Api__Taskqueue__V1__TaskQueue, attrs->task_queue);
    a->input = COPY(Payloads, attrs->input);
    a->schedule_to_close_timeout = COPY(Google__Protobuf__Duration, attrs->schedule_to_close_timeout);
    a->schedule_to_start_timeout = COPY(Google__Protobuf__Duration, attrs->schedule_to_start_timeout);
    a->start_to_close_timeout = COPY(Google__Protobuf__Duration, attrs->start_to_close_timeout);
    a->heartbeat_timeout = COPY(Google__Protobuf__Duration, attrs->heartbeat_timeout);
    a->retry_policy = COPY(Temporal__Api__Common__V1__RetryPolicy, attrs->retry_policy);
    a->workflow_task_completed_event_id = wft_completed;
    int64_t id = store_append(r->s, r->run_id, e, err);
    if (id < 0) {
        protobuf_c_message_free_unpacked(&attrs->base, NULL);
        return -1;
    }
    size_t len = protobuf_c_message_get_packed_size(&attrs->base);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        protobuf_c_message_free_unpacked(&attrs->base, NULL);
        return jerr_oom(err, "scheduling an activity");
    }
    protobuf_c_message_pack(&attrs->base, buf);
    protobuf_c_message_free_unpacked(&attrs->base, NULL);
    sqlite3_stmt *q = q_prep(r, "INSERT INTO activities(run_id,scheduled_event_id,attempt,state,ready_at,scheduled_at,attrs)"
                                " VALUES(?1,?2,1,0,?3,?3,?4)", err);
    if (!q) {
        free(buf);
        return -1;
    }
    int64_t now = store_run_now(r->s, r->run_id);
    sqlite3_bind_int64(q, 2, id);
    sqlite3_bind_int64(q, 3, now);
    sqlite3_bind_blob(q, 4, buf, (int)len, free);
    return q_done(r, q, "scheduling an activity", err);
}

static int append_simple(runner *r, HistoryEvent *e, jerr *err) {
    if (!e) return jerr_oom(err, "recording an event");
    return store_append(r->s, r->run_id, e, err) < 0 ? -1 : 0;
}

static int activity_canceled_now(runner *r, int64_t sched, int64_t cancel_req, jerr *err) {
    HistoryEvent *e = store_event_new(ET(ACTIVITY_TASK_CANCELED));
    Temporal__Api__History__V1__ActivityTaskCanceledEventAttributes *a = malloc(sizeof *a);
    if (!e || !a) {
        free(a);
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "cancelling an activity");
    }
    temporal__api__history__v1__activity_task_canceled_event_attributes__init(a);
    e->attributes_case = EV_ATTR(ACTIVITY_TASK_CANCELED);
    e->activity_task_canceled_event_attributes = a;
    a->scheduled_event_id = sched;
    a->latest_cancel_requested_event_id = cancel_req;
    a->identity = jstrdup("jorch");
    /* the details a Temporal server writes for an activity it cancels itself */
    static const char not_started[] = "\"ACTIVITY_ID_NOT_STARTED\"";
    a->details = payloads_new();
    Payload *p = payload_new_json(not_started, sizeof not_started - 1);
    if (!a->details || !p || payloads_add(a->details, p) != 0) {
        if (p) protobuf_c_message_free_unpacked(&p->base, NULL);
        protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "cancelling an activity");
    }
    if (append_simple(r, e, err) != 0) return -1;
    sqlite3_stmt *q = q_prep(r, "DELETE FROM activities WHERE run_id=?1 AND scheduled_event_id=?2", err);
    if (!q) return -1;
    sqlite3_bind_int64(q, 2, sched);
    return q_done(r, q, "cancelling an activity", err);
}

/* Cancelling an activity that has not started (never dispatched, or waiting
 * for its retry) ends it at once, as on a Temporal server: *not_started is
 * set and the caller writes ActivityTaskCanceled after all of the task's
 * command events (the server's order), then a new workflow task. */
static int cmd_request_cancel_activity(runner *r, const Command *c, int64_t wft_completed, int64_t *not_started,
                                       jerr *err) {
    *not_started = 0;
    int64_t sched = c->request_cancel_activity_task_command_attributes->scheduled_event_id;
    HistoryEvent *e = store_event_new(ET(ACTIVITY_TASK_CANCEL_REQUESTED));
    Temporal__Api__History__V1__ActivityTaskCancelRequestedEventAttributes *a = malloc(sizeof *a);
    if (!e || !a) {
        free(a);
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "cancelling an activity");
    }
    temporal__api__history__v1__activity_task_cancel_requested_event_attributes__init(a);
    e->attributes_case = EV_ATTR(ACTIVITY_TASK_CANCEL_REQUESTED);
    e->activity_task_cancel_requested_event_attributes = a;
    a->scheduled_event_id = sched;
    a->workflow_task_completed_event_id = wft_completed;
    int64_t req = store_append(r->s, r->run_id, e, err);
    if (req < 0) return -1;
    sqlite3_stmt *q = q_prep(r, "SELECT state FROM activities WHERE run_id=?1 AND scheduled_event_id=?2", err);
    if (!q) return -1;
    sqlite3_bind_int64(q, 2, sched);
    int state = -1;
    if (sqlite3_step(q) == SQLITE_ROW) state = sqlite3_column_int(q, 0);
    store_release(r->s, q);
    if (state == 0) { /* never started: cancelled at once, after the task's command events */
        *not_started = req;
        return 0;
    }
    if (state == 1) {
        q = q_prep(r, "UPDATE activities SET cancel_requested=?3 WHERE run_id=?1 AND scheduled_event_id=?2", err);
        if (!q) return -1;
        sqlite3_bind_int64(q, 2, sched);
        sqlite3_bind_int64(q, 3, req);
        if (q_done(r, q, "cancelling an activity", err) != 0) return -1;
        if (r->slots) act_slots_mark(r->slots, token_of(r, sched), true, false, false);
        act_host_cancel(r->host, token_of(r, sched));
    }
    return 0;
}

static int cmd_start_timer(runner *r, const Command *c, int64_t wft_completed, jerr *err) {
    const Temporal__Api__Command__V1__StartTimerCommandAttributes *ca = c->start_timer_command_attributes;
    HistoryEvent *e = store_event_new(ET(TIMER_STARTED));
    Temporal__Api__History__V1__TimerStartedEventAttributes *a = malloc(sizeof *a);
    if (!e || !a) {
        free(a);
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "starting a timer");
    }
    temporal__api__history__v1__timer_started_event_attributes__init(a);
    e->attributes_case = EV_ATTR(TIMER_STARTED);
    e->timer_started_event_attributes = a;
    a->timer_id = jstrdup(ca->timer_id);
    a->start_to_fire_timeout = COPY(Google__Protobuf__Duration, ca->start_to_fire_timeout);
    a->workflow_task_completed_event_id = wft_completed;
    int64_t dur = pb_duration_nanos(ca->start_to_fire_timeout);
    int64_t id = store_append(r->s, r->run_id, e, err);
    if (id < 0) return -1;
    sqlite3_stmt *q = q_prep(r, "INSERT OR REPLACE INTO timers(run_id,timer_id,started_event_id,fire_at) VALUES(?1,?2,?3,?4)", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 2, ca->timer_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 3, id);
    sqlite3_bind_int64(q, 4, store_run_now(r->s, r->run_id) + dur);
    char human[48];
    duration_human(dur, human, sizeof human);
    progress_routine(r, "timer %s started (%s)", ca->timer_id, human);
    return q_done(r, q, "starting a timer", err);
}

static int cmd_cancel_timer(runner *r, const Command *c, int64_t wft_completed, jerr *err) {
    const char *tid = c->cancel_timer_command_attributes->timer_id;
    sqlite3_stmt *q = q_prep(r, "SELECT started_event_id FROM timers WHERE run_id=?1 AND timer_id=?2", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 2, tid, -1, SQLITE_TRANSIENT);
    int64_t started = 0;
    if (sqlite3_step(q) == SQLITE_ROW) started = sqlite3_column_int64(q, 0);
    store_release(r->s, q);
    HistoryEvent *e = store_event_new(ET(TIMER_CANCELED));
    Temporal__Api__History__V1__TimerCanceledEventAttributes *a = malloc(sizeof *a);
    if (!e || !a) {
        free(a);
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "cancelling a timer");
    }
    temporal__api__history__v1__timer_canceled_event_attributes__init(a);
    e->attributes_case = EV_ATTR(TIMER_CANCELED);
    e->timer_canceled_event_attributes = a;
    a->timer_id = jstrdup(tid);
    a->started_event_id = started;
    a->workflow_task_completed_event_id = wft_completed;
    a->identity = jstrdup("jorch");
    if (append_simple(r, e, err) != 0) return -1;
    q = q_prep(r, "DELETE FROM timers WHERE run_id=?1 AND timer_id=?2", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 2, tid, -1, SQLITE_TRANSIENT);
    return q_done(r, q, "cancelling a timer", err);
}

static int cmd_marker(runner *r, const Command *c, int64_t wft_completed, jerr *err) {
    const Temporal__Api__Command__V1__RecordMarkerCommandAttributes *ca = c->record_marker_command_attributes;
    HistoryEvent *e = store_event_new(ET(MARKER_RECORDED));
    Temporal__Api__History__V1__MarkerRecordedEventAttributes *a = malloc(sizeof *a);
    if (!e || !a) {
        free(a);
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "recording a marker");
    }
    temporal__api__history__v1__marker_recorded_event_attributes__init(a);
    e->attributes_case = EV_ATTR(MARKER_RECORDED);
    e->marker_recorded_event_attributes = a;
    a->marker_name = jstrdup(ca->marker_name);
    a->workflow_task_completed_event_id = wft_completed;
    if (ca->n_details) {
        /* a marker missing details would replay differently: all or nothing */
        a->details = calloc(ca->n_details, sizeof *a->details);
        for (size_t i = 0; a->details && i < ca->n_details; i++) {
            Temporal__Api__History__V1__MarkerRecordedEventAttributes__DetailsEntry *d = malloc(sizeof *d);
            if (!d) break;
            temporal__api__history__v1__marker_recorded_event_attributes__details_entry__init(d);
            a->details[a->n_details++] = d;
            d->key = jstrdup(ca->details[i]->key);
            d->value = COPY(Payloads, ca->details[i]->value);
            if (!d->key || (ca->details[i]->value && !d->value)) break;
        }
        if (a->n_details != ca->n_details || !a->details[a->n_details - 1]->key) {
            protobuf_c_message_free_unpacked(&e->base, NULL);
            return jerr_oom(err, "recording a marker");
        }
    }
    return append_simple(r, e, err);
}

static int cmd_upsert(runner *r, const Command *c, int64_t wft_completed, jerr *err) {
    HistoryEvent *e = store_event_new(ET(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES));
    Temporal__Api__History__V1__UpsertWorkflowSearchAttributesEventAttributes *a = malloc(sizeof *a);
    if (!e || !a) {
        free(a);
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "upserting search attributes");
    }
    temporal__api__history__v1__upsert_workflow_search_attributes_event_attributes__init(a);
    e->attributes_case = EV_ATTR(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES);
    e->upsert_workflow_search_attributes_event_attributes = a;
    a->workflow_task_completed_event_id = wft_completed;
    a->search_attributes = COPY(Temporal__Api__Common__V1__SearchAttributes,
                                c->upsert_workflow_search_attributes_command_attributes->search_attributes);
    return append_simple(r, e, err);
}

static int close_run(runner *r, int status, jerr *err) {
    if (store_set_status(r->s, r->run_id, status, err) != 0) return -1;
    const char *cleanup[] = {"DELETE FROM timers WHERE run_id=?1", "DELETE FROM activities WHERE run_id=?1"};
    for (int i = 0; i < 2; i++)
        if (q_done(r, q_prep(r, cleanup[i], err), "closing a run", err) != 0) return -1;
    return 0;
}

static int cmd_close(runner *r, const Command *c, int64_t wft_completed, char *new_run_id, jerr *err) {
    HistoryEvent *e = NULL;
    int status = 0;
    switch (c->command_type) {
    case CT(COMPLETE_WORKFLOW_EXECUTION): {
        e = store_event_new(ET(WORKFLOW_EXECUTION_COMPLETED));
        Temporal__Api__History__V1__WorkflowExecutionCompletedEventAttributes *a = malloc(sizeof *a);
        if (!e || !a) break;
        temporal__api__history__v1__workflow_execution_completed_event_attributes__init(a);
        e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_COMPLETED);
        e->workflow_execution_completed_event_attributes = a;
        a->result = COPY(Payloads, c->complete_workflow_execution_command_attributes->result);
        a->workflow_task_completed_event_id = wft_completed;
        status = RUN_COMPLETED;
        break;
    }
    case CT(FAIL_WORKFLOW_EXECUTION): {
        e = store_event_new(ET(WORKFLOW_EXECUTION_FAILED));
        Temporal__Api__History__V1__WorkflowExecutionFailedEventAttributes *a = malloc(sizeof *a);
        if (!e || !a) break;
        temporal__api__history__v1__workflow_execution_failed_event_attributes__init(a);
        e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_FAILED);
        e->workflow_execution_failed_event_attributes = a;
        a->failure = COPY(Failure, c->fail_workflow_execution_command_attributes->failure);
        a->retry_state = TEMPORAL__API__ENUMS__V1__RETRY_STATE__RETRY_STATE_RETRY_POLICY_NOT_SET;
        a->workflow_task_completed_event_id = wft_completed;
        status = RUN_FAILED;
        break;
    }
    case CT(CANCEL_WORKFLOW_EXECUTION): {
        e = store_event_new(ET(WORKFLOW_EXECUTION_CANCELED));
        Temporal__Api__History__V1__WorkflowExecutionCanceledEventAttributes *a = malloc(sizeof *a);
        if (!e || !a) break;
        temporal__api__history__v1__workflow_execution_canceled_event_attributes__init(a);
        e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_CANCELED);
        e->workflow_execution_canceled_event_attributes = a;
        a->workflow_task_completed_event_id = wft_completed;
        status = RUN_CANCELED;
        break;
    }
    case CT(CONTINUE_AS_NEW_WORKFLOW_EXECUTION): {
        const Temporal__Api__Command__V1__ContinueAsNewWorkflowExecutionCommandAttributes *ca =
            c->continue_as_new_workflow_execution_command_attributes;
        if (uuid_random(new_run_id) != 0) return jerr_set(err, JERR_INTERNAL, "no randomness for a run id");
        e = store_event_new(ET(WORKFLOW_EXECUTION_CONTINUED_AS_NEW));
        Temporal__Api__History__V1__WorkflowExecutionContinuedAsNewEventAttributes *a = malloc(sizeof *a);
        if (!e || !a) break;
        temporal__api__history__v1__workflow_execution_continued_as_new_event_attributes__init(a);
        e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_CONTINUED_AS_NEW);
        e->workflow_execution_continued_as_new_event_attributes = a;
        a->new_execution_run_id = jstrdup(new_run_id);
        a->workflow_type = COPY(Temporal__Api__Common__V1__WorkflowType, ca->workflow_type);
        a->task_queue = COPY(Temporal__Api__Taskqueue__V1__TaskQueue, ca->task_queue);
        a->input = COPY(Payloads, ca->input);
        a->workflow_task_completed_event_id = wft_completed;
        a->initiator = TEMPORAL__API__ENUMS__V1__CONTINUE_AS_NEW_INITIATOR__CONTINUE_AS_NEW_INITIATOR_WORKFLOW;
        status = RUN_CONTINUED_AS_NEW;
        break;
    }
    default:
        return jerr_set(err, JERR_INTERNAL, "not a closing command");
    }
    if (!status) {
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "closing a run");
    }
    if (append_simple(r, e, err) != 0) return -1;
    return close_run(r, status, err);
}

/* Creates the run that continue-as-new asked for (same transaction). */
static int start_continued(runner *r, const char *new_run_id, jerr *err) {
    HistoryEvent **ev = NULL;
    size_t n = 0;
    if (store_history(r->s, r->run_id, 0, &ev, &n, err) != 0) return -1;
    const HistoryEvent *can = n ? ev[n - 1] : NULL;
    if (!can || can->event_type != ET(WORKFLOW_EXECUTION_CONTINUED_AS_NEW)) {
        store_events_free(ev, n);
        return jerr_set(err, JERR_INTERNAL, "continue-as-new event missing");
    }
    const Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *first =
        ev[0]->workflow_execution_started_event_attributes;
    sqlite3_stmt *q = q_prep(r, "INSERT INTO runs(run_id,workflow_id,workflow_type,task_queue,script_name,script_sha,status,"
                                "start_time,next_event_id,time_skip,skip_offset,activities_dir,seq,version_sha) SELECT ?2,"
                                "workflow_id,workflow_type,task_queue,script_name,script_sha,1,?3,1,time_skip,skip_offset,"
                                "activities_dir,(SELECT MAX(seq)+1 FROM runs),version_sha FROM runs WHERE run_id=?1", err);
    if (!q) {
        store_events_free(ev, n);
        return -1;
    }
    sqlite3_bind_text(q, 2, new_run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 3, time_now_nanos());
    if (q_done(r, q, "continuing as new", err) != 0) {
        store_events_free(ev, n);
        return -1;
    }
    /* this process goes on with the new run (a foreground `jorch run`): held
     * from this commit on, so the service never takes it in between */
    if (r->o->follow_continue_as_new && store_lease_hold_new(r->s, new_run_id, err) != 0) {
        store_events_free(ev, n);
        return -1;
    }
    /* the new run keeps the version: its modules too */
    q = q_prep(r, "INSERT INTO run_modules(run_id,name,chunkname,sha) SELECT ?2,name,chunkname,sha FROM run_modules "
                  "WHERE run_id=?1", err);
    if (!q) {
        store_events_free(ev, n);
        return -1;
    }
    sqlite3_bind_text(q, 2, new_run_id, -1, SQLITE_TRANSIENT);
    if (q_done(r, q, "continuing as new", err) != 0) {
        store_events_free(ev, n);
        return -1;
    }
    HistoryEvent *e = store_event_new(ET(WORKFLOW_EXECUTION_STARTED));
    Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *a =
        COPY(Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes, first);
    if (!e || !a) {
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        store_events_free(ev, n);
        return jerr_oom(err, "continuing as new");
    }
    e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_STARTED);
    e->workflow_execution_started_event_attributes = a;
    if (a->input) protobuf_c_message_free_unpacked(&a->input->base, NULL);
    a->input = COPY(Payloads, can->workflow_execution_continued_as_new_event_attributes->input);
    if (pb_str_replace(&a->continued_execution_run_id, r->run_id) != 0 ||
        pb_str_replace(&a->original_execution_run_id, new_run_id) != 0) {
        protobuf_c_message_free_unpacked(&e->base, NULL);
        store_events_free(ev, n);
        return jerr_oom(err, "continuing as new");
    }
    a->initiator = TEMPORAL__API__ENUMS__V1__CONTINUE_AS_NEW_INITIATOR__CONTINUE_AS_NEW_INITIATOR_WORKFLOW;
    store_events_free(ev, n);
    if (store_append(r->s, new_run_id, e, err) < 0) return -1;
    return store_schedule_wft(r->s, new_run_id, err);
}

/* ------------------------------------------------------------ workflow tasks */

static int load_engine(runner *r, jerr *err) {
    char *src = NULL, *name = NULL;
    size_t len = 0;
    if (store_script(r->s, r->run.script_sha, &name, &src, &len, err) != 0) return -1;
    store_module_ctx *mcp = &r->modules;
#define mc (*mcp)
    memset(&mc, 0, sizeof mc);
    mc.s = r->s;
    snprintf(mc.run_id, sizeof mc.run_id, "%s", r->run_id);
    snprintf(mc.script_dir, sizeof mc.script_dir, "%s", name);
    char *slash = strrchr(mc.script_dir, '/');
    if (slash) *slash = '\0';
    else snprintf(mc.script_dir, sizeof mc.script_dir, ".");
    engine_run_config cfg = {
        .script_name = name, .script_src = src, .script_len = len, .limits = engine_limits_default(),
        .finder = store_find_module, .finder_ud = mcp, .namespace_ = "default",
        .workflow_id = r->run.workflow_id, .run_id = r->run_id, .log_fn = wf_log, .log_ud = r,
    };
#undef mc
    r->eng = engine_run_new(&cfg, err);
    free(src);
    free(name);
    r->fed = 0;
    return r->eng ? 0 : -1;
}

static int convert_command_events(runner *r, Command **cmds, size_t n, int64_t wft_completed, char *new_run_id,
                                  int64_t *cancel_req, bool *closed, jerr *err) {
    for (size_t i = 0; i < n; i++) {
        const Command *c = cmds[i];
        int rc = 0;
        switch (c->command_type) {
        case CT(SCHEDULE_ACTIVITY_TASK): rc = cmd_schedule_activity(r, c, wft_completed, err); break;
        case CT(REQUEST_CANCEL_ACTIVITY_TASK):
            rc = cmd_request_cancel_activity(r, c, wft_completed, &cancel_req[i], err);
            break;
        case CT(START_TIMER): rc = cmd_start_timer(r, c, wft_completed, err); break;
        case CT(CANCEL_TIMER): rc = cmd_cancel_timer(r, c, wft_completed, err); break;
        case CT(RECORD_MARKER): rc = cmd_marker(r, c, wft_completed, err); break;
        case CT(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES): rc = cmd_upsert(r, c, wft_completed, err); break;
        case CT(COMPLETE_WORKFLOW_EXECUTION):
        case CT(FAIL_WORKFLOW_EXECUTION):
        case CT(CANCEL_WORKFLOW_EXECUTION):
        case CT(CONTINUE_AS_NEW_WORKFLOW_EXECUTION):
            rc = cmd_close(r, c, wft_completed, new_run_id, err);
            if (rc == 0) {
                *closed = true;
                return 0; /* nothing after a closing command counts */
            }
            break;
        default:
            rc = jerr_set(err, JERR_FAILED, "command %s is not supported by the embedded backend",
                          command_type_name(c->command_type));
        }
        if (rc != 0) return -1;
    }
    return 0;
}

/* Writes the events of one task's commands, in command order, then what
 * they caused (a Temporal server's order): ActivityTaskCanceled for each
 * activity cancelled before it started, then a new workflow task. A closing
 * command ends the list; the server then writes nothing it caused. */
static int convert_commands(runner *r, Command **cmds, size_t n, int64_t wft_completed, char *new_run_id,
                            jerr *err) {
    int64_t *cancel_req = n ? calloc(n, sizeof *cancel_req) : NULL;
    if (n && !cancel_req) return jerr_oom(err, "recording a workflow task's commands");
    bool closed = false, any = false;
    int rc = convert_command_events(r, cmds, n, wft_completed, new_run_id, cancel_req, &closed, err);
    for (size_t i = 0; rc == 0 && !closed && i < n; i++) {
        if (!cancel_req[i]) continue;
        rc = activity_canceled_now(r, cmds[i]->request_cancel_activity_task_command_attributes->scheduled_event_id,
                                   cancel_req[i], err);
        any = true;
    }
    free(cancel_req);
    if (rc == 0 && any) rc = store_schedule_wft(r->s, r->run_id, err);
    return rc;
}

static HistoryEvent *wft_event(int type, int64_t scheduled, int64_t started) {
    HistoryEvent *e = store_event_new(type);
    if (!e) return NULL;
    if (type == ET(WORKFLOW_TASK_STARTED)) {
        Temporal__Api__History__V1__WorkflowTaskStartedEventAttributes *a = malloc(sizeof *a);
        if (!a) goto oom;
        temporal__api__history__v1__workflow_task_started_event_attributes__init(a);
        e->attributes_case = EV_ATTR(WORKFLOW_TASK_STARTED);
        e->workflow_task_started_event_attributes = a;
        a->scheduled_event_id = scheduled;
        a->identity = jstrdup("jorch");
    } else if (type == ET(WORKFLOW_TASK_COMPLETED)) {
        Temporal__Api__History__V1__WorkflowTaskCompletedEventAttributes *a = malloc(sizeof *a);
        if (!a) goto oom;
        temporal__api__history__v1__workflow_task_completed_event_attributes__init(a);
        e->attributes_case = EV_ATTR(WORKFLOW_TASK_COMPLETED);
        e->workflow_task_completed_event_attributes = a;
        a->scheduled_event_id = scheduled;
        a->started_event_id = started;
        a->identity = jstrdup("jorch");
    } else {
        Temporal__Api__History__V1__WorkflowTaskFailedEventAttributes *a = malloc(sizeof *a);
        if (!a) goto oom;
        temporal__api__history__v1__workflow_task_failed_event_attributes__init(a);
        e->attributes_case = EV_ATTR(WORKFLOW_TASK_FAILED);
        e->workflow_task_failed_event_attributes = a;
        a->scheduled_event_id = scheduled;
        a->started_event_id = started;
        a->identity = jstrdup("jorch");
    }
    return e;
oom:
    protobuf_c_message_free_unpacked(&e->base, NULL);
    return NULL;
}

/* How long after its attempts-th failure in a row a workflow task runs
 * again: first, doubled per failure, at most STORE_TASK_RETRY_MAX (or first,
 * when that is longer); 0 when first is 0 (no automatic retry). */
static int64_t task_retry_delay(int64_t first, int attempts) {
    if (first <= 0) return 0;
    int64_t cap = first > STORE_TASK_RETRY_MAX ? first : STORE_TASK_RETRY_MAX;
    int64_t d = first;
    for (int i = 1; i < attempts && d < cap; i++) d = d > cap / 2 ? cap : d * 2;
    return d < cap ? d : cap;
}

/* Feeds the engine every committed event it has not seen, then (if a task is
 * pending) the in-memory started event; commits the task's outcome. */
static int run_workflow_task(runner *r, char *new_run_id, jerr *err) {
    if (!r->eng && load_engine(r, err) != 0) return -1;
    HistoryEvent **ev = NULL;
    size_t n = 0;
    /* the new events and the next event id from one snapshot; the id is
     * checked again inside the commit's transaction */
    if (store_begin_read(r->s, err) != 0) return -1;
    if (store_history(r->s, r->run_id, r->fed, &ev, &n, err) != 0) {
        store_rollback(r->s);
        return -1;
    }
    if (r->fed && store_version_changed(ev, n)) {
        /* jorch upgrade re-pinned the run: replay it all with the new version */
        store_events_free(ev, n);
        ev = NULL;
        n = 0;
        engine_run_free(r->eng);
        r->eng = NULL;
        if (store_run_find(r->s, r->run_id, &r->run, err) != 0 || load_engine(r, err) != 0 ||
            store_history(r->s, r->run_id, 0, &ev, &n, err) != 0) {
            store_rollback(r->s);
            return -1;
        }
    }
    int64_t next_id = store_next_event_id(r->s, r->run_id);
    store_rollback(r->s); /* ends the read */
    int64_t scheduled = 0;
    for (size_t i = n; i-- > 0;)
        if (ev[i]->event_type == ET(WORKFLOW_TASK_SCHEDULED)) {
            scheduled = ev[i]->event_id;
            break;
        }
    if (!scheduled) {
        HistoryEvent **all = NULL;
        size_t na = 0;
        if (store_history(r->s, r->run_id, 0, &all, &na, err) == 0) {
            for (size_t i = na; i-- > 0;)
                if (all[i]->event_type == ET(WORKFLOW_TASK_SCHEDULED)) {
                    scheduled = all[i]->event_id;
                    break;
                }
            store_events_free(all, na);
        }
    }
    /* A retry of a task that failed with nothing new since (the event
     * before its WorkflowTaskScheduled is the WorkflowTaskFailed, none
     * after it): as on Temporal, only the first failure in a row is
     * recorded, so a run failing for days does not grow its history. */
    bool repeat = false;
    for (size_t i = 0; i < n && next_id == scheduled + 1; i++)
        if (ev[i]->event_id == scheduled - 1) repeat = ev[i]->event_type == ET(WORKFLOW_TASK_FAILED);
    HistoryEvent *started = wft_event(ET(WORKFLOW_TASK_STARTED), scheduled, 0);
    HistoryEvent **batch = realloc(ev, (n + 1) * sizeof *batch);
    if (!started || !batch) {
        if (started) protobuf_c_message_free_unpacked(&started->base, NULL);
        store_events_free(batch ? batch : ev, n);
        return jerr_oom(err, "running a workflow task");
    }
    ev = batch;
    started->event_id = next_id;
    started->event_time = pb_timestamp_new(store_run_now(r->s, r->run_id));
    ev[n++] = started;
    engine_output out;
    int rc = engine_run_feed(r->eng, ev, n, &out, err);
    int64_t started_time = pb_timestamp_nanos(started->event_time);
    if (rc != 0) {
        jerr saved = *err;
        /* record the failure (Temporal: WorkflowTaskFailed, a new task scheduled) */
        store_events_free(ev, n);
        engine_run_free(r->eng);
        r->eng = NULL;
        if (store_begin(r->s, err) != 0) return -1;
        int attempts = r->task_attempts < INT_MAX ? r->task_attempts + 1 : INT_MAX;
        int64_t retry_at = task_retry_delay(r->o->task_retry_first, attempts);
        if (retry_at > 0) retry_at += time_now_nanos();
        if (repeat) {
            /* nothing to add to the history: the task stays scheduled */
            if (store_task_retry_set(r->s, r->run_id, attempts, retry_at, err) != 0 || runner_commit(r, err) != 0) {
                store_rollback(r->s);
                return -1;
            }
            r->task_attempts = attempts;
            r->task_retry_at = retry_at;
            *err = saved;
            err->code = JERR_FAILED;
            return -2;
        }
        HistoryEvent *st = wft_event(ET(WORKFLOW_TASK_STARTED), scheduled, 0);
        if (st) st->event_time = pb_timestamp_new(started_time);
        int64_t sid = st ? store_append(r->s, r->run_id, st, err) : -1;
        HistoryEvent *fe = wft_event(ET(WORKFLOW_TASK_FAILED), scheduled, sid);
        if (fe) {
            fe->workflow_task_failed_event_attributes->cause =
                out.failure == ENGINE_NONDETERMINISM
                    ? TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR
                    : TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE;
            Failure *f = malloc(sizeof *f);
            if (f) {
                temporal__api__failure__v1__failure__init(f);
                f->message = jstrdup(saved.msg);
                f->source = jstrdup("jorch");
                fe->workflow_task_failed_event_attributes->failure = f;
            }
        }
        store_clear_wft(r->s, r->run_id);
        if (sid < 0 && fe) {
            protobuf_c_message_free_unpacked(&fe->base, NULL);
            fe = NULL;
        }
        if (sid < 0 || !fe || store_append(r->s, r->run_id, fe, err) < 0 ||
            store_schedule_wft(r->s, r->run_id, err) != 0 ||
            store_task_retry_set(r->s, r->run_id, attempts, retry_at, err) != 0 || runner_commit(r, err) != 0) {
            store_rollback(r->s);
            return -1;
        }
        r->task_attempts = attempts;
        r->task_retry_at = retry_at;
        *err = saved;
        err->code = JERR_FAILED;
        return -2; /* task failed */
    }
    /* commit: started (exactly as fed), completed, command events */
    if (store_begin(r->s, err) != 0) {
        store_events_free(ev, n);
        return -1;
    }
    int64_t now_next = store_next_event_id(r->s, r->run_id);
    if (now_next != next_id) {
        /* only another writer can move it: this process lost the run, or the store is damaged */
        if (store_lease_check(r->s, r->run_id, r->lease_gen, err) == 0)
            jerr_set(err, JERR_BACKEND, "run %s: its history changed while a workflow task ran (next event %" PRId64
                     " expected, the store has %" PRId64 "); stopping without recording the task", r->run_id,
                     next_id, now_next);
        store_rollback(r->s);
        store_events_free(ev, n);
        engine_run_free(r->eng);
        r->eng = NULL;
        return -1;
    }
    ev[n - 1] = NULL; /* ownership of started moves to the store */
    store_clear_wft(r->s, r->run_id);
    /* the run made progress: a later failure starts the backoff afresh */
    if (r->task_attempts > 0 && store_task_retry_set(r->s, r->run_id, 0, 0, err) != 0) {
        store_rollback(r->s);
        store_events_free(ev, n);
        return -1;
    }
    int64_t sid = store_append(r->s, r->run_id, started, err);
    HistoryEvent *ce = wft_event(ET(WORKFLOW_TASK_COMPLETED), scheduled, sid);
    /* the runtime flags this task used first (as a worker sends them) */
    if (ce && engine_task_metadata(&out, &ce->workflow_task_completed_event_attributes->sdk_metadata, err) != 0) {
        protobuf_c_message_free_unpacked(&ce->base, NULL);
        ce = NULL;
    }
    int64_t cid = -1;
    if (sid > 0 && ce)
        cid = store_append(r->s, r->run_id, ce, err);
    else if (ce)
        protobuf_c_message_free_unpacked(&ce->base, NULL);
    if (cid < 0 || convert_commands(r, out.commands, out.n_commands, cid, new_run_id, err) != 0) {
        store_rollback(r->s);
        store_events_free(ev, n);
        engine_run_free(r->eng);
        r->eng = NULL;
        return -1;
    }
    if (new_run_id[0] && start_continued(r, new_run_id, err) != 0) {
        store_rollback(r->s);
        store_events_free(ev, n);
        return -1;
    }
    fault_point("task-before-commit");
    if (runner_commit(r, err) != 0) {
        store_rollback(r->s);
        store_events_free(ev, n);
        engine_run_free(r->eng);
        r->eng = NULL;
        return -1;
    }
    fault_point("task-after-commit");
    r->task_attempts = 0;
    r->task_retry_at = 0;
    r->fed = sid;
    store_events_free(ev, n);
    return 0;
}

/* ------------------------------------------------------------ activities */

typedef struct ready_activity {
    int64_t sched;
    int attempt;
    Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *attrs;
    Payloads *hb;
} ready_activity;

/* Starts every activity whose (re)try is due. The rows are read first and
 * the statement finished before anything is written: a write while a read
 * is open on the same connection would need a lock upgrade, which SQLite
 * refuses at once (no busy wait) when another process is writing. */
static int dispatch_ready(runner *r, jerr *err) {
    int64_t now = store_run_now(r->s, r->run_id);
    sqlite3_stmt *q = q_prep(r, "SELECT scheduled_event_id, attempt, attrs, heartbeat_details FROM activities"
                                " WHERE run_id=?1 AND state=0 AND ready_at<=?2 ORDER BY scheduled_event_id LIMIT 64", err);
    if (!q) return -1;
    sqlite3_bind_int64(q, 2, now);
    ready_activity ready[64];
    int n = 0, rc = 0;
    int room = free_slots(r); /* the rest wait (state 0) until attempts finish */
    if (room > 64) room = 64;
    while (n < room && sqlite3_step(q) == SQLITE_ROW) {
        ready_activity *ra = &ready[n];
        ra->sched = sqlite3_column_int64(q, 0);
        ra->attempt = sqlite3_column_int(q, 1);
        ra->attrs = temporal__api__command__v1__schedule_activity_task_command_attributes__unpack(
            NULL, (size_t)sqlite3_column_bytes(q, 2), sqlite3_column_blob(q, 2));
        ra->hb = sqlite3_column_type(q, 3) == SQLITE_BLOB
                     ? temporal__api__common__v1__payloads__unpack(NULL, (size_t)sqlite3_column_bytes(q, 3),
                                                                   sqlite3_column_blob(q, 3))
                     : NULL;
        n++;
        if (!ra->attrs) {
            rc = jerr_set(err, JERR_BACKEND, "store: activity %" PRId64 " cannot be decoded", ra->sched);
            break;
        }
    }
    store_release(r->s, q);
    if (rc == 0 && n > 0 && !r->slots && !(r->slots = act_slots_new(RUNNER_SLOTS, err))) rc = -1;
    if (rc == 0 && n > 0) {
        /* mark them started in one transaction, then hand them to the host
         * (not synced by itself: recovery marks started attempts ready again) */
        if (store_begin_nosync(r->s, err) != 0) {
            rc = -1;
        } else {
            for (int i = 0; i < n && rc == 0; i++) {
                sqlite3_stmt *u = q_prep(r, "UPDATE activities SET state=1, started_at=?3, last_heartbeat=?3"
                                            " WHERE run_id=?1 AND scheduled_event_id=?2", err);
                if (!u) {
                    rc = -1;
                    break;
                }
                sqlite3_bind_int64(u, 2, ready[i].sched);
                sqlite3_bind_int64(u, 3, now);
                rc = q_done(r, u, "starting an activity", err);
            }
            if (rc == 0 && runner_commit(r, err) != 0) rc = -1;
            if (rc != 0) store_rollback(r->s);
        }
    }
    for (int i = 0; i < n; i++) {
        ready_activity *ra = &ready[i];
        if (rc == 0) {
            act_task t = {
                .activity_type = ra->attrs->activity_type ? ra->attrs->activity_type->name : "",
                .activity_id = ra->attrs->activity_id, .workflow_id = r->run.workflow_id, .run_id = r->run_id,
                .workflow_type = r->run.workflow_type, .attempt = ra->attempt, .input = ra->attrs->input,
                .heartbeat_details = ra->hb,
                .start_to_close_ns = pb_duration_nanos(ra->attrs->start_to_close_timeout),
                .heartbeat_timeout_ns = pb_duration_nanos(ra->attrs->heartbeat_timeout), .token = token_of(r, ra->sched),
            };
            /* room was counted above, so the table has a free slot */
            if (act_slots_add(r->slots, t.token, NULL, 0) != 0) {
                rc = jerr_set(err, JERR_INTERNAL, "activity %" PRId64 " of run %s is already in the host",
                              ra->sched, r->run_id);
                break;
            }
            fault_point("activity-dispatch");
            if (act_host_submit(r->host, &t, err) != 0) {
                act_slots_release(r->slots, t.token, NULL);
                rc = -1;
            } else progress_routine(r, "activity %s (id %s) started, attempt %d", t.activity_type, t.activity_id, ra->attempt);
        }
        if (ra->attrs) protobuf_c_message_free_unpacked(&ra->attrs->base, NULL);
        if (ra->hb) protobuf_c_message_free_unpacked(&ra->hb->base, NULL);
    }
    return rc;
}

static bool type_listed(const Temporal__Api__Common__V1__RetryPolicy *rp, const char *type) {
    for (size_t i = 0; rp && type && i < rp->n_non_retryable_error_types; i++)
        if (strcmp(rp->non_retryable_error_types[i], type) == 0) return true;
    return false;
}

/* cancel_req: the ActivityTaskCancelRequested event id (0 if none), which
 * the server names in ActivityTaskCanceled. */
static int activity_final_event(runner *r, int64_t sched, int attempt, const act_outcome *o, int retry_state,
                                Payloads *hb_details, int64_t cancel_req, jerr *err) {
    HistoryEvent *st = store_event_new(ET(ACTIVITY_TASK_STARTED));
    Temporal__Api__History__V1__ActivityTaskStartedEventAttributes *sa = malloc(sizeof *sa);
    if (!st || !sa) {
        free(sa);
        if (st) protobuf_c_message_free_unpacked(&st->base, NULL);
        return jerr_oom(err, "recording an activity");
    }
    temporal__api__history__v1__activity_task_started_event_attributes__init(sa);
    st->attributes_case = EV_ATTR(ACTIVITY_TASK_STARTED);
    st->activity_task_started_event_attributes = sa;
    sa->scheduled_event_id = sched;
    sa->identity = jstrdup("jorch");
    sa->attempt = attempt;
    int64_t sid = store_append(r->s, r->run_id, st, err);
    if (sid < 0) return -1;
    HistoryEvent *e = NULL;
    if (o->kind == ACT_COMPLETED) {
        e = store_event_new(ET(ACTIVITY_TASK_COMPLETED));
        Temporal__Api__History__V1__ActivityTaskCompletedEventAttributes *a = malloc(sizeof *a);
        if (e && a) {
            temporal__api__history__v1__activity_task_completed_event_attributes__init(a);
            e->attributes_case = EV_ATTR(ACTIVITY_TASK_COMPLETED);
            e->activity_task_completed_event_attributes = a;
            a->result = COPY(Payloads, o->result);
            a->scheduled_event_id = sched;
            a->started_event_id = sid;
            a->identity = jstrdup("jorch");
        } else {
            free(a);
        }
    } else if (o->kind == ACT_CANCELED) {
        e = store_event_new(ET(ACTIVITY_TASK_CANCELED));
        Temporal__Api__History__V1__ActivityTaskCanceledEventAttributes *a = malloc(sizeof *a);
        if (e && a) {
            temporal__api__history__v1__activity_task_canceled_event_attributes__init(a);
            e->attributes_case = EV_ATTR(ACTIVITY_TASK_CANCELED);
            e->activity_task_canceled_event_attributes = a;
            a->details = COPY(Payloads, o->details ? o->details : hb_details);
            a->scheduled_event_id = sched;
            a->started_event_id = sid;
            a->latest_cancel_requested_event_id = cancel_req;
            a->identity = jstrdup("jorch");
        } else {
            free(a);
        }
    } else if (o->failure && o->failure->failure_info_case == FAILURE_INFO(TIMEOUT)) {
        e = store_event_new(ET(ACTIVITY_TASK_TIMED_OUT));
        Temporal__Api__History__V1__ActivityTaskTimedOutEventAttributes *a = malloc(sizeof *a);
        if (e && a) {
            temporal__api__history__v1__activity_task_timed_out_event_attributes__init(a);
            e->attributes_case = EV_ATTR(ACTIVITY_TASK_TIMED_OUT);
            e->activity_task_timed_out_event_attributes = a;
            a->failure = COPY(Failure, o->failure);
            a->scheduled_event_id = sched;
            a->started_event_id = sid;
            a->retry_state = retry_state;
        } else {
            free(a);
        }
    } else {
        e = store_event_new(ET(ACTIVITY_TASK_FAILED));
        Temporal__Api__History__V1__ActivityTaskFailedEventAttributes *a = malloc(sizeof *a);
        if (e && a) {
            temporal__api__history__v1__activity_task_failed_event_attributes__init(a);
            e->attributes_case = EV_ATTR(ACTIVITY_TASK_FAILED);
            e->activity_task_failed_event_attributes = a;
            a->failure = COPY(Failure, o->failure);
            a->scheduled_event_id = sched;
            a->started_event_id = sid;
            a->identity = jstrdup("jorch");
            a->retry_state = retry_state;
        } else {
            free(a);
        }
    }
    if (!e || e->attributes_case == TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES__NOT_SET) {
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "recording an activity");
    }
    if (append_simple(r, e, err) != 0) return -1;
    sqlite3_stmt *q = q_prep(r, "DELETE FROM activities WHERE run_id=?1 AND scheduled_event_id=?2", err);
    if (!q) return -1;
    sqlite3_bind_int64(q, 2, sched);
    if (q_done(r, q, "recording an activity", err) != 0) return -1;
    return store_schedule_wft(r->s, r->run_id, err);
}

/* Records an attempt's outcome: final events, or a retry per the policy. */
static int on_outcome(runner *r, act_outcome *o, jerr *err) {
    int64_t sched = sched_of(o->token);
    Payloads *hb = NULL;
    bool hb_timed_out = false;
    slot_release(r, o->token, &hb, &hb_timed_out);
    if (generation_of(o->token) != r->generation) {
        /* an attempt of an earlier run of the chain: that run is closed */
        if (hb) protobuf_c_message_free_unpacked(&hb->base, NULL);
        return 0;
    }
    Failure *hb_failure = NULL;
    if (hb_timed_out && o->kind != ACT_COMPLETED) {
        /* the backend stopped it for silence: a heartbeat timeout, as on Temporal */
        hb_failure = malloc(sizeof *hb_failure);
        Temporal__Api__Failure__V1__TimeoutFailureInfo *ti = malloc(sizeof *ti);
        if (!hb_failure || !ti) {
            free(hb_failure);
            free(ti);
            if (hb) protobuf_c_message_free_unpacked(&hb->base, NULL);
            return jerr_oom(err, "recording a heartbeat timeout");
        }
        temporal__api__failure__v1__failure__init(hb_failure);
        temporal__api__failure__v1__timeout_failure_info__init(ti);
        ti->timeout_type = TEMPORAL__API__ENUMS__V1__TIMEOUT_TYPE__TIMEOUT_TYPE_HEARTBEAT;
        ti->last_heartbeat_details = hb ? payloads_copy(hb) : NULL;
        hb_failure->failure_info_case = FAILURE_INFO(TIMEOUT);
        hb_failure->timeout_failure_info = ti;
        hb_failure->message = jstrdup("activity heartbeat timeout");
        hb_failure->source = jstrdup("jorch");
        if (o->failure) protobuf_c_message_free_unpacked(&o->failure->base, NULL);
        o->failure = hb_failure;
        o->kind = ACT_FAILED;
    }
    sqlite3_stmt *q = q_prep(r, "SELECT attempt, attrs, scheduled_at, cancel_requested FROM activities"
                                " WHERE run_id=?1 AND scheduled_event_id=?2", err);
    if (!q) goto fail;
    sqlite3_bind_int64(q, 2, sched);
    if (sqlite3_step(q) != SQLITE_ROW) {
        store_release(r->s, q);
        if (hb) protobuf_c_message_free_unpacked(&hb->base, NULL);
        return 0; /* the run closed or the activity was cancelled meanwhile */
    }
    int attempt = sqlite3_column_int(q, 0);
    Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *a =
        temporal__api__command__v1__schedule_activity_task_command_attributes__unpack(
            NULL, (size_t)sqlite3_column_bytes(q, 1), sqlite3_column_blob(q, 1));
    int64_t scheduled_at = sqlite3_column_int64(q, 2);
    int64_t cancel_req = sqlite3_column_int64(q, 3);
    bool cancel_requested = cancel_req != 0;
    store_release(r->s, q);
    if (!a) {
        jerr_set(err, JERR_BACKEND, "store: activity %" PRId64 " cannot be decoded", sched);
        goto fail;
    }
    const char *name = a->activity_type ? a->activity_type->name : "?";
    int64_t now = store_run_now(r->s, r->run_id);
    if (store_begin(r->s, err) != 0) {
        protobuf_c_message_free_unpacked(&a->base, NULL);
        goto fail;
    }
    int rc = 0;
    if (o->kind == ACT_COMPLETED) {
        progress_routine(r, "activity %s (id %s) completed", name, a->activity_id);
        rc = activity_final_event(r, sched, attempt, o, 0, hb, cancel_req, err);
    } else if (o->kind == ACT_CANCELED && cancel_requested) {
        progress(r, "activity %s (id %s) cancelled", name, a->activity_id);
        rc = activity_final_event(r, sched, attempt, o, 0, hb, cancel_req, err);
    } else {
        const Temporal__Api__Common__V1__RetryPolicy *rp = a->retry_policy;
        const Failure *f = o->failure;
        const char *type = f && f->failure_info_case == FAILURE_INFO(APPLICATION) ? f->application_failure_info->type : NULL;
        bool non_retryable = f && f->failure_info_case == FAILURE_INFO(APPLICATION) && f->application_failure_info->non_retryable;
        int retry_state = 0;
        /* in double, clamped before converting: a large coefficient or
         * interval must saturate, not wrap */
        double coef = rp && rp->backoff_coefficient >= 1.0 && isfinite(rp->backoff_coefficient)
                          ? rp->backoff_coefficient : 2.0;
        double dbackoff = (double)pb_duration_nanos(rp ? rp->initial_interval : NULL);
        for (int i = 1; i < attempt && dbackoff < 9e18; i++) dbackoff *= coef;
        int64_t maxi = pb_duration_nanos(rp ? rp->maximum_interval : NULL);
        if (maxi > 0 && dbackoff > (double)maxi) dbackoff = (double)maxi;
        double room_left = (double)(INT64_MAX - now) - 1e9;
        if (dbackoff > room_left) dbackoff = room_left;
        int64_t backoff = dbackoff > 0 ? (int64_t)dbackoff : 0;
        int64_t s2c = pb_duration_nanos(a->schedule_to_close_timeout);
        if (non_retryable || type_listed(rp, type))
            retry_state = TEMPORAL__API__ENUMS__V1__RETRY_STATE__RETRY_STATE_NON_RETRYABLE_FAILURE;
        else if (rp && rp->maximum_attempts > 0 && attempt >= rp->maximum_attempts)
            retry_state = TEMPORAL__API__ENUMS__V1__RETRY_STATE__RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED;
        else if (s2c > 0 && now + backoff >= scheduled_at + s2c)
            retry_state = TEMPORAL__API__ENUMS__V1__RETRY_STATE__RETRY_STATE_TIMEOUT;
        const char *msg = f && f->message ? f->message : "";
        if (retry_state) {
            progress(r, "activity %s (id %s) failed on attempt %d, not retried: %s", name, a->activity_id, attempt, msg);
            rc = activity_final_event(r, sched, attempt, o, retry_state, hb, cancel_req, err);
        } else {
            char human[48];
            duration_human(backoff, human, sizeof human);
            /* a missing activity is a deployment mistake: say how to fix it without ending the run */
            bool missing = type && strcmp(type, "ActivityNotFound") == 0;
            progress(r, "activity %s (id %s) failed on attempt %d, retrying in %s: %s%s%s%s", name, a->activity_id, attempt,
                     human, msg, missing ? ". Add it, or stop this process and 'jorch resume --activities DIR " : "",
                     missing ? r->run.workflow_id : "", missing ? "'" : "");
            /* an attempt that sent no heartbeat keeps the earlier details for the
             * next one, as Temporal's server does */
            sqlite3_stmt *u = q_prep(r, "UPDATE activities SET attempt=attempt+1, state=0, ready_at=?3, last_failure=?4,"
                                        " heartbeat_details=COALESCE(?5, heartbeat_details) WHERE run_id=?1 AND "
                                        "scheduled_event_id=?2", err);
            if (!u) rc = -1;
            else {
                sqlite3_bind_int64(u, 2, sched);
                sqlite3_bind_int64(u, 3, now + backoff);
                if (f) {
                    size_t len = protobuf_c_message_get_packed_size(&f->base);
                    uint8_t *b = malloc(len ? len : 1);
                    if (b) {
                        protobuf_c_message_pack(&f->base, b);
                        sqlite3_bind_blob(u, 4, b, (int)len, free);
                    }
                }
                if (hb) {
                    size_t len = protobuf_c_message_get_packed_size(&hb->base);
                    uint8_t *b = malloc(len ? len : 1);
                    if (b) {
                        protobuf_c_message_pack(&hb->base, b);
                        sqlite3_bind_blob(u, 5, b, (int)len, free);
                    }
                }
                rc = q_done(r, u, "retrying an activity", err);
            }
        }
    }
    protobuf_c_message_free_unpacked(&a->base, NULL);
    if (hb) protobuf_c_message_free_unpacked(&hb->base, NULL);
    fault_point("activity-before-commit");
    if (rc != 0 || runner_commit(r, err) != 0) {
        store_rollback(r->s);
        return -1;
    }
    return 0;
fail:
    if (hb) protobuf_c_message_free_unpacked(&hb->base, NULL);
    return -1;
}

/* Heartbeat timeouts: an attempt silent for longer than its heartbeat
 * timeout is cancelled and counts as a timeout. */
static int check_heartbeats(runner *r, jerr *err) {
    sqlite3_stmt *q = q_prep(r, "SELECT scheduled_event_id, attrs FROM activities WHERE run_id=?1 AND state=1", err);
    if (!q) return -1;
    int64_t wall = time_now_nanos();
    r->hb_due = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        int64_t sched = sqlite3_column_int64(q, 0);
        Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *a =
            temporal__api__command__v1__schedule_activity_task_command_attributes__unpack(
                NULL, (size_t)sqlite3_column_bytes(q, 1), sqlite3_column_blob(q, 1));
        if (!a) continue;
        int64_t hbt = pb_duration_nanos(a->heartbeat_timeout);
        protobuf_c_message_free_unpacked(&a->base, NULL);
        if (hbt <= 0) continue;
        int64_t at = 0;
        bool late = r->slots && act_slots_heartbeat_late(r->slots, token_of(r, sched), hbt, wall, &at);
        /* when to look again: a millisecond late, as waits are in whole milliseconds */
        if (at > 0 && (r->hb_due == 0 || at + 1000000 < r->hb_due)) r->hb_due = at + 1000000;
        if (late) {
            progress(r, "activity %" PRId64 " missed its heartbeat timeout; cancelling the attempt", sched);
            act_host_cancel(r->host, token_of(r, sched));
        }
    }
    store_release(r->s, q);
    return 0;
}

/* ------------------------------------------------------------ timers */

static int fire_due_timers(runner *r, jerr *err) {
    int64_t now = store_run_now(r->s, r->run_id);
    sqlite3_stmt *q = q_prep(r, "SELECT timer_id, started_event_id FROM timers WHERE run_id=?1 AND fire_at<=?2 ORDER BY fire_at, started_event_id", err);
    if (!q) return -1;
    sqlite3_bind_int64(q, 2, now);
    char ids[64][64];
    int64_t started[64];
    int n = 0;
    while (n < 64 && sqlite3_step(q) == SQLITE_ROW) {
        snprintf(ids[n], sizeof ids[n], "%s", (const char *)sqlite3_column_text(q, 0));
        started[n] = sqlite3_column_int64(q, 1);
        n++;
    }
    store_release(r->s, q);
    if (n == 0) return 0;
    if (store_begin(r->s, err) != 0) return -1;
    for (int i = 0; i < n; i++) {
        HistoryEvent *e = store_event_new(ET(TIMER_FIRED));
        Temporal__Api__History__V1__TimerFiredEventAttributes *a = malloc(sizeof *a);
        if (!e || !a) {
            free(a);
            if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
            store_rollback(r->s);
            return jerr_oom(err, "firing a timer");
        }
        temporal__api__history__v1__timer_fired_event_attributes__init(a);
        e->attributes_case = EV_ATTR(TIMER_FIRED);
        e->timer_fired_event_attributes = a;
        a->timer_id = jstrdup(ids[i]);
        a->started_event_id = started[i];
        sqlite3_stmt *d = q_prep(r, "DELETE FROM timers WHERE run_id=?1 AND timer_id=?2", err);
        if (d) sqlite3_bind_text(d, 2, ids[i], -1, SQLITE_TRANSIENT);
        if (append_simple(r, e, err) != 0 || q_done(r, d, "firing a timer", err) != 0) {
            store_rollback(r->s);
            return -1;
        }
        progress_routine(r, "timer %s fired", ids[i]);
    }
    fault_point("timer-before-commit");
    if (store_schedule_wft(r->s, r->run_id, err) != 0 || runner_commit(r, err) != 0) {
        store_rollback(r->s);
        return -1;
    }
    return n;
}

/* The next instant something is due (timer or activity retry), or 0. */
static int64_t next_due(runner *r) {
    int64_t t = 0;
    sqlite3_stmt *q = q_prep(r, "SELECT MIN(x) FROM (SELECT MIN(fire_at) AS x FROM timers WHERE run_id=?1"
                                " UNION ALL SELECT MIN(ready_at) FROM activities WHERE run_id=?1 AND state=0)", NULL);
    if (!q) return 0;
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL) t = sqlite3_column_int64(q, 0);
    store_release(r->s, q);
    return t;
}

static int count_running(runner *r) {
    int n = 0;
    sqlite3_stmt *q = q_prep(r, "SELECT COUNT(*) FROM activities WHERE run_id=?1 AND state=1", NULL);
    if (!q) return 0;
    if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int(q, 0);
    store_release(r->s, q);
    return n;
}

static bool inbox_empty(runner *r) {
    bool empty = true;
    sqlite3_stmt *q = q_prep(r, "SELECT 1 FROM inbox WHERE run_id=?1 LIMIT 1", NULL);
    if (!q) return true;
    if (sqlite3_step(q) == SQLITE_ROW) empty = false;
    store_release(r->s, q);
    return empty;
}

/* ------------------------------------------------------------ lease keeper */

static void *keeper_main(void *arg) {
    keeper *k = arg;
    pthread_mutex_lock(&k->mu);
    while (!k->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t t = (int64_t)until.tv_nsec + k->period_ns;
        until.tv_sec += (time_t)(t / NS);
        until.tv_nsec = (long)(t % NS);
        while (!k->stop && pthread_cond_timedwait(&k->cv, &k->mu, &until) != ETIMEDOUT) {
        }
        if (k->stop) break;
        char run_id[40];
        snprintf(run_id, sizeof run_id, "%s", k->run_id);
        int64_t gen = k->gen;
        pthread_mutex_unlock(&k->mu);
        jerr e = {0};
        int rc = store_lease_renew(k->s, run_id, gen, &e); /* transient failures: try again next period */
        pthread_mutex_lock(&k->mu);
        if (rc < 0) {
            k->failed = true;
            k->err = e;
            break;
        }
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

static int keeper_start(runner *r, jerr *err) {
    keeper *k = &r->keep;
    if (!k->s && store_open_peer(r->s, &k->s, err) != 0)
        return jerr_prefix(err, "cannot start renewing the lease of run %s", r->run_id);
    snprintf(k->run_id, sizeof k->run_id, "%s", r->run_id);
    k->gen = r->lease_gen;
    k->period_ns = store_lease_nanos() / 3;
    k->stop = k->failed = false;
    if (pthread_create(&k->thread, NULL, keeper_main, k) != 0)
        return jerr_set(err, JERR_INTERNAL, "cannot start a thread to renew the lease of run %s: %s", r->run_id,
                        strerror(errno));
    k->running = true;
    return 0;
}

static void keeper_stop(runner *r) {
    keeper *k = &r->keep;
    if (!k->running) return;
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    k->running = false;
}

/* -1 with the keeper's message once it found the run lost or the store damaged. */
static int keeper_check(runner *r, jerr *err) {
    keeper *k = &r->keep;
    pthread_mutex_lock(&k->mu);
    bool failed = k->failed;
    if (failed) *err = k->err;
    pthread_mutex_unlock(&k->mu);
    if (failed) store_check_files(r->s, NULL); /* this connection must not copy its log into a damaged file either */
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------ main loop */

/* Temporal's per-run history limits, with its defaults (limit.historyCount
 * and limit.historySize, .warn and .error). Past a warning limit: one line.
 * Past an error limit the run is terminated, with the reason a Temporal
 * server gives, through the inbox like `jorch terminate` (applied by the
 * loop at once). Checked after each workflow task, as the server checks
 * after each update. */
#define HISTORY_COUNT_WARN 10240
#define HISTORY_COUNT_ERROR 51200
#define HISTORY_SIZE_WARN (INT64_C(10) << 20)
#define HISTORY_SIZE_ERROR (INT64_C(50) << 20)

static int history_limits(runner *r, jerr *err) {
    store_run now;
    if (store_run_find(r->s, r->run_id, &now, err) != 0) return -1;
    if (now.status != RUN_RUNNING) return 0;
    int64_t count = 0, size = 0;
    if (store_history_size(r->s, r->run_id, &count, &size, err) != 0) return -1;
    const char *reason = NULL;
    if (count > HISTORY_COUNT_ERROR) reason = "Workflow history count exceeds limit.";
    else if (size > HISTORY_SIZE_ERROR) reason = "Workflow history size exceeds limit.";
    if (reason) {
        progress(r, "history limit: %" PRId64 " events, %.1f MiB, over Temporal's limit of %d events or 50 MiB; "
                 "terminating the run (use continue-as-new to keep long-lived workflows small)",
                 count, (double)size / 1048576.0, HISTORY_COUNT_ERROR);
        return store_inbox_add(r->s, r->run_id, INBOX_TERMINATE, NULL, NULL, reason, err);
    }
    if (count > HISTORY_COUNT_WARN && !r->warned_count) {
        r->warned_count = true;
        progress(r, "warning: the history has %" PRId64 " events; Temporal warns above %d and terminates the run "
                 "above %d (use continue-as-new)", count, HISTORY_COUNT_WARN, HISTORY_COUNT_ERROR);
    }
    if (size > HISTORY_SIZE_WARN && !r->warned_size) {
        r->warned_size = true;
        progress(r, "warning: the history is %.1f MiB; Temporal warns above 10 MiB and terminates the run above "
                 "50 MiB (use continue-as-new)", (double)size / 1048576.0);
    }
    return 0;
}

/* Each runner (and each run of a continue-as-new chain it follows) gets a
 * generation of its own, process-wide: tokens carry it, so an attempt that
 * finishes after its run moved on (or, in the service, for another run
 * sharing the activity host) is never taken for another run's. */
static uint32_t next_generation(void) {
    static _Atomic uint32_t counter;
    uint32_t g;
    do {
        g = (atomic_fetch_add(&counter, 1) + 1) & ((UINT32_C(1) << 24) - 1);
    } while (g == 0);
    return g;
}

uint32_t runner_token_generation(uint64_t token) { return generation_of(token); }
uint32_t runner_generation(const runner *r) { return r->generation; }
int64_t runner_lease_gen(const runner *r) { return r->lease_gen; }
const char *runner_run_id(const runner *r) { return r->run_id; }
const store_run *runner_run(const runner *r) { return &r->run; }
bool runner_has_engine(const runner *r) { return r->eng != NULL; }
size_t runner_engine_memory(const runner *r) { return r->eng ? engine_run_memory(r->eng) : 0; }
const cJSON *runner_status(const runner *r) { return r->wf_status; }
int runner_task_attempts(const runner *r) { return r->task_attempts; }
int64_t runner_task_retry_at(const runner *r) { return r->task_retry_at; }

void runner_evict(runner *r) {
    engine_run_free(r->eng);
    r->eng = NULL;
    r->fed = 0;
}

int runner_query(runner *r, const char *name, const Payloads *args, Payloads **answer, jerr *err) {
    if (!r->eng) return jerr_set(err, JERR_INTERNAL, "run %s has no live engine", r->run_id);
    return engine_run_query(r->eng, name, args, answer, err);
}

void runner_on_start(runner *r, uint64_t token) { on_start(r, token); }
bool runner_on_heartbeat(runner *r, uint64_t token, const Payloads *details) {
    return on_heartbeat(r, token, details);
}
void runner_act_log(runner *r, const char *activity_type, const char *line) { act_log(r, activity_type, line); }

/* Takes the run: its lease (kept by a thread of this runner's own unless
 * the service renews it), and attempts that were in flight when an
 * earlier process died are made ready to run again. 1: the run is not
 * running (nothing taken). */
int runner_open(runner *r, jerr *err) {
    /* between a run's creation (or its predecessor's continue-as-new) and
     * this runner's lease: where another executor could take it */
    fault_point("runner-open");
    r->generation = next_generation();
    if (store_run_find(r->s, r->run_id, &r->run, err) != 0) return -1;
    if (r->run.status != RUN_RUNNING) return 1;
    if (store_lease_acquire(r->s, r->run_id, &r->lease_gen, err) != 0) return -1;
    r->leased = true;
    store_task_retry_get(r->s, r->run_id, &r->task_attempts, &r->task_retry_at);
    int rc = r->service ? 0 : keeper_start(r, err);
    if (rc == 0 && count_running(r) == 0) {
        /* nothing in flight: no transaction needed */
    } else if (rc == 0 && store_begin_nosync(r->s, err) == 0) {
        /* attempts in flight when an earlier process died run again */
        if (q_done(r, q_prep(r, "UPDATE activities SET state=0 WHERE run_id=?1 AND state=1", err),
                   "recovering activities", err) != 0 || runner_commit(r, err) != 0) {
            store_rollback(r->s);
            rc = -1;
        }
    } else {
        rc = -1;
    }
    if (rc == 0 && r->tty && !r->o->quiet && !store_wft_pending(r->s, r->run_id)) {
        /* resumed while the workflow waits: its status from a replay */
        jerr ignore = {0};
        int64_t since = 0;
        cJSON *st = store_replay_status(r->s, &r->run, &since, &ignore);
        if (st) {
            cJSON_Delete(r->wf_status);
            r->wf_status = st;
            store_waiting_key(st, r->waiting, sizeof r->waiting);
            r->waiting_since = since;
        }
    }
    return rc;
}

/* Lets the run go: its attempts still in the host are cancelled, the
 * lease keeper stops and the lease is released. */
void runner_close(runner *r) {
    cancel_generation(r);
    keeper_stop(r);
    if (r->leased) store_lease_release(r->s, r->run_id, r->lease_gen);
    r->leased = false;
}

/* Does everything the run can do now without waiting: applies requests
 * from other processes, runs a pending workflow task, starts activities
 * whose (re)try is due, fires due timers, checks heartbeats, skips time in
 * time-skipping mode. Returns RUNNER_WAITING with what it waits for in *w,
 * RUNNER_CLOSED when the run is no longer running, -2 when a workflow task
 * failed (stop_on_task_failure; err says why), -1 on errors. */
int runner_step(runner *r, char *new_run_id, runner_wait *w, jerr *err) {
    memset(w, 0, sizeof *w);
    for (;;) {
        if (!r->service && keeper_check(r, err) != 0) return -1;
        if (!inbox_empty(r)) {
            if (store_begin(r->s, err) != 0) return -1;
            int applied = store_apply_inbox(r->s, r->run_id, err);
            /* a request is something new: a task that fails after it starts the backoff afresh */
            bool reset = applied > 0 && r->task_attempts > 0;
            if (reset && store_task_retry_set(r->s, r->run_id, 0, 0, err) != 0) applied = -1;
            fault_point("inbox-before-commit");
            if (applied < 0 || runner_commit(r, err) != 0) {
                store_rollback(r->s);
                return -1;
            }
            if (reset) {
                r->task_attempts = 0;
                r->task_retry_at = 0;
            }
            if (applied > 0) progress(r, "%d request%s from other processes applied", applied, applied == 1 ? "" : "s");
        }
        if (store_run_find(r->s, r->run_id, &r->run, err) != 0) return -1;
        if (r->run.status != RUN_RUNNING) return RUNNER_CLOSED;
        if (store_wft_pending(r->s, r->run_id)) {
            /* auto_upgrade scripts: a newer version that replays is queued
             * now and applied (and replayed) before this task runs */
            char said[1200];
            int moved = store_version_auto(r->s, r->run_id, said, sizeof said, err);
            if (said[0]) progress(r, "%s", said);
            if (moved < 0) return -1;
            if (moved > 0) continue;
            int t = run_workflow_task(r, new_run_id, err);
            if (t == -2) {
                if (r->task_retry_at > 0) {
                    /* one line per attempt, with when the next comes */
                    char at[16];
                    store_clock_text(r->task_retry_at, at, sizeof at);
                    progress(r, "workflow task failed (attempt %d; tried again at %s, in %.0f s): %s",
                             r->task_attempts, at, (double)(r->task_retry_at - time_now_nanos()) / NS, err->msg);
                } else {
                    progress(r, "workflow task failed: %s", err->msg);
                }
                if (r->o->stop_on_task_failure) return -2;
                continue;
            }
            if (t != 0) return -1;
            if (history_limits(r, err) != 0) return -1;
            refresh_status(r);
            continue;
        }
        if (dispatch_ready(r, err) != 0 || fire_due_timers(r, err) < 0 || check_heartbeats(r, err) != 0) return -1;
        if (store_wft_pending(r->s, r->run_id)) continue;
        int running = count_running(r);
        int64_t due = next_due(r);
        if (running == 0 && r->run.time_skip && due > 0 && inbox_empty(r)) {
            /* time skipping: nothing else can happen before the next deadline */
            int64_t now = store_run_now(r->s, r->run_id);
            if (due > now && (store_begin(r->s, err) != 0 || store_skip_time(r->s, r->run_id, due - now, err) != 0 ||
                              runner_commit(r, err) != 0)) {
                store_rollback(r->s);
                return -1;
            }
            continue;
        }
        w->running = running;
        w->due = due;
        /* the same instant on the wall clock (the run's clock may be skipped ahead) */
        int64_t wall_due = due > 0 ? due - (store_run_now(r->s, r->run_id) - time_now_nanos()) : 0;
        if (r->hb_due > 0 && (wall_due == 0 || r->hb_due < wall_due)) wall_due = r->hb_due;
        if (running > 0 && free_slots(r) == 0 && (wall_due == 0 || wall_due > time_now_nanos() + 100000000))
            wall_due = time_now_nanos() + 100000000; /* attempts wait for a slot: look again soon */
        w->wall_due = wall_due;
        return RUNNER_WAITING;
    }
}

int runner_outcome(runner *r, act_outcome *o, jerr *err) { return on_outcome(r, o, err); }

static int execute_one(runner *r, char *new_run_id, jerr *err) {
    int rc = runner_open(r, err);
    if (rc == 1) return 0;
    while (rc == 0) {
        runner_wait w;
        int st = runner_step(r, new_run_id, &w, err);
        if (st == RUNNER_CLOSED) break;
        if (st != RUNNER_WAITING) {
            rc = st;
            break;
        }
        status_draw(r, w.running, w.due);
        act_outcome o;
        memset(&o, 0, sizeof o);
        int wait_ms = 50;
        if (act_host_wait(r->host, wait_ms, &o) == 1) {
            int orc = on_outcome(r, &o, err);
            act_outcome_clear(&o);
            if (orc != 0) {
                rc = -1;
                break;
            }
        }
    }
    runner_close(r);
    return rc;
}

runner *runner_new(store *s, const store_runner_opts *o, const char *run_id, act_host *shared, jerr *err) {
    static const store_runner_opts dflt = {0};
    runner *r = calloc(1, sizeof *r);
    if (!r) {
        jerr_oom(err, "starting a run");
        return NULL;
    }
    r->s = s;
    r->o = o ? o : &dflt;
    snprintf(r->run_id, sizeof r->run_id, "%s", run_id);
    pthread_mutex_init(&r->keep.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->keep.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (shared) {
        /* the service: one host for many runs, leases renewed for all at once, output to the run's log */
        r->service = true;
        r->host = shared;
        return r;
    }
    const char *term = getenv("TERM");
    r->tty = isatty(2) && !(term && strcmp(term, "dumb") == 0);
    if (r->o->log_file) runlog_configure(r->o->log_file);
    /* JORCH_PROGRESS=tty|plain forces the terminal or the plain form (tests,
     * terminals that isatty cannot see) */
    const char *pm = getenv("JORCH_PROGRESS");
    if (pm && strcmp(pm, "tty") == 0) r->tty = true;
    if (pm && strcmp(pm, "plain") == 0) r->tty = false;
    act_host_config hc = {.activities_dir = r->o->activities_dir, .threads = r->o->threads,
                          .on_heartbeat = on_heartbeat, .ud = r, .config_json = r->o->config_json,
                          .log_fn = act_log, .on_start = on_start};
    r->host = act_host_new(&hc, err);
    if (!r->host) {
        runner_free(r);
        return NULL;
    }
    return r;
}

void runner_set_log(runner *r, const char *path) {
    snprintf(r->log_path, sizeof r->log_path, "%s", path ? path : "");
}

void runner_free(runner *r) {
    if (!r) return;
    pthread_mutex_lock(&out_mu);
    status_clear_locked(r);
    pthread_mutex_unlock(&out_mu);
    engine_run_free(r->eng);
    cJSON_Delete(r->wf_status);
    if (r->host && !r->service) act_host_free(r->host);
    store_close(r->keep.s);
    pthread_cond_destroy(&r->keep.cv);
    pthread_mutex_destroy(&r->keep.mu);
    act_slots_free(r->slots, NULL);
    free(r);
}

int store_runner_execute(store *s, const char *run_id, const store_runner_opts *o, store_run *final, jerr *err) {
    if (store_lease_nanos() < 0)
        return jerr_set(err, JERR_USAGE, "JORCH_LEASE_SECONDS must be a whole number of seconds from 1 to 86400 "
                        "(got '%s')", getenv("JORCH_LEASE_SECONDS"));
    runner *r = runner_new(s, o, run_id, NULL, err);
    int rc = r ? 0 : -1;
    while (rc == 0) {
        char new_run_id[40] = "";
        rc = execute_one(r, new_run_id, err);
        engine_run_free(r->eng);
        r->eng = NULL;
        if (rc != 0) break;
        if (store_run_find(s, r->run_id, &r->run, err) != 0) {
            rc = -1;
            break;
        }
        if (final) *final = r->run;
        if (r->run.status == RUN_CONTINUED_AS_NEW && new_run_id[0] && r->o->follow_continue_as_new) {
            progress(r, "continued as new run %s", new_run_id);
            snprintf(r->run_id, sizeof r->run_id, "%s", new_run_id);
            continue;
        }
        if (r->run.status == RUN_CONTINUED_AS_NEW && r->o->follow_continue_as_new) {
            /* the new run id is in the event; find the newest run of the workflow */
            store_run nr;
            if (store_run_find(s, r->run.workflow_id, &nr, err) == 0 && strcmp(nr.run_id, r->run_id) != 0) {
                snprintf(r->run_id, sizeof r->run_id, "%s", nr.run_id);
                continue;
            }
        }
        break;
    }
    if (final && rc != 0 && r) store_run_find(s, r->run_id, final, NULL);
    runner_free(r);
    return rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ waiting */

int store_wait_closed(store *s, const char *id, int64_t timeout_ms, HistoryEvent **close_event, jerr *err) {
    *close_event = NULL;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : time_now_nanos() + timeout_ms * 1000000;
    char cur[256];
    snprintf(cur, sizeof cur, "%s", id);
    for (;;) {
        store_run r;
        if (store_check_files(s, err) != 0 || store_run_find(s, cur, &r, err) != 0) return -1;
        if (r.status != RUN_RUNNING) {
            HistoryEvent **ev = NULL;
            size_t n = 0;
            if (store_history(s, r.run_id, r.history_length - 1, &ev, &n, err) != 0) return -1;
            HistoryEvent *last = NULL;
            for (size_t i = 0; i < n; i++) {
                int t = ev[i]->event_type;
                if (t == ET(WORKFLOW_EXECUTION_COMPLETED) || t == ET(WORKFLOW_EXECUTION_FAILED) ||
                    t == ET(WORKFLOW_EXECUTION_CANCELED) || t == ET(WORKFLOW_EXECUTION_TERMINATED) ||
                    t == ET(WORKFLOW_EXECUTION_TIMED_OUT) || t == ET(WORKFLOW_EXECUTION_CONTINUED_AS_NEW)) {
                    last = ev[i];
                }
            }
            if (last && last->event_type == ET(WORKFLOW_EXECUTION_CONTINUED_AS_NEW)) {
                snprintf(cur, sizeof cur, "%s", last->workflow_execution_continued_as_new_event_attributes->new_execution_run_id);
                store_events_free(ev, n);
                continue;
            }
            if (!last) {
                store_events_free(ev, n);
                return jerr_set(err, JERR_BACKEND, "run %s is closed but has no close event", r.run_id);
            }
            for (size_t i = 0; i < n; i++)
                if (ev[i] == last) ev[i] = NULL;
            store_events_free(ev, n);
            *close_event = last;
            return 0;
        }
        if (time_now_nanos() > deadline)
            return jerr_set(err, JERR_FAILED, "workflow '%s' is still running", id);
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}
