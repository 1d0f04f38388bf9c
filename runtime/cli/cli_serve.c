/*
 * cli_serve.c - `jorch serve`: the embedded service that executes every
 * open run of a store in one process (runtime/store/service.c), its
 * status, and the hand-off of `start` and `run --detach` to it (started on
 * demand when none runs).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli_int.h"
#include "store/store.h"
#include "web/web.h"

enum { S_CONCURRENCY, S_CACHE_SIZE, S_CACHE_MEMORY, S_HOME, S_FOREGROUND, S_STATUS, S_OUTPUT, S_WEB };

static const cli_opt serve_opts[] = {
    {"cache-memory", 1, S_CACHE_MEMORY}, {"cache-size", 1, S_CACHE_SIZE}, {"concurrency", 1, S_CONCURRENCY},
    {"foreground", 0, S_FOREGROUND},     {"home", 1, S_HOME},             {"output", 1, S_OUTPUT},
    {"status", 0, S_STATUS},             {"web", 0, S_WEB},               {NULL, 0, 0}};

static const char serve_help[] =
    "Usage: jorch serve [--concurrency N] [--cache-size N] [--cache-memory MB] [--home DIR] [--foreground]\n"
    "       jorch serve --status [--output json] [--home DIR]\n\n"
    "Executes every open run of the embedded store in one long-lived process: the\n"
    "runs waiting for signals and timers cost no CPU, activities run on one shared\n"
    "pool of threads, and the workflow engines of recently active runs stay in memory\n"
    "(the others replay their history at their next step). At start it takes every\n"
    "open run no live process executes; SIGTERM or SIGINT stop it cleanly, and the\n"
    "next start continues. 'jorch start' and 'run --detach' start it when none runs.\n"
    "Without --foreground it goes to the background and logs to $JORCH_HOME/logs/serve.log;\n"
    "each run's own lines go to $JORCH_HOME/logs/ID.log. A run whose workflow task fails\n"
    "stays open and its task is tried again after 10 s, then twice as long per failure\n"
    "in a row (at most every 10 minutes), or at once on a request.\n"
    "Options:\n"
    "  --concurrency N     activity attempts running at once (default 8, at most 256)\n"
    "  --cache-size N      workflow engines kept in memory (default 1000; at least 1)\n"
    "  --cache-memory MB   Lua heap the cached engines may hold in all (default 256)\n"
    "  --home DIR          the embedded store (default $JORCH_HOME or ./.jorch)\n"
    "  --foreground        stay in this process, log on stderr (systemd, containers)\n"
    "  --status            show the running service and its runs (exit 1 when none runs)\n"
    "  --output json       --status as JSON\n"
    "  --web               serve the approval page, Jira webhook and metrics in this\n"
    "                      process too (as 'jorch web'; also web.serve: true in jorch.yaml)\n";

static const char *serve_home(const char *opt) {
    if (opt && *opt) return opt;
    const char *e = getenv("JORCH_HOME");
    return e && *e ? e : ".jorch";
}

static int parse_count(const char *what, const char *v, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi)
        return cli_usage_error("serve", "%s must be a whole number from %ld to %ld (got '%s')", what, lo, hi, v);
    *out = n;
    return 0;
}

/* ------------------------------------------------------------ status */

static void uptime_text(int64_t ms, char *buf, size_t len) {
    int64_t s = ms / 1000;
    if (s < 60) snprintf(buf, len, "%llds", (long long)s);
    else if (s < 3600) snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else if (s < 86400) snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s / 60 % 60));
    else snprintf(buf, len, "%lldd%02lldh", (long long)(s / 86400), (long long)(s / 3600 % 24));
}

static int serve_status(const char *home, bool json) {
    char *reply = NULL;
    jerr e = {0};
    int rc = store_service_request(home, "{\"op\":\"status\"}\n", &reply, 10000, &e);
    if (rc < 0) {
        cli_errorf("%s", e.msg);
        return CLI_UNREACHABLE;
    }
    if (rc == 1) {
        if (json) printf("{\"running\":false}\n");
        else printf("no service runs for the store %s ('jorch serve' starts one)\n", home);
        return CLI_FAILED;
    }
    cJSON *o = cJSON_Parse(reply);
    if (json) {
        printf("%s\n", reply);
        free(reply);
        cJSON_Delete(o);
        return 0;
    }
    free(reply);
    if (!o) {
        cli_errorf("the service at %s/serve.sock answered something that is not JSON", home);
        return CLI_UNREACHABLE;
    }
    double pid = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "pid"));
    double started = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "started"));
    double nruns = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "runs_count"));
    double cached = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "cached"));
    double mem = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "cached_memory"));
    double conc = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "concurrency"));
    char up[32];
    uptime_text(time_now_nanos() / 1000000 - (int64_t)started, up, sizeof up);
    printf("service: process %.0f, up %s, store %s\n", pid, up, home);
    printf("runs: %.0f executed, %.0f workflow engines in memory (%.1f MiB of Lua heap), %.0f activity threads\n",
           nruns, cached, mem / 1048576.0, conc);
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(o, "runs");
    const cJSON *r;
    int shown = 0;
    cJSON_ArrayForEach(r, runs) {
        const cJSON *wid = cJSON_GetObjectItemCaseSensitive(r, "workflow_id");
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(r, "waiting");
        jbuf a, b;
        jbuf_init(&a, 0);
        jbuf_init(&b, 0);
        const char *ws = cJSON_IsString(wid) ? wid->valuestring : "?";
        const char *ww = cJSON_IsString(w) ? w->valuestring : "";
        text_escape(&a, ws, strlen(ws), false);
        text_escape(&b, ww, strlen(ww), false);
        if (shown++ == 0) printf("\n%-40s %s\n", "WORKFLOW ID", "WAITING FOR");
        printf("%-40s %s\n", a.data ? a.data : "", b.data ? b.data : "");
        jbuf_free(&a);
        jbuf_free(&b);
    }
    if ((double)shown < nruns) printf("(%d of %.0f runs shown)\n", shown, nruns);
    cJSON_Delete(o);
    return 0;
}

/* ------------------------------------------------------------ starting it */

/* Starts `jorch serve --foreground` detached from this process (its own
 * session, output appended to logs/serve.log) and waits until it answers
 * (or another service, started at the same moment, does). 0 a service
 * answers, -1 none came up (err). */
static int spawn_service(const char *home, const char *const *extra, jerr *err) {
    char logdir[1100], logpath[1200];
    snprintf(logdir, sizeof logdir, "%s/logs", home);
    mkdir(home, 0700); /* a first start: the store is created by the service */
    mkdir(logdir, 0700);
    snprintf(logpath, sizeof logpath, "%s/serve.log", logdir);
    pid_t pid = fork();
    if (pid < 0) return jerr_set(err, JERR_INTERNAL, "cannot start the service: fork: %s", strerror(errno));
    if (pid == 0) {
        setsid();
        /* the grandchild is the service: no zombie of it is left to this process */
        pid_t g = fork();
        if (g != 0) _exit(g < 0 ? 127 : 0);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int nul = open("/dev/null", O_RDWR);
        /* never the caller's terminal or pipe: a test's or a user's output must not get the service's lines */
        if (fd < 0) fd = nul;
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (nul >= 0) dup2(nul, 0);
        const char *argv[20];
        int n = 0;
        argv[n++] = "jorch";
        argv[n++] = "serve";
        argv[n++] = "--foreground";
        argv[n++] = "--home";
        argv[n++] = home;
        for (int i = 0; extra && extra[i] && n < 18; i++) argv[n++] = extra[i];
        argv[n] = NULL;
        execv("/proc/self/exe", (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    /* up to 15 s: a first start opens (maybe creates) the store and takes every open run */
    for (int i = 0; i < 300; i++) {
        char *reply = NULL;
        jerr e = {0};
        int rc = store_service_request(home, "{\"op\":\"status\"}\n", &reply, 10000, &e);
        free(reply);
        if (rc == 0) return 0;
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    return jerr_set(err, JERR_BACKEND, "the service for %s did not come up within 15 s; see %s", home, logpath);
}

int cli_service_handoff(const char *home, const char *run_id) {
    const char *mode = getenv("JORCH_SERVICE");
    if (mode && strcmp(mode, "off") == 0) return 1;
    int rc = store_service_poke(home, run_id);
    if (rc == 0) return 0;
    if (rc == 1) {
        jerr e = {0};
        if (spawn_service(home, NULL, &e) != 0) {
            cli_errorf("%s; executing the run in a process of its own instead", e.msg);
            return 1;
        }
        rc = store_service_poke(home, run_id);
    }
    /* 2: the service took it already at its start, or the run closed at once; either is fine */
    return rc == 0 || rc == 2 ? 0 : 1;
}

/* ------------------------------------------------------------ the verb */

int cli_verb_serve(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse("serve", argc, argv, serve_opts, false, &a);
    if (rc) return rc;
    if (a.help) {
        fputs(serve_help, stdout);
        return 0;
    }
    if (a.npos != 0) return cli_usage_error("serve", "takes no arguments");
    const char *home = serve_home(a.set[S_HOME] ? a.val[S_HOME] : NULL);
    if (a.set[S_OUTPUT] && strcmp(a.val[S_OUTPUT], "json") != 0)
        return cli_usage_error("serve", "--output takes only json");
    if (a.set[S_STATUS]) return serve_status(home, a.set[S_OUTPUT]);
    long conc = 8, cache = 1000, mem_mb = 256;
    if ((a.set[S_CONCURRENCY] && parse_count("--concurrency", a.val[S_CONCURRENCY], 1, 256, &conc)) ||
        (a.set[S_CACHE_SIZE] && parse_count("--cache-size", a.val[S_CACHE_SIZE], 1, 100000000, &cache)) ||
        (a.set[S_CACHE_MEMORY] && parse_count("--cache-memory", a.val[S_CACHE_MEMORY], 1, 1048576, &mem_mb)))
        return CLI_USAGE;
    /* the first delay before a failed workflow task runs again: for tests (the default is 10 s) */
    long retry_ms = 0;
    const char *tr = getenv("JORCH_TASK_RETRY_MS");
    if (tr && *tr && parse_count("JORCH_TASK_RETRY_MS (for tests; unset it for the default of 10 s)", tr, 1, 600000,
                                 &retry_ms))
        return CLI_USAGE;
    if (!a.set[S_FOREGROUND]) {
        /* to the background: the same command with --foreground, detached */
        const char *extra[8];
        int n = 0;
        if (a.set[S_CONCURRENCY]) {
            extra[n++] = "--concurrency";
            extra[n++] = a.val[S_CONCURRENCY];
        }
        if (a.set[S_CACHE_SIZE]) {
            extra[n++] = "--cache-size";
            extra[n++] = a.val[S_CACHE_SIZE];
        }
        if (a.set[S_CACHE_MEMORY]) {
            extra[n++] = "--cache-memory";
            extra[n++] = a.val[S_CACHE_MEMORY];
        }
        if (a.set[S_WEB]) extra[n++] = "--web";
        extra[n] = NULL;
        char *reply = NULL;
        jerr e = {0};
        if (store_service_request(home, "{\"op\":\"status\"}\n", &reply, 10000, &e) == 0) {
            cJSON *o = cJSON_Parse(reply);
            free(reply);
            cli_errorf("a service already executes the runs of %s (process %.0f); 'jorch serve --status' shows it",
                       home, cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "pid")));
            cJSON_Delete(o);
            return CLI_USAGE;
        }
        if (spawn_service(home, extra, &e) != 0) {
            cli_errorf("%s", e.msg);
            return CLI_UNREACHABLE;
        }
        printf("service started for %s (log: %s/logs/serve.log; 'jorch serve --status' shows it)\n", home, home);
        return 0;
    }
    jbuf conf;
    jerr e = {0};
    if (config_activity_json(home, &conf, &e) != 0) {
        cli_errorf("%s", e.msg);
        jbuf_free(&conf);
        return CLI_USAGE;
    }
    store *s = NULL;
    if (store_open(home, &s, &e) != 0) {
        cli_errorf("%s", e.msg);
        jbuf_free(&conf);
        return cli_exit_for(&e);
    }
    store_service_opts so = {.concurrency = (int)conc, .cache_size = (size_t)cache,
                             .cache_memory = (size_t)mem_mb << 20, .config_json = conf.data,
                             .task_retry_first = (int64_t)retry_ms * 1000000};
    /* the web server runs on a thread of its own beside the service loop,
     * reaching runs as any client does; runs its webhook starts are handed
     * to this service like those of 'jorch start' */
    web_server *web = NULL;
    int want_web = a.set[S_WEB] ? 1 : web_config_serve(&e);
    if (want_web < 0) {
        cli_errorf("%s", e.msg);
        store_close(s);
        jbuf_free(&conf);
        return CLI_USAGE;
    }
    if (want_web) {
        web_options wo = {.home = home};
        web = web_start(&wo, &e);
        if (!web) {
            cli_errorf("web: %s", e.msg);
            store_close(s);
            jbuf_free(&conf);
            return cli_exit_for(&e);
        }
        fprintf(stderr, "jorch serve: approval page, Jira webhook and metrics at %s/\n", web_url(web));
    }
    rc = store_service_run(s, &so, &e);
    web_stop(web);
    store_close(s);
    jbuf_free(&conf);
    if (rc != 0) {
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    return 0;
}
