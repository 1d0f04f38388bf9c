/*
 * cli.h - the public face of runtime/cli: the `jorch` verbs.
 *
 * The client verbs (start, signal, query, describe, list, history, result,
 * cancel, terminate) work the same on both backends. Each backend provides
 * a cli_client: a table of operations whose inputs and outputs are the
 * Temporal API's own messages, so the CLI formats one representation and
 * the two backends cannot drift apart in what they show.
 */
#ifndef JORCH_CLI_H
#define JORCH_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"
#include "temporal/api/workflowservice/v1/request_response.pb-c.h"

/* Exit codes (ARCHITECTURE.md): 0 success, 1 workflow failed, 2 usage or
 * configuration error, 3 cannot reach the backend. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2, CLI_UNREACHABLE = 3 };

int cli_main(int argc, char **argv);

/* Options of `start` that both backends honour. */
typedef struct cli_start_opts {
    const char *workflow_id;   /* NULL: "<type>-<uuid>" */
    const char *workflow_type; /* script basename without .lua */
    const char *task_queue;    /* NULL: the configured default */
    const char *script_path;   /* embedded backend: the script to pin; may be NULL on Temporal */
    const char *activities_dir; /* embedded backend: the run's activities (absolute); NULL: the default */
    Temporal__Api__Common__V1__Payloads *input;
} cli_start_opts;

typedef struct cli_client cli_client;

/* Every operation returns 0 or -1 with err filled (err->code: JERR_USAGE for
 * unknown ids and bad requests, JERR_BACKEND when the backend is
 * unreachable). Messages returned through out-parameters are malloc'ed
 * protobuf-c messages (or unpacked by protobuf-c); free them with
 * protobuf_c_message_free_unpacked(m, NULL). */
typedef struct cli_client_ops {
    int (*start)(cli_client *c, const cli_start_opts *o, char **run_id, jerr *err);
    int (*signal)(cli_client *c, const char *workflow_id, const char *name,
                  Temporal__Api__Common__V1__Payloads *args, jerr *err);
    /* result: the answer payloads; a rejected query is an error. */
    int (*query)(cli_client *c, const char *workflow_id, const char *name,
                 Temporal__Api__Common__V1__Payloads *args,
                 Temporal__Api__Common__V1__Payloads **result, jerr *err);
    int (*describe)(cli_client *c, const char *workflow_id,
                    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse **out,
                    jerr *err);
    /* query: a Temporal visibility query or NULL; status filter applied by the CLI. */
    int (*list)(cli_client *c, const char *query,
                Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse **out,
                jerr *err);
    /* All pages. */
    int (*history)(cli_client *c, const char *workflow_id,
                   Temporal__Api__History__V1__History **out, jerr *err);
    /* Waits (up to timeout_ms, <0 forever) for the run to close and returns its
     * close event (Completed, Failed, Canceled, Terminated, TimedOut, ContinuedAsNew:
     * for the last, follows the chain to the newest run). */
    int (*result)(cli_client *c, const char *workflow_id, int64_t timeout_ms,
                  Temporal__Api__History__V1__HistoryEvent **close_event, jerr *err);
    int (*cancel)(cli_client *c, const char *workflow_id, const char *reason, jerr *err);
    int (*terminate)(cli_client *c, const char *workflow_id, const char *reason, jerr *err);
    void (*free)(cli_client *c);
    /* What the run is doing beyond DescribeWorkflowExecution: one JSON
     * object appended to json (see store_observe_json). NULL when the
     * backend cannot tell (Temporal). */
    int (*observe)(cli_client *c, const char *workflow_id, jbuf *json, jerr *err);
} cli_client_ops;

struct cli_client {
    const cli_client_ops *ops;
    void *impl;
};

/* The client of the backend the options select: Temporal when temporal
 * is set or FEATURE_TEMPORAL_ENABLED is true, otherwise the embedded store
 * in home (NULL: $JORCH_HOME, else ./.jorch; cli_home_dir says which). */
cli_client *cli_client_open(bool temporal, const char *home, jerr *err);
const char *cli_home_dir(const char *home_opt);
/* Embedded backend: starts the process that executes run ID (workflow or
 * run id) in the background, as `jorch start` does: `jorch resume --home
 * HOME [--activities DIR] ID` in a new session, output appended to
 * HOME/logs/ID.log. ID goes to execv, never to a shell. */
int cli_spawn_executor(const char *home, const char *id, const char *activities_dir, jerr *err);
/* Embedded backend: has run RUN_ID executed in the background as `jorch
 * start` does: handed to the store's service (started when none runs),
 * else a process of its own (cli_spawn_executor). */
int cli_execute_background(const char *home, const char *run_id, const char *activities_dir, jerr *err);

/* The Temporal backend's client (runtime/cli/cli_temporal.c), configured
 * from the environment and jorch.yaml (TEMPORAL_ADDRESS, ...). */
cli_client *cli_temporal_client_new(jerr *err);

#endif
