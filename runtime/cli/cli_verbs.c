/*
 * cli_verbs.c - the verbs that work on a backend: run, start, resume, and
 * the client verbs, which go through a cli_client (embedded store or
 * Temporal) and format the Temporal API messages it returns.
 */
#define _DEFAULT_SOURCE /* realpath */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <time.h>

#include "cli/cli_int.h"
#include "engine/engine.h"
#include "store/store.h"
#include "temporal/temporal.h"

/* ------------------------------------------------------------ backend */

static bool temporal_selected(bool flag) {
    if (flag) return true;
    const char *e = getenv("FEATURE_TEMPORAL_ENABLED");
    return e && (strcasecmp(e, "true") == 0 || strcmp(e, "1") == 0 || strcasecmp(e, "yes") == 0);
}

static const char *home_dir(const char *opt) {
    if (opt && *opt) return opt;
    const char *e = getenv("JORCH_HOME");
    return e && *e ? e : ".jorch";
}

static int open_store(const char *home_opt, store **s) {
    jerr e = {0};
    if (store_open(home_dir(home_opt), s, &e) != 0) {
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    return 0;
}

/* The embedded backend as a cli_client. */
typedef struct local_client {
    store *s;
} local_client;

static store *ls(cli_client *c) { return ((local_client *)c->impl)->s; }

static int local_start(cli_client *c, const cli_start_opts *o, char **run_id, jerr *err) {
    if (!o->script_path) return jerr_set(err, JERR_USAGE, "the embedded backend starts scripts: give a path to a .lua file");
    char *src = NULL;
    size_t len = 0;
    if (cli_read_script(o->script_path, &src, &len, err) != 0) return -1;
    store_new_run nr = {.workflow_id = o->workflow_id, .workflow_type = o->workflow_type, .task_queue = o->task_queue,
                        .script_name = o->script_path, .script_src = src, .script_len = len, .input = o->input,
                        .activities_dir = o->activities_dir};
    store_run r;
    int rc = store_run_start(ls(c), &nr, &r, err);
    free(src);
    if (rc != 0) return -1;
    *run_id = jstrdup(r.run_id);
    return *run_id ? 0 : jerr_oom(err, "starting");
}

/* Tells the service about a request or a new run (unless JORCH_SERVICE=off):
 * 0 the service executes the run. */
static int service_poke(store *s, const char *run_id) {
    const char *mode = getenv("JORCH_SERVICE");
    if (mode && strcmp(mode, "off") == 0) return 1;
    return store_service_poke(store_home(s), run_id);
}

/* Applies requests at once when no process is executing the run. */
static void apply_if_idle(store *s, const char *run_id) { store_apply_if_idle(s, run_id); }

static int local_request(cli_client *c, const char *id, int kind, const char *name,
                         Temporal__Api__Common__V1__Payloads *args, const char *reason, jerr *err) {
    store_run r;
    if (store_run_find(ls(c), id, &r, err) != 0) return -1;
    if (r.status != RUN_RUNNING)
        return jerr_set(err, JERR_USAGE, "workflow '%s' is not running (status %s)", id, store_status_name(r.status));
    if (store_inbox_add(ls(c), r.run_id, kind, name, args, reason, err) != 0) return -1;
    /* the service executes it (or takes it now): it applies the request at once */
    if (service_poke(ls(c), r.run_id) == 0) return 0;
    apply_if_idle(ls(c), r.run_id);
    return 0;
}

static Temporal__Api__Common__V1__Payload *string_payload(const char *text, jerr *err);
static int local_query(cli_client *c, const char *id, const char *name, Temporal__Api__Common__V1__Payloads *args,
                       Temporal__Api__Common__V1__Payloads **result, jerr *err);

/* What the run's script says about a signal before it is sent (the
 * ENGINE_SIGNAL_CHECK_QUERY, answered by replaying the run like a query):
 * *handled, the names it handles (", "-joined into names), and a
 * validator's rejection (returned as a JERR_USAGE error). A run whose state
 * cannot be replayed (not started yet, a failing script) is not checked. */
static int local_signal_check(cli_client *c, const store_run *r, const char *name,
                              const Temporal__Api__Common__V1__Payloads *args, bool *handled, jbuf *names, jerr *err) {
    *handled = true;
    jerr qe = {0};
    size_t n = args ? args->n_payloads : 0;
    Temporal__Api__Common__V1__Payload **arr = calloc(n + 1, sizeof *arr);
    Temporal__Api__Common__V1__Payload *np = arr ? string_payload(name, &qe) : NULL;
    if (!np) {
        free(arr);
        return 0;
    }
    arr[0] = np;
    for (size_t i = 0; i < n; i++) arr[i + 1] = args->payloads[i];
    Temporal__Api__Common__V1__Payloads q;
    temporal__api__common__v1__payloads__init(&q);
    q.n_payloads = n + 1;
    q.payloads = arr;
    Temporal__Api__Common__V1__Payloads *ans = NULL;
    /* from the service's live engine when it has one, else by a replay here */
    int qrc = local_query(c, r->run_id, ENGINE_SIGNAL_CHECK_QUERY, &q, &ans, &qe);
    protobuf_c_message_free_unpacked(&np->base, NULL);
    free(arr);
    if (qrc != 0) {
        /* before its first workflow task a run has no handlers to check against */
        if (!strstr(qe.msg, "has not started running yet"))
            cli_errorf("warning: signal '%s' is sent unchecked: checking it against workflow '%s' failed: %.400s",
                       name, r->workflow_id, qe.msg);
        return 0;
    }
    jbuf b;
    jbuf_init(&b, 0);
    cJSON *res = payloads_to_json(ans, true, &b, &qe) == 0 && b.data ? cJSON_Parse(b.data) : NULL;
    jbuf_free(&b);
    protobuf_c_message_free_unpacked(&ans->base, NULL);
    if (!res) return 0;
    *handled = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "handled"));
    const cJSON *sig = NULL;
    cJSON_ArrayForEach(sig, cJSON_GetObjectItemCaseSensitive(res, "signals")) {
        if (!cJSON_IsString(sig)) continue;
        if (names->len) jbuf_puts(names, ", ");
        jbuf_puts(names, sig->valuestring);
    }
    const cJSON *rej = cJSON_GetObjectItemCaseSensitive(res, "rejected");
    int rc = 0;
    if (cJSON_IsString(rej))
        rc = jerr_set(err, JERR_USAGE, "workflow '%s' refuses signal '%s': %s (nothing was sent)", r->workflow_id,
                      name, rej->valuestring);
    cJSON_Delete(res);
    return rc;
}

/* A signal no handler takes is still delivered, as on Temporal (a handler
 * registered later receives it), with a warning naming what the workflow
 * handles: usually the name has a typo. A validator's "no" refuses it. */
static int local_signal(cli_client *c, const char *id, const char *name, Temporal__Api__Common__V1__Payloads *args,
                        jerr *err) {
    store_run r;
    if (store_run_find(ls(c), id, &r, err) != 0) return -1;
    bool handled = true;
    jbuf names;
    jbuf_init(&names, 8192);
    int rc = r.status == RUN_RUNNING ? local_signal_check(c, &r, name, args, &handled, &names, err) : 0;
    if (rc == 0) rc = local_request(c, id, INBOX_SIGNAL, name, args, NULL, err);
    if (rc == 0 && !handled)
        cli_errorf("warning: workflow '%s' has no handler for signal '%s' (it handles: %s). The signal was delivered "
                   "anyway and waits in the run for a handler of that name, as on Temporal; if the name is a typo, "
                   "send the right one.", id, name, names.len ? names.data : "no signals");
    jbuf_free(&names);
    return rc;
}

static int local_query(cli_client *c, const char *id, const char *name, Temporal__Api__Common__V1__Payloads *args,
                       Temporal__Api__Common__V1__Payloads **result, jerr *err) {
    /* a run the service executes answers from its live engine, without a replay */
    store_run r;
    const char *mode = getenv("JORCH_SERVICE");
    if (!(mode && strcmp(mode, "off") == 0) && store_run_find(ls(c), id, &r, NULL) == 0 && r.status == RUN_RUNNING &&
        store_run_has_executor(ls(c), r.run_id)) {
        int rc = store_service_query(store_home(ls(c)), r.run_id, name, args, result, err);
        if (rc <= 0) return rc;
    }
    return store_query(ls(c), id, name, args, result, err);
}

static int local_describe(cli_client *c, const char *id,
                          Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse **out, jerr *err) {
    return store_describe(ls(c), id, out, err);
}

static int local_list(cli_client *c, const char *query,
                      Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse **out, jerr *err) {
    store_run *runs = NULL;
    size_t n = 0;
    if (store_run_list(ls(c), 0, &runs, &n, err) != 0) return -1;
    Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse *resp = malloc(sizeof *resp);
    if (!resp) {
        free(runs);
        return jerr_oom(err, "listing");
    }
    temporal__api__workflowservice__v1__list_workflow_executions_response__init(resp);
    if (n) {
        resp->executions = calloc(n, sizeof *resp->executions);
        if (!resp->executions) {
            free(runs);
            free(resp);
            return jerr_oom(err, "listing");
        }
    }
    for (size_t i = 0; i < n; i++) {
        Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = NULL;
        if (store_describe(ls(c), runs[i].run_id, &d, err) != 0) {
            free(runs);
            protobuf_c_message_free_unpacked(&resp->base, NULL);
            return -1;
        }
        resp->executions[resp->n_executions++] = d->workflow_execution_info;
        d->workflow_execution_info = NULL;
        protobuf_c_message_free_unpacked(&d->base, NULL);
    }
    free(runs);
    *out = resp;
    return 0;
}

static int local_history(cli_client *c, const char *id, Temporal__Api__History__V1__History **out, jerr *err) {
    store_run r;
    if (store_run_find(ls(c), id, &r, err) != 0) return -1;
    Temporal__Api__History__V1__History *h = malloc(sizeof *h);
    if (!h) return jerr_oom(err, "reading history");
    temporal__api__history__v1__history__init(h);
    if (store_history(ls(c), r.run_id, 0, &h->events, &h->n_events, err) != 0) {
        free(h);
        return -1;
    }
    *out = h;
    return 0;
}

/* Waits in slices of a second; between them, a run that no process
 * executes is reported once (on stderr) instead of waited on silently: it
 * will not close until someone resumes it. The first check comes after a
 * second, so a `start` whose background process is still starting is not
 * reported. */
static int local_result(cli_client *c, const char *id, int64_t timeout_ms,
                        Temporal__Api__History__V1__HistoryEvent **close_event, jerr *err) {
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : time_now_nanos() / 1000000 + timeout_ms;
    bool told = false;
    /* a run the service executes: its socket says when it closes (no polling) */
    store_run sr;
    if (store_run_find(ls(c), id, &sr, NULL) == 0 && sr.status == RUN_RUNNING)
        store_service_wait(store_home(ls(c)), sr.run_id, timeout_ms);
    for (;;) {
        int64_t left = deadline - time_now_nanos() / 1000000;
        int64_t slice = left < 1000 ? (left > 0 ? left : 0) : 1000;
        jerr e = {0};
        if (store_wait_closed(ls(c), id, slice, close_event, &e) == 0) return 0;
        /* JERR_FAILED is "still running" after the slice; anything else is an error */
        if (e.code != JERR_FAILED || time_now_nanos() / 1000000 >= deadline) {
            *err = e;
            return -1;
        }
        store_run r;
        if (store_run_find(ls(c), id, &r, &e) != 0 || r.status != RUN_RUNNING) continue;
        bool executed = store_run_has_executor(ls(c), r.run_id);
        /* the command must name the store when it is not the default one */
        bool other_home = strcmp(store_home(ls(c)), home_dir(NULL)) != 0;
        char waits[600] = "";
        if (!executed && !told) {
            /* what the workflow itself waits for, as describe shows it */
            jbuf b;
            jbuf_init(&b, 1u << 20);
            cJSON *o = store_observe_json(ls(c), r.run_id, &b, &e) == 0 && b.data ? cJSON_Parse(b.data) : NULL;
            const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "waitingFor");
            if (cJSON_IsString(w) && *w->valuestring && strncmp(w->valuestring, "a process", 9) != 0)
                snprintf(waits, sizeof waits, ", which waits for %.500s", w->valuestring);
            cJSON_Delete(o);
            jbuf_free(&b);
            cli_errorf("no process executes workflow '%s'%s. It stays open, its timers and activities waiting, until "
                       "'jorch resume%s%s %s' continues it (from this or another terminal). Still waiting for it to "
                       "close%s.", r.workflow_id, waits, other_home ? " --home " : "",
                       other_home ? store_home(ls(c)) : "", r.workflow_id,
                       timeout_ms < 0 ? " (Ctrl-C stops waiting)" : "");
        }
        told = !executed;
    }
}

static int local_cancel(cli_client *c, const char *id, const char *reason, jerr *err) {
    return local_request(c, id, INBOX_CANCEL, NULL, NULL, reason, err);
}

static int local_terminate(cli_client *c, const char *id, const char *reason, jerr *err) {
    return local_request(c, id, INBOX_TERMINATE, NULL, NULL, reason, err);
}

static void local_free(cli_client *c) {
    store_close(ls(c));
    free(c->impl);
    free(c);
}

static int local_observe(cli_client *c, const char *id, jbuf *json, jerr *err) {
    return store_observe_json(ls(c), id, json, err);
}

static const cli_client_ops local_ops = {
    local_start, local_signal, local_query, local_describe, local_list,
    local_history, local_result, local_cancel, local_terminate, local_free, local_observe,
};

static cli_client *local_client_new(const char *home_opt, jerr *err) {
    store *s = NULL;
    if (store_open(home_dir(home_opt), &s, err) != 0) return NULL;
    cli_client *c = calloc(1, sizeof *c);
    local_client *lc = calloc(1, sizeof *lc);
    if (!c || !lc) {
        free(c);
        free(lc);
        store_close(s);
        jerr_oom(err, "opening the store");
        return NULL;
    }
    lc->s = s;
    c->ops = &local_ops;
    c->impl = lc;
    return c;
}

cli_client *cli_client_open(bool temporal, const char *home, jerr *err) {
    return temporal_selected(temporal) ? cli_temporal_client_new(err) : local_client_new(home, err);
}

const char *cli_home_dir(const char *opt) { return home_dir(opt); }

static cli_client *client_for(bool temporal_flag, const char *home_opt, int *exit_code) {
    jerr e = {0};
    cli_client *c = temporal_selected(temporal_flag) ? cli_temporal_client_new(&e) : local_client_new(home_opt, &e);
    if (!c) {
        cli_errorf("%s", e.msg);
        *exit_code = cli_exit_for(&e);
    }
    return c;
}

/* ------------------------------------------------------------ input, output */

/* A text as a JSON string payload. */
static Temporal__Api__Common__V1__Payload *string_payload(const char *text, jerr *err) {
    jbuf b;
    jbuf_init(&b, 16u << 20);
    jbuf_putc(&b, '"');
    for (const unsigned char *s = (const unsigned char *)text; *s; s++) {
        if (*s == '"' || *s == '\\') {
            jbuf_putc(&b, '\\');
            jbuf_putc(&b, (char)*s);
        } else if (*s < 0x20) {
            jbuf_printf(&b, "\\u%04x", *s);
        } else {
            jbuf_putc(&b, (char)*s);
        }
    }
    jbuf_putc(&b, '"');
    Temporal__Api__Common__V1__Payload *p = payload_from_json(b.data, b.len, err);
    jbuf_free(&b);
    return p;
}

/* The parser's message from its position on: "at line 1, column 2:
 * expected a string key" (without the lead "$.path: invalid JSON "). */
static const char *json_error_text(const char *msg) {
    const char *at = strstr(msg, "invalid JSON at ");
    return at ? at + strlen("invalid JSON ") : msg;
}

/* One input argument given after SCRIPT (or NAME), by the rule of
 * payload_from_arg: JSON when it parses, a string when it does not, unless
 * it starts like JSON ({ [ "). */
static Temporal__Api__Common__V1__Payload *arg_payload(const char *arg, int index, jerr *err) {
    bool looks_json = false;
    jerr perr = {0};
    Temporal__Api__Common__V1__Payload *p = payload_from_arg(arg, &looks_json, &perr);
    if (p) return p;
    if (looks_json)
        jerr_set(err, JERR_USAGE, "input argument %d '%.60s%s' %s. To pass it as text, give it as a JSON string: "
                 "--input '\"...\"'", index, arg, strlen(arg) > 60 ? "..." : "", perr.msg);
    else
        jerr_set(err, JERR_USAGE, "input argument %d: %s", index, perr.msg);
    return NULL;
}

/* One --input JSON or --input-file FILE value: exact JSON, never a string
 * guessed from text that does not parse. */
static Temporal__Api__Common__V1__Payload *exact_payload(const char *value, bool is_file, int index, jerr *err) {
    jerr perr = {0};
    Temporal__Api__Common__V1__Payload *p = NULL;
    if (is_file) {
        char *text = NULL;
        size_t len = 0;
        if (file_read_all(value, 16u << 20, &text, &len, &perr) != 0) {
            jerr_set(err, JERR_USAGE, "--input-file %s: %s", value, perr.msg);
            return NULL;
        }
        p = payload_from_json(text, len, &perr);
        free(text);
        if (!p) jerr_set(err, JERR_USAGE, "--input-file %s is not valid JSON: %s", value, json_error_text(perr.msg));
        return p;
    }
    p = payload_from_json(value, strlen(value), &perr);
    if (!p)
        jerr_set(err, JERR_USAGE, "--input number %d '%.60s%s' is not valid JSON: %s (a string needs double quotes: "
                 "--input '\"text\"')", index, value, strlen(value) > 60 ? "..." : "", json_error_text(perr.msg));
    return p;
}

/* The input of run/start/signal/query: either the arguments after SCRIPT
 * (NAME), or the --input/--input-file options, each one argument in the
 * order given (as `temporal workflow start --input` does), not both. */
static Temporal__Api__Common__V1__Payloads *input_payloads(const cli_args *a, int opt_input, int opt_input_file,
                                                           const char *const *args, int n, jerr *err) {
    bool exact = a->set[opt_input] || a->set[opt_input_file];
    if (exact && n > 0) {
        jerr_set(err, JERR_USAGE, "input given twice: as arguments (%s%s) and with --input/--input-file; use one",
                 args[0], n > 1 ? " ..." : "");
        return NULL;
    }
    Temporal__Api__Common__V1__Payloads *ps = payloads_new();
    if (!ps) {
        jerr_oom(err, "reading arguments");
        return NULL;
    }
    int count = exact ? 0 : n;
    if (exact)
        for (int i = 0; i < a->nrep; i++)
            if (a->rep_id[i] == opt_input || a->rep_id[i] == opt_input_file) count++;
    for (int i = 0, k = 0; k < count; i++) {
        Temporal__Api__Common__V1__Payload *p = NULL;
        if (!exact) {
            p = arg_payload(args[i], i + 1, err);
        } else if (a->rep_id[i] == opt_input || a->rep_id[i] == opt_input_file) {
            p = exact_payload(a->rep[i], a->rep_id[i] == opt_input_file, k + 1, err);
        } else {
            continue;
        }
        k++;
        if (!p) {
            protobuf_c_message_free_unpacked(&ps->base, NULL);
            return NULL;
        }
        if (payloads_add(ps, p) != 0) {
            protobuf_c_message_free_unpacked(&p->base, NULL);
            protobuf_c_message_free_unpacked(&ps->base, NULL);
            jerr_oom(err, "reading arguments");
            return NULL;
        }
    }
    return ps;
}

static void print_payloads(const Temporal__Api__Common__V1__Payloads *ps) {
    jbuf b;
    jbuf_init(&b, 0);
    jerr e = {0};
    if (payloads_to_json(ps, true, &b, &e) != 0)
        cli_errorf("cannot print the result: %s", e.msg);
    else
        printf("%s\n", b.data ? b.data : "null");
    jbuf_free(&b);
}

static void failure_text(const Temporal__Api__Failure__V1__Failure *f, jbuf *b) {
    for (int depth = 0; f && depth < 8; depth++, f = f->cause) {
        if (depth) jbuf_puts(b, ": caused by ");
        if (f->failure_info_case == TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_APPLICATION_FAILURE_INFO &&
            f->application_failure_info->type && *f->application_failure_info->type) {
            jbuf_puts(b, f->application_failure_info->type);
            jbuf_puts(b, ": ");
        }
        jbuf_puts(b, f->message ? f->message : "");
    }
}

/* Prints a close event the way `run` and `result` report it; returns the exit code. */
#define HAS_ATTR(e, x) ((e)->attributes_case == TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_##x##_EVENT_ATTRIBUTES)

static int report_close(const char *id, const Temporal__Api__History__V1__HistoryEvent *e) {
    jbuf b;
    jbuf_init(&b, 0);
    int rc = CLI_FAILED;
    /* a damaged close event (type without attributes) is reported by type */
    bool attrs_ok = HAS_ATTR(e, WORKFLOW_EXECUTION_COMPLETED) || HAS_ATTR(e, WORKFLOW_EXECUTION_FAILED) ||
                    HAS_ATTR(e, WORKFLOW_EXECUTION_CANCELED) || HAS_ATTR(e, WORKFLOW_EXECUTION_TERMINATED) ||
                    HAS_ATTR(e, WORKFLOW_EXECUTION_TIMED_OUT);
    switch (attrs_ok ? (int)e->event_type : -1) {
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        print_payloads(e->workflow_execution_completed_event_attributes->result);
        rc = CLI_OK;
        break;
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        failure_text(e->workflow_execution_failed_event_attributes->failure, &b);
        cli_errorf("workflow '%s' failed: %s", id, b.data ? b.data : "");
        break;
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        cli_errorf("workflow '%s' was cancelled", id);
        break;
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        cli_errorf("workflow '%s' was terminated: %s", id, e->workflow_execution_terminated_event_attributes->reason);
        break;
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        cli_errorf("workflow '%s' timed out", id);
        break;
    default:
        cli_errorf("workflow '%s' ended with %s", id, event_type_name(e->event_type));
    }
    jbuf_free(&b);
    return rc;
}

/* ------------------------------------------------------------ run / start / resume */

enum { O_ID, O_DETACH, O_TIME_SKIP, O_ACTIVITIES, O_HOME, O_TEMPORAL, O_QUIET, O_TASK_QUEUE, O_OUTPUT,
       O_REASON, O_STATUS, O_TIMEOUT, O_INPUT, O_INPUT_FILE, O_VERSION, O_VERBOSE, O_TYPE, O_RAW };

static const cli_opt run_opts[] = {
    {"activities", 1, O_ACTIVITIES}, {"detach", 0, O_DETACH}, {"home", 1, O_HOME}, {"id", 1, O_ID},
    {"input", CLI_REPEAT, O_INPUT}, {"input-file", CLI_REPEAT, O_INPUT_FILE}, {"quiet", 0, O_QUIET}, {"task-queue", 1, O_TASK_QUEUE}, {"temporal", 0, O_TEMPORAL},
    {"time-skip", 0, O_TIME_SKIP}, {"verbose", 0, O_VERBOSE}, {NULL, 0, 0}};

static const char run_help[] =
    "Usage: jorch run [OPTIONS] SCRIPT [ARG...]\n"
    "       jorch start [OPTIONS] SCRIPT|TYPE [ARG...]\n\n"
    "run starts a workflow and executes it to the end in this process: progress on\n"
    "stderr, the result as JSON on stdout; exit 0 when it completed, 1 when it failed\n"
    "(or a workflow task failed: fix the environment, or fix the script and\n"
    "'jorch upgrade ID'; then 'jorch resume ID').\n"
    "start only starts it and prints the workflow id (on the embedded backend, the\n"
    "store's service executes it, started when none runs: see 'jorch serve --help').\n"
    "Each ARG is one workflow argument: JSON when it parses, otherwise a string; an\n"
    "ARG that starts with { [ or \" must be valid JSON. Options go before SCRIPT; to\n"
    "pass an ARG that starts with '-', put it after '--' (jorch run SCRIPT -- -x).\n"
    "Options:\n"
    "  --id ID            workflow id (default TYPE-<random>)\n"
    "  --input JSON       one workflow argument, exact JSON (repeat for more; instead of ARGs)\n"
    "  --input-file FILE  one workflow argument, the JSON in FILE (repeatable, like --input)\n"
    "  --detach           run: hand it to the service (like start), print the id\n"
    "  --time-skip        fire timers as soon as nothing else can happen (tests)\n"
    "  --activities DIR   where activity modules are (default ./activities; on Temporal,\n"
    "                     for run's own worker)\n"
    "  --home DIR         the embedded store (default $JORCH_HOME or ./.jorch)\n"
    "  --task-queue Q     task queue (default: jorch embedded, $TEMPORAL_TASK_QUEUE on Temporal;\n"
    "                     run on Temporal: its own queue and worker, or with Q the\n"
    "                     workers polling Q)\n"
    "  --temporal         use Temporal (also FEATURE_TEMPORAL_ENABLED=true); run executes\n"
    "                     the workflow with a worker in this process\n"
    "  --quiet            no progress lines\n"
    "  --verbose          on a terminal, also each activity's start and completion\n";

/* Ctrl-C while a run executes (or `run --temporal` waits): say how to go on.
 * The text is made before the handler is installed; the handler only
 * writes it and then dies of SIGINT as before. That is safe: every state
 * change is committed in one transaction, and a dead process's lease is
 * free at once for `jorch resume`. */
static char interrupt_msg[4096];
static size_t interrupt_len;
static struct sigaction interrupt_old;
static bool interrupt_installed;

static void on_interrupt(int sig) {
    ssize_t w = write(STDERR_FILENO, interrupt_msg, interrupt_len);
    (void)w;
    signal(sig, SIG_DFL);
    raise(sig);
}

static void interrupt_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void interrupt_notice(const char *fmt, ...) {
    struct sigaction old;
    /* started with SIGINT ignored (nohup, a background job): keep it so */
    if (sigaction(SIGINT, NULL, &old) != 0 || old.sa_handler == SIG_IGN) return;
    /* on a terminal, erase the live status line (and the echoed ^C) first */
    int n = snprintf(interrupt_msg, sizeof interrupt_msg, "%s", isatty(STDERR_FILENO) ? "\r\033[K" : "");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(interrupt_msg + n, sizeof interrupt_msg - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0) return;
    interrupt_len = strlen(interrupt_msg);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, &interrupt_old) == 0) interrupt_installed = true;
}

static void interrupt_notice_off(void) {
    if (interrupt_installed) sigaction(SIGINT, &interrupt_old, NULL);
    interrupt_installed = false;
}

/* The activities directory as an absolute path (the store remembers it for
 * `resume` from any directory). --activities must name a directory; the
 * default ./activities may be absent (a workflow without activities): then
 * out is "" and nothing is remembered. */
static int activities_dir_abs(const cli_args *a, char *out, size_t outlen) {
    const char *dir = a->set[O_ACTIVITIES] ? a->val[O_ACTIVITIES] : "activities";
    struct stat st;
    out[0] = '\0';
    errno = 0;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (!a->set[O_ACTIVITIES]) return 0;
        cli_errorf("--activities %s: %s", dir, errno == ENOENT ? "no such directory" : "not a directory");
        return CLI_USAGE;
    }
    char resolved[PATH_MAX];
    int n;
    if (realpath(dir, resolved)) {
        n = snprintf(out, outlen, "%s", resolved);
    } else if (dir[0] == '/') {
        n = snprintf(out, outlen, "%s", dir);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) {
            cli_errorf("cannot resolve the activities directory %s: the current directory: %s", dir, strerror(errno));
            return CLI_USAGE;
        }
        n = snprintf(out, outlen, "%s/%s", cwd, dir);
    }
    if (n < 0 || (size_t)n >= outlen) {
        cli_errorf("the activities directory path %s is too long (at most %zu bytes)", dir, outlen - 1);
        return CLI_USAGE;
    }
    return 0;
}

static int execute_local(store *s, const char *run_id, const cli_args *a, bool stop_on_task_failure) {
    jbuf conf;
    jerr cerr = {0};
    if (config_activity_json(store_home(s), &conf, &cerr) != 0) {
        cli_errorf("%s", cerr.msg);
        jbuf_free(&conf);
        return CLI_USAGE;
    }
    /* --activities wins and is remembered for the next resume; without it,
     * the directory the run was started (or last resumed) with */
    store_run cur;
    char adir[sizeof cur.activities_dir] = "";
    if (store_run_find(s, run_id, &cur, &cerr) != 0) {
        cli_errorf("%s", cerr.msg);
        jbuf_free(&conf);
        return cli_exit_for(&cerr);
    }
    if (a->set[O_ACTIVITIES]) {
        int arc = activities_dir_abs(a, adir, sizeof adir);
        /* not while another process executes the run: the runner refuses this one anyway */
        if (arc == 0 && strcmp(adir, cur.activities_dir) != 0 && !store_run_has_executor(s, cur.run_id) &&
            store_run_set_activities_dir(s, cur.run_id, adir, &cerr) != 0) {
            cli_errorf("%s", cerr.msg);
            arc = cli_exit_for(&cerr);
        }
        if (arc) {
            jbuf_free(&conf);
            return arc;
        }
    } else if (cur.activities_dir[0]) {
        snprintf(adir, sizeof adir, "%s", cur.activities_dir);
        struct stat st;
        if (stat(adir, &st) != 0 && !a->set[O_QUIET])
            cli_errorf("warning: the activities directory of run %s, %s, is gone (%s): its activities fail and are "
                       "retried until you give 'jorch resume --activities DIR %s'",
                       cur.workflow_id, adir, strerror(errno), cur.workflow_id);
    }
    store_runner_opts ro = {.activities_dir = adir[0] ? adir : NULL,
                            .follow_continue_as_new = true, .quiet = a->set[O_QUIET],
                            .verbose = a->set[O_VERBOSE],
                            .stop_on_task_failure = stop_on_task_failure, .config_json = conf.data,
                            .log_file = getenv("JORCH_LOG_FILE")};
    store_run fin;
    memset(&fin, 0, sizeof fin);
    jerr e = {0};
    const char *home_opt = a->set[O_HOME] ? " --home " : "";
    const char *home_val = a->set[O_HOME] ? a->val[O_HOME] : "";
    interrupt_notice("[%s] interrupted. The run stays open in the store and nothing is lost, but no process "
                     "executes it now: its timers and activities wait until 'jorch resume%s%s %s' continues it. "
                     "'jorch signal', 'query' and 'cancel' still work meanwhile.\n",
                     cur.workflow_id, home_opt, home_val, cur.workflow_id);
    int xrc = store_runner_execute(s, run_id, &ro, &fin, &e);
    interrupt_notice_off();
    jbuf_free(&conf);
    if (xrc != 0) {
        if (e.code == JERR_FAILED) {
            cli_errorf("%s", e.msg);
            const char *wid = fin.workflow_id[0] ? fin.workflow_id : run_id;
            cli_errorf("the run is still open. A script bug: fix the script, then 'jorch upgrade %s' (the run is "
                       "pinned to the version it started with) and 'jorch resume %s'. Anything else: fix it, then "
                       "'jorch resume %s'", wid, wid, wid);
            return CLI_FAILED;
        }
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    Temporal__Api__History__V1__HistoryEvent *ce = NULL;
    if (store_wait_closed(s, fin.run_id, 0, &ce, &e) != 0) {
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    int rc = report_close(fin.workflow_id, ce);
    protobuf_c_message_free_unpacked(&ce->base, NULL);
    return rc;
}

/* Re-executes this binary as `jorch resume ID` in the background, with
 * output going to $JORCH_HOME/logs/ID.log. */
static int spawn_background(const char *home, const char *wid, const cli_args *a) {
    jerr e = {0};
    if (cli_spawn_executor(home, wid, a->set[O_ACTIVITIES] ? a->val[O_ACTIVITIES] : NULL, &e) != 0) {
        cli_errorf("%s", e.msg);
        return CLI_FAILED;
    }
    return 0;
}

int cli_execute_background(const char *home, const char *run_id, const char *activities_dir, jerr *err) {
    if (cli_service_handoff(home, run_id) == 0) return 0;
    return cli_spawn_executor(home, run_id, activities_dir, err);
}

int cli_spawn_executor(const char *home, const char *wid, const char *activities_dir, jerr *err) {
    char logdir[1100], logpath[4300], fname[3100];
    snprintf(logdir, sizeof logdir, "%s/logs", home);
    mkdir(logdir, 0700);
    /* the id is the user's; the file name must stay inside logs/ */
    if (id_file_name(wid, fname, sizeof fname) != 0) snprintf(fname, sizeof fname, "run");
    snprintf(logpath, sizeof logpath, "%s/%s.log", logdir, fname);
    pid_t pid = fork();
    if (pid < 0) return jerr_set(err, JERR_BACKEND, "cannot start a background process for '%s': %s", wid, strerror(errno));
    if (pid == 0) {
        /* a caller that blocks signals (jorch web waits for them) must not
         * leave a run's executor unable to be stopped */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (nul >= 0) dup2(nul, 0);
        /* tells the runner its output is this file, to rotate (runlog.c) */
        if (fd >= 0) setenv("JORCH_LOG_FILE", logpath, 1);
        const char *argv[12];
        int n = 0;
        argv[n++] = "jorch";
        argv[n++] = "resume";
        argv[n++] = "--home";
        argv[n++] = home;
        if (activities_dir) {
            argv[n++] = "--activities";
            argv[n++] = activities_dir;
        }
        argv[n++] = wid;
        argv[n] = NULL;
        execv("/proc/self/exe", (char *const *)argv);
        _exit(127);
    }
    return 0;
}

/* `jorch run --temporal`: an in-process worker (tc_worker.c) polls a task
 * queue made for this run, the workflow starts there, and the result is
 * awaited in short long-polls so that a failed workflow task ends the wait
 * as it does on the embedded backend (exit 1, the run left open). */
static int run_in_process(cli_client *c, cli_start_opts *so, const char *script, const cli_args *a) {
    jerr e = {0};
    char uuid[37];
    char queue[64];
    if (uuid_random(uuid) != 0) snprintf(uuid, sizeof uuid, "%016llx", (unsigned long long)time_now_nanos());
    snprintf(queue, sizeof queue, "jorch-run-%s", uuid);
    so->task_queue = queue;
    char wf_dir[1024];
    if (so->script_path != NULL)
        cli_script_dir(script, wf_dir, sizeof wf_dir);
    else
        snprintf(wf_dir, sizeof wf_dir, "workflows");
    const char *act_dir = a->set[O_ACTIVITIES] ? a->val[O_ACTIVITIES] : "activities";
    struct stat st;
    if (a->set[O_ACTIVITIES] && (stat(act_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        cli_errorf("--activities %s: no such directory", act_dir);
        return CLI_USAGE;
    }
    tc_worker_opts wo = {.workflows_dir = wf_dir, .activities_dir = act_dir, .task_queue = queue,
                         .run_mode = true, .quiet = a->set[O_QUIET]};
    tc_worker *w = tc_worker_start(&wo, &e);
    if (w == NULL) {
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    const char *wid = so->workflow_id;
    char *run_id = NULL;
    if (c->ops->start(c, so, &run_id, &e) != 0) {
        cli_errorf("%s", e.msg);
        tc_worker_stop(w);
        return cli_exit_for(&e);
    }
    if (!a->set[O_QUIET])
        fprintf(stderr, "[%s] started run %s of %s on Temporal (task queue %s, worker in this process)\n", wid,
                run_id, script, queue);
    free(run_id);
    interrupt_notice("[%s] interrupted. The run stays open on Temporal, but nothing polls its task queue %s now: "
                     "'jorch worker --task-queue %s' (in this directory) continues it; 'jorch terminate --temporal "
                     "%s' ends it.\n", wid, queue, queue, wid);
    int rc;
    for (;;) {
        Temporal__Api__History__V1__HistoryEvent *ce = NULL;
        jerr we = {0};
        char failure[sizeof we.msg + 64];
        int wrc = c->ops->result(c, wid, 1000, &ce, &we);
        if (wrc == 0) {
            rc = report_close(wid, ce);
            protobuf_c_message_free_unpacked(&ce->base, NULL);
            break;
        }
        if (tc_worker_task_failed(w, failure, sizeof failure)) {
            cli_errorf("%s", failure);
            cli_errorf("the run is still open on Temporal; its next workflow task waits for a worker on task "
                       "queue %s. A script bug: fix the script, then 'jorch upgrade --temporal %s --to SCRIPT' (the "
                       "run is pinned to the version it started with). Then, or after fixing anything else (the "
                       "environment), 'jorch worker --task-queue %s' in this directory continues the run",
                       queue, wid, queue);
            rc = CLI_FAILED;
            break;
        }
        /* our own 1 s deadline passing is "not closed yet"; anything else ends the wait */
        if (!(we.code == JERR_FAILED && strstr(we.msg, "did not close within") != NULL)) {
            cli_errorf("%s", we.msg);
            rc = cli_exit_for(&we);
            break;
        }
    }
    interrupt_notice_off();
    tc_worker_stop(w);
    return rc;
}

static int start_common(int argc, char **argv, bool run_mode) {
    const char *verb = run_mode ? "run" : "start";
    cli_args a;
    int rc = cli_parse(verb, argc, argv, run_opts, true, &a);
    if (rc) return rc;
    if (a.help) {
        fputs(run_help, stdout);
        return 0;
    }
    if (a.npos < 1) return cli_usage_error(verb, "missing SCRIPT");
    const char *script = a.pos[0];
    char type[256];
    engine_workflow_type(script, type, sizeof type);
    jerr e = {0};
    if ((a.set[O_ID] && id_check("workflow id (--id)", a.val[O_ID], ID_MAX_BYTES, &e) != 0) ||
        id_check("workflow type (the script's file name)", type, ID_MAX_BYTES, &e) != 0 ||
        (a.set[O_TASK_QUEUE] && id_check("task queue", a.val[O_TASK_QUEUE], ID_MAX_BYTES, &e) != 0))
        return cli_usage_error(verb, "%s", e.msg);
    Temporal__Api__Common__V1__Payloads *input = input_payloads(&a, O_INPUT, O_INPUT_FILE, a.pos + 1, a.npos - 1, &e);
    if (!input) {
        cli_errorf("%s", e.msg);
        return CLI_USAGE;
    }
    bool temporal = temporal_selected(a.set[O_TEMPORAL]);
    /* `run` on Temporal runs its own worker on a queue of its own, unless
     * --task-queue (or --detach) leaves the run to the workers of a queue */
    bool in_process = temporal && run_mode && !a.set[O_DETACH] && !a.set[O_TASK_QUEUE];
    if (temporal && (a.set[O_TIME_SKIP] || a.set[O_HOME] || (a.set[O_ACTIVITIES] && !in_process))) {
        protobuf_c_message_free_unpacked(&input->base, NULL);
        return cli_usage_error(verb, "--time-skip and --home work only on the embedded backend, and --activities "
                                     "on Temporal only with 'run' without --task-queue or --detach (otherwise "
                                     "the worker runs the activities)");
    }
    cli_start_opts so = {.workflow_id = a.set[O_ID] ? a.val[O_ID] : NULL, .workflow_type = type,
                         .task_queue = a.set[O_TASK_QUEUE] ? a.val[O_TASK_QUEUE] : NULL,
                         .script_path = (temporal && strstr(script, ".lua") == NULL) ? NULL : script, .input = input};
    /* the script's workflow.default_id(input), when it declares one and no --id was given
     * (at most 255 bytes: what the embedded store keeps of a workflow id) */
    char default_id[256] = "";
    if (so.script_path) {
        /* fail fast on a script that cannot load, on either backend */
        char *src = NULL;
        size_t len = 0;
        if (cli_read_script(script, &src, &len, &e) != 0) {
            protobuf_c_message_free_unpacked(&input->base, NULL);
            cli_errorf("%s", e.msg);
            return CLI_USAGE;
        }
        char dir[1024];
        cli_script_dir(script, dir, sizeof dir);
        int crc = engine_start_check(script, src, len, engine_find_module_in_dir, dir, input, default_id,
                                     sizeof default_id, &e);
        free(src);
        if (crc != 0) {
            protobuf_c_message_free_unpacked(&input->base, NULL);
            cli_errorf("%s", e.msg);
            return CLI_USAGE;
        }
        if (!so.workflow_id && default_id[0]) {
            /* the fix is in the script (or --id), not in this command's options */
            if (id_check("workflow id", default_id, ID_MAX_BYTES, &e) != 0) {
                protobuf_c_message_free_unpacked(&input->base, NULL);
                cli_errorf("%s: workflow.default_id gave no usable id for this input: %s. Fix the function (it gets "
                           "the workflow's arguments), or give the run an id with --id ID", script, e.msg);
                return CLI_USAGE;
            }
            so.workflow_id = default_id;
        }
    }
    if (!temporal) {
        /* a broken jorch.yaml is reported before anything is started */
        jbuf conf;
        if (config_activity_json(home_dir(a.set[O_HOME] ? a.val[O_HOME] : NULL), &conf, &e) != 0) {
            jbuf_free(&conf);
            protobuf_c_message_free_unpacked(&input->base, NULL);
            cli_errorf("%s", e.msg);
            return CLI_USAGE;
        }
        jbuf_free(&conf);
        store *s = NULL;
        rc = open_store(a.set[O_HOME] ? a.val[O_HOME] : NULL, &s);
        if (rc) {
            protobuf_c_message_free_unpacked(&input->base, NULL);
            return rc;
        }
        char *src2 = NULL;
        size_t len2 = 0;
        cli_read_script(script, &src2, &len2, &e);
        char adir[sizeof ((store_run *)0)->activities_dir];
        rc = activities_dir_abs(&a, adir, sizeof adir);
        if (rc) {
            free(src2);
            protobuf_c_message_free_unpacked(&input->base, NULL);
            store_close(s);
            return rc;
        }
        store_new_run nr = {.workflow_id = so.workflow_id, .workflow_type = type, .task_queue = so.task_queue,
                            .script_name = script, .script_src = src2, .script_len = len2, .input = input,
                            .time_skip = a.set[O_TIME_SKIP], .activities_dir = adir[0] ? adir : NULL,
                            .hold_lease = run_mode && !a.set[O_DETACH]};
        store_run r;
        int src_rc = src2 ? store_run_start(s, &nr, &r, &e) : -1;
        free(src2);
        protobuf_c_message_free_unpacked(&input->base, NULL);
        if (src_rc != 0) {
            cli_errorf("%s", e.msg);
            store_close(s);
            return cli_exit_for(&e);
        }
        if (!run_mode || a.set[O_DETACH]) {
            /* the service executes it (started now if none runs); a
             * process of its own only when that is off or impossible */
            const char *home = home_dir(a.set[O_HOME] ? a.val[O_HOME] : NULL);
            rc = cli_service_handoff(home, r.run_id) == 0 ? 0 : spawn_background(home, r.workflow_id, &a);
            if (rc == 0) printf("%s\n", r.workflow_id);
            store_close(s);
            return rc;
        }
        if (!a.set[O_QUIET]) fprintf(stderr, "[%s] started run %s of %s\n", r.workflow_id, r.run_id, script);
        rc = execute_local(s, r.run_id, &a, true);
        store_close(s);
        return rc;
    }
    cli_client *c = client_for(true, NULL, &rc);
    if (!c) {
        protobuf_c_message_free_unpacked(&input->base, NULL);
        return rc;
    }
    /* the id is made here so it can be printed: the server returns only a run id */
    char gen_id[300], uuid[37];
    if (!so.workflow_id) {
        if (uuid_random(uuid) != 0) snprintf(uuid, sizeof uuid, "%08lx", (unsigned long)time_now_nanos());
        snprintf(gen_id, sizeof gen_id, "%s-%s", type, uuid);
        so.workflow_id = gen_id;
    }
    char *run_id = NULL;
    if (in_process) {
        rc = run_in_process(c, &so, script, &a);
        protobuf_c_message_free_unpacked(&input->base, NULL);
        c->ops->free(c);
        return rc;
    }
    if (c->ops->start(c, &so, &run_id, &e) != 0) {
        cli_errorf("%s", e.msg);
        rc = cli_exit_for(&e);
    } else if (!run_mode || a.set[O_DETACH]) {
        printf("%s\n", so.workflow_id ? so.workflow_id : run_id);
        rc = 0;
    } else {
        Temporal__Api__History__V1__HistoryEvent *ce = NULL;
        const char *wid = so.workflow_id ? so.workflow_id : run_id;
        if (!a.set[O_QUIET])
            fprintf(stderr, "[%s] started on Temporal; waiting for a worker to run it (Ctrl-C stops waiting, "
                            "the workflow keeps running)\n", wid);
        interrupt_notice("[%s] stopped waiting; the workflow keeps running on Temporal. 'jorch result --temporal %s' "
                         "waits for it again; 'jorch signal --temporal %s NAME' still reaches it.\n", wid, wid, wid);
        int wrc = c->ops->result(c, wid, -1, &ce, &e);
        interrupt_notice_off();
        if (wrc != 0) {
            cli_errorf("%s", e.msg);
            rc = cli_exit_for(&e);
        } else {
            rc = report_close(wid, ce);
            protobuf_c_message_free_unpacked(&ce->base, NULL);
        }
    }
    free(run_id);
    protobuf_c_message_free_unpacked(&input->base, NULL);
    c->ops->free(c);
    return rc;
}

int cli_verb_run(int argc, char **argv) { return start_common(argc, argv, true); }
int cli_verb_start(int argc, char **argv) { return start_common(argc, argv, false); }

static const cli_opt resume_opts[] = {{"activities", 1, O_ACTIVITIES}, {"home", 1, O_HOME}, {"quiet", 0, O_QUIET},
                                      {"verbose", 0, O_VERBOSE}, {NULL, 0, 0}};

int cli_verb_resume(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse("resume", argc, argv, resume_opts, false, &a);
    if (rc) return rc;
    if (a.help) {
        printf("Usage: jorch resume [--activities DIR] [--home DIR] [--quiet] [--verbose] ID\n\n"
               "Continues executing an embedded run whose process stopped (crash, kill, a\n"
               "failed workflow task that you have since fixed) and prints its result.\n");
        return 0;
    }
    if (a.npos != 1) return cli_usage_error("resume", "expected one workflow id");
    jerr ve = {0};
    if (id_check("workflow id", a.pos[0], ID_MAX_BYTES, &ve) != 0) return cli_usage_error("resume", "%s", ve.msg);
    store *s = NULL;
    rc = open_store(a.set[O_HOME] ? a.val[O_HOME] : NULL, &s);
    if (rc) return rc;
    store_run r;
    jerr e = {0};
    if (store_run_find(s, a.pos[0], &r, &e) != 0) {
        cli_errorf("%s", e.msg);
        store_close(s);
        return cli_exit_for(&e);
    }
    /* the service executes it: it lets the run go only when the run's last
     * workflow task failed (resume after a fix); otherwise it goes on with it */
    store_executor x;
    if (r.status == RUN_RUNNING && store_run_executor(s, r.run_id, &x, &e) == 0 && x.held && x.alive && x.service) {
        char line[128], *reply = NULL;
        snprintf(line, sizeof line, "{\"op\":\"release\",\"run\":\"%s\"}\n", r.run_id);
        bool released = store_service_request(store_home(s), line, &reply, 10000, &e) == 0 && reply &&
                        strstr(reply, "\"released\":true") != NULL;
        free(reply);
        if (!released) {
            cli_errorf("workflow '%s' is being executed by process %ld (the service); 'jorch result %s' waits for "
                       "it, 'jorch serve --status' shows what it waits for", r.workflow_id, x.pid, r.workflow_id);
            store_close(s);
            return CLI_USAGE;
        }
    }
    rc = execute_local(s, r.run_id, &a, true);
    store_close(s);
    return rc;
}

/* ------------------------------------------------------------ client verbs */

static const cli_opt client_opts[] = {
    {"home", 1, O_HOME}, {"no-json-shorthand-payloads", 0, O_RAW}, {"output", 1, O_OUTPUT}, {"raw", 0, O_RAW},
    {"reason", 1, O_REASON}, {"status", 1, O_STATUS}, {"temporal", 0, O_TEMPORAL}, {"timeout", 1, O_TIMEOUT},
    {"type", 1, O_TYPE}, {"version", 1, O_VERSION}, {NULL, 0, 0}};

typedef struct client_verb_spec {
    const char *name;
    int min_pos, max_pos;
    const char *help;
} client_verb_spec;

/* signal and query also take their input as exact JSON */
static const cli_opt input_client_opts[] = {
    {"home", 1, O_HOME}, {"input", CLI_REPEAT, O_INPUT}, {"input-file", CLI_REPEAT, O_INPUT_FILE},
    {"temporal", 0, O_TEMPORAL}, {NULL, 0, 0}};

static int client_prologue_opts(const client_verb_spec *v, const cli_opt *opts, int argc, char **argv, cli_args *a,
                                cli_client **c) {
    int rc = cli_parse(v->name, argc, argv, opts, false, a);
    if (rc) return rc;
    if (a->help) {
        fputs(v->help, stdout);
        return -1;
    }
    if (a->npos < v->min_pos || a->npos > v->max_pos) return cli_usage_error(v->name, "wrong number of arguments");
    if (a->set[O_VERSION] && strcmp(v->name, "list") != 0) return cli_usage_error(v->name, "unknown option '--version'");
    if (a->set[O_OUTPUT] && strcmp(a->val[O_OUTPUT], "json") != 0 && strcmp(a->val[O_OUTPUT], "text") != 0)
        return cli_usage_error(v->name, "--output must be 'json' or 'text'");
    /* ids and names as Temporal accepts them; signal and query take a name second */
    jerr ve = {0};
    if (a->npos >= 1 && id_check("workflow id", a->pos[0], ID_MAX_BYTES, &ve) != 0)
        return cli_usage_error(v->name, "%s", ve.msg);
    if (a->npos >= 2 && (strcmp(v->name, "signal") == 0 || strcmp(v->name, "query") == 0)) {
        char what[32];
        snprintf(what, sizeof what, "%s name", v->name);
        if (id_check(what, a->pos[1], ID_MAX_BYTES, &ve) != 0) return cli_usage_error(v->name, "%s", ve.msg);
    }
    if (a->set[O_REASON] && text_check_utf8("--reason", a->val[O_REASON], &ve) != 0)
        return cli_usage_error(v->name, "%s", ve.msg);
    *c = client_for(a->set[O_TEMPORAL], a->set[O_HOME] ? a->val[O_HOME] : NULL, &rc);
    return *c ? 0 : rc;
}

static int client_prologue(const client_verb_spec *v, int argc, char **argv, cli_args *a, cli_client **c) {
    return client_prologue_opts(v, client_opts, argc, argv, a, c);
}

#define CLIENT_HELP_COMMON "  --home DIR      the embedded store (default $JORCH_HOME or ./.jorch)\n" \
                           "  --temporal      use Temporal (also FEATURE_TEMPORAL_ENABLED=true)\n"

static int finish(cli_client *c, int rc) {
    c->ops->free(c);
    return rc;
}

int cli_verb_signal(int argc, char **argv) {
    static const client_verb_spec v = {"signal", 2, 3,
        "Usage: jorch signal ID NAME [ARG]\n\nSends signal NAME (with an optional argument) to a running workflow. ARG is\n"
        "JSON when it parses, otherwise a string; one that starts with { [ or \" must be JSON.\n"
        "  --input JSON      one signal argument, exact JSON (repeat for more; instead of ARG)\n"
        "  --input-file FILE one signal argument, the JSON in FILE (repeatable)\n" CLIENT_HELP_COMMON};
    cli_args a;
    cli_client *c = NULL;
    int rc = client_prologue_opts(&v, input_client_opts, argc, argv, &a, &c);
    if (rc) return rc < 0 ? 0 : rc;
    jerr e = {0};
    Temporal__Api__Common__V1__Payloads *args = input_payloads(&a, O_INPUT, O_INPUT_FILE, a.pos + 2, a.npos - 2, &e);
    if (!args || c->ops->signal(c, a.pos[0], a.pos[1], args, &e) != 0) {
        cli_errorf("%s", e.msg);
        rc = cli_exit_for(&e);
    }
    if (args) protobuf_c_message_free_unpacked(&args->base, NULL);
    return finish(c, rc);
}

int cli_verb_query(int argc, char **argv) {
    static const client_verb_spec v = {"query", 2, 3,
        "Usage: jorch query ID NAME [ARG]\n\nAsks a workflow (running or closed) a query; prints the answer as JSON.\n"
        "ARG, --input and --input-file work as for signal.\n"
        "  --input JSON      one query argument, exact JSON (repeatable; instead of ARG)\n"
        "  --input-file FILE one query argument, the JSON in FILE (repeatable)\n" CLIENT_HELP_COMMON};
    cli_args a;
    cli_client *c = NULL;
    int rc = client_prologue_opts(&v, input_client_opts, argc, argv, &a, &c);
    if (rc) return rc < 0 ? 0 : rc;
    jerr e = {0};
    Temporal__Api__Common__V1__Payloads *args = input_payloads(&a, O_INPUT, O_INPUT_FILE, a.pos + 2, a.npos - 2, &e);
    Temporal__Api__Common__V1__Payloads *res = NULL;
    if (!args || c->ops->query(c, a.pos[0], a.pos[1], args, &res, &e) != 0) {
        cli_errorf("%s", e.msg);
        rc = cli_exit_for(&e);
    } else {
        print_payloads(res);
    }
    if (args) protobuf_c_message_free_unpacked(&args->base, NULL);
    if (res) protobuf_c_message_free_unpacked(&res->base, NULL);
    return finish(c, rc);
}

static const char *memo_value(const Temporal__Api__Common__V1__Memo *m, const char *key, char *buf, size_t len) {
    snprintf(buf, len, "-");
    for (size_t i = 0; m && i < m->n_fields; i++) {
        if (strcmp(m->fields[i]->key, key) != 0 || !m->fields[i]->value) continue;
        const ProtobufCBinaryData *d = &m->fields[i]->value->data;
        size_t n = d->len < len - 1 ? d->len : len - 1;
        if (n >= 2 && d->data[0] == '"') {
            memcpy(buf, d->data + 1, n - 2);
            buf[n - 2] = '\0';
        } else {
            memcpy(buf, d->data, n);
            buf[n] = '\0';
        }
    }
    return buf;
}

static void ts_text(const Google__Protobuf__Timestamp *t, char *buf, size_t len) {
    if (!t) snprintf(buf, len, "-");
    else time_format_rfc3339(pb_timestamp_nanos(t), buf, len);
}

/* Text from the backend for a terminal: ids made by an older jorch (or
 * any Temporal client) may hold control characters. Each slot is one
 * escaped string, valid until the slot is used again. */
#define ESC_SLOTS 8
static jbuf esc_slot[ESC_SLOTS];
static const char *esc(int slot, const char *s) {
    jbuf *b = &esc_slot[slot];
    if (!b->max) jbuf_init(b, 1u << 20);
    jbuf_reset(b);
    if (!s) return "";
    if (text_escape(b, s, strlen(s), false) != 0 || !b->data) return "?";
    return b->data;
}

static const char *status_text(int st) {
    static const char *names[] = {"Unspecified", "Running", "Completed", "Failed", "Canceled",
                                  "Terminated", "ContinuedAsNew", "TimedOut", "Paused"};
    return st >= 0 && st <= 8 ? names[st] : "Unknown";
}

/* Messages as JSON: payloads in the official CLI's shorthand unless the
 * raw form was asked for (--no-json-shorthand-payloads / --raw). */
static int msg_json(const ProtobufCMessage *m, int indent, const cli_args *a, jbuf *b, jerr *e) {
    return protojson_write_ex(m, indent, a->set[O_RAW] ? 0 : PROTOJSON_SHORTHAND, b, e);
}

/* A cJSON tree pretty-printed like protojson's output (two spaces a
 * level), starting at indentation level `level`. -1 when out of memory. */
static int json_pretty(const cJSON *v, int level, jbuf *b) {
    int bad = 0;
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
        bool obj = cJSON_IsObject(v);
        bad |= jbuf_putc(b, obj ? '{' : '[');
        const cJSON *c;
        bool first = true;
        cJSON_ArrayForEach(c, v) {
            bad |= jbuf_puts(b, first ? "\n" : ",\n");
            first = false;
            for (int i = 0; i <= level; i++) bad |= jbuf_puts(b, "  ");
            if (obj) {
                /* the key with JSON escaping: cJSON prints it as a string */
                cJSON *k = cJSON_CreateString(c->string ? c->string : "");
                char *kt = k ? cJSON_PrintUnformatted(k) : NULL;
                bad |= kt ? jbuf_puts(b, kt) : -1;
                bad |= jbuf_puts(b, ": ");
                cJSON_free(kt);
                cJSON_Delete(k);
            }
            bad |= json_pretty(c, level + 1, b);
        }
        if (!first) {
            bad |= jbuf_putc(b, '\n');
            for (int i = 0; i < level; i++) bad |= jbuf_puts(b, "  ");
        }
        bad |= jbuf_putc(b, obj ? '}' : ']');
        return bad ? -1 : 0;
    }
    char *t = cJSON_PrintUnformatted(v);
    bad |= t ? jbuf_puts(b, t) : -1;
    cJSON_free(t);
    return bad ? -1 : 0;
}

static const char *cj_str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* "2026-12-01 14:02" in local time. */
static void local_time_text(int64_t nanos, char *buf, size_t len) {
    time_t t = (time_t)(nanos / 1000000000);
    struct tm tm;
    if (nanos <= 0 || !localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M", &tm) == 0)
        snprintf(buf, len, "-");
}

/* "3m ago" / "in 2h" relative to now. */
static void relative_text(int64_t nanos, char *buf, size_t len) {
    int64_t d = nanos - time_now_nanos();
    char h[48];
    duration_human(d < 0 ? -d : d, h, sizeof h);
    snprintf(buf, len, d < 0 ? "%s ago" : "in %s", h);
}

static void print_list_line(const char *label, const cJSON *arr) {
    const cJSON *e;
    bool first = true;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsString(e)) continue;
        printf("%s%s", first ? label : ", ", esc(0, e->valuestring));
        first = false;
    }
    if (!first) printf("\n");
}

/* The embedded backend's view of a running run, as describe prints it. */
static void print_observed(const cJSON *o) {
    const char *details = cj_str(o, "currentDetails"), *wf = cj_str(o, "waitingFor");
    const char *since = cj_str(o, "waitingSince"), *err = cj_str(o, "statusError");
    if (details) printf("Details:      %s\n", esc(0, details));
    if (wf) {
        int64_t ns = 0;
        jerr ignore = {0};
        char rel[64] = "";
        if (since && time_parse_rfc3339(since, &ns, &ignore) == 0) relative_text(ns, rel, sizeof rel);
        printf("Waiting for:  %s%s%s%s%s%s\n", esc(0, wf), since ? ", since " : "", esc(1, since), rel[0] ? " (" : "",
               rel, rel[0] ? ")" : "");
    }
    if (err) printf("              (%s)\n", esc(0, err));
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(o, "executor");
    if (ex && cj_str(ex, "text")) printf("Executed by:  %s\n", esc(0, cj_str(ex, "text")));
    const cJSON *ft = cJSON_GetObjectItemCaseSensitive(o, "failedTask");
    if (ft) {
        int n = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(ft, "attempts"));
        const char *next = cj_str(ft, "nextRetry");
        int64_t ns = 0;
        jerr ignore = {0};
        char rel[64] = "";
        if (next && time_parse_rfc3339(next, &ns, &ignore) == 0) relative_text(ns, rel, sizeof rel);
        if (next)
            printf("Failed task:  %d attempt%s in a row; the service tries it again at %s%s%s%s\n", n,
                   n == 1 ? "" : "s", esc(0, next), rel[0] ? " (" : "", rel, rel[0] ? ")" : "");
        else
            printf("Failed task:  %d attempt%s in a row; a request, 'jorch resume' or the service's next start "
                   "tries it again\n", n, n == 1 ? "" : "s");
    }
    const cJSON *waits = cJSON_GetObjectItemCaseSensitive(o, "waits"), *w;
    if (cJSON_GetArraySize(waits) > 0) printf("Coroutines:\n");
    cJSON_ArrayForEach(w, waits) {
        const char *kind = cj_str(w, "kind"), *name = cj_str(w, "name"), *desc = cj_str(w, "description");
        printf("  %s: %s%s%s at %s%s%s%s\n", esc(0, cj_str(w, "thread") ? cj_str(w, "thread") : "?"),
               esc(1, kind ? kind : "?"), name ? " " : "", esc(2, name), esc(3, cj_str(w, "site") ? cj_str(w, "site") : "?"),
               desc ? " (" : "", esc(4, desc), desc ? ")" : "");
    }
    print_list_line("Signals:      ", cJSON_GetObjectItemCaseSensitive(o, "signals"));
    print_list_line("Queries:      ", cJSON_GetObjectItemCaseSensitive(o, "queries"));
    print_list_line("Unhandled:    signals with no handler yet: ", cJSON_GetObjectItemCaseSensitive(o, "unhandledSignals"));
}

static void print_timers(const cJSON *o) {
    const cJSON *timers = cJSON_GetObjectItemCaseSensitive(o, "pendingTimers"), *t;
    if (cJSON_GetArraySize(timers) > 0) printf("Pending timers:\n");
    cJSON_ArrayForEach(t, timers) {
        const char *fire = cj_str(t, "fireTime");
        int64_t ns = 0;
        jerr ignore = {0};
        char rel[64] = "";
        if (fire && time_parse_rfc3339(fire, &ns, &ignore) == 0) relative_text(ns, rel, sizeof rel);
        printf("  timer %s: fires at %s%s%s%s\n", esc(0, cj_str(t, "timerId") ? cj_str(t, "timerId") : "?"),
               esc(1, fire ? fire : "?"), rel[0] ? " (" : "", rel, rel[0] ? ")" : "");
    }
}

/* Fetches the backend's extra view (NULL if it has none or it failed; the
 * failure is reported as a warning, describe still answers). */
static cJSON *observe(cli_client *c, const char *id, jbuf *raw) {
    if (!c->ops->observe) return NULL;
    jerr e = {0};
    if (c->ops->observe(c, id, raw, &e) != 0) {
        cli_errorf("warning: cannot tell what workflow '%s' waits for: %s", id, e.msg);
        return NULL;
    }
    return cJSON_Parse(raw->data ? raw->data : "{}");
}

int cli_verb_describe(int argc, char **argv) {
    static const client_verb_spec v = {"describe", 1, 1,
        "Usage: jorch describe ID [--output json] [--no-json-shorthand-payloads]\n\n"
        "Shows a workflow's status, script version, what it waits for (the wait_condition\n"
        "line and its description, the signals it handles), which process executes it,\n"
        "its pending activities (attempt, last failure, next retry) and timers.\n"
        "--output json prints Temporal's DescribeWorkflowExecutionResponse plus a \"jorch\"\n"
        "object with the embedded backend's view; payloads are shown as JSON values\n"
        "unless --no-json-shorthand-payloads (or --raw) asks for the raw form.\n" CLIENT_HELP_COMMON};
    cli_args a;
    cli_client *c = NULL;
    int rc = client_prologue(&v, argc, argv, &a, &c);
    if (rc) return rc < 0 ? 0 : rc;
    jerr e = {0};
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = NULL;
    if (c->ops->describe(c, a.pos[0], &d, &e) != 0) {
        cli_errorf("%s", e.msg);
        return finish(c, cli_exit_for(&e));
    }
    int out_rc = CLI_OK;
    jbuf raw;
    jbuf_init(&raw, 0);
    cJSON *obs = d->workflow_execution_info ? observe(c, a.pos[0], &raw) : NULL;
    if (!d->workflow_execution_info) {
        cli_errorf("the backend described workflow '%s' without its execution info", a.pos[0]);
        out_rc = CLI_UNREACHABLE;
    } else if (a.set[O_OUTPUT] && strcmp(a.val[O_OUTPUT], "json") == 0) {
        jbuf b;
        jbuf_init(&b, 0);
        if (msg_json(&d->base, 2, &a, &b, &e) == 0) {
            /* the extra view as one more top-level member, "jorch" */
            if (obs && cJSON_GetArraySize(obs) > 0 && b.len >= 2 && b.data[b.len - 1] == '}') {
                bool empty = b.len == 2;
                b.len--;
                while (b.len > 0 && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == ' ')) b.len--;
                b.data[b.len] = '\0';
                if (jbuf_puts(&b, empty ? "\n  \"jorch\": " : ",\n  \"jorch\": ") != 0 ||
                    json_pretty(obs, 1, &b) != 0 || jbuf_puts(&b, "\n}") != 0) {
                    jbuf_free(&b);
                    cli_errorf("out of memory writing the description of '%s'", a.pos[0]);
                    out_rc = CLI_FAILED;
                }
            }
            if (out_rc == CLI_OK) printf("%s\n", b.data);
        } else {
            cli_errorf("%s", e.msg);
            out_rc = CLI_FAILED;
        }
        jbuf_free(&b);
    } else {
        const Temporal__Api__Workflow__V1__WorkflowExecutionInfo *i = d->workflow_execution_info;
        char t1[48], t2[48], sn[1024], sha[80];
        ts_text(i->start_time, t1, sizeof t1);
        ts_text(i->close_time, t2, sizeof t2);
        printf("Workflow ID:  %s\nRun ID:       %s\nType:         %s\nStatus:       %s\nTask queue:   %s\n"
               "Started:      %s\nClosed:       %s\nHistory:      %" PRId64 " events\n",
               esc(0, i->execution ? i->execution->workflow_id : ""), esc(1, i->execution ? i->execution->run_id : ""),
               esc(2, i->type ? i->type->name : ""), status_text(i->status), esc(3, i->task_queue), t1, t2,
               i->history_length);
        memo_value(i->memo, "jorch.script", sn, sizeof sn);
        memo_value(i->memo, "jorch.script_sha256", sha, sizeof sha);
        if (strcmp(sn, "-") != 0) printf("Script:       %s (sha256 %s)\n", esc(0, sn), esc(1, sha));
        /* a bundle: the version's own digest and its modules */
        char vsha[80], mods[2048];
        memo_value(i->memo, "jorch.version_sha256", vsha, sizeof vsha);
        memo_value(i->memo, "jorch.version_modules", mods, sizeof mods);
        if (strcmp(vsha, "-") != 0 && strcmp(vsha, sha) != 0)
            printf("Bundle:       sha256 %s (the script and its modules: %s)\n", esc(0, vsha), esc(1, mods));
        char label[80];
        memo_value(i->memo, "jorch.script_version", label, sizeof label);
        if (strcmp(label, "-") != 0) printf("Version:      %s\n", esc(0, label));
        char autou[1100];
        memo_value(i->memo, "jorch.auto_upgrade", autou, sizeof autou);
        if (strcmp(autou, "-") != 0) printf("Auto-upgrade: %s\n", esc(0, autou));
        if (obs) print_observed(obs);
        if (d->n_pending_activities) printf("Pending activities:\n");
        for (size_t k = 0; k < d->n_pending_activities; k++) {
            const Temporal__Api__Workflow__V1__PendingActivityInfo *p = d->pending_activities[k];
            char next[96] = "";
            if (p->next_attempt_schedule_time) {
                char t[48], rel[64];
                ts_text(p->next_attempt_schedule_time, t, sizeof t);
                relative_text(pb_timestamp_nanos(p->next_attempt_schedule_time), rel, sizeof rel);
                snprintf(next, sizeof next, ", next retry at %s (%s)", t, rel);
            }
            char maxa[32] = "";
            if (p->maximum_attempts > 0) snprintf(maxa, sizeof maxa, " of %d", p->maximum_attempts);
            printf("  %s (id %s): attempt %d%s, %s%s%s%s\n", esc(0, p->activity_type ? p->activity_type->name : "?"),
                   esc(1, p->activity_id), p->attempt, maxa,
                   p->state == 2 ? "running" : p->state == 3 ? "cancel requested" : "scheduled", next,
                   p->last_failure ? ", last failure: " : "", esc(2, p->last_failure ? p->last_failure->message : ""));
        }
        if (obs) print_timers(obs);
    }
    cJSON_Delete(obs);
    jbuf_free(&raw);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    return finish(c, out_rc);
}

/* One run whose id or type is not UTF-8 (made before jorch checked) must
 * not make the JSON listing of the whole store fail: such a string is
 * shown escaped ("bad\xff"), with a warning. */
static void sanitize_field(char **field, const char *what) {
    jerr e = {0};
    if (!*field || text_check_utf8(what, *field, &e) == 0) return;
    jbuf b;
    jbuf_init(&b, 1u << 20);
    if (text_escape(&b, *field, strlen(*field), false) == 0 && b.data) {
        cli_errorf("a %s in the store is not valid UTF-8; listed escaped as '%s'", what, b.data);
        pb_str_replace(field, b.data);
    }
    jbuf_free(&b);
}

static void sanitize_for_json(Temporal__Api__Workflow__V1__WorkflowExecutionInfo *i) {
    if (i->execution) {
        sanitize_field(&i->execution->workflow_id, "workflow id");
        sanitize_field(&i->execution->run_id, "run id");
    }
    if (i->type) sanitize_field(&i->type->name, "workflow type");
    sanitize_field(&i->task_queue, "task queue");
}

int cli_verb_list(int argc, char **argv) {
    static const client_verb_spec v = {"list", 0, 0,
        "Usage: jorch list [--status S] [--type T] [--version SHA] [--output json]\n\nLists workflows, newest first: "
        "id, type, status, since when (running: when the\nworkflow last acted; closed: when it closed) and what a "
        "running one waits for.\n--status filters (Running, Completed, Failed, Canceled, Terminated, ContinuedAsNew,\n"
        "TimedOut); --type keeps one workflow type; --version keeps runs whose version\nSHA-256 starts with SHA "
        "(see 'jorch scripts').\n" CLIENT_HELP_COMMON};
    cli_args a;
    cli_client *c = NULL;
    int rc = client_prologue(&v, argc, argv, &a, &c);
    if (rc) return rc < 0 ? 0 : rc;
    int want = 0;
    if (a.set[O_STATUS]) {
        want = store_status_parse(a.val[O_STATUS]);
        if (!want) {
            c->ops->free(c);
            return cli_usage_error("list", "unknown status '%s' (one of Running, Completed, Failed, Canceled, "
                                           "Terminated, ContinuedAsNew, TimedOut)", a.val[O_STATUS]);
        }
    }
    const char *type = a.set[O_TYPE] ? a.val[O_TYPE] : NULL;
    if (type && (!*type || strpbrk(type, "\"\\\n"))) {
        c->ops->free(c);
        return cli_usage_error("list", "--type needs a workflow type name (no quotes or backslashes)");
    }
    jerr e = {0};
    Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse *l = NULL;
    char q[600] = "";
    if (want) snprintf(q, sizeof q, "ExecutionStatus=\"%s\"", status_text(want));
    if (type) {
        size_t n = strlen(q);
        snprintf(q + n, sizeof q - n, "%sWorkflowType=\"%.256s\"", n ? " AND " : "", type);
    }
    if (c->ops->list(c, q[0] ? q : NULL, &l, &e) != 0) {
        cli_errorf("%s", e.msg);
        return finish(c, cli_exit_for(&e));
    }
    bool json = a.set[O_OUTPUT] && strcmp(a.val[O_OUTPUT], "json") == 0;
    int list_rc = CLI_OK;
    /* column widths from the ids and types shown */
    int wid_w = 11, type_w = 4;
    for (size_t k = 0; k < l->n_executions; k++) {
        const Temporal__Api__Workflow__V1__WorkflowExecutionInfo *i = l->executions[k];
        int n1 = i->execution && i->execution->workflow_id ? (int)strlen(i->execution->workflow_id) : 0;
        int n2 = i->type && i->type->name ? (int)strlen(i->type->name) : 0;
        if (n1 > wid_w) wid_w = n1 > 48 ? 48 : n1;
        if (n2 > type_w) type_w = n2 > 32 ? 32 : n2;
    }
    if (json) printf("[");
    else printf("%-*s  %-*s  %-14s  %-16s  %s\n", wid_w, "WORKFLOW ID", type_w, "TYPE", "STATUS", "SINCE", "WAITING FOR");
    bool first = true;
    for (size_t k = 0; k < l->n_executions; k++) {
        const Temporal__Api__Workflow__V1__WorkflowExecutionInfo *i = l->executions[k];
        if (want && (int)i->status != want) continue;
        if (a.set[O_VERSION]) {
            char sha[80];
            /* the version: the bundle's digest, or (runs from before bundles) the script's */
            memo_value(i->memo, "jorch.version_sha256", sha, sizeof sha);
            if (strcmp(sha, "-") == 0) memo_value(i->memo, "jorch.script_sha256", sha, sizeof sha);
            if (!*a.val[O_VERSION] || strncmp(sha, a.val[O_VERSION], strlen(a.val[O_VERSION])) != 0) continue;
        }
        if (type && (!i->type || !i->type->name || strcmp(i->type->name, type) != 0)) continue;
        if (json) {
            jbuf b;
            jbuf_init(&b, 0);
            sanitize_for_json((Temporal__Api__Workflow__V1__WorkflowExecutionInfo *)i);
            if (msg_json(&i->base, 0, &a, &b, &e) == 0) {
                printf("%s%s", first ? "" : ",", b.data);
                first = false;
            } else {
                cli_errorf("%s", e.msg);
                list_rc = CLI_FAILED;
            }
            jbuf_free(&b);
            continue;
        }
        char since[48], waiting[512] = "-";
        int64_t at = pb_timestamp_nanos(i->close_time ? i->close_time : i->start_time);
        const char *wid = i->execution ? i->execution->workflow_id : "";
        const char *rid = i->execution ? i->execution->run_id : "";
        if ((int)i->status == RUN_RUNNING && c->ops->observe) {
            jbuf raw;
            jbuf_init(&raw, 0);
            cJSON *obs = observe(c, rid && *rid ? rid : wid, &raw);
            const char *wf = cj_str(obs, "waitingFor"), *ws = cj_str(obs, "waitingSince");
            if (wf) snprintf(waiting, sizeof waiting, "%s", wf);
            int64_t ns = 0;
            jerr ignore = {0};
            if (ws && time_parse_rfc3339(ws, &ns, &ignore) == 0) at = ns;
            cJSON_Delete(obs);
            jbuf_free(&raw);
        }
        local_time_text(at, since, sizeof since);
        printf("%-*s  %-*s  %-14s  %-16s  %s\n", wid_w, esc(0, wid), type_w, esc(1, i->type ? i->type->name : ""),
               status_text(i->status), since, esc(2, waiting));
        first = false;
    }
    if (json) printf("]\n");
    protobuf_c_message_free_unpacked(&l->base, NULL);
    return finish(c, list_rc);
}

/* ------------------------------------------------------------ history */

/* A payload list as short JSON text for one line of `history`. */
static void payloads_brief(const Temporal__Api__Common__V1__Payloads *ps, char *buf, size_t len) {
    jbuf b;
    jbuf_init(&b, 0);
    jerr e = {0};
    if (!ps || ps->n_payloads == 0) snprintf(buf, len, "none");
    else if (payloads_to_json(ps, false, &b, &e) == 0 && b.data) snprintf(buf, len, "%s", b.data);
    else snprintf(buf, len, "(%zu payload%s, not JSON)", ps->n_payloads, ps->n_payloads == 1 ? "" : "s");
    jbuf_free(&b);
    size_t n = strlen(buf);
    if (n + 1 >= len && len > 4) memcpy(buf + len - 4, "...", 4);
}

static void failure_brief(const Temporal__Api__Failure__V1__Failure *f, char *buf, size_t len) {
    jbuf b;
    jbuf_init(&b, 4096);
    failure_text(f, &b);
    snprintf(buf, len, "%s", b.data ? b.data : "");
    jbuf_free(&b);
}

static const char *enum_short(const ProtobufCEnumDescriptor *d, int v, const char *prefix) {
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    if (!ev) return "?";
    size_t n = strlen(prefix);
    return strncmp(ev->name, prefix, n) == 0 ? ev->name + n : ev->name;
}

/* The essentials of one event: activity name and attempt, timer duration,
 * signal name and input, failure message (as `temporal workflow show`
 * lists them). names[i]: the activity type of the ActivityTaskScheduled
 * event with id i (NULL if none). */
static void event_details(const Temporal__Api__History__V1__HistoryEvent *e, char *const *names, size_t n_names,
                          char *buf, size_t len) {
    char p[600], f[600], d[48];
    buf[0] = '\0';
#define NAME_OF(id) ((id) > 0 && (size_t)(id) < n_names && names[(id)] ? names[(id)] : "?")
#define A(x) e->x##_event_attributes
    switch (e->attributes_case) {
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_STARTED_EVENT_ATTRIBUTES:
        payloads_brief(A(workflow_execution_started)->input, p, sizeof p);
        snprintf(buf, len, "%s on %s, input %s", A(workflow_execution_started)->workflow_type ? A(workflow_execution_started)->workflow_type->name : "?",
                 A(workflow_execution_started)->task_queue ? A(workflow_execution_started)->task_queue->name : "?", p);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_COMPLETED_EVENT_ATTRIBUTES:
        payloads_brief(A(workflow_execution_completed)->result, p, sizeof p);
        snprintf(buf, len, "result %s", p);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_FAILED_EVENT_ATTRIBUTES:
        failure_brief(A(workflow_execution_failed)->failure, f, sizeof f);
        snprintf(buf, len, "failure: %s", f);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_TERMINATED_EVENT_ATTRIBUTES:
        snprintf(buf, len, "reason: %s", A(workflow_execution_terminated)->reason);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_CANCEL_REQUESTED_EVENT_ATTRIBUTES:
        if (A(workflow_execution_cancel_requested)->cause[0])
            snprintf(buf, len, "reason: %s", A(workflow_execution_cancel_requested)->cause);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_SIGNALED_EVENT_ATTRIBUTES:
        payloads_brief(A(workflow_execution_signaled)->input, p, sizeof p);
        snprintf(buf, len, "signal %s, input %s", A(workflow_execution_signaled)->signal_name, p);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_CONTINUED_AS_NEW_EVENT_ATTRIBUTES:
        payloads_brief(A(workflow_execution_continued_as_new)->input, p, sizeof p);
        snprintf(buf, len, "new run %s, input %s", A(workflow_execution_continued_as_new)->new_execution_run_id, p);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_TASK_FAILED_EVENT_ATTRIBUTES:
        failure_brief(A(workflow_task_failed)->failure, f, sizeof f);
        snprintf(buf, len, "%s: %s",
                 enum_short(&temporal__api__enums__v1__workflow_task_failed_cause__descriptor,
                            (int)A(workflow_task_failed)->cause, "WORKFLOW_TASK_FAILED_CAUSE_"), f);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_SCHEDULED_EVENT_ATTRIBUTES:
        payloads_brief(A(activity_task_scheduled)->input, p, sizeof p);
        snprintf(buf, len, "%s (id %s), input %s",
                 A(activity_task_scheduled)->activity_type ? A(activity_task_scheduled)->activity_type->name : "?",
                 A(activity_task_scheduled)->activity_id, p);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_STARTED_EVENT_ATTRIBUTES:
        f[0] = '\0';
        if (A(activity_task_started)->last_failure) failure_brief(A(activity_task_started)->last_failure, f, sizeof f);
        snprintf(buf, len, "%s, attempt %d%s%s", NAME_OF(A(activity_task_started)->scheduled_event_id),
                 A(activity_task_started)->attempt, f[0] ? ", last failure: " : "", f);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_COMPLETED_EVENT_ATTRIBUTES:
        payloads_brief(A(activity_task_completed)->result, p, sizeof p);
        snprintf(buf, len, "%s, result %s", NAME_OF(A(activity_task_completed)->scheduled_event_id), p);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_FAILED_EVENT_ATTRIBUTES:
        failure_brief(A(activity_task_failed)->failure, f, sizeof f);
        snprintf(buf, len, "%s, %s: %s", NAME_OF(A(activity_task_failed)->scheduled_event_id),
                 enum_short(&temporal__api__enums__v1__retry_state__descriptor, (int)A(activity_task_failed)->retry_state,
                            "RETRY_STATE_"), f);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_TIMED_OUT_EVENT_ATTRIBUTES:
        failure_brief(A(activity_task_timed_out)->failure, f, sizeof f);
        snprintf(buf, len, "%s, %s: %s", NAME_OF(A(activity_task_timed_out)->scheduled_event_id),
                 enum_short(&temporal__api__enums__v1__retry_state__descriptor, (int)A(activity_task_timed_out)->retry_state,
                            "RETRY_STATE_"), f);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_CANCEL_REQUESTED_EVENT_ATTRIBUTES:
        snprintf(buf, len, "%s", NAME_OF(A(activity_task_cancel_requested)->scheduled_event_id));
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_CANCELED_EVENT_ATTRIBUTES:
        snprintf(buf, len, "%s", NAME_OF(A(activity_task_canceled)->scheduled_event_id));
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_TIMER_STARTED_EVENT_ATTRIBUTES:
        duration_human(pb_duration_nanos(A(timer_started)->start_to_fire_timeout), d, sizeof d);
        snprintf(buf, len, "timer %s, %s", A(timer_started)->timer_id, d);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_TIMER_FIRED_EVENT_ATTRIBUTES:
        snprintf(buf, len, "timer %s", A(timer_fired)->timer_id);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_TIMER_CANCELED_EVENT_ATTRIBUTES:
        snprintf(buf, len, "timer %s", A(timer_canceled)->timer_id);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_MARKER_RECORDED_EVENT_ATTRIBUTES:
        snprintf(buf, len, "%s", A(marker_recorded)->marker_name);
        break;
    default:
        break;
    }
#undef A
#undef NAME_OF
}

int cli_verb_history(int argc, char **argv) {
    static const client_verb_spec v = {"history", 1, 1,
        "Usage: jorch history ID [--output json] [--no-json-shorthand-payloads]\n\n"
        "Prints a workflow's history, one event a line with its essentials (activity\n"
        "name and attempt, timer duration, signal name and input, failure message).\n"
        "--output json prints the Temporal JSON form (as `temporal workflow show --output\n"
        "json`), which 'jorch replay' and Temporal's replayers read; payloads are JSON\n"
        "values unless --no-json-shorthand-payloads (or --raw) asks for the raw form.\n" CLIENT_HELP_COMMON};
    cli_args a;
    cli_client *c = NULL;
    int rc = client_prologue(&v, argc, argv, &a, &c);
    if (rc) return rc < 0 ? 0 : rc;
    jerr e = {0};
    Temporal__Api__History__V1__History *h = NULL;
    if (c->ops->history(c, a.pos[0], &h, &e) != 0) {
        cli_errorf("%s", e.msg);
        return finish(c, cli_exit_for(&e));
    }
    if (a.set[O_OUTPUT] && strcmp(a.val[O_OUTPUT], "json") == 0) {
        jbuf b;
        jbuf_init(&b, 0);
        if (msg_json(&h->base, 2, &a, &b, &e) == 0) printf("%s\n", b.data);
        else {
            cli_errorf("%s", e.msg);
            rc = CLI_FAILED;
        }
        jbuf_free(&b);
    } else {
        /* activity names by the id of their ActivityTaskScheduled event */
        size_t n_names = h->n_events + 2;
        char **names = calloc(n_names, sizeof *names);
        if (!names) {
            cli_errorf("out of memory printing the history of '%s'", a.pos[0]);
            protobuf_c_message_free_unpacked(&h->base, NULL);
            return finish(c, CLI_FAILED);
        }
        for (size_t k = 0; k < h->n_events; k++) {
            const Temporal__Api__History__V1__HistoryEvent *ev = h->events[k];
            if (ev->attributes_case == TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_SCHEDULED_EVENT_ATTRIBUTES &&
                ev->event_id > 0 && (size_t)ev->event_id < n_names && ev->activity_task_scheduled_event_attributes->activity_type)
                names[ev->event_id] = ev->activity_task_scheduled_event_attributes->activity_type->name;
        }
        printf("%5s  %-24s  %-40s %s\n", "ID", "TIME", "TYPE", "DETAILS");
        for (size_t k = 0; k < h->n_events; k++) {
            char t[48], details[1024];
            ts_text(h->events[k]->event_time, t, sizeof t);
            event_details(h->events[k], names, n_names, details, sizeof details);
            printf("%5" PRId64 "  %-24s  %-40s %s\n", h->events[k]->event_id, t,
                   event_type_name(h->events[k]->event_type), esc(0, details));
        }
        free(names);
    }
    protobuf_c_message_free_unpacked(&h->base, NULL);
    return finish(c, rc);
}

int cli_verb_result(int argc, char **argv) {
    static const client_verb_spec v = {"result", 1, 1,
        "Usage: jorch result ID [--timeout DURATION]\n\nWaits for a workflow to close and prints its result as JSON;\n"
        "exit 1 if it failed, was cancelled or terminated, or is still running when --timeout ends.\n" CLIENT_HELP_COMMON};
    cli_args a;
    cli_client *c = NULL;
    int rc = client_prologue(&v, argc, argv, &a, &c);
    if (rc) return rc < 0 ? 0 : rc;
    int64_t timeout_ms = -1;
    if (a.set[O_TIMEOUT]) {
        int64_t ns;
        jerr de = {0};
        if (duration_parse(a.val[O_TIMEOUT], &ns, &de) != 0) {
            c->ops->free(c);
            return cli_usage_error("result", "%s", de.msg);
        }
        timeout_ms = ns / 1000000;
    }
    jerr e = {0};
    Temporal__Api__History__V1__HistoryEvent *ce = NULL;
    if (c->ops->result(c, a.pos[0], timeout_ms, &ce, &e) != 0) {
        cli_errorf("%s", e.msg);
        return finish(c, cli_exit_for(&e));
    }
    rc = report_close(a.pos[0], ce);
    protobuf_c_message_free_unpacked(&ce->base, NULL);
    return finish(c, rc);
}

/* cancel and terminate: one id, an optional reason, no output */
static int request_verb(const client_verb_spec *v, int argc, char **argv, bool terminate) {
    cli_args a;
    cli_client *c = NULL;
    int rc = client_prologue(v, argc, argv, &a, &c);
    if (rc) return rc < 0 ? 0 : rc;
    jerr e = {0};
    int (*op)(cli_client *, const char *, const char *, jerr *) = terminate ? c->ops->terminate : c->ops->cancel;
    if (op(c, a.pos[0], a.set[O_REASON] ? a.val[O_REASON] : "", &e) != 0) {
        cli_errorf("%s", e.msg);
        rc = cli_exit_for(&e);
    }
    return finish(c, rc);
}

int cli_verb_cancel(int argc, char **argv) {
    static const client_verb_spec v = {"cancel", 1, 1,
        "Usage: jorch cancel ID [--reason R]\n\nRequests cancellation; the workflow decides how to clean up.\n" CLIENT_HELP_COMMON};
    return request_verb(&v, argc, argv, false);
}

int cli_verb_terminate(int argc, char **argv) {
    static const client_verb_spec v = {"terminate", 1, 1,
        "Usage: jorch terminate ID [--reason R]\n\nEnds a workflow at once, without cleanup.\n" CLIENT_HELP_COMMON};
    return request_verb(&v, argc, argv, true);
}
