/*
 * store.h - the public face of runtime/store: the embedded backend.
 *
 * A single-node history service on SQLite (WAL, synchronous=FULL): it
 * writes the same Temporal HistoryEvents a Temporal server would, with the
 * same semantics (workflow tasks, activity retries decided server-side,
 * timers, signals, cancel and terminate, continue-as-new), so its histories
 * replay anywhere. The runner (store_runner_*) drives one workflow
 * execution: engine + activity host + store, each state change committed in
 * one transaction.
 */
#ifndef JORCH_STORE_H
#define JORCH_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"
#include "temporal/api/workflowservice/v1/request_response.pb-c.h"

typedef struct store store;

#define STORE_SCHEMA_VERSION 6 /* = the last entry of migrations[] in store.c */

/* Opens (creating if needed) the store in directory `home` ($JORCH_HOME,
 * default ".jorch"). Errors: missing parent directory, unwritable or corrupt
 * database, a schema written by a newer jorch. */
int store_open(const char *home, store **out, jerr *err);
void store_close(store *s);
const char *store_home(const store *s);

/* Workflow execution status, Temporal's numbering (WorkflowExecutionStatus). */
enum { RUN_RUNNING = 1, RUN_COMPLETED = 2, RUN_FAILED = 3, RUN_CANCELED = 4, RUN_TERMINATED = 5,
       RUN_CONTINUED_AS_NEW = 6, RUN_TIMED_OUT = 7 };
const char *store_status_name(int status); /* "Running", "Completed", ... */
int store_status_parse(const char *s);     /* case-insensitive name -> status, 0 if unknown */

typedef struct store_run {
    char workflow_id[256];
    char run_id[40];
    char workflow_type[256];
    char task_queue[256];
    char script_name[1024];
    char script_sha[65];  /* the script file's SHA-256 (its source in the scripts table) */
    char version_sha[65]; /* the version: the script and its modules (engine_bundle_digest) */
    int status;
    int64_t start_time, close_time; /* nanos */
    int64_t history_length;
    bool time_skip;
    char activities_dir[1024]; /* absolute; "" when not recorded (older runs, no ./activities) */
} store_run;

typedef struct store_new_run {
    const char *workflow_id;   /* NULL: "<type>-<uuid>" */
    const char *workflow_type;
    const char *task_queue;    /* NULL: "jorch" */
    const char *script_name;
    const char *script_src;
    size_t script_len;
    const Temporal__Api__Common__V1__Payloads *input;
    bool time_skip;
    const char *activities_dir; /* recorded for resume; NULL: none */
    bool hold_lease;            /* this process executes it now: leased in the same transaction, so
                                 * the service never takes a run between its start and its runner */
} store_new_run;

/* Starts a run: records the script version and writes WorkflowExecutionStarted
 * and the first WorkflowTaskScheduled. A running execution with the same
 * workflow id is an error naming it (JERR_USAGE). */
int store_run_start(store *s, const store_new_run *nr, store_run *out, jerr *err);

/* Finds a run by run id, or the newest run of a workflow id. JERR_USAGE
 * "workflow 'x' not found" when there is none. */
int store_run_find(store *s, const char *id, store_run *out, jerr *err);

/* Records the activities directory `resume` uses for a run (and the runs
 * it continues as). */
int store_run_set_activities_dir(store *s, const char *run_id, const char *dir, jerr *err);

/* Every run, newest first; status 0 = any. */
int store_run_list(store *s, int status, store_run **out, size_t *n, jerr *err);

/* Events of a run with id > after_id, in order (malloc'ed array of unpacked
 * events; free with store_events_free). */
int store_history(store *s, const char *run_id, int64_t after_id,
                  Temporal__Api__History__V1__HistoryEvent ***events, size_t *n, jerr *err);
void store_events_free(Temporal__Api__History__V1__HistoryEvent **events, size_t n);

/* The pinned source of a script version. */
int store_script(store *s, const char *sha, char **name, char **src, size_t *len, jerr *err);
/* A module finder over the modules pinned for a run (ud = store_module_ctx). */
typedef struct store_module_ctx {
    store *s;
    char run_id[40];
    char script_dir[1024];   /* fallback lookup for modules not pinned yet */
} store_module_ctx;
int store_find_module(void *ud, const char *name, char **src, size_t *len, char **chunkname, jerr *err);

/* Requests from other processes: signal, cancel, terminate. Applied by the
 * process executing the run, or at once when no process holds the run. */
enum { INBOX_SIGNAL = 1, INBOX_CANCEL = 2, INBOX_TERMINATE = 3 };
int store_inbox_add(store *s, const char *run_id, int kind, const char *name,
                    const Temporal__Api__Common__V1__Payloads *input, const char *reason, jerr *err);

/* Applies queued requests now when no live process executes the run (a
 * running process applies them itself within a fraction of a second). */
void store_apply_if_idle(store *s, const char *run_id);

/* Describe / list in the Temporal API's own messages. */
int store_describe(store *s, const char *id,
                   Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse **out, jerr *err);

/* Which process executes a run: the owner of its lease ("pid@host"), and
 * whether that process is alive (on this machine: its pid; elsewhere: the
 * lease has not expired). */
typedef struct store_executor {
    bool held;          /* a process holds the lease */
    bool alive;         /* that process is running */
    bool lease_valid;   /* its lease has not expired */
    bool this_host;
    bool service;       /* that process is the store's service (jorch serve) */
    long pid;
    char host[100];
    char owner[128];
} store_executor;
int store_run_executor(store *s, const char *run_id, store_executor *out, jerr *err);
/* One line: "process 123 on host (alive)", "no process; 'jorch resume ID' ...". */
void store_executor_text(const store_executor *x, const char *workflow_id, char *buf, size_t len);

/* What a run is doing, as one JSON object appended to out: for a running
 * run currentDetails, waitingFor (one line), waitingSince, waits (each
 * coroutine's wait: kind, site, description), signals, queries,
 * pendingTimers and executor; {} for a closed run. Replays the run's
 * committed history with its pinned script (the __jorch_status query). */
int store_observe_json(store *s, const char *id, jbuf *out, jerr *err);

/* Answers a query by replaying the run's committed history in this process
 * with its pinned script. */
int store_query(store *s, const char *id, const char *name,
                const Temporal__Api__Common__V1__Payloads *args,
                Temporal__Api__Common__V1__Payloads **answer, jerr *err);

/* ---------------------------------------------------------------- versions
 * (store_versions.c). A version is a bundle (engine_bundle): a script and
 * the workflow modules it requires, each stored by SHA-256. Its name is the
 * bundle's digest, its label what a `-- jorch: version LABEL` line in the
 * script's first 20 lines declares (empty if none; engine_script_label). */
void store_version_label(const char *src, size_t len, char *out, size_t outlen);

typedef struct store_upgrade_opts {
    const char *script_path;   /* the new version; its modules are read from its directory */
    const char *script_src;
    size_t script_len;
    bool dry_run;              /* check only */
} store_upgrade_opts;

typedef struct store_upgrade_result {
    char run_id[40];
    char old_sha[65], new_sha[65];
    char label[64];
    int64_t checked_events;    /* the history replayed (events 1..this) */
    size_t n_modules;          /* modules of the new version the replay required */
    bool unchanged;            /* the run already has this version */
    bool queued;               /* a live executor has not applied it yet */
} store_upgrade_result;

/* jorch upgrade: replays the run's whole history (and its pending workflow
 * task, if any) against the new version; when clean (and not dry_run)
 * re-pins the run and records ENGINE_UPGRADE_SIGNAL in its history. A
 * replay that fails returns -1 with err->code JERR_FAILED and the engine's
 * report (event, command, script line); nothing changes. */
int store_upgrade(store *s, const char *id, const store_upgrade_opts *o, store_upgrade_result *res, jerr *err);

/* The check of store_upgrade for a run already looked up, queueing the
 * request without applying it or waiting (the executing process itself). */
int store_upgrade_queue(store *s, const store_run *r, const store_upgrade_opts *o, store_upgrade_result *res,
                        jerr *err);

/* auto_upgrade: when the run's version declares `-- jorch: auto_upgrade`
 * and the file at its script path now holds another version, checks it as
 * jorch upgrade does and queues the move (1) or leaves the run pinned and
 * notes why for describe (0; a refused version is not checked again).
 * `said` gets a line for the run's output, or "". -1 on store errors. */
int store_version_auto(store *s, const char *run_id, char *said, size_t saidlen, jerr *err);

/* Applies a queued upgrade request inside the transaction of the process
 * holding the run (called by store_apply_inbox): checks again, re-pins,
 * appends the event. 1 applied, 0 dropped (said on stderr), -1 error. */
int store_version_apply(store *s, const char *run_id, const Temporal__Api__Common__V1__Payloads *input,
                        jerr *err);

typedef struct store_version_info {
    char sha[65];
    char name[1024];
    char label[64];
    int modules;               /* modules in the bundle besides the script */
    int open_runs, all_runs;
    char open_ids[1024];       /* up to 20 open runs' workflow ids, space-separated */
} store_version_info;
/* Stored script versions (the bundles runs were started or upgraded with). */
int store_versions_list(store *s, store_version_info **out, size_t *n, jerr *err);
/* Deletes every version, stored script and module no open run needs;
 * counts what went. */
int store_versions_prune(store *s, size_t *versions, size_t *blobs, jerr *err);

/* ---------------------------------------------------------------- runner */

typedef struct store_runner_opts {
    const char *activities_dir;  /* default "activities" */
    int threads;                 /* activity threads, default 4 */
    bool follow_continue_as_new; /* keep executing the new run after continue-as-new */
    bool quiet;                  /* no progress lines */
    bool verbose;                /* on a terminal, also routine lines (activity started/completed) */
    bool stop_on_task_failure;   /* return when a workflow task fails (jorch run) */
    const char *config_json;     /* jorch.config for activities (see activity.h), or NULL */
    const char *log_file;        /* stdout/stderr is this run log: rotate it (see runlog.c), or NULL */
    int64_t task_retry_first;    /* the service: a failed workflow task is tried again after this (ns),
                                    doubling per failure in a row up to STORE_TASK_RETRY_MAX; 0: not */
} store_runner_opts;

#define STORE_TASK_RETRY_FIRST (INT64_C(10) * 1000000000)  /* the service's default first delay */
#define STORE_TASK_RETRY_MAX (INT64_C(600) * 1000000000)   /* the longest (10 minutes) */

/* Executes a run until it closes (following continue-as-new if asked), or a
 * workflow task fails (stop_on_task_failure). Holds the run's lease; returns
 * JERR_USAGE if another live process executes it. *final receives the run
 * that ended (for continue-as-new chains, the last one). */
int store_runner_execute(store *s, const char *run_id, const store_runner_opts *o, store_run *final,
                         jerr *err);

/* ---------------------------------------------------------------- service
 * (service.c) `jorch serve`: one process executes every open run of the
 * store on one event loop (see docs/development.md, "The service"). */
typedef struct store_service_opts {
    int concurrency;          /* activity threads (per activities directory), default 8 */
    size_t cache_size;        /* runs whose workflow engine stays in memory, default 1000 */
    size_t cache_memory;      /* bytes of Lua heap the cached engines may hold, 0: no limit */
    const char *config_json;  /* jorch.config for activities, or NULL */
    int64_t task_retry_first; /* first delay before a failed workflow task runs again (ns), 0: the default */
} store_service_opts;

/* Runs the service until SIGTERM or SIGINT (then 0: every run's lease is
 * released, attempts in flight run again at the next start). Returns 1
 * (err says which process) when a service already runs for this store. */
int store_service_run(store *s, const store_service_opts *o, jerr *err);

/* One request line to the service of store directory `home` and its one
 * reply line (malloc'ed, without the newline). 0 answered, 1 no service
 * runs, -1 error (err). timeout_ms < 0: no limit. */
int store_service_request(const char *home, const char *line, char **reply, int timeout_ms, jerr *err);

/* Tells the service that run_id was started or has a request queued, so
 * it acts now: 0 the service executes the run, 1 no service runs, 2 the
 * service does not execute it (closed, or another live process does), -1
 * the service could not be asked. */
int store_service_poke(const char *home, const char *run_id);

/* Waits on the service's socket until it closes run_id (no polling): 0
 * closed, 1 the service does not execute it (or none runs, or it stopped
 * meanwhile), 2 timeout_ms passed (< 0: no limit). */
int store_service_wait(const char *home, const char *run_id, int64_t timeout_ms);

/* A query answered by the service from the run's live engine: 0 answered,
 * 1 not live there (the caller replays the history itself), -1 the query
 * failed (err, as store_query would say). */
int store_service_query(const char *home, const char *run_id, const char *name,
                        const Temporal__Api__Common__V1__Payloads *args,
                        Temporal__Api__Common__V1__Payloads **answer, jerr *err);

/* True when a live process executes the run (holds its lease). */
bool store_run_has_executor(store *s, const char *run_id);

/* True when the run's last workflow task failed and nothing came since (no
 * event after the failure, no request in its inbox): executing it again
 * would only fail the same task. */
bool store_run_task_failed_idle(store *s, const char *run_id);

/* Workflow tasks of the run that failed in a row (0 after one completes or
 * a request arrives) and when the service tries the task again (wall clock
 * nanoseconds; 0: no automatic retry, e.g. after a foreground run). get: 0,
 * or -1 when the store cannot tell (both then 0); set: inside a transaction. */
int store_task_retry_get(store *s, const char *run_id, int *attempts, int64_t *retry_at);
int store_task_retry_set(store *s, const char *run_id, int attempts, int64_t retry_at, jerr *err);

/* Webhook deliveries already acted on (jorch web: a digest of Jira's
 * X-Atlassian-Webhook-Identifier), kept STORE_DELIVERY_KEEP and at most the
 * STORE_DELIVERY_MAX newest. seen: 1 yes, 0 no, -1 error; remember (now:
 * wall clock nanoseconds) also prunes: 0 or -1. */
#define STORE_DELIVERY_KEEP (INT64_C(7) * 86400 * 1000000000)
#define STORE_DELIVERY_MAX 10000
int store_delivery_seen(store *s, const char *id, jerr *err);
int store_delivery_remember(store *s, const char *id, int64_t now, jerr *err);

/* Waits until the run (following continue-as-new) is closed; timeout_ms < 0
 * waits forever. Returns its close event. */
int store_wait_closed(store *s, const char *id, int64_t timeout_ms,
                      Temporal__Api__History__V1__HistoryEvent **close_event, jerr *err);

#endif
