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

/* `jorch activity NAME [JSON-ARG...]`: runs one activity once, in this
 * process, and prints its result as JSON (a debugging aid). */
int act_cli_main(int argc, char **argv);

#endif
