/*
 * web_jira.c - what a Jira webhook delivery asks for, and its signature.
 *
 * Everything here is outside input: the body is parsed by cJSON, every
 * field is type-checked before use, copied into bounded buffers, and the
 * issue key must match the orchestrator's pattern before anything acts on
 * it. Nothing from the body reaches a shell or an argv.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "web/web.h"

bool web_issue_key_ok(const char *key) {
    /* ^[A-Z][A-Z0-9_]*-[1-9][0-9]*$, at most 64 bytes */
    size_t n = strlen(key);
    if (n == 0 || n > 64 || !(key[0] >= 'A' && key[0] <= 'Z')) return false;
    size_t i = 1;
    while (i < n && ((key[i] >= 'A' && key[i] <= 'Z') || (key[i] >= '0' && key[i] <= '9') || key[i] == '_')) i++;
    if (i >= n || key[i] != '-') return false;
    i++;
    if (i >= n || key[i] < '1' || key[i] > '9') return false;
    for (i++; i < n; i++)
        if (key[i] < '0' || key[i] > '9') return false;
    return true;
}

bool web_jira_signature_ok(const char *secret, size_t secret_len, const char *body, size_t len, const char *header) {
    if (!secret || !secret_len || !header) return false;
    if (strncmp(header, "sha256=", 7) != 0) return false;
    const char *hex = header + 7;
    if (strlen(hex) != 64) return false;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)(body ? body : ""), len, mac, &mac_len) ||
        mac_len != 32)
        return false;
    char want[65];
    for (unsigned i = 0; i < 32; i++) snprintf(want + 2 * i, 3, "%02x", mac[i]);
    char got[65];
    for (int i = 0; i < 64; i++) got[i] = (char)tolower((unsigned char)hex[i]);
    got[64] = '\0';
    return CRYPTO_memcmp(want, got, 64) == 0;
}

static const char *str_at(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

/* Is word one of the space-separated words of list? */
static bool has_word(const char *list, const char *word) {
    if (!list || !word || !*word) return false;
    size_t wl = strlen(word);
    for (const char *p = list; *p;) {
        while (*p == ' ') p++;
        const char *e = p;
        while (*e && *e != ' ') e++;
        if ((size_t)(e - p) == wl && strncmp(p, word, wl) == 0) return true;
        p = e;
    }
    return false;
}

static void copy(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "");
}

/* Atlassian Document Format: the text nodes in order, paragraphs on lines. */
static void adf_text(const cJSON *n, jbuf *out, int depth) {
    if (!n || depth > 32) return;
    const char *t = str_at(n, "text");
    if (t) jbuf_puts(out, t);
    const cJSON *c = NULL;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(n, "content")) {
        adf_text(c, out, depth + 1);
    }
    const char *type = str_at(n, "type");
    if (type && (strcmp(type, "paragraph") == 0 || strcmp(type, "hardBreak") == 0)) jbuf_putc(out, '\n');
}

static bool allowed(const web_jira_rules *r, const cJSON *author, char *who, size_t cap) {
    const char *ids[3] = {str_at(author, "accountId"), str_at(author, "emailAddress"), str_at(author, "name")};
    const char *shown = str_at(author, "displayName");
    copy(who, cap, shown ? shown : ids[0] ? ids[0] : ids[1] ? ids[1] : ids[2]);
    for (size_t k = 0; k < 3; k++) {
        if (!ids[k] || !*ids[k]) continue;
        for (size_t i = 0; i < r->n_allowed; i++)
            if (r->allowed_users[i] && strcmp(r->allowed_users[i], ids[k]) == 0) {
                /* the identity that matched, which is the one Jira vouches for */
                copy(who, cap, ids[k]);
                return true;
            }
    }
    return false;
}

/* Truncates s to at most cap-1 bytes without cutting a UTF-8 sequence. */
static void copy_utf8(char *dst, size_t cap, const char *s, size_t n) {
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static int parse_comment(const cJSON *root, const web_jira_rules *r, web_jira_action *out) {
    const cJSON *comment = cJSON_GetObjectItemCaseSensitive(root, "comment");
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(comment, "body");
    jbuf text;
    jbuf_init(&text, 64 * 1024);
    if (cJSON_IsString(body) && body->valuestring) jbuf_puts(&text, body->valuestring);
    else if (cJSON_IsObject(body)) adf_text(body, &text, 0);
    const char *s = text.data ? text.data : "";
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    int kind = WEB_JIRA_NONE;
    const char *rest = NULL;
    if (strncmp(s, "/proceed", 8) == 0 && (s[8] == '\0' || isspace((unsigned char)s[8]))) {
        kind = WEB_JIRA_PROCEED;
    } else if (strncmp(s, "/reject", 7) == 0 && (s[7] == '\0' || isspace((unsigned char)s[7]))) {
        kind = WEB_JIRA_REJECT;
        rest = s + 7;
    }
    if (kind == WEB_JIRA_NONE) {
        copy(out->why, sizeof out->why, "the comment is not a /proceed or /reject command");
        jbuf_free(&text);
        return 0;
    }
    if (!allowed(r, cJSON_GetObjectItemCaseSensitive(comment, "author"), out->user, sizeof out->user)) {
        copy(out->why, sizeof out->why, "the comment's author is not in web.jira.allowed_users");
        out->user[0] = '\0';
        jbuf_free(&text);
        return 0;
    }
    if (kind == WEB_JIRA_REJECT) {
        while (*rest == ' ' || *rest == '\t') rest++;
        size_t n = strcspn(rest, "\r\n");
        while (n > 0 && (rest[n - 1] == ' ' || rest[n - 1] == '\t')) n--;
        copy_utf8(out->reason, sizeof out->reason, rest, n);
        jerr ve = {0};
        if (!out->reason[0] || text_check_utf8("reason", out->reason, &ve) != 0)
            copy(out->reason, sizeof out->reason, "rejected in Jira");
    }
    out->kind = kind;
    jbuf_free(&text);
    return 0;
}

static int parse_update(const cJSON *root, const web_jira_rules *r, bool created, web_jira_action *out) {
    bool label = r->label && *r->label, status = r->status && *r->status;
    if (created) {
        const cJSON *fields = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "issue"), "fields");
        const cJSON *l = NULL;
        if (label)
            cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(fields, "labels")) {
                if (cJSON_IsString(l) && strcmp(l->valuestring, r->label) == 0) out->kind = WEB_JIRA_START;
            }
        const char *st = str_at(cJSON_GetObjectItemCaseSensitive(fields, "status"), "name");
        if (status && st && strcasecmp(st, r->status) == 0) out->kind = WEB_JIRA_START;
    } else {
        const cJSON *it = NULL;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "changelog"), "items")) {
            const char *field = str_at(it, "field");
            if (!field) continue;
            const char *from = str_at(it, "fromString"), *to = str_at(it, "toString");
            if (label && strcmp(field, "labels") == 0 && has_word(to, r->label) && !has_word(from, r->label))
                out->kind = WEB_JIRA_START;
            if (status && strcmp(field, "status") == 0 && to && strcasecmp(to, r->status) == 0 &&
                !(from && strcasecmp(from, r->status) == 0))
                out->kind = WEB_JIRA_START;
        }
    }
    if (out->kind == WEB_JIRA_NONE)
        copy(out->why, sizeof out->why, "neither the trigger label was added nor the issue moved to the trigger status");
    return 0;
}

int web_jira_parse(const char *body, size_t len, const web_jira_rules *r, web_jira_action *out, jerr *err) {
    memset(out, 0, sizeof *out);
    cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return jerr_set(err, JERR_USAGE, "the webhook body is not a JSON object");
    }
    const char *ev = str_at(root, "webhookEvent");
    int rc = 0;
    if (!ev) {
        copy(out->why, sizeof out->why, "no webhookEvent in the body");
    } else if (strcmp(ev, "comment_created") == 0) {
        rc = parse_comment(root, r, out);
    } else if (strcmp(ev, "jira:issue_updated") == 0 || strcmp(ev, "jira:issue_created") == 0) {
        rc = parse_update(root, r, strcmp(ev, "jira:issue_created") == 0, out);
    } else {
        snprintf(out->why, sizeof out->why, "event %.80s is not handled", ev);
    }
    if (rc == 0 && out->kind != WEB_JIRA_NONE) {
        const char *key = str_at(cJSON_GetObjectItemCaseSensitive(root, "issue"), "key");
        if (!key || !web_issue_key_ok(key)) {
            out->kind = WEB_JIRA_NONE;
            rc = jerr_set(err, JERR_USAGE, "the webhook names no valid issue key (expected PROJECT-123 in issue.key)");
        } else {
            copy(out->issue_key, sizeof out->issue_key, key);
        }
    }
    cJSON_Delete(root);
    return rc;
}
