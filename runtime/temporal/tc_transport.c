/*
 * tc_transport.c - gRPC unary calls to Temporal's WorkflowService over
 * HTTP/2: request headers, deadlines, response collection, and retries with
 * jittered exponential backoff, on one of two transports:
 *  - TLS: libcurl's multi interface, which multiplexes calls on shared
 *    connections (PIPEWAIT prefers an existing connection over a new one);
 *  - cleartext: tc_h2c.c, libnghttp2 on plain sockets, with a connection
 *    pool per address shared by every tc_conn of the process. (Debian's
 *    libcurl 7.88.1 fails the second request on a reused prior-knowledge
 *    connection with CURLE_HTTP2, so through curl every cleartext call paid
 *    a fresh connection.)
 * Both feed the same response pieces (tc_meta, tc_deframer) and end in the
 * same settle_response.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <curl/curl.h>

#include "temporal/tc_int.h"
#include "temporal/temporal.h"

#define TC_SERVICE_PATH "/temporal.api.workflowservice.v1.WorkflowService/"
#define TC_DEFAULT_ATTEMPTS 5
#define TC_BACKOFF_INITIAL_MS 100
#define TC_BACKOFF_MAX_MS 5000
/* curl's own timer fires this long after the gRPC deadline, so the server's
 * DEADLINE_EXCEEDED (with its message) normally arrives first. */
#define TC_CLIENT_GRACE_MS 2000
#define TC_CONNECT_TIMEOUT_MS 10000
#define TC_MAX_POLL_WAIT_MS 250

enum { CALL_RUNNING, CALL_BACKOFF, CALL_DONE };

struct tc_conn {
    tc_config cfg;
    CURLM *multi;
    char *url_base;                 /* scheme://authority/<service path> */
    struct curl_slist *connect_to;  /* server-name override: name:port -> address */
    tc_call *calls;                 /* started and not freed */
    uint64_t rng;
    long connects;
    h2_pool *h2;                    /* cleartext: the shared pool of the address */
    int wake_fd;                    /* cleartext: an eventfd other threads wake us with */
};

struct tc_call {
    tc_conn *conn;
    tc_call *prev, *next;
    char method[96];
    const ProtobufCMessageDescriptor *resp_desc;
    unsigned char *frame;
    size_t frame_len;
    tc_call_opts opts;
    int state;
    int attempt;
    int64_t retry_at_ms;
    int64_t attempt_start_ms;
    CURL *easy;
    struct curl_slist *headers;
    tc_deframer deframer;
    tc_meta meta;
    jerr body_err;
    bool body_failed;
    char errbuf[CURL_ERROR_SIZE];
    tc_h2_attempt h2;               /* cleartext attempt */
    bool on_h2;                     /* h2 is started and not cleaned up */
    bool h2_timed_out;
    bool unprocessed;               /* the last attempt never reached the server's handlers */
    tc_status status;
    ProtobufCMessage *resp;
};

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* xorshift64*: jitter only needs to spread retries, not be unpredictable. */
static uint64_t conn_random(tc_conn *c) {
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * 2685821657736338717ULL;
}

/* Remove every occurrence of the API key from text (server messages could
 * echo a header back; curl errors never should, but cost nothing to scrub). */
static void redact(const tc_conn *c, char *text) {
    const char *key = c->cfg.api_key;
    if (key == NULL || key[0] == '\0') return;
    size_t klen = strlen(key);
    static const char mark[] = "[redacted]";
    char *hit = strstr(text, key);
    while (hit != NULL) {
        size_t tail = strlen(hit + klen);
        size_t mlen = sizeof mark - 1;
        if (mlen <= klen) {
            memcpy(hit, mark, mlen);
            memmove(hit + mlen, hit + klen, tail + 1);
            hit = strstr(hit + mlen, key);
        } else {
            memset(hit, '*', klen);
            hit = strstr(hit + klen, key);
        }
    }
}

/* ------------------------------------------------------------ connection */

static int copy_config(tc_config *dst, const tc_config *src, jerr *err) {
    tc_config_init(dst);
    dst->tls = src->tls;
    const struct {
        const char *name;
        const char *value;
    } f[] = {
        {"address", src->address}, {"namespace", src->namespace_}, {"task_queue", src->task_queue},
        {"api_key", src->api_key}, {"tls_ca", src->tls_ca}, {"tls_client_cert", src->tls_client_cert},
        {"tls_client_key", src->tls_client_key}, {"tls_server_name", src->tls_server_name},
        {"identity", src->identity},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (tc_config_set(dst, f[i].name, f[i].value, err) != 0) {
            tc_config_free(dst);
            return -1;
        }
    }
    return 0;
}

static const char *address_port(const char *address) {
    const char *p = address[0] == '[' ? strstr(address, "]:") : strrchr(address, ':');
    if (p == NULL) return "7233";
    return address[0] == '[' ? p + 2 : p + 1;
}

tc_conn *tc_conn_new(const tc_config *cfg, jerr *err) {
    if (cfg->address == NULL || cfg->namespace_ == NULL || cfg->tls < 0) {
        jerr_set(err, JERR_INTERNAL, "Temporal configuration used before tc_config_check");
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        jerr_set(err, JERR_INTERNAL, "cannot initialise libcurl");
        return NULL;
    }
    tc_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        curl_global_cleanup();
        jerr_oom(err, "creating a Temporal connection");
        return NULL;
    }
    if (copy_config(&c->cfg, cfg, err) != 0) {
        free(c);
        curl_global_cleanup();
        return NULL;
    }
    c->wake_fd = -1;
    c->rng = (uint64_t)time_now_nanos() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
    if (c->rng == 0) c->rng = 1;
    jbuf url;
    jbuf_init(&url, 4096);
    const bool tls = cfg->tls > 0;
    /* With a server-name override the URL carries that name (SNI, certificate
     * check, :authority) and CONNECT_TO sends the connection to the address. */
    if (tls && cfg->tls_server_name != NULL) {
        const char *port = address_port(cfg->address);
        jbuf_printf(&url, "https://%s:%s" TC_SERVICE_PATH, cfg->tls_server_name, port);
        char mapping[1024];
        snprintf(mapping, sizeof mapping, "%s:%s:%s", cfg->tls_server_name, port, cfg->address);
        c->connect_to = curl_slist_append(NULL, mapping);
    } else {
        jbuf_printf(&url, "%s://%s" TC_SERVICE_PATH, tls ? "https" : "http", cfg->address);
    }
    c->url_base = jbuf_take(&url, NULL);
    c->multi = curl_multi_init();
    if (c->url_base == NULL || c->multi == NULL ||
        (tls && cfg->tls_server_name != NULL && c->connect_to == NULL)) {
        tc_conn_free(c);
        jerr_oom(err, "creating a Temporal connection");
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, tls ? CURLPIPE_MULTIPLEX : CURLPIPE_NOTHING);
    if (!tls) {
        c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (c->wake_fd < 0) {
            jerr_set(err, JERR_INTERNAL, "cannot create an eventfd for a Temporal connection: %s", strerror(errno));
            tc_conn_free(c);
            return NULL;
        }
        c->h2 = h2_pool_get(cfg->address, err);
        if (c->h2 == NULL) {
            tc_conn_free(c);
            return NULL;
        }
    }
    return c;
}

const tc_config *tc_conn_config(const tc_conn *c) { return &c->cfg; }

long tc_conn_connects(const tc_conn *c) { return c->connects; }

void tc_conn_free(tc_conn *c) {
    if (c == NULL) return;
    while (c->calls != NULL) tc_call_free(c->calls);
    h2_pool_put(c->h2);
    if (c->wake_fd >= 0) close(c->wake_fd);
    if (c->multi != NULL) curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->connect_to);
    free(c->url_base);
    tc_config_free(&c->cfg);
    free(c);
    curl_global_cleanup();
}

/* ------------------------------------------------------------ one attempt */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
    tc_call *call = userdata;
    size_t n;
    if (!size_mul(size, nmemb, &n)) return 0;
    /* An HTTP error page (a proxy's 403, say) is not gRPC: skip it; the
     * status comes from the HTTP status line. */
    if (call->meta.http_status != 200 || !call->meta.grpc_content_type) return n;
    if (tc_deframer_feed(&call->deframer, ptr, n, &call->body_err) != 0) {
        call->body_failed = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata) {
    tc_call *call = userdata;
    size_t n;
    if (!size_mul(size, nmemb, &n)) return 0;
    tc_meta_line(&call->meta, ptr, n);
    return n;
}

static void attempt_cleanup(tc_call *call) {
    if (call->on_h2) {
        h2_cancel(call->conn->h2, &call->h2); /* no-op when done */
        if (call->h2.opened_connection) call->conn->connects++;
        call->on_h2 = false;
    }
    if (call->easy != NULL) {
        long connects = 0;
        if (curl_easy_getinfo(call->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK)
            call->conn->connects += connects;
        curl_multi_remove_handle(call->conn->multi, call->easy);
        curl_easy_cleanup(call->easy);
        call->easy = NULL;
    }
    curl_slist_free_all(call->headers);
    call->headers = NULL;
    tc_deframer_free(&call->deframer);
    tc_meta_free(&call->meta);
}

static int add_header(struct curl_slist **list, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int add_header(struct curl_slist **list, const char *fmt, ...) {
    char line[TC_MAX_HEADER];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line) return -1;
    struct curl_slist *next = curl_slist_append(*list, line);
    /* Wipe the stack copy: it may hold the bearer key. */
    memset(line, 0, sizeof line);
    if (next == NULL) return -1;
    *list = next;
    return 0;
}

static int build_headers(tc_call *call) {
    const tc_config *cfg = &call->conn->cfg;
    struct curl_slist **h = &call->headers;
    int64_t t = call->opts.timeout_ms;
    if (t > 99999999) t = 99999999; /* grpc-timeout allows at most 8 digits */
    if (add_header(h, "content-type: application/grpc") != 0 || add_header(h, "te: trailers") != 0 ||
        add_header(h, "grpc-timeout: %lldm", (long long)t) != 0 ||
        add_header(h, "temporal-namespace: %s", cfg->namespace_) != 0 ||
        add_header(h, "client-name: jorch") != 0 ||
        add_header(h, "client-version: %s", JORCH_VERSION) != 0 ||
        add_header(h, "Accept:") != 0 || add_header(h, "Expect:") != 0)
        return -1;
    if (cfg->api_key != NULL && add_header(h, "authorization: Bearer %s", cfg->api_key) != 0) return -1;
    return 0;
}

static void finish_with(tc_call *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish_with(tc_call *call, int code, const char *fmt, ...) {
    tc_status_clear(&call->status);
    call->status.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->status.message, sizeof call->status.message, fmt, ap);
    va_end(ap);
    call->state = CALL_DONE;
}

/* A cleartext attempt: the same headers as build_headers, on tc_h2c.c. */
static void launch_h2(tc_call *call) {
    tc_conn *c = call->conn;
    const tc_config *cfg = &c->cfg;
    char path[sizeof TC_SERVICE_PATH + sizeof call->method];
    snprintf(path, sizeof path, TC_SERVICE_PATH "%s", call->method);
    int64_t t = call->opts.timeout_ms;
    if (t > 99999999) t = 99999999; /* grpc-timeout allows at most 8 digits */
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%lldm", (long long)t);
    char bearer[TC_MAX_HEADER];
    tc_h2_header h[8] = {
        {"content-type", "application/grpc", false}, {"te", "trailers", false},
        {"grpc-timeout", timeout, false}, {"temporal-namespace", cfg->namespace_, false},
        {"client-name", "jorch", false}, {"client-version", JORCH_VERSION, false},
        {"user-agent", "jorch/" JORCH_VERSION, false},
    };
    size_t n = 7;
    if (cfg->api_key != NULL) {
        snprintf(bearer, sizeof bearer, "Bearer %s", cfg->api_key);
        h[n++] = (tc_h2_header){"authorization", bearer, true};
    }
    call->h2.meta = &call->meta;
    call->h2.deframer = &call->deframer;
    call->h2.body_err = &call->body_err;
    call->h2.body_failed = &call->body_failed;
    call->h2.body = call->frame;
    call->h2.body_len = call->frame_len;
    call->h2.wake_fd = c->wake_fd;
    call->h2_timed_out = false;
    call->on_h2 = true;
    call->state = CALL_RUNNING;
    call->attempt_start_ms = mono_ms();
    h2_start(c->h2, &call->h2, path, h, n);
    /* nghttp2 copied the headers; wipe the stack copy of the key. */
    memset(bearer, 0, sizeof bearer);
}

static int launch_attempt(tc_call *call) {
    tc_conn *c = call->conn;
    const bool tls = c->cfg.tls > 0;
    char url[4096];
    int n = snprintf(url, sizeof url, "%s%s", c->url_base, call->method);
    call->attempt++;
    call->body_failed = false;
    call->unprocessed = false;
    call->errbuf[0] = '\0';
    jerr_set(&call->body_err, JERR_OK, "%s", "");
    tc_deframer_init(&call->deframer, TC_MAX_MESSAGE);
    tc_meta_init(&call->meta);
    if (c->h2 != NULL) {
        launch_h2(call);
        return 0;
    }
    call->easy = curl_easy_init();
    if (n < 0 || (size_t)n >= sizeof url || call->easy == NULL || build_headers(call) != 0) {
        attempt_cleanup(call);
        finish_with(call, TC_INTERNAL, "out of memory preparing the %s call", call->method);
        return -1;
    }
    CURL *e = call->easy;
    int64_t t = call->opts.timeout_ms;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* gRPC goes direct; ignore *_proxy variables */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)call->frame);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->frame_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "jorch/" JORCH_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, call);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(t + TC_CLIENT_GRACE_MS));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(t < TC_CONNECT_TIMEOUT_MS ? t : TC_CONNECT_TIMEOUT_MS));
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (tls) {
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
        if (c->cfg.tls_ca != NULL) curl_easy_setopt(e, CURLOPT_CAINFO, c->cfg.tls_ca);
        if (c->cfg.tls_client_cert != NULL) {
            curl_easy_setopt(e, CURLOPT_SSLCERT, c->cfg.tls_client_cert);
            curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
            curl_easy_setopt(e, CURLOPT_SSLKEY, c->cfg.tls_client_key);
            curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
        }
        if (c->connect_to != NULL) curl_easy_setopt(e, CURLOPT_CONNECT_TO, c->connect_to);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    }
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        attempt_cleanup(call);
        finish_with(call, TC_INTERNAL, "cannot start the %s call in libcurl", call->method);
        return -1;
    }
    call->state = CALL_RUNNING;
    call->attempt_start_ms = mono_ms();
    return 0;
}

static int code_from_curl(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_PARTIAL_FILE:
        return TC_UNAVAILABLE;
    case CURLE_OPERATION_TIMEDOUT:
        return TC_DEADLINE_EXCEEDED;
    default:
        return TC_UNKNOWN;
    }
}

/* True when a failed TLS handshake's message says the bytes that came back
 * were not TLS at all (OpenSSL and GnuTLS wordings): typically a cleartext
 * gRPC server, reached with TLS switched on. */
static bool plaintext_reply(const char *msg) {
    static const char *const signs[] = {"wrong version number", "packet length too long", "record layer failure",
                                        "unexpected TLS packet", "TLS packet with unexpected length"};
    for (size_t i = 0; i < sizeof signs / sizeof signs[0]; i++)
        if (strstr(msg, signs[i]) != NULL) return true;
    return false;
}

/* The status and message of a response that arrived (HTTP/2, headers in). */
static void settle_response(tc_call *call) {
    tc_status *st = &call->status;
    tc_status_from_meta(&call->meta, st);
    if (st->code != TC_OK) return;
    if (tc_deframer_finish(&call->deframer, &call->body_err) != 0) {
        st->code = TC_INTERNAL;
        snprintf(st->message, sizeof st->message, "%s", call->body_err.msg);
        return;
    }
    if (!call->deframer.have_message) {
        st->code = TC_INTERNAL;
        snprintf(st->message, sizeof st->message, "the server sent status OK but no response message");
        return;
    }
    if (!tc_pb_depth_ok(call->resp_desc, (const uint8_t *)call->deframer.body.data, call->deframer.body.len,
                        TC_MAX_PROTO_DEPTH)) {
        st->code = TC_INTERNAL;
        snprintf(st->message, sizeof st->message,
                 "refusing the %zu-byte %s response: malformed, or messages nested deeper than %d",
                 call->deframer.body.len, call->resp_desc->name, TC_MAX_PROTO_DEPTH);
        return;
    }
    call->resp = protobuf_c_message_unpack(call->resp_desc, NULL, call->deframer.body.len,
                                           (const uint8_t *)call->deframer.body.data);
    if (call->resp == NULL) {
        st->code = TC_INTERNAL;
        snprintf(st->message, sizeof st->message, "cannot decode the %zu-byte %s response",
                 call->deframer.body.len, call->resp_desc->name);
    }
}

/* Turn a finished curl attempt into the call's status (and response). */
static void settle_attempt(tc_call *call, CURLcode rc) {
    tc_status *st = &call->status;
    tc_status_clear(st);
    if (call->body_failed) {
        st->code = TC_INTERNAL;
        snprintf(st->message, sizeof st->message, "%s", call->body_err.msg);
        return;
    }
    if (rc != CURLE_OK && !call->meta.have_grpc_status) {
        st->transport = true;
        st->curl_code = (int)rc;
        st->code = code_from_curl(rc);
        /* A server honouring grpc-timeout may reset the stream instead of
         * answering DEADLINE_EXCEEDED: past our deadline, that is what it means. */
        bool past_deadline = mono_ms() - call->attempt_start_ms >= call->opts.timeout_ms;
        if (past_deadline && st->code == TC_UNAVAILABLE && rc != CURLE_COULDNT_CONNECT) {
            st->code = TC_DEADLINE_EXCEEDED;
            rc = CURLE_OPERATION_TIMEDOUT;
        }
        long os_errno = 0;
        curl_easy_getinfo(call->easy, CURLINFO_OS_ERRNO, &os_errno);
        if (rc == CURLE_OPERATION_TIMEDOUT)
            snprintf(st->message, sizeof st->message, "no answer within %lld ms",
                     (long long)call->opts.timeout_ms);
        else if (rc == CURLE_COULDNT_CONNECT && os_errno != 0)
            snprintf(st->message, sizeof st->message, "%s", strerror((int)os_errno));
        else
            snprintf(st->message, sizeof st->message, "%s",
                     call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
        /* curl's buffer ends some messages with a newline. */
        size_t len = strlen(st->message);
        while (len > 0 && (st->message[len - 1] == '\n' || st->message[len - 1] == '\r'))
            st->message[--len] = '\0';
        if (rc == CURLE_SSL_CONNECT_ERROR && plaintext_reply(st->message)) {
            st->plaintext_peer = true;
            snprintf(st->message + len, sizeof st->message - len,
                     " (the server does not speak TLS: for a server without TLS, such as "
                     "`temporal server start-dev`, set TEMPORAL_TLS=false or temporal.tls: false)");
        }
        return;
    }
    long version = 0;
    curl_easy_getinfo(call->easy, CURLINFO_HTTP_VERSION, &version);
    if (version != CURL_HTTP_VERSION_2_0 && call->meta.http_status != 0) {
        st->code = TC_UNAVAILABLE;
        st->transport = true;
        snprintf(st->message, sizeof st->message,
                 "the server answered without HTTP/2 (HTTP status %d); gRPC needs HTTP/2",
                 call->meta.http_status);
        return;
    }
    settle_response(call);
}

/* A cleartext attempt's outcome, as settle_attempt's for curl. */
static void settle_h2(tc_call *call) {
    tc_status *st = &call->status;
    const tc_h2_attempt *a = &call->h2;
    tc_status_clear(st);
    if (call->body_failed) {
        st->code = TC_INTERNAL;
        snprintf(st->message, sizeof st->message, "%s", call->body_err.msg);
        return;
    }
    if (a->fail == H2_LIMIT || a->fail == H2_INTERNAL) {
        st->code = TC_INTERNAL;
        snprintf(st->message, sizeof st->message, "%s", a->msg);
        return;
    }
    if (call->h2_timed_out || (a->fail != H2_OK && !call->meta.have_grpc_status)) {
        st->transport = true;
        st->code = TC_UNAVAILABLE;
        snprintf(st->message, sizeof st->message, "%s", a->msg);
        /* Errors as libcurl would have given them, for callers that tell
         * kinds of transport failure apart by CURLcode. */
        st->curl_code = a->fail == H2_CONNECT ? CURLE_COULDNT_CONNECT
                        : a->fail == H2_RESET ? CURLE_HTTP2_STREAM
                        : a->fail == H2_PROTOCOL ? CURLE_HTTP2 : CURLE_RECV_ERROR;
        call->unprocessed = a->unprocessed && a->fail != H2_CONNECT;
        /* A server honouring grpc-timeout may reset the stream instead of
         * answering DEADLINE_EXCEEDED: past our deadline, that is what it means. */
        bool past_deadline = mono_ms() - call->attempt_start_ms >= call->opts.timeout_ms;
        if (call->h2_timed_out || (past_deadline && a->fail != H2_CONNECT && !a->unprocessed)) {
            st->code = TC_DEADLINE_EXCEEDED;
            st->curl_code = CURLE_OPERATION_TIMEDOUT;
            snprintf(st->message, sizeof st->message, "no answer within %lld ms", (long long)call->opts.timeout_ms);
        }
        return;
    }
    if (call->meta.http_status == 0) {
        st->transport = true;
        st->code = TC_UNAVAILABLE;
        st->curl_code = CURLE_GOT_NOTHING;
        snprintf(st->message, sizeof st->message, "the server ended the call without a response");
        return;
    }
    settle_response(call);
}
static bool should_retry(const tc_call *call) {
    const tc_status *st = &call->status;
    if (call->attempt >= call->opts.max_attempts) return false;
    /* Refused before the server processed it (GOAWAY, REFUSED_STREAM): any
     * call may go again, as gRPC's transparent retry does. */
    if (call->unprocessed) return true;
    if (!call->opts.retry_safe) return false;
    return st->code == TC_UNAVAILABLE || st->code == TC_RESOURCE_EXHAUSTED;
}

static int64_t backoff_ms(tc_call *call) {
    int64_t d = TC_BACKOFF_INITIAL_MS;
    for (int i = 1; i < call->attempt && d < TC_BACKOFF_MAX_MS; i++) d *= 2;
    if (d > TC_BACKOFF_MAX_MS) d = TC_BACKOFF_MAX_MS;
    /* Jitter in [d/2, d): many clients retrying together spread out. */
    return d / 2 + (int64_t)(conn_random(call->conn) % (uint64_t)(d / 2 + 1));
}

static void attempt_settled(tc_call *call) {
    attempt_cleanup(call);
    redact(call->conn, call->status.message);
    if (call->status.code != TC_OK && should_retry(call)) {
        jlog(JLOG_DEBUG, "%s: %s, retrying (attempt %d of %d)", call->method, call->status.message,
             call->attempt + 1, call->opts.max_attempts);
        call->state = CALL_BACKOFF;
        call->retry_at_ms = mono_ms() + backoff_ms(call);
        return;
    }
    call->state = CALL_DONE;
}

static void on_attempt_done(tc_call *call, CURLcode rc) {
    settle_attempt(call, rc);
    attempt_settled(call);
}

/* ----------------------------------------------------------------- calls */

tc_call *tc_call_start(tc_conn *c, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc,
                       const tc_call_opts *opts, jerr *err) {
    tc_call *call = calloc(1, sizeof *call);
    if (call == NULL) {
        jerr_oom(err, "starting a Temporal call");
        return NULL;
    }
    if (strlen(method) >= sizeof call->method) {
        free(call);
        jerr_set(err, JERR_INTERNAL, "gRPC method name '%.64s...' is too long", method);
        return NULL;
    }
    snprintf(call->method, sizeof call->method, "%s", method);
    call->conn = c;
    call->resp_desc = resp_desc;
    if (opts != NULL) call->opts = *opts;
    if (call->opts.timeout_ms <= 0) call->opts.timeout_ms = TC_DEFAULT_TIMEOUT_MS;
    if (call->opts.max_attempts <= 0) call->opts.max_attempts = TC_DEFAULT_ATTEMPTS;
    size_t packed = protobuf_c_message_get_packed_size(req);
    unsigned char *body = malloc(packed > 0 ? packed : 1);
    if (body == NULL) {
        free(call);
        jerr_oom(err, "packing a Temporal request");
        return NULL;
    }
    protobuf_c_message_pack(req, body);
    int rc = tc_frame(body, packed, TC_MAX_MESSAGE, &call->frame, &call->frame_len, err);
    free(body);
    if (rc != 0) {
        free(call);
        jerr_prefix(err, "%s", method);
        return NULL;
    }
    call->next = c->calls;
    if (c->calls != NULL) c->calls->prev = call;
    c->calls = call;
    tc_status_init(&call->status);
    launch_attempt(call); /* a failure leaves the call done with its status */
    return call;
}

static void launch_due_retries(tc_conn *c, int64_t now, int64_t *next_due) {
    for (tc_call *call = c->calls; call != NULL; call = call->next) {
        if (call->state != CALL_BACKOFF) continue;
        if (call->retry_at_ms <= now)
            launch_attempt(call);
        else if (*next_due < 0 || call->retry_at_ms < *next_due)
            *next_due = call->retry_at_ms;
    }
}

static int drive(tc_conn *c, jerr *err) {
    int running = 0;
    /* Twice: with several transfers on one multi handle, libcurl 7.88 can
     * leave a new HTTP/2 request unflushed after one perform, and no socket
     * event comes to wake us; measured stalls of a full poll wait without it. */
    CURLMcode mc = curl_multi_perform(c->multi, &running);
    if (mc == CURLM_OK) mc = curl_multi_perform(c->multi, &running);
    if (mc != CURLM_OK)
        return jerr_set(err, JERR_INTERNAL, "libcurl failed driving Temporal calls: %s", curl_multi_strerror(mc));
    int left = 0;
    CURLMsg *msg = curl_multi_info_read(c->multi, &left);
    while (msg != NULL) {
        if (msg->msg == CURLMSG_DONE) {
            tc_call *call = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
            CURLcode rc = msg->data.result;
            if (call != NULL) on_attempt_done(call, rc);
        }
        msg = curl_multi_info_read(c->multi, &left);
    }
    return 0;
}

static int count_pending(const tc_conn *c) {
    int n = 0;
    for (const tc_call *call = c->calls; call != NULL; call = call->next)
        if (call->state != CALL_DONE) n++;
    return n;
}

/* Cleartext: settle attempts the pool finished (whichever thread did the
 * I/O) and abandon those past the client-side deadline. Returns the
 * earliest deadline still ahead, or -1. */
static int64_t collect_h2(tc_conn *c) {
    int64_t now = mono_ms(), next = -1;
    for (tc_call *call = c->calls; call != NULL; call = call->next) {
        if (call->state != CALL_RUNNING || !call->on_h2) continue;
        if (!atomic_load_explicit(&call->h2.done, memory_order_acquire)) {
            int64_t deadline = call->attempt_start_ms + call->opts.timeout_ms + TC_CLIENT_GRACE_MS;
            if (now < deadline) {
                if (next < 0 || deadline < next) next = deadline;
                continue;
            }
            h2_cancel(c->h2, &call->h2);
            /* It may have finished just before the cancel: then that counts. */
            if (!atomic_load_explicit(&call->h2.done, memory_order_acquire)) call->h2_timed_out = true;
        }
        settle_h2(call);
        attempt_settled(call);
    }
    return next;
}

static int perform_h2(tc_conn *c, int wait_ms) {
    int64_t next_due = -1;
    launch_due_retries(c, mono_ms(), &next_due);
    h2_pump(c->h2, c->wake_fd);
    int64_t deadline = collect_h2(c);
    if (wait_ms <= 0 || count_pending(c) == 0) return count_pending(c);
    int64_t now = mono_ms();
    int64_t wait = wait_ms < TC_MAX_POLL_WAIT_MS ? wait_ms : TC_MAX_POLL_WAIT_MS;
    next_due = -1;
    launch_due_retries(c, now, &next_due);
    if (next_due >= 0 && next_due - now < wait) wait = next_due > now ? next_due - now : 0;
    if (deadline >= 0 && deadline - now < wait) wait = deadline > now ? deadline - now : 0;
    struct pollfd fds[16];
    size_t n = h2_pollfds(c->h2, fds, sizeof fds / sizeof fds[0] - 1);
    fds[n].fd = c->wake_fd;
    fds[n].events = POLLIN;
    fds[n].revents = 0;
    /* An interrupted wait is only a shorter one. */
    if (poll(fds, (nfds_t)(n + 1), (int)wait) > 0 && (fds[n].revents & POLLIN) != 0) {
        uint64_t v;
        ssize_t r = read(c->wake_fd, &v, sizeof v);
        (void)r;
    }
    next_due = -1;
    launch_due_retries(c, mono_ms(), &next_due);
    h2_pump(c->h2, c->wake_fd);
    collect_h2(c);
    return count_pending(c);
}

int tc_conn_perform(tc_conn *c, int wait_ms, jerr *err) {
    if (c->h2 != NULL) return perform_h2(c, wait_ms);
    int64_t next_due = -1;
    launch_due_retries(c, mono_ms(), &next_due);
    if (drive(c, err) != 0) return -1;
    if (wait_ms > 0 && count_pending(c) > 0) {
        /* Bounded even so, in case another stall of that kind remains. */
        int64_t wait = wait_ms < TC_MAX_POLL_WAIT_MS ? wait_ms : TC_MAX_POLL_WAIT_MS;
        next_due = -1;
        int64_t now = mono_ms();
        launch_due_retries(c, now, &next_due);
        if (next_due >= 0 && next_due - now < wait) wait = next_due - now > 0 ? next_due - now : 0;
        CURLMcode mc = curl_multi_poll(c->multi, NULL, 0, (int)wait, NULL);
        if (mc != CURLM_OK)
            return jerr_set(err, JERR_INTERNAL, "libcurl failed waiting on Temporal calls: %s",
                            curl_multi_strerror(mc));
        next_due = -1;
        launch_due_retries(c, mono_ms(), &next_due);
        if (drive(c, err) != 0) return -1;
    }
    return count_pending(c);
}

bool tc_call_done(const tc_call *call) { return call->state == CALL_DONE; }

int tc_call_result(tc_call *call, ProtobufCMessage **resp, tc_status *st) {
    *resp = NULL;
    tc_status_clear(st);
    if (call->state != CALL_DONE) {
        st->code = TC_INTERNAL;
        snprintf(st->message, sizeof st->message, "the %s call has not finished", call->method);
        return -1;
    }
    *st = call->status;
    tc_status_init(&call->status); /* details now belong to st */
    *resp = call->resp;
    call->resp = NULL;
    return st->code == TC_OK ? 0 : -1;
}

void tc_call_free(tc_call *call) {
    if (call == NULL) return;
    tc_conn *c = call->conn;
    attempt_cleanup(call);
    if (call->prev != NULL) call->prev->next = call->next;
    else c->calls = call->next;
    if (call->next != NULL) call->next->prev = call->prev;
    if (call->resp != NULL) protobuf_c_message_free_unpacked(call->resp, NULL);
    tc_status_clear(&call->status);
    free(call->frame);
    free(call);
}

int tc_unary(tc_conn *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, const tc_call_opts *opts,
             ProtobufCMessage **resp, tc_status *st) {
    jerr err = {0};
    *resp = NULL;
    tc_status_clear(st);
    tc_call *call = tc_call_start(c, method, req, resp_desc, opts, &err);
    if (call == NULL) {
        st->code = err.code == JERR_USAGE ? TC_INVALID_ARGUMENT : TC_INTERNAL;
        snprintf(st->message, sizeof st->message, "%s", err.msg);
        return -1;
    }
    while (!tc_call_done(call)) {
        if (tc_conn_perform(c, 1000, &err) < 0) {
            tc_call_free(call);
            st->code = TC_INTERNAL;
            snprintf(st->message, sizeof st->message, "%s", err.msg);
            return -1;
        }
    }
    int rc = tc_call_result(call, resp, st);
    tc_call_free(call);
    return rc;
}
