/*
 * cli_pin.c - script versions on Temporal: `jorch start --temporal
 * SCRIPT.lua` records the script's version (name, SHA-256, label and the
 * source itself) in the run's memo, which the server keeps in the run's
 * WorkflowExecutionStarted event; `jorch worker` replays such a run with
 * that source, whatever its own workflows/ holds, so workers with different
 * checkouts agree. The bundle travels in the history rather than as a
 * reference because nothing else is shared by every worker. Workflow
 * modules are not carried (the worker's workflows/ provides them).
 */
#include "cli/cli_int.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static char *memo_string(const Temporal__Api__Common__V1__Memo *m, const char *key) {
    for (size_t i = 0; m && i < m->n_fields; i++) {
        if (!m->fields[i]->key || strcmp(m->fields[i]->key, key) != 0 || !m->fields[i]->value) continue;
        const ProtobufCBinaryData *d = &m->fields[i]->value->data;
        cJSON *v = cJSON_ParseWithLength((const char *)d->data, d->len);
        char *out = cJSON_IsString(v) && v->valuestring ? jstrdup(v->valuestring) : NULL;
        cJSON_Delete(v);
        return out;
    }
    return NULL;
}

int cli_pin_from_history(Temporal__Api__History__V1__HistoryEvent *const *events, size_t n, char **src,
                         size_t *len, char sha[65], char **name, jerr *err) {
    *src = NULL;
    *name = NULL;
    sha[0] = '\0';
    if (n == 0 || !events[0]->workflow_execution_started_event_attributes) return 0;
    const Temporal__Api__Common__V1__Memo *m = events[0]->workflow_execution_started_event_attributes->memo;
    char *s = memo_string(m, "jorch.script_source");
    char *claimed = memo_string(m, "jorch.script_sha256");
    if (!s || !claimed) {
        free(s);
        free(claimed);
        return 0; /* started by another client: not pinned */
    }
    *len = strlen(s);
    sha256_hex(s, *len, sha);
    if (strcmp(sha, claimed) != 0) {
        jerr_set(err, JERR_FAILED, "the script version recorded in this run's start (sha256 %.12s) does not match "
                 "its source (sha256 %.12s): the memo was altered; terminate the run", claimed, sha);
        free(s);
        free(claimed);
        return -1;
    }
    free(claimed);
    *name = memo_string(m, "jorch.script");
    if (!*name) *name = jstrdup("pinned.lua");
    *src = s;
    return 1;
}
