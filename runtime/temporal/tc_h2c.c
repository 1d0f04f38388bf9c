/*
 * tc_h2c.c - gRPC's HTTP/2 over cleartext TCP, driven with libnghttp2 on
 * plain non-blocking sockets (see tc_int.h for the model).
 *
 * Why not libcurl here: Debian's libcurl 7.88.1 fails the second request on
 * a reused prior-knowledge (h2c) connection, so with it every cleartext call
 * paid a TCP handshake, an HTTP/2 preface and a SETTINGS exchange. TLS stays
 * on libcurl, where multiplexing works.
 *
 * Connections ("links") of a pool: new streams go to the newest link that is
 * usable; a link that received GOAWAY drains (its streams finish, streams the
 * server says it never processed are failed as unprocessed, so the caller
 * sends them again) and is closed when empty; a link that breaks fails its
 * streams. The server's restarts therefore cost one failed attempt per call
 * in flight, and the next attempt connects afresh.
 *
 * Everything here runs under the pool lock, and nghttp2 is only ever called
 * with it held. No thread waits under the lock except in getaddrinfo.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "temporal/tc_int.h"

/* Links per pool: one in use, the rest draining after GOAWAY. */
#define H2_MAX_LINKS 8
#define H2_CONNECT_TIMEOUT_MS 10000
/* Response header blocks (headers + trailers) of one stream, in bytes as
 * HTTP/2 counts them (name + value + 32 each); beyond it the stream fails
 * alone. (nghttp2 itself ends the connection on a block of more than 8
 * CONTINUATION frames, about 144 KiB.) */
#define H2_MAX_RESPONSE_HEADERS (100 * 1024)
/* Flow-control windows we grant the server: large enough that a history
 * page arrives without waiting for WINDOW_UPDATEs; memory stays bounded by
 * TC_MAX_MESSAGE per call, as the deframer refuses anything larger. */
#define H2_STREAM_WINDOW (4 * 1024 * 1024)
#define H2_CONN_WINDOW (64 * 1024 * 1024)
/* Bytes read from one link per pump, so one busy link cannot keep a
 * thread from getting back to its own calls. */
#define H2_READ_BUDGET (4 * 1024 * 1024)
#define H2_MAX_HEADERS 24

enum { LINK_CONNECTING, LINK_READY, LINK_DRAINING };

typedef struct h2_link h2_link;

struct h2_stream {
    h2_link *link;
    h2_stream *prev, *next;
    int32_t id;
    tc_h2_attempt *att;        /* NULL once done or abandoned */
    size_t body_off;
    size_t header_bytes;
};

struct h2_link {
    h2_pool *pool;
    h2_link *next;
    int fd;
    int state;
    nghttp2_session *sess;
    struct addrinfo *ai_list, *ai_cur;
    int64_t connect_deadline;
    int connect_errno;         /* the last address's failure */
    h2_stream *streams;
    int nstreams;
    bool got_frame;            /* the server has spoken HTTP/2 */
    bool goaway;
    int32_t goaway_last_id;
    uint32_t local_error;      /* HTTP/2 error code of a GOAWAY we sent, 0 if none */
    unsigned char *out;        /* bytes nghttp2 produced that the socket did not take yet */
    size_t out_off, out_len, out_cap;
};

struct h2_pool {
    pthread_mutex_t mu;
    h2_pool *next;             /* in the registry */
    int refs;
    char address[272];
    char host[264];
    char port[8];
    h2_link *links;
    long connects;
    int pumper_wake_fd;        /* the wake fd of the thread doing I/O now */
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static h2_pool *registry;

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------- attempts */

static void att_result(tc_h2_attempt *att, int fail, bool unprocessed, int os_errno, const char *fmt, va_list ap) {
    att->fail = fail;
    att->unprocessed = unprocessed;
    att->os_errno = os_errno;
    att->msg[0] = '\0';
    if (fmt != NULL) vsnprintf(att->msg, sizeof att->msg, fmt, ap);
}

/* Hand a finished attempt back to its owner. After the release store the
 * owner may free att at once: nothing of it is read afterwards. */
static void att_done(h2_pool *p, tc_h2_attempt *att) {
    int wake = att->wake_fd;
    att->stream = NULL;
    atomic_store_explicit(&att->done, true, memory_order_release);
    if (wake >= 0 && wake != p->pumper_wake_fd) {
        uint64_t one = 1;
        /* An eventfd: a failed write means the counter is already non-zero. */
        ssize_t w = write(wake, &one, sizeof one);
        (void)w;
    }
}

static void finish_stream(h2_pool *p, h2_stream *s, int fail, bool unprocessed, int os_errno, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void finish_stream(h2_pool *p, h2_stream *s, int fail, bool unprocessed, int os_errno, const char *fmt, ...) {
    tc_h2_attempt *att = s->att;
    if (att == NULL) return;
    s->att = NULL;
    va_list ap;
    va_start(ap, fmt);
    att_result(att, fail, unprocessed, os_errno, fmt, ap);
    va_end(ap);
    att_done(p, att);
}

static void finish_unstarted(h2_pool *p, tc_h2_attempt *att, int fail, bool unprocessed, int os_errno,
                             const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void finish_unstarted(h2_pool *p, tc_h2_attempt *att, int fail, bool unprocessed, int os_errno,
                             const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    att_result(att, fail, unprocessed, os_errno, fmt, ap);
    va_end(ap);
    att_done(p, att);
}

static void stream_unlink_free(h2_stream *s) {
    h2_link *l = s->link;
    if (s->prev != NULL) s->prev->next = s->next;
    else l->streams = s->next;
    if (s->next != NULL) s->next->prev = s->prev;
    l->nstreams--;
    free(s);
}

/* ------------------------------------------------------ nghttp2 callbacks */

static int on_header(nghttp2_session *sess, const nghttp2_frame *frame, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud) {
    h2_link *l = ud;
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    h2_stream *s = nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id);
    if (s == NULL || s->att == NULL) return 0;
    size_t add = nlen + vlen + 32;
    if (add > H2_MAX_RESPONSE_HEADERS - s->header_bytes) {
        finish_stream(l->pool, s, H2_LIMIT, false, 0, "the server's response headers exceed %d bytes",
                      H2_MAX_RESPONSE_HEADERS);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    }
    s->header_bytes += add;
    tc_meta_header(s->att->meta, (const char *)name, nlen, (const char *)value, vlen);
    return 0;
}

static int on_data(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud) {
    h2_link *l = ud;
    h2_stream *s = nghttp2_session_get_stream_user_data(sess, id);
    if (s == NULL || s->att == NULL) return 0;
    tc_h2_attempt *att = s->att;
    /* An HTTP error page (a proxy's 403, say) is not gRPC: skip it; the
     * status comes from :status. */
    if (att->meta->http_status != 200 || !att->meta->grpc_content_type) return 0;
    if (tc_deframer_feed(att->deframer, data, len, att->body_err) != 0) {
        *att->body_failed = true;
        finish_stream(l->pool, s, H2_LIMIT, false, 0, "%s", att->body_err->msg);
        nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    }
    return 0;
}

static int on_frame(nghttp2_session *sess, const nghttp2_frame *frame, void *ud) {
    h2_link *l = ud;
    l->got_frame = true;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        /* Streams above last_stream_id are closed by nghttp2 with
         * REFUSED_STREAM (see on_close); the rest may finish here. */
        l->goaway = true;
        l->goaway_last_id = frame->goaway.last_stream_id;
        l->state = LINK_DRAINING;
    }
    return 0;
}

/* nghttp2 ends the session itself (GOAWAY with an error) on frames it
 * cannot accept; remember why, for the message. */
static int on_frame_sent(nghttp2_session *sess, const nghttp2_frame *frame, void *ud) {
    h2_link *l = ud;
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR)
        l->local_error = frame->goaway.error_code;
    return 0;
}

static int on_close(nghttp2_session *sess, int32_t id, uint32_t code, void *ud) {
    h2_link *l = ud;
    h2_stream *s = nghttp2_session_get_stream_user_data(sess, id);
    if (s == NULL) return 0;
    if (code == NGHTTP2_NO_ERROR)
        finish_stream(l->pool, s, H2_OK, false, 0, NULL);
    else if (code == NGHTTP2_REFUSED_STREAM)
        finish_stream(l->pool, s, H2_RESET, true, 0, "the server refused the stream (it did not process the call)");
    else
        finish_stream(l->pool, s, H2_RESET, false, 0, "the server reset the stream (HTTP/2 error %s)",
                      nghttp2_http2_strerror(code));
    nghttp2_session_set_stream_user_data(sess, id, NULL);
    stream_unlink_free(s);
    return 0;
}

/* The request's one DATA payload: the framed message. */
static ssize_t read_body(nghttp2_session *sess, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud) {
    h2_stream *s = src->ptr;
    if (s == NULL || s->att == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* abandoned */
    size_t left = s->att->body_len - s->body_off;
    size_t n = left < len ? left : len;
    if (n > 0) memcpy(buf, s->att->body + s->body_off, n);
    s->body_off += n;
    if (s->body_off == s->att->body_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ------------------------------------------------------------------ links */

static void link_free(h2_pool *p, h2_link *l) {
    for (h2_link **pp = &p->links; *pp != NULL; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    if (l->sess != NULL) nghttp2_session_del(l->sess);
    while (l->streams != NULL) stream_unlink_free(l->streams);
    if (l->fd >= 0) close(l->fd);
    if (l->ai_list != NULL) freeaddrinfo(l->ai_list);
    free(l->out);
    free(l);
}

/* The link is unusable: fail what runs on it and free it. Streams the
 * server cannot have seen (never connected, or above GOAWAY's last id) are
 * marked unprocessed. */
static void link_fail(h2_pool *p, h2_link *l, int fail, int os_errno, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void link_fail(h2_pool *p, h2_link *l, int fail, int os_errno, const char *fmt, ...) {
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    for (h2_stream *s = l->streams; s != NULL; s = s->next) {
        bool unseen = l->state == LINK_CONNECTING || (l->goaway && s->id > l->goaway_last_id);
        finish_stream(p, s, fail, unseen, os_errno, "%s", why);
    }
    link_free(p, l);
}

/* Start a TCP connect to the next address; 0 when under way (or done). */
static int link_connect_next(h2_link *l) {
    while (l->ai_cur != NULL) {
        struct addrinfo *ai = l->ai_cur;
        l->ai_cur = ai->ai_next;
        if (l->fd >= 0) close(l->fd);
        l->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (l->fd < 0) {
            l->connect_errno = errno;
            continue;
        }
        /* Calls are small and latency-bound: no Nagle delay. */
        int one = 1;
        setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(l->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        if (connect(l->fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) return 0;
        l->connect_errno = errno;
    }
    return -1;
}

static h2_link *link_new(h2_pool *p, int *os_errno, char *why, size_t whylen) {
    h2_link *l = calloc(1, sizeof *l);
    if (l == NULL) {
        snprintf(why, whylen, "out of memory opening a connection");
        return NULL;
    }
    l->pool = p;
    l->fd = -1;
    l->state = LINK_CONNECTING;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(p->host, p->port, &hints, &l->ai_list);
    if (rc != 0) {
        snprintf(why, whylen, "cannot resolve '%s': %s", p->host, gai_strerror(rc));
        free(l);
        return NULL;
    }
    l->ai_cur = l->ai_list;
    if (link_connect_next(l) != 0) {
        *os_errno = l->connect_errno;
        snprintf(why, whylen, "%s", strerror(l->connect_errno));
        link_free(p, l);
        return NULL;
    }
    l->connect_deadline = mono_ms() + H2_CONNECT_TIMEOUT_MS;
    nghttp2_session_callbacks *cb = NULL;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        snprintf(why, whylen, "out of memory opening a connection");
        link_free(p, l);
        return NULL;
    }
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_sent);
    rc = nghttp2_session_client_new(&l->sess, cb, l);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_RESPONSE_HEADERS},
    };
    if (rc != 0 || nghttp2_submit_settings(l->sess, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(l->sess, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0) {
        snprintf(why, whylen, "cannot set up an HTTP/2 session: out of memory");
        link_free(p, l);
        return NULL;
    }
    l->next = p->links;
    p->links = l;
    p->connects++;
    return l;
}

/* Write what nghttp2 has to send until the socket would block. */
static int link_flush(h2_link *l, int *os_errno, char *why, size_t whylen) {
    for (;;) {
        if (l->out_off < l->out_len) {
            ssize_t w = send(l->fd, l->out + l->out_off, l->out_len - l->out_off, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
            if (w < 0) {
                *os_errno = errno;
                snprintf(why, whylen, "sending to the server failed: %s", strerror(errno));
                return -1;
            }
            l->out_off += (size_t)w;
            continue;
        }
        const uint8_t *data = NULL;
        ssize_t n = nghttp2_session_mem_send(l->sess, &data);
        if (n < 0) {
            snprintf(why, whylen, "HTTP/2 session failed: %s", nghttp2_strerror((int)n));
            return -1;
        }
        if (n == 0) return 0;
        ssize_t w = send(l->fd, data, (size_t)n, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            *os_errno = errno;
            snprintf(why, whylen, "sending to the server failed: %s", strerror(errno));
            return -1;
        }
        if (w < 0) w = 0;
        if (w < n) {
            /* Keep the rest: nghttp2's buffer is only valid until its next call. */
            size_t rest = (size_t)(n - w);
            if (rest > l->out_cap) {
                unsigned char *grown = realloc(l->out, rest);
                if (grown == NULL) {
                    snprintf(why, whylen, "out of memory sending to the server");
                    return -1;
                }
                l->out = grown;
                l->out_cap = rest;
            }
            memcpy(l->out, data + w, rest);
            l->out_off = 0;
            l->out_len = rest;
        }
    }
}

/* Non-blocking I/O on one link; it may be freed (returns false then). */
static bool link_pump(h2_pool *p, h2_link *l) {
    int os_errno = 0;
    char why[200];
    if (l->state == LINK_CONNECTING) {
        struct pollfd pf = {.fd = l->fd, .events = POLLOUT};
        int r = poll(&pf, 1, 0);
        if (r == 0) {
            if (mono_ms() < l->connect_deadline) return true;
            link_fail(p, l, H2_CONNECT, ETIMEDOUT, "no TCP connection within %d ms", H2_CONNECT_TIMEOUT_MS);
            return false;
        }
        int soerr = 0;
        socklen_t slen = sizeof soerr;
        if (r < 0 || getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) != 0) soerr = errno;
        if (soerr != 0) {
            l->connect_errno = soerr;
            if (link_connect_next(l) == 0) return true;
            link_fail(p, l, H2_CONNECT, l->connect_errno, "%s", strerror(l->connect_errno));
            return false;
        }
        l->state = l->goaway ? LINK_DRAINING : LINK_READY;
    }
    size_t budget = H2_READ_BUDGET;
    uint8_t buf[65536];
    while (budget > 0) {
        ssize_t n = recv(l->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0) {
            link_fail(p, l, H2_LOST, errno, "the connection to the server broke: %s", strerror(errno));
            return false;
        }
        if (n == 0) {
            link_fail(p, l, H2_LOST, 0, "the server closed the connection");
            return false;
        }
        if (!l->got_frame && (buf[0] == 0x15 || buf[0] == 0x16)) {
            link_fail(p, l, H2_PROTOCOL, 0, "the server answered in TLS (set TEMPORAL_TLS=true or temporal.tls: true)");
            return false;
        }
        if (!l->got_frame && n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
            link_fail(p, l, H2_PROTOCOL, 0,
                      "the server answered in HTTP/1, not HTTP/2 (gRPC needs HTTP/2: is this a Temporal frontend?)");
            return false;
        }
        ssize_t rv = nghttp2_session_mem_recv(l->sess, buf, (size_t)n);
        if (rv < 0) {
            link_fail(p, l, H2_PROTOCOL, 0, "the server's HTTP/2 was malformed: %s", nghttp2_strerror((int)rv));
            return false;
        }
        budget = (size_t)n < budget ? budget - (size_t)n : 0;
    }
    if (link_flush(l, &os_errno, why, sizeof why) != 0) {
        link_fail(p, l, H2_LOST, os_errno, "%s", why);
        return false;
    }
    bool idle = !nghttp2_session_want_read(l->sess) && !nghttp2_session_want_write(l->sess) &&
                l->out_off >= l->out_len;
    if (idle && l->local_error != 0) {
        link_fail(p, l, H2_PROTOCOL, 0, "the server's HTTP/2 was malformed (%s); the connection was closed",
                  nghttp2_http2_strerror(l->local_error));
        return false;
    }
    if (idle || (l->state == LINK_DRAINING && l->nstreams == 0)) {
        link_fail(p, l, H2_LOST, 0, "the server closed the connection");
        return false;
    }
    return true;
}

static void pump_all(h2_pool *p) {
    h2_link *l = p->links;
    while (l != NULL) {
        h2_link *next = l->next;
        link_pump(p, l);
        l = next;
    }
}

/* A link for a new stream: the newest that is not draining and has room
 * under the server's stream limit, or a new one. */
static h2_link *pick_link(h2_pool *p, bool *opened, int *os_errno, char *why, size_t whylen) {
    int n = 0;
    for (h2_link *l = p->links; l != NULL; l = l->next) {
        n++;
        if (l->state == LINK_DRAINING) continue;
        uint32_t max = nghttp2_session_get_remote_settings(l->sess, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if ((uint32_t)l->nstreams < max) return l;
    }
    if (n >= H2_MAX_LINKS) {
        snprintf(why, whylen, "%d connections to the server are busy or closing", n);
        return NULL;
    }
    *opened = true;
    return link_new(p, os_errno, why, whylen);
}

/* ------------------------------------------------------------------- pool */

static int split_address(h2_pool *p, const char *address) {
    const char *colon = address[0] == '[' ? strstr(address, "]:") : strrchr(address, ':');
    if (colon == NULL) return -1;
    const char *host = address[0] == '[' ? address + 1 : address;
    size_t hlen = (size_t)(colon - host);
    const char *port = address[0] == '[' ? colon + 2 : colon + 1;
    if (hlen == 0 || hlen >= sizeof p->host || strlen(port) >= sizeof p->port) return -1;
    memcpy(p->host, host, hlen);
    p->host[hlen] = '\0';
    snprintf(p->port, sizeof p->port, "%s", port);
    return 0;
}

h2_pool *h2_pool_get(const char *address, jerr *err) {
    if (strlen(address) >= sizeof ((h2_pool *)0)->address) {
        jerr_set(err, JERR_USAGE, "Temporal address '%.64s...' is too long", address);
        return NULL;
    }
    pthread_mutex_lock(&registry_mu);
    h2_pool *p = registry;
    while (p != NULL && strcmp(p->address, address) != 0) p = p->next;
    if (p != NULL) {
        p->refs++;
        pthread_mutex_unlock(&registry_mu);
        return p;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL) {
        pthread_mutex_unlock(&registry_mu);
        jerr_oom(err, "creating a Temporal connection pool");
        return NULL;
    }
    snprintf(p->address, sizeof p->address, "%s", address);
    if (split_address(p, address) != 0) {
        free(p);
        pthread_mutex_unlock(&registry_mu);
        jerr_set(err, JERR_USAGE, "Temporal address '%s' is not host:port (set TEMPORAL_ADDRESS)", address);
        return NULL;
    }
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        pthread_mutex_unlock(&registry_mu);
        jerr_set(err, JERR_INTERNAL, "cannot create the lock of a Temporal connection pool");
        return NULL;
    }
    p->refs = 1;
    p->pumper_wake_fd = -1;
    p->next = registry;
    registry = p;
    pthread_mutex_unlock(&registry_mu);
    return p;
}

void h2_pool_put(h2_pool *p) {
    if (p == NULL) return;
    pthread_mutex_lock(&registry_mu);
    if (--p->refs > 0) {
        pthread_mutex_unlock(&registry_mu);
        return;
    }
    for (h2_pool **pp = &registry; *pp != NULL; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    pthread_mutex_unlock(&registry_mu);
    /* Every tc_conn of the pool is gone, with its calls: no attempts left. */
    while (p->links != NULL) link_fail(p, p->links, H2_LOST, 0, "the connection was closed");
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void h2_start(h2_pool *p, tc_h2_attempt *att, const char *path, const tc_h2_header *hdrs, size_t nhdrs) {
    atomic_store_explicit(&att->done, false, memory_order_relaxed);
    att->stream = NULL;
    att->fail = H2_OK;
    att->unprocessed = false;
    att->opened_connection = false;
    att->os_errno = 0;
    att->msg[0] = '\0';
    pthread_mutex_lock(&p->mu);
    p->pumper_wake_fd = att->wake_fd;
    /* Read first: a GOAWAY or a close that already arrived on an idle link
     * must not take this stream. */
    pump_all(p);
    int os_errno = 0;
    char why[200] = "";
    bool opened = false;
    h2_link *l = NULL;
    h2_stream *s = NULL;
    nghttp2_nv nva[4 + H2_MAX_HEADERS];
    if (nhdrs > H2_MAX_HEADERS) {
        finish_unstarted(p, att, H2_INTERNAL, false, 0, "too many request headers (%zu)", nhdrs);
        goto out;
    }
    l = pick_link(p, &opened, &os_errno, why, sizeof why);
    att->opened_connection = opened;
    if (l == NULL) {
        finish_unstarted(p, att, opened ? H2_CONNECT : H2_LOST, true, os_errno, "%s", why);
        goto out;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        finish_unstarted(p, att, H2_INTERNAL, false, 0, "out of memory starting a call");
        goto out;
    }
    const struct {
        const char *n, *v;
    } pseudo[4] = {{":method", "POST"}, {":scheme", "http"}, {":authority", p->address}, {":path", path}};
    size_t nv = 0;
    for (size_t i = 0; i < 4; i++, nv++)
        nva[nv] = (nghttp2_nv){(uint8_t *)pseudo[i].n, (uint8_t *)pseudo[i].v, strlen(pseudo[i].n),
                               strlen(pseudo[i].v), NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < nhdrs; i++, nv++)
        nva[nv] = (nghttp2_nv){(uint8_t *)hdrs[i].name, (uint8_t *)hdrs[i].value, strlen(hdrs[i].name),
                               strlen(hdrs[i].value), hdrs[i].secret ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE};
    nghttp2_data_provider prd;
    prd.source.ptr = s;
    prd.read_callback = read_body;
    s->link = l;
    s->att = att;
    int32_t id = nghttp2_submit_request(l->sess, NULL, nva, nv, &prd, s);
    if (id < 0) {
        free(s);
        finish_unstarted(p, att, H2_INTERNAL, false, 0, "cannot start an HTTP/2 stream: %s", nghttp2_strerror(id));
        goto out;
    }
    s->id = id;
    s->next = l->streams;
    if (l->streams != NULL) l->streams->prev = s;
    l->streams = s;
    l->nstreams++;
    att->stream = s;
    link_pump(p, l); /* sends the request now when connected */
out:
    p->pumper_wake_fd = -1;
    pthread_mutex_unlock(&p->mu);
}

void h2_cancel(h2_pool *p, tc_h2_attempt *att) {
    pthread_mutex_lock(&p->mu);
    h2_stream *s = att->stream;
    if (!atomic_load_explicit(&att->done, memory_order_acquire) && s != NULL) {
        s->att = NULL;
        att->stream = NULL;
        h2_link *l = s->link;
        nghttp2_submit_rst_stream(l->sess, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
        p->pumper_wake_fd = att->wake_fd;
        link_pump(p, l);
        p->pumper_wake_fd = -1;
    }
    pthread_mutex_unlock(&p->mu);
}

void h2_pump(h2_pool *p, int self_wake_fd) {
    pthread_mutex_lock(&p->mu);
    p->pumper_wake_fd = self_wake_fd;
    pump_all(p);
    p->pumper_wake_fd = -1;
    pthread_mutex_unlock(&p->mu);
}

size_t h2_pollfds(h2_pool *p, struct pollfd *fds, size_t cap) {
    size_t n = 0;
    pthread_mutex_lock(&p->mu);
    for (h2_link *l = p->links; l != NULL && n < cap; l = l->next) {
        fds[n].fd = l->fd;
        fds[n].revents = 0;
        fds[n].events = POLLIN;
        if (l->state == LINK_CONNECTING || l->out_off < l->out_len || nghttp2_session_want_write(l->sess))
            fds[n].events |= POLLOUT;
        n++;
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

long h2_pool_connects(h2_pool *p) {
    pthread_mutex_lock(&p->mu);
    long n = p->connects;
    pthread_mutex_unlock(&p->mu);
    return n;
}
