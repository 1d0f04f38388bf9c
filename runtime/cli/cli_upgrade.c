/*
 * cli_upgrade.c - script versions on the embedded backend: `jorch upgrade`
 * (move runs to a new version, checked by replay) and `jorch scripts`
 * (list stored versions, prune the ones no open run needs).
 */
#include "cli/cli_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "store/store.h"

enum { U_TO, U_DRY_RUN, U_ALL_OF, U_HOME, U_TEMPORAL, U_PRUNE };

static const cli_opt upgrade_opts[] = {{"all-of", 1, U_ALL_OF}, {"dry-run", 0, U_DRY_RUN}, {"home", 1, U_HOME},
                                       {"temporal", 0, U_TEMPORAL}, {"to", 1, U_TO}, {NULL, 0, 0}};

static const char upgrade_help[] =
    "Usage: jorch upgrade ID [--to SCRIPT] [--dry-run]\n"
    "       jorch upgrade --all-of SHA [--to SCRIPT] [--dry-run]\n\n"
    "Moves an open run to a new version of its workflow script (the script and the\n"
    "workflow modules it requires). The run's whole history is replayed against the\n"
    "new version first (and its pending workflow task, if one failed); only when that\n"
    "replay is clean is the run re-pinned, and the re-pin is recorded in its history.\n"
    "Otherwise the nondeterminism report (event, command, script line) is printed and\n"
    "nothing changes. After a script bug failed a workflow task: fix the script,\n"
    "'jorch upgrade ID', then 'jorch resume ID'. See docs/versioning.md.\n"
    "  --to SCRIPT     the new version (default: the run's script path, as it is now)\n"
    "  --all-of SHA    every open run of that version (a SHA-256 or a unique prefix\n"
    "                  of at least 8 hex digits, as 'jorch scripts' shows)\n"
    "  --dry-run       check only\n"
    "  --home DIR      the embedded store (default $JORCH_HOME or ./.jorch)\n"
    "  --temporal      runs on Temporal (also FEATURE_TEMPORAL_ENABLED=true): needs\n"
    "                  --to; the version and its sources are recorded in the run's history\n"
    "Exit 0 upgraded (or would be), 1 the new version does not replay, 2 usage.\n";

static const char *home_of(const cli_args *a) {
    if (a->set[U_HOME] && *a->val[U_HOME]) return a->val[U_HOME];
    const char *e = getenv("JORCH_HOME");
    return e && *e ? e : ".jorch";
}

static bool temporal_wanted(const cli_args *a) {
    const char *e = getenv("FEATURE_TEMPORAL_ENABLED");
    return a->set[U_TEMPORAL] ||
           (e && (strcasecmp(e, "true") == 0 || strcmp(e, "1") == 0 || strcasecmp(e, "yes") == 0));
}

static int open_home(const cli_args *a, store **s) {
    jerr e = {0};
    if (store_open(home_of(a), s, &e) != 0) {
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    return 0;
}

/* One run: 0 upgraded/unchanged/would be, 1 refused, 2 usage, 3 store. */
static int upgrade_one(store *s, const char *id, const char *to, bool dry_run) {
    store_run r;
    jerr e = {0};
    if (store_run_find(s, id, &r, &e) != 0) {
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    const char *path = to ? to : r.script_name;
    char *src = NULL;
    size_t len = 0;
    if (cli_read_script(path, &src, &len, &e) != 0) {
        cli_errorf("%s%s", e.msg, to ? "" : " (give the new version with --to SCRIPT)");
        return CLI_USAGE;
    }
    store_upgrade_opts o = {.script_path = path, .script_src = src, .script_len = len, .dry_run = dry_run};
    store_upgrade_result res;
    int rc = store_upgrade(s, id, &o, &res, &e);
    free(src);
    if (rc != 0) {
        if (e.code == JERR_FAILED) {
            cli_errorf("cannot upgrade workflow '%s' to %s (sha256 %.12s): its history does not replay against "
                       "that version; nothing changed (the run keeps version %.12s).\n%s",
                       id, path, res.new_sha, res.old_sha, e.msg);
            return CLI_FAILED;
        }
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    char label[80] = "";
    if (res.label[0]) snprintf(label, sizeof label, " (version %s)", res.label);
    if (res.unchanged)
        printf("workflow '%s' already runs %s%s (sha256 %.12s); nothing to do\n", id, path, label, res.new_sha);
    else if (dry_run)
        printf("workflow '%s' can be upgraded from %.12s to %s%s (sha256 %.12s): %lld events replay cleanly\n", id,
               res.old_sha, path, label, res.new_sha, (long long)res.checked_events);
    else if (res.queued)
        printf("workflow '%s': upgrade to %s%s (sha256 %.12s) checked and queued; the process executing the run "
               "applies it\n",
               id, path, label, res.new_sha);
    else
        printf("upgraded workflow '%s' from %.12s to %s%s (sha256 %.12s): %lld events replayed cleanly\n", id,
               res.old_sha, path, label, res.new_sha, (long long)res.checked_events);
    return CLI_OK;
}

static bool hex_prefix(const char *s) {
    size_t n = strlen(s);
    if (n < 8 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static int upgrade_all_of(store *s, const char *sha, const char *to, bool dry_run) {
    if (!hex_prefix(sha))
        return cli_usage_error("upgrade", "--all-of needs a SHA-256 (or a prefix of at least 8 lowercase hex "
                                          "digits) as 'jorch scripts' shows, not '%s'", sha);
    store_run *runs = NULL;
    size_t n = 0;
    jerr e = {0};
    if (store_run_list(s, RUN_RUNNING, &runs, &n, &e) != 0) {
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    /* the prefix must name one version */
    char full[65] = "";
    for (size_t i = 0; i < n; i++) {
        if (strncmp(runs[i].version_sha, sha, strlen(sha)) != 0) continue;
        if (full[0] && strcmp(full, runs[i].version_sha) != 0) {
            free(runs);
            return cli_usage_error("upgrade", "'%s' is the prefix of more than one version: give more digits", sha);
        }
        snprintf(full, sizeof full, "%s", runs[i].version_sha);
    }
    int worst = CLI_OK, done = 0, refused = 0;
    for (size_t i = 0; full[0] && i < n; i++) {
        if (strcmp(runs[i].version_sha, full) != 0) continue;
        int rc = upgrade_one(s, runs[i].run_id, to, dry_run);
        if (rc == CLI_OK) done++;
        else refused++;
        if (rc > worst) worst = rc;
    }
    free(runs);
    if (!full[0]) {
        printf("no open run has version %s; nothing to do\n", sha);
        return CLI_OK;
    }
    fprintf(stderr, "%d run%s %s, %d refused\n", done, done == 1 ? "" : "s", dry_run ? "can be upgraded" : "upgraded",
            refused);
    return worst;
}

/* A string memo field (the version's keys are JSON strings), or "". */
static void memo_str(const Temporal__Api__Common__V1__Memo *m, const char *key, char *out, size_t cap) {
    out[0] = '\0';
    for (size_t i = 0; m && i < m->n_fields; i++) {
        if (!m->fields[i]->key || strcmp(m->fields[i]->key, key) != 0 || !m->fields[i]->value) continue;
        const ProtobufCBinaryData *d = &m->fields[i]->value->data;
        cJSON *v = cJSON_ParseWithLength((const char *)d->data, d->len);
        if (cJSON_IsString(v) && v->valuestring) snprintf(out, cap, "%s", v->valuestring);
        cJSON_Delete(v);
    }
}

/* The version an execution's memo names: the bundle's, else (a run from
 * before bundles) the script's; "" for a run started without one. */
static void memo_version(const Temporal__Api__Common__V1__Memo *m, char out[65]) {
    memo_str(m, "jorch.version_sha256", out, 65);
    if (!out[0]) memo_str(m, "jorch.script_sha256", out, 65);
}

/* The open runs on Temporal (all pages the client fetches). */
static int temporal_open_runs(cli_client *c, Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse **l,
                              jerr *e) {
    return c->ops->list(c, "ExecutionStatus=\"Running\"", l, e);
}

static int upgrade_temporal_one(cli_client *c, const char *id, const char *path, bool dry_run) {
    jerr e = {0};
    if (cli_pin_upgrade_temporal(c, id, path, dry_run, &e) != 0) {
        if (e.code == JERR_FAILED) {
            cli_errorf("cannot upgrade workflow '%s' to %s: %s; nothing changed", id, path, e.msg);
            return CLI_FAILED;
        }
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    printf(dry_run ? "workflow '%s' can be upgraded to %s: its history replays cleanly\n"
                   : "upgraded workflow '%s' to %s: its history replayed cleanly; the next workflow task "
                     "runs the new version\n",
           id, path);
    return CLI_OK;
}

static bool hex_prefix(const char *s);

static int upgrade_temporal(const cli_args *a) {
    if (a->set[U_HOME]) return cli_usage_error("upgrade", "--home works on the embedded backend only");
    if (!a->set[U_TO])
        return cli_usage_error("upgrade", "on Temporal, name the new version with --to SCRIPT");
    const char *sha = a->set[U_ALL_OF] ? a->val[U_ALL_OF] : NULL;
    if (sha && !hex_prefix(sha))
        return cli_usage_error("upgrade", "--all-of needs a SHA-256 (or a prefix of at least 8 lowercase hex "
                                          "digits) as 'jorch scripts --temporal' shows, not '%s'", sha);
    jerr e = {0};
    cli_client *c = cli_temporal_client_new(&e);
    if (!c) {
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    const char *path = a->val[U_TO];
    if (!sha) {
        int rc = upgrade_temporal_one(c, a->pos[0], path, a->set[U_DRY_RUN]);
        c->ops->free(c);
        return rc;
    }
    Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse *l = NULL;
    if (temporal_open_runs(c, &l, &e) != 0) {
        c->ops->free(c);
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    /* the prefix must name one version */
    char full[65] = "", v[65];
    for (size_t i = 0; i < l->n_executions; i++) {
        memo_version(l->executions[i]->memo, v);
        if (!v[0] || strncmp(v, sha, strlen(sha)) != 0) continue;
        if (full[0] && strcmp(full, v) != 0) {
            protobuf_c_message_free_unpacked(&l->base, NULL);
            c->ops->free(c);
            return cli_usage_error("upgrade", "'%s' is the prefix of more than one version: give more digits", sha);
        }
        snprintf(full, sizeof full, "%s", v);
    }
    int worst = CLI_OK, done = 0, refused = 0;
    for (size_t i = 0; full[0] && i < l->n_executions; i++) {
        const Temporal__Api__Workflow__V1__WorkflowExecutionInfo *x = l->executions[i];
        memo_version(x->memo, v);
        if (strcmp(v, full) != 0 || !x->execution || !x->execution->workflow_id) continue;
        int rc = upgrade_temporal_one(c, x->execution->workflow_id, path, a->set[U_DRY_RUN]);
        if (rc == CLI_OK) done++;
        else refused++;
        if (rc > worst) worst = rc;
    }
    protobuf_c_message_free_unpacked(&l->base, NULL);
    c->ops->free(c);
    if (!full[0]) {
        printf("no open run has version %s; nothing to do\n", sha);
        return CLI_OK;
    }
    fprintf(stderr, "%d run%s %s, %d refused\n", done, done == 1 ? "" : "s",
            a->set[U_DRY_RUN] ? "can be upgraded" : "upgraded", refused);
    return worst;
}

int cli_verb_upgrade(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse("upgrade", argc, argv, upgrade_opts, false, &a);
    if (rc) return rc;
    if (a.help) {
        fputs(upgrade_help, stdout);
        return 0;
    }
    if (a.set[U_ALL_OF] ? a.npos != 0 : a.npos != 1)
        return cli_usage_error("upgrade", "expected either one workflow ID or --all-of SHA");
    jerr ve = {0};
    if (a.npos == 1 && id_check("workflow id", a.pos[0], ID_MAX_BYTES, &ve) != 0)
        return cli_usage_error("upgrade", "%s", ve.msg);
    if (temporal_wanted(&a)) return upgrade_temporal(&a);
    store *s = NULL;
    rc = open_home(&a, &s);
    if (rc) return rc;
    const char *to = a.set[U_TO] ? a.val[U_TO] : NULL;
    rc = a.set[U_ALL_OF] ? upgrade_all_of(s, a.val[U_ALL_OF], to, a.set[U_DRY_RUN])
                         : upgrade_one(s, a.pos[0], to, a.set[U_DRY_RUN]);
    store_close(s);
    return rc;
}

/* ------------------------------------------------------------ scripts */

static const cli_opt scripts_opts[] = {{"home", 1, U_HOME}, {"prune", 0, U_PRUNE}, {"temporal", 0, U_TEMPORAL},
                                       {NULL, 0, 0}};

/* jorch scripts --temporal: the versions of the open runs, from their memos. */
static int scripts_temporal(const cli_args *a) {
    if (a->set[U_PRUNE])
        return cli_usage_error("scripts", "there is nothing to prune on Temporal: a version is not stored apart from "
                                          "its runs, it lives in each run's history, which the server deletes with the "
                                          "run after the namespace's retention period");
    if (a->set[U_HOME]) return cli_usage_error("scripts", "--home works on the embedded backend only");
    jerr e = {0};
    cli_client *c = cli_temporal_client_new(&e);
    if (!c) {
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse *l = NULL;
    if (temporal_open_runs(c, &l, &e) != 0) {
        c->ops->free(c);
        cli_errorf("%s", e.msg);
        return cli_exit_for(&e);
    }
    printf("%-64s %-10s %-9s %s\n", "SHA256", "LABEL", "OPEN RUNS", "SCRIPT");
    size_t n = l->n_executions;
    bool *done = calloc(n ? n : 1, sizeof *done);
    jbuf b;
    jbuf_init(&b, 1u << 16);
    for (size_t i = 0; done && i < n; i++) {
        if (done[i]) continue;
        char v[65], label[64], name[1024];
        memo_version(l->executions[i]->memo, v);
        memo_str(l->executions[i]->memo, "jorch.script_version", label, sizeof label);
        memo_str(l->executions[i]->memo, "jorch.script", name, sizeof name);
        /* this version's runs */
        int count = 0;
        jbuf ids;
        jbuf_init(&ids, 4096);
        for (size_t k = i; k < n; k++) {
            char w[65];
            memo_version(l->executions[k]->memo, w);
            if (strcmp(w, v) != 0) continue;
            done[k] = true;
            const Temporal__Api__Common__V1__WorkflowExecution *x = l->executions[k]->execution;
            if (count++ < 20 && x && x->workflow_id) {
                if (ids.len) jbuf_putc(&ids, ' ');
                text_escape(&ids, x->workflow_id, strlen(x->workflow_id), false);
            }
        }
        jbuf_reset(&b);
        text_escape(&b, v[0] ? name : "(none: started without a version, pinned at its first workflow task)",
                    strlen(v[0] ? name : "(none: started without a version, pinned at its first workflow task)"),
                    false);
        printf("%-64s %-10s %-9d %s\n", v[0] ? v : "-", label[0] ? label : "-", count, b.data ? b.data : "?");
        printf("%-64s   open: %s%s\n", "", ids.data ? ids.data : "?", count > 20 ? " ..." : "");
        jbuf_free(&ids);
    }
    jbuf_free(&b);
    free(done);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    c->ops->free(c);
    return CLI_OK;
}

int cli_verb_scripts(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse("scripts", argc, argv, scripts_opts, false, &a);
    if (rc) return rc;
    if (a.help) {
        printf("Usage: jorch scripts [--prune] [--temporal]\n\n"
               "Lists the script versions in the embedded store: the version's SHA-256 (of the\n"
               "script and the modules it requires; a script without modules: its own SHA-256),\n"
               "the label the script declares (a '-- jorch: version LABEL' line), how many open\n"
               "runs use it and which, the script's path and how many modules it has. --prune\n"
               "deletes every version, stored script and module that no open run needs (closed\n"
               "runs whose version is pruned can no longer be queried).\n"
               "  --home DIR      the embedded store (default $JORCH_HOME or ./.jorch)\n"
               "  --temporal      the versions of the open runs on Temporal (also\n"
               "                  FEATURE_TEMPORAL_ENABLED=true), from their memos; nothing to\n"
               "                  prune there: each version lives in its run's history\n");
        return 0;
    }
    if (a.npos != 0) return cli_usage_error("scripts", "unexpected argument '%s'", a.pos[0]);
    if (temporal_wanted(&a)) return scripts_temporal(&a);
    store *s = NULL;
    rc = open_home(&a, &s);
    if (rc) return rc;
    jerr e = {0};
    if (a.set[U_PRUNE]) {
        size_t versions = 0, blobs = 0;
        if (store_versions_prune(s, &versions, &blobs, &e) != 0) {
            cli_errorf("%s", e.msg);
            store_close(s);
            return cli_exit_for(&e);
        }
        printf("pruned %zu version%s (%zu stored script%s and module%s) no open run needs\n", versions,
               versions == 1 ? "" : "s", blobs, blobs == 1 ? "" : "s", blobs == 1 ? "" : "s");
    }
    store_version_info *v = NULL;
    size_t n = 0;
    if (store_versions_list(s, &v, &n, &e) != 0) {
        cli_errorf("%s", e.msg);
        store_close(s);
        return cli_exit_for(&e);
    }
    printf("%-64s %-10s %-9s %s\n", "SHA256", "LABEL", "OPEN RUNS", "SCRIPT");
    jbuf b;
    jbuf_init(&b, 1u << 16);
    for (size_t i = 0; i < n; i++) {
        jbuf_reset(&b);
        text_escape(&b, v[i].name, strlen(v[i].name), false);
        char mods[48] = "";
        if (v[i].modules > 0)
            snprintf(mods, sizeof mods, " + %d module%s", v[i].modules, v[i].modules == 1 ? "" : "s");
        printf("%-64s %-10s %-9d %s%s\n", v[i].sha, v[i].label[0] ? v[i].label : "-", v[i].open_runs,
               b.data ? b.data : "?", mods);
        if (v[i].open_ids[0]) {
            jbuf_reset(&b);
            text_escape(&b, v[i].open_ids, strlen(v[i].open_ids), false);
            printf("%-64s   open: %s%s\n", "", b.data ? b.data : "?", v[i].open_runs > 20 ? " ..." : "");
        }
    }
    jbuf_free(&b);
    free(v);
    store_close(s);
    return CLI_OK;
}
