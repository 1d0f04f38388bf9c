/*
 * cli.c - verb dispatch, option parsing, messages, and the verbs that need
 * no backend (check, replay).
 */
#include "cli/cli.h"
#include "cli/cli_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "web/web.h"

/* ---------------------------------------------------------------- messages */

/* Messages carry ids, names and failure text that came from outside (a
 * script, an issue, an older store): escape sequences in them must not
 * reach the terminal. Lines and tabs are kept. */
static void put_message(const char *fmt, va_list ap) {
    char small[4096];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    char *text = small;
    if (n >= (int)sizeof small) {
        text = malloc((size_t)n + 1);
        if (text) vsnprintf(text, (size_t)n + 1, fmt, ap2);
        else text = small; /* the message truncated, still escaped */
    }
    va_end(ap2);
    jbuf b;
    jbuf_init(&b, 0);
    if (n >= 0 && text_escape(&b, text, strlen(text), true) == 0 && b.data) fputs(b.data, stderr);
    jbuf_free(&b);
    if (text != small) free(text);
}

void cli_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("jorch: ", stderr);
    put_message(fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_usage_error(const char *verb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("jorch: ", stderr);
    put_message(fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (verb)
        fprintf(stderr, "Try 'jorch %s --help'.\n", verb);
    else
        fprintf(stderr, "Try 'jorch --help'.\n");
    return CLI_USAGE;
}

int cli_exit_for(const jerr *e) {
    switch (e->code) {
    case JERR_USAGE: return CLI_USAGE;
    case JERR_BACKEND: return CLI_UNREACHABLE;
    default: return CLI_FAILED;
    }
}

/* ---------------------------------------------------------------- options */

static const cli_opt *find_opt(const cli_opt *opts, const char *name, size_t len) {
    for (const cli_opt *o = opts; o && o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) return o;
    return NULL;
}

int cli_parse(const char *verb, int argc, char **argv, const cli_opt *opts, bool options_first,
              cli_args *out) {
    memset(out, 0, sizeof *out);
    bool separator_seen = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!separator_seen && strcmp(a, "--") == 0) {
            separator_seen = true;
            continue;
        }
        /* "-5" and "-" are values; "-x" and "--x" are options */
        bool option_like = a[0] == '-' && a[1] != '\0' && (a[1] == '-' || (a[1] >= 'a' && a[1] <= 'z'));
        if (separator_seen || !option_like) {
            if (out->npos >= CLI_MAX_POS) return cli_usage_error(verb, "too many arguments");
            out->pos[out->npos++] = argv[i];
            continue;
        }
        if (options_first && out->npos > 0)
            return cli_usage_error(verb,
                                   "option '%s' after SCRIPT: options go before the script (jorch %s %s SCRIPT ...); "
                                   "to pass '%s' to the workflow as input, put it after '--' (jorch %s SCRIPT -- %s)",
                                   a, verb, a, a, verb, a);
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            out->help = true;
            continue;
        }
        const char *name = a[1] == '-' ? a + 2 : a + 1;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = find_opt(opts, name, nlen);
        if (!o) return cli_usage_error(verb, "unknown option '%s'", a);
        const char *val = NULL;
        if (o->has_arg) {
            if (eq) {
                val = eq + 1;
            } else {
                if (i + 1 >= argc) return cli_usage_error(verb, "option '--%s' needs a value", o->name);
                val = argv[++i];
            }
        } else if (eq) {
            return cli_usage_error(verb, "option '--%s' takes no value", o->name);
        }
        if (o->id < 0 || o->id >= CLI_MAX_OPTS) return cli_usage_error(verb, "internal option table error");
        if (o->has_arg == CLI_REPEAT) {
            if (out->nrep >= CLI_MAX_POS) return cli_usage_error(verb, "option '--%s' given too many times", o->name);
            out->rep[out->nrep] = val;
            out->rep_id[out->nrep++] = o->id;
        }
        out->set[o->id] = true;
        out->val[o->id] = val ? val : "";
    }
    return 0;
}

/* ---------------------------------------------------------------- helpers */

int cli_read_script(const char *path, char **src, size_t *len, jerr *err) {
    if (file_read_all(path, 16u << 20, src, len, err) != 0) {
        jerr_prefix(err, "cannot load workflow script");
        err->code = JERR_USAGE;
        return -1;
    }
    return 0;
}

void cli_script_dir(const char *path, char *out, size_t outlen) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(out, outlen, ".");
        return;
    }
    size_t n = (size_t)(slash - path);
    if (n == 0) n = 1;
    if (n >= outlen) n = outlen - 1;
    memcpy(out, path, n);
    out[n] = '\0';
}

/* ------------------------------------------------------------------- check */

enum { OPT_CHECK_NONE };
static const cli_opt check_opts[] = {{NULL, 0, 0}};

static int verb_check(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse("check", argc, argv, check_opts, false, &a);
    if (rc) return rc;
    if (a.help) {
        printf("Usage: jorch check SCRIPT...\n\n"
               "Loads each workflow script in the sandbox and runs its top level: reports syntax\n"
               "errors, a script that does not return its workflow function, and every global the\n"
               "script or its modules read anywhere (also inside functions) that workflows do not\n"
               "have (os, io, misspelt names), with its line. Exit 0 when every script is fine,\n"
               "1 otherwise.\n");
        return 0;
    }
    if (a.npos < 1) return cli_usage_error("check", "missing SCRIPT");
    int bad = 0;
    for (int i = 0; i < a.npos; i++) {
        char *src = NULL;
        size_t len = 0;
        jerr e = {0};
        if (cli_read_script(a.pos[i], &src, &len, &e) != 0) {
            cli_errorf("%s", e.msg);
            return CLI_USAGE;
        }
        char dir[1024];
        cli_script_dir(a.pos[i], dir, sizeof dir);
        if (engine_check_script(a.pos[i], src, len, engine_find_module_in_dir, dir, &e) != 0) {
            cli_errorf("%s", e.msg);
            bad++;
        } else {
            fprintf(stderr, "%s: ok\n", a.pos[i]);
        }
        free(src);
    }
    return bad ? CLI_FAILED : CLI_OK;
}

/* ------------------------------------------------------------------ replay */

enum { OPT_REPLAY_QUIET };
static const cli_opt replay_opts[] = {{"quiet", 0, OPT_REPLAY_QUIET}, {NULL, 0, 0}};

int cli_replay_history(const char *script_path, const char *src, size_t len,
                       Temporal__Api__History__V1__History *h, jerr *err) {
    char dir[1024];
    cli_script_dir(script_path, dir, sizeof dir);
    engine_run_config cfg = {
        .script_name = script_path, .script_src = src, .script_len = len,
        .limits = engine_limits_default(), .finder = engine_find_module_in_dir, .finder_ud = dir,
        .workflow_id = "replay", .run_id = "replay",
    };
    engine_run *r = engine_run_new(&cfg, err);
    if (!r) return -1;
    engine_output out;
    int rc = engine_run_feed(r, h->events, h->n_events, &out, err);
    if (rc == 0) rc = engine_run_check_end(r, &out, err);
    engine_run_free(r);
    return rc;
}

static int verb_replay(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse("replay", argc, argv, replay_opts, false, &a);
    if (rc) return rc;
    if (a.help) {
        printf("Usage: jorch replay [--quiet] SCRIPT HISTORY.json...\n\n"
               "Replays recorded histories (Temporal JSON, as `jorch history --output json` or\n"
               "`temporal workflow show --output json` print them) against a workflow script and\n"
               "checks that the script produces the same commands. Exit 0 when every history\n"
               "replays; 1 with the nondeterminism error otherwise; 2 for unreadable input.\n");
        return 0;
    }
    if (a.npos < 2) return cli_usage_error("replay", "expected SCRIPT and at least one HISTORY file");
    char *src = NULL;
    size_t len = 0;
    jerr e = {0};
    if (cli_read_script(a.pos[0], &src, &len, &e) != 0) {
        cli_errorf("%s", e.msg);
        return CLI_USAGE;
    }
    int worst = CLI_OK;
    for (int i = 1; i < a.npos; i++) {
        Temporal__Api__History__V1__History *h = NULL;
        memset(&e, 0, sizeof e);
        if (protojson_read_history_file(a.pos[i], &h, &e) != 0) {
            cli_errorf("%s", e.msg);
            worst = CLI_USAGE;
            continue;
        }
        if (cli_replay_history(a.pos[0], src, len, h, &e) != 0) {
            cli_errorf("replay of %s failed: %s", a.pos[i], e.msg);
            if (worst == CLI_OK) worst = e.code == JERR_USAGE ? CLI_USAGE : CLI_FAILED;
        } else if (!a.set[OPT_REPLAY_QUIET]) {
            fprintf(stderr, "%s: ok (%zu events)\n", a.pos[i], h->n_events);
        }
        protobuf_c_message_free_unpacked(&h->base, NULL);
    }
    free(src);
    return worst;
}

/* ------------------------------------------------------------------ limits */

static int limit_set(void *target, const char *key, const char *value, const char *source, jerr *err) {
    return engine_limits_set(target, key, value, source, err);
}

static const config_section limits_section = {
    .name = "limits",
    .mapping_hint = "(memory_mb:, instruction_budget:, wall_clock:)",
    .value_hint = "a number (or a duration for wall_clock)",
    .set = limit_set,
};

/* The limits of workflow code for this process: built-in, then jorch.yaml
 * (limits:), then the JORCH_* environment variables, which win. */
static int configure_limits(jerr *err) {
    engine_limits l = engine_limits_builtin();
    const char *path = NULL;
    int found = config_locate(&path, err);
    if (found < 0) return -1;
    if (found == 1 && config_section_apply(path, &limits_section, &l, err) != 0) return -1;
    if (engine_limits_from_env(&l, err) != 0) return -1;
    engine_limits_use(&l);
    return 0;
}

/* ------------------------------------------------------------------- verbs */

typedef struct cli_verb {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *synopsis;
} cli_verb;

static int verb_activity(int argc, char **argv) { return act_cli_main(argc, argv); }

/* Sorted by name, like curl's option table. */
static const cli_verb verbs[] = {
    {"activity", verb_activity, "activity NAME [JSON...]     run one activity once (debugging)"},
    {"cancel", cli_verb_cancel, "cancel ID                   request cancellation of a run"},
    {"check", verb_check, "check SCRIPT...             load scripts in the sandbox, report problems"},
    {"describe", cli_verb_describe, "describe ID [--output json] show a run's status and script version"},
    {"history", cli_verb_history, "history ID [--output json]  print a run's history"},
    {"list", cli_verb_list, "list [--status S]           list runs"},
    {"query", cli_verb_query, "query ID NAME [JSON]        ask a run a question"},
    {"replay", verb_replay, "replay SCRIPT HISTORY...    replay histories against a script"},
    {"result", cli_verb_result, "result ID                   wait for a run and print its result"},
    {"resume", cli_verb_resume, "resume ID                   continue a run whose process stopped"},
    {"run", cli_verb_run, "run SCRIPT [ARG...]         run a workflow to completion"},
    {"scripts", cli_verb_scripts, "scripts [--prune]           list stored script versions, prune unused ones"},
    {"serve", cli_verb_serve, "serve [--status]            execute every open run in one service process"},
    {"signal", cli_verb_signal, "signal ID NAME [JSON]       send a signal to a run"},
    {"start", cli_verb_start, "start SCRIPT|TYPE [ARG...]  start a run, print its id"},
    {"terminate", cli_verb_terminate, "terminate ID [--reason R]   end a run now"},
    {"upgrade", cli_verb_upgrade, "upgrade ID [--to SCRIPT]    move a run to a new script version (checked by replay)"},
    {"web", web_main, "web [--listen HOST:PORT]     serve the approval page, Jira webhook and metrics"},
    {"worker", cli_verb_worker, "worker                      serve workflows/ and activities/ on Temporal"},
};

static void print_help(void) {
    printf("jorch %s - durable workflows as sandboxed Lua scripts\n\n"
           "Usage: jorch VERB [OPTIONS] [ARGS]\n\nVerbs:\n",
           JORCH_VERSION);
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) printf("  jorch %s\n", verbs[i].synopsis);
    printf("\nBackend: embedded (a SQLite store in $JORCH_HOME, default ./.jorch) unless\n"
           "--temporal or FEATURE_TEMPORAL_ENABLED=true selects Temporal (TEMPORAL_ADDRESS,\n"
           "TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TASK_QUEUE).\n"
           "Exit codes: 0 success, 1 workflow failed, 2 usage or configuration error,\n"
           "3 cannot reach the backend. 'jorch VERB --help' describes each verb.\n");
}

int cli_main(int argc, char **argv) {
    if (argc < 2) return cli_usage_error(NULL, "missing VERB");
    const char *v = argv[1];
    if (strcmp(v, "--help") == 0 || strcmp(v, "-h") == 0 || strcmp(v, "help") == 0) {
        print_help();
        return 0;
    }
    if (strcmp(v, "--version") == 0 || strcmp(v, "version") == 0) {
        printf("jorch %s\n", JORCH_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (strcmp(verbs[i].name, v) != 0) continue;
        jerr e = {0};
        /* every verb but activity may run workflow code here or in a runner it starts */
        if (verbs[i].fn != verb_activity && configure_limits(&e) != 0) {
            cli_errorf("%s", e.msg);
            return CLI_USAGE;
        }
        return verbs[i].fn(argc - 1, argv + 1);
    }
    return cli_usage_error(NULL, "unknown verb '%s'", v);
}
