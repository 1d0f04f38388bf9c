/*
 * web.h - the public face of runtime/web: `jorch web`, the orchestrator's
 * HTTP face (approval page, Jira webhook intake, Prometheus metrics). It
 * works against either backend through the same cli_client (cli/cli.h).
 *
 * The parser of outside input that is not HTTP itself (libmicrohttpd parses
 * requests and forms) is public so that a fuzzer can reach it: what a Jira
 * webhook body asks for.
 */
#ifndef JORCH_WEB_H
#define JORCH_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* `jorch web [options]`: serves until SIGINT/SIGTERM. Returns an exit code. */
int web_main(int argc, char **argv);

/* The server in-process (for a long-running process such as an embedded
 * service): options as `jorch web` takes them, NULL for "from jorch.yaml's
 * web: section, else the default". */
typedef struct web_options {
    const char *listen;            /* HOST:PORT; port 0 picks a free one */
    const char *home;              /* embedded store; NULL: $JORCH_HOME or ./.jorch */
    const char *token_file, *users_file, *jira_secret_file;
    const char *workflow;          /* what the Jira webhook starts */
    const char *activities;
    bool temporal;
} web_options;

typedef struct web_server web_server;

/* Loads the configuration, opens a client of the backend and listens (one
 * thread of libmicrohttpd's). NULL with err: JERR_USAGE for bad options or
 * configuration (a non-loopback address without authentication too),
 * JERR_BACKEND when the backend or the address cannot be reached. On the
 * embedded backend, runs the webhook starts are handed to the store's
 * service (cli_execute_background); a process of their own, when used, is
 * the caller's child to reap (web_main does). */
web_server *web_start(const web_options *o, jerr *err);
/* "http://HOST:PORT", the port as bound. */
const char *web_url(const web_server *w);
void web_stop(web_server *w);   /* NULL: nothing */
/* Whether jorch.yaml asks `jorch serve` for the web server too (web.serve:
 * true): 1 yes, 0 no, -1 with err for an unreadable configuration. */
int web_config_serve(jerr *err);

/* What a Jira webhook delivery asks for, under the configured rules. */
enum { WEB_JIRA_NONE = 0, WEB_JIRA_START, WEB_JIRA_PROCEED, WEB_JIRA_REJECT };

typedef struct web_jira_rules {
    const char *label;                 /* start when this label is added (NULL/"" : never) */
    const char *status;                /* start on a transition to this status (NULL/"" : never) */
    const char *const *allowed_users;  /* accountId, email or name of who may /proceed, /reject */
    size_t n_allowed;
} web_jira_rules;

typedef struct web_jira_action {
    int kind;              /* WEB_JIRA_* */
    char issue_key[72];    /* checked against the issue key pattern when kind != NONE */
    char user[256];        /* the comment's author (PROCEED/REJECT) */
    char reason[1024];     /* REJECT: the text after /reject (valid UTF-8) */
    char why[256];         /* NONE: why nothing is done, for the response */
} web_jira_action;

/* Parses a delivery's JSON body. 0 with out filled (kind NONE when the event
 * asks for nothing), -1 with err (JERR_USAGE) for a body that is not a JSON
 * object or names no valid issue key where one is needed. */
int web_jira_parse(const char *body, size_t len, const web_jira_rules *rules, web_jira_action *out, jerr *err);

/* X-Hub-Signature: "sha256=" followed by the hex HMAC-SHA256 of the body
 * keyed with the shared secret; compared in constant time. */
bool web_jira_signature_ok(const char *secret, size_t secret_len, const char *body, size_t len, const char *header);

/* True for an issue key: uppercase project, dash, number (as orchestrate.lua). */
bool web_issue_key_ok(const char *key);

/* Jira webhook deliveries already acted on (web_deliveries.c). A delivery
 * is known by web_delivery_key: the hex SHA-256 of its
 * X-Atlassian-Webhook-Identifier. On Temporal they are kept in a file
 * ($JORCH_HOME/web-deliveries; the embedded backend keeps them in its
 * store), for 7 days and at most 10000. open: a missing file is an empty
 * set; now and at are wall clock nanoseconds. */
typedef struct web_deliveries web_deliveries;
void web_delivery_key(const char *id, char out[65]);
web_deliveries *web_deliveries_open(const char *path, int64_t now, jerr *err);
bool web_deliveries_seen(const web_deliveries *d, const char *key);
int web_deliveries_add(web_deliveries *d, const char *key, int64_t now, jerr *err);
size_t web_deliveries_count(const web_deliveries *d);
void web_deliveries_free(web_deliveries *d);

#endif
