/*
 * cli_int.h - CLI-internal: option parsing, messages and the verb entry
 * points shared by the files of runtime/cli.
 */
#ifndef JORCH_CLI_INT_H
#define JORCH_CLI_INT_H

#include <stdarg.h>
#include <stdbool.h>

#include "activity/activity.h"
#include "cli/cli.h"

#define CLI_MAX_POS 64
#define CLI_MAX_OPTS 32

/* has_arg: 0 a flag, 1 one value (the last one given wins), CLI_REPEAT a
 * value that may be given several times, each kept in order in
 * cli_args.rep (--input A --input B). */
#define CLI_REPEAT 2

typedef struct cli_opt {
    const char *name; /* long name without "--" */
    int has_arg;
    int id;           /* index into cli_args.set/val */
} cli_opt;

typedef struct cli_args {
    const char *pos[CLI_MAX_POS];
    int npos;
    bool set[CLI_MAX_OPTS];
    const char *val[CLI_MAX_OPTS];
    const char *rep[CLI_MAX_POS]; /* values of CLI_REPEAT options, in order */
    int rep_id[CLI_MAX_POS];      /* the option id of each */
    int nrep;
    bool help;
} cli_args;

/* Parses argv[1..]: options anywhere, or (options_first, run/start) only
 * before the first positional (SCRIPT). There an option-like argument
 * after SCRIPT is a usage error that says where options go: it would
 * otherwise become workflow input unnoticed. "--" ends the options; what
 * follows it is positional, even when it starts with "-". */
int cli_parse(const char *verb, int argc, char **argv, const cli_opt *opts, bool options_first,
              cli_args *out);

void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the message and a pointer to --help; returns CLI_USAGE. */
int cli_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_exit_for(const jerr *e);

int cli_read_script(const char *path, char **src, size_t *len, jerr *err);
void cli_script_dir(const char *path, char *out, size_t outlen);
int cli_replay_history(const char *script_path, const char *src, size_t len,
                       Temporal__Api__History__V1__History *h, jerr *err);

/* Verbs implemented in cli_verbs.c (client verbs on either backend) and
 * cli_worker.c (worker: options and output; the worker itself is
 * runtime/temporal's tc_worker). */
int cli_verb_run(int argc, char **argv);
int cli_verb_start(int argc, char **argv);
int cli_verb_resume(int argc, char **argv);
int cli_verb_serve(int argc, char **argv);
/* Hands a started run to the service of store `home`, starting the
 * service when none runs (cli_serve.c): 0 handed, 1 not (JORCH_SERVICE=off,
 * or the service could not start: the caller executes it another way). */
int cli_service_handoff(const char *home, const char *run_id);
int cli_verb_worker(int argc, char **argv);
int cli_verb_signal(int argc, char **argv);
int cli_verb_query(int argc, char **argv);
int cli_verb_describe(int argc, char **argv);
int cli_verb_list(int argc, char **argv);
int cli_verb_history(int argc, char **argv);
int cli_verb_result(int argc, char **argv);
int cli_verb_cancel(int argc, char **argv);
int cli_verb_terminate(int argc, char **argv);
/* cli_upgrade.c: script versions on the embedded backend. */
int cli_verb_upgrade(int argc, char **argv);
int cli_verb_scripts(int argc, char **argv);

/* cli_pin.c: script versions on Temporal. The memo `jorch start --temporal
 * SCRIPT.lua` gives the run (tc_pin_memo: the script and its modules, with
 * their SHA-256s and sources); reading it back from a history is
 * tc_pin_task_run's (runtime/temporal). */
Temporal__Api__Common__V1__Memo *cli_pin_memo(const char *path, jerr *err);
/* jorch upgrade --temporal: replays the run's history (from the server),
 * and its pending or failed workflow task, against SCRIPT and its modules
 * (tc_pin_upgrade_check); when clean and not dry_run, records the version
 * with its sources as ENGINE_UPGRADE_SIGNAL. JERR_FAILED with the report
 * otherwise. */
int cli_pin_upgrade_temporal(cli_client *c, const char *id, const char *path, bool dry_run, jerr *err);

#endif
