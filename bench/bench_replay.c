/*
 * bench_replay - replay speed and the memory of one loaded run.
 *
 * Builds a 10,000-event history (a workflow that runs activities one after
 * another, as a server records it), writes it as Temporal JSON and reads it
 * back, then replays it through the engine several times and prints events
 * per second, plus the Lua heap of one loaded run.
 *   usage: bench_replay [ROUNDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tests/unit/history_builder.h"
#include "engine/engine.h"

static const char *script =
    "local acts = workflow.activities{start_to_close_timeout = '1 minute'}\n"
    "return function(n)\n"
    "  local total = 0\n"
    "  for i = 1, n do total = total + acts.step(i) end\n"
    "  return total\n"
    "end\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1) rounds = 1;
    const int activities = 1666; /* 6 events each + 4 = 10,000 events */
    hb h;
    hb_init(&h);
    char n[16];
    snprintf(n, sizeof n, "%d", activities);
    const char *args[] = {n};
    hb_started(&h, "bench", args, 1);
    for (int i = 1; i <= activities; i++) {
        hb_task(&h);
        char id[16], res[16];
        snprintf(id, sizeof id, "%d", i);
        snprintf(res, sizeof res, "%d", i);
        int64_t s = hb_activity_scheduled(&h, id, "step");
        hb_activity_completed(&h, s, res);
    }
    hb_open_task(&h);
    printf("history: %zu events\n", h.n);

    /* through the JSON reader, as `jorch replay` reads a recorded file */
    Temporal__Api__History__V1__History hist = TEMPORAL__API__HISTORY__V1__HISTORY__INIT;
    hist.events = h.ev;
    hist.n_events = h.n;
    jbuf b;
    jbuf_init(&b, 0);
    jerr e = {0};
    if (protojson_write(&hist.base, 0, &b, &e) != 0) {
        fprintf(stderr, "bench_replay: writing JSON failed: %s\n", e.msg);
        return 1;
    }
    double t0 = now_s();
    Temporal__Api__History__V1__History *parsed = protojson_parse_history(b.data, b.len, &e);
    double t1 = now_s();
    if (!parsed) {
        fprintf(stderr, "bench_replay: parsing JSON failed: %s\n", e.msg);
        return 1;
    }
    printf("json: %.1f MiB parsed in %.1f ms (%.0f events/s)\n", (double)b.len / 1048576.0, (t1 - t0) * 1e3,
           (double)h.n / (t1 - t0));

    double best = 1e9;
    size_t mem = 0;
    for (int r = 0; r < rounds; r++) {
        engine_run_config cfg = {.script_name = "bench.lua", .script_src = script, .script_len = strlen(script),
                                 .limits = engine_limits_default(), .workflow_id = "bench", .run_id = "bench"};
        engine_run *run = engine_run_new(&cfg, &e);
        engine_output out;
        double a = now_s();
        int rc = engine_run_feed(run, parsed->events, parsed->n_events, &out, &e);
        double d = now_s() - a;
        if (rc != 0 || out.n_commands != 1) {
            fprintf(stderr, "bench_replay: replay failed: %s\n", e.msg);
            return 1;
        }
        if (d < best) best = d;
        mem = engine_run_memory(run);
        engine_run_free(run);
    }
    printf("replay: %zu events in %.1f ms (best of %d) = %.0f events/s\n", parsed->n_events, best * 1e3, rounds,
           (double)parsed->n_events / best);
    printf("memory: %.1f KiB of Lua heap for the run after replaying 10,000 events\n", (double)mem / 1024.0);

    /* a freshly loaded run: the sandbox, jorch.workflow and the script */
    hb small;
    hb_init(&small);
    hb_started(&small, "bench", args, 1);
    hb_open_task(&small);
    engine_run_config cfg = {.script_name = "bench.lua", .script_src = script, .script_len = strlen(script),
                             .limits = engine_limits_default(), .workflow_id = "bench", .run_id = "bench"};
    engine_run *run = engine_run_new(&cfg, &e);
    engine_output out;
    engine_run_feed(run, small.ev, small.n, &out, &e);
    printf("memory: %.1f KiB of Lua heap for one loaded run at its first task\n", (double)engine_run_memory(run) / 1024.0);
    engine_run_free(run);

    /* what a worker without a cache of runs does for every workflow task:
     * a new engine (sandbox, jorch.workflow, the script) and a first task,
     * with the orchestrator's script */
    char *orch = NULL;
    size_t orch_len = 0;
    if (file_read_all("workflows/orchestrate.lua", 1u << 20, &orch, &orch_len, &e) != 0) {
        fprintf(stderr, "bench_replay: %s (run from the repository root)\n", e.msg);
        return 1;
    }
    hb otask;
    hb_init(&otask);
    const char *oargs[] = {"\"PROJ-1\""};
    hb_started(&otask, "orchestrate", oargs, 1);
    hb_open_task(&otask);
    const int tasks = 200;
    double ta = now_s();
    for (int i = 0; i < tasks; i++) {
        engine_run_config oc = {.script_name = "workflows/orchestrate.lua", .script_src = orch,
                                .script_len = orch_len, .limits = engine_limits_default(),
                                .workflow_id = "bench", .run_id = "bench"};
        engine_run *o = engine_run_new(&oc, &e);
        if (!o || engine_run_feed(o, otask.ev, otask.n, &out, &e) != 0) {
            fprintf(stderr, "bench_replay: orchestrate's first task failed: %s\n", e.msg);
            return 1;
        }
        engine_run_free(o);
    }
    double td = now_s() - ta;
    printf("task: a new engine and the first task of workflows/orchestrate.lua: %.2f ms (mean of %d)\n",
           td * 1e3 / tasks, tasks);
    free(orch);
    hb_free(&otask);
    hb_free(&small);
    protobuf_c_message_free_unpacked(&parsed->base, NULL);
    jbuf_free(&b);
    hb_free(&h);
    return 0;
}
