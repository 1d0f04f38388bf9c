/*
 * fuzz_webhook.c - libFuzzer target for the Jira webhook intake of `jorch
 * web`: what a delivery's body asks for (web_jira_parse) and its signature
 * check. The first byte picks the rules (label, status, allowed users);
 * the rest is the body. Every input must parse or fail with a message; an
 * action must name a valid issue key, and a rejection reason must be valid
 * UTF-8 within its buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "web/web.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const char *const users[] = {"acc-alice", "lead@example.com", ""};
    web_jira_rules r = {.label = (data[0] & 1) ? "ai-orchestrate" : NULL,
                        .status = (data[0] & 2) ? "In Progress" : "",
                        .allowed_users = users,
                        .n_allowed = (data[0] & 4) ? 3 : 0};
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    web_jira_action a;
    jerr err;
    memset(&err, 0, sizeof err);
    if (web_jira_parse(body, len, &r, &a, &err) != 0) {
        if (!err.msg[0]) abort();
    } else if (a.kind != WEB_JIRA_NONE) {
        if (!web_issue_key_ok(a.issue_key)) abort();
        if (a.kind == WEB_JIRA_REJECT && (!a.reason[0] || text_check_utf8("reason", a.reason, &err) != 0)) abort();
    } else if (!a.why[0]) {
        abort();
    }
    /* the signature check on arbitrary headers: never crashes, and a
     * header made of the body itself never passes */
    char hdr[80];
    size_t n = len < sizeof hdr - 1 ? len : sizeof hdr - 1;
    memcpy(hdr, body, n);
    hdr[n] = '\0';
    if (web_jira_signature_ok("secret", 6, body, len, hdr) && strncmp(hdr, "sha256=", 7) != 0) abort();
    return 0;
}
