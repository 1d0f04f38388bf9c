/*
 * cli_pin.c - script versions on Temporal, the CLI's side: `jorch start
 * --temporal SCRIPT.lua` records the version (the script and the modules it
 * requires, with their sources) in the run's memo, and `jorch upgrade
 * --temporal` checks a new version against the run's history and records it
 * with an ENGINE_UPGRADE_SIGNAL. Building and checking versions, and reading
 * them back from a history, is runtime/temporal's (tc_pin.c).
 */
#include "cli/cli_int.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "temporal/temporal.h"

Temporal__Api__Common__V1__Memo *cli_pin_memo(const char *path, jerr *err) { return tc_pin_memo(path, err); }

/* jorch upgrade --temporal: the check runs here, on the history the server
 * has now; the signal then records the version with its sources. */
int cli_pin_upgrade_temporal(cli_client *c, const char *id, const char *path, bool dry_run, jerr *err) {
    Temporal__Api__History__V1__History *h = NULL;
    if (c->ops->history(c, id, &h, err) != 0) return -1;
    int64_t last = tc_pin_checked_through(h);
    char *json = NULL;
    int rc = tc_pin_upgrade_check(path, id, h, &json, err);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    if (rc != 0 || dry_run) {
        cJSON_free(json);
        return rc;
    }
    Temporal__Api__Common__V1__Payloads *ps = payloads_new();
    Temporal__Api__Common__V1__Payload *p = payload_new_json(json, strlen(json));
    cJSON_free(json);
    if (!ps || !p || payloads_add(ps, p) != 0) {
        if (ps) protobuf_c_message_free_unpacked(&ps->base, NULL);
        return jerr_oom(err, "recording an upgrade");
    }
    rc = c->ops->signal(c, id, ENGINE_UPGRADE_SIGNAL, ps, err);
    protobuf_c_message_free_unpacked(&ps->base, NULL);
    if (rc != 0) return -1;
    /* did it land right after the checked history (else it is void)? A
     * run whose workflow task attempt is running gets it when the attempt
     * ends (the workflow task timeout, 10 s for jorch's runs) */
    int landed = 0;
    for (int i = 0; i < 60 && landed == 0; i++) {
        if (i) {
            struct timespec ts = {0, 500 * 1000000};
            nanosleep(&ts, NULL);
        }
        if (c->ops->history(c, id, &h, err) != 0) return -1;
        landed = tc_pin_upgrade_landed(h, last);
        protobuf_c_message_free_unpacked(&h->base, NULL);
    }
    if (landed < 0)
        return jerr_set(err, JERR_FAILED, "the run moved on while it was checked, so the upgrade record is void and "
                        "the run keeps its version: run 'jorch upgrade --temporal %s' again", id);
    if (landed == 0)
        return jerr_set(err, JERR_FAILED, "the upgrade record did not reach the run's history within 30 s (its "
                        "workflow task is still running?); 'jorch history --temporal %s' shows whether a "
                        "__jorch_upgrade signal arrived, and if it is void the run keeps its version", id);
    return 0;
}
