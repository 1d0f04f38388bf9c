/*
 * cli_worker.c - `jorch worker`: its options, its first line, and waiting
 * for SIGINT/SIGTERM. The worker itself is runtime/temporal's (tc_worker.c).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli_int.h"
#include "temporal/temporal.h"

static volatile sig_atomic_t g_signal = 0;

static void on_signal(int sig) { g_signal = sig; }

enum {
    O_WORKFLOWS, O_ACTIVITIES, O_TASK_QUEUE, O_REQUIRE_KNOWN,
    O_WFT_SLOTS, O_ACT_SLOTS, O_WFT_POLLERS, O_ACT_POLLERS, O_CACHED, O_CACHE_MB, O_STICKY_TIMEOUT,
    O_NO_EAGER,
};

static const cli_opt worker_opts[] = {
    {"workflows", 1, O_WORKFLOWS}, {"activities", 1, O_ACTIVITIES}, {"task-queue", 1, O_TASK_QUEUE},
    {"require-known-scripts", 0, O_REQUIRE_KNOWN},
    {"max-concurrent-workflow-task-executions", 1, O_WFT_SLOTS},
    {"max-concurrent-activity-executions", 1, O_ACT_SLOTS},
    {"max-concurrent-workflow-task-pollers", 1, O_WFT_POLLERS},
    {"max-concurrent-activity-task-pollers", 1, O_ACT_POLLERS},
    {"max-cached-workflows", 1, O_CACHED},
    {"cache-memory-mb", 1, O_CACHE_MB},
    {"sticky-schedule-to-start-timeout", 1, O_STICKY_TIMEOUT},
    {"disable-eager-activities", 0, O_NO_EAGER},
    {NULL, 0, 0}};

/* The flags that set a worker setting, and its name in jorch.yaml. */
static const struct {
    int id;
    const char *key;
} setting_flags[] = {
    {O_WFT_SLOTS, "max_concurrent_workflow_task_executions"},
    {O_ACT_SLOTS, "max_concurrent_activity_executions"},
    {O_WFT_POLLERS, "max_concurrent_workflow_task_pollers"},
    {O_ACT_POLLERS, "max_concurrent_activity_task_pollers"},
    {O_CACHED, "max_cached_workflows"},
    {O_CACHE_MB, "cache_memory_mb"},
    {O_STICKY_TIMEOUT, "sticky_schedule_to_start_timeout"},
    {O_NO_EAGER, "disable_eager_activities"},
};

static const char worker_help[] =
    "Usage: jorch worker [--workflows DIR] [--activities DIR] [--task-queue Q]\n\n"
    "Serves workflows and activities on a Temporal task queue until SIGINT or\n"
    "SIGTERM. A workflow of type T runs DIR/T.lua from --workflows; activities are\n"
    "the modules in --activities. Workflows started with\n"
    "'jorch start --temporal SCRIPT' (or 'temporal workflow start --type T') on the\n"
    "same task queue run here, unchanged. A run started with 'jorch start --temporal\n"
    "SCRIPT.lua' carries its script version and replays on it, whatever DIR holds.\n"
    "Options:\n"
    "  --workflows DIR    workflow scripts (default ./workflows)\n"
    "  --activities DIR   activity modules (default ./activities)\n"
    "  --task-queue Q     task queue (default $TEMPORAL_TASK_QUEUE, temporal.task_queue\n"
    "                     in jorch.yaml, or jira-orchestration)\n"    "  --require-known-scripts  fail the workflow task of a run whose script version\n"
    "                     is not DIR/TYPE.lua (only reviewed scripts run)\n"
    "Capacity (also the worker: section of jorch.yaml, same names with '_'):\n"
    "  --max-concurrent-workflow-task-executions N  workflow tasks at once (default 4)\n"
    "  --max-concurrent-activity-executions N       activity attempts at once (default 8)\n"
    "  --max-concurrent-workflow-task-pollers N     workflow polls at once (default 4)\n"
    "  --max-concurrent-activity-task-pollers N     activity polls at once (default 2)\n"
    "  --max-cached-workflows N   runs kept in memory between their tasks, served from\n"
    "                     this worker's sticky queue (default 1000; 0: none, every\n"
    "                     task replays the full history)\n"
    "  --cache-memory-mb N        memory budget of those runs (default 512)\n"
    "  --sticky-schedule-to-start-timeout D  how long a cached run's task waits for\n"
    "                     this worker before the server gives it to any (default 5s)\n"
    "  --disable-eager-activities  never ask the server to hand an activity of this\n"
    "                     task queue back in the workflow task's completion (eager\n"
    "                     activities, on when the server allows them: fewer calls;\n"
    "                     off: any worker of the queue may take every activity)\n"
    "Connection: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*\n"
    "and the temporal: section of jorch.yaml, as for 'jorch start --temporal'.\n"
    "Activities see jorch.yaml as jorch.config, with home = $JORCH_HOME or ./.jorch.\n"
    "Exit: 0 after a signal, 2 on bad options or configuration, 3 when the server\n"
    "cannot be reached at start-up.\n";

static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}


int cli_verb_worker(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse("worker", argc, argv, worker_opts, false, &a);
    if (rc) return rc;
    if (a.help) {
        fputs(worker_help, stdout);
        return 0;
    }
    if (a.npos > 0) return cli_usage_error("worker", "unexpected argument '%s'", a.pos[0]);

    tc_worker_opts o = {
        .workflows_dir = a.set[O_WORKFLOWS] ? a.val[O_WORKFLOWS] : "workflows",
        .activities_dir = a.set[O_ACTIVITIES] ? a.val[O_ACTIVITIES] : "activities",
        .task_queue = a.set[O_TASK_QUEUE] ? a.val[O_TASK_QUEUE] : NULL,
        .require_known_scripts = a.set[O_REQUIRE_KNOWN],
    };
    if (o.workflows_dir[0] == '\0' || !is_dir(o.workflows_dir)) {
        cli_errorf("workflows directory '%s' not found (run in the project directory or pass --workflows DIR)",
                   o.workflows_dir);
        return CLI_USAGE;
    }
    if (o.activities_dir[0] == '\0' || !is_dir(o.activities_dir)) {
        cli_errorf("activities directory '%s' not found (run in the project directory or pass --activities DIR)",
                   o.activities_dir);
        return CLI_USAGE;
    }
    if (o.task_queue != NULL && o.task_queue[0] == '\0')
        return cli_usage_error("worker", "--task-queue needs a queue name");

    tc_worker_settings set;
    tc_worker_settings_default(&set);
    jerr err = {0};
    if (tc_worker_settings_load(&set, &err) != 0) {
        cli_errorf("%s", err.msg);
        return cli_exit_for(&err);
    }
    for (size_t i = 0; i < sizeof setting_flags / sizeof setting_flags[0]; i++) {
        int id = setting_flags[i].id;
        if (!a.set[id]) continue;
        char source[200];
        snprintf(source, sizeof source, "--%s", worker_opts[id].name);
        const char *v = id == O_NO_EAGER ? "true" : a.val[id]; /* a flag without a value */
        if (tc_worker_settings_set(&set, setting_flags[i].key, v, source, &err) != 0)
            return cli_usage_error("worker", "%s", err.msg);
    }
    o.settings = &set;

    /* Signals are caught before the worker starts; its threads block them. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    tc_worker *w = tc_worker_start(&o, &err);
    if (w == NULL) {
        cli_errorf("%s", err.msg);
        return cli_exit_for(&err);
    }
    const tc_config *cfg = tc_worker_config(w);
    printf("worker: polling task queue %s on %s (namespace %s)\n", tc_worker_task_queue(w), cfg->address,
           cfg->namespace_);
    fflush(stdout);
    tc_worker_log("workflows from %s, activities from %s; stop with Ctrl-C or SIGTERM", o.workflows_dir,
                  o.activities_dir);
    while (g_signal == 0) {
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    tc_worker_log("stopping (%s)", g_signal == SIGINT ? "SIGINT" : "SIGTERM");
    tc_worker_stop(w);
    tc_worker_log("stopped");
    return CLI_OK;
}
