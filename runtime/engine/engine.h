/*
 * engine.h - the public face of runtime/engine: the deterministic workflow
 * engine. It consumes Temporal HistoryEvents and produces Temporal Commands;
 * it does not know which backend the history came from.
 */
#ifndef JORCH_ENGINE_H
#define JORCH_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* Limits for one run. Defaults (engine_limits_default): 64 MiB of Lua heap,
 * 200 million VM instructions and 30 s of wall clock per activation,
 * payload depth 64 and 4 MiB. Overridable from jorch.yaml / flags. */
typedef struct engine_limits {
    size_t memory_limit;
    uint64_t instruction_budget;
    double wall_clock_limit;
    payload_limits payload;
} engine_limits;

/* The limits runs get: those engine_limits_use set, else the built-in ones
 * with valid JORCH_* environment overrides (an invalid one is ignored with
 * a warning). The CLI configures them once at start (jorch.yaml limits:,
 * then the environment), refusing invalid values. */
engine_limits engine_limits_default(void);
/* 64 MiB, 200 million instructions, 30 s. */
engine_limits engine_limits_builtin(void);
/* Sets one limit from text: key memory_mb (MiB, 1 to 1048576),
 * instruction_budget (1 to 1e18) or wall_clock (seconds above 0, at most
 * 1e6, or a duration like "2 minutes"). source names where the value came
 * from, for the message. JERR_USAGE on a bad key or value. */
int engine_limits_set(engine_limits *l, const char *key, const char *value, const char *source,
                      jerr *err);
/* Applies JORCH_MEMORY_LIMIT_MB, JORCH_INSTRUCTION_BUDGET and
 * JORCH_WALL_CLOCK_LIMIT where set; JERR_USAGE on an invalid value. */
int engine_limits_from_env(engine_limits *l, jerr *err);
/* What engine_limits_default returns from now on (process-wide). */
void engine_limits_use(const engine_limits *l);

#include "temporal/api/command/v1/message.pb-c.h"

/* Finds a workflow-side module for require() (see sandbox.h). */
typedef int (*engine_module_finder)(void *ud, const char *name, char **src, size_t *len,
                                    char **chunkname, jerr *err);

typedef struct engine_run_config {
    const char *script_name;  /* chunk name in messages, e.g. "workflows/orchestrate.lua" */
    const char *script_src;
    size_t script_len;
    engine_limits limits;
    engine_module_finder finder; /* may be NULL */
    void *finder_ud;
    /* The modules of the run's version (may be NULL): require() finds them
     * ahead of the finder. Copied: the caller keeps its bundle. */
    const struct engine_bundle *modules;
    /* Identity of the run (the history does not carry all of it). */
    const char *namespace_;
    const char *workflow_id;
    const char *run_id;
    /* Where workflow.log lines go (never called while replaying); NULL: stderr. */
    void (*log_fn)(void *ud, const char *workflow_id, const char *line);
    void *log_ud;
} engine_run_config;

/* The signal name with which a backend records in history that a run moved
 * to another script version (jorch upgrade). The engine never delivers it
 * to the script; clients may not send it. */
#define ENGINE_UPGRADE_SIGNAL "__jorch_upgrade"

/* A Temporal worker records which script version a run executes (a run
 * started without one, or one that moved to a new version by itself) with
 * a ModifyWorkflowProperties command whose memo keys all start with this
 * prefix, added to the script's commands. The engine skips the resulting
 * WorkflowPropertiesModified events: no command of the script matches them. */
#define ENGINE_VERSION_MEMO_PREFIX "jorch."

/* Failure kinds of a workflow task (what a backend reports). */
enum {
    ENGINE_TASK_OK = 0,
    ENGINE_TASK_FAILED = 1,       /* a Lua error, a limit, bad history: retry after a fix */
    ENGINE_NONDETERMINISM = 2,    /* replay produced different commands */
};

/* jorch's runtime flags: recorded in a workflow task completion's
 * sdk_metadata.lang_used_flags the first time a run uses them; replay
 * follows the flags in history (docs/development.md, "Runtime flags").
 * Numbers are forever: never reuse one. */
enum {
    ENGINE_FLAG_KIND_IDS = 1,     /* command ids numbered per kind (A1, T1, A2), as sdk-core */
    ENGINE_FLAG_PATCH_UPSERT = 2, /* patched() upserts TemporalChangeVersion after its marker */
    ENGINE_FLAG_DETAILS_LIST = 3, /* error details: one Lua list element per payload */
    ENGINE_FLAG_MAX = 3,
};
#define ENGINE_SDK_NAME "jorch"

typedef struct engine_output {
    /* Commands for the workflow task at the end of the fed history, in order.
     * Borrowed: valid until the next call on the run. */
    Temporal__Api__Command__V1__Command **commands;
    size_t n_commands;
    bool has_task;   /* the history ended in an open workflow task (started, not completed) */
    int failure;     /* ENGINE_TASK_* */
    int64_t failed_event_id; /* for nondeterminism: the event that did not match (0 if none) */
    /* With has_task: runtime flags this task used first (to record in its
     * completion), and whether it is the run's first completed task. */
    uint32_t new_flags[ENGINE_FLAG_MAX];
    size_t n_new_flags;
    bool first_task;
} engine_output;

#include "temporal/api/sdk/v1/task_complete_metadata.pb-c.h"

/* The sdk_metadata to send with (or record in) the completion of the task
 * in out: the new flags, and sdk_name/sdk_version on the first task. Sets
 * *md to NULL when there is nothing to record. Free with
 * protobuf_c_message_free_unpacked. */
int engine_task_metadata(const engine_output *out, Temporal__Api__Sdk__V1__WorkflowTaskCompletedMetadata **md,
                         jerr *err);

typedef struct engine_run engine_run;

/* A run object for one workflow execution. Compiles the script (syntax
 * errors are reported here) but runs nothing until events are fed. */
engine_run *engine_run_new(const engine_run_config *cfg, jerr *err);
void engine_run_free(engine_run *r);

/* Feeds the next events of the run's history, in order, starting at event 1
 * for a new run object or right after the last event fed. Workflow tasks
 * that the history shows completed are replayed and their commands checked
 * against the recorded command events; if the history ends in an open
 * workflow task (started, no completion yet), that task is executed and its
 * commands are returned. On failure returns -1, sets out->failure and err;
 * the run object must then be discarded (rebuild it from full history). */
int engine_run_feed(engine_run *r, Temporal__Api__History__V1__HistoryEvent **events, size_t n,
                    engine_output *out, jerr *err);

/* After the whole history was fed (replay of a recorded history): the
 * commands of the last completed task must all have had their events. */
int engine_run_check_end(engine_run *r, engine_output *out, jerr *err);

/* Answers a query against the state reached by the events fed so far.
 * Handlers may not block or produce commands. "__stack_trace" is built in,
 * and so is ENGINE_STATUS_QUERY: one JSON object {details, waiting[],
 * signals[], queries[], unhandledSignals[]} saying what each coroutine
 * waits for (kind "condition" with its description, script line and
 * timeoutTimerId; "activity" with its name; "timer" with its timerId), for
 * describe and the status line. */
#define ENGINE_STATUS_QUERY "__jorch_status"
/* Built-in query with the arguments (signal name, signal args...): one JSON
 * object {handled, signals[], rejected?}: whether a handler (or "*") takes
 * the signal, the names the workflow handles, and the message of the
 * handler's validator when it rejects the arguments. */
#define ENGINE_SIGNAL_CHECK_QUERY "__jorch_signal_check"
int engine_run_query(engine_run *r, const char *name,
                     const Temporal__Api__Common__V1__Payloads *args,
                     Temporal__Api__Common__V1__Payloads **answer, jerr *err);

/* True once a command that closes the run (complete, fail, cancel,
 * continue-as-new) was produced or seen. */
bool engine_run_closed(const engine_run *r);

/* Bytes of Lua heap held by the run. */
size_t engine_run_memory(const engine_run *r);

/* Loads a script in a fresh sandbox and runs its top level: reports syntax
 * errors, forbidden globals reached at load time, and a script that does not
 * return a function. */
int engine_check_script(const char *script_name, const char *src, size_t len,
                        engine_module_finder finder, void *finder_ud, jerr *err);

/* engine_check_script, then the default workflow id for this input: the
 * value the script's workflow.default_id function returns, copied to id
 * (at most idlen - 1 bytes), or "" when the script declares none or it
 * returns nil. Runs only the script's top level and that function, in the
 * sandbox; an error in either fails with err. */
int engine_start_check(const char *script_name, const char *src, size_t len,
                       engine_module_finder finder, void *finder_ud,
                       const Temporal__Api__Common__V1__Payloads *input, char *id, size_t idlen, jerr *err);

/* A module finder (engine_module_finder) that looks workflow-side modules
 * up as files: require("a.b") -> "<dir>/a/b.lua". ud is the directory. */
int engine_find_module_in_dir(void *dir, const char *name, char **src, size_t *len, char **chunkname,
                              jerr *err);

/* ------------------------------------------------------------ versions
 * (bundle.c) */

/* The label a `-- jorch: version LABEL` line among the script's first 20
 * lines declares (one word of [A-Za-z0-9._+-]), or "". */
void engine_script_label(const char *src, size_t len, char *out, size_t outlen);
/* Does the script declare `-- jorch: auto_upgrade` among its first 20 lines? */
bool engine_script_auto_upgrade(const char *src, size_t len);

/* A bundle read from files: the modules the script requires by a literal
 * name (require "a.b", require("a.b"), in the script or in those modules,
 * transitively) that exist in the script's directory, sorted by name.
 * Modules required by a computed name are not part of it (a run pins them
 * when it first loads them). */
typedef struct engine_bundle_module {
    char *name, *chunkname, *src;
    size_t len;
    char sha[65];
} engine_bundle_module;
typedef struct engine_bundle {
    char script_sha[65];
    char digest[65]; /* the version's name */
    engine_bundle_module *m;
    size_t n, cap;
} engine_bundle;
/* Collects the bundle of script src (its modules looked up in dir) and
 * computes its digest. JERR_USAGE for a module that cannot be read. */
int engine_bundle_collect(const char *dir, const char *src, size_t len, engine_bundle *b, jerr *err);
/* Adds one module (copied; kept sorted by name; a second one of the same
 * name is an error). */
int engine_bundle_add(engine_bundle *b, const char *name, const char *chunkname, const char *src, size_t len,
                     jerr *err);
/* b->digest from b->script_sha and the modules: the script's SHA-256 when
 * there are none, else SHA-256 of "jorch-version 1\nscript SHA\n" and one
 * "module NAME SHA\n" line per module in name order. */
int engine_bundle_digest(engine_bundle *b, jerr *err);
void engine_bundle_free(engine_bundle *b);

/* The workflow type of a script path: its basename without ".lua". */
void engine_workflow_type(const char *script_path, char *out, size_t outlen);

#endif
