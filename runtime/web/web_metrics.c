/*
 * web_metrics.c - GET /metrics: Prometheus text format (version 0.0.4),
 * computed from the backend at scrape time: the run list, and each run's
 * history (web_runs.c) for latencies, attempts and gate waits. A closed run
 * never changes, so what its history says is kept after the first scrape;
 * open runs are read again each time. Names follow the Temporal SDK's
 * metrics where one exists (temporal_workflow_completed, ...); the others
 * are jorch_*.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/web_int.h"

#define MAX_BUCKETS 16

typedef struct series {
    char labels[300];       /* rendered: workflow_type="x" */
    double value;           /* counter / gauge */
    uint64_t counts[MAX_BUCKETS];
    double sum;
    uint64_t n;
} series;

typedef struct family {
    const char *name, *help, *type; /* counter, gauge, histogram */
    const double *bounds;
    size_t n_bounds;
    series *s;
    size_t n, cap;
} family;

/* Per closed run, what the metrics need (its history does not change). */
typedef struct closed_run {
    char run_id[64];
    char type[256];
    int status;
    int64_t start, close;
    web_activity_stat *acts;
    size_t n_acts;
    web_gate *gates;
    size_t n_gates;
} closed_run;

/* One server per process, and only its daemon thread scrapes. */
static closed_run *cache;
static size_t n_cache, cap_cache;

static void label_value(jbuf *b, const char *v) {
    for (; v && *v; v++) {
        if (*v == '\\') jbuf_puts(b, "\\\\");
        else if (*v == '"') jbuf_puts(b, "\\\"");
        else if (*v == '\n') jbuf_puts(b, "\\n");
        else jbuf_putc(b, *v);
    }
}

static series *get(family *f, const char *key, const char *value) {
    char labels[300];
    jbuf b;
    jbuf_init(&b, sizeof labels - 1);
    jbuf_printf(&b, "%s=\"", key);
    label_value(&b, value);
    jbuf_putc(&b, '"');
    snprintf(labels, sizeof labels, "%s", b.data ? b.data : "");
    jbuf_free(&b);
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->s[i].labels, labels) == 0) return &f->s[i];
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 8;
        series *p = realloc(f->s, nc * sizeof *p);
        if (!p) return NULL;
        f->s = p;
        f->cap = nc;
    }
    series *s = &f->s[f->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->labels, sizeof s->labels, "%s", labels);
    return s;
}

static void add(family *f, const char *key, const char *value, double v) {
    series *s = get(f, key, value);
    if (s) s->value += v;
}

static void gauge_max(family *f, const char *key, const char *value, double v) {
    series *s = get(f, key, value);
    if (s && v > s->value) s->value = v;
}

static void observe(family *f, const char *key, const char *value, double v) {
    series *s = get(f, key, value);
    if (!s) return;
    for (size_t i = 0; i < f->n_bounds; i++)
        if (v <= f->bounds[i]) s->counts[i]++;
    s->sum += v;
    s->n++;
}

static void write_family(jbuf *b, const family *f) {
    jbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
    for (size_t i = 0; i < f->n; i++) {
        const series *s = &f->s[i];
        if (strcmp(f->type, "histogram") != 0) {
            jbuf_printf(b, "%s{%s} %.17g\n", f->name, s->labels, s->value);
            continue;
        }
        for (size_t k = 0; k < f->n_bounds; k++)
            jbuf_printf(b, "%s_bucket{%s,le=\"%g\"} %llu\n", f->name, s->labels, f->bounds[k],
                        (unsigned long long)s->counts[k]);
        jbuf_printf(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", f->name, s->labels, (unsigned long long)s->n);
        jbuf_printf(b, "%s_sum{%s} %.17g\n%s_count{%s} %llu\n", f->name, s->labels, s->sum, f->name, s->labels,
                    (unsigned long long)s->n);
    }
}

static const closed_run *cached(const char *run_id) {
    for (size_t i = 0; i < n_cache; i++)
        if (strcmp(cache[i].run_id, run_id) == 0) return &cache[i];
    return NULL;
}

/* Keeps the metrics part of a closed run; r's arrays move into the cache. */
static void remember(web_run *r) {
    if (!r->run_id[0]) return;
    if (n_cache == cap_cache) {
        size_t nc = cap_cache ? cap_cache * 2 : 64;
        closed_run *p = realloc(cache, nc * sizeof *p);
        if (!p) return;
        cache = p;
        cap_cache = nc;
    }
    closed_run *c = &cache[n_cache++];
    memset(c, 0, sizeof *c);
    snprintf(c->run_id, sizeof c->run_id, "%s", r->run_id);
    snprintf(c->type, sizeof c->type, "%s", r->type);
    c->status = r->status;
    c->start = r->start;
    c->close = r->close;
    c->acts = r->acts;
    c->n_acts = r->n_acts;
    c->gates = r->gates;
    c->n_gates = r->n_gates;
    r->acts = NULL;
    r->gates = NULL;
    r->n_acts = r->n_gates = 0;
}

int web_metrics(web_server *w, jbuf *out, jerr *err) {
    static const double e2e_b[] = {1, 10, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400};
    static const double act_b[] = {0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 1800, 7200};
    static const double gate_b[] = {60, 600, 3600, 4 * 3600, 86400, 2 * 86400, 3 * 86400, 7 * 86400};
    family started = {"jorch_workflow_started", "Runs started (every run the backend lists).", "counter", NULL, 0, NULL, 0, 0};
    family completed = {"temporal_workflow_completed", "Runs that completed.", "counter", NULL, 0, NULL, 0, 0};
    family failed = {"temporal_workflow_failed", "Runs that failed (including timed out).", "counter", NULL, 0, NULL, 0, 0};
    family canceled = {"temporal_workflow_canceled", "Runs that were cancelled.", "counter", NULL, 0, NULL, 0, 0};
    family terminated = {"jorch_workflow_terminated", "Runs that were terminated.", "counter", NULL, 0, NULL, 0, 0};
    family running = {"jorch_workflow_running", "Runs open now.", "gauge", NULL, 0, NULL, 0, 0};
    family e2e = {"temporal_workflow_endtoend_latency", "Seconds from start to close of closed runs.", "histogram",
                  e2e_b, sizeof e2e_b / sizeof e2e_b[0], NULL, 0, 0};
    family act_lat = {"temporal_activity_execution_latency", "Seconds of an activity's last attempt, start to close.",
                      "histogram", act_b, sizeof act_b / sizeof act_b[0], NULL, 0, 0};
    family act_failed = {"temporal_activity_execution_failed", "Activities that failed after their last attempt.",
                         "counter", NULL, 0, NULL, 0, 0};
    family act_attempts = {"jorch_activity_attempts", "Activity attempts (1 plus the retries of each closed activity).",
                           "counter", NULL, 0, NULL, 0, 0};
    family act_execs = {"jorch_activity_executions", "Activities that closed (completed, failed or timed out).",
                        "counter", NULL, 0, NULL, 0, 0};
    family gate_wait = {"jorch_gate_waiting_seconds", "Seconds an approval gate waited for proceed or reject.",
                        "histogram", gate_b, sizeof gate_b / sizeof gate_b[0], NULL, 0, 0};
    family at_gate = {"jorch_runs_waiting_at_gate", "Runs waiting at an approval gate now.", "gauge", NULL, 0, NULL, 0, 0};
    family oldest = {"jorch_gate_oldest_waiting_seconds", "Seconds the longest-waiting open gate has waited.", "gauge",
                     NULL, 0, NULL, 0, 0};
    family errors = {"jorch_metrics_unreadable_runs", "Runs whose state could not be read at this scrape.", "gauge",
                     NULL, 0, NULL, 0, 0};

    Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse *l = NULL;
    if (w->c->ops->list(w->c, NULL, &l, err) != 0) return -1;
    int64_t now = time_now_nanos();
    size_t unreadable = 0;
    for (size_t k = 0; k < l->n_executions; k++) {
        const Temporal__Api__Workflow__V1__WorkflowExecutionInfo *i = l->executions[k];
        const char *type = i->type && i->type->name ? i->type->name : "";
        const char *rid = i->execution && i->execution->run_id ? i->execution->run_id : "";
        add(&started, "workflow_type", type, 1);
        /* zero series make rate() and absent-checks work from the first run on */
        add(&completed, "workflow_type", type, 0);
        add(&failed, "workflow_type", type, 0);
        add(&canceled, "workflow_type", type, 0);
        add(&running, "workflow_type", type, 0);
        add(&at_gate, "workflow_type", type, 0);
        int st = (int)i->status;
        web_run r;
        memset(&r, 0, sizeof r);
        const closed_run *c = st != 1 && *rid ? cached(rid) : NULL;
        closed_run tmp;
        if (!c) {
            jerr re = {0};
            if (web_run_load(w, i, NULL, true, &r, &re) != 0) {
                unreadable++;
                continue;
            }
            memset(&tmp, 0, sizeof tmp);
            tmp.status = r.status;
            tmp.start = r.start;
            tmp.close = r.close;
            tmp.acts = r.acts;
            tmp.n_acts = r.n_acts;
            tmp.gates = r.gates;
            tmp.n_gates = r.n_gates;
            c = &tmp;
        }
        switch (st) {
        case 1: add(&running, "workflow_type", type, 1); break;
        case 2: add(&completed, "workflow_type", type, 1); break;
        case 3: case 7: add(&failed, "workflow_type", type, 1); break;
        case 4: add(&canceled, "workflow_type", type, 1); break;
        case 5: add(&terminated, "workflow_type", type, 1); break;
        default: break;
        }
        if (st != 1 && c->close && c->close >= c->start)
            observe(&e2e, "workflow_type", type, (double)(c->close - c->start) / 1e9);
        for (size_t a = 0; a < c->n_acts; a++) {
            const web_activity_stat *s = &c->acts[a];
            observe(&act_lat, "activity_type", s->type, (double)s->latency / 1e9);
            add(&act_attempts, "activity_type", s->type, s->attempts);
            add(&act_execs, "activity_type", s->type, 1);
            add(&act_failed, "activity_type", s->type, s->failed ? 1 : 0);
        }
        for (size_t g = 0; g < c->n_gates; g++) {
            const web_gate *gt = &c->gates[g];
            if (gt->end) {
                observe(&gate_wait, "workflow_type", type, (double)(gt->end - gt->start) / 1e9);
            } else if (st == 1) {
                add(&at_gate, "workflow_type", type, 1);
                gauge_max(&oldest, "workflow_type", type, (double)(now - gt->start) / 1e9);
            }
        }
        if (c == &tmp) {
            if (st != 1) remember(&r);
            web_run_free(&r);
        }
    }
    protobuf_c_message_free_unpacked(&l->base, NULL);
    add(&errors, "backend", w->conf.temporal ? "temporal" : "embedded", (double)unreadable);
    family *all[] = {&started, &completed, &failed, &canceled, &terminated, &running, &e2e, &act_lat, &act_failed,
                     &act_attempts, &act_execs, &gate_wait, &at_gate, &oldest, &errors};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        write_family(out, all[i]);
        free(all[i]->s);
    }
    return 0;
}
