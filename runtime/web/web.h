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

#include "common/common.h"

/* `jorch web [options]`: serves until SIGINT/SIGTERM. Returns an exit code. */
int web_main(int argc, char **argv);

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

#endif
