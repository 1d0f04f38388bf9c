/*
 * cli_temporal.c - the Temporal backend of the client verbs: the cli_client
 * table over runtime/temporal's client (tc_client.c), which makes the calls
 * and words their failures. Only the script version memo of `start` is
 * built here (cli_pin.c).
 */
#include <stdlib.h>

#include "cli/cli.h"
#include "cli/cli_int.h"
#include "temporal/temporal.h"

static tc_client *tc_of(cli_client *c) { return c->impl; }

static int op_start(cli_client *c, const cli_start_opts *o, char **run_id, jerr *err) {
    *run_id = NULL;
    tc_start_opts so = {.workflow_id = o->workflow_id, .workflow_type = o->workflow_type,
                        .task_queue = o->task_queue, .input = o->input};
    /* the run carries its script version, so every worker replays it alike */
    Temporal__Api__Common__V1__Memo *memo = NULL;
    if (o->script_path && o->workflow_type != NULL && o->workflow_type[0] != '\0') {
        memo = cli_pin_memo(o->script_path, err);
        if (!memo) return -1;
        so.memo = memo;
    }
    int rc = tc_client_start(tc_of(c), &so, run_id, err);
    if (memo) protobuf_c_message_free_unpacked(&memo->base, NULL);
    return rc;
}

static int op_signal(cli_client *c, const char *wid, const char *name, Temporal__Api__Common__V1__Payloads *args,
                     jerr *err) {
    return tc_client_signal(tc_of(c), wid, name, args, err);
}

static int op_query(cli_client *c, const char *wid, const char *name, Temporal__Api__Common__V1__Payloads *args,
                    Temporal__Api__Common__V1__Payloads **result, jerr *err) {
    return tc_client_query(tc_of(c), wid, name, args, result, err);
}

static int op_describe(cli_client *c, const char *wid,
                       Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse **out, jerr *err) {
    return tc_client_describe(tc_of(c), wid, out, err);
}

static int op_list(cli_client *c, const char *query,
                   Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse **out, jerr *err) {
    return tc_client_list(tc_of(c), query, out, err);
}

static int op_history(cli_client *c, const char *wid, Temporal__Api__History__V1__History **out, jerr *err) {
    return tc_client_history(tc_of(c), wid, out, err);
}

static int op_result(cli_client *c, const char *wid, int64_t timeout_ms,
                     Temporal__Api__History__V1__HistoryEvent **close_event, jerr *err) {
    return tc_client_result(tc_of(c), wid, timeout_ms, close_event, err);
}

static int op_cancel(cli_client *c, const char *wid, const char *reason, jerr *err) {
    return tc_client_cancel(tc_of(c), wid, reason, err);
}

static int op_terminate(cli_client *c, const char *wid, const char *reason, jerr *err) {
    return tc_client_terminate(tc_of(c), wid, reason, err);
}

static void op_free(cli_client *c) {
    if (c == NULL) return;
    tc_client_free(tc_of(c));
    free(c);
}

static const cli_client_ops temporal_ops = {
    .start = op_start,
    .signal = op_signal,
    .query = op_query,
    .describe = op_describe,
    .list = op_list,
    .history = op_history,
    .result = op_result,
    .cancel = op_cancel,
    .terminate = op_terminate,
    .free = op_free,
};

cli_client *cli_temporal_client_new(jerr *err) {
    tc_client *t = tc_client_new(err);
    if (t == NULL) return NULL;
    cli_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        tc_client_free(t);
        jerr_oom(err, "creating the Temporal client");
        return NULL;
    }
    c->ops = &temporal_ops;
    c->impl = t;
    return c;
}
