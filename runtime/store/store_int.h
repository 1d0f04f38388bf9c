/*
 * store_int.h - internal to runtime/store: the database handle, event
 * building and appending, shared by store.c (runs, queries, history) and
 * runner.c (executing a run).
 */
#ifndef JORCH_STORE_INT_H
#define JORCH_STORE_INT_H

#include <sqlite3.h>

#include "engine/engine_int.h"
#include "store/store.h"

struct store {
    sqlite3 *db;
    char *home;
    char owner[128]; /* "pid@host" of this process, for leases */
};

int store_exec(store *s, const char *sql, jerr *err);
int store_begin(store *s, jerr *err);
int store_commit(store *s, jerr *err);
void store_rollback(store *s);
int store_db_error(store *s, const char *what, jerr *err);

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
int store_set_status(store *s, const char *run_id, int status, jerr *err);
/* Appends WorkflowTaskScheduled unless a workflow task is already pending. */
int store_schedule_wft(store *s, const char *run_id, jerr *err);
bool store_wft_pending(store *s, const char *run_id);
void store_clear_wft(store *s, const char *run_id);

/* Leases: one process executes a run at a time; a dead owner's lease is
 * free (same host: the pid is checked; otherwise it expires). */
int store_lease_acquire(store *s, const char *run_id, jerr *err); /* 0 ok, -1 held/error */
void store_lease_renew(store *s, const char *run_id);
void store_lease_release(store *s, const char *run_id);

/* Applies pending inbox requests as history events. Returns the number
 * applied, -1 on error. */
int store_apply_inbox(store *s, const char *run_id, jerr *err);

Payloads *payloads_copy(const Payloads *p);

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

#endif
