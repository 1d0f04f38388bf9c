/*
 * store_int.h - internal to runtime/store: the database handle, event
 * building and appending, shared by store.c (runs, queries, history) and
 * runner.c (executing a run).
 */
#ifndef JORCH_STORE_INT_H
#define JORCH_STORE_INT_H

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <sys/types.h>

#include "activity/activity.h"
#include "engine/engine_int.h"
#include "store/store.h"

/* store_prep's cache: statements by the hash of their SQL text */
#define STORE_STMT_SLOTS 128
typedef struct store_stmt_slot {
    sqlite3_stmt *st; /* NULL: empty */
    uint64_t hash;
    bool out;         /* handed out and not yet released */
} store_stmt_slot;

struct store {
    sqlite3 *db;
    char *home;
    char owner[128]; /* "pid@host pid:[ns]" of this process, for leases */
    bool readonly;   /* the database could only be opened for reading */
    bool grouped;    /* inside store_group_begin: transactions are savepoints */
    /* jorch.db-wal as this connection opened it (SQLite keeps it while any
     * connection is open, so another file there means it was deleted) */
    bool wal_known;
    dev_t wal_dev;
    ino_t wal_ino;
    store_stmt_slot stmts[STORE_STMT_SLOTS];
    bool nosync;      /* in a store_begin_nosync transaction */
    /* store_history_size's running total for one run (history is append-only) */
    char hist_run[40];
    int64_t hist_upto, hist_count, hist_bytes;
};

int store_exec(store *s, const char *sql, jerr *err);
int store_begin(store *s, jerr *err);
int store_begin_read(store *s, jerr *err); /* a read snapshot, ended with store_rollback */
/* Group commit (the service): one write transaction around the
 * transactions of many runs, each of which becomes a savepoint that
 * commits or rolls back on its own; the group reaches the disk in one
 * commit (one fsync). A failed group commit loses the whole group. */
int store_group_begin(store *s, jerr *err);
int store_group_commit(store *s, jerr *err);
int store_commit(store *s, jerr *err);
void store_rollback(store *s);
/* A transaction whose commit is not synced to disk by itself, for state
 * that recovery recomputes anyway (a lease, "this activity attempt
 * started"): a process crash loses nothing (the log is in the page cache),
 * and after a power failure the store is as before the transaction, which
 * recovery treats the same. The next durable commit syncs it. Never for
 * history events or anything a run's progress depends on. Ends with
 * store_commit or store_rollback, which restore durable commits. */
int store_begin_nosync(store *s, jerr *err);
int store_db_error(store *s, const char *what, jerr *err);
/* A prepared statement for sql, from the connection's cache (prepared from
 * text only the first time), with no bindings; NULL and err on failure.
 * Hand it back with store_release, never sqlite3_finalize: that resets it
 * (ending its read) for the next user. A statement whose SQL is in use
 * already (nested) is prepared afresh and finalised at release. The cache
 * is finalised by store_close. */
sqlite3_stmt *store_prep(store *s, const char *sql, jerr *err);
void store_release(store *s, sqlite3_stmt *st);

/* The run's clock: wall clock plus the time skipped in time-skipping mode. */
int64_t store_run_now(store *s, const char *run_id);
int store_skip_time(store *s, const char *run_id, int64_t by_nanos, jerr *err);

/* A new event of `type` with the next id and the run's current time;
 * attributes are set by the caller (a malloc'ed tree, see common.h). */
HistoryEvent *store_event_new(int type);
/* Assigns event_id and event_time and stores it (inside a transaction).
 * Takes ownership of e. Returns the event id or -1. */
int64_t store_append(store *s, const char *run_id, HistoryEvent *e, jerr *err);
int64_t store_next_event_id(store *s, const char *run_id);
/* The run's history: number of events and their encoded bytes. Counts only
 * the events added since the last call for the same run, so asking after
 * every workflow task costs what the task added, not the whole history.
 * Call it outside a transaction (on committed events only). */
int store_history_size(store *s, const char *run_id, int64_t *count, int64_t *bytes, jerr *err);
int store_set_status(store *s, const char *run_id, int status, jerr *err);
/* Appends WorkflowTaskScheduled unless a workflow task is already pending. */
int store_schedule_wft(store *s, const char *run_id, jerr *err);
bool store_wft_pending(store *s, const char *run_id);
void store_clear_wft(store *s, const char *run_id);

/* Leases: one process executes a run at a time. Taking a lease bumps the
 * run's lease generation, a fencing token: the holder checks it inside each
 * of its transactions (store_lease_check), so a holder that lost the run -
 * stalled past its lease, then taken over - can never write to it again.
 * A dead owner's lease is free at once when its liveness can be checked
 * (same host and pid namespace); otherwise it is free when it expires. */
int64_t store_lease_nanos(void); /* JORCH_LEASE_SECONDS (default 15); -1 if that is invalid */
/* 0 and the new generation in *gen; -1 when held by a live process or on error. */
int store_lease_acquire(store *s, const char *run_id, int64_t *gen, jerr *err);
/* Inside the transaction that creates run_id: this process holds its lease
 * from the commit on, so no other executor (the service) takes the run
 * before this process's runner does (its store_lease_acquire succeeds). */
int store_lease_hold_new(store *s, const char *run_id, jerr *err);
/* Inside a transaction: 0 while generation gen still owns the run; -1
 * (JERR_USAGE, saying who took it) when it does not. */
int store_lease_check(store *s, const char *run_id, int64_t gen, jerr *err);
/* 0 renewed; -1 the run was lost or the store files are damaged (err says
 * which: stop); 1 a transient failure (try again later). */
int store_lease_renew(store *s, const char *run_id, int64_t gen, jerr *err);
void store_lease_release(store *s, const char *run_id, int64_t gen);

/* A second connection to the same store, for another thread. */
int store_open_peer(const store *s, store **out, jerr *err);
/* -1 (JERR_BACKEND) when jorch.db or jorch.db-wal was deleted, replaced or
 * truncated since this connection opened them: a commit into such a file
 * would be lost without a trace. store_commit checks it. */
int store_check_files(store *s, jerr *err);

/* Applies pending inbox requests as history events. Returns the number
 * applied, -1 on error. */
int store_apply_inbox(store *s, const char *run_id, jerr *err);

Payloads *payloads_copy(const Payloads *p);

/* store_versions.c: adds the version label ("jorch.script_version") of
 * the run's script to a describe memo when the script declares one, and
 * for auto_upgrade scripts what the policy did ("jorch.auto_upgrade"). */
void store_version_memo(store *s, const store_run *r, Temporal__Api__Common__V1__Memo *memo);
/* Inside the transaction that starts a run: collects the script's bundle
 * (its modules from the script's directory), stores the modules, pins them
 * to the run and records the version; version_sha gets its name. */
int store_version_pin(store *s, const char *run_id, const char *script_name, const char *src, size_t len,
                      char version_sha[65], jerr *err);
/* Records a version (its digest, script and module count) in the versions
 * table; an existing one is kept. */
int store_version_record(store *s, const char *version_sha, const char *script_sha, const char *name,
                         size_t n_modules, jerr *err);
/* True if one of the events records an upgrade (ENGINE_UPGRADE_SIGNAL). */
bool store_version_changed(HistoryEvent *const *ev, size_t n);

/* runlog.c: the executor's output lines. Each line's text is escaped (no
 * control characters reach a terminal or forge a line) and cut at
 * RUNLOG_LINE_MAX bytes with a marker; when stderr is the run's log file
 * (runlog_configure), the file is rotated at RUNLOG_FILE_MAX bytes keeping
 * RUNLOG_KEEP older ones (ID.log.1 ...). Callers serialise. */
#define RUNLOG_LINE_MAX ((size_t)8 << 10)
#define RUNLOG_FILE_MAX ((uint64_t)10 << 20)
#define RUNLOG_KEEP 3
void runlog_configure(const char *path);
void runlog_write(const char *prefix, const char *text);

/* The same line appended to the file at path (the service writes each
 * run's lines to that run's log, logs/ID.log), rotated the same way. */
void runlog_append(const char *path, const char *prefix, const char *text);

/* runner.c: one run's executor state, driven by store_runner_execute's
 * loop (foreground: run, resume) or by the service (service.c), which
 * steps many runners on one thread with one shared activity host. */
typedef struct runner runner;
enum { RUNNER_WAITING = 0, RUNNER_CLOSED = 1 };
typedef struct runner_wait {
    int running;      /* attempts in the activity host */
    int64_t due;      /* the run's clock: next timer or retry, 0 none */
    int64_t wall_due; /* wall clock: when to step the run again (timer, retry, heartbeat check), 0 none */
} runner_wait;
/* shared: the service's activity host (its callbacks route by token to
 * runner_on_start/on_heartbeat/act_log); NULL: a host of the runner's own. */
runner *runner_new(store *s, const store_runner_opts *o, const char *run_id, act_host *shared, jerr *err);
void runner_free(runner *r);
void runner_set_log(runner *r, const char *path);
int runner_open(runner *r, jerr *err);  /* 0 taken, 1 not running, -1 (held by a live process: JERR_USAGE) */
void runner_close(runner *r);
int runner_step(runner *r, char *new_run_id, runner_wait *w, jerr *err);
int runner_outcome(runner *r, act_outcome *o, jerr *err);
int64_t runner_lease_gen(const runner *r);
uint32_t runner_generation(const runner *r);
uint32_t runner_token_generation(uint64_t token);
const char *runner_run_id(const runner *r);
const store_run *runner_run(const runner *r);
bool runner_has_engine(const runner *r);
size_t runner_engine_memory(const runner *r);
void runner_evict(runner *r); /* drops the live engine: the next task replays from history */
const cJSON *runner_status(const runner *r);
int runner_task_attempts(const runner *r);   /* workflow tasks failed in a row */
int64_t runner_task_retry_at(const runner *r); /* wall clock: when the failed task runs again, 0 not */
int runner_query(runner *r, const char *name, const Payloads *args, Payloads **answer, jerr *err);
void runner_on_start(runner *r, uint64_t token);
bool runner_on_heartbeat(runner *r, uint64_t token, const Payloads *details);
void runner_act_log(runner *r, const char *activity_type, const char *line);

/* Is the lease owner ("pid@host pid:[ns]") a live process? 1 alive, 0
 * dead, -1 cannot tell (another host or pid namespace: trust the expiry). */
int store_owner_liveness(store *s, const char *owner);

/* store_observe.c: the answer of the __jorch_status query as a cJSON
 * object (NULL and err set if it is not one); one line saying what the
 * workflow waits for ("signal proceed (EXPLORE gate)", "activity agent.run
 * (attempt 2, retry in 4s)"); local wall-clock "HH:MM". */
cJSON *store_status_from_payloads(const Payloads *answer, jerr *err);
/* The same status from a replay of the run's committed history (*since:
 * the time of its last completed workflow task); NULL and err on failure. */
cJSON *store_replay_status(store *s, const store_run *r, int64_t *since, jerr *err);
void store_waiting_text(store *s, const char *run_id, const cJSON *status, char *buf, size_t len);
/* Identifies the wait store_waiting_text describes (its text also carries
 * attempts and countdowns, which change while the wait stays the same). */
void store_waiting_key(const cJSON *status, char *buf, size_t len);
void store_clock_text(int64_t nanos, char *buf, size_t len);

#endif
