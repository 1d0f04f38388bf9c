/*
 * store_helpers.h - what the embedded store's unit tests (test_store_hotpath.c,
 * test_store_lease.c) both need: a store directory of their own, stores
 * opened in it, runs started in them and a number read by SQL.
 * Header-only, static: each test_*.c is its own executable.
 */
#ifndef JORCH_STORE_HELPERS_H
#define JORCH_STORE_HELPERS_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store/store_int.h"

/* The store directory of the test case running. */
static char home[256];

/* A new empty directory $TMPDIR/PREFIX-XXXXXX (or under /tmp) as home;
 * exits the test when it cannot be made. */
static void home_new(const char *prefix) {
    const char *t = getenv("TMPDIR");
    snprintf(home, sizeof home, "%s/%s-XXXXXX", t && *t ? t : "/tmp", prefix);
    if (!mkdtemp(home)) {
        perror("mkdtemp");
        exit(1);
    }
}

/* Removes home and the store's files in it. */
static void home_remove(void) {
    static const char *const files[] = {"jorch.db", "jorch.db-wal", "jorch.db-shm"};
    char p[512];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", home, files[i]);
        unlink(p);
    }
    rmdir(home);
}

/* Another connection to the store in home in *s; false, *s NULL and the
 * error printed when it cannot be opened. (*s is the caller's: a pointer
 * that store_open wrote to a local of this function would, for GCC's
 * -Wdangling-pointer, be one to a variable gone at the return.) */
static bool open_store(store **s) {
    jerr e = {0};
    *s = NULL;
    if (store_open(home, s, &e) == 0) return true;
    fprintf(stderr, "store_open: %s\n", e.msg);
    return false;
}

/* Starts a run of a one-line script with workflow_id (NULL: the store
 * names it); run_id is its run id, or "" with the error printed. */
static void start_run(store *s, const char *workflow_id, char run_id[40]) {
    static const char src[] = "return function() return 1 end";
    store_new_run nr = {.workflow_id = workflow_id, .workflow_type = "w", .script_name = "w.lua", .script_src = src,
                        .script_len = sizeof src - 1};
    store_run r;
    jerr e = {0};
    run_id[0] = '\0';
    if (store_run_start(s, &nr, &r, &e) != 0) {
        fprintf(stderr, "store_run_start: %s\n", e.msg);
        return;
    }
    snprintf(run_id, 40, "%s", r.run_id);
}

/* The first column of the first row of sql, or -1 when there is none. */
static int64_t one_int(store *s, const char *sql) {
    sqlite3_stmt *q = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

#endif
