/*
 * store_observe.c - what a run of the embedded backend is doing, for
 * `jorch describe`, `jorch list` and the live status line: what the
 * workflow waits for (the workflow's own view: the __jorch_status query,
 * answered by replaying committed history with the pinned script), its
 * pending timers, and which process executes it (the lease owner).
 *
 * Everything here only reads the store; a run that cannot be replayed is
 * reported, never repaired.
 */
#include "store/store_int.h"
#include "engine/engine.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ executor */

int store_run_executor(store *s, const char *run_id, store_executor *out, jerr *err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT lease_owner, lease_until FROM runs WHERE run_id=?", -1, &q, NULL) !=
        SQLITE_OK)
        return store_db_error(s, "reading a run's lease", err);
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(q);
        if (rc == SQLITE_DONE) return jerr_set(err, JERR_USAGE, "run %s not found", run_id);
        return store_db_error(s, "reading a run's lease", err);
    }
    const char *owner = (const char *)sqlite3_column_text(q, 0);
    int64_t until = sqlite3_column_int64(q, 1);
    if (owner && *owner) {
        snprintf(out->owner, sizeof out->owner, "%s", owner);
        out->held = true;
    }
    sqlite3_finalize(q);
    if (!out->held) return 0;
    long pid = 0;
    char host[100] = "";
    if (sscanf(out->owner, "%ld@%99s", &pid, host) == 2) {
        out->pid = pid;
        snprintf(out->host, sizeof out->host, "%s", host);
    }
    out->lease_valid = until > time_now_nanos();
    /* on this machine the pid says it; elsewhere only the lease expiry can */
    int live = store_owner_liveness(s, out->owner);
    out->this_host = live >= 0;
    out->alive = live >= 0 ? live == 1 : out->lease_valid;
    out->owner[strcspn(out->owner, " ")] = '\0'; /* shown as "pid@host" */
    if (out->this_host) {
        /* the service writes its pid into serve.lock (service.c) */
        char path[1100], buf[32] = "";
        snprintf(path, sizeof path, "%s/serve.lock", s->home);
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
            fclose(f);
        }
        out->service = buf[0] && strtol(buf, NULL, 10) == out->pid;
    }
    return 0;
}

void store_executor_text(const store_executor *x, const char *workflow_id, char *buf, size_t len) {
    if (!x->held)
        snprintf(buf, len, "no process; 'jorch resume %s' continues the run", workflow_id);
    else if (x->alive && x->lease_valid && x->service)
        snprintf(buf, len, "the service (process %ld on %s, alive)", x->pid, x->host);
    else if (x->alive && x->lease_valid)
        snprintf(buf, len, "process %ld on %s (alive)", x->pid, x->host);
    else if (!x->alive && x->service)
        snprintf(buf, len, "the service (process %ld on %s, %s); 'jorch serve' continues its runs", x->pid, x->host,
                 x->this_host ? "dead" : "lease expired");
    else if (x->alive)
        snprintf(buf, len, "process %ld on %s (alive, but its lease expired: stopped or stuck?)", x->pid, x->host);
    else
        snprintf(buf, len, "process %ld on %s (%s); 'jorch resume %s' continues the run", x->pid, x->host,
                 x->this_host ? "dead" : "lease expired", workflow_id);
}

/* ------------------------------------------------------------ waiting */

static void clock_text(int64_t nanos, char *buf, size_t len) {
    time_t t = (time_t)(nanos / 1000000000);
    struct tm tm;
    if (!localtime_r(&t, &tm) || strftime(buf, len, "%H:%M", &tm) == 0) snprintf(buf, len, "?");
}

/* One pending activity of a given type: its attempt and retry time. */
static void activity_suffix(store *s, const char *run_id, const char *name, char *buf, size_t len) {
    buf[0] = '\0';
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT attempt, state, ready_at, attrs FROM activities WHERE run_id=?"
                                  " ORDER BY scheduled_event_id", -1, &q, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(q) == SQLITE_ROW) {
        Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *a =
            temporal__api__command__v1__schedule_activity_task_command_attributes__unpack(
                NULL, (size_t)sqlite3_column_bytes(q, 3), sqlite3_column_blob(q, 3));
        if (!a) continue;
        bool match = a->activity_type && a->activity_type->name && strcmp(a->activity_type->name, name) == 0;
        protobuf_c_message_free_unpacked(&a->base, NULL);
        if (!match) continue;
        int attempt = sqlite3_column_int(q, 0);
        int state = sqlite3_column_int(q, 1);
        int64_t wait = sqlite3_column_int64(q, 2) - store_run_now(s, run_id);
        if (state == 0 && attempt > 1 && wait > 0) {
            char human[48];
            duration_human(wait, human, sizeof human);
            snprintf(buf, len, " (attempt %d, retry in %s)", attempt, human);
        } else if (attempt > 1) {
            snprintf(buf, len, " (attempt %d)", attempt);
        }
        break;
    }
    sqlite3_finalize(q);
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The wait that says the most about the run: the main coroutine's, unless
 * it only waits for another coroutine (workflow.go) or is ready. */
static const cJSON *main_wait(const cJSON *status) {
    const cJSON *waits = cJSON_GetObjectItemCaseSensitive(status, "waiting");
    const cJSON *best = NULL, *w;
    cJSON_ArrayForEach(w, waits) {
        const char *kind = jstr(w, "kind");
        if (!kind || strcmp(kind, "ready") == 0 || strcmp(kind, "coroutine") == 0) continue;
        const char *th = jstr(w, "thread");
        if (th && strcmp(th, "main") == 0) return w;
        if (!best) best = w;
    }
    return best;
}

void store_waiting_key(const cJSON *status, char *buf, size_t len) {
    const cJSON *w = status ? main_wait(status) : NULL;
    char *t = w ? cJSON_PrintUnformatted(w) : NULL;
    snprintf(buf, len, "%s", t ? t : "");
    cJSON_free(t);
}

void store_waiting_text(store *s, const char *run_id, const cJSON *status, char *buf, size_t len) {
    const cJSON *w = status ? main_wait(status) : NULL;
    if (!w) {
        snprintf(buf, len, "%s", "nothing (the workflow is working)");
        return;
    }
    const char *kind = jstr(w, "kind"), *desc = jstr(w, "description"), *site = jstr(w, "site");
    const char *name = jstr(w, "name");
    if (strcmp(kind, "condition") == 0) {
        if (desc && *desc) {
            snprintf(buf, len, "%s", desc);
            return;
        }
        /* no description: the line, and what could wake it */
        char sigs[256] = "";
        const cJSON *sg = cJSON_GetObjectItemCaseSensitive(status, "signals"), *e;
        size_t used = 0;
        cJSON_ArrayForEach(e, sg) {
            if (!cJSON_IsString(e)) continue;
            int n = snprintf(sigs + used, sizeof sigs - used, "%s%s", used ? ", " : "", e->valuestring);
            if (n < 0 || (size_t)n >= sizeof sigs - used) break;
            used += (size_t)n;
        }
        if (used)
            snprintf(buf, len, "a condition at %s (signals it handles: %s)", site ? site : "?", sigs);
        else
            snprintf(buf, len, "a condition at %s", site ? site : "?");
    } else if (strcmp(kind, "activity") == 0) {
        char suffix[96];
        activity_suffix(s, run_id, name ? name : "", suffix, sizeof suffix);
        snprintf(buf, len, "activity %s%s", name ? name : "?", suffix);
    } else if (strcmp(kind, "timer") == 0) {
        const char *timer_id = jstr(w, "timerId");
        int64_t fire = 0;
        sqlite3_stmt *q = NULL;
        if (timer_id &&
            sqlite3_prepare_v2(s->db, "SELECT fire_at FROM timers WHERE run_id=? AND timer_id=?", -1, &q, NULL) ==
                SQLITE_OK) {
            sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(q, 2, timer_id, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(q) == SQLITE_ROW) fire = sqlite3_column_int64(q, 0);
            sqlite3_finalize(q);
        }
        if (fire > 0) {
            char human[48];
            int64_t left = fire - store_run_now(s, run_id);
            duration_human(left > 0 ? left : 0, human, sizeof human);
            snprintf(buf, len, "a timer at %s (fires in %s)", site ? site : "?", human);
        } else {
            snprintf(buf, len, "a timer at %s", site ? site : "?");
        }
    } else {
        snprintf(buf, len, "%s at %s", kind, site ? site : "?");
    }
}

/* ------------------------------------------------------------ replay */

/* The workflow's own status: its committed history replayed with its
 * pinned script, then the __jorch_status query. *since: when the workflow
 * last acted (its last completed workflow task). */
cJSON *store_replay_status(store *s, const store_run *r, int64_t *since, jerr *err) {
    *since = r->start_time;
    char *src = NULL, *sname = NULL;
    size_t len = 0;
    if (store_script(s, r->script_sha, &sname, &src, &len, err) != 0) return NULL;
    store_module_ctx mc = {.s = s};
    snprintf(mc.run_id, sizeof mc.run_id, "%s", r->run_id);
    snprintf(mc.script_dir, sizeof mc.script_dir, "%s", sname);
    char *slash = strrchr(mc.script_dir, '/');
    if (slash) *slash = '\0';
    else snprintf(mc.script_dir, sizeof mc.script_dir, ".");
    engine_run_config cfg = {
        .script_name = sname, .script_src = src, .script_len = len, .limits = engine_limits_default(),
        .finder = store_find_module, .finder_ud = &mc, .workflow_id = r->workflow_id, .run_id = r->run_id,
    };
    engine_run *er = engine_run_new(&cfg, err);
    free(src);
    free(sname);
    if (!er) return NULL;
    HistoryEvent **ev = NULL;
    size_t n = 0;
    cJSON *status = NULL;
    if (store_history(s, r->run_id, 0, &ev, &n, err) == 0) {
        for (size_t i = n; i-- > 0;)
            if (ev[i]->event_type == ET(WORKFLOW_TASK_COMPLETED)) {
                *since = pb_timestamp_nanos(ev[i]->event_time);
                break;
            }
        size_t feed_n = n;
        if (n > 0 && ev[n - 1]->event_type == ET(WORKFLOW_TASK_STARTED)) feed_n = n - 1;
        engine_output out;
        Payloads *answer = NULL;
        if (engine_run_feed(er, ev, feed_n, &out, err) == 0 &&
            engine_run_query(er, ENGINE_STATUS_QUERY, NULL, &answer, err) == 0) {
            status = store_status_from_payloads(answer, err);
        }
        if (answer) protobuf_c_message_free_unpacked(&answer->base, NULL);
        store_events_free(ev, n);
    }
    engine_run_free(er);
    return status;
}

cJSON *store_status_from_payloads(const Payloads *answer, jerr *err) {
    jbuf b;
    jbuf_init(&b, 0);
    cJSON *status = NULL;
    if (payloads_to_json(answer, true, &b, err) == 0) {
        status = cJSON_Parse(b.data ? b.data : "null");
        if (!cJSON_IsObject(status)) {
            cJSON_Delete(status);
            status = NULL;
            jerr_set(err, JERR_INTERNAL, "the workflow's status query did not answer an object");
        }
    }
    jbuf_free(&b);
    return status;
}

/* ------------------------------------------------------------ the JSON */

static void add_time(cJSON *o, const char *k, int64_t nanos) {
    char t[48];
    time_format_rfc3339(nanos, t, sizeof t);
    cJSON_AddStringToObject(o, k, t);
}

static int add_timers(store *s, const char *run_id, cJSON *arr, jerr *err) {
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT timer_id, started_event_id, fire_at FROM timers WHERE run_id=?"
                                  " ORDER BY fire_at, started_event_id", -1, &q, NULL) != SQLITE_OK)
        return store_db_error(s, "reading timers", err);
    sqlite3_bind_text(q, 1, run_id, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(q) == SQLITE_ROW) {
        cJSON *t = cJSON_CreateObject();
        if (!t || !cJSON_AddItemToArray(arr, t)) {
            cJSON_Delete(t);
            sqlite3_finalize(q);
            return jerr_oom(err, "describing timers");
        }
        const char *id = (const char *)sqlite3_column_text(q, 0);
        char started[32];
        snprintf(started, sizeof started, "%" PRId64, (int64_t)sqlite3_column_int64(q, 1));
        cJSON_AddStringToObject(t, "timerId", id ? id : "");
        cJSON_AddStringToObject(t, "startedEventId", started);
        add_time(t, "fireTime", sqlite3_column_int64(q, 2));
    }
    sqlite3_finalize(q);
    return 0;
}

int store_observe_json(store *s, const char *id, jbuf *out, jerr *err) {
    store_run r;
    if (store_run_find(s, id, &r, err) != 0) return -1;
    cJSON *o = cJSON_CreateObject();
    if (!o) return jerr_oom(err, "describing a run");
    int rc = 0;
    if (r.status == RUN_RUNNING) {
        jerr serr = {0};
        int64_t since = 0;
        cJSON *status = store_replay_status(s, &r, &since, &serr);
        char text[512];
        store_executor x0;
        jerr xe = {0};
        /* events wait for a workflow task that no process will run */
        bool stalled = store_wft_pending(s, r.run_id) && store_run_executor(s, r.run_id, &x0, &xe) == 0 &&
                       !(x0.held && x0.alive && x0.lease_valid);
        if (status) {
            store_waiting_text(s, r.run_id, status, text, sizeof text);
            if (stalled)
                snprintf(text, sizeof text, "a process to execute it ('jorch resume %s')", r.workflow_id);
            const char *details = jstr(status, "details");
            if (details && *details) cJSON_AddStringToObject(o, "currentDetails", details);
            cJSON_AddStringToObject(o, "waitingFor", text);
            add_time(o, "waitingSince", since);
            const char *keys[] = {"waiting", "signals", "queries", "unhandledSignals"};
            const char *names[] = {"waits", "signals", "queries", "unhandledSignals"};
            for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
                cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(status, keys[i]);
                if (v && cJSON_IsArray(v)) cJSON_AddItemToObject(o, names[i], v);
                else cJSON_Delete(v);
            }
            cJSON_Delete(status);
        } else {
            /* a run whose history cannot be replayed now (a script error the
             * next workflow task reports too): say so, do not fail describe */
            cJSON_AddStringToObject(o, "waitingFor", "a fix: the workflow cannot be replayed");
            cJSON_AddStringToObject(o, "statusError", serr.msg);
        }
        cJSON *timers = cJSON_AddArrayToObject(o, "pendingTimers");
        if (!timers || add_timers(s, r.run_id, timers, err) != 0) rc = timers ? -1 : jerr_oom(err, "describing");
        store_executor x;
        if (rc == 0 && store_run_executor(s, r.run_id, &x, err) != 0) rc = -1;
        if (rc == 0) {
            cJSON *ex = cJSON_AddObjectToObject(o, "executor");
            if (ex) {
                char text2[512];
                store_executor_text(&x, r.workflow_id, text2, sizeof text2);
                cJSON_AddBoolToObject(ex, "alive", x.held && x.alive && x.lease_valid);
                cJSON_AddBoolToObject(ex, "service", x.held && x.service);
                if (x.held) {
                    cJSON_AddStringToObject(ex, "owner", x.owner);
                    cJSON_AddNumberToObject(ex, "pid", (double)x.pid);
                    cJSON_AddStringToObject(ex, "host", x.host);
                }
                cJSON_AddStringToObject(ex, "text", text2);
            }
            /* workflow tasks failed in a row; the retry time only while the
             * service that set it still executes the run */
            int attempts = 0;
            int64_t retry_at = 0;
            if (store_task_retry_get(s, r.run_id, &attempts, &retry_at) == 0 && attempts > 0) {
                cJSON *ft = cJSON_AddObjectToObject(o, "failedTask");
                if (ft) {
                    cJSON_AddNumberToObject(ft, "attempts", attempts);
                    if (retry_at > 0 && x.held && x.service && x.alive && x.lease_valid)
                        add_time(ft, "nextRetry", retry_at);
                }
            }
        }
    }
    if (rc == 0) {
        char *txt = cJSON_PrintUnformatted(o);
        if (!txt || jbuf_puts(out, txt) != 0) rc = jerr_oom(err, "describing a run");
        cJSON_free(txt);
    }
    cJSON_Delete(o);
    return rc;
}

void store_clock_text(int64_t nanos, char *buf, size_t len) { clock_text(nanos, buf, len); }
