/*
 * store.c - the embedded backend's database: runs, pinned scripts, history
 * events, the inbox, leases, describe/list/query.
 */
#include "store/store_int.h"
#include "engine/engine.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Temporal's blob size limit (limit.blobSize.error) on inputs from outside. */
#define STORE_PAYLOAD_MAX ((size_t)2 << 20)

#define LEASE_NANOS_DEFAULT (INT64_C(15) * 1000000000)
#define SQLITE_HEADER_BYTES 100 /* a database file shorter than this is empty or truncated */

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS scripts(sha TEXT PRIMARY KEY, name TEXT NOT NULL, source BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS runs("
    " run_id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, workflow_type TEXT NOT NULL,"
    " task_queue TEXT NOT NULL, script_name TEXT NOT NULL, script_sha TEXT NOT NULL,"
    " status INTEGER NOT NULL, start_time INTEGER NOT NULL, close_time INTEGER NOT NULL DEFAULT 0,"
    " next_event_id INTEGER NOT NULL, wft_pending INTEGER NOT NULL DEFAULT 0,"
    " skip_offset INTEGER NOT NULL DEFAULT 0, time_skip INTEGER NOT NULL DEFAULT 0,"
    " lease_owner TEXT, lease_until INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs(workflow_id, seq);"
    "CREATE TABLE IF NOT EXISTS run_modules(run_id TEXT NOT NULL, name TEXT NOT NULL,"
    " chunkname TEXT NOT NULL, sha TEXT NOT NULL, PRIMARY KEY(run_id, name));"
    "CREATE TABLE IF NOT EXISTS events(run_id TEXT NOT NULL, event_id INTEGER NOT NULL,"
    " data BLOB NOT NULL, PRIMARY KEY(run_id, event_id)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS timers(run_id TEXT NOT NULL, timer_id TEXT NOT NULL,"
    " started_event_id INTEGER NOT NULL, fire_at INTEGER NOT NULL, PRIMARY KEY(run_id, timer_id));"
    "CREATE TABLE IF NOT EXISTS activities(run_id TEXT NOT NULL, scheduled_event_id INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL, state INTEGER NOT NULL, ready_at INTEGER NOT NULL,"
    " scheduled_at INTEGER NOT NULL, started_at INTEGER NOT NULL DEFAULT 0,"
    " last_heartbeat INTEGER NOT NULL DEFAULT 0, heartbeat_details BLOB,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0, last_failure BLOB, attrs BLOB NOT NULL,"
    " PRIMARY KEY(run_id, scheduled_event_id));"
    "CREATE TABLE IF NOT EXISTS inbox(id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,"
    " kind INTEGER NOT NULL, name TEXT, input BLOB, reason TEXT);";

/* Additive schema changes after version 1, applied in order by every jorch
 * that opens an older store (and to a new one). Append only; the last entry
 * is STORE_SCHEMA_VERSION. */
static const struct {
    int version;
    const char *sql;
} migrations[] = {
    /* the fencing token of one-executor-per-run (store_lease_check) */
    {2, "ALTER TABLE runs ADD COLUMN lease_gen INTEGER NOT NULL DEFAULT 0;"},
    /* each run's activities directory, so `resume` finds its activities */
    {3, "ALTER TABLE runs ADD COLUMN activities_dir TEXT;"},
    /* script versions are bundles (store_versions.c): a run's version is
     * the digest of its script and modules; runs from before are named by
     * their script's SHA-256, as they were */
    {4, "CREATE TABLE IF NOT EXISTS versions(sha TEXT PRIMARY KEY, script_sha TEXT NOT NULL,"
        " name TEXT NOT NULL, modules INTEGER NOT NULL DEFAULT 0);"
        "ALTER TABLE runs ADD COLUMN version_sha TEXT;"
        "UPDATE runs SET version_sha=script_sha;"
        "INSERT OR IGNORE INTO versions(sha,script_sha,name) SELECT script_sha, script_sha, MIN(script_name)"
        " FROM runs GROUP BY script_sha;"},
    /* failed workflow tasks in a row and when the service tries the task
     * again (store_task_retry): describe shows them, a restart keeps the count */
    {5, "ALTER TABLE runs ADD COLUMN task_attempts INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE runs ADD COLUMN task_retry_at INTEGER NOT NULL DEFAULT 0;"},
    /* Jira webhook deliveries already acted on (store_delivery_seen), so a
     * restarted web server does not apply a redelivery twice */
    {6, "CREATE TABLE IF NOT EXISTS webhook_deliveries(id TEXT PRIMARY KEY, at INTEGER NOT NULL);"
        "CREATE INDEX IF NOT EXISTS webhook_deliveries_by_time ON webhook_deliveries(at);"},
};

/* ------------------------------------------------------------ basics */

int store_db_error(store *s, const char *what, jerr *err) {
    const char *m = s && s->db ? sqlite3_errmsg(s->db) : "no database";
    int code = s && s->db ? sqlite3_errcode(s->db) : SQLITE_ERROR;
    const char *hint = "";
    if (code == SQLITE_READONLY) hint = " (is $JORCH_HOME writable?)";
    else if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) hint = " (the store file is damaged or not a jorch store)";
    else if (code == SQLITE_BUSY) hint = " (another jorch process holds the store; try again)";
    else if (code == SQLITE_FULL) hint = " (the disk is full)";
    else if (code == SQLITE_IOERR || code == SQLITE_CANTOPEN)
        hint = " (a store file may have been deleted, replaced or damaged while in use; check $JORCH_HOME)";
    return jerr_set(err, JERR_BACKEND, "store %s: %s failed: %s%s", s && s->home ? s->home : "?", what, m, hint);
}

int store_exec(store *s, const char *sql, jerr *err) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        jerr_set(err, JERR_BACKEND, "store %s: %s", s->home, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* SQLite refuses to change the safety level inside a transaction, so it is
 * set before BEGIN and put back after the transaction ends. */
static void set_synchronous(store *s, const char *sql) {
    sqlite3_stmt *q = store_prep(s, sql, NULL);
    if (!q) return;
    sqlite3_step(q);
    store_release(s, q);
}

static void end_nosync(store *s) {
    if (!s->nosync) return;
    s->nosync = false;
    set_synchronous(s, "PRAGMA synchronous=FULL");
}

/* Inside a group (store_group_begin) each transaction is a savepoint of
 * the group's one transaction: it commits or rolls back on its own, and
 * reaches the disk with the group. */
int store_begin(store *s, jerr *err) { return store_exec(s, s->grouped ? "SAVEPOINT jorch_step" : "BEGIN IMMEDIATE", err); }
int store_begin_read(store *s, jerr *err) { return store_exec(s, s->grouped ? "SAVEPOINT jorch_step" : "BEGIN", err); }

int store_begin_nosync(store *s, jerr *err) {
    if (s->grouped) return store_begin(s, err); /* the group's commit syncs it with the rest */
    /* WAL mode: NORMAL writes the log without fdatasync; the log is written
     * in order, so the next FULL commit makes this one durable too */
    set_synchronous(s, "PRAGMA synchronous=NORMAL");
    s->nosync = true;
    if (store_begin(s, err) != 0) {
        end_nosync(s);
        return -1;
    }
    return 0;
}

int store_commit(store *s, jerr *err) {
    if (store_check_files(s, err) != 0) {
        store_rollback(s);
        return -1;
    }
    if (s->grouped) return store_exec(s, "RELEASE jorch_step", err);
    int rc = store_exec(s, "COMMIT", err);
    if (rc != 0) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    end_nosync(s);
    return rc;
}

void store_rollback(store *s) {
    if (s->grouped) {
        sqlite3_exec(s->db, "ROLLBACK TO jorch_step; RELEASE jorch_step", NULL, NULL, NULL);
        return;
    }
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    end_nosync(s);
}

int store_group_begin(store *s, jerr *err) {
    if (store_exec(s, "BEGIN IMMEDIATE", err) != 0) return -1;
    s->grouped = true;
    return 0;
}

int store_group_commit(store *s, jerr *err) {
    s->grouped = false;
    if (store_check_files(s, err) != 0 || store_exec(s, "COMMIT", err) != 0) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* Preparing a statement from SQL text costs more than running most of
 * them (the hot path runs a few dozen per workflow step), so each
 * connection keeps its statements prepared. Keyed by the text's hash and
 * confirmed by comparing the text, so any string works, literal or not. */
static uint64_t sql_hash(const char *sql) {
    uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++) h = (h ^ *p) * UINT64_C(1099511628211);
    return h;
}

sqlite3_stmt *store_prep(store *s, const char *sql, jerr *err) {
    uint64_t h = sql_hash(sql);
    sqlite3_stmt *st = NULL;
    store_stmt_slot *free_slot = NULL;
    /* the connection may be shared by threads (SQLITE_OPEN_FULLMUTEX): its
     * recursive mutex guards the cache too */
    sqlite3_mutex_enter(sqlite3_db_mutex(s->db));
    for (size_t i = 0; i < STORE_STMT_SLOTS; i++) {
        store_stmt_slot *sl = &s->stmts[(h + i) % STORE_STMT_SLOTS];
        if (!sl->st) {
            free_slot = sl;
            break;
        }
        if (sl->hash == h && !sl->out && strcmp(sqlite3_sql(sl->st), sql) == 0) {
            sl->out = true;
            sqlite3_mutex_leave(sqlite3_db_mutex(s->db));
            return sl->st;
        }
    }
    int rc = sqlite3_prepare_v3(s->db, sql, -1, free_slot ? SQLITE_PREPARE_PERSISTENT : 0, &st, NULL);
    if (rc == SQLITE_OK && st && free_slot) {
        free_slot->st = st;
        free_slot->hash = h;
        free_slot->out = true;
    }
    sqlite3_mutex_leave(sqlite3_db_mutex(s->db));
    if (rc != SQLITE_OK) {
        store_db_error(s, "a query", err);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

void store_release(store *s, sqlite3_stmt *st) {
    if (!st) return;
    uint64_t h = sql_hash(sqlite3_sql(st));
    sqlite3_mutex_enter(sqlite3_db_mutex(s->db));
    for (size_t i = 0; i < STORE_STMT_SLOTS; i++) {
        store_stmt_slot *sl = &s->stmts[(h + i) % STORE_STMT_SLOTS];
        if (!sl->st) break;
        if (sl->st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            sl->out = false;
            sqlite3_mutex_leave(sqlite3_db_mutex(s->db));
            return;
        }
    }
    sqlite3_mutex_leave(sqlite3_db_mutex(s->db));
    sqlite3_finalize(st); /* not cached: nested use, or the cache is full */
}

static sqlite3_stmt *prep(store *s, const char *sql, jerr *err) { return store_prep(s, sql, err); }

/* Before sqlite3_close, which refuses a connection with live statements. */
static void stmt_cache_clear(store *s) {
    for (size_t i = 0; i < STORE_STMT_SLOTS; i++) {
        sqlite3_finalize(s->stmts[i].st);
        s->stmts[i].st = NULL;
    }
}

const char *store_home(const store *s) { return s->home; }

static int db_path(const char *home, char *buf, size_t n, jerr *err) {
    int len = snprintf(buf, n, "%s/jorch.db", home);
    if (len < 0 || (size_t)len >= n)
        return jerr_set(err, JERR_USAGE, "JORCH_HOME %s is too long (at most %zu bytes)", home, n - 16);
    return 0;
}

/* Notes which file jorch.db-wal is (once the connection has it open). */
static void wal_note(store *s) {
    char path[1110];
    struct stat st;
    snprintf(path, sizeof path, "%s/jorch.db-wal", s->home);
    s->wal_known = stat(path, &st) == 0;
    if (s->wal_known) {
        s->wal_dev = st.st_dev;
        s->wal_ino = st.st_ino;
    }
}

/* Brings a store of an older schema up to STORE_SCHEMA_VERSION, in one
 * transaction that re-reads the version (another process may be doing the
 * same). A store newer than this jorch is refused. */
static int store_migrate(store *s, jerr *err) {
    bool in_txn = false;
    for (;;) {
        sqlite3_stmt *q = prep(s, "SELECT value FROM meta WHERE key='schema_version'", err);
        if (!q) break;
        int version = 0;
        if (sqlite3_step(q) == SQLITE_ROW) version = sqlite3_column_int(q, 0);
        store_release(s, q);
        if (version > STORE_SCHEMA_VERSION) {
            jerr_set(err, JERR_USAGE, "the store in %s was written by a newer jorch (schema %d, this jorch knows %d): "
                     "upgrade jorch", s->home, version, STORE_SCHEMA_VERSION);
            break;
        }
        /* a read-only store stays readable as it is; every write is refused anyway */
        if (version == STORE_SCHEMA_VERSION || s->readonly) {
            if (in_txn) store_rollback(s);
            return 0;
        }
        if (!in_txn) {
            /* read the version again holding the write lock: another process may be upgrading it */
            if (store_begin(s, err) != 0) return -1;
            in_txn = true;
            continue;
        }
        for (size_t i = 0; i < sizeof migrations / sizeof migrations[0]; i++) {
            if (migrations[i].version <= version) continue;
            if (store_exec(s, migrations[i].sql, err) != 0) {
                store_rollback(s);
                return jerr_prefix(err, "upgrading the store to schema %d", migrations[i].version);
            }
        }
        char sql[96];
        snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO meta(key,value) VALUES('schema_version','%d')",
                 STORE_SCHEMA_VERSION);
        if (store_exec(s, sql, err) != 0 || store_exec(s, "COMMIT", err) != 0) {
            store_rollback(s);
            return jerr_prefix(err, "upgrading the store to schema %d", STORE_SCHEMA_VERSION);
        }
        return 0;
    }
    if (in_txn) store_rollback(s);
    return -1;
}

/* A new store is built under a temporary name and linked into place only
 * when complete, so jorch.db never exists half-made: an empty jorch.db is
 * always damage (a truncated store), never one being created. */
static int store_create_file(const char *home, const char *path, jerr *err) {
    char tmp[1200], side[1210];
    snprintf(tmp, sizeof tmp, "%s.new-%ld", path, (long)getpid());
    static const char *const sides[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) { /* leftovers of a crashed process with our pid */
        snprintf(side, sizeof side, "%s%s", tmp, sides[i]);
        unlink(side);
    }
    store t = {.home = (char *)home};
    int rc = sqlite3_open_v2(tmp, &t.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK ? 0 : -1;
    if (rc != 0) store_db_error(&t, "creating jorch.db", err);
    if (rc == 0)
        rc = store_exec(&t, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err) == 0 &&
                     store_exec(&t, schema_sql, err) == 0 &&
                     store_exec(&t, "INSERT OR REPLACE INTO meta(key,value) VALUES('schema_version','1')", err) == 0 &&
                     store_migrate(&t, err) == 0
                 ? 0
                 : -1;
    /* closing the only connection copies the log into the file and removes it */
    stmt_cache_clear(&t);
    if (t.db && sqlite3_close(t.db) != SQLITE_OK && rc == 0)
        rc = jerr_set(err, JERR_BACKEND, "store %s: finishing a new jorch.db failed", home);
    if (rc == 0 && link(tmp, path) != 0 && errno != EEXIST) {
        if (errno == EPERM || errno == ENOTSUP || errno == ENOSYS) {
            /* a filesystem without hard links: rename, unless another process won */
            struct stat st;
            if (stat(path, &st) != 0 && rename(tmp, path) != 0)
                rc = jerr_set(err, JERR_USAGE, "cannot create the store %s: %s", path, strerror(errno));
        } else {
            rc = jerr_set(err, JERR_USAGE, "cannot create the store %s: %s (set JORCH_HOME to a writable directory)",
                          path, strerror(errno));
        }
    }
    for (size_t i = 0; i < 4; i++) {
        snprintf(side, sizeof side, "%s%s", tmp, sides[i]);
        unlink(side);
    }
    if (rc != 0) jerr_prefix(err, "cannot create the store");
    return rc;
}

/* "pid@host pid:[inode]": the pid namespace makes the liveness check sound
 * for processes on one host in different containers. */
static void owner_init(store *s) {
    char host[64] = "localhost", ns[64] = "";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
        if (*p == ' ' || *p == '@') *p = '-';
    ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
    ns[n > 0 ? n : 0] = '\0';
    if (strchr(ns, ' ')) ns[0] = '\0';
    snprintf(s->owner, sizeof s->owner, "%ld@%s%s%s", (long)getpid(), host, ns[0] ? " " : "", ns);
}

int store_open(const char *home, store **out, jerr *err) {
    *out = NULL;
    struct stat st;
    /* checked before anything is created, so a bad value never leaves a
     * run started with no process to execute it */
    if (store_lease_nanos() < 0)
        return jerr_set(err, JERR_USAGE, "JORCH_LEASE_SECONDS must be a whole number of seconds from 1 to 86400 "
                        "(got '%s'); unset it for the default of 15", getenv("JORCH_LEASE_SECONDS"));
    /* another process may create it at the same moment: EEXIST is fine */
    if (mkdir(home, 0700) != 0 && errno != EEXIST)
        return jerr_set(err, JERR_USAGE, "cannot create the store directory %s: %s (set JORCH_HOME to a writable directory)",
                        home, strerror(errno));
    if (stat(home, &st) != 0 || !S_ISDIR(st.st_mode))
        return jerr_set(err, JERR_USAGE, "JORCH_HOME %s is not a directory", home);
    char path[1100];
    if (db_path(home, path, sizeof path, err) != 0) return -1;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT)
            return jerr_set(err, JERR_USAGE, "cannot read the store %s: %s", path, strerror(errno));
        if (store_create_file(home, path, err) != 0) return -1;
        if (stat(path, &st) != 0) return jerr_set(err, JERR_BACKEND, "store %s vanished as it was created", path);
    }
    if (!S_ISREG(st.st_mode)) return jerr_set(err, JERR_USAGE, "the store %s is not a regular file", path);
    if (st.st_size < SQLITE_HEADER_BYTES)
        return jerr_set(err, JERR_BACKEND, "the store %s is empty or truncated (%lld bytes): its runs are lost. "
                        "Restore it from a backup, or move it away to start a new store", path, (long long)st.st_size);
    store *s = calloc(1, sizeof *s);
    if (!s) return jerr_oom(err, "opening the store");
    s->home = jstrdup(home);
    owner_init(s);
    if (!s->home || sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        store_db_error(s, "opening jorch.db", err);
        store_close(s);
        return -1;
    }
    s->readonly = sqlite3_db_readonly(s->db, "main") == 1;
    sqlite3_busy_timeout(s->db, 10000);
    /* WAL + FULL: a committed transaction survives a crash or power loss.
     * Two processes opening a store at once can see SQLITE_BUSY here without
     * the busy handler being consulted (switching the journal mode needs an
     * exclusive lock), so the set-up is retried - for a bounded time: a
     * store that stays busy is reported, not waited on forever. */
    int setup_rc = -1;
    int64_t deadline = time_now_nanos() + INT64_C(15) * 1000000000;
    for (int attempt = 0; attempt < 100 && setup_rc != 0 && time_now_nanos() < deadline; attempt++) {
        if (attempt) {
            struct timespec ts = {0, 50 * 1000000};
            nanosleep(&ts, NULL);
        }
        setup_rc = store_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err) == 0 &&
                           store_exec(s, schema_sql, err) == 0
                       ? 0
                       : -1;
        int code = sqlite3_errcode(s->db);
        if (setup_rc != 0 && code != SQLITE_BUSY && code != SQLITE_LOCKED) break;
    }
    if (setup_rc != 0 || store_migrate(s, err) != 0) {
        jerr_prefix(err, "cannot open the store");
        store_close(s);
        return -1;
    }
    wal_note(s);
    *out = s;
    return 0;
}

int store_open_peer(const store *s, store **out, jerr *err) {
    *out = NULL;
    char path[1100];
    if (db_path(s->home, path, sizeof path, err) != 0) return -1;
    store *p = calloc(1, sizeof *p);
    if (!p) return jerr_oom(err, "opening the store");
    p->home = jstrdup(s->home);
    memcpy(p->owner, s->owner, sizeof p->owner);
    p->readonly = s->readonly;
    if (!p->home || sqlite3_open_v2(path, &p->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        store_db_error(p, "opening jorch.db", err);
        store_close(p);
        return -1;
    }
    sqlite3_busy_timeout(p->db, 10000);
    /* the read opens the log, so that wal_note sees the file this connection uses */
    if (store_exec(p, "PRAGMA synchronous=FULL; SELECT 1 FROM meta LIMIT 1;", err) != 0) {
        store_close(p);
        return -1;
    }
    wal_note(p);
    *out = p;
    return 0;
}

int store_check_files(store *s, jerr *err) {
    int moved = 0;
    if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK && moved)
        return jerr_set(err, JERR_BACKEND, "store %s: jorch.db was deleted, moved or replaced while this process was "
                        "using it; stopping without writing to it. Put the store back, or start over", s->home);
    char path[1100];
    struct stat st;
    if (db_path(s->home, path, sizeof path, NULL) == 0 && stat(path, &st) == 0 && st.st_size < SQLITE_HEADER_BYTES) {
        /* closing would copy the log into the empty file: a store that looks
         * whole but is not. Leave the damage visible instead. */
        sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
        return jerr_set(err, JERR_BACKEND, "store %s: jorch.db was truncated to %lld bytes while this process was "
                        "using it; stopping without writing to it. Restore the store from a backup",
                        s->home, (long long)st.st_size);
    }
    char wal[1110];
    snprintf(wal, sizeof wal, "%s-wal", path);
    bool had = s->wal_known;
    dev_t dev = s->wal_dev;
    ino_t ino = s->wal_ino;
    wal_note(s);
    if (had && (!s->wal_known || s->wal_dev != dev || s->wal_ino != ino)) {
        s->wal_known = had; /* keep reporting it */
        s->wal_dev = dev;
        s->wal_ino = ino;
        return jerr_set(err, JERR_BACKEND, "store %s: its write-ahead log jorch.db-wal was deleted or replaced while "
                            "this process was using it; stopping without writing more (what was committed before "
                            "is copied back into jorch.db when this process exits, if it exits normally). "
                            "Then check the run with 'jorch describe' and continue it with 'jorch resume'", s->home);
    }
    return 0;
}

void store_close(store *s) {
    if (!s) return;
    stmt_cache_clear(s);
    if (s->db) sqlite3_close(s->db);
    free(s->home);
    free(s);
}

const char *store_status_name(int status) {
    switch (status) {
    case RUN_RUNNING: return "Running";
    case RUN_COMPLETED: return "Completed";
    case RUN_FAILED: return "Failed";
    case RUN_CANCELED: return "Canceled";
    case RUN_TERMINATED: return "Terminated";
    case RUN_CONTINUED_AS_NEW: return "ContinuedAsNew";
    case RUN_TIMED_OUT: return "TimedOut";
    default: return "Unknown";
    }
}

int store_status_parse(const char *s) {
    for (int i = RUN_RUNNING; i <= RUN_TIMED_OUT; i++)
        if (strcasecmp(s, store_status_name(i)) == 0) return i;
    if (strcasecmp(s, "cancelled") == 0) return RUN_CANCELED;
    return 0;
}

/* ------------------------------------------------------------ time */

int64_t store_run_now(store *s, const char *run_id) {
    int64_t off = 0;
    sqlite3_stmt *q = prep(s, "SELECT skip_offset FROM runs WHERE run_id=?", NULL);
    if (q) {
        sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) == SQLITE_ROW) off = sqlite3_column_int64(q, 0);
        store_release(s, q);
    }
    return time_now_nanos() + off;
}

int store_skip_time(store *s, const char *run_id, int64_t by, jerr *err) {
    if (by <= 0) return 0;
    sqlite3_stmt *q = prep(s, "UPDATE runs SET skip_offset=skip_offset+? WHERE run_id=?", err);
    if (!q) return -1;
    sqlite3_bind_int64(q, 1, by);
    sqlite3_bind_text(q, 2, run_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : store_db_error(s, "skipping time", err);
    store_release(s, q);
    return rc;
}

/* ------------------------------------------------------------ events */

HistoryEvent *store_event_new(int type) {
    HistoryEvent *e = malloc(sizeof *e);
    if (!e) return NULL;
    temporal__api__history__v1__history_event__init(e);
    e->event_type = type;
    return e;
}

int64_t store_next_event_id(store *s, const char *run_id) {
    int64_t id = -1;
    sqlite3_stmt *q = prep(s, "SELECT next_event_id FROM runs WHERE run_id=?", NULL);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW) id = sqlite3_column_int64(q, 0);
    store_release(s, q);
    return id;
}

int store_history_size(store *s, const char *run_id, int64_t *count, int64_t *bytes, jerr *err) {
    if (strncmp(s->hist_run, run_id, sizeof s->hist_run) != 0) {
        snprintf(s->hist_run, sizeof s->hist_run, "%s", run_id);
        s->hist_upto = s->hist_count = s->hist_bytes = 0;
    }
    sqlite3_stmt *q = prep(s, "SELECT count(*), COALESCE(sum(length(data)), 0), COALESCE(max(event_id), 0)"
                              " FROM events WHERE run_id=? AND event_id>?", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, s->hist_upto);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW && sqlite3_column_int64(q, 0) > 0) {
        s->hist_count += sqlite3_column_int64(q, 0);
        s->hist_bytes += sqlite3_column_int64(q, 1);
        s->hist_upto = sqlite3_column_int64(q, 2);
    }
    store_release(s, q);
    if (rc != SQLITE_ROW) {
        s->hist_run[0] = '\0';
        return store_db_error(s, "measuring the history", err);
    }
    *count = s->hist_count;
    *bytes = s->hist_bytes;
    return 0;
}

int64_t store_append(store *s, const char *run_id, HistoryEvent *e, jerr *err) {
    int64_t id = store_next_event_id(s, run_id);
    if (id <= 0) {
        protobuf_c_message_free_unpacked(&e->base, NULL);
        return store_db_error(s, "reading the next event id", err);
    }
    e->event_id = id;
    if (!e->event_time) e->event_time = pb_timestamp_new(store_run_now(s, run_id));
    size_t len = protobuf_c_message_get_packed_size(&e->base);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf || !e->event_time) {
        free(buf);
        protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "appending an event");
    }
    protobuf_c_message_pack(&e->base, buf);
    protobuf_c_message_free_unpacked(&e->base, NULL);
    sqlite3_stmt *q = prep(s, "INSERT INTO events(run_id,event_id,data) VALUES(?,?,?)", err);
    if (!q) {
        free(buf);
        return -1;
    }
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, id);
    sqlite3_bind_blob(q, 3, buf, (int)len, free);
    int rc = sqlite3_step(q);
    store_release(s, q);
    if (rc != SQLITE_DONE) return store_db_error(s, "appending an event", err);
    q = prep(s, "UPDATE runs SET next_event_id=next_event_id+1 WHERE run_id=?", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(q);
    store_release(s, q);
    if (rc != SQLITE_DONE) return store_db_error(s, "appending an event", err);
    return id;
}

int store_set_status(store *s, const char *run_id, int status, jerr *err) {
    sqlite3_stmt *q = prep(s, "UPDATE runs SET status=?, close_time=? WHERE run_id=?", err);
    if (!q) return -1;
    sqlite3_bind_int(q, 1, status);
    sqlite3_bind_int64(q, 2, status == RUN_RUNNING ? 0 : store_run_now(s, run_id));
    sqlite3_bind_text(q, 3, run_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : store_db_error(s, "updating a run", err);
    store_release(s, q);
    return rc;
}

bool store_wft_pending(store *s, const char *run_id) {
    bool p = false;
    sqlite3_stmt *q = prep(s, "SELECT wft_pending FROM runs WHERE run_id=?", NULL);
    if (!q) return false;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW) p = sqlite3_column_int(q, 0) != 0;
    store_release(s, q);
    return p;
}

void store_clear_wft(store *s, const char *run_id) {
    sqlite3_stmt *q = prep(s, "UPDATE runs SET wft_pending=0 WHERE run_id=?", NULL);
    if (!q) return;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_step(q);
    store_release(s, q);
}

int store_schedule_wft(store *s, const char *run_id, jerr *err) {
    if (store_wft_pending(s, run_id)) return 0;
    store_run r;
    if (store_run_find(s, run_id, &r, err) != 0) return -1;
    HistoryEvent *e = store_event_new(ET(WORKFLOW_TASK_SCHEDULED));
    Temporal__Api__History__V1__WorkflowTaskScheduledEventAttributes *a = malloc(sizeof *a);
    Temporal__Api__Taskqueue__V1__TaskQueue *tq = malloc(sizeof *tq);
    if (!e || !a || !tq) {
        free(a);
        free(tq);
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "scheduling a workflow task");
    }
    temporal__api__history__v1__workflow_task_scheduled_event_attributes__init(a);
    temporal__api__taskqueue__v1__task_queue__init(tq);
    e->attributes_case = EV_ATTR(WORKFLOW_TASK_SCHEDULED);
    e->workflow_task_scheduled_event_attributes = a;
    a->task_queue = tq;
    tq->name = jstrdup(r.task_queue);
    tq->kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
    a->start_to_close_timeout = pb_duration_new(INT64_C(10) * 1000000000);
    a->attempt = 1;
    if (store_append(s, run_id, e, err) < 0) return -1;
    sqlite3_stmt *q = prep(s, "UPDATE runs SET wft_pending=1 WHERE run_id=?", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : store_db_error(s, "scheduling a workflow task", err);
    store_release(s, q);
    return rc;
}

/* ------------------------------------------------------------ runs */

static void row_to_run(sqlite3_stmt *q, store_run *r) {
    memset(r, 0, sizeof *r);
#define COPY(field, col) snprintf(r->field, sizeof r->field, "%s", (const char *)sqlite3_column_text(q, col) ? (const char *)sqlite3_column_text(q, col) : "")
    COPY(run_id, 0);
    COPY(workflow_id, 1);
    COPY(workflow_type, 2);
    COPY(task_queue, 3);
    COPY(script_name, 4);
    COPY(script_sha, 5);
#undef COPY
    r->status = sqlite3_column_int(q, 6);
    r->start_time = sqlite3_column_int64(q, 7);
    r->close_time = sqlite3_column_int64(q, 8);
    r->history_length = sqlite3_column_int64(q, 9) - 1;
    r->time_skip = sqlite3_column_int(q, 10) != 0;
    const char *adir = (const char *)sqlite3_column_text(q, 11);
    snprintf(r->activities_dir, sizeof r->activities_dir, "%s", adir ? adir : "");
    const char *vsha = (const char *)sqlite3_column_text(q, 12);
    snprintf(r->version_sha, sizeof r->version_sha, "%s", vsha ? vsha : r->script_sha);
}

#define RUN_COLUMNS "run_id, workflow_id, workflow_type, task_queue, script_name, script_sha, status, start_time, close_time, next_event_id, time_skip, activities_dir, version_sha"

int store_run_find(store *s, const char *id, store_run *out, jerr *err) {
    sqlite3_stmt *q = prep(s, "SELECT " RUN_COLUMNS " FROM runs WHERE run_id=?1 OR workflow_id=?1 ORDER BY (run_id=?1) DESC, seq DESC LIMIT 1", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        row_to_run(q, out);
        store_release(s, q);
        return 0;
    }
    store_release(s, q);
    if (rc != SQLITE_DONE) return store_db_error(s, "finding a run", err);
    return jerr_set(err, JERR_USAGE, "workflow '%s' not found in the store %s (see 'jorch list')", id, s->home);
}

int store_run_list(store *s, int status, store_run **out, size_t *n, jerr *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *q = prep(s, "SELECT " RUN_COLUMNS " FROM runs WHERE ?1=0 OR status=?1 ORDER BY seq DESC", err);
    if (!q) return -1;
    sqlite3_bind_int(q, 1, status);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            store_run *p = realloc(*out, nc * sizeof *p);
            if (!p) {
                store_release(s, q);
                return jerr_oom(err, "listing runs");
            }
            *out = p;
            cap = nc;
        }
        row_to_run(q, &(*out)[(*n)++]);
    }
    store_release(s, q);
    return rc == SQLITE_DONE ? 0 : store_db_error(s, "listing runs", err);
}

int store_run_set_activities_dir(store *s, const char *run_id, const char *dir, jerr *err) {
    sqlite3_stmt *q = prep(s, "UPDATE runs SET activities_dir=? WHERE run_id=?", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, dir, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, run_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : store_db_error(s, "recording the activities directory", err);
    store_release(s, q);
    return rc;
}

static int save_script(store *s, const char *sha, const char *name, const char *src, size_t len, jerr *err) {
    sqlite3_stmt *q = prep(s, "INSERT OR IGNORE INTO scripts(sha,name,source) VALUES(?,?,?)", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, sha, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob64(q, 3, src, len, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : store_db_error(s, "saving a script version", err);
    store_release(s, q);
    return rc;
}

static Temporal__Api__Common__V1__Memo *script_memo(const char *name, const char *sha, const char *version) {
    Temporal__Api__Common__V1__Memo *m = malloc(sizeof *m);
    if (!m) return NULL;
    temporal__api__common__v1__memo__init(m);
    m->fields = calloc(4, sizeof *m->fields);
    if (!m->fields) {
        free(m);
        return NULL;
    }
    /* jorch.backend: workflow.info().backend reads it from the start event
     * (engine.c, on_started), so a run's scripts know where they live */
    const char *keys[4] = {"jorch.script", "jorch.script_sha256", "jorch.backend", "jorch.version_sha256"};
    const char *vals[4] = {name, sha, "embedded", version};
    for (int i = 0; i < 4; i++) {
        Temporal__Api__Common__V1__Memo__FieldsEntry *e = malloc(sizeof *e);
        if (!e) break;
        temporal__api__common__v1__memo__fields_entry__init(e);
        m->fields[m->n_fields++] = e;
        e->key = jstrdup(keys[i]);
        jbuf b;
        jbuf_init(&b, 4096);
        jbuf_putc(&b, '"');
        for (const char *p = vals[i]; *p; p++) {
            if (*p == '"' || *p == '\\') jbuf_putc(&b, '\\');
            if ((unsigned char)*p >= 0x20) jbuf_putc(&b, *p);
        }
        jbuf_putc(&b, '"');
        e->value = payload_new_json(b.data ? b.data : "\"\"", b.len);
        jbuf_free(&b);
    }
    return m;
}

int store_run_start(store *s, const store_new_run *nr, store_run *out, jerr *err) {
    char sha[65];
    sha256_hex(nr->script_src, nr->script_len, sha);
    char run_id[37], wid[256];
    if (uuid_random(run_id) != 0) return jerr_set(err, JERR_INTERNAL, "cannot generate a run id: no randomness");
    if ((nr->workflow_id && *nr->workflow_id && id_check("workflow id", nr->workflow_id, ID_MAX_BYTES, err) != 0) ||
        id_check("workflow type", nr->workflow_type, ID_MAX_BYTES, err) != 0 ||
        (nr->task_queue && *nr->task_queue && id_check("task queue", nr->task_queue, ID_MAX_BYTES, err) != 0))
        return -1;
    if (nr->input && protobuf_c_message_get_packed_size(&nr->input->base) > STORE_PAYLOAD_MAX)
        return jerr_set(err, JERR_USAGE, "the workflow input is %zu bytes, over Temporal's 2 MiB blob size limit; "
                        "pass a reference (a file name, a key) instead of the data",
                        protobuf_c_message_get_packed_size(&nr->input->base));
    if (nr->workflow_id && *nr->workflow_id) {
        if (strlen(nr->workflow_id) >= sizeof wid)
            return jerr_set(err, JERR_USAGE, "workflow id is too long (at most %zu bytes)", sizeof wid - 1);
        snprintf(wid, sizeof wid, "%s", nr->workflow_id);
    } else {
        snprintf(wid, sizeof wid, "%s-%.8s", nr->workflow_type, run_id);
    }
    if (store_begin(s, err) != 0) return -1;
    sqlite3_stmt *q = prep(s, "SELECT run_id FROM runs WHERE workflow_id=? AND status=1", err);
    if (!q) goto fail;
    sqlite3_bind_text(q, 1, wid, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW) {
        jerr_set(err, JERR_USAGE, "workflow '%s' is already running (run id %s): pick another --id, or wait for it, "
                 "or 'jorch cancel %s'", wid, (const char *)sqlite3_column_text(q, 0), wid);
        store_release(s, q);
        goto fail;
    }
    store_release(s, q);
    if (save_script(s, sha, nr->script_name, nr->script_src, nr->script_len, err) != 0) goto fail;
    /* the version is the bundle: the script and the modules it requires, pinned now */
    char version[65];
    if (store_version_pin(s, run_id, nr->script_name, nr->script_src, nr->script_len, version, err) != 0) goto fail;
    q = prep(s, "INSERT INTO runs(run_id,workflow_id,workflow_type,task_queue,script_name,script_sha,status,"
                "start_time,next_event_id,time_skip,activities_dir,seq,version_sha) VALUES(?,?,?,?,?,?,1,?,1,?,?,"
                "(SELECT COALESCE(MAX(seq),0)+1 FROM runs),?)", err);
    if (!q) goto fail;
    int64_t now = time_now_nanos();
    const char *tq = nr->task_queue && *nr->task_queue ? nr->task_queue : "jorch";
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, wid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 3, nr->workflow_type, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, tq, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 5, nr->script_name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 6, sha, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 7, now);
    sqlite3_bind_int(q, 8, nr->time_skip ? 1 : 0);
    if (nr->activities_dir) sqlite3_bind_text(q, 9, nr->activities_dir, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 10, version, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) != SQLITE_DONE) {
        store_release(s, q);
        store_db_error(s, "creating a run", err);
        goto fail;
    }
    store_release(s, q);
    if (nr->hold_lease && store_lease_hold_new(s, run_id, err) != 0) goto fail;

    HistoryEvent *e = store_event_new(ET(WORKFLOW_EXECUTION_STARTED));
    Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *a = malloc(sizeof *a);
    if (!e || !a) {
        free(a);
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        jerr_oom(err, "starting a run");
        goto fail;
    }
    temporal__api__history__v1__workflow_execution_started_event_attributes__init(a);
    e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_STARTED);
    e->workflow_execution_started_event_attributes = a;
    a->workflow_type = malloc(sizeof *a->workflow_type);
    a->task_queue = malloc(sizeof *a->task_queue);
    if (a->workflow_type) {
        temporal__api__common__v1__workflow_type__init(a->workflow_type);
        a->workflow_type->name = jstrdup(nr->workflow_type);
    }
    if (a->task_queue) {
        temporal__api__taskqueue__v1__task_queue__init(a->task_queue);
        a->task_queue->name = jstrdup(tq);
        a->task_queue->kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
    }
    a->input = nr->input ? payloads_copy(nr->input) : NULL;
    a->workflow_task_timeout = pb_duration_new(INT64_C(10) * 1000000000);
    a->original_execution_run_id = jstrdup(run_id);
    a->first_execution_run_id = jstrdup(run_id);
    a->identity = jstrndup(s->owner, strcspn(s->owner, " ")); /* "pid@host", as before namespaces were recorded */
    a->attempt = 1;
    a->workflow_id = jstrdup(wid);
    a->memo = script_memo(nr->script_name, sha, version);
    if (store_append(s, run_id, e, err) < 0) goto fail;
    if (store_schedule_wft(s, run_id, err) != 0) goto fail;
    if (store_commit(s, err) != 0) goto fail;
    return store_run_find(s, run_id, out, err);
fail:
    store_rollback(s);
    return -1;
}

/* ------------------------------------------------------------ history */

void store_events_free(HistoryEvent **events, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (events[i]) protobuf_c_message_free_unpacked(&events[i]->base, NULL);
    free(events);
}

int store_history(store *s, const char *run_id, int64_t after_id, HistoryEvent ***events, size_t *n, jerr *err) {
    *events = NULL;
    *n = 0;
    sqlite3_stmt *q = prep(s, "SELECT event_id, data FROM events WHERE run_id=? AND event_id>? ORDER BY event_id", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, after_id);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            HistoryEvent **p = realloc(*events, nc * sizeof *p);
            if (!p) {
                store_release(s, q);
                store_events_free(*events, *n);
                *events = NULL;
                *n = 0;
                return jerr_oom(err, "reading history");
            }
            *events = p;
            cap = nc;
        }
        const void *blob = sqlite3_column_blob(q, 1);
        int len = sqlite3_column_bytes(q, 1);
        HistoryEvent *e = temporal__api__history__v1__history_event__unpack(NULL, (size_t)len, blob);
        if (!e) {
            int64_t id = sqlite3_column_int64(q, 0);
            store_release(s, q);
            store_events_free(*events, *n);
            *events = NULL;
            *n = 0;
            return jerr_set(err, JERR_BACKEND, "store %s: event %" PRId64 " of run %s cannot be decoded (damaged store?)",
                            s->home, id, run_id);
        }
        (*events)[(*n)++] = e;
    }
    store_release(s, q);
    if (rc != SQLITE_DONE) {
        store_events_free(*events, *n);
        *events = NULL;
        *n = 0;
        return store_db_error(s, "reading history", err);
    }
    return 0;
}

int store_script(store *s, const char *sha, char **name, char **src, size_t *len, jerr *err) {
    sqlite3_stmt *q = prep(s, "SELECT name, source FROM scripts WHERE sha=?", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, sha, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) != SQLITE_ROW) {
        store_release(s, q);
        return jerr_set(err, JERR_BACKEND, "store %s: script version %s is missing", s->home, sha);
    }
    int n = sqlite3_column_bytes(q, 1);
    *src = jstrndup(sqlite3_column_blob(q, 1) ? sqlite3_column_blob(q, 1) : "", (size_t)n);
    *len = (size_t)n;
    if (name) *name = jstrdup((const char *)sqlite3_column_text(q, 0));
    store_release(s, q);
    if (!*src || (name && !*name)) return jerr_oom(err, "loading a script");
    return 0;
}

int store_find_module(void *ud, const char *name, char **src, size_t *len, char **chunkname, jerr *err) {
    store_module_ctx *c = ud;
    sqlite3_stmt *q = prep(c->s, "SELECT chunkname, sha FROM run_modules WHERE run_id=? AND name=?", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, c->run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, name, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW) {
        char sha[65];
        snprintf(sha, sizeof sha, "%s", (const char *)sqlite3_column_text(q, 1));
        *chunkname = jstrdup((const char *)sqlite3_column_text(q, 0));
        store_release(c->s, q);
        return store_script(c->s, sha, NULL, src, len, err);
    }
    store_release(c->s, q);
    int rc = engine_find_module_in_dir(c->script_dir, name, src, len, chunkname, err);
    if (rc != 0) return rc;
    /* pin it: later loads of this run get this exact version */
    char sha[65];
    sha256_hex(*src, *len, sha);
    if (save_script(c->s, sha, *chunkname, *src, *len, err) != 0) return -1;
    q = prep(c->s, "INSERT OR IGNORE INTO run_modules(run_id,name,chunkname,sha) VALUES(?,?,?,?)", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, c->run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 3, *chunkname, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, sha, -1, SQLITE_TRANSIENT);
    sqlite3_step(q);
    store_release(c->s, q);
    return 0;
}

/* ------------------------------------------------------------ leases */

int64_t store_lease_nanos(void) {
    const char *v = getenv("JORCH_LEASE_SECONDS");
    if (!v || !*v) return LEASE_NANOS_DEFAULT;
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < 1 || n > 86400) return -1;
    return (int64_t)n * 1000000000;
}

static int64_t lease_length(void) {
    int64_t n = store_lease_nanos();
    return n > 0 ? n : LEASE_NANOS_DEFAULT;
}

enum { OWNER_DEAD, OWNER_ALIVE, OWNER_UNKNOWN };

/* Whether the process named by a lease owner still runs. Only a process on
 * this host in this pid namespace can be checked (OWNER_UNKNOWN otherwise);
 * owners written before namespaces were recorded count as local. */
static int owner_state(const char *owner, const char *self) {
    long pid = 0, self_pid = 0;
    char host[100] = "", ns[64] = "", self_host[100] = "", self_ns[64] = "";
    if (sscanf(owner, "%ld@%99s %63s", &pid, host, ns) < 2) return OWNER_DEAD;
    if (sscanf(self, "%ld@%99s %63s", &self_pid, self_host, self_ns) < 2) return OWNER_UNKNOWN;
    if (strcmp(host, self_host) != 0) return OWNER_UNKNOWN;
    if (ns[0] && self_ns[0] && strcmp(ns, self_ns) != 0) return OWNER_UNKNOWN;
    if (pid <= 0) return OWNER_DEAD;
    if (kill((pid_t)pid, 0) != 0 && errno != EPERM) return OWNER_DEAD;
    /* a killed process nobody has reaped yet still answers kill(pid, 0) */
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return OWNER_ALIVE;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X') ? OWNER_DEAD : OWNER_ALIVE;
}

int store_owner_liveness(store *s, const char *owner) {
    int st = owner_state(owner, s->owner);
    return st == OWNER_ALIVE ? 1 : st == OWNER_DEAD ? 0 : -1;
}

/* The "pid@host" part of an owner, for messages. */
#define OWNER_SHOWN(o) (int)strcspn((o), " "), (o)

bool store_run_has_executor(store *s, const char *run_id) {
    sqlite3_stmt *q = prep(s, "SELECT lease_owner, lease_until FROM runs WHERE run_id=?", NULL);
    if (!q) return true; /* cannot tell: assume it is executed, say nothing */
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    bool held = true;
    if (sqlite3_step(q) == SQLITE_ROW) {
        const char *owner = (const char *)sqlite3_column_text(q, 0);
        int64_t until = sqlite3_column_int64(q, 1);
        /* as lease_claim judges it: a dead owner, or one that cannot be checked and whose lease expired */
        int st = owner && *owner ? owner_state(owner, s->owner) : OWNER_DEAD;
        held = st == OWNER_ALIVE || (st == OWNER_UNKNOWN && until > time_now_nanos());
    }
    store_release(s, q);
    return held;
}

bool store_run_task_failed_idle(store *s, const char *run_id) {
    int64_t next = store_next_event_id(s, run_id);
    if (next < 3) return false;
    HistoryEvent **ev = NULL;
    size_t n = 0;
    jerr e = {0};
    if (store_history(s, run_id, next - 3, &ev, &n, &e) != 0) return false; /* cannot tell: not idle */
    /* a failed task records Started, Failed and a new Scheduled (runner.c) */
    bool failed = n == 2 && ev[0]->event_type == ET(WORKFLOW_TASK_FAILED) &&
                  ev[1]->event_type == ET(WORKFLOW_TASK_SCHEDULED);
    store_events_free(ev, n);
    if (!failed) return false;
    /* a request not yet applied (signal, cancel, upgrade) is something new */
    sqlite3_stmt *q = prep(s, "SELECT 1 FROM inbox WHERE run_id=? LIMIT 1", NULL);
    if (!q) return false;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    bool queued = sqlite3_step(q) == SQLITE_ROW;
    store_release(s, q);
    return !queued;
}

int store_task_retry_get(store *s, const char *run_id, int *attempts, int64_t *retry_at) {
    *attempts = 0;
    *retry_at = 0;
    sqlite3_stmt *q = prep(s, "SELECT task_attempts, task_retry_at FROM runs WHERE run_id=?", NULL);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *attempts = sqlite3_column_int(q, 0);
        *retry_at = sqlite3_column_int64(q, 1);
    }
    store_release(s, q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int store_task_retry_set(store *s, const char *run_id, int attempts, int64_t retry_at, jerr *err) {
    sqlite3_stmt *q = prep(s, "UPDATE runs SET task_attempts=?1, task_retry_at=?2 WHERE run_id=?3", err);
    if (!q) return -1;
    sqlite3_bind_int(q, 1, attempts);
    sqlite3_bind_int64(q, 2, retry_at);
    sqlite3_bind_text(q, 3, run_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    store_release(s, q);
    return rc == SQLITE_DONE ? 0 : store_db_error(s, "recording a failed workflow task's retry", err);
}

int store_delivery_seen(store *s, const char *id, jerr *err) {
    sqlite3_stmt *q = prep(s, "SELECT 1 FROM webhook_deliveries WHERE id=?", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    store_release(s, q);
    if (rc == SQLITE_ROW) return 1;
    if (rc == SQLITE_DONE) return 0;
    return store_db_error(s, "looking up a webhook delivery", err);
}

int store_delivery_remember(store *s, const char *id, int64_t now, jerr *err) {
    if (store_begin(s, err) != 0) return -1;
    sqlite3_stmt *q = prep(s, "INSERT OR REPLACE INTO webhook_deliveries(id, at) VALUES(?1, ?2)", err);
    int rc = q ? 0 : -1;
    if (q) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 2, now);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_db_error(s, "remembering a webhook delivery", err);
        store_release(s, q);
    }
    /* pruned as it grows: Jira redelivers within hours, not weeks */
    q = rc == 0 ? prep(s, "DELETE FROM webhook_deliveries WHERE at < ?1 OR id IN (SELECT id FROM webhook_deliveries"
                          " ORDER BY at DESC LIMIT -1 OFFSET ?2)", err) : NULL;
    if (q) {
        sqlite3_bind_int64(q, 1, now - STORE_DELIVERY_KEEP);
        sqlite3_bind_int(q, 2, STORE_DELIVERY_MAX);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_db_error(s, "pruning old webhook deliveries", err);
        store_release(s, q);
    } else {
        rc = -1;
    }
    if (rc != 0) {
        store_rollback(s);
        return -1;
    }
    return store_commit(s, err);
}

/* Inside a transaction: takes the run with a new lease generation (hold:
 * this process holds it until lease_length() from now; otherwise the lease
 * is left free). Returns 0, 1 when another process holds it (err says
 * which), -1 on error. An executor takes over a lease that expired even if
 * its owner looks alive (a pid can be reused; the generation fences the old
 * owner out). idle_only, for requests from other terminals, never takes the
 * run from an owner that may be alive: a stalled executor keeps its run and
 * applies the requests itself when it continues. */
static int lease_claim(store *s, const char *run_id, bool idle_only, bool hold, int64_t *gen, jerr *err) {
    sqlite3_stmt *q = prep(s, "SELECT lease_owner, lease_until, lease_gen FROM runs WHERE run_id=?", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        store_release(s, q);
        if (rc == SQLITE_DONE) return jerr_set(err, JERR_USAGE, "run %s not found in the store %s", run_id, s->home);
        return store_db_error(s, "reading the lease of a run", err);
    }
    char owner[128];
    const char *o = (const char *)sqlite3_column_text(q, 0);
    snprintf(owner, sizeof owner, "%s", o ? o : "");
    int64_t until = sqlite3_column_int64(q, 1);
    int64_t g = sqlite3_column_int64(q, 2);
    store_release(s, q);
    if (owner[0] && strcmp(owner, s->owner) != 0) {
        int st = owner_state(owner, s->owner);
        bool expired = until <= time_now_nanos();
        bool held = idle_only ? st == OWNER_ALIVE || (st == OWNER_UNKNOWN && !expired) : st != OWNER_DEAD && !expired;
        if (held) {
            jerr_set(err, JERR_USAGE, "run %s is being executed by process %.*s; wait for it, or stop that process first",
                     run_id, OWNER_SHOWN(owner));
            return 1;
        }
    }
    q = prep(s, "UPDATE runs SET lease_owner=?1, lease_until=?2, lease_gen=?3 WHERE run_id=?4", err);
    if (!q) return -1;
    if (hold) sqlite3_bind_text(q, 1, s->owner, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, hold ? time_now_nanos() + lease_length() : 0);
    sqlite3_bind_int64(q, 3, g + 1);
    sqlite3_bind_text(q, 4, run_id, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(q);
    store_release(s, q);
    if (rc != SQLITE_DONE) return store_db_error(s, "taking the lease of a run", err);
    *gen = g + 1;
    return 0;
}

int store_lease_acquire(store *s, const char *run_id, int64_t *gen, jerr *err) {
    if (s->readonly)
        return jerr_set(err, JERR_BACKEND, "store %s is read-only: cannot execute run %s (make $JORCH_HOME and the "
                        "files in it writable for this user)", s->home, run_id);
    /* not synced by itself (store_begin_nosync): a power failure ends every holder anyway */
    if (store_begin_nosync(s, err) != 0) return -1;
    if (lease_claim(s, run_id, false, true, gen, err) != 0 || store_commit(s, err) != 0) {
        store_rollback(s);
        return -1;
    }
    return 0;
}

int store_lease_hold_new(store *s, const char *run_id, jerr *err) {
    sqlite3_stmt *q = prep(s, "UPDATE runs SET lease_owner=?1, lease_until=?2 WHERE run_id=?3", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, s->owner, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, time_now_nanos() + lease_length());
    sqlite3_bind_text(q, 3, run_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    store_release(s, q);
    return rc == SQLITE_DONE ? 0 : store_db_error(s, "taking the lease of a new run", err);
}

int store_lease_check(store *s, const char *run_id, int64_t gen, jerr *err) {
    sqlite3_stmt *q = prep(s, "SELECT lease_gen, lease_owner FROM runs WHERE run_id=?", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        store_release(s, q);
        return rc == SQLITE_DONE ? jerr_set(err, JERR_USAGE, "run %s is no longer in the store %s", run_id, s->home)
                                 : store_db_error(s, "checking the lease of a run", err);
    }
    int64_t g = sqlite3_column_int64(q, 0);
    char owner[128];
    const char *o = (const char *)sqlite3_column_text(q, 1);
    snprintf(owner, sizeof owner, "%s", o ? o : "");
    store_release(s, q);
    if (g == gen && strcmp(owner, s->owner) == 0) return 0;
    char who[160];
    if (owner[0] && strcmp(owner, s->owner) != 0)
        snprintf(who, sizeof who, "process %.*s took it over", OWNER_SHOWN(owner));
    else
        snprintf(who, sizeof who, "another process took it over (and has let it go)");
    return jerr_set(err, JERR_USAGE, "run %s: this process (%.*s) no longer owns the run: %s after this process "
                    "was stopped or stalled for longer than its lease (%lld s). Stopping without writing anything "
                    "more; if no process executes the run now, 'jorch resume %s' continues it",
                    run_id, OWNER_SHOWN(s->owner), who, (long long)(lease_length() / 1000000000), run_id);
}

int store_lease_renew(store *s, const char *run_id, int64_t gen, jerr *err) {
    if (store_check_files(s, err) != 0) return -1;
    sqlite3_stmt *q = prep(s, "UPDATE runs SET lease_until=?1 WHERE run_id=?2 AND lease_gen=?3 AND lease_owner=?4", err);
    if (!q) return 1;
    sqlite3_bind_int64(q, 1, time_now_nanos() + lease_length());
    sqlite3_bind_text(q, 2, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 3, gen);
    sqlite3_bind_text(q, 4, s->owner, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    store_release(s, q);
    if (rc != SQLITE_DONE) {
        store_db_error(s, "renewing the lease of a run", err);
        return 1;
    }
    if (sqlite3_changes(s->db) == 1) return 0;
    return store_lease_check(s, run_id, gen, err) != 0 ? -1 : 1;
}

void store_lease_release(store *s, const char *run_id, int64_t gen) {
    sqlite3_stmt *q = prep(s, "UPDATE runs SET lease_owner=NULL, lease_until=0 WHERE run_id=? AND lease_gen=? "
                              "AND lease_owner=?", NULL);
    if (!q) return;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, gen);
    sqlite3_bind_text(q, 3, s->owner, -1, SQLITE_TRANSIENT);
    /* not synced by itself (as store_begin_nosync): a lease lost to a power
     * failure is one whose holder died, which the next executor handles */
    set_synchronous(s, "PRAGMA synchronous=NORMAL");
    sqlite3_step(q);
    set_synchronous(s, "PRAGMA synchronous=FULL");
    store_release(s, q);
}

/* ------------------------------------------------------------ inbox */

static uint8_t *pack_msg(const ProtobufCMessage *m, size_t *len) {
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len ? *len : 1);
    if (b) protobuf_c_message_pack(m, b);
    return b;
}

Payloads *payloads_copy(const Payloads *p) {
    if (!p) return NULL;
    size_t len;
    uint8_t *b = pack_msg(&p->base, &len);
    if (!b) return NULL;
    Payloads *c = temporal__api__common__v1__payloads__unpack(NULL, len, b);
    free(b);
    return c;
}

int store_inbox_add(store *s, const char *run_id, int kind, const char *name, const Payloads *input,
                    const char *reason, jerr *err) {
    /* a name or reason that is not UTF-8 would make the history unexportable for good */
    if (kind == INBOX_SIGNAL && name && strcmp(name, ENGINE_UPGRADE_SIGNAL) == 0)
        return jerr_set(err, JERR_USAGE, "signal name '%s' is reserved for jorch's own records: use 'jorch upgrade' "
                        "to move a run to another script version", name);
    if ((kind == INBOX_SIGNAL && id_check("signal name", name, ID_MAX_BYTES, err) != 0) ||
        (reason && text_check_utf8("reason", reason, err) != 0))
        return -1;
    if (input && protobuf_c_message_get_packed_size(&input->base) > STORE_PAYLOAD_MAX)
        return jerr_set(err, JERR_USAGE, "the signal's input is %zu bytes, over Temporal's 2 MiB blob size limit; "
                        "send a reference (a file name, a key) instead of the data",
                        protobuf_c_message_get_packed_size(&input->base));
    sqlite3_stmt *q = prep(s, "INSERT INTO inbox(run_id,kind,name,input,reason) VALUES(?,?,?,?,?)", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, kind);
    if (name) sqlite3_bind_text(q, 3, name, -1, SQLITE_TRANSIENT);
    if (input) {
        size_t len;
        uint8_t *b = pack_msg(&input->base, &len);
        if (!b) {
            store_release(s, q);
            return jerr_oom(err, "queueing a request");
        }
        sqlite3_bind_blob(q, 4, b, (int)len, free);
    }
    if (reason) sqlite3_bind_text(q, 5, reason, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : store_db_error(s, "queueing a request", err);
    store_release(s, q);
    return rc;
}

/* Called inside a transaction by the process that holds the run. */
int store_apply_inbox(store *s, const char *run_id, jerr *err) {
    sqlite3_stmt *q = prep(s, "SELECT id, kind, name, input, reason FROM inbox WHERE run_id=? ORDER BY id", err);
    if (!q) return -1;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    int applied = 0;
    int64_t last_id = 0;
    int status = RUN_RUNNING;
    store_run r;
    if (store_run_find(s, run_id, &r, err) != 0) {
        store_release(s, q);
        return -1;
    }
    status = r.status;
    while (sqlite3_step(q) == SQLITE_ROW) {
        last_id = sqlite3_column_int64(q, 0);
        if (status != RUN_RUNNING) continue; /* requests to a closed run are dropped */
        int kind = sqlite3_column_int(q, 1);
        const char *name = (const char *)sqlite3_column_text(q, 2);
        const char *reason = (const char *)sqlite3_column_text(q, 4);
        HistoryEvent *e = NULL;
        if (kind == INBOX_SIGNAL && name && strcmp(name, ENGINE_UPGRADE_SIGNAL) == 0) {
            /* jorch upgrade (store_versions.c): checked and applied here, in this transaction */
            Payloads *in = sqlite3_column_type(q, 3) == SQLITE_BLOB
                               ? temporal__api__common__v1__payloads__unpack(NULL, (size_t)sqlite3_column_bytes(q, 3),
                                                                             sqlite3_column_blob(q, 3))
                               : NULL;
            int up = store_version_apply(s, run_id, in, err);
            if (in) protobuf_c_message_free_unpacked(&in->base, NULL);
            if (up < 0 || (up > 0 && store_schedule_wft(s, run_id, err) != 0)) {
                store_release(s, q);
                return -1;
            }
            applied += up;
            continue;
        }
        if (kind == INBOX_SIGNAL) {
            e = store_event_new(ET(WORKFLOW_EXECUTION_SIGNALED));
            Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *a = malloc(sizeof *a);
            if (!e || !a) {
                free(a);
                if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
                store_release(s, q);
                return jerr_oom(err, "applying a signal");
            }
            temporal__api__history__v1__workflow_execution_signaled_event_attributes__init(a);
            e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_SIGNALED);
            e->workflow_execution_signaled_event_attributes = a;
            a->signal_name = jstrdup(name ? name : "");
            a->identity = jstrdup("jorch-cli");
            if (sqlite3_column_type(q, 3) == SQLITE_BLOB)
                a->input = temporal__api__common__v1__payloads__unpack(NULL, (size_t)sqlite3_column_bytes(q, 3),
                                                                       sqlite3_column_blob(q, 3));
        } else if (kind == INBOX_CANCEL) {
            e = store_event_new(ET(WORKFLOW_EXECUTION_CANCEL_REQUESTED));
            Temporal__Api__History__V1__WorkflowExecutionCancelRequestedEventAttributes *a = malloc(sizeof *a);
            if (!e || !a) {
                free(a);
                if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
                store_release(s, q);
                return jerr_oom(err, "applying a cancel request");
            }
            temporal__api__history__v1__workflow_execution_cancel_requested_event_attributes__init(a);
            e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_CANCEL_REQUESTED);
            e->workflow_execution_cancel_requested_event_attributes = a;
            a->cause = jstrdup(reason ? reason : "");
            a->identity = jstrdup("jorch-cli");
        } else {
            e = store_event_new(ET(WORKFLOW_EXECUTION_TERMINATED));
            Temporal__Api__History__V1__WorkflowExecutionTerminatedEventAttributes *a = malloc(sizeof *a);
            if (!e || !a) {
                free(a);
                if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
                store_release(s, q);
                return jerr_oom(err, "applying a termination");
            }
            temporal__api__history__v1__workflow_execution_terminated_event_attributes__init(a);
            e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_TERMINATED);
            e->workflow_execution_terminated_event_attributes = a;
            a->reason = jstrdup(reason ? reason : "");
            a->identity = jstrdup("jorch-cli");
        }
        if (store_append(s, run_id, e, err) < 0) {
            store_release(s, q);
            return -1;
        }
        applied++;
        if (kind == INBOX_TERMINATE) {
            status = RUN_TERMINATED;
            if (store_set_status(s, run_id, RUN_TERMINATED, err) != 0) {
                store_release(s, q);
                return -1;
            }
        } else if (store_schedule_wft(s, run_id, err) != 0) {
            store_release(s, q);
            return -1;
        }
    }
    store_release(s, q);
    if (last_id) {
        sqlite3_stmt *d = prep(s, "DELETE FROM inbox WHERE run_id=? AND id<=?", err);
        if (!d) return -1;
        sqlite3_bind_text(d, 1, run_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(d, 2, last_id);
        sqlite3_step(d);
        store_release(s, d);
    }
    if (status == RUN_TERMINATED) {
        /* a terminated run has no pending work */
        const char *cleanup[] = {"DELETE FROM timers WHERE run_id=?", "DELETE FROM activities WHERE run_id=?"};
        for (int i = 0; i < 2; i++) {
            sqlite3_stmt *d = prep(s, cleanup[i], err);
            if (!d) return -1;
            sqlite3_bind_text(d, 1, run_id, -1, SQLITE_TRANSIENT);
            sqlite3_step(d);
            store_release(s, d);
        }
    }
    return applied;
}

void store_apply_if_idle(store *s, const char *run_id) {
    jerr e = {0};
    int64_t gen = 0;
    if (s->readonly || store_begin(s, &e) != 0) return;
    /* one transaction, with a lease generation of its own: an owner that
     * comes back later finds it no longer owns the run */
    if (lease_claim(s, run_id, true, false, &gen, &e) != 0 || store_apply_inbox(s, run_id, &e) < 0 ||
        store_commit(s, &e) != 0)
        store_rollback(s);
}

/* ------------------------------------------------------------ describe */

static Temporal__Api__Common__V1__WorkflowExecution *execution_new(const char *wid, const char *rid) {
    Temporal__Api__Common__V1__WorkflowExecution *x = malloc(sizeof *x);
    if (!x) return NULL;
    temporal__api__common__v1__workflow_execution__init(x);
    x->workflow_id = jstrdup(wid);
    x->run_id = jstrdup(rid);
    return x;
}

int store_describe(store *s, const char *id, Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse **out,
                   jerr *err) {
    *out = NULL;
    store_run r;
    if (store_run_find(s, id, &r, err) != 0) return -1;
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = malloc(sizeof *d);
    Temporal__Api__Workflow__V1__WorkflowExecutionInfo *info = malloc(sizeof *info);
    if (!d || !info) {
        free(d);
        free(info);
        return jerr_oom(err, "describing a run");
    }
    temporal__api__workflowservice__v1__describe_workflow_execution_response__init(d);
    temporal__api__workflow__v1__workflow_execution_info__init(info);
    d->workflow_execution_info = info;
    info->execution = execution_new(r.workflow_id, r.run_id);
    info->type = malloc(sizeof *info->type);
    if (info->type) {
        temporal__api__common__v1__workflow_type__init(info->type);
        info->type->name = jstrdup(r.workflow_type);
    }
    info->start_time = pb_timestamp_new(r.start_time);
    if (r.close_time) info->close_time = pb_timestamp_new(r.close_time);
    info->status = r.status;
    info->history_length = r.history_length;
    info->task_queue = jstrdup(r.task_queue);
    info->memo = script_memo(r.script_name, r.script_sha, r.version_sha);
    store_version_memo(s, &r, info->memo);
    /* pending activities */
    sqlite3_stmt *q = prep(s, "SELECT attempt, state, attrs, heartbeat_details, last_failure, scheduled_at, started_at, last_heartbeat,"
                              " ready_at FROM activities WHERE run_id=? ORDER BY scheduled_event_id", err);
    if (q) {
        sqlite3_bind_text(q, 1, r.run_id, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(q) == SQLITE_ROW) {
            Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *attrs =
                temporal__api__command__v1__schedule_activity_task_command_attributes__unpack(
                    NULL, (size_t)sqlite3_column_bytes(q, 2), sqlite3_column_blob(q, 2));
            if (!attrs) continue;
            Temporal__Api__Workflow__V1__PendingActivityInfo *pa = malloc(sizeof *pa);
            Temporal__Api__Workflow__V1__PendingActivityInfo **arr =
                realloc(d->pending_activities, (d->n_pending_activities + 1) * sizeof *arr);
            if (!pa || !arr) {
                free(pa);
                if (arr) d->pending_activities = arr;
                protobuf_c_message_free_unpacked(&attrs->base, NULL);
                break;
            }
            d->pending_activities = arr;
            temporal__api__workflow__v1__pending_activity_info__init(pa);
            arr[d->n_pending_activities++] = pa;
            pa->activity_id = jstrdup(attrs->activity_id);
            pa->activity_type = attrs->activity_type;
            attrs->activity_type = NULL;
            pa->attempt = sqlite3_column_int(q, 0);
            pa->state = sqlite3_column_int(q, 1) == 1 ? 2 : 1; /* STARTED : SCHEDULED */
            pa->maximum_attempts = attrs->retry_policy ? attrs->retry_policy->maximum_attempts : 0;
            if (sqlite3_column_type(q, 3) == SQLITE_BLOB)
                pa->heartbeat_details = temporal__api__common__v1__payloads__unpack(
                    NULL, (size_t)sqlite3_column_bytes(q, 3), sqlite3_column_blob(q, 3));
            if (sqlite3_column_type(q, 4) == SQLITE_BLOB)
                pa->last_failure = temporal__api__failure__v1__failure__unpack(NULL, (size_t)sqlite3_column_bytes(q, 4),
                                                                              sqlite3_column_blob(q, 4));
            pa->scheduled_time = pb_timestamp_new(sqlite3_column_int64(q, 5));
            if (sqlite3_column_int64(q, 6)) pa->last_started_time = pb_timestamp_new(sqlite3_column_int64(q, 6));
            if (sqlite3_column_int64(q, 7)) pa->last_heartbeat_time = pb_timestamp_new(sqlite3_column_int64(q, 7));
            /* waiting for a retry: when the next attempt starts (Temporal's field) */
            if (sqlite3_column_int(q, 1) == 0 && pa->attempt > 1)
                pa->next_attempt_schedule_time = pb_timestamp_new(sqlite3_column_int64(q, 8));
            protobuf_c_message_free_unpacked(&attrs->base, NULL);
        }
        store_release(s, q);
    }
    *out = d;
    return 0;
}

/* ------------------------------------------------------------ query */

int store_query(store *s, const char *id, const char *name, const Payloads *args, Payloads **answer, jerr *err) {
    *answer = NULL;
    if (id_check("query name", name, ID_MAX_BYTES, err) != 0) return -1;
    store_run r;
    if (store_run_find(s, id, &r, err) != 0) return -1;
    char *src = NULL, *sname = NULL;
    size_t len = 0;
    if (store_script(s, r.script_sha, &sname, &src, &len, err) != 0) return -1;
    store_module_ctx mc = {.s = s};
    snprintf(mc.run_id, sizeof mc.run_id, "%s", r.run_id);
    snprintf(mc.script_dir, sizeof mc.script_dir, "%s", sname);
    char *slash = strrchr(mc.script_dir, '/');
    if (slash) *slash = '\0';
    else snprintf(mc.script_dir, sizeof mc.script_dir, ".");
    engine_run_config cfg = {
        .script_name = sname, .script_src = src, .script_len = len, .limits = engine_limits_default(),
        .finder = store_find_module, .finder_ud = &mc, .workflow_id = r.workflow_id, .run_id = r.run_id,
    };
    engine_run *er = engine_run_new(&cfg, err);
    free(src);
    free(sname);
    if (!er) return -1;
    HistoryEvent **ev = NULL;
    size_t n = 0;
    int rc = store_history(s, r.run_id, 0, &ev, &n, err);
    if (rc == 0) {
        /* feed everything that does not end in an unfinished task */
        size_t feed_n = n;
        if (n > 0 && ev[n - 1]->event_type == ET(WORKFLOW_TASK_STARTED)) feed_n = n - 1;
        engine_output out;
        rc = engine_run_feed(er, ev, feed_n, &out, err);
        if (rc == 0) rc = engine_run_query(er, name, args, answer, err);
        store_events_free(ev, n);
    }
    engine_run_free(er);
    return rc;
}
