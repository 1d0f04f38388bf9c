/*
 * tc_pin.c - the script version a run carries in its Temporal history: the
 * memo `jorch start --temporal SCRIPT.lua` records (name, SHA-256, label,
 * source; built by the CLI, cli_pin.c) in WorkflowExecutionStarted, or a
 * later `jorch upgrade --temporal` record (an ENGINE_UPGRADE_SIGNAL). The
 * worker replays a run with that source, whatever its own workflows/ holds.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "temporal/temporal.h"

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

/* The last jorch upgrade recorded in history that took effect: its signal
 * must directly follow the history its check replayed (checkedThroughEvent
 * + 1); one that arrived after other events is void, so every worker
 * decides alike from history alone. */
static cJSON *last_upgrade(Temporal__Api__History__V1__HistoryEvent *const *events, size_t n) {
    cJSON *found = NULL;
    for (size_t i = 0; i < n; i++) {
        const Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *a =
            events[i]->workflow_execution_signaled_event_attributes;
        if (events[i]->event_type != TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED || !a ||
            !a->signal_name || strcmp(a->signal_name, ENGINE_UPGRADE_SIGNAL) != 0 || !a->input ||
            a->input->n_payloads < 1)
            continue;
        const ProtobufCBinaryData *d = &a->input->payloads[0]->data;
        cJSON *o = cJSON_ParseWithLength((const char *)d->data, d->len);
        const cJSON *checked = o ? cJSON_GetObjectItemCaseSensitive(o, "checkedThroughEvent") : NULL;
        const cJSON *src = o ? cJSON_GetObjectItemCaseSensitive(o, "source") : NULL;
        if (!cJSON_IsNumber(checked) || !cJSON_IsString(src) ||
            (int64_t)checked->valuedouble + 1 != events[i]->event_id) {
            cJSON_Delete(o);
            continue;
        }
        cJSON_Delete(found);
        found = o;
    }
    return found;
}

int tc_pin_from_history(Temporal__Api__History__V1__HistoryEvent *const *events, size_t n, char **src,
                        size_t *len, char sha[65], char **name, jerr *err) {
    *src = NULL;
    *name = NULL;
    sha[0] = '\0';
    if (n == 0 || !events[0]->workflow_execution_started_event_attributes) return 0;
    const Temporal__Api__Common__V1__Memo *m = events[0]->workflow_execution_started_event_attributes->memo;
    char *s = NULL, *claimed = NULL;
    cJSON *up = last_upgrade(events, n);
    if (up) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(up, "source");
        s = jstrdup(v->valuestring);
        v = cJSON_GetObjectItemCaseSensitive(up, "sha");
        claimed = cJSON_IsString(v) ? jstrdup(v->valuestring) : NULL;
        v = cJSON_GetObjectItemCaseSensitive(up, "name");
        *name = cJSON_IsString(v) ? jstrdup(v->valuestring) : NULL;
        cJSON_Delete(up);
    } else {
        s = memo_string(m, "jorch.script_source");
        claimed = memo_string(m, "jorch.script_sha256");
    }
    if (!s || !claimed) {
        free(s);
        free(claimed);
        free(*name);
        *name = NULL;
        return 0; /* started by another client: not pinned */
    }
    *len = strlen(s);
    sha256_hex(s, *len, sha);
    if (strcmp(sha, claimed) != 0) {
        jerr_set(err, JERR_FAILED, "the script version recorded in this run's history (sha256 %.12s) does not match "
                 "its source (sha256 %.12s): the record was altered; terminate the run", claimed, sha);
        free(s);
        free(claimed);
        free(*name);
        *name = NULL;
        return -1;
    }
    free(claimed);
    if (!*name) *name = memo_string(m, "jorch.script");
    if (!*name) *name = jstrdup("pinned.lua");
    *src = s;
    return 1;
}
