/*
 * test_tc_h2c.c - the cleartext transport (tc_h2c.c) against a scripted
 * HTTP/2 server in a thread of this process (libnghttp2's server side), for
 * what a real Temporal server will not do on demand: refused streams,
 * GOAWAY, resets, dropped connections, oversized headers and messages,
 * silence past the deadline, HTTP/1 and TLS answers. The method name of each
 * call tells the server how to misbehave. No network beyond loopback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "temporal/api/workflowservice/v1/request_response.pb-c.h"
#include "temporal/temporal.h"
#include "test.h"

/* ----------------------------------------------------- the fake server */

enum { MODE_H2, MODE_HTTP1, MODE_TLS };

static int listen_fd = -1;
static int server_port;
static atomic_int server_mode;
static atomic_int accepts;      /* connections accepted */
static atomic_int requests;     /* request streams seen */
static atomic_int refused_once; /* "Refuse" refused the first time only */
static atomic_bool stopping;
static pthread_t server_tid;

typedef struct sstream sstream;

typedef struct sconn {
    nghttp2_session *sess;
    sstream *streams;       /* open streams, freed with the session */
    int fd;
    bool goaway_after;      /* send GOAWAY once this response is out */
    bool close_now;         /* drop the TCP connection */
} sconn;

struct sstream {
    sstream *prev, *next;
    char path[256];
    const unsigned char *body;
    size_t body_len, off;
    bool trailers;
};

static const unsigned char empty_frame[5] = {0, 0, 0, 0, 0};
static const unsigned char huge_frame[5] = {0, 0x10, 0, 0, 0}; /* announces 256 MiB */

static ssize_t s_read(nghttp2_session *sess, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                      nghttp2_data_source *src, void *ud) {
    sstream *st = src->ptr;
    size_t n = st->body_len - st->off < len ? st->body_len - st->off : len;
    memcpy(buf, st->body + st->off, n);
    st->off += n;
    if (st->off == st->body_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->trailers) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_nv t[] = {{(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, 0}};
            nghttp2_submit_trailer(sess, id, t, 1);
        }
    }
    return (ssize_t)n;
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

static void respond(sconn *c, int32_t id, sstream *st) {
    const char *m = strrchr(st->path, '/');
    m = m != NULL ? m + 1 : st->path;
    atomic_fetch_add(&requests, 1);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = s_read};
    if (strcmp(m, "Ok") == 0 || strcmp(m, "GoawayAfter") == 0 || strcmp(m, "Huge") == 0 ||
        (strcmp(m, "Refuse") == 0 && atomic_exchange(&refused_once, 1) == 1)) {
        nghttp2_nv h[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
        st->body = strcmp(m, "Huge") == 0 ? huge_frame : empty_frame;
        st->body_len = 5;
        st->trailers = true;
        nghttp2_submit_response(c->sess, id, h, 2, &prd);
        if (strcmp(m, "GoawayAfter") == 0) c->goaway_after = true;
    } else if (strcmp(m, "Refuse") == 0) {
        nghttp2_submit_rst_stream(c->sess, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    } else if (strcmp(m, "TrailersOnly") == 0) {
        nghttp2_nv h[] = {NV(":status", "200"), NV("content-type", "application/grpc"), NV("grpc-status", "5"),
                          NV("grpc-message", "no%20such%20thing")};
        nghttp2_submit_response(c->sess, id, h, 4, NULL);
    } else if (strcmp(m, "Http403") == 0) {
        nghttp2_nv h[] = {NV(":status", "403"), NV("content-type", "text/html")};
        st->body = (const unsigned char *)"forbidden";
        st->body_len = 9;
        nghttp2_submit_response(c->sess, id, h, 2, &prd);
    } else if (strcmp(m, "BigHeaders") == 0) {
        /* 2 x 60 KiB: within HPACK's and nghttp2's limits, beyond the client's 100 KiB. */
        static char big[60 * 1024];
        memset(big, 'x', sizeof big - 1);
        nghttp2_nv h[] = {NV(":status", "200"), NV("content-type", "application/grpc"), NV("x-big1", big),
                          NV("x-big2", big)};
        nghttp2_submit_response(c->sess, id, h, 4, NULL);
    } else if (strcmp(m, "Reset") == 0) {
        nghttp2_submit_rst_stream(c->sess, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
    } else if (strcmp(m, "Close") == 0) {
        c->close_now = true;
    }
    /* "Silent": no answer at all. */
}

static int s_begin(nghttp2_session *sess, const nghttp2_frame *f, void *ud) {
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    sconn *c = ud;
    sstream *st = calloc(1, sizeof *st);
    if (st == NULL) return NGHTTP2_ERR_CALLBACK_FAILURE;
    st->next = c->streams;
    if (c->streams != NULL) c->streams->prev = st;
    c->streams = st;
    nghttp2_session_set_stream_user_data(sess, f->hd.stream_id, st);
    return 0;
}

static int s_header(nghttp2_session *sess, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                    const uint8_t *value, size_t vlen, uint8_t flags, void *ud) {
    sstream *st = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id);
    if (st != NULL && nlen == 5 && memcmp(name, ":path", 5) == 0)
        snprintf(st->path, sizeof st->path, "%.*s", (int)vlen, (const char *)value);
    return 0;
}

static int s_frame(nghttp2_session *sess, const nghttp2_frame *f, void *ud) {
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        sstream *st = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id);
        if (st != NULL) respond(ud, f->hd.stream_id, st);
    }
    return 0;
}

static void sstream_free(sconn *c, sstream *st) {
    if (st->prev != NULL) st->prev->next = st->next;
    else c->streams = st->next;
    if (st->next != NULL) st->next->prev = st->prev;
    free(st);
}

static int s_close(nghttp2_session *sess, int32_t id, uint32_t code, void *ud) {
    sstream *st = nghttp2_session_get_stream_user_data(sess, id);
    if (st != NULL) sstream_free(ud, st);
    nghttp2_session_set_stream_user_data(sess, id, NULL);
    return 0;
}

static void serve_h2(int fd) {
    sconn c = {.fd = fd};
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, s_begin);
    nghttp2_session_callbacks_set_on_header_callback(cb, s_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, s_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, s_close);
    /* A header block larger than nghttp2's default 64 KiB may be sent: the
     * client's own limit is under test. */
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_max_send_header_block_length(opt, 1 << 20);
    nghttp2_session_server_new2(&c.sess, cb, &c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(c.sess, NGHTTP2_FLAG_NONE, NULL, 0);
    while (!atomic_load(&stopping) && !c.close_now &&
           (nghttp2_session_want_read(c.sess) || nghttp2_session_want_write(c.sess))) {
        const uint8_t *out;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(c.sess, &out)) > 0)
            if (send(fd, out, (size_t)n, MSG_NOSIGNAL) != n) goto done;
        if (c.goaway_after) {
            nghttp2_submit_goaway(c.sess, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c.sess),
                                  NGHTTP2_NO_ERROR, NULL, 0);
            while ((n = nghttp2_session_mem_send(c.sess, &out)) > 0) send(fd, out, (size_t)n, MSG_NOSIGNAL);
            break;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0) continue;
        uint8_t buf[16384];
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0 || nghttp2_session_mem_recv(c.sess, buf, (size_t)r) < 0) break;
    }
done:
    nghttp2_session_del(c.sess);
    while (c.streams != NULL) sstream_free(&c, c.streams);
}

/* Close like a polite server: our side first, then read until the client
 * closes too (closing with unread bytes would reset the connection, and
 * the client could lose what was sent before the reset). */
static void close_gently(int fd) {
    shutdown(fd, SHUT_WR);
    char buf[4096];
    for (int i = 0; i < 50; i++) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 20) > 0 && recv(fd, buf, sizeof buf, 0) <= 0) break;
    }
    close(fd);
}

static void *server_main(void *arg) {
    while (!atomic_load(&stopping)) {
        struct pollfd pf = {.fd = listen_fd, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0) continue;
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) continue;
        atomic_fetch_add(&accepts, 1);
        int mode = atomic_load(&server_mode);
        if (mode == MODE_HTTP1) {
            static const char r[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            char buf[256];
            ssize_t got = recv(fd, buf, sizeof buf, 0);
            (void)got;
            send(fd, r, sizeof r - 1, MSG_NOSIGNAL);
        } else if (mode == MODE_TLS) {
            static const unsigned char alert[] = {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46};
            send(fd, alert, sizeof alert, MSG_NOSIGNAL);
        } else {
            serve_h2(fd);
        }
        close_gently(fd);
    }
    return NULL;
}

static void server_start(void) {
    if (listen_fd >= 0) return;
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    CHECK(bind(listen_fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(listen_fd, 16) == 0 &&
          getsockname(listen_fd, (struct sockaddr *)&a, &len) == 0);
    server_port = ntohs(a.sin_port);
    pthread_create(&server_tid, NULL, server_main, NULL);
}

/* ------------------------------------------------------------ the client */

static tc_conn *conn_new(void) {
    server_start();
    tc_config cfg;
    tc_config_init(&cfg);
    jerr err = {0};
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", server_port);
    CHECK(tc_config_set(&cfg, "address", addr, &err) == 0 && tc_config_set(&cfg, "tls", "false", &err) == 0 &&
          tc_config_check(&cfg, &err) == 0);
    tc_conn *c = tc_conn_new(&cfg, &err);
    CHECK_MSG(c != NULL, "%s", err.msg);
    tc_config_free(&cfg);
    return c;
}

static int call(tc_conn *c, const char *method, int64_t timeout_ms, bool retry_safe, tc_status *st) {
    Temporal__Api__Workflowservice__V1__GetSystemInfoRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_SYSTEM_INFO_REQUEST__INIT;
    tc_call_opts opts = {.timeout_ms = timeout_ms, .retry_safe = retry_safe};
    ProtobufCMessage *resp = NULL;
    tc_status_clear(st);
    int rc = tc_unary(c, method, &req.base, &temporal__api__workflowservice__v1__get_system_info_response__descriptor,
                      &opts, &resp, st);
    if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

static void test_calls_share_one_connection(void) {
    tc_conn *c = conn_new();
    tc_status st;
    tc_status_init(&st);
    int before = atomic_load(&accepts);
    for (int i = 0; i < 50; i++) CHECK_MSG(call(c, "Ok", 0, false, &st) == 0, "%s", st.message);
    CHECK_INT(atomic_load(&accepts) - before, 1);
    CHECK_INT(tc_conn_connects(c), 1);
    tc_status_clear(&st);
    tc_conn_free(c);
}

static void test_trailers_only_and_http_errors(void) {
    tc_conn *c = conn_new();
    tc_status st;
    tc_status_init(&st);
    CHECK(call(c, "TrailersOnly", 0, false, &st) != 0);
    CHECK_INT(st.code, TC_NOT_FOUND);
    CHECK(!st.transport);
    CHECK_STREQ(st.message, "no such thing");
    CHECK(call(c, "Http403", 0, false, &st) != 0);
    CHECK_INT(st.code, TC_PERMISSION_DENIED);
    /* Still the same connection. */
    CHECK(call(c, "Ok", 0, false, &st) == 0);
    CHECK_INT(tc_conn_connects(c), 1);
    tc_status_clear(&st);
    tc_conn_free(c);
}

static void test_refused_stream_is_sent_again(void) {
    tc_conn *c = conn_new();
    tc_status st;
    tc_status_init(&st);
    int before = atomic_load(&requests);
    /* Not retry_safe: only a stream the server never processed goes again. */
    CHECK_MSG(call(c, "Refuse", 0, false, &st) == 0, "%s", st.message);
    CHECK_INT(atomic_load(&requests) - before, 2);
    CHECK(call(c, "Reset", 0, false, &st) != 0);
    CHECK_INT(st.code, TC_UNAVAILABLE);
    CHECK(st.transport);
    CHECK_CONTAINS(st.message, "reset the stream");
    tc_status_clear(&st);
    tc_conn_free(c);
}

static void test_goaway_and_dropped_connection(void) {
    tc_conn *c = conn_new();
    tc_status st;
    tc_status_init(&st);
    int before = atomic_load(&accepts);
    CHECK_MSG(call(c, "GoawayAfter", 0, false, &st) == 0, "%s", st.message);
    CHECK_MSG(call(c, "Ok", 0, false, &st) == 0, "%s", st.message);
    CHECK_INT(atomic_load(&accepts) - before, 2);
    /* A connection dropped under a call: UNAVAILABLE, then a new connection. */
    CHECK(call(c, "Close", 0, false, &st) != 0);
    CHECK_INT(st.code, TC_UNAVAILABLE);
    CHECK(st.transport);
    CHECK_CONTAINS(st.message, "closed the connection");
    CHECK_MSG(call(c, "Ok", 0, false, &st) == 0, "%s", st.message);
    CHECK_INT(atomic_load(&accepts) - before, 3);
    tc_status_clear(&st);
    tc_conn_free(c);
}

static void test_limits(void) {
    tc_conn *c = conn_new();
    tc_status st;
    tc_status_init(&st);
    CHECK(call(c, "BigHeaders", 0, false, &st) != 0);
    CHECK_INT(st.code, TC_INTERNAL);
    CHECK_CONTAINS(st.message, "headers exceed");
    CHECK(call(c, "Huge", 0, false, &st) != 0);
    CHECK_INT(st.code, TC_INTERNAL);
    CHECK_CONTAINS(st.message, "268435456");
    /* Neither cost the connection. */
    CHECK(call(c, "Ok", 0, false, &st) == 0);
    CHECK_INT(tc_conn_connects(c), 1);
    tc_status_clear(&st);
    tc_conn_free(c);
}

static void test_deadline(void) {
    tc_conn *c = conn_new();
    tc_status st;
    tc_status_init(&st);
    int64_t t0 = time_now_nanos();
    CHECK(call(c, "Silent", 300, true, &st) != 0);
    int64_t ms = (time_now_nanos() - t0) / 1000000;
    CHECK_INT(st.code, TC_DEADLINE_EXCEEDED);
    CHECK_CONTAINS(st.message, "no answer within 300 ms");
    CHECK_MSG(ms >= 300 && ms < 5000, "%lld ms", (long long)ms);
    CHECK(call(c, "Ok", 0, false, &st) == 0);
    tc_status_clear(&st);
    tc_conn_free(c);
}

static void test_not_http2(void) {
    tc_conn *c = conn_new();
    tc_status st;
    tc_status_init(&st);
    atomic_store(&server_mode, MODE_HTTP1);
    CHECK(call(c, "Ok", 0, false, &st) != 0);
    CHECK_INT(st.code, TC_UNAVAILABLE);
    CHECK_CONTAINS(st.message, "HTTP/1, not HTTP/2");
    atomic_store(&server_mode, MODE_TLS);
    CHECK(call(c, "Ok", 0, false, &st) != 0);
    CHECK_CONTAINS(st.message, "TEMPORAL_TLS=true");
    atomic_store(&server_mode, MODE_H2);
    CHECK(call(c, "Ok", 0, false, &st) == 0);
    tc_status_clear(&st);
    tc_conn_free(c);
}

static void test_stop(void) {
    atomic_store(&stopping, true);
    pthread_join(server_tid, NULL);
    close(listen_fd);
}

TEST_MAIN(TEST_CASE(test_calls_share_one_connection), TEST_CASE(test_trailers_only_and_http_errors),
          TEST_CASE(test_refused_stream_is_sent_again), TEST_CASE(test_goaway_and_dropped_connection),
          TEST_CASE(test_limits), TEST_CASE(test_deadline), TEST_CASE(test_not_http2), TEST_CASE(test_stop))
