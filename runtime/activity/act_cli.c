/*
 * act_cli.c - `jorch activity NAME [JSON-ARG...]`: runs one attempt of one
 * activity through the host, in this process, and prints the result as
 * JSON. A debugging aid: no backend, no retries, no history.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activity/act_int.h"

typedef Temporal__Api__Common__V1__Payloads Payloads;

static const char usage_text[] =
    "usage: jorch activity NAME [ARG...] [options]\n"
    "\n"
    "Runs one attempt of activity NAME (\"fetchIssue\", or \"jira.fetchIssue\" to name\n"
    "the module) and prints its result as JSON on stdout. Each ARG is one argument:\n"
    "JSON when it parses, otherwise a string; an ARG that starts with { [ or \"\n"
    "must be valid JSON.\n"
    "\n"
    "options:\n"
    "  --activities DIR   where the activity modules are (default: activities)\n"
    "  --help, -h         show this help\n"
    "  --timeout DURATION start-to-close timeout, e.g. 30s or 5m (default: none)\n"
    "\n"
    "exit status: 0 completed, 1 failed or cancelled, 2 usage error\n";

enum { OPT_ACTIVITIES, OPT_HELP, OPT_TIMEOUT };

/* Sorted by name; `value` options take the next argument or "=VALUE". */
static const struct cli_opt {
    const char *name;
    bool value;
    int id;
} cli_opts[] = {
    {"--activities", true, OPT_ACTIVITIES},
    {"--help", false, OPT_HELP},
    {"--timeout", true, OPT_TIMEOUT},
    {"-h", false, OPT_HELP},
};

static int usage_error(const char *fmt, const char *arg) {
    fputs("jorch activity: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (see 'jorch activity --help')\n", stderr);
    return 2;
}

static bool is_option(const char *a) {
    return a[0] == '-' && a[1] && !isdigit((unsigned char)a[1]) && a[1] != '.';
}

/* ARG -> Payload by the rule of the other verbs (payload_from_arg): JSON
 * when it parses, a string when it does not, unless it starts like JSON.
 * 2 (usage) when ARG cannot be used. */
static int add_arg(Payloads *ps, const char *arg, int index) {
    bool looks_json = false;
    jerr err = {0};
    Temporal__Api__Common__V1__Payload *p = payload_from_arg(arg, &looks_json, &err);
    if (!p) {
        if (looks_json)
            fprintf(stderr, "jorch activity: argument %d '%.60s%s' %s. To pass it as text, give it as a JSON string "
                    "('\"...\"')\n", index, arg, strlen(arg) > 60 ? "..." : "", err.msg);
        else
            fprintf(stderr, "jorch activity: argument %d: %s\n", index, err.msg);
        return 2;
    }
    if (payloads_add(ps, p) < 0) {
        protobuf_c_message_free_unpacked(&p->base, NULL);
        fputs("jorch activity: out of memory\n", stderr);
        return 1;
    }
    return 0;
}

static int report(const char *name, act_outcome *o) {
    if (o->kind == ACT_COMPLETED) {
        jbuf b;
        jbuf_init(&b, (size_t)64 << 20);
        jerr err = {0};
        if (payloads_to_json(o->result, true, &b, &err) < 0) {
            fprintf(stderr, "jorch: activity '%s' completed but its result cannot be printed: %s\n", name, err.msg);
            jbuf_free(&b);
            return 1;
        }
        printf("%s\n", b.data ? b.data : "null");
        jbuf_free(&b);
        return 0;
    }
    if (o->kind == ACT_CANCELED) {
        fprintf(stderr, "jorch: activity '%s' was cancelled\n", name);
        return 1;
    }
    const Temporal__Api__Failure__V1__Failure *f = o->failure;
    const char *type = "Error";
    if (f && f->failure_info_case == TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_APPLICATION_FAILURE_INFO) type = f->application_failure_info->type;
    else if (f && f->failure_info_case == TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_TIMEOUT_FAILURE_INFO) type = "StartToCloseTimeout";
    fprintf(stderr, "jorch: activity '%s' failed: %s: %s\n", name, type,
            f && f->message ? f->message : "(no details: out of memory)");
    if (f && f->stack_trace && *f->stack_trace && jlog_level() >= JLOG_DEBUG) fprintf(stderr, "%s\n", f->stack_trace);
    return 1;
}

static int run_one(const char *dir, int64_t timeout, const char *name, char **args, int nargs) {
    Payloads *input = payloads_new();
    int rc = 1;
    act_host *h = NULL;
    if (!input) {
        fputs("jorch activity: out of memory\n", stderr);
        goto done;
    }
    for (int i = 0; i < nargs; i++) {
        rc = add_arg(input, args[i], i + 1);
        if (rc != 0) goto done;
    }
    rc = 1;
    jerr err = {0};
    /* the same jorch.config a run's activities get */
    const char *home = getenv("JORCH_HOME");
    jbuf conf;
    if (config_activity_json(home && *home ? home : ".jorch", &conf, &err) != 0) {
        jbuf_free(&conf);
        fprintf(stderr, "jorch activity: %s\n", err.msg);
        rc = 2;
        goto done;
    }
    act_host_config cfg = {.activities_dir = dir, .threads = 1, .config_json = conf.data};
    h = act_host_new(&cfg, &err);
    jbuf_free(&conf);
    if (!h) {
        fprintf(stderr, "jorch activity: %s\n", err.msg);
        goto done;
    }
    act_task t = {.activity_type = name, .activity_id = "cli-1", .workflow_id = "cli", .run_id = "cli",
                  .workflow_type = "cli", .attempt = 1, .input = input, .start_to_close_ns = timeout,
                  .token = 1};
    if (act_host_submit(h, &t, &err) < 0) {
        fprintf(stderr, "jorch activity: %s\n", err.msg);
        goto done;
    }
    act_outcome o;
    act_host_wait(h, -1, &o);
    rc = report(name, &o);
    act_outcome_clear(&o);
done:
    act_host_free(h);
    if (input) protobuf_c_message_free_unpacked(&input->base, NULL);
    return rc;
}

int act_cli_main(int argc, char **argv) {
    const char *dir = NULL;
    int64_t timeout = 0;
    char **pos = calloc((size_t)(argc > 0 ? argc : 1), sizeof *pos);
    if (!pos) {
        fputs("jorch activity: out of memory\n", stderr);
        return 1;
    }
    int npos = 0;
    bool opts_done = false;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = true;
            continue;
        }
        if (opts_done || !is_option(a)) {
            pos[npos++] = argv[i];
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        const struct cli_opt *o = NULL;
        for (size_t k = 0; k < sizeof cli_opts / sizeof cli_opts[0]; k++)
            if (strlen(cli_opts[k].name) == nl && strncmp(cli_opts[k].name, a, nl) == 0) o = &cli_opts[k];
        if (!o) {
            rc = usage_error("unknown option '%s'", a);
            goto out;
        }
        const char *val = NULL;
        if (o->value) {
            if (eq) val = eq + 1;
            else if (i + 1 < argc) val = argv[++i];
            else {
                rc = usage_error("option '%s' needs a value", o->name);
                goto out;
            }
        } else if (eq) {
            rc = usage_error("option '%s' takes no value", o->name);
            goto out;
        }
        if (o->id == OPT_HELP) {
            fputs(usage_text, stdout);
            goto out;
        }
        if (o->id == OPT_ACTIVITIES) dir = val;
        if (o->id == OPT_TIMEOUT) {
            jerr err = {0};
            if (duration_parse(val, &timeout, &err) < 0 || timeout <= 0) {
                rc = usage_error("--timeout '%s' is not a positive duration like 30s or 5m", val);
                goto out;
            }
        }
    }
    if (npos == 0) rc = usage_error("%smissing the activity name", "");
    else rc = run_one(dir, timeout, pos[0], pos + 1, npos - 1);
out:
    free(pos);
    return rc;
}
