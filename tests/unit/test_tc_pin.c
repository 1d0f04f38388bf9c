/*
 * test_tc_pin.c - script versions of a Temporal worker's runs
 * (runtime/temporal/tc_pin.c) without a server: a run started without a
 * version takes the worker's own, runs of one version share one copy of
 * it (a worker caching many runs holds one copy of the script's text), an
 * edited script is another version, and every holder frees its own (ASan
 * catches a double free or a leak).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "history_builder.h"
#include "temporal/temporal.h"
#include "test.h"

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL) abort();
    fputs(text, f);
    fclose(f);
}

/* One task of a fresh run of type "flow" on the worker's directory dir. */
static tc_pin_version *first_task(const char *dir, const char *run_id) {
    hb h;
    hb_init(&h);
    const char *args[] = {"\"K\""};
    hb_started(&h, "flow", args, 1);
    hb_open_task(&h);
    tc_pin_in in = {.wf_dir = dir, .type = "flow", .completes = true, .namespace_ = "default",
                    .workflow_id = run_id, .run_id = run_id};
    tc_pin_task t;
    jerr err = {0};
    int rc = tc_pin_task_run(&in, h.ev, h.n, &t, &err);
    CHECK_INT(rc, 0);
    if (rc != 0) fprintf(stderr, "  %s\n", err.msg);
    CHECK(t.n_commands >= 1); /* the activity (and the version record: no memo yet) */
    tc_pin_version *v = t.version;
    t.version = NULL; /* taken, as the worker does */
    engine_run_free(t.run);
    t.run = NULL;
    tc_pin_task_free(&t);
    hb_free(&h);
    return v;
}

static void one_copy_per_version(void) {
    char dir[] = "/tmp/jorch-tc-pin-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/flow.lua", dir);
    write_file(path, "return function(k) return workflow.execute_activity('a', {k}, "
                     "{start_to_close_timeout = 10}) end\n");
    tc_pin_version *a = first_task(dir, "r1");
    tc_pin_version *b = first_task(dir, "r2");
    CHECK(a != NULL && b != NULL);
    CHECK(a == b); /* one copy, two holders */
    char digest[65];
    snprintf(digest, sizeof digest, "%s", tc_pin_version_digest(a));
    tc_pin_version_free(a); /* the other holder still has it */
    CHECK(strcmp(tc_pin_version_digest(b), digest) == 0);

    write_file(path, "-- edited\nreturn function(k) return workflow.execute_activity('a', {k}, "
                     "{start_to_close_timeout = 10}) end\n");
    tc_pin_version *c = first_task(dir, "r3");
    CHECK(c != NULL && c != b);
    CHECK(strcmp(tc_pin_version_digest(c), digest) != 0);
    tc_pin_version_free(b);
    tc_pin_version_free(c);
    tc_pin_version *d = first_task(dir, "r4"); /* all freed: a new copy, shared again later */
    CHECK(d != NULL);
    tc_pin_version_free(d);
    unlink(path);
    rmdir(dir);
}

TEST_MAIN(TEST_CASE(one_copy_per_version))
