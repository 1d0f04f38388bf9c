/*
 * cli_pin.c - script versions on Temporal: `jorch start --temporal
 * SCRIPT.lua` records the script's version (name, SHA-256, label and the
 * source itself) in the run's memo, which the server keeps in the run's
 * WorkflowExecutionStarted event; `jorch worker` replays such a run with
 * that source, whatever its own workflows/ holds, so workers with different
 * checkouts agree. The bundle travels in the history rather than as a
 * reference because nothing else is shared by every worker. Workflow
 * modules are not carried (the worker's workflows/ provides them). Reading
 * the version back from a history is runtime/temporal's (tc_pin.c).
 */
#include "cli/cli_int.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "store/store.h"

/* A memo field whose payload is the JSON string `value`. */
static int memo_field(Temporal__Api__Common__V1__Memo *m, const char *key, const char *value) {
    cJSON *s = cJSON_CreateString(value);
    char *json = s ? cJSON_PrintUnformatted(s) : NULL;
    cJSON_Delete(s);
    Temporal__Api__Common__V1__Memo__FieldsEntry *e = malloc(sizeof *e);
    if (!json || !e) {
        cJSON_free(json);
        free(e);
        return -1;
    }
    temporal__api__common__v1__memo__fields_entry__init(e);
    e->key = jstrdup(key);
    e->value = payload_new_json(json, strlen(json));
    cJSON_free(json);
    m->fields[m->n_fields++] = e;
    return e->key && e->value ? 0 : -1;
}

Temporal__Api__Common__V1__Memo *cli_pin_memo(const char *path, jerr *err) {
    char *src = NULL;
    size_t len = 0;
    if (cli_read_script(path, &src, &len, err) != 0) return NULL;
    if (memchr(src, '\0', len)) {
        free(src);
        jerr_set(err, JERR_USAGE, "script %s contains a NUL byte", path);
        return NULL;
    }
    char sha[65], label[64];
    sha256_hex(src, len, sha);
    store_version_label(src, len, label, sizeof label);
    Temporal__Api__Common__V1__Memo *m = malloc(sizeof *m);
    if (m) {
        temporal__api__common__v1__memo__init(m);
        m->fields = calloc(4, sizeof *m->fields);
    }
    if (!m || !m->fields || memo_field(m, "jorch.script", path) != 0 ||
        memo_field(m, "jorch.script_sha256", sha) != 0 ||
        (label[0] && memo_field(m, "jorch.script_version", label) != 0) ||
        memo_field(m, "jorch.script_source", src) != 0) {
        if (m && m->fields) protobuf_c_message_free_unpacked(&m->base, NULL);
        else free(m);
        free(src);
        jerr_oom(err, "recording the script version");
        return NULL;
    }
    free(src);
    return m;
}

/* jorch upgrade --temporal: the check runs here, on the history the server
 * has now; the signal then records the version with the source. */
int cli_pin_upgrade_temporal(cli_client *c, const char *id, const char *path, bool dry_run, jerr *err) {
    char *src = NULL;
    size_t len = 0;
    if (cli_read_script(path, &src, &len, err) != 0) return -1;
    Temporal__Api__History__V1__History *h = NULL;
    if (c->ops->history(c, id, &h, err) != 0) {
        free(src);
        return -1;
    }
    char sha[65], label[64], dir[1024];
    sha256_hex(src, len, sha);
    store_version_label(src, len, label, sizeof label);
    cli_script_dir(path, dir, sizeof dir);
    int64_t last = h->n_events ? h->events[h->n_events - 1]->event_id : 0;
    bool closing = false;
    if (h->n_events) {
        switch (h->events[h->n_events - 1]->event_type) {
        case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: closing = true; break;
        default: break;
        }
    }
    if (closing) {
        protobuf_c_message_free_unpacked(&h->base, NULL);
        free(src);
        return jerr_set(err, JERR_USAGE, "workflow '%s' is closed: only open runs can be upgraded", id);
    }
    engine_run_config cfg = {
        .script_name = path, .script_src = src, .script_len = len, .limits = engine_limits_default(),
        .finder = engine_find_module_in_dir, .finder_ud = dir, .workflow_id = id, .run_id = "upgrade-check",
    };
    engine_run *r = engine_run_new(&cfg, err);
    int rc = r ? 0 : -1;
    if (rc == 0) {
        engine_output out;
        memset(&out, 0, sizeof out);
        rc = engine_run_feed(r, h->events, h->n_events, &out, err);
        if (rc == 0 && !out.has_task) rc = engine_run_check_end(r, &out, err);
        if (rc != 0) err->code = JERR_FAILED;
    }
    engine_run_free(r);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    if (rc != 0 || dry_run) {
        free(src);
        return rc;
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "sha", sha);
        cJSON_AddStringToObject(o, "name", path);
        cJSON_AddStringToObject(o, "label", label);
        cJSON_AddNumberToObject(o, "checkedThroughEvent", (double)last);
        cJSON_AddStringToObject(o, "source", src);
    }
    free(src);
    char *json = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    Temporal__Api__Common__V1__Payloads *ps = payloads_new();
    Temporal__Api__Common__V1__Payload *p = json ? payload_new_json(json, strlen(json)) : NULL;
    cJSON_free(json);
    if (!ps || !p || payloads_add(ps, p) != 0) {
        if (ps) protobuf_c_message_free_unpacked(&ps->base, NULL);
        return jerr_oom(err, "recording an upgrade");
    }
    rc = c->ops->signal(c, id, ENGINE_UPGRADE_SIGNAL, ps, err);
    protobuf_c_message_free_unpacked(&ps->base, NULL);
    if (rc != 0) return -1;
    /* did it land right after the checked history (else it is void)? */
    if (c->ops->history(c, id, &h, err) != 0) return -1;
    bool landed = false;
    for (size_t i = 0; i < h->n_events; i++) {
        const Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *a =
            h->events[i]->workflow_execution_signaled_event_attributes;
        if (h->events[i]->event_id == last + 1 && a && a->signal_name &&
            strcmp(a->signal_name, ENGINE_UPGRADE_SIGNAL) == 0)
            landed = true;
    }
    protobuf_c_message_free_unpacked(&h->base, NULL);
    if (!landed)
        return jerr_set(err, JERR_FAILED, "the run moved on while it was checked, so the upgrade record is void and "
                        "the run keeps its version: run 'jorch upgrade --temporal %s' again", id);
    return 0;
}
