/*
 * activity.h - the public face of runtime/activity: the activity host.
 *
 * Activities are functions in activities/NAME.lua modules (each file returns a
 * table of name -> function). They are trusted: they run outside the
 * workflow sandbox, in their own Lua states, on a small thread pool, with a
 * C toolkit (jorch.http, jorch.json, jorch.exec, jorch.fs) and the
 * `activity` object (heartbeat, info, error). Backends hand the host one
 * attempt at a time and collect outcomes; retries are the backend's job.
 */
#ifndef JORCH_ACTIVITY_H
#define JORCH_ACTIVITY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"
#include "temporal/api/failure/v1/message.pb-c.h"

typedef struct act_host act_host;

/* One attempt of one activity. The host copies what it needs. */
typedef struct act_task {
    const char *activity_type;     /* "fetchIssue", or "jira.fetchIssue" to name the module */
    const char *activity_id;
    const char *workflow_id;
    const char *run_id;
    const char *workflow_type;
    int32_t attempt;               /* from 1 */
    const Temporal__Api__Common__V1__Payloads *input;
    const Temporal__Api__Common__V1__Payloads *heartbeat_details; /* from an earlier attempt, or NULL */
    int64_t start_to_close_ns;     /* 0: none; the host enforces it */
    int64_t heartbeat_timeout_ns;  /* 0: none; the backend enforces it from heartbeats */
    uint64_t token;                /* backend's id for this attempt, echoed in callbacks */
} act_task;

enum { ACT_COMPLETED = 1, ACT_FAILED = 2, ACT_CANCELED = 3 };

typedef struct act_outcome {
    uint64_t token;
    int kind;                                     /* ACT_* */
    Temporal__Api__Common__V1__Payloads *result;  /* ACT_COMPLETED (may be NULL for no result) */
    Temporal__Api__Failure__V1__Failure *failure; /* ACT_FAILED: application_failure_info has
                                                     type and non_retryable; a start-to-close
                                                     overrun is a timeout_failure_info */
    Temporal__Api__Common__V1__Payloads *details; /* ACT_CANCELED: last heartbeat details */
} act_outcome;

/* Called on a worker thread at each activity.heartbeat(details); details is
 * owned by the host (copy it to keep it). Return true when cancellation of
 * this attempt was requested: the activity then observes it (heartbeat
 * raises a CancelledError; a running jorch.exec child is killed). */
typedef bool (*act_heartbeat_fn)(void *ud, uint64_t token,
                                 const Temporal__Api__Common__V1__Payloads *details);

typedef struct act_host_config {
    const char *activities_dir;   /* default "activities" */
    int threads;                  /* default 4 */
    act_heartbeat_fn on_heartbeat;
    void *ud;
    /* Where activity log lines go (activity.log); NULL: stderr. Never
     * called with secrets by jorch itself. */
    void (*log_fn)(void *ud, const char *activity_type, const char *line);
    /* Called on the worker thread when an attempt actually starts running
     * (it may wait in the queue before that); NULL: not called. */
    void (*on_start)(void *ud, uint64_t token);
    /* jorch.yaml as JSON text (plus "home"), seen by activities as the
     * table jorch.config; NULL: jorch.config is nil. Copied. */
    const char *config_json;
    /* Like log_fn, with the attempt's token (a host shared by many runs
     * routes the line to its run); used instead of log_fn when set. */
    void (*log_token_fn)(void *ud, uint64_t token, const char *activity_type, const char *line);
    /* When > 0: a byte is written to this file descriptor (a pipe's
     * non-blocking write end) each time an outcome is queued, so an event
     * loop can poll() for outcomes instead of waiting in act_host_wait. */
    int wake_fd;
} act_host_config;

act_host *act_host_new(const act_host_config *cfg, jerr *err);
/* Stops accepting tasks, cancels running ones, joins the threads. */
void act_host_free(act_host *h);

/* Queues one attempt. Fails only on bad arguments or out of memory. */
int act_host_submit(act_host *h, const act_task *task, jerr *err);

/* Requests cancellation of a running or queued attempt (seen at its next
 * heartbeat; a queued one completes as ACT_CANCELED without running). */
void act_host_cancel(act_host *h, uint64_t token);

/* Waits up to timeout_ms (<0: forever, 0: don't wait) for a finished
 * attempt. Returns 1 and fills *out, or 0 on timeout. Free the outcome's
 * messages with act_outcome_clear. */
int act_host_wait(act_host *h, int timeout_ms, act_outcome *out);
void act_outcome_clear(act_outcome *o);

/* Number of attempts queued or running. */
int act_host_busy(act_host *h);

/* True if `name` resolves to a function in the activities directory
 * (used to fail fast with "unknown activity 'x'"). */
bool act_host_has(act_host *h, const char *name);

/* ---------------------------------------------- attempt bookkeeping */

/* What a backend keeps about each attempt it handed to the host, between
 * act_host_submit and the outcome: a bounded table keyed by the attempt's
 * token, under a lock of its own, so the host's threads (on_start,
 * on_heartbeat) and the backend's (dispatch, outcomes, cancellation) share
 * it safely. `jorch worker` (tc_worker.c) keeps one for the worker, the
 * embedded runner (runner.c) one per run; its capacity is the number of
 * attempts the backend lets run at once. */
typedef struct act_slots act_slots;

typedef struct act_slot_info {
    uint64_t token;
    void *task;                  /* the backend's own record of the attempt */
    bool started;                /* a host thread picked it up (act_slots_started) */
    int64_t last_beat_ns;        /* monotonic time of its start or last heartbeat */
    Temporal__Api__Common__V1__Payloads *details; /* last heartbeat details, if kept */
    bool cancel_requested;       /* the backend asked for cancellation */
    bool gone;                   /* the backend no longer knows the attempt (timed out) */
    bool heartbeat_timed_out;    /* cancelled because its heartbeats stopped */
} act_slot_info;

act_slots *act_slots_new(size_t capacity, jerr *err);
/* free_task (may be NULL) frees the task of each attempt still held. */
void act_slots_free(act_slots *s, void (*free_task)(void *task));
size_t act_slots_capacity(const act_slots *s);
size_t act_slots_used(act_slots *s);
/* Records a new attempt. send_interval_ns paces the heartbeats a backend
 * forwards (act_slots_beat). -1 when the table is full or the token held. */
int act_slots_add(act_slots *s, uint64_t token, void *task, int64_t send_interval_ns);
/* A host thread started the attempt (act_host_config.on_start). */
void act_slots_started(act_slots *s, uint64_t token);

/* One activity.heartbeat of a held attempt: recorded (details copied when
 * keep_details), and whether the backend should forward it now (the first
 * always, then at most once per send interval) and whether the attempt is
 * to stop. known is false for a token not held. */
typedef struct act_beat {
    bool known, send, cancel;
    void *task;
} act_beat;
act_beat act_slots_beat(act_slots *s, uint64_t token, const Temporal__Api__Common__V1__Payloads *details,
                        bool keep_details);
/* Marks an attempt: cancellation requested, gone, or cancelled for a missed
 * heartbeat (each only ever set). Returns false for a token not held. */
bool act_slots_mark(act_slots *s, uint64_t token, bool cancel_requested, bool gone, bool heartbeat_timed_out);
/* Whether a started attempt's last heartbeat is older than timeout_ns at
 * now_ns; if so it is marked cancelled for a missed heartbeat (true once).
 * Otherwise *next_ns (may be NULL) is when to look again: one timeout
 * after its last beat, or after now for an attempt not started yet; 0 for
 * a token not held or already cancelled. */
bool act_slots_heartbeat_late(act_slots *s, uint64_t token, int64_t timeout_ns, int64_t now_ns, int64_t *next_ns);
/* Asks the host to cancel every held attempt for which keep (NULL: all)
 * says so; mark also marks each as cancellation requested (a cancellation
 * the backend reports, rather than abandoning the attempt). */
void act_slots_cancel_where(act_slots *s, act_host *h, bool (*keep)(uint64_t token, void *ud), void *ud,
                            bool mark);
/* Takes the attempt out of the table: its record (details now owned by the
 * caller) in *out. false for a token not held. */
bool act_slots_release(act_slots *s, uint64_t token, act_slot_info *out);

/* `jorch activity NAME [JSON-ARG...]`: runs one activity once, in this
 * process, and prints its result as JSON (a debugging aid). */
int act_cli_main(int argc, char **argv);

#endif
