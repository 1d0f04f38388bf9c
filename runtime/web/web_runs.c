/*
 * web_runs.c - one run as the approval page and the metrics see it: its
 * status, the orchestrator's own state (the getState query), what it waits
 * for, and from its history the phase timeline (a phase begins where the
 * orchestrator labels the issue "orchestration-phase:P" +
 * "orchestration-status:running" and ends at its checkpoint), the gates
 * (label "awaiting_approval" until the proceed or reject signal, with who
 * sent it), the agents' answers per phase, and each activity's attempts and
 * latency. The same on both backends: everything comes from the cli_client.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "web/web_int.h"

static const char *const PHASES[] = {"EXPLORE", "PLAN", "CODE", "TEST", "FIX", "DOCUMENT"};
#define N_PHASES (sizeof PHASES / sizeof PHASES[0])

const char *web_status_text(int st) {
    static const char *const names[] = {"Unspecified", "Running", "Completed", "Failed", "Canceled",
                                        "Terminated", "ContinuedAsNew", "TimedOut"};
    return st >= 0 && st < (int)(sizeof names / sizeof names[0]) ? names[st] : "Unknown";
}

static void copy(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src ? src : ""); }

static const char *js(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static cJSON *payloads_json(const Temporal__Api__Common__V1__Payloads *ps) {
    if (!ps) return NULL;
    jbuf b;
    jbuf_init(&b, 32u << 20);
    jerr e = {0};
    cJSON *v = payloads_to_json(ps, false, &b, &e) == 0 && b.data ? cJSON_Parse(b.data) : NULL;
    jbuf_free(&b);
    return v;
}

static cJSON *query_json(web_server *w, const char *id, const char *name, jerr *err) {
    Temporal__Api__Common__V1__Payloads *args = payloads_new(), *res = NULL;
    if (!args) {
        jerr_oom(err, "querying");
        return NULL;
    }
    int rc = w->c->ops->query(w->c, id, name, args, &res, err);
    protobuf_c_message_free_unpacked(&args->base, NULL);
    if (rc != 0) return NULL;
    jbuf b;
    jbuf_init(&b, 32u << 20);
    cJSON *v = payloads_to_json(res, true, &b, err) == 0 && b.data ? cJSON_Parse(b.data) : NULL;
    jbuf_free(&b);
    protobuf_c_message_free_unpacked(&res->base, NULL);
    return v;
}

void web_run_free(web_run *r) {
    cJSON_Delete(r->state);
    for (size_t i = 0; i < r->n_phases; i++) jbuf_free(&r->phases[i].output);
    free(r->phases);
    free(r->gates);
    free(r->acts);
    memset(r, 0, sizeof *r);
}

/* One activity execution while walking the history. */
typedef struct act_rec {
    int64_t sched_id;
    char type[128];
    int seg;               /* index into segs, -1 none */
    char agent[64];
    int64_t started;
    int attempt;
} act_rec;

typedef struct seg {
    char name[32];
    int64_t start, end;
    int retries;
    jbuf output;
} seg;

static bool grow(void **arr, size_t n, size_t *cap, size_t size) {
    if (n < *cap) return true;
    size_t nc = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, nc * size);
    if (!p) return false;
    *arr = p;
    *cap = nc;
    return true;
}

/* "orchestration-phase:P" / "orchestration-status:S" among a label list. */
static void labels_of(const cJSON *add, char *phase, size_t pc, char *status, size_t sc) {
    phase[0] = status[0] = '\0';
    const cJSON *l = NULL;
    cJSON_ArrayForEach(l, add) {
        if (!cJSON_IsString(l)) continue;
        if (strncmp(l->valuestring, "orchestration-phase:", 20) == 0) copy(phase, pc, l->valuestring + 20);
        if (strncmp(l->valuestring, "orchestration-status:", 21) == 0) copy(status, sc, l->valuestring + 21);
    }
}

static int walk_history(web_run *r, Temporal__Api__History__V1__History *h, jerr *err) {
    act_rec *acts = calloc(h->n_events + 1, sizeof *acts);
    seg *segs = NULL;
    size_t n_acts = 0, n_segs = 0, cap_segs = 0, cap_gates = 0, cap_stats = 0;
    if (!acts) return jerr_oom(err, "reading the history");
    int cur = -1;
    for (size_t i = 0; i < h->n_events; i++) {
        const Temporal__Api__History__V1__HistoryEvent *e = h->events[i];
        int64_t t = pb_timestamp_nanos(e->event_time);
        switch (e->attributes_case) {
        case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_SCHEDULED_EVENT_ATTRIBUTES: {
            const Temporal__Api__History__V1__ActivityTaskScheduledEventAttributes *a =
                e->activity_task_scheduled_event_attributes;
            act_rec *ar = &acts[n_acts++];
            ar->sched_id = e->event_id;
            ar->seg = -1;
            copy(ar->type, sizeof ar->type, a->activity_type ? a->activity_type->name : "");
            bool labels = strcmp(ar->type, "jira.updateLabels") == 0;
            bool agent = strcmp(ar->type, "agent.run") == 0, ckpt = strcmp(ar->type, "checkpoint.save") == 0;
            cJSON *in = (labels || agent || ckpt) ? payloads_json(a->input) : NULL;
            if (labels) {
                char ph[32], st[32];
                labels_of(cJSON_GetArrayItem(in, 1), ph, sizeof ph, st, sizeof st);
                if (strcmp(st, "running") == 0 && ph[0]) {
                    if (cur >= 0 && !segs[cur].end) segs[cur].end = t;
                    if (!grow((void **)&segs, n_segs, &cap_segs, sizeof *segs)) goto oom;
                    memset(&segs[n_segs], 0, sizeof *segs);
                    copy(segs[n_segs].name, sizeof segs[n_segs].name, ph);
                    segs[n_segs].start = t;
                    jbuf_init(&segs[n_segs].output, 1u << 20);
                    cur = (int)n_segs++;
                } else if (strcmp(st, "awaiting_approval") == 0) {
                    if (!grow((void **)&r->gates, r->n_gates, &cap_gates, sizeof *r->gates)) goto oom;
                    web_gate *g = &r->gates[r->n_gates++];
                    memset(g, 0, sizeof *g);
                    copy(g->phase, sizeof g->phase, ph);
                    g->start = t;
                }
            } else if (ckpt && cur >= 0 && !segs[cur].end) {
                const char *ph = js(cJSON_GetArrayItem(in, 0), "phase");
                if (ph && strcmp(ph, segs[cur].name) == 0) segs[cur].end = t;
            } else if (agent) {
                copy(ar->agent, sizeof ar->agent, js(cJSON_GetArrayItem(in, 0), "agent"));
            }
            ar->seg = cur >= 0 && !segs[cur].end ? cur : -1;
            cJSON_Delete(in);
            break;
        }
        case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_STARTED_EVENT_ATTRIBUTES: {
            const Temporal__Api__History__V1__ActivityTaskStartedEventAttributes *a = e->activity_task_started_event_attributes;
            for (size_t k = 0; k < n_acts; k++)
                if (acts[k].sched_id == a->scheduled_event_id) {
                    acts[k].started = t;
                    acts[k].attempt = a->attempt;
                }
            break;
        }
        case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_COMPLETED_EVENT_ATTRIBUTES:
        case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_FAILED_EVENT_ATTRIBUTES:
        case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_TIMED_OUT_EVENT_ATTRIBUTES: {
            bool done = e->attributes_case ==
                        TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_COMPLETED_EVENT_ATTRIBUTES;
            int64_t sid = done ? e->activity_task_completed_event_attributes->scheduled_event_id
                          : e->attributes_case ==
                                  TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_FAILED_EVENT_ATTRIBUTES
                              ? e->activity_task_failed_event_attributes->scheduled_event_id
                              : e->activity_task_timed_out_event_attributes->scheduled_event_id;
            act_rec *ar = NULL;
            for (size_t k = 0; k < n_acts; k++)
                if (acts[k].sched_id == sid) ar = &acts[k];
            if (!ar) break;
            int attempts = ar->attempt > 0 ? ar->attempt : 1;
            if (ar->seg >= 0) segs[ar->seg].retries += attempts - 1;
            if (!grow((void **)&r->acts, r->n_acts, &cap_stats, sizeof *r->acts)) goto oom;
            web_activity_stat *s = &r->acts[r->n_acts++];
            memset(s, 0, sizeof *s);
            copy(s->type, sizeof s->type, ar->type);
            s->attempts = attempts;
            s->failed = !done;
            s->latency = ar->started && t >= ar->started ? t - ar->started : 0;
            if (done && ar->agent[0] && ar->seg >= 0) {
                cJSON *res = payloads_json(e->activity_task_completed_event_attributes->result);
                const char *o = js(cJSON_GetArrayItem(res, 0), "output");
                if (o) {
                    jbuf *ob = &segs[ar->seg].output;
                    jbuf_printf(ob, "%s--- %s agent ---\n", ob->len ? "\n" : "", ar->agent);
                    jbuf_puts(ob, o);
                    if (!ob->len || ob->data[ob->len - 1] != '\n') jbuf_putc(ob, '\n');
                }
                cJSON_Delete(res);
            }
            break;
        }
        case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_SIGNALED_EVENT_ATTRIBUTES: {
            const Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *a =
                e->workflow_execution_signaled_event_attributes;
            const char *name = a->signal_name ? a->signal_name : "";
            bool proceed = strcmp(name, "proceed") == 0, reject = strcmp(name, "reject") == 0;
            if (!proceed && !reject) break;
            web_gate *g = NULL;
            for (size_t k = 0; k < r->n_gates; k++)
                if (!r->gates[k].end) g = &r->gates[k];
            if (!g) break;
            g->end = t;
            copy(g->outcome, sizeof g->outcome, name);
            cJSON *in = payloads_json(a->input);
            const char *by = js(cJSON_GetArrayItem(in, 0), "by");
            copy(g->by, sizeof g->by, by ? by : (a->identity && *a->identity ? a->identity : ""));
            cJSON_Delete(in);
            break;
        }
        case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_FAILED_EVENT_ATTRIBUTES: {
            const Temporal__Api__Failure__V1__Failure *f = e->workflow_execution_failed_event_attributes->failure;
            copy(r->failure, sizeof r->failure, f && f->message ? f->message : "");
            break;
        }
        default:
            break;
        }
    }
    /* a gate left open by a run that ended without a signal ended with it */
    for (size_t k = 0; k < r->n_gates; k++)
        if (!r->gates[k].end && r->close) r->gates[k].end = r->close;

    /* the timeline: phases in their order, segments of one phase merged
     * (TEST and FIX run more than once), skipped phases from the state */
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(r->state, "phaseResults");
    r->phases = calloc(N_PHASES + n_segs + 1, sizeof *r->phases);
    if (!r->phases) goto oom;
    for (size_t p = 0; p < N_PHASES + n_segs; p++) {
        const char *name = p < N_PHASES ? PHASES[p] : segs[p - N_PHASES].name;
        if (p >= N_PHASES) {
            bool known = false;
            for (size_t q = 0; q < N_PHASES; q++) known = known || strcmp(PHASES[q], name) == 0;
            for (size_t q = 0; q < r->n_phases; q++) known = known || strcmp(r->phases[q].name, name) == 0;
            if (known) continue;
        }
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(results, name);
        web_phase ph;
        memset(&ph, 0, sizeof ph);
        jbuf_init(&ph.output, 4u << 20);
        copy(ph.name, sizeof ph.name, name);
        bool open = false;
        for (size_t s = 0; s < n_segs; s++) {
            if (strcmp(segs[s].name, name) != 0) continue;
            if (!ph.start) ph.start = segs[s].start;
            ph.end = segs[s].end;
            open = !segs[s].end;
            ph.runs++;
            ph.retries += segs[s].retries;
            if (segs[s].output.len) jbuf_append(&ph.output, segs[s].output.data, segs[s].output.len);
        }
        const char *st = js(res, "status");
        if (!ph.runs && !st) {
            jbuf_free(&ph.output);
            continue;
        }
        copy(ph.status, sizeof ph.status,
             open && r->status == 1 ? "running" : st ? st : open ? "stopped" : "completed");
        if (!ph.runs) {
            /* skipped: no labels, only the state's record */
            int64_t at = 0;
            jerr ig = {0};
            if (js(res, "at")) time_parse_rfc3339(js(res, "at"), &at, &ig);
            ph.start = ph.end = at;
        }
        r->phases[r->n_phases++] = ph;
    }
    for (size_t s = 0; s < n_segs; s++) jbuf_free(&segs[s].output);
    free(segs);
    free(acts);
    return 0;
oom:
    for (size_t s = 0; s < n_segs; s++) jbuf_free(&segs[s].output);
    free(segs);
    free(acts);
    return jerr_oom(err, "reading the history");
}

int web_run_load(web_server *w, const Temporal__Api__Workflow__V1__WorkflowExecutionInfo *info, const char *id,
                 bool full, web_run *r, jerr *err) {
    memset(r, 0, sizeof *r);
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = NULL;
    if (!info) {
        if (w->c->ops->describe(w->c, id, &d, err) != 0) return -1;
        info = d->workflow_execution_info;
        if (!info) {
            protobuf_c_message_free_unpacked(&d->base, NULL);
            return jerr_set(err, JERR_BACKEND, "describing workflow '%s' returned no execution info", id);
        }
    }
    copy(r->id, sizeof r->id, info->execution ? info->execution->workflow_id : id);
    copy(r->run_id, sizeof r->run_id, info->execution ? info->execution->run_id : "");
    copy(r->type, sizeof r->type, info->type ? info->type->name : "");
    r->status = (int)info->status;
    r->start = pb_timestamp_nanos(info->start_time);
    r->close = pb_timestamp_nanos(info->close_time);
    if (d) protobuf_c_message_free_unpacked(&d->base, NULL);
    /* the run itself, not an older one of the same workflow id */
    const char *rid = r->run_id[0] && !w->conf.temporal ? r->run_id : r->id;

    if (strcmp(r->type, w->conf.workflow_type) == 0) {
        jerr qe = {0};
        r->state = query_json(w, rid, "getState", &qe);
        if (!r->state) copy(r->state_error, sizeof r->state_error, qe.msg);
        copy(r->phase, sizeof r->phase, js(r->state, "currentPhase"));
        copy(r->ostatus, sizeof r->ostatus, js(r->state, "status"));
    }
    Temporal__Api__History__V1__History *h = NULL;
    if (full || r->status == 1) {
        jerr he = {0};
        if (w->c->ops->history(w->c, rid, &h, &he) != 0) {
            if (full) {
                *err = he;
                web_run_free(r);
                return -1;
            }
            h = NULL;
        }
    }
    if (h && h->n_events && r->run_id[0] &&
        h->events[0]->attributes_case ==
            TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_STARTED_EVENT_ATTRIBUTES) {
        /* the client reads a workflow id's newest run: an older run of the
         * same id (Temporal lists those too) must not borrow its history */
        const char *orig = h->events[0]->workflow_execution_started_event_attributes->original_execution_run_id;
        if (orig && *orig && strcmp(orig, r->run_id) != 0) {
            protobuf_c_message_free_unpacked(&h->base, NULL);
            h = NULL;
            cJSON_Delete(r->state);
            r->state = NULL;
            r->phase[0] = r->ostatus[0] = '\0';
            snprintf(r->state_error, sizeof r->state_error, "an older run of %s: only its status is known", r->id);
        }
    }
    if (r->status == 1) {
        /* what it waits for: the store's view, else the workflow's own */
        jbuf raw;
        jbuf_init(&raw, 1u << 20);
        jerr oe = {0};
        cJSON *obs = w->c->ops->observe && w->c->ops->observe(w->c, rid, &raw, &oe) == 0 && raw.data
                         ? cJSON_Parse(raw.data) : NULL;
        jbuf_free(&raw);
        if (obs) {
            copy(r->waiting_for, sizeof r->waiting_for, js(obs, "waitingFor"));
            if (js(obs, "waitingSince")) time_parse_rfc3339(js(obs, "waitingSince"), &r->waiting_since, &oe);
            cJSON_Delete(obs);
        } else {
            cJSON *st = query_json(w, rid, ENGINE_STATUS_QUERY, &oe);
            const cJSON *wt = NULL;
            cJSON_ArrayForEach(wt, cJSON_GetObjectItemCaseSensitive(st, "waiting")) {
                const char *dsc = js(wt, "description"), *kind = js(wt, "kind"), *nm = js(wt, "name");
                char one[256];
                if (dsc) snprintf(one, sizeof one, "%s", dsc);
                else if (kind && nm) snprintf(one, sizeof one, "%s %s", kind, nm);
                else continue;
                size_t n = strlen(r->waiting_for);
                snprintf(r->waiting_for + n, sizeof r->waiting_for - n, "%s%s", n ? "; " : "", one);
            }
            cJSON_Delete(st);
            if (h && h->n_events) r->waiting_since = pb_timestamp_nanos(h->events[h->n_events - 1]->event_time);
        }
    }
    int rc = 0;
    if (full && h) rc = walk_history(r, h, err);
    if (h) protobuf_c_message_free_unpacked(&h->base, NULL);
    if (rc != 0) web_run_free(r);
    return rc;
}
