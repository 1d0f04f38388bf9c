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

enum { O_WORKFLOWS, O_ACTIVITIES, O_TASK_QUEUE, O_REQUIRE_KNOWN };

static const cli_opt worker_opts[] = {
    {"workflows", 1, O_WORKFLOWS}, {"activities", 1, O_ACTIVITIES}, {"task-queue", 1, O_TASK_QUEUE},
    {"require-known-scripts", 0, O_REQUIRE_KNOWN}, {NULL, 0, 0}};

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

    /* Signals are caught before the worker starts; its threads block them. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    jerr err = {0};
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
