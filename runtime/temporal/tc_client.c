/*
 * tc_client.c - the Temporal client: start, signal, query, describe, list,
 * history, result, cancel and terminate, each one or a few WorkflowService
 * calls, and every gRPC failure turned into a message that names the
 * workflow, the server and what to do. The CLI's client verbs use it
 * through runtime/cli/cli_temporal.c; jorch.yaml's temporal: section is
 * read here too (tc_config_load).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "temporal/temporal.h"
#include "temporal/api/errordetails/v1/message.pb-c.h"

/* Bounds on what list and history collect, so a huge namespace or history
 * cannot exhaust memory. */
#define LIST_PAGE_SIZE 200
#define LIST_MAX_EXECUTIONS 100000
#define HISTORY_PAGE_SIZE 1000
#define HISTORY_MAX_EVENTS 10000000
#define QUERY_TIMEOUT_MS 15000

struct tc_client {
    tc_conn *conn;
};

/* ---------------------------------------------------------------- errors */

static bool is_tls_failure(int curl_code) {
    return curl_code == CURLE_PEER_FAILED_VERIFICATION || curl_code == CURLE_SSL_CONNECT_ERROR ||
           curl_code == CURLE_SSL_CERTPROBLEM || curl_code == CURLE_SSL_CACERT_BADFILE ||
           curl_code == CURLE_SSL_CIPHER || curl_code == CURLE_SSL_ISSUER_ERROR;
}

static bool namespace_not_found(const tc_status *st) {
    ProtobufCMessage *d =
        tc_status_detail(st, &temporal__api__errordetails__v1__namespace_not_found_failure__descriptor);
    if (d != NULL) {
        protobuf_c_message_free_unpacked(d, NULL);
        return true;
    }
    /* Servers without details still say "Namespace <x> is not found." */
    return strstr(st->message, "amespace") != NULL && strstr(st->message, "not found") != NULL;
}

/* One place that turns a failed call into a jerr. what: the operation in
 * words ("signal 'approve' to"), wid: the workflow id or NULL. */
int tc_call_error(const tc_config *cfg, const tc_status *st, const char *what, const char *wid, jerr *err) {
    char cbuf[16];
    const char *code = tc_code_name(st->code, cbuf, sizeof cbuf);
    if (st->transport) {
        if (st->plaintext_peer) /* the message says what to do */
            return jerr_set(err, JERR_BACKEND, "TLS connection to Temporal at %s failed: %s", cfg->address,
                            st->message);
        if (is_tls_failure(st->curl_code))
            return jerr_set(err, JERR_BACKEND,
                            "TLS connection to Temporal at %s failed: %s (check TEMPORAL_TLS_CA, "
                            "TEMPORAL_TLS_SERVER_NAME and the client certificate)", cfg->address, st->message);
        if (st->code == TC_DEADLINE_EXCEEDED)
            return jerr_set(err, JERR_BACKEND,
                            "Temporal at %s did not answer (%s): %s (is the server overloaded? see "
                            "TEMPORAL_ADDRESS)", cfg->address, what, st->message);
        return jerr_set(err, JERR_BACKEND,
                        "cannot reach Temporal at %s: %s (is the server running? see TEMPORAL_ADDRESS)",
                        cfg->address, st->message);
    }
    switch (st->code) {
    case TC_NOT_FOUND:
        if (namespace_not_found(st))
            return jerr_set(err, JERR_USAGE,
                            "namespace '%s' not found on Temporal at %s (create it with `temporal operator "
                            "namespace create %s`, or set TEMPORAL_NAMESPACE)",
                            cfg->namespace_, cfg->address, cfg->namespace_);
        if (wid != NULL && strstr(st->message, "already completed") != NULL)
            return jerr_set(err, JERR_USAGE, "workflow '%s' has already closed; cannot %s it", wid, what);
        if (wid != NULL)
            return jerr_set(err, JERR_USAGE,
                            "workflow '%s' not found in namespace '%s' on Temporal at %s (check the id with "
                            "`jorch list`)", wid, cfg->namespace_, cfg->address);
        return jerr_set(err, JERR_USAGE, "%s: not found on Temporal at %s: %s", what, cfg->address, st->message);
    case TC_UNAUTHENTICATED:
    case TC_PERMISSION_DENIED:
        return jerr_set(err, JERR_USAGE,
                        "Temporal at %s refused to %s%s%s%s: %s: %s (check TEMPORAL_API_KEY, the client "
                        "certificate and TEMPORAL_NAMESPACE)", cfg->address, what, wid ? " workflow '" : "",
                        wid ? wid : "", wid ? "'" : "", code, st->message);
    case TC_INVALID_ARGUMENT:
    case TC_FAILED_PRECONDITION:
    case TC_ALREADY_EXISTS:
    case TC_OUT_OF_RANGE:
        return jerr_set(err, JERR_USAGE, "Temporal rejected the request to %s%s%s%s: %s: %s", what,
                        wid ? " workflow '" : "", wid ? wid : "", wid ? "'" : "", code, st->message);
    case TC_UNAVAILABLE:
    case TC_RESOURCE_EXHAUSTED:
        return jerr_set(err, JERR_BACKEND, "Temporal at %s is unavailable (%s): %s: %s (retry later)",
                        cfg->address, what, code, st->message);
    case TC_DEADLINE_EXCEEDED:
        return jerr_set(err, JERR_BACKEND, "Temporal at %s did not finish in time (%s): %s", cfg->address,
                        what, st->message);
    default:
        return jerr_set(err, JERR_BACKEND, "cannot %s%s%s%s on Temporal at %s: %s: %s", what,
                        wid ? " workflow '" : "", wid ? wid : "", wid ? "'" : "", cfg->address, code,
                        st->message);
    }
}

/* Run one call; on failure fill err through call_failed. */
static int call(tc_client *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms, bool retry_safe,
                const char *what, const char *wid, ProtobufCMessage **resp, jerr *err) {
    tc_status st;
    tc_status_init(&st);
    tc_call_opts opts = {.timeout_ms = timeout_ms, .retry_safe = retry_safe};
    if (tc_unary(c->conn, method, req, resp_desc, &opts, resp, &st) != 0) {
        tc_call_error(tc_conn_config(c->conn), &st, what, wid, err);
        tc_status_clear(&st);
        return -1;
    }
    tc_status_clear(&st);
    return 0;
}

static int need_id(const char *wid, const char *verb, jerr *err) {
    if (wid == NULL || wid[0] == '\0')
        return jerr_set(err, JERR_USAGE, "%s needs a workflow id (see jorch --help)", verb);
    return 0;
}

/* ----------------------------------------------------------------- start */

int tc_client_start(tc_client *c, const tc_start_opts *o, char **run_id, jerr *err) {
    const tc_config *cfg = tc_conn_config(c->conn);
    char uuid[37];
    char request_id[37];
    char gen_id[512];
    *run_id = NULL;
    if (o->workflow_type == NULL || o->workflow_type[0] == '\0')
        return jerr_set(err, JERR_USAGE, "start needs a workflow type (see jorch --help)");
    if (uuid_random(request_id) != 0)
        return jerr_set(err, JERR_INTERNAL, "cannot read random bytes for a request id");
    const char *wid = o->workflow_id;
    if (wid == NULL || wid[0] == '\0') {
        if (uuid_random(uuid) != 0) return jerr_set(err, JERR_INTERNAL, "cannot read random bytes for a workflow id");
        snprintf(gen_id, sizeof gen_id, "%.400s-%s", o->workflow_type, uuid);
        wid = gen_id;
    }
    Temporal__Api__Common__V1__WorkflowType type = TEMPORAL__API__COMMON__V1__WORKFLOW_TYPE__INIT;
    type.name = (char *)o->workflow_type;
    Temporal__Api__Taskqueue__V1__TaskQueue tq = TEMPORAL__API__TASKQUEUE__V1__TASK_QUEUE__INIT;
    tq.name = (char *)(o->task_queue != NULL && o->task_queue[0] ? o->task_queue : cfg->task_queue);
    tq.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
    Temporal__Api__Workflowservice__V1__StartWorkflowExecutionRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__START_WORKFLOW_EXECUTION_REQUEST__INIT;
    req.namespace_ = cfg->namespace_;
    req.workflow_id = (char *)wid;
    req.workflow_type = &type;
    req.task_queue = &tq;
    req.input = o->input;
    req.identity = cfg->identity;
    req.request_id = request_id;
    /* the run carries its script version, so every worker replays it alike */
    req.memo = o->memo;

    tc_status st;
    tc_status_init(&st);
    ProtobufCMessage *resp = NULL;
    /* Safe to retry: the server recognises the request id of a start it already did. */
    tc_call_opts opts = {.retry_safe = true};
    if (tc_unary(c->conn, "StartWorkflowExecution", &req.base,
                 &temporal__api__workflowservice__v1__start_workflow_execution_response__descriptor, &opts,
                 &resp, &st) != 0) {
        if (st.code == TC_ALREADY_EXISTS) {
            Temporal__Api__Errordetails__V1__WorkflowExecutionAlreadyStartedFailure *f = (void *)tc_status_detail(
                &st, &temporal__api__errordetails__v1__workflow_execution_already_started_failure__descriptor);
            jerr_set(err, JERR_USAGE,
                     "workflow '%s' is already running (run id %s): pick another --id, or wait for it, or "
                     "'jorch cancel --temporal %s'", wid, f != NULL && f->run_id[0] ? f->run_id : "unknown", wid);
            if (f != NULL) protobuf_c_message_free_unpacked(&f->base, NULL);
        } else {
            tc_call_error(tc_conn_config(c->conn), &st, "start", wid, err);
        }
        tc_status_clear(&st);
        return -1;
    }
    Temporal__Api__Workflowservice__V1__StartWorkflowExecutionResponse *r = (void *)resp;
    *run_id = jstrdup(r->run_id);
    protobuf_c_message_free_unpacked(resp, NULL);
    if (*run_id == NULL) return jerr_oom(err, "copying a run id");
    return 0;
}

/* ---------------------------------------------------------------- signal */

int tc_client_signal(tc_client *c, const char *wid, const char *name,
                     Temporal__Api__Common__V1__Payloads *args, jerr *err) {
    const tc_config *cfg = tc_conn_config(c->conn);
    char request_id[37];
    if (need_id(wid, "signal", err) != 0) return -1;
    if (name == NULL || name[0] == '\0') return jerr_set(err, JERR_USAGE, "signal needs a signal name (see jorch --help)");
    if (uuid_random(request_id) != 0) return jerr_set(err, JERR_INTERNAL, "cannot read random bytes for a request id");
    Temporal__Api__Common__V1__WorkflowExecution ex = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    ex.workflow_id = (char *)wid;
    /* _init(), not the INIT macro: the macro names a deprecated field and clang warns. */
    Temporal__Api__Workflowservice__V1__SignalWorkflowExecutionRequest req;
    temporal__api__workflowservice__v1__signal_workflow_execution_request__init(&req);
    req.namespace_ = cfg->namespace_;
    req.workflow_execution = &ex;
    req.signal_name = (char *)name;
    req.input = args;
    req.identity = cfg->identity;
    req.request_id = request_id;
    char what[300];
    snprintf(what, sizeof what, "signal '%.200s' to", name);
    ProtobufCMessage *resp = NULL;
    if (call(c, "SignalWorkflowExecution", &req.base,
             &temporal__api__workflowservice__v1__signal_workflow_execution_response__descriptor, 0, true, what,
             wid, &resp, err) != 0)
        return -1;
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

/* ----------------------------------------------------------------- query */

static int get_history_page(tc_client *c, const char *wid, const char *run_id, ProtobufCBinaryData token,
                            bool wait_close, int64_t timeout_ms,
                            Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse **out,
                            jerr *err);
static int copy_token(ProtobufCBinaryData *dst, const ProtobufCBinaryData *src, jerr *err);

/* Whether the run's current workflow task keeps failing, and why. A run
 * whose task fails (a script error, nondeterminism) cannot answer queries:
 * the server holds them for a task that never completes (or refuses them),
 * so `jorch query` would only say that no worker answered. Describe shows a
 * pending workflow task on attempt 2 or more; the history's last
 * WorkflowTaskFailed (Temporal records only the first of consecutive
 * failures) or WorkflowTaskTimedOut says why. Returns 1 with the reason in
 * why, 0 when the task is not failing (or the reason cannot be read). */
static int failing_task(tc_client *c, const char *wid, char *why, size_t cap) {
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = NULL;
    jerr ignore = {0};
    if (tc_client_describe(c, wid, &d, &ignore) != 0) return 0;
    int attempt = d->pending_workflow_task != NULL ? d->pending_workflow_task->attempt : 0;
    char run_id[128];
    snprintf(run_id, sizeof run_id, "%s",
             d->workflow_execution_info != NULL && d->workflow_execution_info->execution != NULL
                 ? d->workflow_execution_info->execution->run_id : "");
    protobuf_c_message_free_unpacked(&d->base, NULL);
    if (attempt < 2) return 0;
    snprintf(why, cap, "its workflow task keeps failing (attempt %d; the worker's log says why)", attempt);
    ProtobufCBinaryData token = {0, NULL};
    size_t pages = 0;
    for (;;) {
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *page = NULL;
        if (get_history_page(c, wid, run_id[0] ? run_id : NULL, token, false, 0, &page, &ignore) != 0) break;
        size_t n = page->history != NULL ? page->history->n_events : 0;
        for (size_t i = 0; i < n; i++) {
            const Temporal__Api__History__V1__HistoryEvent *ev = page->history->events[i];
            const Temporal__Api__History__V1__WorkflowTaskFailedEventAttributes *fa =
                ev->workflow_task_failed_event_attributes;
            if (ev->event_type == TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_FAILED && fa != NULL) {
                const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
                    &temporal__api__enums__v1__workflow_task_failed_cause__descriptor, (int)fa->cause);
                const char *cause = v != NULL ? v->name : "an unknown cause";
                const char *prefix = "WORKFLOW_TASK_FAILED_CAUSE_";
                if (strncmp(cause, prefix, strlen(prefix)) == 0) cause += strlen(prefix);
                snprintf(why, cap, "its workflow task keeps failing (attempt %d; %s at event %" PRId64 "): %s",
                         attempt, cause, ev->event_id,
                         fa->failure != NULL && fa->failure->message != NULL ? fa->failure->message : "(no message)");
            } else if (ev->event_type == TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT) {
                snprintf(why, cap, "its workflow task keeps timing out (attempt %d; no worker completed it)",
                         attempt);
            }
        }
        bool more = page->next_page_token.len > 0 && n > 0 && ++pages < HISTORY_MAX_EVENTS / HISTORY_PAGE_SIZE;
        int tok = more ? copy_token(&token, &page->next_page_token, &ignore) : 0;
        protobuf_c_message_free_unpacked(&page->base, NULL);
        if (!more || tok != 0) break;
    }
    free(token.data);
    return 1;
}

int tc_client_query(tc_client *c, const char *wid, const char *name, Temporal__Api__Common__V1__Payloads *args,
                    Temporal__Api__Common__V1__Payloads **result, jerr *err) {
    const tc_config *cfg = tc_conn_config(c->conn);
    *result = NULL;
    if (need_id(wid, "query", err) != 0) return -1;
    if (name == NULL || name[0] == '\0') return jerr_set(err, JERR_USAGE, "query needs a query name (see jorch --help)");
    char why[900];
    if (failing_task(c, wid, why, sizeof why) == 1)
        return jerr_set(err, JERR_FAILED,
                        "query '%s' on workflow '%s' cannot be answered: %s (a script bug: fix the script, then "
                        "'jorch upgrade --temporal %s --to SCRIPT', as the run keeps the version it started with; the "
                        "next attempt of the task runs the fix)", name, wid, why, wid);
    Temporal__Api__Common__V1__WorkflowExecution ex = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    ex.workflow_id = (char *)wid;
    Temporal__Api__Query__V1__WorkflowQuery q = TEMPORAL__API__QUERY__V1__WORKFLOW_QUERY__INIT;
    q.query_type = (char *)name;
    q.query_args = args;
    Temporal__Api__Workflowservice__V1__QueryWorkflowRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__QUERY_WORKFLOW_REQUEST__INIT;
    req.namespace_ = cfg->namespace_;
    req.execution = &ex;
    req.query = &q;
    tc_status st;
    tc_status_init(&st);
    ProtobufCMessage *resp = NULL;
    tc_call_opts opts = {.timeout_ms = QUERY_TIMEOUT_MS, .retry_safe = true};
    if (tc_unary(c->conn, "QueryWorkflow", &req.base,
                 &temporal__api__workflowservice__v1__query_workflow_response__descriptor, &opts, &resp, &st) != 0) {
        char what[300];
        snprintf(what, sizeof what, "query '%.200s' on", name);
        if ((st.code == TC_DEADLINE_EXCEEDED || st.code == TC_FAILED_PRECONDITION) &&
            failing_task(c, wid, why, sizeof why) == 1) {
            /* The task started failing while the query waited. */
            jerr_set(err, JERR_FAILED, "query '%s' on workflow '%s' cannot be answered: %s (a script bug: fix the "
                     "script, then 'jorch upgrade --temporal %s --to SCRIPT', as the run keeps the version it started "
                     "with; the next attempt of the task runs the fix)", name, wid, why, wid);
        } else if (st.code == TC_DEADLINE_EXCEEDED) {
            /* Name the queue a worker must poll: the workflow's own, if the
             * server tells it, else the configured one. */
            Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = NULL;
            jerr ignore = {0};
            char queue[256];
            snprintf(queue, sizeof queue, "%s", cfg->task_queue);
            if (tc_client_describe(c, wid, &d, &ignore) == 0) {
                if (d->workflow_execution_info != NULL && d->workflow_execution_info->task_queue != NULL &&
                    d->workflow_execution_info->task_queue[0] != '\0')
                    snprintf(queue, sizeof queue, "%s", d->workflow_execution_info->task_queue);
                protobuf_c_message_free_unpacked(&d->base, NULL);
            }
            jerr_set(err, JERR_FAILED,
                     "query '%s' on workflow '%s' got no answer within %d s: no worker answered it (is a jorch "
                     "worker polling its task queue '%s'?)",
                     name, wid, QUERY_TIMEOUT_MS / 1000, queue);
        } else if (st.code == TC_INVALID_ARGUMENT || st.code == TC_FAILED_PRECONDITION)
            jerr_set(err, JERR_FAILED, "query '%s' on workflow '%s' failed: %s", name, wid, st.message);
        else
            tc_call_error(tc_conn_config(c->conn), &st, what, wid, err);
        tc_status_clear(&st);
        return -1;
    }
    Temporal__Api__Workflowservice__V1__QueryWorkflowResponse *r = (void *)resp;
    if (r->query_rejected != NULL) {
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
            &temporal__api__enums__v1__workflow_execution_status__descriptor, (int)r->query_rejected->status);
        jerr_set(err, JERR_FAILED, "query '%s' on workflow '%s' was rejected: the workflow is %s", name, wid,
                 v != NULL ? v->name : "in an unknown state");
        protobuf_c_message_free_unpacked(resp, NULL);
        return -1;
    }
    *result = r->query_result;
    r->query_result = NULL;
    protobuf_c_message_free_unpacked(resp, NULL);
    if (*result == NULL) {
        *result = malloc(sizeof **result);
        if (*result == NULL) return jerr_oom(err, "an empty query result");
        temporal__api__common__v1__payloads__init(*result);
    }
    return 0;
}

/* -------------------------------------------------------------- describe */

int tc_client_describe(tc_client *c, const char *wid,
                       Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse **out, jerr *err) {
    *out = NULL;
    if (need_id(wid, "describe", err) != 0) return -1;
    Temporal__Api__Common__V1__WorkflowExecution ex = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    ex.workflow_id = (char *)wid;
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__DESCRIBE_WORKFLOW_EXECUTION_REQUEST__INIT;
    req.namespace_ = tc_conn_config(c->conn)->namespace_;
    req.execution = &ex;
    ProtobufCMessage *resp = NULL;
    if (call(c, "DescribeWorkflowExecution", &req.base,
             &temporal__api__workflowservice__v1__describe_workflow_execution_response__descriptor, 0, true,
             "describe", wid, &resp, err) != 0)
        return -1;
    *out = (void *)resp;
    return 0;
}

/* ------------------------------------------------------------------ list */

/* Move the pointers of src[0..n) to the end of *dst (growing it), leaving
 * the source owning nothing. */
static int append_moved(void ***dst, size_t *dst_n, void **src, size_t n, size_t max, const char *what, jerr *err) {
    size_t total;
    size_t bytes;
    if (n == 0) return 0;
    if (!size_add(*dst_n, n, &total) || total > max)
        return jerr_set(err, JERR_FAILED, "more than %zu %s; narrow the request", max, what);
    if (!size_mul(total, sizeof(void *), &bytes)) return jerr_oom(err, what);
    void **grown = realloc(*dst, bytes);
    if (grown == NULL) return jerr_oom(err, what);
    memcpy(grown + *dst_n, src, n * sizeof(void *));
    *dst = grown;
    *dst_n = total;
    return 0;
}

int tc_client_list(tc_client *c, const char *query,
                   Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse **out, jerr *err) {
    *out = NULL;
    Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse *all = NULL;
    ProtobufCBinaryData token = {0, NULL};
    for (;;) {
        Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__LIST_WORKFLOW_EXECUTIONS_REQUEST__INIT;
        req.namespace_ = tc_conn_config(c->conn)->namespace_;
        req.page_size = LIST_PAGE_SIZE;
        req.next_page_token = token;
        if (query != NULL) req.query = (char *)query;
        ProtobufCMessage *resp = NULL;
        int rc = call(c, "ListWorkflowExecutions", &req.base,
                      &temporal__api__workflowservice__v1__list_workflow_executions_response__descriptor, 0, true,
                      "list workflows", NULL, &resp, err);
        free(token.data);
        token.data = NULL;
        token.len = 0;
        if (rc != 0) break;
        Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse *page = (void *)resp;
        if (all == NULL) {
            all = page;
        } else {
            if (append_moved((void ***)&all->executions, &all->n_executions, (void **)page->executions,
                             page->n_executions, LIST_MAX_EXECUTIONS, "workflows listed", err) != 0) {
                protobuf_c_message_free_unpacked(resp, NULL);
                break;
            }
            page->n_executions = 0;
            /* The page's token moves to `all`, which carries the last one. */
            free(all->next_page_token.data);
            all->next_page_token = page->next_page_token;
            page->next_page_token.data = NULL;
            page->next_page_token.len = 0;
            protobuf_c_message_free_unpacked(resp, NULL);
        }
        if (all->next_page_token.len == 0) {
            *out = all;
            return 0;
        }
        if (all->n_executions >= LIST_MAX_EXECUTIONS) {
            *out = all; /* bounded: the caller sees next_page_token set */
            return 0;
        }
        token.data = malloc(all->next_page_token.len);
        if (token.data == NULL) {
            jerr_oom(err, "a page token");
            break;
        }
        memcpy(token.data, all->next_page_token.data, all->next_page_token.len);
        token.len = all->next_page_token.len;
    }
    free(token.data); /* NULL on today's error paths; owned here if a break ever follows the copy */
    if (all != NULL) protobuf_c_message_free_unpacked(&all->base, NULL);
    return -1;
}

/* --------------------------------------------------------------- history */

static int get_history_page(tc_client *c, const char *wid, const char *run_id, ProtobufCBinaryData token,
                            bool wait_close, int64_t timeout_ms,
                            Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse **out,
                            jerr *err) {
    Temporal__Api__Common__V1__WorkflowExecution ex = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    ex.workflow_id = (char *)wid;
    if (run_id != NULL) ex.run_id = (char *)run_id;
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_WORKFLOW_EXECUTION_HISTORY_REQUEST__INIT;
    req.namespace_ = tc_conn_config(c->conn)->namespace_;
    req.execution = &ex;
    req.next_page_token = token;
    if (wait_close) {
        req.wait_new_event = true;
        req.history_event_filter_type =
            TEMPORAL__API__ENUMS__V1__HISTORY_EVENT_FILTER_TYPE__HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT;
    } else {
        req.maximum_page_size = HISTORY_PAGE_SIZE;
    }
    ProtobufCMessage *resp = NULL;
    if (call(c, "GetWorkflowExecutionHistory", &req.base,
             &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor, timeout_ms,
             true, wait_close ? "wait for the result of" : "read the history of", wid, &resp, err) != 0)
        return -1;
    *out = (void *)resp;
    return 0;
}

static int copy_token(ProtobufCBinaryData *dst, const ProtobufCBinaryData *src, jerr *err) {
    free(dst->data);
    dst->data = NULL;
    dst->len = 0;
    if (src->len == 0) return 0;
    dst->data = malloc(src->len);
    if (dst->data == NULL) return jerr_oom(err, "a page token");
    memcpy(dst->data, src->data, src->len);
    dst->len = src->len;
    return 0;
}

int tc_client_history(tc_client *c, const char *wid, Temporal__Api__History__V1__History **out, jerr *err) {
    *out = NULL;
    if (need_id(wid, "history", err) != 0) return -1;
    Temporal__Api__History__V1__History *h = malloc(sizeof *h);
    if (h == NULL) return jerr_oom(err, "a history");
    temporal__api__history__v1__history__init(h);
    ProtobufCBinaryData token = {0, NULL};
    int rc = -1;
    for (;;) {
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *page = NULL;
        if (get_history_page(c, wid, NULL, token, false, 0, &page, err) != 0) break;
        Temporal__Api__History__V1__History *ph = page->history;
        size_t got = ph != NULL ? ph->n_events : 0;
        if (got > 0 && append_moved((void ***)&h->events, &h->n_events, (void **)ph->events, got,
                                    HISTORY_MAX_EVENTS, "history events", err) != 0) {
            protobuf_c_message_free_unpacked(&page->base, NULL);
            break;
        }
        if (ph != NULL) ph->n_events = 0; /* the events now belong to h */
        /* An empty page that still carries a token ends the history (as in sdk-core). */
        bool more = got > 0 && page->next_page_token.len > 0;
        int tok = more ? copy_token(&token, &page->next_page_token, err) : 0;
        protobuf_c_message_free_unpacked(&page->base, NULL);
        if (tok != 0) break;
        if (!more) {
            rc = 0;
            break;
        }
    }
    free(token.data);
    if (rc != 0) {
        protobuf_c_message_free_unpacked(&h->base, NULL);
        return -1;
    }
    *out = h;
    return 0;
}

/* ---------------------------------------------------------------- result */

static Temporal__Api__History__V1__HistoryEvent *clone_event(const Temporal__Api__History__V1__HistoryEvent *e) {
    size_t n = temporal__api__history__v1__history_event__get_packed_size(e);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL) return NULL;
    temporal__api__history__v1__history_event__pack(e, buf);
    Temporal__Api__History__V1__HistoryEvent *copy = temporal__api__history__v1__history_event__unpack(NULL, n, buf);
    free(buf);
    return copy;
}

int tc_client_result(tc_client *c, const char *wid, int64_t timeout_ms,
                     Temporal__Api__History__V1__HistoryEvent **close_event, jerr *err) {
    *close_event = NULL;
    if (need_id(wid, "result", err) != 0) return -1;
    int64_t deadline = timeout_ms < 0 ? -1 : time_now_nanos() / 1000000 + timeout_ms;
    char *run_id = NULL;
    ProtobufCBinaryData token = {0, NULL};
    int rc = -1;
    for (;;) {
        int64_t poll_ms = TC_LONG_POLL_TIMEOUT_MS;
        if (deadline >= 0) {
            int64_t left = deadline - time_now_nanos() / 1000000;
            if (left <= 0) {
                char human[32];
                duration_human(timeout_ms * 1000000, human, sizeof human);
                jerr_set(err, JERR_FAILED, "workflow '%s' did not close within %s", wid, human);
                break;
            }
            if (left < poll_ms) poll_ms = left;
        }
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *page = NULL;
        if (get_history_page(c, wid, run_id, token, true, poll_ms, &page, err) != 0) {
            /* Our own short deadline expiring is "not closed yet", not an unreachable server. */
            if (deadline >= 0 && time_now_nanos() / 1000000 >= deadline) {
                char human[32];
                duration_human(timeout_ms * 1000000, human, sizeof human);
                jerr_set(err, JERR_FAILED, "workflow '%s' did not close within %s", wid, human);
            }
            break;
        }
        Temporal__Api__History__V1__HistoryEvent *ev =
            page->history != NULL && page->history->n_events > 0
                ? page->history->events[page->history->n_events - 1] : NULL;
        if (ev == NULL) {
            /* Long poll expired: ask again with the token (or from scratch without one). */
            int t = copy_token(&token, &page->next_page_token, err);
            protobuf_c_message_free_unpacked(&page->base, NULL);
            if (t != 0) break;
            continue;
        }
        if (ev->event_type == TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW &&
            ev->workflow_execution_continued_as_new_event_attributes != NULL &&
            ev->workflow_execution_continued_as_new_event_attributes->new_execution_run_id[0] != '\0') {
            char *next = jstrdup(ev->workflow_execution_continued_as_new_event_attributes->new_execution_run_id);
            protobuf_c_message_free_unpacked(&page->base, NULL);
            if (next == NULL) {
                jerr_oom(err, "a run id");
                break;
            }
            free(run_id);
            run_id = next;
            free(token.data);
            token.data = NULL;
            token.len = 0;
            continue;
        }
        *close_event = clone_event(ev);
        protobuf_c_message_free_unpacked(&page->base, NULL);
        if (*close_event == NULL) {
            jerr_oom(err, "a close event");
            break;
        }
        rc = 0;
        break;
    }
    free(run_id);
    free(token.data);
    return rc;
}

/* ------------------------------------------------------ cancel, terminate */

int tc_client_cancel(tc_client *c, const char *wid, const char *reason, jerr *err) {
    const tc_config *cfg = tc_conn_config(c->conn);
    char request_id[37];
    if (need_id(wid, "cancel", err) != 0) return -1;
    if (uuid_random(request_id) != 0) return jerr_set(err, JERR_INTERNAL, "cannot read random bytes for a request id");
    Temporal__Api__Common__V1__WorkflowExecution ex = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    ex.workflow_id = (char *)wid;
    Temporal__Api__Workflowservice__V1__RequestCancelWorkflowExecutionRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__REQUEST_CANCEL_WORKFLOW_EXECUTION_REQUEST__INIT;
    req.namespace_ = cfg->namespace_;
    req.workflow_execution = &ex;
    req.identity = cfg->identity;
    req.request_id = request_id;
    if (reason != NULL) req.reason = (char *)reason;
    ProtobufCMessage *resp = NULL;
    if (call(c, "RequestCancelWorkflowExecution", &req.base,
             &temporal__api__workflowservice__v1__request_cancel_workflow_execution_response__descriptor, 0, true,
             "cancel", wid, &resp, err) != 0)
        return -1;
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

int tc_client_terminate(tc_client *c, const char *wid, const char *reason, jerr *err) {
    const tc_config *cfg = tc_conn_config(c->conn);
    if (need_id(wid, "terminate", err) != 0) return -1;
    Temporal__Api__Common__V1__WorkflowExecution ex = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    ex.workflow_id = (char *)wid;
    Temporal__Api__Workflowservice__V1__TerminateWorkflowExecutionRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__TERMINATE_WORKFLOW_EXECUTION_REQUEST__INIT;
    req.namespace_ = cfg->namespace_;
    req.workflow_execution = &ex;
    req.identity = cfg->identity;
    if (reason != NULL) req.reason = (char *)reason;
    ProtobufCMessage *resp = NULL;
    /* Not retried: a retry after a lost answer would report "already closed". */
    if (call(c, "TerminateWorkflowExecution", &req.base,
             &temporal__api__workflowservice__v1__terminate_workflow_execution_response__descriptor, 0, false,
             "terminate", wid, &resp, err) != 0)
        return -1;
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

void tc_client_free(tc_client *c) {
    if (c == NULL) return;
    tc_conn_free(c->conn);
    free(c);
}

const tc_config *tc_client_config(const tc_client *c) { return tc_conn_config(c->conn); }

/* ------------------------------------------------------------ jorch.yaml */

/* Largest API key file read (keys are a few hundred bytes). */
#define API_KEY_FILE_MAX 65536

/* A path from jorch.yaml: "~/" is the home directory, a relative path is
 * relative to the directory of the configuration file. */
static int yaml_path(const char *cfg_path, const char *value, char *out, size_t outcap, const char *key,
                     jerr *err) {
    int n;
    if (value[0] == '~' && value[1] == '/') {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] == '\0')
            return jerr_set(err, JERR_USAGE, "%s: temporal.%s: '%s' starts with ~/ but HOME is not set", cfg_path,
                            key, value);
        n = snprintf(out, outcap, "%s/%s", home, value + 2);
    } else if (value[0] == '/') {
        n = snprintf(out, outcap, "%s", value);
    } else {
        const char *slash = strrchr(cfg_path, '/');
        if (slash == NULL)
            n = snprintf(out, outcap, "%s", value);
        else
            n = snprintf(out, outcap, "%.*s/%s", (int)(slash - cfg_path), cfg_path, value);
    }
    if (n < 0 || (size_t)n >= outcap)
        return jerr_set(err, JERR_USAGE, "%s: temporal.%s: the path is too long", cfg_path, key);
    return 0;
}

/* api_key_file: the key is the file's content without surrounding white
 * space. The key itself never goes in jorch.yaml, and never in a message. */
static int yaml_api_key_file(tc_config *cfg, const char *cfg_path, const char *value, jerr *err) {
    char path[4096];
    if (yaml_path(cfg_path, value, path, sizeof path, "api_key_file", err) != 0) return -1;
    char *key = NULL;
    size_t len = 0;
    if (file_read_all(path, API_KEY_FILE_MAX, &key, &len, err) != 0)
        return jerr_prefix(err, "%s: temporal.api_key_file", cfg_path);
    size_t total = len;
    size_t start = 0;
    while (start < len && (key[start] == ' ' || key[start] == '\t' || key[start] == '\r' || key[start] == '\n'))
        start++;
    while (len > start && (key[len - 1] == ' ' || key[len - 1] == '\t' || key[len - 1] == '\r' ||
                           key[len - 1] == '\n'))
        len--;
    int rc = 0;
    if (len == start) {
        rc = jerr_set(err, JERR_USAGE, "%s: temporal.api_key_file: '%s' is empty (put the Temporal API key in it)",
                      cfg_path, path);
    } else if (memchr(key + start, '\0', len - start) != NULL) {
        rc = jerr_set(err, JERR_USAGE, "%s: temporal.api_key_file: '%s' is not a text file with one key", cfg_path,
                      path);
    } else {
        key[len] = '\0';
        rc = tc_config_set(cfg, "api_key", key + start, err);
    }
    /* Wipe the copy: the config holds its own. */
    memset(key, 0, total);
    free(key);
    return rc;
}

/* The text of a scalar setting: strings as they are, numbers and booleans
 * as YAML wrote them (namespace: 123 is the namespace "123"). */
static int yaml_scalar(const cJSON *v, const char *cfg_path, const char *key, char *buf, size_t cap,
                       const char **out, jerr *err) {
    if (cJSON_IsString(v)) {
        *out = v->valuestring;
        return 0;
    }
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v) ? "true" : "false";
        return 0;
    }
    /* YAML typed it as a number ("007", "0x1F", "0123" lose their spelling
     * on the way), so the value as written is gone: ask for quotes */
    if (cJSON_IsNumber(v))
        return jerr_set(err, JERR_USAGE, "%s: temporal.%s reads as a number; quote it (e.g. %s: \"...\") "
                        "so it is taken exactly as written", cfg_path, key, key);
    (void)buf;
    (void)cap;
    return jerr_set(err, JERR_USAGE, "%s: temporal.%s must be a single value, not a %s", cfg_path, key,
                    cJSON_IsArray(v) ? "list" : cJSON_IsObject(v) ? "mapping" : "value of this kind");
}

/* Apply the temporal: mapping of the configuration file at path. */
static int yaml_apply(tc_config *cfg, const char *path, jerr *err) {
    jbuf json;
    jbuf_init(&json, 0);
    if (config_load_yaml_as_json(path, &json, err) != 0) {
        jbuf_free(&json);
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(json.data != NULL ? json.data : "{}", json.data != NULL ? json.len : 2);
    jbuf_free(&json);
    if (root == NULL) return jerr_set(err, JERR_INTERNAL, "%s: the YAML converter produced invalid JSON", path);
    int rc = 0;
    const cJSON *t = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "temporal") : NULL;
    if (!cJSON_IsObject(root) && !cJSON_IsNull(root)) {
        rc = jerr_set(err, JERR_USAGE, "%s: the top level must be a mapping (sections such as temporal:)", path);
    } else if (t != NULL && !cJSON_IsNull(t) && !cJSON_IsObject(t)) {
        rc = jerr_set(err, JERR_USAGE, "%s: temporal: must be a mapping of settings (address:, namespace:, ...)",
                      path);
    } else if (t != NULL && cJSON_IsObject(t)) {
        static const char *const paths[] = {"tls_ca", "tls_client_cert", "tls_client_key"};
        static const char *const known_keys[] = {"address", "namespace", "task_queue", "api_key_file", "tls",
                                                 "tls_ca", "tls_client_cert", "tls_client_key",
                                                 "tls_server_name", "identity"};
        for (const cJSON *kv = t->child; kv != NULL && rc == 0; kv = kv->next) {
            const char *key = kv->string;
            char num[64];
            char file[4096];
            const char *value = NULL;
            /* "key:" with nothing, or "", is not set (as empty variables are ignored). */
            if (cJSON_IsNull(kv) || (cJSON_IsString(kv) && kv->valuestring[0] == '\0')) continue;
            if (strcmp(key, "api_key") == 0) {
                rc = jerr_set(err, JERR_USAGE,
                              "%s: temporal.api_key: the API key does not go in jorch.yaml; put it in a file "
                              "readable only by you and name it with temporal.api_key_file, or set "
                              "TEMPORAL_API_KEY", path);
                break;
            }
            bool known = false;
            for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++)
                known = known || strcmp(key, known_keys[i]) == 0;
            if (!known) {
                rc = jerr_set(err, JERR_USAGE,
                              "%s: unknown setting temporal.%s (known: address, namespace, task_queue, "
                              "api_key_file, tls, tls_ca, tls_client_cert, tls_client_key, tls_server_name, "
                              "identity)", path, key);
                break;
            }
            if (yaml_scalar(kv, path, key, num, sizeof num, &value, err) != 0) {
                rc = -1;
                break;
            }
            if (strcmp(key, "api_key_file") == 0) {
                rc = yaml_api_key_file(cfg, path, value, err);
                continue;
            }
            for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
                if (strcmp(key, paths[i]) == 0) {
                    if (yaml_path(path, value, file, sizeof file, key, err) != 0) rc = -1;
                    value = file;
                }
            }
            if (rc != 0) break;
            if (tc_config_set(cfg, key, value, err) != 0) {
                jerr_prefix(err, "%s", path);
                rc = -1;
            }
        }
    }
    cJSON_Delete(root);
    return rc;
}

/* $JORCH_CONFIG if set (it must exist), else ./jorch.yaml if there is one. */
static int load_config_file(tc_config *cfg, jerr *err) {
    const char *path = NULL;
    int found = config_locate(&path, err);
    if (found <= 0) return found;
    return yaml_apply(cfg, path, err);
}

int tc_config_load(tc_config *cfg, jerr *err) {
    tc_config_init(cfg);
    /* jorch.yaml first, then the environment, which wins. */
    if (load_config_file(cfg, err) != 0 || tc_config_from_env(cfg, err) != 0 || tc_config_check(cfg, err) != 0) {
        tc_config_free(cfg);
        tc_config_init(cfg);
        return -1;
    }
    return 0;
}

tc_client *tc_client_new(jerr *err) {
    tc_config cfg;
    if (tc_config_load(&cfg, err) != 0) return NULL;
    tc_client *t = calloc(1, sizeof *t);
    if (t == NULL) {
        tc_config_free(&cfg);
        jerr_oom(err, "creating the Temporal client");
        return NULL;
    }
    t->conn = tc_conn_new(&cfg, err);
    tc_config_free(&cfg);
    if (t->conn == NULL) {
        free(t);
        return NULL;
    }
    return t;
}
