/*
 * bench_embedded - workflows per second end to end on the embedded backend
 * with durable commits (WAL, synchronous=FULL): each workflow runs one
 * activity, so it commits a start, two workflow tasks and the activity.
 *   usage: bench_embedded [WORKFLOWS]   (run from the repository root)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

static const char *script =
    "return function(x) return workflow.execute_activity('mark', {'A', x}, {start_to_close_timeout = 10}) end\n";

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    if (n < 1) n = 1;
    char home[] = "/tmp/jorch-bench.XXXXXX";
    if (!mkdtemp(home)) {
        perror("bench_embedded: mkdtemp");
        return 1;
    }
    store *s = NULL;
    jerr e = {0};
    if (store_open(home, &s, &e) != 0) {
        fprintf(stderr, "bench_embedded: %s\n", e.msg);
        return 1;
    }
    store_runner_opts o = {.activities_dir = "tests/cli/activities", .quiet = true, .stop_on_task_failure = true};
    Temporal__Api__Common__V1__Payloads *in = payloads_new();
    payloads_add(in, payload_new_json("1", 1));
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        store_new_run nr = {.workflow_type = "bench", .script_name = "bench.lua", .script_src = script,
                            .script_len = strlen(script), .input = in};
        store_run r, fin;
        if (store_run_start(s, &nr, &r, &e) != 0 || store_runner_execute(s, r.run_id, &o, &fin, &e) != 0 ||
            fin.status != RUN_COMPLETED) {
            fprintf(stderr, "bench_embedded: workflow %d failed: %s\n", i, e.msg);
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    printf("embedded: %d one-activity workflows in %.2f s = %.1f workflows/s (durable commits)\n", n, secs, n / secs);
    protobuf_c_message_free_unpacked(&in->base, NULL);
    store_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", home);
    if (system(cmd) != 0) fprintf(stderr, "bench_embedded: could not remove %s\n", home);
    return 0;
}
