/*
 * store_versions.c - script versions on the embedded backend: moving a run
 * to a new version (jorch upgrade), listing and pruning stored versions.
 *
 * A version is a bundle: the workflow script and the workflow modules it
 * requires, each stored by SHA-256 in the scripts table; a run's version
 * is runs.script_sha plus its run_modules rows. An upgrade replays the
 * run's whole history against the new bundle and re-pins only when that
 * replay is clean. The re-pin is recorded in history as a signal with the
 * reserved name ENGINE_UPGRADE_SIGNAL carrying {sha, name, label, modules}:
 * a signal needs no command (a marker would have to be produced by the
 * script, and the old version never produces it), the engine drops it
 * before the script sees it, and the event tells every reader of the
 * history which version applies from which point. The request goes
 * through the inbox, so the check and the re-pin happen in one transaction
 * of whichever process holds the run (the idle case: the upgrading process
 * itself): the run cannot move on between the check and the re-pin.
 */
#include "store/store_int.h"
#include "engine/engine.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ labels */

void store_version_label(const char *src, size_t len, char *out, size_t outlen) {
    engine_script_label(src, len, out, outlen);
}

static int save_blob(store *s, const char *sha, const char *name, const char *src, size_t len, jerr *err);

static void dir_of(const char *path, char *out, size_t outlen) {
    snprintf(out, outlen, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == out) snprintf(out, outlen, "/");
    else if (slash) *slash = '\0';
    else snprintf(out, outlen, ".");
}

int store_version_record(store *s, const char *version_sha, const char *script_sha, const char *name,
                         size_t n_modules, jerr *err) {
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO versions(sha,script_sha,name,modules) VALUES(?,?,?,?)", -1,
                           &q, NULL) != SQLITE_OK)
        return store_db_error(s, "recording a script version", err);
    sqlite3_bind_text(q, 1, version_sha, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, script_sha, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 3, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)n_modules);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : store_db_error(s, "recording a script version", err);
    sqlite3_finalize(q);
    return rc;
}

int store_version_pin(store *s, const char *run_id, const char *script_name, const char *src, size_t len,
                      char version_sha[65], jerr *err) {
    char dir[1024];
    dir_of(script_name, dir, sizeof dir);
    engine_bundle b;
    if (engine_bundle_collect(dir, src, len, &b, err) != 0) return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < b.n; i++) {
        rc = save_blob(s, b.m[i].sha, b.m[i].chunkname, b.m[i].src, b.m[i].len, err);
        sqlite3_stmt *q = NULL;
        if (rc == 0 && sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO run_modules(run_id,name,chunkname,sha) "
                                                 "VALUES(?,?,?,?)", -1, &q, NULL) != SQLITE_OK)
            rc = store_db_error(s, "pinning a module", err);
        if (rc != 0) break;
        sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 2, b.m[i].name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 3, b.m[i].chunkname, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 4, b.m[i].sha, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_db_error(s, "pinning a module", err);
        sqlite3_finalize(q);
    }
    if (rc == 0) rc = store_version_record(s, b.digest, b.script_sha, script_name, b.n, err);
    if (rc == 0) memcpy(version_sha, b.digest, 65);
    engine_bundle_free(&b);
    return rc;
}

/* ------------------------------------------------------------ bundles */

typedef struct vmod {
    char *name, *chunkname;
    char sha[65];
} vmod;

typedef struct vbundle {
    store *s;
    const char *dir; /* new version read from files: modules from here */
    const engine_bundle *mem; /* the new version's modules read from files (NULL: applying) */
    vmod *m;         /* modules of the version: from mem, then what the replay required */
    size_t n, cap;
    bool from_list;  /* modules only from m (applying a checked request) */
    bool save;       /* store each module found (the version is being pinned) */
} vbundle;

static void bundle_free(vbundle *b) {
    for (size_t i = 0; i < b->n; i++) {
        free(b->m[i].name);
        free(b->m[i].chunkname);
    }
    free(b->m);
    b->m = NULL;
    b->n = b->cap = 0;
}

static int bundle_add(vbundle *b, const char *name, const char *chunkname, const char *sha, jerr *err) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 8, bytes;
        if (!size_mul(nc, sizeof *b->m, &bytes)) return jerr_oom(err, "listing a version's modules");
        vmod *p = realloc(b->m, bytes);
        if (!p) return jerr_oom(err, "listing a version's modules");
        b->m = p;
        b->cap = nc;
    }
    vmod *v = &b->m[b->n];
    v->name = jstrdup(name);
    v->chunkname = jstrdup(chunkname);
    snprintf(v->sha, sizeof v->sha, "%s", sha);
    if (!v->name || !v->chunkname) {
        free(v->name);
        free(v->chunkname);
        return jerr_oom(err, "listing a version's modules");
    }
    b->n++;
    return 0;
}

static int save_blob(store *s, const char *sha, const char *name, const char *src, size_t len, jerr *err) {
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO scripts(sha,name,source) VALUES(?,?,?)", -1, &q, NULL) !=
        SQLITE_OK)
        return store_db_error(s, "saving a script version", err);
    sqlite3_bind_text(q, 1, sha, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob64(q, 3, src, len, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : store_db_error(s, "saving a script version", err);
    sqlite3_finalize(q);
    return rc;
}

/* engine_module_finder: the new version's modules, recorded as found. */
static int bundle_finder(void *ud, const char *name, char **src, size_t *len, char **chunkname, jerr *err) {
    vbundle *b = ud;
    for (size_t i = 0; b->mem && i < b->mem->n; i++) {
        const engine_bundle_module *m = &b->mem->m[i];
        if (strcmp(m->name, name) != 0) continue;
        *chunkname = jstrdup(m->chunkname);
        *src = malloc(m->len + 1);
        if (!*chunkname || !*src) {
            free(*chunkname);
            free(*src);
            *chunkname = *src = NULL;
            return jerr_oom(err, "loading a module");
        }
        memcpy(*src, m->src, m->len + 1);
        *len = m->len;
        return 0;
    }
    for (size_t i = 0; i < b->n; i++) {
        if (strcmp(b->m[i].name, name) != 0) continue;
        *chunkname = jstrdup(b->m[i].chunkname);
        if (!*chunkname) return jerr_oom(err, "loading a module");
        return store_script(b->s, b->m[i].sha, NULL, src, len, err);
    }
    if (b->from_list)
        return jerr_set(err, JERR_FAILED, "module '%s' is not part of the checked version (run 'jorch upgrade' again)",
                        name);
    if (engine_find_module_in_dir((void *)b->dir, name, src, len, chunkname, err) != 0) return -1;
    char sha[65];
    sha256_hex(*src, *len, sha);
    if (b->save && save_blob(b->s, sha, *chunkname, *src, *len, err) != 0) return -1;
    return bundle_add(b, name, *chunkname, sha, err);
}

static void quiet_log(void *ud, const char *wid, const char *line) {
    (void)ud;
    (void)wid;
    (void)line;
}

/* Replays the run's whole committed history against a version, and the
 * pending workflow task too when there is one (a fixed script must get
 * past the task that failed). 0 clean; -1 with the engine's report. */
static int replay_run(store *s, const store_run *r, const char *name, const char *src, size_t len, vbundle *b,
                      int64_t *checked, jerr *err) {
    engine_run_config cfg = {
        .script_name = name, .script_src = src, .script_len = len, .limits = engine_limits_default(),
        .finder = bundle_finder, .finder_ud = b, .namespace_ = "default",
        .workflow_id = r->workflow_id, .run_id = r->run_id, .log_fn = quiet_log,
    };
    engine_run *er = engine_run_new(&cfg, err);
    if (!er) return -1;
    HistoryEvent **ev = NULL;
    size_t n = 0;
    if (store_history(s, r->run_id, 0, &ev, &n, err) != 0) {
        engine_run_free(er);
        return -1;
    }
    *checked = n ? ev[n - 1]->event_id : 0;
    bool pending = store_wft_pending(s, r->run_id);
    int64_t scheduled = 0;
    for (size_t i = n; pending && i-- > 0;)
        if (ev[i]->event_type == ET(WORKFLOW_TASK_SCHEDULED)) {
            scheduled = ev[i]->event_id;
            break;
        }
    if (scheduled) {
        /* the task the next executor runs: started now, as the runner does */
        HistoryEvent *st = store_event_new(ET(WORKFLOW_TASK_STARTED));
        Temporal__Api__History__V1__WorkflowTaskStartedEventAttributes *a = malloc(sizeof *a);
        HistoryEvent **grown = realloc(ev, (n + 1) * sizeof *grown);
        if (!st || !a || !grown) {
            free(a);
            if (st) protobuf_c_message_free_unpacked(&st->base, NULL);
            store_events_free(grown ? grown : ev, n);
            engine_run_free(er);
            return jerr_oom(err, "checking a version");
        }
        ev = grown;
        temporal__api__history__v1__workflow_task_started_event_attributes__init(a);
        st->attributes_case = EV_ATTR(WORKFLOW_TASK_STARTED);
        st->workflow_task_started_event_attributes = a;
        a->scheduled_event_id = scheduled;
        a->identity = jstrdup("jorch-upgrade");
        st->event_id = *checked + 1;
        st->event_time = pb_timestamp_new(store_run_now(s, r->run_id));
        ev[n++] = st;
    }
    engine_output out;
    memset(&out, 0, sizeof out);
    int rc = engine_run_feed(er, ev, n, &out, err);
    if (rc == 0 && !scheduled) rc = engine_run_check_end(er, &out, err);
    if (rc != 0 && scheduled && out.failure != ENGINE_NONDETERMINISM)
        jerr_prefix(err, "the new version fails the pending workflow task");
    store_events_free(ev, n);
    engine_run_free(er);
    return rc;
}

/* The version's record: the signal's JSON payload. */
static char *request_json(const char *sha, const char *version, const char *name, const char *label, const vbundle *b,
                          int64_t checked) {
    cJSON *o = cJSON_CreateObject();
    cJSON *mods = cJSON_CreateArray();
    if (!o || !mods) {
        cJSON_Delete(o);
        cJSON_Delete(mods);
        return NULL;
    }
    cJSON_AddStringToObject(o, "sha", sha);
    cJSON_AddStringToObject(o, "version", version);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "label", label);
    cJSON_AddNumberToObject(o, "checkedThroughEvent", (double)checked);
    for (size_t i = 0; i < b->n; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m) break;
        cJSON_AddStringToObject(m, "name", b->m[i].name);
        cJSON_AddStringToObject(m, "chunkname", b->m[i].chunkname);
        cJSON_AddStringToObject(m, "sha", b->m[i].sha);
        cJSON_AddItemToArray(mods, m);
    }
    cJSON_AddItemToObject(o, "modules", mods);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

/* Is the current version of the run exactly this bundle? */
static bool same_version(store *s, const store_run *r, const char *version, const vbundle *b) {
    if (strcmp(r->version_sha, version) != 0) return false;
    for (size_t i = 0; i < b->n; i++) {
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(s->db, "SELECT sha FROM run_modules WHERE run_id=? AND name=?", -1, &q, NULL) !=
            SQLITE_OK)
            return false;
        sqlite3_bind_text(q, 1, r->run_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 2, b->m[i].name, -1, SQLITE_TRANSIENT);
        bool same = sqlite3_step(q) == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(q, 0), b->m[i].sha) == 0;
        sqlite3_finalize(q);
        if (!same) return false;
    }
    return true;
}

static int exec_bound(store *s, const char *sql, const char *a1, const char *a2, const char *a3, const char *a4,
                      jerr *err) {
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) return store_db_error(s, "re-pinning a run", err);
    const char *args[4] = {a1, a2, a3, a4};
    for (int i = 0; i < 4 && args[i]; i++) sqlite3_bind_text(q, i + 1, args[i], -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : store_db_error(s, "re-pinning a run", err);
    sqlite3_finalize(q);
    return rc;
}

int store_version_apply(store *s, const char *run_id, const Payloads *input, jerr *err) {
    if (!input || input->n_payloads < 1 || !input->payloads[0]) {
        fprintf(stderr, "jorch: an upgrade request for run %s had no version: dropped\n", run_id);
        return 0;
    }
    const ProtobufCBinaryData *d = &input->payloads[0]->data;
    cJSON *o = cJSON_ParseWithLength((const char *)d->data, d->len);
    const char *sha = o ? jstr(o, "sha") : NULL, *name = o ? jstr(o, "name") : NULL;
    const char *version = o ? jstr(o, "version") : NULL;
    const cJSON *mods = o ? cJSON_GetObjectItemCaseSensitive(o, "modules") : NULL;
    if (!version) version = sha; /* a request queued by a jorch from before bundles */
    if (!sha || !name || strlen(sha) != 64 || strlen(version) != 64 || !cJSON_IsArray(mods)) {
        cJSON_Delete(o);
        fprintf(stderr, "jorch: an upgrade request for run %s is malformed: dropped\n", run_id);
        return 0;
    }
    vbundle b = {.s = s, .from_list = true};
    const cJSON *m;
    int rc = 0;
    cJSON_ArrayForEach(m, mods) {
        const char *mn = jstr(m, "name"), *mc = jstr(m, "chunkname"), *ms = jstr(m, "sha");
        if (!mn || !mc || !ms || (rc = bundle_add(&b, mn, mc, ms, err)) != 0) break;
    }
    store_run r;
    char *src = NULL;
    size_t len = 0;
    int64_t checked = 0;
    jerr why = {0};
    if (rc != 0 || store_run_find(s, run_id, &r, err) != 0) {
        bundle_free(&b);
        cJSON_Delete(o);
        return -1;
    }
    if (store_script(s, sha, NULL, &src, &len, &why) != 0) {
        /* pruned between the check and now: the request is void, the run unharmed */
        fprintf(stderr, "jorch: the upgrade of run %s to version %.12s was not applied: %s\n", run_id, sha, why.msg);
        bundle_free(&b);
        cJSON_Delete(o);
        return 0;
    }
    /* checked again here, inside the transaction that re-pins: events
     * committed since the upgrading process checked are covered too */
    if (replay_run(s, &r, name, src, len, &b, &checked, &why) != 0) {
        fprintf(stderr, "jorch: the upgrade of run %s to version %.12s was not applied: %s\n", run_id, sha, why.msg);
        free(src);
        bundle_free(&b);
        cJSON_Delete(o);
        return 0;
    }
    free(src);
    rc = exec_bound(s, "UPDATE runs SET script_sha=?, script_name=?, version_sha=? WHERE run_id=?", sha, name, version,
                    run_id, err);
    if (rc == 0) rc = store_version_record(s, version, sha, name, (size_t)cJSON_GetArraySize(mods), err);
    if (rc == 0) rc = exec_bound(s, "DELETE FROM run_modules WHERE run_id=?", run_id, NULL, NULL, NULL, err);
    for (size_t i = 0; rc == 0 && i < b.n; i++)
        rc = exec_bound(s, "INSERT INTO run_modules(run_id,name,chunkname,sha) VALUES(?,?,?,?)", run_id, b.m[i].name,
                        b.m[i].chunkname, b.m[i].sha, err);
    bundle_free(&b);
    cJSON_Delete(o);
    if (rc != 0) return -1;
    /* the record in history: what any replayer needs to know which version applies from here */
    HistoryEvent *e = store_event_new(ET(WORKFLOW_EXECUTION_SIGNALED));
    Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *a = malloc(sizeof *a);
    if (!e || !a) {
        free(a);
        if (e) protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "recording an upgrade");
    }
    temporal__api__history__v1__workflow_execution_signaled_event_attributes__init(a);
    e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_SIGNALED);
    e->workflow_execution_signaled_event_attributes = a;
    a->signal_name = jstrdup(ENGINE_UPGRADE_SIGNAL);
    a->identity = jstrdup("jorch-upgrade");
    a->input = payloads_copy(input);
    if (!a->signal_name || !a->identity || !a->input) {
        protobuf_c_message_free_unpacked(&e->base, NULL);
        return jerr_oom(err, "recording an upgrade");
    }
    if (store_append(s, run_id, e, err) < 0) return -1;
    return 1;
}

/* ------------------------------------------------------------ upgrade */

static int queue_request(store *s, const char *run_id, const char *json, jerr *err) {
    Payloads *ps = payloads_new();
    Payload *p = payload_new_json(json, strlen(json));
    if (!ps || !p || payloads_add(ps, p) != 0) {
        if (p && (!ps || ps->n_payloads == 0)) protobuf_c_message_free_unpacked(&p->base, NULL);
        if (ps) protobuf_c_message_free_unpacked(&ps->base, NULL);
        return jerr_oom(err, "queueing an upgrade");
    }
    size_t len = protobuf_c_message_get_packed_size(&ps->base);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        protobuf_c_message_free_unpacked(&ps->base, NULL);
        return jerr_oom(err, "queueing an upgrade");
    }
    protobuf_c_message_pack(&ps->base, buf);
    protobuf_c_message_free_unpacked(&ps->base, NULL);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO inbox(run_id,kind,name,input) VALUES(?,?,?,?)", -1, &q, NULL) !=
        SQLITE_OK) {
        free(buf);
        return store_db_error(s, "queueing an upgrade", err);
    }
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, INBOX_SIGNAL);
    sqlite3_bind_text(q, 3, ENGINE_UPGRADE_SIGNAL, -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 4, buf, (int)len, free);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : store_db_error(s, "queueing an upgrade", err);
    sqlite3_finalize(q);
    return rc;
}

static int inbox_pending(store *s, const char *run_id) {
    sqlite3_stmt *q = NULL;
    int n = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT COUNT(*) FROM inbox WHERE run_id=? AND name=?", -1, &q, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, ENGINE_UPGRADE_SIGNAL, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return n;
}

/* Was an upgrade to version sha recorded after event `after`? */
static bool recorded_after(store *s, const char *run_id, int64_t after, const char *sha) {
    HistoryEvent **ev = NULL;
    size_t n = 0;
    bool found = false;
    if (store_history(s, run_id, after, &ev, &n, NULL) != 0) return false;
    for (size_t i = 0; i < n && !found; i++) {
        const Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *a =
            ev[i]->workflow_execution_signaled_event_attributes;
        if (ev[i]->event_type != ET(WORKFLOW_EXECUTION_SIGNALED) || !a || !a->signal_name ||
            strcmp(a->signal_name, ENGINE_UPGRADE_SIGNAL) != 0 || !a->input || a->input->n_payloads < 1)
            continue;
        const ProtobufCBinaryData *d = &a->input->payloads[0]->data;
        cJSON *o = cJSON_ParseWithLength((const char *)d->data, d->len);
        const char *v = o ? jstr(o, "version") : NULL;
        if (!v && o) v = jstr(o, "sha");
        found = v && strcmp(v, sha) == 0;
        cJSON_Delete(o);
    }
    store_events_free(ev, n);
    return found;
}

/* Checks and (unless dry_run or unchanged) queues the request; 0 or -1. */
static int upgrade_check_queue(store *s, const store_run *rp, const store_upgrade_opts *o, store_upgrade_result *res,
                               jerr *err) {
    const store_run r = *rp;
    snprintf(res->run_id, sizeof res->run_id, "%s", r.run_id);
    snprintf(res->old_sha, sizeof res->old_sha, "%s", r.version_sha);
    store_version_label(o->script_src, o->script_len, res->label, sizeof res->label);
    char dir[1024];
    dir_of(o->script_path, dir, sizeof dir);
    /* the new version: the script and the modules it requires, as the files are now */
    engine_bundle mem;
    if (engine_bundle_collect(dir, o->script_src, o->script_len, &mem, err) != 0) return -1;
    snprintf(res->new_sha, sizeof res->new_sha, "%s", mem.digest);
    vbundle b = {.s = s, .dir = dir, .mem = &mem, .save = !o->dry_run};
    int64_t checked = 0;
    /* the sources go in first (they are content-addressed: harmless if the
     * upgrade is refused, and `jorch scripts --prune` drops them) */
    int rc = 0;
    if (!o->dry_run) {
        rc = save_blob(s, mem.script_sha, o->script_path, o->script_src, o->script_len, err);
        for (size_t i = 0; rc == 0 && i < mem.n; i++) {
            rc = save_blob(s, mem.m[i].sha, mem.m[i].chunkname, mem.m[i].src, mem.m[i].len, err);
            if (rc == 0) rc = bundle_add(&b, mem.m[i].name, mem.m[i].chunkname, mem.m[i].sha, err);
        }
    }
    if (rc != 0) {
        bundle_free(&b);
        engine_bundle_free(&mem);
        return -1;
    }
    if (replay_run(s, &r, o->script_path, o->script_src, o->script_len, &b, &checked, err) != 0) {
        bundle_free(&b);
        engine_bundle_free(&mem);
        err->code = JERR_FAILED;
        return -1;
    }
    res->checked_events = checked;
    res->n_modules = mem.n;
    if (same_version(s, &r, res->new_sha, &b)) {
        res->unchanged = true;
        bundle_free(&b);
        engine_bundle_free(&mem);
        return 0;
    }
    if (o->dry_run) {
        bundle_free(&b);
        engine_bundle_free(&mem);
        return 0;
    }
    char *json = request_json(mem.script_sha, res->new_sha, o->script_path, res->label, &b, checked);
    bundle_free(&b);
    engine_bundle_free(&mem);
    if (!json) return jerr_oom(err, "queueing an upgrade");
    rc = queue_request(s, r.run_id, json, err);
    cJSON_free(json);
    res->checked_events = checked;
    return rc;
}

int store_upgrade_queue(store *s, const store_run *r, const store_upgrade_opts *o, store_upgrade_result *res,
                        jerr *err) {
    memset(res, 0, sizeof *res);
    return upgrade_check_queue(s, r, o, res, err);
}

int store_upgrade(store *s, const char *id, const store_upgrade_opts *o, store_upgrade_result *res, jerr *err) {
    memset(res, 0, sizeof *res);
    store_run r;
    if (store_run_find(s, id, &r, err) != 0) return -1;
    if (r.status != RUN_RUNNING)
        return jerr_set(err, JERR_USAGE, "workflow '%s' is not running (status %s): only open runs can be upgraded",
                        id, store_status_name(r.status));
    if (upgrade_check_queue(s, &r, o, res, err) != 0) return -1;
    if (res->unchanged || o->dry_run) return 0;
    int64_t checked = res->checked_events;
    /* applied by the service at once (told through its socket), here when
     * no process executes the run, else by that process within a fraction
     * of a second */
    const char *mode = getenv("JORCH_SERVICE");
    if ((mode && strcmp(mode, "off") == 0) || store_service_poke(s->home, r.run_id) != 0)
        store_apply_if_idle(s, r.run_id);
    for (int i = 0; i < 400 && inbox_pending(s, r.run_id) > 0; i++) {
        struct timespec ts = {0, 25 * 1000000};
        nanosleep(&ts, NULL);
    }
    if (inbox_pending(s, r.run_id) > 0) {
        res->queued = true;
        return 0;
    }
    if (!recorded_after(s, r.run_id, checked, res->new_sha))
        return jerr_set(err, JERR_FAILED,
                        "the run moved on while it was checked, and the new version does not replay the events it "
                        "added (see the executing process's log); nothing changed: run 'jorch upgrade %s' again",
                        id);
    return 0;
}

/* ------------------------------------------------------------ listing */

int store_versions_list(store *s, store_version_info **out, size_t *n, jerr *err) {
    *out = NULL;
    *n = 0;
    /* versions = bundles some run was started or upgraded with */
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT v.sha, v.name, sc.source, v.modules,"
                           " (SELECT COUNT(*) FROM runs r WHERE r.version_sha=v.sha AND r.status=1),"
                           " (SELECT COUNT(*) FROM runs r WHERE r.version_sha=v.sha),"
                           " (SELECT group_concat(workflow_id, ' ') FROM (SELECT workflow_id FROM runs r"
                           "   WHERE r.version_sha=v.sha AND r.status=1 ORDER BY seq LIMIT 20))"
                           " FROM versions v LEFT JOIN scripts sc ON sc.sha=v.script_sha ORDER BY v.name, v.sha",
                           -1, &q, NULL) != SQLITE_OK)
        return store_db_error(s, "listing script versions", err);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16, bytes;
            store_version_info *p = size_mul(nc, sizeof *p, &bytes) ? realloc(*out, bytes) : NULL;
            if (!p) {
                sqlite3_finalize(q);
                return jerr_oom(err, "listing script versions");
            }
            *out = p;
            cap = nc;
        }
        store_version_info *v = &(*out)[(*n)++];
        memset(v, 0, sizeof *v);
        snprintf(v->sha, sizeof v->sha, "%s", (const char *)sqlite3_column_text(q, 0));
        const char *name = (const char *)sqlite3_column_text(q, 1);
        snprintf(v->name, sizeof v->name, "%s", name ? name : "");
        const char *src = sqlite3_column_blob(q, 2);
        if (src) store_version_label(src, (size_t)sqlite3_column_bytes(q, 2), v->label, sizeof v->label);
        v->modules = sqlite3_column_int(q, 3);
        v->open_runs = sqlite3_column_int(q, 4);
        v->all_runs = sqlite3_column_int(q, 5);
        const char *ids = (const char *)sqlite3_column_text(q, 6);
        snprintf(v->open_ids, sizeof v->open_ids, "%s", ids ? ids : "");
    }
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? 0 : store_db_error(s, "listing script versions", err);
}

int store_versions_prune(store *s, size_t *versions, size_t *blobs, jerr *err) {
    *versions = *blobs = 0;
    if (store_begin(s, err) != 0) return -1;
    /* what an open run needs: its version, its script and its pinned
     * modules; a request still queued for an open run names a version that
     * no row references yet, so nothing is pruned while one is queued */
    const char *sql_versions =
        "DELETE FROM versions WHERE sha NOT IN (SELECT COALESCE(version_sha, script_sha) FROM runs WHERE status=1)"
        " AND NOT EXISTS (SELECT 1 FROM inbox WHERE name='" ENGINE_UPGRADE_SIGNAL "')";
    const char *sql_blobs =
        "DELETE FROM scripts WHERE sha NOT IN (SELECT script_sha FROM runs WHERE status=1)"
        " AND sha NOT IN (SELECT m.sha FROM run_modules m JOIN runs r ON r.run_id=m.run_id WHERE r.status=1)"
        " AND NOT EXISTS (SELECT 1 FROM inbox WHERE name='" ENGINE_UPGRADE_SIGNAL "')";
    if (store_exec(s, sql_versions, err) != 0) {
        store_rollback(s);
        return -1;
    }
    *versions = (size_t)sqlite3_changes(s->db);
    if (store_exec(s, sql_blobs, err) != 0) {
        store_rollback(s);
        return -1;
    }
    *blobs = (size_t)sqlite3_changes(s->db);
    if (store_exec(s, "DELETE FROM run_modules WHERE run_id IN (SELECT run_id FROM runs WHERE status<>1)", err) != 0) {
        store_rollback(s);
        return -1;
    }
    return store_commit(s, err);
}

static int memo_add(Temporal__Api__Common__V1__Memo *memo, const char *key, const char *value) {
    Temporal__Api__Common__V1__Memo__FieldsEntry **grown =
        realloc(memo->fields, (memo->n_fields + 1) * sizeof *memo->fields);
    if (!grown) return -1;
    memo->fields = grown;
    Temporal__Api__Common__V1__Memo__FieldsEntry *e = malloc(sizeof *e);
    if (!e) return -1;
    temporal__api__common__v1__memo__fields_entry__init(e);
    cJSON *str = cJSON_CreateString(value);
    char *json = str ? cJSON_PrintUnformatted(str) : NULL;
    cJSON_Delete(str);
    e->key = jstrdup(key);
    e->value = json ? payload_new_json(json, strlen(json)) : NULL;
    cJSON_free(json);
    if (!e->key || !e->value) {
        protobuf_c_message_free_unpacked(&e->base, NULL);
        return -1;
    }
    memo->fields[memo->n_fields++] = e;
    return 0;
}

static int note_get(store *s, const char *run_id, char *out, size_t outlen);

void store_version_memo(store *s, const store_run *r, Temporal__Api__Common__V1__Memo *memo) {
    if (!memo) return;
    char *src = NULL;
    size_t len = 0;
    char label[64];
    if (store_script(s, r->script_sha, NULL, &src, &len, NULL) != 0) return;
    store_version_label(src, len, label, sizeof label);
    bool follows = engine_script_auto_upgrade(src, len);
    free(src);
    if (label[0]) memo_add(memo, "jorch.script_version", label);
    /* the version's modules, for describe: "name (sha256 123456789abc), ..." */
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT name, sha FROM run_modules WHERE run_id=? ORDER BY name", -1, &q, NULL) ==
        SQLITE_OK) {
        jbuf b;
        jbuf_init(&b, 64u << 10);
        sqlite3_bind_text(q, 1, r->run_id, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(q) == SQLITE_ROW) {
            char one[300];
            snprintf(one, sizeof one, "%s%.200s (sha256 %.12s)", b.len ? ", " : "",
                     (const char *)sqlite3_column_text(q, 0), (const char *)sqlite3_column_text(q, 1));
            jbuf_puts(&b, one);
        }
        sqlite3_finalize(q);
        if (b.len && b.data) memo_add(memo, "jorch.version_modules", b.data);
        jbuf_free(&b);
    }
    if (follows) {
        char note[1024];
        if (note_get(s, r->run_id, note, sizeof note) != 0 || !note[0])
            snprintf(note, sizeof note, "follows the newest version of its script (checked at each workflow task)");
        memo_add(memo, "jorch.auto_upgrade", note);
    }
}

bool store_version_changed(HistoryEvent *const *ev, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *a =
            ev[i]->workflow_execution_signaled_event_attributes;
        if (ev[i]->event_type == ET(WORKFLOW_EXECUTION_SIGNALED) && a && a->signal_name &&
            strcmp(a->signal_name, ENGINE_UPGRADE_SIGNAL) == 0)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------ auto_upgrade */

/* Why an auto_upgrade run stays where it is: kept in meta (no schema change). */
static int note_get(store *s, const char *run_id, char *out, size_t outlen) {
    out[0] = '\0';
    sqlite3_stmt *q = NULL;
    char key[80];
    snprintf(key, sizeof key, "auto_upgrade:%s", run_id);
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key=?", -1, &q, NULL) != SQLITE_OK) return -1;
    sqlite3_bind_text(q, 1, key, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW) snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    return 0;
}

static void note_set(store *s, const char *run_id, const char *text) {
    sqlite3_stmt *q = NULL;
    char key[80];
    snprintf(key, sizeof key, "auto_upgrade:%s", run_id);
    if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO meta(key,value) VALUES(?,?)", -1, &q, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(q, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, text, -1, SQLITE_TRANSIENT);
    sqlite3_step(q);
    sqlite3_finalize(q);
}

int store_version_auto(store *s, const char *run_id, char *said, size_t saidlen, jerr *err) {
    if (saidlen) said[0] = '\0';
    store_run r;
    if (store_run_find(s, run_id, &r, err) != 0) return -1;
    char *old = NULL;
    size_t old_len = 0;
    if (store_script(s, r.script_sha, NULL, &old, &old_len, err) != 0) return -1;
    bool follows = engine_script_auto_upgrade(old, old_len);
    free(old);
    if (!follows) return 0;
    char *src = NULL;
    size_t len = 0;
    jerr rerr = {0};
    char note[1024];
    if (file_read_all(r.script_name, 16u << 20, &src, &len, &rerr) != 0) {
        snprintf(note, sizeof note, "stays on %.12s: cannot read %s to look for a newer version", r.version_sha,
                 r.script_name);
        note_set(s, run_id, note);
        return 0;
    }
    /* the newest version: the file and the modules it requires, as they are now */
    char dir[1024];
    dir_of(r.script_name, dir, sizeof dir);
    engine_bundle now;
    if (engine_bundle_collect(dir, src, len, &now, &rerr) != 0) {
        snprintf(note, sizeof note, "stays on %.12s: cannot read the newest version of %s: %s", r.version_sha,
                 r.script_name, rerr.msg);
        note_set(s, run_id, note);
        free(src);
        return 0;
    }
    char sha[65];
    memcpy(sha, now.digest, sizeof sha);
    engine_bundle_free(&now);
    char prev[1024];
    note_get(s, run_id, prev, sizeof prev);
    /* unchanged, or this very version was already refused: nothing to check */
    if (strcmp(sha, r.version_sha) == 0 || strstr(prev, sha)) {
        free(src);
        return 0;
    }
    store_upgrade_opts o = {.script_path = r.script_name, .script_src = src, .script_len = len};
    store_upgrade_result res;
    jerr uerr = {0};
    int rc = store_upgrade_queue(s, &r, &o, &res, &uerr);
    free(src);
    if (rc != 0) {
        snprintf(note, sizeof note, "stays on %.12s: version %s does not replay its history: %s", r.version_sha, sha,
                 uerr.msg);
        note_set(s, run_id, note);
        snprintf(said, saidlen, "auto_upgrade: %s", note);
        return 0;
    }
    snprintf(note, sizeof note, "follows the newest version of its script; moved from %.12s to %.12s",
             r.version_sha, sha);
    note_set(s, run_id, note);
    snprintf(said, saidlen, "auto_upgrade: moving from %.12s to %.12s (its history replays)", r.version_sha, sha);
    return 1;
}
