/*
 * web_int.h - runtime/web internal: the server's state and what its files
 * share (web.c: configuration, daemon, routing, authentication; web_pages.c:
 * HTML; web_metrics.c: Prometheus text; web_runs.c: what a run's history and
 * state say about its phases and gates).
 */
#ifndef JORCH_WEB_INT_H
#define JORCH_WEB_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "web/web.h"

#define WEB_MAX_USERS 64

typedef struct web_user {
    char name[128];
    char *password;   /* secret */
} web_user;

typedef struct web_conf {
    char host[256];
    char port[16];
    bool temporal;
    char home[PATH_MAX];        /* embedded store */
    char *token;                /* bearer token (secret), NULL: none */
    web_user users[WEB_MAX_USERS];
    size_t n_users;
    char *jira_secret;          /* webhook shared secret, NULL: webhook refused */
    char label[256], status[256];
    char *allowed[WEB_MAX_USERS];
    size_t n_allowed;
    int auto_proceed;           /* -1: the workflow decides */
    char workflow[PATH_MAX];    /* the script the webhook starts */
    char workflow_type[256];
    char activities[PATH_MAX];  /* embedded: the activities of runs the webhook starts ("" default) */
} web_conf;

struct MHD_Daemon;

struct web_server {
    web_conf conf;
    cli_client *c;
    struct MHD_Daemon *d;
    char url[300];
    unsigned char csrf_key[32];
    bool loopback;
    /* webhook deliveries already acted on (web_delivery_key): in the
     * embedded store (a connection of the web server's own), else a file */
    struct store *deliveries_store;
    web_deliveries *deliveries;
};

/* web.c */
void web_html_esc(jbuf *b, const char *s);
void web_url_esc(jbuf *b, const char *s);
void web_csrf_token(const web_server *w, const char *who, char out[65]);
int web_signal(web_server *w, const char *id, const char *name, const char *who, const char *via,
               const char *reason, const char *phase, jerr *err);

/* web_runs.c: one run as the pages and metrics see it. */
typedef struct web_phase {
    char name[32];
    char status[32];           /* running, completed, passed, failed, skipped, ... */
    int64_t start, end;        /* nanos, 0 unknown */
    int runs;                  /* times it ran (TEST, FIX) */
    int retries;               /* activity attempts beyond the first */
    jbuf output;               /* the agents' answers in this phase (text) */
} web_phase;

typedef struct web_gate {
    char phase[32];
    int64_t start, end;        /* end 0: still waiting */
    char outcome[16];          /* proceed, reject, "" */
    char by[256];
} web_gate;

typedef struct web_activity_stat {
    char type[128];
    int64_t latency;           /* last attempt: started -> closed, nanos (0 unknown) */
    int attempts;
    bool failed;
} web_activity_stat;

typedef struct web_run {
    char id[256], run_id[64], type[256];
    int status;                /* Temporal WorkflowExecutionStatus */
    int64_t start, close;
    cJSON *state;              /* getState answer (orchestrator), or NULL */
    char state_error[512];     /* why state is NULL */
    char phase[32], ostatus[40]; /* the orchestrator's currentPhase and status */
    char waiting_for[512];
    int64_t waiting_since;
    web_phase *phases;
    size_t n_phases;
    web_gate *gates;
    size_t n_gates;
    web_activity_stat *acts;
    size_t n_acts;
    char failure[1024];        /* close failure message */
} web_run;

/* Loads what the run list needs (full=false) or everything (history:
 * phases, gates, outputs, activities). */
int web_run_load(web_server *w, const Temporal__Api__Workflow__V1__WorkflowExecutionInfo *info, const char *id,
                 bool full, web_run *out, jerr *err);
void web_run_free(web_run *r);
const char *web_status_text(int st);

/* web_pages.c */
void web_page_list(web_server *w, const char *who, jbuf *out);
/* status: the HTTP status to send (200, 404 for an unknown run, ...) */
void web_page_run(web_server *w, const char *id, const char *who, const char *flash, const char *error, jbuf *out,
                  int *status);

/* web_metrics.c */
int web_metrics(web_server *w, jbuf *out, jerr *err);

#endif
