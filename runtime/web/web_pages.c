/*
 * web_pages.c - the approval page: server-rendered HTML, no script, no
 * remote assets. Every text that comes from a run, its history or Jira is
 * HTML-escaped (web_html_esc) and every id in a link percent-encoded
 * (web_url_esc). Forms carry the CSRF token of the signed-in user.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/web_int.h"

static const char STYLE[] =
    "body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem 1.5rem;color:#1d232a}"
    "header{display:flex;gap:1rem;align-items:baseline;border-bottom:1px solid #ccd;margin-bottom:1rem}"
    "header h1{font-size:1.3rem;margin:.3rem 0}header a{color:inherit;text-decoration:none}"
    ".muted{color:#667}table{border-collapse:collapse;width:100%;margin:.5rem 0 1.2rem}"
    "th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e3e6ea;vertical-align:top}"
    "th{background:#f4f6f8;font-weight:600}pre{background:#f6f8fa;border:1px solid #e3e6ea;padding:.8rem;"
    "white-space:pre-wrap;word-break:break-word;max-height:40rem;overflow:auto}"
    ".flash{background:#e8f6ec;border:1px solid #9bd3ab;padding:.6rem .8rem}"
    ".error{background:#fdecec;border:1px solid #eba3a3;padding:.6rem .8rem}"
    ".gate{background:#fff8e5;border:1px solid #f0d27a;padding:.6rem .8rem;margin:.8rem 0}"
    ".actions{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-end;margin:.8rem 0 1.2rem}"
    ".actions form{display:flex;gap:.4rem;align-items:flex-end}"
    "button{font:inherit;padding:.35rem .9rem;border-radius:4px;border:1px solid #889;background:#fff;cursor:pointer}"
    "button.primary{background:#1f7a3a;color:#fff;border-color:#1f7a3a}button.danger{border-color:#b42318;color:#b42318}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{color:#667}dd{margin:0}";

static void head(jbuf *b, const char *title, web_server *w, const char *who) {
    jbuf_puts(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                 "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>");
    web_html_esc(b, title);
    jbuf_printf(b, " - jorch</title><style>%s</style></head><body><header><h1><a href=\"/\">jorch</a></h1>", STYLE);
    jbuf_puts(b, "<span class=\"muted\">");
    if (w->conf.temporal) jbuf_puts(b, "Temporal");
    else {
        jbuf_puts(b, "embedded store ");
        web_html_esc(b, w->conf.home);
    }
    jbuf_puts(b, "</span><span class=\"muted\" id=\"who\">signed in as ");
    web_html_esc(b, who);
    jbuf_puts(b, "</span></header>\n");
}

static void when(jbuf *b, int64_t nanos) {
    if (!nanos) {
        jbuf_puts(b, "-");
        return;
    }
    char t[48];
    time_format_rfc3339(nanos, t, sizeof t);
    /* 2026-12-01T18:20:17.123Z -> 2026-12-01 18:20:17 UTC */
    char *dot = strchr(t, '.');
    if (dot) *dot = '\0';
    else if (t[0] && t[strlen(t) - 1] == 'Z') t[strlen(t) - 1] = '\0';
    char *tt = strchr(t, 'T');
    if (tt) *tt = ' ';
    jbuf_printf(b, "<time datetime=\"");
    char iso[48];
    time_format_rfc3339(nanos, iso, sizeof iso);
    web_html_esc(b, iso);
    jbuf_puts(b, "\">");
    web_html_esc(b, t);
    jbuf_puts(b, " UTC</time>");
}

static void duration(jbuf *b, int64_t nanos) {
    if (nanos <= 0) {
        jbuf_puts(b, "-");
        return;
    }
    char d[64];
    duration_human(nanos, d, sizeof d);
    web_html_esc(b, d);
}

static void ago(jbuf *b, int64_t nanos) {
    if (!nanos) return;
    int64_t now = time_now_nanos();
    if (now <= nanos) return;
    jbuf_puts(b, " <span class=\"muted\">(");
    duration(b, now - nanos);
    jbuf_puts(b, " ago)</span>");
}

static void run_link(jbuf *b, const char *id) {
    jbuf_puts(b, "<a href=\"/runs/");
    web_url_esc(b, id);
    jbuf_puts(b, "\">");
    web_html_esc(b, id);
    jbuf_puts(b, "</a>");
}

void web_page_list(web_server *w, const char *who, jbuf *b) {
    head(b, "Runs", w, who);
    jbuf_puts(b, "<h2>Runs</h2>\n");
    Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse *l = NULL;
    jerr e = {0};
    if (w->c->ops->list(w->c, NULL, &l, &e) != 0) {
        jbuf_puts(b, "<p class=\"error\" id=\"error\">Cannot list the runs: ");
        web_html_esc(b, e.msg);
        jbuf_puts(b, "</p></body></html>\n");
        return;
    }
    jbuf_puts(b, "<table id=\"runs\"><thead><tr><th>Issue / workflow</th><th>Type</th><th>Phase</th><th>Status</th>"
                 "<th>Waiting since</th><th>Waiting for</th></tr></thead><tbody>\n");
    size_t shown = 0;
    for (size_t k = 0; k < l->n_executions; k++) {
        const Temporal__Api__Workflow__V1__WorkflowExecutionInfo *i = l->executions[k];
        web_run r;
        jerr re = {0};
        if (web_run_load(w, i, NULL, false, &r, &re) != 0) continue;
        shown++;
        jbuf_puts(b, "<tr data-id=\"");
        web_html_esc(b, r.id);
        jbuf_puts(b, "\"><td>");
        run_link(b, r.id);
        jbuf_puts(b, "</td><td>");
        web_html_esc(b, r.type);
        jbuf_puts(b, "</td><td class=\"phase\">");
        web_html_esc(b, r.phase[0] ? r.phase : "-");
        jbuf_puts(b, "</td><td class=\"status\">");
        web_html_esc(b, web_status_text(r.status));
        if (r.ostatus[0] && strcmp(r.ostatus, "running") != 0) {
            jbuf_puts(b, " <span class=\"muted\">(");
            web_html_esc(b, r.ostatus);
            jbuf_puts(b, ")</span>");
        }
        jbuf_puts(b, "</td><td>");
        if (r.status == 1) {
            when(b, r.waiting_since);
            ago(b, r.waiting_since);
        } else {
            jbuf_puts(b, "-");
        }
        jbuf_puts(b, "</td><td class=\"waiting\">");
        web_html_esc(b, r.status == 1 && r.waiting_for[0] ? r.waiting_for : "-");
        jbuf_puts(b, "</td></tr>\n");
        web_run_free(&r);
    }
    jbuf_puts(b, "</tbody></table>\n");
    if (!shown) jbuf_puts(b, "<p class=\"muted\">No runs yet.</p>\n");
    jbuf_puts(b, "</body></html>\n");
    protobuf_c_message_free_unpacked(&l->base, NULL);
}

static void form_open(jbuf *b, const char *id, const char *act, const char *csrf) {
    jbuf_puts(b, "<form method=\"post\" action=\"/runs/");
    web_url_esc(b, id);
    jbuf_printf(b, "/%s\"><input type=\"hidden\" name=\"csrf\" value=\"%s\">", act, csrf);
}

static const char *js(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void web_page_run(web_server *w, const char *id, const char *who, const char *flash, const char *error, jbuf *b,
                  int *status) {
    web_run r;
    jerr e = {0};
    if (web_run_load(w, NULL, id, true, &r, &e) != 0) {
        *status = e.code == JERR_BACKEND ? 503 : 404;
        head(b, id, w, who);
        jbuf_puts(b, "<p class=\"error\" id=\"error\">");
        web_html_esc(b, e.msg);
        jbuf_puts(b, "</p><p><a href=\"/\">All runs</a></p></body></html>\n");
        return;
    }
    head(b, r.id, w, who);
    jbuf_puts(b, "<h2 id=\"run-id\">");
    web_html_esc(b, r.id);
    jbuf_puts(b, "</h2>\n");
    if (flash) {
        jbuf_puts(b, "<p class=\"flash\" id=\"flash\">");
        web_html_esc(b, flash);
        jbuf_puts(b, "</p>\n");
    }
    if (error) {
        jbuf_puts(b, "<p class=\"error\" id=\"error\">");
        web_html_esc(b, error);
        jbuf_puts(b, "</p>\n");
    }
    jbuf_puts(b, "<dl><dt>Type</dt><dd>");
    web_html_esc(b, r.type);
    jbuf_puts(b, "</dd><dt>Status</dt><dd id=\"status\">");
    web_html_esc(b, web_status_text(r.status));
    jbuf_puts(b, "</dd>");
    if (r.state) {
        jbuf_puts(b, "<dt>Orchestration</dt><dd id=\"ostatus\">");
        web_html_esc(b, r.ostatus);
        jbuf_puts(b, "</dd><dt>Phase</dt><dd id=\"phase\">");
        web_html_esc(b, r.phase);
        jbuf_puts(b, "</dd>");
    } else if (r.state_error[0]) {
        jbuf_puts(b, "<dt>Orchestration</dt><dd class=\"muted\">unknown: ");
        web_html_esc(b, r.state_error);
        jbuf_puts(b, "</dd>");
    }
    jbuf_puts(b, "<dt>Started</dt><dd>");
    when(b, r.start);
    jbuf_puts(b, "</dd>");
    if (r.close) {
        jbuf_puts(b, "<dt>Closed</dt><dd>");
        when(b, r.close);
        jbuf_puts(b, " <span class=\"muted\">after ");
        duration(b, r.close - r.start);
        jbuf_puts(b, "</span></dd>");
    }
    if (r.status == 1) {
        jbuf_puts(b, "<dt>Waiting for</dt><dd id=\"waiting\">");
        web_html_esc(b, r.waiting_for[0] ? r.waiting_for : "-");
        jbuf_puts(b, "</dd><dt>Waiting since</dt><dd>");
        when(b, r.waiting_since);
        ago(b, r.waiting_since);
        jbuf_puts(b, "</dd>");
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r.state, "error");
    if (js(err, "message") || r.failure[0]) {
        jbuf_puts(b, "<dt>Error</dt><dd id=\"failure\">");
        if (js(err, "type")) {
            web_html_esc(b, js(err, "type"));
            jbuf_puts(b, ": ");
        }
        web_html_esc(b, js(err, "message") ? js(err, "message") : r.failure);
        jbuf_puts(b, "</dd>");
    }
    jbuf_puts(b, "</dl>\n");

    bool at_gate = r.status == 1 && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.state, "awaitingApproval"));
    if (at_gate) {
        const web_gate *g = r.n_gates ? &r.gates[r.n_gates - 1] : NULL;
        jbuf_puts(b, "<section class=\"gate\" id=\"gate\"><strong>Waiting for approval after ");
        web_html_esc(b, r.phase);
        jbuf_puts(b, "</strong>");
        if (g && !g->end) {
            jbuf_puts(b, " since ");
            when(b, g->start);
            ago(b, g->start);
        }
        jbuf_puts(b, ". Read what the agents produced, then approve or reject.</section>\n");
        const web_phase *gp = NULL;
        for (size_t i = 0; i < r.n_phases; i++)
            if (strcmp(r.phases[i].name, r.phase) == 0) gp = &r.phases[i];
        jbuf_puts(b, "<h3>");
        web_html_esc(b, r.phase);
        jbuf_puts(b, " output</h3><pre id=\"gate-output\">");
        web_html_esc(b, gp && gp->output.len ? gp->output.data : "(no agent output recorded in the history)");
        jbuf_puts(b, "</pre>\n");
    }
    /* the buttons send the orchestrator's signals: only for its runs */
    bool orchestrated = strcmp(r.type, w->conf.workflow_type) == 0;
    if (r.status == 1 && orchestrated) {
        char csrf[65];
        web_csrf_token(w, who, csrf);
        jbuf_puts(b, "<div class=\"actions\">");
        if (at_gate) {
            form_open(b, r.id, "approve", csrf);
            jbuf_puts(b, "<button class=\"primary\" id=\"approve\" type=\"submit\">Approve</button></form>");
        }
        form_open(b, r.id, "reject", csrf);
        jbuf_puts(b, "<label>Reason <input name=\"reason\" id=\"reason\" required maxlength=\"1000\" size=\"32\"></label>"
                     "<button class=\"danger\" id=\"reject\" type=\"submit\">Reject</button></form>");
        bool paused = strcmp(r.ostatus, "paused") == 0;
        form_open(b, r.id, paused ? "resume" : "pause", csrf);
        jbuf_printf(b, "<button id=\"%s\" type=\"submit\">%s</button></form>", paused ? "resume" : "pause",
                    paused ? "Resume" : "Pause");
        if (!paused) {
            /* resume is offered too: a pause may be pending until the next phase */
            form_open(b, r.id, "resume", csrf);
            jbuf_puts(b, "<button id=\"resume\" type=\"submit\">Resume</button></form>");
        }
        /* only phases that have not begun can be skipped */
        static const char *const names[] = {"EXPLORE", "PLAN", "CODE", "TEST", "FIX", "DOCUMENT"};
        bool any = false;
        for (size_t i = 0; i < 6; i++) {
            bool begun = false;
            for (size_t k = 0; k < r.n_phases; k++) begun = begun || strcmp(r.phases[k].name, names[i]) == 0;
            if (begun) continue;
            if (!any) {
                form_open(b, r.id, "skip", csrf);
                jbuf_puts(b, "<label>Phase <select name=\"phase\" id=\"skip-phase\">");
                any = true;
            }
            jbuf_printf(b, "<option>%s</option>", names[i]);
        }
        if (any) jbuf_puts(b, "</select></label><button id=\"skip\" type=\"submit\">Skip phase</button></form>");
        jbuf_puts(b, "</div>\n");
    }

    if (!orchestrated && !r.n_phases) {
        jbuf_puts(b, "<p class=\"muted\">Not a run of ");
        web_html_esc(b, w->conf.workflow_type);
        jbuf_puts(b, ": no phases or approvals to show (see 'jorch history').</p>"
                     "<p><a href=\"/\">All runs</a></p></body></html>\n");
        web_run_free(&r);
        return;
    }
    jbuf_puts(b, "<h3>Phases</h3><table id=\"timeline\"><thead><tr><th>Phase</th><th>Status</th><th>Started</th>"
                 "<th>Finished</th><th>Duration</th><th>Runs</th><th>Retries</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < r.n_phases; i++) {
        const web_phase *p = &r.phases[i];
        jbuf_puts(b, "<tr data-phase=\"");
        web_html_esc(b, p->name);
        jbuf_puts(b, "\"><td>");
        web_html_esc(b, p->name);
        jbuf_puts(b, "</td><td class=\"phase-status\">");
        web_html_esc(b, p->status);
        jbuf_puts(b, "</td><td>");
        when(b, p->start);
        jbuf_puts(b, "</td><td>");
        when(b, p->end);
        jbuf_puts(b, "</td><td>");
        duration(b, p->end && p->start ? p->end - p->start : p->start && r.status == 1 ? time_now_nanos() - p->start : 0);
        jbuf_printf(b, "</td><td>%d</td><td class=\"retries\">%d</td></tr>\n", p->runs, p->retries);
    }
    if (!r.n_phases) jbuf_puts(b, "<tr><td colspan=\"7\" class=\"muted\">No phase has started.</td></tr>\n");
    jbuf_puts(b, "</tbody></table>\n");

    if (r.n_gates) {
        jbuf_puts(b, "<h3>Approvals</h3><table id=\"gates\"><thead><tr><th>Gate</th><th>Waiting from</th><th>Until</th>"
                     "<th>Waited</th><th>Outcome</th><th>By</th></tr></thead><tbody>\n");
        for (size_t i = 0; i < r.n_gates; i++) {
            const web_gate *g = &r.gates[i];
            jbuf_puts(b, "<tr><td>after ");
            web_html_esc(b, g->phase);
            jbuf_puts(b, "</td><td>");
            when(b, g->start);
            jbuf_puts(b, "</td><td>");
            when(b, g->end);
            jbuf_puts(b, "</td><td>");
            duration(b, (g->end ? g->end : time_now_nanos()) - g->start);
            jbuf_puts(b, "</td><td>");
            web_html_esc(b, g->outcome[0] ? g->outcome : g->end ? "-" : "waiting");
            jbuf_puts(b, "</td><td class=\"by\">");
            web_html_esc(b, g->by[0] ? g->by : "-");
            jbuf_puts(b, "</td></tr>\n");
        }
        jbuf_puts(b, "</tbody></table>\n");
    }
    for (size_t i = 0; i < r.n_phases; i++) {
        const web_phase *p = &r.phases[i];
        if (!p->output.len || (at_gate && strcmp(p->name, r.phase) == 0)) continue;
        jbuf_puts(b, "<details><summary>");
        web_html_esc(b, p->name);
        jbuf_puts(b, " output</summary><pre>");
        web_html_esc(b, p->output.data);
        jbuf_puts(b, "</pre></details>\n");
    }
    jbuf_puts(b, "<p><a href=\"/\">All runs</a></p></body></html>\n");
    web_run_free(&r);
}
