/*
 * test_store_hotpath.c - what the embedded store does to keep each workflow
 * step cheap must never change what it stores: cached statements come back
 * reset and unbound (a released read holds no snapshot), nested use of one
 * statement works, transactions without their own fdatasync put durable
 * commits back however they end, and the incremental history size equals
 * a full count.
 */
#include <string.h>

#include "store_helpers.h"
#include "test.h"

static void test_cached_statements_are_reset_and_unbound(void) {
    home_new("jorch-hot");
    store *s = NULL;
    CHECK(open_store(&s));
    if (!s) return;
    static const char sql[] = "SELECT ?1 IS NULL, (SELECT count(*) FROM runs)";
    jerr e = {0};
    sqlite3_stmt *a = store_prep(s, sql, &e);
    CHECK(a != NULL);
    if (!a) return;
    sqlite3_bind_int(a, 1, 7);
    CHECK_INT(sqlite3_step(a), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(a, 0), 0);
    /* nested: the same SQL while the first is out is another statement */
    char copy[sizeof sql];
    memcpy(copy, sql, sizeof sql); /* another pointer, the same text */
    sqlite3_stmt *b = store_prep(s, copy, &e);
    CHECK(b != NULL && b != a);
    if (b) {
        CHECK_INT(sqlite3_step(b), SQLITE_ROW);
        CHECK_INT(sqlite3_column_int(b, 0), 1);
        store_release(s, b);
    }
    store_release(s, a); /* mid-result: released with a row pending */
    /* a released read holds no snapshot: another connection's write and a
     * full checkpoint go through, and this connection sees the new row */
    store *other = NULL;
    CHECK(open_store(&other));
    char run[40];
    if (other) start_run(other, NULL, run);
    CHECK_INT(one_int(s, "PRAGMA wal_checkpoint(TRUNCATE)"), 0); /* 0: not blocked by a reader */
    sqlite3_stmt *c = store_prep(s, sql, &e);
    CHECK(c == a); /* from the cache, not prepared again */
    if (c) {
        CHECK_INT(sqlite3_step(c), SQLITE_ROW);
        CHECK_INT(sqlite3_column_int(c, 0), 1); /* the binding of its last use is gone */
        CHECK_INT(sqlite3_column_int(c, 1), 1);
        store_release(s, c);
    }
    /* a bad statement is an error, not a crash, and not cached */
    CHECK(store_prep(s, "SELECT FROM nowhere", &e) == NULL);
    CHECK_CONTAINS(e.msg, "failed");
    store_close(other);
    store_close(s); /* finalises the cache: a live statement would make close fail and leak */
    home_remove();
}

static void test_nosync_transactions_restore_durable_commits(void) {
    home_new("jorch-hot");
    store *s = NULL;
    CHECK(open_store(&s));
    if (!s) return;
    jerr e = {0};
    CHECK_INT(one_int(s, "PRAGMA synchronous"), 2); /* FULL */
    CHECK(store_begin_nosync(s, &e) == 0);
    CHECK_INT(one_int(s, "PRAGMA synchronous"), 1); /* NORMAL for this transaction only */
    CHECK(store_commit(s, &e) == 0);
    CHECK_INT(one_int(s, "PRAGMA synchronous"), 2);
    CHECK(store_begin_nosync(s, &e) == 0);
    store_rollback(s);
    CHECK_INT(one_int(s, "PRAGMA synchronous"), 2);
    /* a failing commit (the log replaced under it) restores it too */
    CHECK(store_begin_nosync(s, &e) == 0);
    s->wal_ino++;
    CHECK(store_commit(s, &e) != 0);
    s->wal_ino--;
    CHECK_INT(one_int(s, "PRAGMA synchronous"), 2);
    /* an ordinary transaction stays durable */
    CHECK(store_begin(s, &e) == 0);
    CHECK_INT(one_int(s, "PRAGMA synchronous"), 2);
    CHECK(store_commit(s, &e) == 0);
    store_close(s);
    home_remove();
}

static void test_history_size_counts_what_was_added(void) {
    home_new("jorch-hot");
    store *s = NULL;
    CHECK(open_store(&s));
    if (!s) return;
    char a[40], b[40];
    start_run(s, NULL, a);
    start_run(s, NULL, b);
    jerr e = {0};
    for (int round = 0; round < 3; round++) {
        const char *runs[2] = {a, b};
        for (int k = 0; k < 2; k++) {
            CHECK(store_begin(s, &e) == 0);
            for (int i = 0; i <= round + k; i++) { /* a different number of events each time */
                CHECK(store_schedule_wft(s, runs[k], &e) == 0);
                store_clear_wft(s, runs[k]);
            }
            CHECK(store_commit(s, &e) == 0);
            int64_t n = 0, bytes = 0;
            CHECK(store_history_size(s, runs[k], &n, &bytes, &e) == 0);
            char sql[200];
            snprintf(sql, sizeof sql, "SELECT count(*) FROM events WHERE run_id='%s'", runs[k]);
            CHECK_INT(n, one_int(s, sql));
            snprintf(sql, sizeof sql, "SELECT sum(length(data)) FROM events WHERE run_id='%s'", runs[k]);
            CHECK_INT(bytes, one_int(s, sql));
        }
    }
    store_close(s);
    home_remove();
}

TEST_MAIN(TEST_CASE(test_cached_statements_are_reset_and_unbound),
          TEST_CASE(test_nosync_transactions_restore_durable_commits),
          TEST_CASE(test_history_size_counts_what_was_added))
