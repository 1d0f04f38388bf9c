/*
 * test_store_lease.c - the embedded store's one-executor rules: a lease
 * taken over fences the old owner out of every write, a dead owner's lease
 * is free at once only where liveness can be checked, requests from other
 * terminals never take a run from a live executor, and a store of schema 1
 * gains the lease generation when opened.
 */
#include <string.h>
#include <sys/wait.h>

#include "store_helpers.h"
#include "test.h"

static void sql(store *s, const char *q) {
    jerr e = {0};
    if (store_exec(s, q, &e) != 0) fprintf(stderr, "%s: %s\n", q, e.msg);
}

static int64_t history_length(store *s, const char *run_id) {
    store_run r;
    jerr e = {0};
    return store_run_find(s, run_id, &r, &e) == 0 ? r.history_length : -1;
}

/* Two connections of this process, the second posing as a process on
 * another host (whose liveness cannot be checked). */
static void test_takeover_fences_the_old_owner(void) {
    home_new("jorch-lease");
    store *a = NULL, *b = NULL;
    CHECK(open_store(&a) && open_store(&b));
    if (!a || !b) return;
    snprintf(b->owner, sizeof b->owner, "4242@elsewhere.invalid");
    char run[40];
    start_run(a, "w", run);
    int64_t ga = 0, gb = 0;
    jerr e = {0};
    CHECK(store_lease_acquire(a, run, &ga, &e) == 0);
    CHECK(store_lease_acquire(b, run, &gb, &e) != 0);
    CHECK_CONTAINS(e.msg, "is being executed by process");
    /* a's lease runs out (a stopped); b takes the run over */
    sql(a, "UPDATE runs SET lease_until=1");
    memset(&e, 0, sizeof e);
    CHECK(store_lease_acquire(b, run, &gb, &e) == 0);
    CHECK_INT(gb, ga + 1);
    /* a continues: every write of a is refused, inside its transaction */
    CHECK(store_begin(a, &e) == 0);
    CHECK(store_lease_check(a, run, ga, &e) != 0);
    CHECK_CONTAINS(e.msg, "no longer owns the run");
    CHECK_CONTAINS(e.msg, "process 4242@elsewhere.invalid took it over");
    CHECK_INT(e.code, JERR_USAGE);
    store_rollback(a);
    memset(&e, 0, sizeof e);
    CHECK_INT(store_lease_renew(a, run, ga, &e), -1);
    CHECK_CONTAINS(e.msg, "no longer owns the run");
    store_lease_release(a, run, ga); /* must not free b's lease */
    CHECK(store_begin(b, &e) == 0);
    CHECK(store_lease_check(b, run, gb, &e) == 0);
    CHECK(store_commit(b, &e) == 0);
    CHECK_INT(store_lease_renew(b, run, gb, &e), 0);
    store_close(a);
    store_close(b);
    home_remove();
}

static void test_dead_owner_is_free_at_once(void) {
    home_new("jorch-lease");
    store *a = NULL, *b = NULL;
    CHECK(open_store(&a) && open_store(&b));
    if (!a || !b) return;
    char run[40];
    start_run(a, "w", run);
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    /* b: a process of this host and pid namespace that has exited */
    snprintf(b->owner, sizeof b->owner, "%ld%s", (long)child, strchr(a->owner, '@'));
    int64_t ga = 0, gb = 0;
    jerr e = {0};
    CHECK(store_lease_acquire(b, run, &gb, &e) == 0);
    CHECK(store_lease_acquire(a, run, &ga, &e) == 0); /* its lease has not expired */
    CHECK_INT(ga, gb + 1);
    store_lease_release(a, run, ga);
    /* the same pid in another pid namespace cannot be checked: wait for the expiry */
    snprintf(b->owner, sizeof b->owner, "%ld%s-other", (long)child, strchr(a->owner, '@'));
    if (!strchr(a->owner, ' ')) snprintf(b->owner, sizeof b->owner, "%ld@elsewhere.invalid", (long)child);
    CHECK(store_lease_acquire(b, run, &gb, &e) == 0);
    CHECK(store_lease_acquire(a, run, &ga, &e) != 0);
    store_close(a);
    store_close(b);
    home_remove();
}

/* A request from another terminal is applied at once only when no process
 * may be executing the run; it then takes a generation of its own. */
static void test_requests_never_take_a_live_run(void) {
    home_new("jorch-lease");
    store *a = NULL, *c = NULL;
    CHECK(open_store(&a) && open_store(&c));
    if (!a || !c) return;
    /* c: another process on this host (the executor a is this live process) */
    snprintf(c->owner, sizeof c->owner, "1%s", strchr(a->owner, '@'));
    char run[40];
    start_run(a, "w", run);
    int64_t ga = 0;
    jerr e = {0};
    CHECK(store_lease_acquire(a, run, &ga, &e) == 0);
    sql(a, "UPDATE runs SET lease_until=1"); /* a is stalled past its lease, but alive */
    int64_t len = history_length(a, run);
    CHECK(store_inbox_add(c, run, INBOX_SIGNAL, "go", NULL, NULL, &e) == 0);
    store_apply_if_idle(c, run);
    CHECK_INT(history_length(a, run), len); /* queued for a, not applied */
    CHECK(store_begin(a, &e) == 0);
    CHECK(store_lease_check(a, run, ga, &e) == 0); /* a still owns the run */
    store_rollback(a);
    /* once a has let go, the request is applied at once, fencing a out */
    store_lease_release(a, run, ga);
    store_apply_if_idle(c, run);
    CHECK(history_length(a, run) > len);
    CHECK(store_begin(a, &e) == 0);
    CHECK(store_lease_check(a, run, ga, &e) != 0);
    store_rollback(a);
    store_close(a);
    store_close(c);
    home_remove();
}

static int schema_version(store *s) {
    return (int)one_int(s, "SELECT value FROM meta WHERE key='schema_version'");
}

static void test_old_store_is_upgraded(void) {
    home_new("jorch-lease");
    store *s = NULL;
    CHECK(open_store(&s));
    if (!s) return;
    char run[40];
    start_run(s, "w", run);
    CHECK_INT(schema_version(s), STORE_SCHEMA_VERSION);
    /* make it a store of schema 1: no lease generations (2), no activities
     * directories (3), no bundle versions (4), no failed task retries (5),
     * no webhook deliveries (6) */
    sql(s, "ALTER TABLE runs DROP COLUMN lease_gen; ALTER TABLE runs DROP COLUMN activities_dir;"
           " ALTER TABLE runs DROP COLUMN version_sha; DROP TABLE versions;"
           " ALTER TABLE runs DROP COLUMN task_attempts; ALTER TABLE runs DROP COLUMN task_retry_at;"
           " DROP TABLE webhook_deliveries;"
           " UPDATE meta SET value='1' WHERE key='schema_version'");
    store_close(s);
    CHECK(open_store(&s));
    if (!s) return;
    CHECK_INT(schema_version(s), STORE_SCHEMA_VERSION);
    int64_t g = 0;
    jerr e = {0};
    /* a run from before bundles: its version is named by its script */
    store_run r;
    CHECK(store_run_find(s, run, &r, &e) == 0);
    CHECK(strcmp(r.version_sha, r.script_sha) == 0);
    CHECK(store_lease_acquire(s, run, &g, &e) == 0);
    CHECK_INT(g, 1);
    /* a store from a newer jorch is refused, not modified */
    sql(s, "UPDATE meta SET value='99' WHERE key='schema_version'");
    store_close(s);
    store *n = NULL;
    CHECK(store_open(home, &n, &e) != 0);
    CHECK_CONTAINS(e.msg, "newer jorch");
    home_remove();
}

TEST_MAIN(TEST_CASE(test_takeover_fences_the_old_owner), TEST_CASE(test_dead_owner_is_free_at_once),
          TEST_CASE(test_requests_never_take_a_live_run), TEST_CASE(test_old_store_is_upgraded))
