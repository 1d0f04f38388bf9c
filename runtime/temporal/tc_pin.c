/*
 * tc_pin.c - script versions on Temporal.
 *
 * A version is a bundle: the workflow script and the workflow modules it
 * requires (engine_bundle_collect), named by one SHA-256 over them. It
 * travels in the run's own history, sources included, because nothing else
 * is shared by every worker:
 *
 *  - `jorch start --temporal SCRIPT.lua` puts it in the start memo;
 *  - `jorch upgrade --temporal` sends it in a __jorch_upgrade signal (valid
 *    only right after the history it checked);
 *  - `jorch worker` records it itself, with a ModifyWorkflowProperties
 *    command that upserts the same memo keys (ENGINE_VERSION_MEMO_PREFIX),
 *    for a run that has none (started by another client: pinned to the
 *    worker's version at its first completed task), for a run that moved
 *    by auto_upgrade, and after an upgrade signal (so the memo, which
 *    describe shows, names the version the run executes).
 *
 * The last record in history wins; every record is checked against its
 * SHA-256s before use. A worker thus replays a run on its version whatever
 * its own workflows directory holds.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "temporal/temporal.h"
typedef Temporal__Api__History__V1__HistoryEvent HEvent;
typedef Temporal__Api__Common__V1__Memo Memo;
#define TET(x) TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_##x

/* ------------------------------------------------------------ versions */

struct tc_pin_version {
    char *name;  /* the script's path where it was read */
    char *src;
    size_t len;
    char label[64];
    engine_bundle b; /* b.script_sha, b.digest (the version), the modules with sources */
    int refs;        /* holders of a version handed out (version_intern), under shared_mu */
};

static void version_free(tc_pin_version *v) {
    free(v->name);
    free(v->src);
    engine_bundle_free(&v->b);
    memset(v, 0, sizeof *v);
}

static void version_move(tc_pin_version *dst, tc_pin_version *src) {
    version_free(dst);
    *dst = *src;
    memset(src, 0, sizeof *src);
}

/* The versions handed out to callers (tc_pin_task_run), one per version:
 * a worker caching 1,000 runs of orchestrate.lua would otherwise hold
 * 1,000 copies of its source. Never changed once handed out. */
#define SHARED_VERSIONS 64
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static tc_pin_version *shared[SHARED_VERSIONS];

static bool same_version(const tc_pin_version *a, const tc_pin_version *b) {
    return strcmp(a->b.digest, b->b.digest) == 0 && strcmp(a->name ? a->name : "", b->name ? b->name : "") == 0 &&
           strcmp(a->label, b->label) == 0;
}

/* v (heap, one holder) or the same version already handed out (then v is
 * freed). A version not in the table (it is full) is simply not shared. */
static tc_pin_version *version_intern(tc_pin_version *v) {
    pthread_mutex_lock(&shared_mu);
    tc_pin_version *hit = NULL;
    size_t free_at = SHARED_VERSIONS;
    for (size_t i = 0; i < SHARED_VERSIONS && hit == NULL; i++) {
        if (shared[i] == NULL) {
            if (free_at == SHARED_VERSIONS) free_at = i;
        } else if (same_version(shared[i], v)) {
            hit = shared[i];
        }
    }
    if (hit != NULL) {
        hit->refs++;
    } else {
        v->refs = 1;
        if (free_at < SHARED_VERSIONS) shared[free_at] = v;
    }
    pthread_mutex_unlock(&shared_mu);
    if (hit == NULL) return v;
    version_free(v);
    free(v);
    return hit;
}

static void dir_of(const char *path, char *out, size_t outlen) {
    snprintf(out, outlen, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == out) snprintf(out, outlen, "/");
    else if (slash) *slash = '\0';
    else snprintf(out, outlen, ".");
}

/* Reads a script and the modules it requires from files. */
static int version_read(const char *path, tc_pin_version *v, jerr *err) {
    memset(v, 0, sizeof *v);
    if (file_read_all(path, 16u << 20, &v->src, &v->len, err) != 0) {
        jerr_prefix(err, "cannot load workflow script");
        err->code = JERR_USAGE;
        return -1;
    }
    if (memchr(v->src, '\0', v->len)) {
        version_free(v);
        return jerr_set(err, JERR_USAGE, "script %s contains a NUL byte", path);
    }
    char dir[1024];
    dir_of(path, dir, sizeof dir);
    v->name = jstrdup(path);
    if (!v->name) {
        version_free(v);
        return jerr_oom(err, "reading a script version");
    }
    if (engine_bundle_collect(dir, v->src, v->len, &v->b, err) != 0) {
        version_free(v);
        return -1;
    }
    for (size_t i = 0; i < v->b.n; i++)
        if (text_check_utf8("module source", v->b.m[i].src, err) != 0 || memchr(v->b.m[i].src, '\0', v->b.m[i].len)) {
            jerr_set(err, JERR_USAGE, "module %s is not UTF-8 text: a script version travels in the run's history "
                     "as JSON", v->b.m[i].chunkname);
            version_free(v);
            return -1;
        }
    engine_script_label(v->src, v->len, v->label, sizeof v->label);
    return 0;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

/* A record {name, sha, version, label, source, modules: [{name, chunkname,
 * sha, source}]}: 1 with v filled, 0 when o holds no version (no source),
 * -1 when its SHA-256s do not match what it carries. */
static int version_from_json(const cJSON *o, tc_pin_version *v, jerr *err) {
    memset(v, 0, sizeof *v);
    const char *src = jstr(o, "source"), *sha = jstr(o, "sha");
    if (!src || !sha) return 0;
    const char *name = jstr(o, "name"), *version = jstr(o, "version"), *label = jstr(o, "label");
    v->src = jstrdup(src);
    v->name = jstrdup(name ? name : "pinned.lua");
    if (!v->src || !v->name) {
        version_free(v);
        return jerr_oom(err, "reading a script version");
    }
    v->len = strlen(v->src);
    snprintf(v->label, sizeof v->label, "%s", label ? label : "");
    sha256_hex(v->src, v->len, v->b.script_sha);
    if (strcmp(v->b.script_sha, sha) != 0) {
        jerr_set(err, JERR_FAILED, "the script version recorded in this run's history (sha256 %.12s) does not match "
                 "its source (sha256 %.12s): the record was altered; terminate the run", sha, v->b.script_sha);
        version_free(v);
        return -1;
    }
    const cJSON *mods = cJSON_GetObjectItemCaseSensitive(o, "modules"), *m;
    if (!cJSON_IsArray(mods)) mods = NULL;
    cJSON_ArrayForEach(m, mods) {
        const char *mn = jstr(m, "name"), *mc = jstr(m, "chunkname"), *ms = jstr(m, "sha"), *msrc = jstr(m, "source");
        if (!mn || !ms || !msrc) continue; /* a record without sources names, cannot provide */
        if (engine_bundle_add(&v->b, mn, mc ? mc : mn, msrc, strlen(msrc), err) != 0) {
            version_free(v);
            return -1;
        }
        for (size_t i = 0; i < v->b.n; i++) {
            if (strcmp(v->b.m[i].name, mn) != 0 || strcmp(v->b.m[i].sha, ms) == 0) continue;
            jerr_set(err, JERR_FAILED, "module '%s' recorded in this run's history (sha256 %.12s) does not match its "
                     "source: the record was altered; terminate the run", mn, ms);
            version_free(v);
            return -1;
        }
    }
    if (engine_bundle_digest(&v->b, err) != 0) {
        version_free(v);
        return -1;
    }
    if (version && strcmp(version, v->b.digest) != 0) {
        jerr_set(err, JERR_FAILED, "the script version recorded in this run's history (%.12s) is not the digest of "
                 "the script and modules it carries (%.12s): the record was altered; terminate the run", version,
                 v->b.digest);
        version_free(v);
        return -1;
    }
    return 1;
}

/* The record's JSON object (for a signal); with_sources adds the sources. */
static cJSON *version_json(const tc_pin_version *v) {
    cJSON *o = cJSON_CreateObject(), *mods = cJSON_CreateArray();
    if (!o || !mods) {
        cJSON_Delete(o);
        cJSON_Delete(mods);
        return NULL;
    }
    cJSON_AddStringToObject(o, "sha", v->b.script_sha);
    cJSON_AddStringToObject(o, "version", v->b.digest);
    cJSON_AddStringToObject(o, "name", v->name);
    cJSON_AddStringToObject(o, "label", v->label);
    cJSON_AddStringToObject(o, "source", v->src);
    for (size_t i = 0; i < v->b.n; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m) continue;
        cJSON_AddStringToObject(m, "name", v->b.m[i].name);
        cJSON_AddStringToObject(m, "chunkname", v->b.m[i].chunkname);
        cJSON_AddStringToObject(m, "sha", v->b.m[i].sha);
        cJSON_AddStringToObject(m, "source", v->b.m[i].src);
        cJSON_AddItemToArray(mods, m);
    }
    cJSON_AddItemToObject(o, "modules", mods);
    return o;
}

/* ------------------------------------------------------------ memo */

static Memo *memo_new(void) {
    Memo *m = malloc(sizeof *m);
    if (!m) return NULL;
    temporal__api__common__v1__memo__init(m);
    m->fields = calloc(10, sizeof *m->fields); /* at most memo_put_version's 8 + a note */
    if (!m->fields) {
        free(m);
        return NULL;
    }
    return m;
}

static void memo_free(Memo *m) {
    if (m) protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* A field whose payload is the JSON value v (taken). */
static int memo_put(Memo *m, const char *key, cJSON *v) {
    char *json = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(v);
    if (!json || m->n_fields >= 10) {
        cJSON_free(json);
        return -1;
    }
    Temporal__Api__Common__V1__Memo__FieldsEntry *e = malloc(sizeof *e);
    if (!e) {
        cJSON_free(json);
        return -1;
    }
    temporal__api__common__v1__memo__fields_entry__init(e);
    e->key = jstrdup(key);
    e->value = payload_new_json(json, strlen(json));
    cJSON_free(json);
    m->fields[m->n_fields++] = e;
    return e->key && e->value ? 0 : -1;
}

static int memo_put_string(Memo *m, const char *key, const char *value) {
    return memo_put(m, key, cJSON_CreateString(value));
}

/* The version's memo keys (the same at start and in a worker's record). */
static int memo_put_version(Memo *m, const tc_pin_version *v) {
    jbuf mods;
    jbuf_init(&mods, 64u << 10);
    for (size_t i = 0; i < v->b.n; i++) {
        char one[300];
        snprintf(one, sizeof one, "%s%.200s (sha256 %.12s)", i ? ", " : "", v->b.m[i].name, v->b.m[i].sha);
        jbuf_puts(&mods, one);
    }
    cJSON *o = version_json(v);
    cJSON *arr = o ? cJSON_DetachItemFromObject(o, "modules") : NULL;
    cJSON_Delete(o);
    int rc = (memo_put_string(m, "jorch.script", v->name) | memo_put_string(m, "jorch.script_sha256", v->b.script_sha) |
              memo_put_string(m, "jorch.version_sha256", v->b.digest) |
              memo_put_string(m, "jorch.script_version", v->label) | memo_put_string(m, "jorch.script_source", v->src) |
              memo_put(m, "jorch.modules", arr ? arr : cJSON_CreateArray()) |
              memo_put_string(m, "jorch.version_modules", mods.data ? mods.data : ""));
    jbuf_free(&mods);
    return rc ? -1 : 0;
}

Temporal__Api__Common__V1__Memo *tc_pin_memo(const char *path, jerr *err) {
    tc_pin_version v;
    if (version_read(path, &v, err) != 0) return NULL;
    Memo *m = memo_new();
    if (!m || memo_put_version(m, &v) != 0) {
        memo_free(m);
        version_free(&v);
        jerr_oom(err, "recording the script version");
        return NULL;
    }
    version_free(&v);
    return m;
}

/* The memo as one JSON object with the record's keys (version_from_json). */
static cJSON *memo_record(const Memo *m) {
    static const char *const keys[][2] = {
        {"jorch.script", "name"},          {"jorch.script_sha256", "sha"}, {"jorch.version_sha256", "version"},
        {"jorch.script_version", "label"}, {"jorch.script_source", "source"}, {"jorch.modules", "modules"},
        {"jorch.auto_upgrade", "note"},
    };
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && m && i < m->n_fields; i++) {
        const Temporal__Api__Common__V1__Memo__FieldsEntry *f = m->fields[i];
        if (!f->key || !f->value) continue;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            if (strcmp(f->key, keys[k][0]) != 0) continue;
            cJSON *v = cJSON_ParseWithLength((const char *)f->value->data.data, f->value->data.len);
            if (v) cJSON_AddItemToObject(o, keys[k][1], v);
        }
    }
    return o;
}

/* ------------------------------------------------------------ history */

typedef struct pin_history {
    tc_pin_version cur;    /* the version the run executes (valid when have) */
    bool have;
    char memo_digest[65]; /* the version the memo names now (start memo + the worker's records) */
    char note[1024];      /* the memo's last auto_upgrade note */
    char seen[16][65];    /* versions the run had (the last 16) */
    size_t n_seen;
} pin_history;

static void seen_add(pin_history *ph, const char *digest) {
    if (ph->n_seen == 16) {
        memmove(ph->seen[0], ph->seen[1], 15 * sizeof ph->seen[0]);
        ph->n_seen--;
    }
    snprintf(ph->seen[ph->n_seen++], 65, "%s", digest);
}

static bool seen_has(const pin_history *ph, const char *digest) {
    for (size_t i = 0; i < ph->n_seen; i++)
        if (strcmp(ph->seen[i], digest) == 0) return true;
    return false;
}

/* Applies one record: 0 none in it, 1 taken, -1 altered. */
static int take_record(pin_history *ph, const cJSON *o, bool in_memo, jerr *err) {
    const char *note = jstr(o, "note");
    if (in_memo && note) snprintf(ph->note, sizeof ph->note, "%s", note);
    tc_pin_version v;
    int rc = version_from_json(o, &v, err);
    if (rc <= 0) return rc;
    version_move(&ph->cur, &v);
    ph->have = true;
    if (in_memo) memcpy(ph->memo_digest, ph->cur.b.digest, 65);
    seen_add(ph, ph->cur.b.digest);
    return 1;
}

/* An upgrade record checked against events 1..checked is valid at event i
 * when nothing but failed workflow task attempts came in between: those
 * change nothing the script sees (a failing run gets its signal only after
 * its current attempt ends, behind the attempt's events). */
static bool upgrade_valid_at(HEvent *const *ev, size_t i, int64_t checked) {
    if (ev[i]->event_id <= checked) return false;
    for (size_t k = i; k-- > 0 && ev[k]->event_id > checked;) {
        switch (ev[k]->event_type) {
        case TET(WORKFLOW_TASK_SCHEDULED):
        case TET(WORKFLOW_TASK_STARTED):
        case TET(WORKFLOW_TASK_FAILED):
        case TET(WORKFLOW_TASK_TIMED_OUT): break;
        default: return false;
        }
    }
    return true;
}

static bool is_upgrade_signal(const HEvent *e) {
    return e->event_type == TET(WORKFLOW_EXECUTION_SIGNALED) &&
           e->attributes_case ==
               TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_SIGNALED_EVENT_ATTRIBUTES &&
           e->workflow_execution_signaled_event_attributes->signal_name &&
           strcmp(e->workflow_execution_signaled_event_attributes->signal_name, ENGINE_UPGRADE_SIGNAL) == 0;
}

int64_t tc_pin_checked_through(const Temporal__Api__History__V1__History *h) {
    /* a workflow task at the end is not history the script has seen (and
     * the server may show it while it is transient, never to be recorded) */
    size_t n = h->n_events;
    while (n > 0 && (h->events[n - 1]->event_type == TET(WORKFLOW_TASK_SCHEDULED) ||
                     h->events[n - 1]->event_type == TET(WORKFLOW_TASK_STARTED)))
        n--;
    return n ? h->events[n - 1]->event_id : 0;
}

int tc_pin_upgrade_landed(const Temporal__Api__History__V1__History *h, int64_t checked) {
    for (size_t i = 0; i < h->n_events; i++)
        if (h->events[i]->event_id > checked && is_upgrade_signal(h->events[i]))
            return upgrade_valid_at(h->events, i, checked) ? 1 : -1;
    return 0;
}

static int scan_history(HEvent *const *ev, size_t n, pin_history *ph, jerr *err) {
    memset(ph, 0, sizeof *ph);
    for (size_t i = 0; i < n; i++) {
        const HEvent *e = ev[i];
        cJSON *o = NULL;
        bool in_memo = true;
        if (i == 0 && e->attributes_case ==
                          TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_STARTED_EVENT_ATTRIBUTES &&
            e->workflow_execution_started_event_attributes->memo) {
            o = memo_record(e->workflow_execution_started_event_attributes->memo);
        } else if (e->event_type == TET(WORKFLOW_PROPERTIES_MODIFIED) &&
                   e->attributes_case ==
                       TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_PROPERTIES_MODIFIED_EVENT_ATTRIBUTES &&
                   e->workflow_properties_modified_event_attributes->upserted_memo) {
            o = memo_record(e->workflow_properties_modified_event_attributes->upserted_memo);
        } else if (is_upgrade_signal(e)) {
            /* jorch upgrade: valid only right after the history it checked
             * (but for failed task attempts), so every worker decides alike
             * from history alone */
            const Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *a =
                e->workflow_execution_signaled_event_attributes;
            if (!a->input || a->input->n_payloads < 1) continue;
            const ProtobufCBinaryData *d = &a->input->payloads[0]->data;
            o = cJSON_ParseWithLength((const char *)d->data, d->len);
            const cJSON *checked = o ? cJSON_GetObjectItemCaseSensitive(o, "checkedThroughEvent") : NULL;
            if (!cJSON_IsNumber(checked) || !upgrade_valid_at(ev, i, (int64_t)checked->valuedouble)) {
                cJSON_Delete(o);
                continue;
            }
            in_memo = false;
        } else {
            continue;
        }
        int rc = o ? take_record(ph, o, in_memo, err) : 0;
        cJSON_Delete(o);
        if (rc < 0) {
            version_free(&ph->cur);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ worker */

void tc_pin_version_free(tc_pin_version *v) {
    if (!v) return;
    pthread_mutex_lock(&shared_mu);
    bool last = v->refs <= 1;
    if (!last) v->refs--;
    for (size_t i = 0; last && i < SHARED_VERSIONS; i++)
        if (shared[i] == v) shared[i] = NULL;
    pthread_mutex_unlock(&shared_mu);
    if (!last) return;
    version_free(v);
    free(v);
}

const char *tc_pin_version_digest(const tc_pin_version *v) { return v->b.digest; }

bool tc_pin_version_auto(const tc_pin_version *v) { return engine_script_auto_upgrade(v->src, v->len); }

int tc_pin_own_digest(const char *wf_dir, const char *type, char digest[65], jerr *err) {
    char path[4096];
    int pn = snprintf(path, sizeof path, "%s/%s.lua", wf_dir, type);
    if (pn < 0 || (size_t)pn >= sizeof path) return jerr_set(err, JERR_USAGE, "the script path is too long");
    tc_pin_version own;
    if (version_read(path, &own, err) != 0) return -1;
    memcpy(digest, own.b.digest, 65);
    version_free(&own);
    return 0;
}

/* Replays events on version v into a new t->run / t->out. Modules of v are
 * preloaded; one it does not hold (required by a computed name, or a record
 * from before bundles) comes from the worker's workflows directory. */
static int task_feed(tc_pin_task *t, const tc_pin_in *in, const tc_pin_version *v, HEvent **ev, size_t n,
                     jerr *err) {
    engine_run_config ec = {
        .script_name = v->name, .script_src = v->src, .script_len = v->len, .limits = engine_limits_default(),
        .finder = engine_find_module_in_dir, .finder_ud = (void *)in->wf_dir, .modules = &v->b,
        .namespace_ = in->namespace_, .workflow_id = in->workflow_id, .run_id = in->run_id,
        .log_fn = in->log_fn, .log_ud = in->log_ud,
    };
    memset(&t->out, 0, sizeof t->out);
    t->run = engine_run_new(&ec, err);
    if (!t->run) return -1;
    if (engine_run_feed(t->run, ev, n, &t->out, err) != 0) {
        t->nondeterminism = t->out.failure == ENGINE_NONDETERMINISM;
        engine_run_free(t->run);
        t->run = NULL;
        return -1;
    }
    return 0;
}

void tc_pin_task_free(tc_pin_task *t) {
    if (t->run && t->owns_run_) engine_run_free(t->run);
    if (t->record) protobuf_c_message_free_unpacked(&t->record->base, NULL);
    free(t->commands);
    tc_pin_version_free(t->version);
    memset(t, 0, sizeof *t);
}

static Temporal__Api__Command__V1__Command *record_command(const tc_pin_version *v, const char *note) {
    Memo *m = memo_new();
    if (!m || (v && memo_put_version(m, v) != 0) || (note && memo_put_string(m, "jorch.auto_upgrade", note) != 0)) {
        memo_free(m);
        return NULL;
    }
    Temporal__Api__Command__V1__ModifyWorkflowPropertiesCommandAttributes *a = malloc(sizeof *a);
    Temporal__Api__Command__V1__Command *c = malloc(sizeof *c);
    if (!a || !c) {
        free(a);
        free(c);
        memo_free(m);
        return NULL;
    }
    temporal__api__command__v1__modify_workflow_properties_command_attributes__init(a);
    temporal__api__command__v1__command__init(c);
    a->upserted_memo = m;
    c->command_type = TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_MODIFY_WORKFLOW_PROPERTIES;
    c->attributes_case = TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_MODIFY_WORKFLOW_PROPERTIES_COMMAND_ATTRIBUTES;
    c->modify_workflow_properties_command_attributes = a;
    return c;
}

/* The commands to send: the record (if any) first, a closing command must
 * stay last; a continue-as-new keeps the version (the new run starts with
 * it in its memo). */
static int task_commands(tc_pin_task *t, const tc_pin_version *v, jerr *err) {
    for (size_t i = 0; i < t->out.n_commands; i++) {
        Temporal__Api__Command__V1__Command *c = t->out.commands[i];
        if (c->attributes_case !=
                TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_CONTINUE_AS_NEW_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES ||
            c->continue_as_new_workflow_execution_command_attributes->memo)
            continue;
        Memo *m = memo_new(); /* freed with the command, by the engine */
        if (!m || memo_put_version(m, v) != 0) {
            memo_free(m);
            return jerr_oom(err, "recording the script version");
        }
        c->continue_as_new_workflow_execution_command_attributes->memo = m;
    }
    size_t nc = t->out.n_commands + (t->record ? 1 : 0);
    t->commands = calloc(nc ? nc : 1, sizeof *t->commands);
    if (!t->commands) return jerr_oom(err, "recording the script version");
    if (t->record) t->commands[t->n_commands++] = t->record;
    for (size_t i = 0; i < t->out.n_commands; i++) t->commands[t->n_commands++] = t->out.commands[i];
    return 0;
}

int tc_pin_task_run(const tc_pin_in *in, HEvent **ev, size_t n, tc_pin_task *t, jerr *err) {
    memset(t, 0, sizeof *t);
    t->owns_run_ = true;
    tc_pin_version *ver = calloc(1, sizeof *ver);
    t->version = ver;
    if (!ver) return jerr_oom(err, "preparing a workflow task");
    pin_history ph;
    if (scan_history(ev, n, &ph, err) != 0) return -1;
    /* the worker's own version: its workflows/T.lua and the modules it requires */
    char path[4096];
    int pn = snprintf(path, sizeof path, "%s/%s.lua", in->wf_dir, in->type);
    tc_pin_version own;
    memset(&own, 0, sizeof own);
    jerr own_err = {0};
    bool have_own = pn > 0 && (size_t)pn < sizeof path && version_read(path, &own, &own_err) == 0;
    if (pn < 0 || (size_t)pn >= sizeof path) jerr_set(&own_err, JERR_USAGE, "the script path is too long");
    bool record_version = false;
    if (!ph.have) {
        /* started without a version (another client): pinned now to the worker's */
        if (!have_own) {
            version_free(&ph.cur);
            return jerr_set(err, JERR_FAILED, "no script for workflow type '%.200s': %.900s (the worker serves "
                            "%.200s/<type>.lua; check --workflows)", in->type, own_err.msg, in->wf_dir);
        }
        version_move(ver, &own);
        record_version = true;
    } else if (in->require_known && (!have_own || strcmp(own.b.digest, ph.cur.b.digest) != 0)) {
        jerr_set(err, JERR_FAILED, "workflow '%.200s' runs script version %.12s (%.200s), which is not this worker's "
                 "%.300s (%s %.12s): with --require-known-scripts the worker runs only the scripts in its own "
                 "workflows directory; deploy that version to it, or serve the run with another worker",
                 in->workflow_id, ph.cur.b.digest, ph.cur.name, path, have_own ? "version" : "missing:",
                 have_own ? own.b.digest : own_err.msg);
        version_free(&ph.cur);
        version_free(&own);
        return -1;
    } else {
        version_move(ver, &ph.cur);
    }
    /* auto_upgrade: the worker's version, when new to this run, if the whole history replays on it */
    char note[1400] = "";
    if (in->completes && !record_version && have_own && engine_script_auto_upgrade(ver->src, ver->len) &&
        strcmp(own.b.digest, ver->b.digest) != 0 && !seen_has(&ph, own.b.digest) && !strstr(ph.note, own.b.digest)) {
        jerr cerr = {0};
        if (task_feed(t, in, &own, ev, n, &cerr) == 0) {
            snprintf(note, sizeof note, "follows the newest version of its script; moved from %.12s to %.12s",
                     ver->b.digest, own.b.digest);
            snprintf(t->said, sizeof t->said, "auto_upgrade: moved from %.12s to %.12s (%s): its history replays",
                     ver->b.digest, own.b.digest, path);
            version_move(ver, &own);
            record_version = true;
        } else {
            t->nondeterminism = false;
            snprintf(note, sizeof note, "stays on %.12s: version %s does not replay its history: %.1000s",
                     ver->b.digest, own.b.digest, cerr.msg);
            snprintf(t->said, sizeof t->said, "auto_upgrade: %s", note);
            memcpy(t->refused, own.b.digest, 65);
        }
    } else if (have_own && strstr(ph.note, own.b.digest)) {
        memcpy(t->refused, own.b.digest, 65);
    }
    version_free(&own);
    if (!t->run && task_feed(t, in, ver, ev, n, err) != 0) {
        version_free(&ph.cur);
        return -1;
    }
    /* the memo names the version the run executes (describe shows it) */
    if (strcmp(ph.memo_digest, ver->b.digest) != 0) record_version = true;
    version_free(&ph.cur);
    if (in->completes && (record_version || note[0])) {
        t->record = record_command(record_version ? ver : NULL, note[0] ? note : NULL);
        if (!t->record) return jerr_oom(err, "recording the script version");
    }
    t->version = version_intern(ver);
    return task_commands(t, t->version, err);
}

int tc_pin_task_continue(const tc_pin_in *in, engine_run *run, const tc_pin_version *v, HEvent **ev, size_t n,
                         tc_pin_task *t, jerr *err) {
    (void)in;
    memset(t, 0, sizeof *t);
    t->run = run; /* the caller's */
    if (engine_run_feed(run, ev, n, &t->out, err) != 0) {
        t->nondeterminism = t->out.failure == ENGINE_NONDETERMINISM;
        return -1;
    }
    return task_commands(t, v, err);
}

/* ------------------------------------------------------------ upgrade */

/* The history as the next worker sees it: a pending or failed workflow task
 * is added as started, so the check executes it too (a fix must get past
 * the task that failed). Returns the extended array (events borrowed, the
 * added ones in *added, freed by the caller). */
static HEvent **with_pending_task(HEvent *const *ev, size_t n, size_t *out_n, HEvent *added[2]) {
    added[0] = added[1] = NULL;
    *out_n = n;
    HEvent **all = malloc((n + 2) * sizeof *all);
    if (!all) return NULL;
    memcpy(all, ev, n * sizeof *all);
    if (n == 0) return all;
    int last = ev[n - 1]->event_type;
    int64_t id = ev[n - 1]->event_id;
    bool failed = last == TET(WORKFLOW_TASK_FAILED) || last == TET(WORKFLOW_TASK_TIMED_OUT);
    if (!failed && last != TET(WORKFLOW_TASK_SCHEDULED)) return all;
    int64_t scheduled = id;
    if (failed) {
        HEvent *s = malloc(sizeof *s);
        Temporal__Api__History__V1__WorkflowTaskScheduledEventAttributes *a = malloc(sizeof *a);
        if (!s || !a) {
            free(s);
            free(a);
            free(all);
            return NULL;
        }
        temporal__api__history__v1__history_event__init(s);
        temporal__api__history__v1__workflow_task_scheduled_event_attributes__init(a);
        s->event_id = ++id;
        s->event_type = TET(WORKFLOW_TASK_SCHEDULED);
        s->event_time = ev[n - 1]->event_time;
        s->attributes_case = TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_TASK_SCHEDULED_EVENT_ATTRIBUTES;
        s->workflow_task_scheduled_event_attributes = a;
        a->attempt = 2;
        added[0] = s;
        all[(*out_n)++] = s;
        scheduled = s->event_id;
    }
    HEvent *st = malloc(sizeof *st);
    Temporal__Api__History__V1__WorkflowTaskStartedEventAttributes *b = malloc(sizeof *b);
    if (!st || !b) {
        free(st);
        free(b);
        free(all);
        return NULL;
    }
    temporal__api__history__v1__history_event__init(st);
    temporal__api__history__v1__workflow_task_started_event_attributes__init(b);
    st->event_id = ++id;
    st->event_type = TET(WORKFLOW_TASK_STARTED);
    st->event_time = ev[n - 1]->event_time;
    st->attributes_case = TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_TASK_STARTED_EVENT_ATTRIBUTES;
    st->workflow_task_started_event_attributes = b;
    b->scheduled_event_id = scheduled;
    b->identity = (char *)"jorch-upgrade"; /* borrowed: added_free does not free it */
    added[1] = st;
    all[(*out_n)++] = st;
    return all;
}

/* Frees what with_pending_task added (its event times are borrowed). */
static void added_free(HEvent *added[2]) {
    if (added[0]) {
        free(added[0]->workflow_task_scheduled_event_attributes);
        free(added[0]);
    }
    if (added[1]) {
        free(added[1]->workflow_task_started_event_attributes);
        free(added[1]);
    }
}

int tc_pin_upgrade_check(const char *path, const char *workflow_id, const Temporal__Api__History__V1__History *h,
                         char **payload_json, jerr *err) {
    *payload_json = NULL;
    tc_pin_version v;
    if (version_read(path, &v, err) != 0) return -1;
    int64_t last = tc_pin_checked_through(h);
    bool pending = h->n_events && h->events[h->n_events - 1]->event_type == TET(WORKFLOW_TASK_STARTED);
    bool closing = false;
    if (h->n_events) {
        switch (h->events[h->n_events - 1]->event_type) {
        case TET(WORKFLOW_EXECUTION_COMPLETED):
        case TET(WORKFLOW_EXECUTION_FAILED):
        case TET(WORKFLOW_EXECUTION_TIMED_OUT):
        case TET(WORKFLOW_EXECUTION_CANCELED):
        case TET(WORKFLOW_EXECUTION_TERMINATED):
        case TET(WORKFLOW_EXECUTION_CONTINUED_AS_NEW): closing = true; break;
        default: break;
        }
    }
    if (closing) {
        version_free(&v);
        return jerr_set(err, JERR_USAGE, "workflow '%s' is closed: only open runs can be upgraded", workflow_id);
    }
    char dir[1024];
    dir_of(path, dir, sizeof dir);
    engine_run_config cfg = {
        .script_name = path, .script_src = v.src, .script_len = v.len, .limits = engine_limits_default(),
        .finder = engine_find_module_in_dir, .finder_ud = dir, .modules = &v.b, .workflow_id = workflow_id,
        .run_id = "upgrade-check",
    };
    engine_run *r = engine_run_new(&cfg, err);
    int rc = r ? 0 : -1;
    HEvent *added[2] = {NULL, NULL};
    size_t all_n = 0;
    HEvent **all = rc == 0 ? with_pending_task(h->events, h->n_events, &all_n, added) : NULL;
    if (rc == 0 && !all) rc = jerr_oom(err, "checking a version");
    if (rc == 0) {
        engine_output out;
        memset(&out, 0, sizeof out);
        rc = engine_run_feed(r, all, all_n, &out, err);
        if (rc != 0 && (added[1] || pending) && out.failure != ENGINE_NONDETERMINISM)
            jerr_prefix(err, "the new version fails the pending workflow task");
        if (rc == 0 && !out.has_task) rc = engine_run_check_end(r, &out, err);
        if (rc != 0) err->code = JERR_FAILED;
    }
    added_free(added);
    free(all);
    engine_run_free(r);
    if (rc != 0) {
        version_free(&v);
        return rc;
    }
    cJSON *o = version_json(&v);
    version_free(&v);
    if (o) cJSON_AddNumberToObject(o, "checkedThroughEvent", (double)last);
    *payload_json = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!*payload_json) return jerr_oom(err, "recording an upgrade");
    return 0;
}
