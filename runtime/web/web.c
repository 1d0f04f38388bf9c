/*
 * web.c - `jorch web`: configuration, the libmicrohttpd daemon, routing,
 * authentication, CSRF protection, the actions (signals) and the Jira
 * webhook. HTTP itself (requests, headers, forms, basic auth) is parsed by
 * libmicrohttpd; the daemon runs one internal thread, so the one cli_client
 * is only ever used from that thread.
 */
#define _DEFAULT_SOURCE /* realpath */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "engine/engine.h"
#include "store/store.h"
#include "web/web_int.h"

#define FORM_MAX (64u * 1024u)
#define WEBHOOK_MAX (1024u * 1024u)
#define DEFAULT_LISTEN "127.0.0.1:8750"

static const char *const PHASE_NAMES[] = {"EXPLORE", "PLAN", "CODE", "TEST", "FIX", "DOCUMENT"};

static int exit_for(const jerr *e) {
    return e->code == JERR_USAGE ? CLI_USAGE : e->code == JERR_BACKEND ? CLI_UNREACHABLE : CLI_FAILED;
}

static void copy(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src ? src : ""); }

/* ------------------------------------------------------------ escaping */

void web_html_esc(jbuf *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': jbuf_puts(b, "&amp;"); break;
        case '<': jbuf_puts(b, "&lt;"); break;
        case '>': jbuf_puts(b, "&gt;"); break;
        case '"': jbuf_puts(b, "&quot;"); break;
        case '\'': jbuf_puts(b, "&#39;"); break;
        default:
            /* control characters other than white space would only confuse the page */
            if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t' && *s != '\r') jbuf_putc(b, '?');
            else jbuf_putc(b, *s);
        }
    }
}

void web_url_esc(jbuf *b, const char *s) {
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~')
            jbuf_putc(b, (char)c);
        else
            jbuf_printf(b, "%%%02X", c);
    }
}

/* The server's log of what it did (actions, webhooks, refusals) on
 * stderr; control characters from outside input cannot forge lines. */
static void web_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void web_log(const char *fmt, ...) {
    char msg[1024], ts[48];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20) *p = '?';
    time_format_rfc3339(time_now_nanos(), ts, sizeof ts);
    fprintf(stderr, "jorch web: %s %s\n", ts, msg);
}

/* ------------------------------------------------------------ secrets */

/* Equal in constant time whatever the lengths: both are hashed first. */
static bool secret_eq(const char *a, const char *b) {
    if (!a || !b) return false;
    unsigned char ha[SHA256_DIGEST_LENGTH], hb[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)a, strlen(a), ha);
    SHA256((const unsigned char *)b, strlen(b), hb);
    return CRYPTO_memcmp(ha, hb, sizeof ha) == 0;
}

void web_csrf_token(const web_server *w, const char *who, char out[65]) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    jbuf m;
    jbuf_init(&m, 4096);
    jbuf_puts(&m, "csrf:");
    jbuf_puts(&m, who);
    if (!HMAC(EVP_sha256(), w->csrf_key, sizeof w->csrf_key, (const unsigned char *)(m.data ? m.data : ""), m.len, mac,
              &n) || n < 32) {
        /* a token nobody can match: forms then fail closed */
        memset(mac, 0, sizeof mac);
        RAND_bytes(mac, 32);
    }
    jbuf_free(&m);
    for (unsigned i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

/* ------------------------------------------------------------ signals */

int web_signal(web_server *w, const char *id, const char *name, const char *who, const char *via, const char *reason,
               const char *phase, jerr *err) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return jerr_oom(err, "building the signal");
    if (reason) cJSON_AddStringToObject(o, "reason", reason);
    if (phase) cJSON_AddStringToObject(o, "phase", phase);
    cJSON_AddStringToObject(o, "by", who);
    cJSON_AddStringToObject(o, "via", via);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json) return jerr_oom(err, "building the signal");
    Temporal__Api__Common__V1__Payloads *ps = payloads_new();
    Temporal__Api__Common__V1__Payload *p = ps ? payload_from_json(json, strlen(json), err) : NULL;
    free(json);
    if (!ps || !p || payloads_add(ps, p) != 0) {
        if (p && ps) protobuf_c_message_free_unpacked(&p->base, NULL);
        if (ps) protobuf_c_message_free_unpacked(&ps->base, NULL);
        return err->msg[0] ? -1 : jerr_oom(err, "building the signal");
    }
    int rc = w->c->ops->signal(w->c, id, name, ps, err);
    protobuf_c_message_free_unpacked(&ps->base, NULL);
    if (rc == 0) web_log("signal %s sent to %s by %s (via %s)", name, id, who, via);
    return rc;
}

/* ------------------------------------------------------------ requests */

typedef struct req {
    bool started;
    bool form;
    struct MHD_PostProcessor *pp;
    jbuf body;
    bool too_big;
    char csrf[80];
    char reason[1100];
    char phase[40];
    size_t form_bytes;
} req;

static enum MHD_Result post_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                 const char *content_type, const char *transfer_encoding, const char *data,
                                 uint64_t off, size_t size) {
    req *r = cls;
    char *dst = NULL;
    size_t cap = 0;
    if (strcmp(key, "csrf") == 0) dst = r->csrf, cap = sizeof r->csrf;
    else if (strcmp(key, "reason") == 0) dst = r->reason, cap = sizeof r->reason;
    else if (strcmp(key, "phase") == 0) dst = r->phase, cap = sizeof r->phase;
    if (!dst) return MHD_YES;
    /* values arrive in pieces; a too long one is refused as a whole later */
    if (off + size >= cap) {
        r->too_big = true;
        return MHD_YES;
    }
    memcpy(dst + off, data, size);
    dst[off + size] = '\0';
    return MHD_YES;
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    req *r = *con_cls;
    if (!r) return;
    if (r->pp) MHD_destroy_post_processor(r->pp);
    jbuf_free(&r->body);
    free(r);
    *con_cls = NULL;
}

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *ctype, jbuf *body,
                                 const char *location, bool basic_challenge) {
    size_t len = 0;
    char *data = jbuf_take(body, &len);
    if (!data) {
        data = strdup("");
        len = 0;
        if (!data) return MHD_NO;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "same-origin");
    /* no script, no remote asset, forms only to this server, no framing */
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                            "frame-ancestors 'none'; base-uri 'none'");
    if (location) MHD_add_response_header(resp, "Location", location);
    if (basic_challenge) MHD_add_response_header(resp, "WWW-Authenticate", "Basic realm=\"jorch\", charset=\"UTF-8\"");
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result send_msg(struct MHD_Connection *conn, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result send_msg(struct MHD_Connection *conn, unsigned status, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jbuf b;
    jbuf_init(&b, 0);
    jbuf_printf(&b, "%s\n", msg);
    return send_text(conn, status, "text/plain; charset=utf-8", &b, NULL, status == MHD_HTTP_UNAUTHORIZED);
}

/* Who the request comes from, or false when it must authenticate. With no
 * token and no users configured (allowed on loopback only) everyone is
 * the local user. */
static bool authenticate(web_server *w, struct MHD_Connection *conn, char *who, size_t cap) {
    if (!w->conf.token && !w->conf.n_users) {
        copy(who, cap, "local user");
        return true;
    }
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth && w->conf.token && strncasecmp(auth, "Bearer ", 7) == 0) {
        if (secret_eq(auth + 7, w->conf.token)) {
            copy(who, cap, "bearer token");
            return true;
        }
        return false;
    }
    if (!w->conf.n_users) return false;
    char *pass = NULL;
    char *user = MHD_basic_auth_get_username_password(conn, &pass);
    bool ok = false;
    if (user && pass) {
        /* every user's password is compared, so timing says nothing about names */
        for (size_t i = 0; i < w->conf.n_users; i++) {
            bool match = secret_eq(pass, w->conf.users[i].password);
            if (match && strcmp(user, w->conf.users[i].name) == 0 && !ok) {
                ok = true;
                copy(who, cap, w->conf.users[i].name);
            }
        }
    }
    if (user) MHD_free(user);
    if (pass) MHD_free(pass);
    return ok;
}

/* A POST from a page of this server: its CSRF token, and no sign of
 * another origin (Origin, Sec-Fetch-Site) when the browser says. */
static const char *csrf_refusal(web_server *w, struct MHD_Connection *conn, const req *r, const char *who) {
    const char *site = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
    if (site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
        return "refused: a cross-site request (Sec-Fetch-Site)";
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (origin) {
        const char *rest = strncmp(origin, "http://", 7) == 0 ? origin + 7
                           : strncmp(origin, "https://", 8) == 0 ? origin + 8 : NULL;
        if (!rest || !host || strcmp(rest, host) != 0) return "refused: the request comes from another origin";
    }
    char want[65];
    web_csrf_token(w, who, want);
    if (strlen(r->csrf) != 64 || CRYPTO_memcmp(want, r->csrf, 64) != 0)
        return "refused: missing or wrong CSRF token (reload the page and try again)";
    return NULL;
}

/* ------------------------------------------------------------ webhook */

/* 1 the delivery was acted on already, 0 not (or it has no id), -1 the
 * store cannot tell (err): the caller answers 503 and Jira delivers again. */
static int seen_delivery(web_server *w, const char *key, jerr *err) {
    if (!key[0]) return 0;
    if (w->deliveries_store) return store_delivery_seen(w->deliveries_store, key, err);
    return w->deliveries && web_deliveries_seen(w->deliveries, key) ? 1 : 0;
}

/* After the delivery was acted on. A failure is logged: the action stands,
 * only a redelivery of it would be applied again. */
static void remember_delivery(web_server *w, const char *key, const char *id) {
    if (!key[0]) return;
    jerr e = {0};
    int rc = 0;
    if (w->deliveries_store) rc = store_delivery_remember(w->deliveries_store, key, time_now_nanos(), &e);
    else if (w->deliveries) rc = web_deliveries_add(w->deliveries, key, time_now_nanos(), &e);
    if (rc != 0) web_log("Jira webhook: delivery %.128s was applied but cannot be remembered (%s): a redelivery of it "
                         "would be applied again", id, e.msg);
}

/* Starts the configured workflow for an issue, the issue key as workflow
 * id: the backend refuses a second open run of it. */
static int start_for_issue(web_server *w, const char *key, char *msg, size_t cap, jerr *err) {
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = NULL;
    jerr de = {0};
    if (w->c->ops->describe(w->c, key, &d, &de) == 0) {
        int st = d->workflow_execution_info ? (int)d->workflow_execution_info->status : 0;
        protobuf_c_message_free_unpacked(&d->base, NULL);
        if (st == 1) {
            snprintf(msg, cap, "workflow %s is already running: nothing started", key);
            return 0;
        }
    } else if (de.code == JERR_BACKEND) {
        *err = de;
        return -1;
    }
    Temporal__Api__Common__V1__Payloads *in = payloads_new();
    if (!in) return jerr_oom(err, "starting");
    char json[128];
    snprintf(json, sizeof json, "\"%s\"", key); /* the key is [A-Z0-9_-] only */
    Temporal__Api__Common__V1__Payload *p = payload_from_json(json, strlen(json), err);
    if (!p || payloads_add(in, p) != 0) goto fail;
    if (w->conf.auto_proceed >= 0) {
        const char *o = w->conf.auto_proceed ? "{\"autoProceed\":true}" : "{\"autoProceed\":false}";
        p = payload_from_json(o, strlen(o), err);
        if (!p || payloads_add(in, p) != 0) goto fail;
    }
    cli_start_opts so = {.workflow_id = key, .workflow_type = w->conf.workflow_type,
                         .script_path = w->conf.workflow, .input = in,
                         .activities_dir = w->conf.activities[0] ? w->conf.activities : NULL};
    char *run_id = NULL;
    int rc = w->c->ops->start(w->c, &so, &run_id, err);
    protobuf_c_message_free_unpacked(&in->base, NULL);
    if (rc != 0) return -1;
    if (!w->conf.temporal) {
        /* the embedded backend's runs need an executor: the store's service
         * (started when none runs), as for `jorch start`; it is given the
         * run id, which we made */
        rc = cli_execute_background(w->conf.home, run_id, w->conf.activities[0] ? w->conf.activities : NULL, err);
    }
    if (rc == 0) snprintf(msg, cap, "started workflow %s (run %s)", key, run_id);
    free(run_id);
    return rc;
fail:
    if (p) protobuf_c_message_free_unpacked(&p->base, NULL);
    protobuf_c_message_free_unpacked(&in->base, NULL);
    return err->msg[0] ? -1 : jerr_oom(err, "starting");
}

static enum MHD_Result webhook(web_server *w, struct MHD_Connection *conn, req *r) {
    if (!w->conf.jira_secret)
        return send_msg(conn, MHD_HTTP_FORBIDDEN, "the Jira webhook is off: configure web.jira.secret_file "
                                                  "(or JORCH_JIRA_WEBHOOK_SECRET)");
    if (r->too_big) return send_msg(conn, MHD_HTTP_CONTENT_TOO_LARGE, "the webhook body is larger than 1 MiB");
    const char *sig = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Hub-Signature");
    if (!web_jira_signature_ok(w->conf.jira_secret, strlen(w->conf.jira_secret), r->body.data, r->body.len, sig)) {
        web_log("Jira webhook refused: %s signature", sig ? "wrong" : "no");
        return send_msg(conn, MHD_HTTP_UNAUTHORIZED, "refused: %s X-Hub-Signature (HMAC-SHA256 of the body with the "
                                                     "shared secret, as sha256=<hex>)", sig ? "wrong" : "no");
    }
    const char *delivery = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Atlassian-Webhook-Identifier");
    char key[65] = "";
    if (delivery && *delivery) web_delivery_key(delivery, key);
    jerr se = {0};
    int seen = seen_delivery(w, key, &se);
    if (seen < 0) return send_msg(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", se.msg);
    if (seen) return send_msg(conn, MHD_HTTP_OK, "delivery already handled");
    const char *allowed[WEB_MAX_USERS];
    for (size_t i = 0; i < w->conf.n_allowed; i++) allowed[i] = w->conf.allowed[i];
    web_jira_rules rules = {.label = w->conf.label, .status = w->conf.status, .allowed_users = allowed,
                            .n_allowed = w->conf.n_allowed};
    web_jira_action a;
    jerr e = {0};
    if (web_jira_parse(r->body.data, r->body.len, &rules, &a, &e) != 0)
        return send_msg(conn, MHD_HTTP_BAD_REQUEST, "%s", e.msg);
    char msg[600] = "";
    int rc = 0;
    unsigned status = MHD_HTTP_OK;
    if (a.kind == WEB_JIRA_NONE) {
        snprintf(msg, sizeof msg, "nothing to do: %s", a.why);
    } else if (a.kind == WEB_JIRA_START) {
        rc = start_for_issue(w, a.issue_key, msg, sizeof msg, &e);
    } else {
        /* only a run waiting at a gate takes /proceed or /reject from Jira */
        web_run run;
        rc = web_run_load(w, NULL, a.issue_key, false, &run, &e);
        if (rc == 0) {
            bool at_gate = run.status == 1 && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(run.state, "awaitingApproval"));
            web_run_free(&run);
            if (!at_gate) {
                status = MHD_HTTP_CONFLICT;
                snprintf(msg, sizeof msg, "workflow %s is not waiting at an approval gate: nothing sent", a.issue_key);
            } else {
                bool proceed = a.kind == WEB_JIRA_PROCEED;
                rc = web_signal(w, a.issue_key, proceed ? "proceed" : "reject", a.user, "jira",
                                proceed ? NULL : a.reason, NULL, &e);
                if (rc == 0) snprintf(msg, sizeof msg, "sent %s to %s for %s", proceed ? "proceed" : "reject",
                                      a.issue_key, a.user);
            }
        }
    }
    if (rc != 0)
        return send_msg(conn, e.code == JERR_BACKEND ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_CONFLICT, "%s", e.msg);
    if (status == MHD_HTTP_OK) remember_delivery(w, key, delivery);
    web_log("Jira webhook: %s", msg);
    return send_msg(conn, status, "%s", msg);
}

/* ------------------------------------------------------------ routing */

static bool valid_id(const char *id) {
    jerr e = {0};
    return id && *id && id_check("workflow id", id, ID_MAX_BYTES, &e) == 0;
}

static enum MHD_Result action(web_server *w, struct MHD_Connection *conn, req *r, const char *id, const char *act,
                              const char *who) {
    const char *refusal = csrf_refusal(w, conn, r, who);
    if (refusal) {
        web_log("%s on %s %s", refusal, id, act);
        return send_msg(conn, MHD_HTTP_FORBIDDEN, "%s", refusal);
    }
    if (r->too_big) return send_msg(conn, MHD_HTTP_CONTENT_TOO_LARGE, "a form field is too long");
    const char *signal = NULL, *reason = NULL, *phase = NULL;
    char err_text[1200] = "";
    if (strcmp(act, "approve") == 0) signal = "proceed";
    else if (strcmp(act, "pause") == 0) signal = "pause";
    else if (strcmp(act, "resume") == 0) signal = "resume";
    else if (strcmp(act, "reject") == 0) {
        signal = "reject";
        reason = r->reason;
        jerr ve = {0};
        if (!*reason) copy(err_text, sizeof err_text, "Reject needs a reason.");
        else if (text_check_utf8("the reason", reason, &ve) != 0) copy(err_text, sizeof err_text, ve.msg);
    } else if (strcmp(act, "skip") == 0) {
        signal = "skipPhase";
        for (size_t i = 0; i < sizeof PHASE_NAMES / sizeof PHASE_NAMES[0]; i++)
            if (strcmp(r->phase, PHASE_NAMES[i]) == 0) phase = PHASE_NAMES[i];
        if (!phase) copy(err_text, sizeof err_text, "Skip needs one of the phases EXPLORE, PLAN, CODE, TEST, FIX, DOCUMENT.");
    } else {
        return send_msg(conn, MHD_HTTP_NOT_FOUND, "no such action '%.40s' (approve, reject, pause, resume, skip)", act);
    }
    jerr e = {0};
    if (!err_text[0] && web_signal(w, id, signal, who, "web", reason, phase, &e) != 0) copy(err_text, sizeof err_text, e.msg);
    jbuf b;
    jbuf_init(&b, 0);
    if (err_text[0]) {
        int status = 200;
        web_page_run(w, id, who, NULL, err_text, &b, &status);
        return send_text(conn, e.code == JERR_BACKEND ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_BAD_REQUEST,
                         "text/html; charset=utf-8", &b, NULL, false);
    }
    /* after a POST, a GET: reloading the page sends nothing again */
    jbuf_puts(&b, "/runs/");
    web_url_esc(&b, id);
    jbuf_printf(&b, "?done=%s", act);
    char *loc = jbuf_take(&b, NULL);
    jbuf empty;
    jbuf_init(&empty, 0);
    enum MHD_Result rc = send_text(conn, MHD_HTTP_SEE_OTHER, "text/plain; charset=utf-8", &empty, loc ? loc : "/", false);
    free(loc);
    return rc;
}

static enum MHD_Result route(web_server *w, struct MHD_Connection *conn, const char *url, const char *method, req *r) {
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0, post = strcmp(method, "POST") == 0;
    if (strcmp(url, "/webhooks/jira") == 0) {
        if (!post) return send_msg(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "POST only");
        return webhook(w, conn, r);
    }
    char who[160];
    if (!authenticate(w, conn, who, sizeof who))
        return send_msg(conn, MHD_HTTP_UNAUTHORIZED, "authentication required (a bearer token or basic auth)");
    jbuf b;
    jbuf_init(&b, 0);
    if (strcmp(url, "/") == 0 || strcmp(url, "/runs") == 0) {
        if (!get) return send_msg(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only");
        web_page_list(w, who, &b);
        return send_text(conn, MHD_HTTP_OK, "text/html; charset=utf-8", &b, NULL, false);
    }
    if (strcmp(url, "/metrics") == 0) {
        if (!get) return send_msg(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only");
        jerr e = {0};
        if (web_metrics(w, &b, &e) != 0) {
            jbuf_free(&b);
            return send_msg(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", e.msg);
        }
        return send_text(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", &b, NULL, false);
    }
    if (strncmp(url, "/runs/", 6) == 0) {
        /* libmicrohttpd has percent-decoded the path: /runs/ID[/ACTION] */
        char id[ID_MAX_BYTES + 8];
        const char *rest = url + 6, *slash = strrchr(rest, '/');
        const char *act = NULL;
        size_t n = strlen(rest);
        if (post && slash) {
            n = (size_t)(slash - rest);
            act = slash + 1;
        }
        if (n >= sizeof id) return send_msg(conn, MHD_HTTP_NOT_FOUND, "no such run");
        memcpy(id, rest, n);
        id[n] = '\0';
        if (!valid_id(id)) return send_msg(conn, MHD_HTTP_NOT_FOUND, "no such run: not a valid workflow id");
        if (post && act) return action(w, conn, r, id, act, who);
        if (!get) return send_msg(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET, or POST to /runs/ID/ACTION");
        const char *done = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "done");
        const char *flash = NULL;
        if (done) {
            if (strcmp(done, "approve") == 0) flash = "Approved: the proceed signal was sent.";
            else if (strcmp(done, "reject") == 0) flash = "Rejected: the reject signal was sent.";
            else if (strcmp(done, "pause") == 0) flash = "The pause signal was sent.";
            else if (strcmp(done, "resume") == 0) flash = "The resume signal was sent.";
            else if (strcmp(done, "skip") == 0) flash = "The skipPhase signal was sent.";
        }
        int status = MHD_HTTP_OK;
        web_page_run(w, id, who, flash, NULL, &b, &status);
        return send_text(conn, (unsigned)status, "text/html; charset=utf-8", &b, NULL, false);
    }
    jbuf_free(&b);
    return send_msg(conn, MHD_HTTP_NOT_FOUND, "not found");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    web_server *w = cls;
    req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        bool hook = strcmp(url, "/webhooks/jira") == 0;
        jbuf_init(&r->body, hook ? WEBHOOK_MAX : FORM_MAX);
        if (strcmp(method, "POST") == 0 && !hook) {
            r->form = true;
            /* NULL for a body that is not a form: its fields stay empty and
             * the CSRF check refuses it */
            r->pp = MHD_create_post_processor(conn, 4096, post_iter, r);
        }
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->form) {
            if (!size_add(r->form_bytes, *upload_size, &r->form_bytes) || r->form_bytes > FORM_MAX) r->too_big = true;
            else if (r->pp && MHD_post_process(r->pp, upload, *upload_size) != MHD_YES) r->too_big = true;
        } else if (jbuf_append(&r->body, upload, *upload_size) != 0) {
            r->too_big = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return route(w, conn, url, method, r);
}

/* ------------------------------------------------------------ configuration */

static bool loopback_host(const char *h) {
    if (strcmp(h, "localhost") == 0 || strcmp(h, "::1") == 0) return true;
    struct in_addr a;
    return inet_pton(AF_INET, h, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* A *_file name as jorch.yaml gives it: ~/ in the home directory, other
 * relative names relative to the file's directory. */
static void resolve(const char *base_dir, const char *name, char *out, size_t cap) {
    if (strncmp(name, "~/", 2) == 0 && getenv("HOME")) snprintf(out, cap, "%s/%s", getenv("HOME"), name + 2);
    else if (name[0] == '/' || !base_dir || !*base_dir) snprintf(out, cap, "%s", name);
    else snprintf(out, cap, "%s/%s", base_dir, name);
}

/* A secret file: its content without surrounding white space, not empty. */
static char *read_secret(const char *path, const char *what, jerr *err) {
    char *s = NULL;
    size_t len = 0;
    if (file_read_all(path, 64 * 1024, &s, &len, err) != 0) {
        jerr_prefix(err, "%s", what);
        return NULL;
    }
    size_t a = 0;
    while (a < len && (s[a] == ' ' || s[a] == '\n' || s[a] == '\r' || s[a] == '\t')) a++;
    while (len > a && (s[len - 1] == ' ' || s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == '\t')) len--;
    memmove(s, s + a, len - a);
    s[len - a] = '\0';
    if (!s[0] || strlen(s) != len - a) {
        free(s);
        jerr_set(err, JERR_USAGE, "%s %s is empty or holds a NUL byte: it must hold the secret alone", what, path);
        return NULL;
    }
    return s;
}

static int read_users(web_conf *c, const char *path, jerr *err) {
    char *s = read_secret(path, "web.users_file", err);
    if (!s) return -1;
    int rc = 0;
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r') line[--n] = '\0';
        if (!n || line[0] == '#') continue;
        char *colon = strchr(line, ':');
        if (!colon || colon == line || !colon[1] || (size_t)(colon - line) >= sizeof c->users[0].name) {
            rc = jerr_set(err, JERR_USAGE, "web.users_file %s: each line must be NAME:PASSWORD (name under 128 bytes)", path);
            break;
        }
        if (c->n_users >= WEB_MAX_USERS) {
            rc = jerr_set(err, JERR_USAGE, "web.users_file %s: more than %d users", path, WEB_MAX_USERS);
            break;
        }
        web_user *u = &c->users[c->n_users];
        memcpy(u->name, line, (size_t)(colon - line));
        u->name[colon - line] = '\0';
        u->password = jstrdup(colon + 1);
        if (!u->password) {
            rc = jerr_oom(err, "reading users");
            break;
        }
        c->n_users++;
    }
    OPENSSL_cleanse(s, strlen(s));
    free(s);
    return rc;
}

static void conf_free(web_conf *c) {
    if (c->token) OPENSSL_cleanse(c->token, strlen(c->token));
    if (c->jira_secret) OPENSSL_cleanse(c->jira_secret, strlen(c->jira_secret));
    free(c->token);
    free(c->jira_secret);
    for (size_t i = 0; i < c->n_users; i++) {
        OPENSSL_cleanse(c->users[i].password, strlen(c->users[i].password));
        free(c->users[i].password);
    }
    for (size_t i = 0; i < c->n_allowed; i++) free(c->allowed[i]);
    memset(c, 0, sizeof *c);
}

static const char *cj_str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}


static int split_listen(web_conf *c, const char *listen, jerr *err) {
    const char *colon = strrchr(listen, ':');
    const char *h = listen, *he = colon;
    if (listen[0] == '[') { /* [::1]:8750 */
        h = listen + 1;
        he = strchr(listen, ']');
        if (!he || he[1] != ':') colon = NULL;
        else colon = he + 1;
    }
    if (!colon || !he || he == h || (size_t)(he - h) >= sizeof c->host || !colon[1] || strlen(colon + 1) >= sizeof c->port ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) > 65535)
        return jerr_set(err, JERR_USAGE, "listen address '%.200s': expected HOST:PORT, e.g. 127.0.0.1:8750 or [::1]:8750",
                        listen);
    memcpy(c->host, h, (size_t)(he - h));
    c->host[he - h] = '\0';
    snprintf(c->port, sizeof c->port, "%s", colon + 1);
    return 0;
}

static int load_conf(web_conf *c, const web_options *f, jerr *err) {
    memset(c, 0, sizeof *c);
    c->auto_proceed = -1;
    const char *path = NULL;
    cJSON *root = NULL;
    char base[PATH_MAX] = "";
    int has = config_locate(&path, err);
    if (has < 0) return -1;
    if (has > 0) {
        jbuf j;
        jbuf_init(&j, 0);
        if (config_load_yaml_as_json(path, &j, err) != 0) {
            jbuf_free(&j);
            return -1;
        }
        root = cJSON_Parse(j.data ? j.data : "{}");
        jbuf_free(&j);
        snprintf(base, sizeof base, "%s", path);
        char *sl = strrchr(base, '/');
        if (sl) *sl = '\0';
        else snprintf(base, sizeof base, ".");
    }
    const cJSON *web = cJSON_GetObjectItemCaseSensitive(root, "web");
    const cJSON *jira = cJSON_GetObjectItemCaseSensitive(web, "jira");
    if (web && !cJSON_IsObject(web)) {
        cJSON_Delete(root);
        return jerr_set(err, JERR_USAGE, "%s: web: must be a mapping", path);
    }
    if (cJSON_GetObjectItemCaseSensitive(web, "token") || cJSON_GetObjectItemCaseSensitive(jira, "secret")) {
        cJSON_Delete(root);
        return jerr_set(err, JERR_USAGE, "%s: secrets are not read from jorch.yaml: use web.token_file and "
                                         "web.jira.secret_file (files holding the secret), or JORCH_WEB_TOKEN and "
                                         "JORCH_JIRA_WEBHOOK_SECRET", path);
    }
    int rc = 0;
    char file[PATH_MAX];
    const char *listen = f->listen ? f->listen : cj_str(web, "listen") ? cj_str(web, "listen") : DEFAULT_LISTEN;
    if (split_listen(c, listen, err) != 0) rc = -1;
    c->temporal = f->temporal;
    snprintf(c->home, sizeof c->home, "%s", cli_home_dir(f->home));
    /* the bearer token */
    const char *env_tok = getenv("JORCH_WEB_TOKEN");
    if (rc == 0 && env_tok && *env_tok) {
        c->token = jstrdup(env_tok);
        if (!c->token) rc = jerr_oom(err, "reading the token");
    } else if (rc == 0 && (f->token_file || cj_str(web, "token_file"))) {
        if (f->token_file) snprintf(file, sizeof file, "%s", f->token_file);
        else resolve(base, cj_str(web, "token_file"), file, sizeof file);
        c->token = read_secret(file, "web.token_file", err);
        if (!c->token) rc = -1;
    }
    if (rc == 0 && (f->users_file || cj_str(web, "users_file"))) {
        if (f->users_file) snprintf(file, sizeof file, "%s", f->users_file);
        else resolve(base, cj_str(web, "users_file"), file, sizeof file);
        rc = read_users(c, file, err);
    }
    const char *env_sec = getenv("JORCH_JIRA_WEBHOOK_SECRET");
    if (rc == 0 && env_sec && *env_sec) {
        c->jira_secret = jstrdup(env_sec);
        if (!c->jira_secret) rc = jerr_oom(err, "reading the webhook secret");
    } else if (rc == 0 && (f->jira_secret_file || cj_str(jira, "secret_file"))) {
        if (f->jira_secret_file) snprintf(file, sizeof file, "%s", f->jira_secret_file);
        else resolve(base, cj_str(jira, "secret_file"), file, sizeof file);
        c->jira_secret = read_secret(file, "web.jira.secret_file", err);
        if (!c->jira_secret) rc = -1;
    }
    copy(c->label, sizeof c->label, cj_str(jira, "trigger_label") ? cj_str(jira, "trigger_label") : "ai-orchestrate");
    copy(c->status, sizeof c->status, cj_str(jira, "trigger_status"));
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(jira, "auto_proceed");
    if (cJSON_IsBool(ap)) c->auto_proceed = cJSON_IsTrue(ap) ? 1 : 0;
    const cJSON *u = NULL;
    cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(jira, "allowed_users")) {
        if (rc != 0) break;
        if (!cJSON_IsString(u) || !*u->valuestring) {
            rc = jerr_set(err, JERR_USAGE, "%s: web.jira.allowed_users must be a list of Jira account ids or emails", path);
        } else if (c->n_allowed >= WEB_MAX_USERS) {
            rc = jerr_set(err, JERR_USAGE, "%s: web.jira.allowed_users: more than %d", path, WEB_MAX_USERS);
        } else if (!(c->allowed[c->n_allowed++] = jstrdup(u->valuestring))) {
            rc = jerr_oom(err, "reading the configuration");
        }
    }
    const char *wf = f->workflow ? f->workflow : cj_str(web, "workflow");
    if (wf && !f->workflow) resolve(base, wf, c->workflow, sizeof c->workflow);
    else snprintf(c->workflow, sizeof c->workflow, "%s", wf ? wf : "workflows/orchestrate.lua");
    engine_workflow_type(c->workflow, c->workflow_type, sizeof c->workflow_type);
    const char *ad = f->activities ? f->activities : cj_str(web, "activities");
    char adir[PATH_MAX] = "";
    if (ad && !f->activities) resolve(base, ad, adir, sizeof adir);
    else if (ad) snprintf(adir, sizeof adir, "%s", ad);
    /* the executor runs in its own process: make names absolute now */
    if (adir[0] && !realpath(adir, c->activities) && rc == 0)
        rc = jerr_set(err, JERR_USAGE, "the activities directory %s: %s", adir, strerror(errno));
    char wabs[PATH_MAX];
    if (rc == 0 && realpath(c->workflow, wabs)) snprintf(c->workflow, sizeof c->workflow, "%s", wabs);
    if (rc == 0 && !c->temporal) {
        char habs[PATH_MAX];
        if (realpath(c->home, habs)) snprintf(c->home, sizeof c->home, "%s", habs);
    }
    cJSON_Delete(root);
    if (rc != 0) conf_free(c);
    return rc;
}

/* ------------------------------------------------------------ start, stop */

/* Where the webhook's deliveries are remembered across restarts. */
static int open_deliveries(web_server *w, jerr *err) {
    if (!w->conf.temporal) return store_open(w->conf.home, &w->deliveries_store, err);
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/web-deliveries", w->conf.home);
    if (n < 0 || (size_t)n >= sizeof path) return jerr_set(err, JERR_USAGE, "the path of %s is too long", w->conf.home);
    w->deliveries = web_deliveries_open(path, time_now_nanos(), err);
    return w->deliveries ? 0 : -1;
}

web_server *web_start(const web_options *o, jerr *err) {
    if (o->temporal && o->home) {
        jerr_set(err, JERR_USAGE, "--home names the embedded store; it does not go with --temporal");
        return NULL;
    }
    web_server *w = calloc(1, sizeof *w);
    if (!w) {
        jerr_oom(err, "starting the web server");
        return NULL;
    }
    if (load_conf(&w->conf, o, err) != 0) {
        free(w);
        return NULL;
    }
    w->loopback = loopback_host(w->conf.host);
    if (!w->loopback && !w->conf.token && !w->conf.n_users) {
        jerr_set(err, JERR_USAGE, "refusing to listen on %s without authentication: give --token-file or "
                                  "--users-file (web.token_file, web.users_file), or listen on 127.0.0.1",
                 w->conf.host);
        goto fail;
    }
    if (RAND_bytes(w->csrf_key, sizeof w->csrf_key) != 1) {
        jerr_set(err, JERR_INTERNAL, "cannot get random bytes for the CSRF key");
        goto fail;
    }
    w->c = cli_client_open(w->conf.temporal, w->conf.temporal ? NULL : w->conf.home, err);
    if (!w->c) goto fail;
    w->conf.temporal = w->c->ops->observe == NULL; /* FEATURE_TEMPORAL_ENABLED may have chosen Temporal */
    if (w->conf.jira_secret && open_deliveries(w, err) != 0) goto fail;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(w->conf.host, w->conf.port, &hints, &ai);
    if (gai != 0 || !ai) {
        jerr_set(err, JERR_USAGE, "cannot resolve the listen address %s: %s", w->conf.host, gai_strerror(gai));
        goto fail;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    /* the daemon's thread never takes the process's stop signals: they
     * reach the thread that waits for them (web_main, or a service loop) */
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &stop, &old);
    w->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, w, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    freeaddrinfo(ai);
    if (!w->d) {
        jerr_set(err, JERR_BACKEND, "cannot listen on %s:%s (in use, or not an address of this machine?)",
                 w->conf.host, w->conf.port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(w->d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = di ? di->port : (unsigned)atoi(w->conf.port);
    bool v6 = strchr(w->conf.host, ':') != NULL;
    snprintf(w->url, sizeof w->url, "http://%s%s%s:%u", v6 ? "[" : "", w->conf.host, v6 ? "]" : "", port);
    return w;
fail:
    if (w->c) w->c->ops->free(w->c);
    if (w->deliveries_store) store_close(w->deliveries_store);
    web_deliveries_free(w->deliveries);
    conf_free(&w->conf);
    free(w);
    return NULL;
}

const char *web_url(const web_server *w) { return w->url; }

int web_config_serve(jerr *err) {
    const char *path = NULL;
    int has = config_locate(&path, err);
    if (has <= 0) return has;
    jbuf j;
    jbuf_init(&j, 0);
    if (config_load_yaml_as_json(path, &j, err) != 0) {
        jbuf_free(&j);
        return -1;
    }
    cJSON *root = cJSON_Parse(j.data ? j.data : "{}");
    jbuf_free(&j);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "web"), "serve");
    int rc = cJSON_IsTrue(v) ? 1 : 0;
    if (v && !cJSON_IsBool(v)) rc = jerr_set(err, JERR_USAGE, "%s: web.serve must be true or false", path);
    cJSON_Delete(root);
    return rc;
}

void web_stop(web_server *w) {
    if (!w) return;
    if (w->d) MHD_stop_daemon(w->d);
    if (w->c) w->c->ops->free(w->c);
    if (w->deliveries_store) store_close(w->deliveries_store);
    web_deliveries_free(w->deliveries);
    conf_free(&w->conf);
    OPENSSL_cleanse(w->csrf_key, sizeof w->csrf_key);
    free(w);
}

/* ------------------------------------------------------------ the verb */

static const char usage[] =
    "Usage: jorch web [--listen HOST:PORT] [--home DIR | --temporal] [options]\n\n"
    "Serves the approval page (runs, phases, gate output; Approve, Reject, Pause,\n"
    "Resume, Skip phase), the Jira webhook (POST /webhooks/jira) and Prometheus\n"
    "metrics (GET /metrics) for the runs of either backend, until Ctrl-C.\n"
    "  --listen HOST:PORT      default web.listen, else " DEFAULT_LISTEN "; an address beyond\n"
    "                          loopback needs --token-file or --users-file\n"
    "  --home DIR              the embedded store (default $JORCH_HOME or ./.jorch)\n"
    "  --temporal              use Temporal (also FEATURE_TEMPORAL_ENABLED=true)\n"
    "  --token-file FILE       bearer token (web.token_file; JORCH_WEB_TOKEN wins)\n"
    "  --users-file FILE       NAME:PASSWORD lines for basic auth (web.users_file)\n"
    "  --jira-secret-file FILE the Jira webhook's shared secret (web.jira.secret_file;\n"
    "                          JORCH_JIRA_WEBHOOK_SECRET wins); without one the webhook is off\n"
    "  --workflow SCRIPT       what the webhook starts (web.workflow, default\n"
    "                          workflows/orchestrate.lua)\n"
    "  --activities DIR        embedded: activities of runs the webhook starts (web.activities)\n"
    "See docs/operations.md.\n";

int web_main(int argc, char **argv) {
    web_options f = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return CLI_OK;
        }
        if (strcmp(a, "--temporal") == 0) {
            f.temporal = true;
            continue;
        }
        if (strcmp(a, "--listen") == 0) slot = &f.listen;
        else if (strcmp(a, "--home") == 0) slot = &f.home;
        else if (strcmp(a, "--token-file") == 0) slot = &f.token_file;
        else if (strcmp(a, "--users-file") == 0) slot = &f.users_file;
        else if (strcmp(a, "--jira-secret-file") == 0) slot = &f.jira_secret_file;
        else if (strcmp(a, "--workflow") == 0) slot = &f.workflow;
        else if (strcmp(a, "--activities") == 0) slot = &f.activities;
        if (!slot) {
            fprintf(stderr, "jorch: web: unknown argument '%s'\nTry 'jorch web --help'.\n", a);
            return CLI_USAGE;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "jorch: web: option '%s' needs a value\nTry 'jorch web --help'.\n", a);
            return CLI_USAGE;
        }
        *slot = argv[++i];
    }
    /* the main thread waits for signals; the daemon's thread inherits the mask */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    jerr e = {0};
    web_server *w = web_start(&f, &e);
    if (!w) {
        fprintf(stderr, "jorch: web: %s\n", e.msg);
        return exit_for(&e);
    }
    printf("jorch web: serving %s/ for %s%s%s\n", w->url, w->conf.temporal ? "Temporal" : "the embedded store ",
           w->conf.temporal ? "" : w->conf.home, w->conf.jira_secret ? " (Jira webhook on)" : "");
    fflush(stdout);
    for (;;) {
        struct timespec ts = {1, 0};
        int sig = sigtimedwait(&set, NULL, &ts);
        /* executors started for webhook runs: collect them when they end */
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        if (sig == SIGINT || sig == SIGTERM) break;
    }
    web_stop(w);
    fprintf(stderr, "jorch web: stopped\n");
    return CLI_OK;
}
