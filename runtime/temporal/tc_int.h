/*
 * tc_int.h - private to runtime/temporal: the cleartext HTTP/2 (h2c)
 * transport of tc_h2c.c, used by tc_transport.c for connections without TLS.
 *
 * A pool per server address is shared by every tc_conn of the process (so by
 * every thread): calls of all of them are streams multiplexed on one TCP
 * connection, a new one replacing it when the server says GOAWAY or the
 * connection breaks. Whichever thread drives its tc_conn does the pool's I/O
 * under the pool's lock and completes other threads' streams too, waking
 * their tc_conn through its wake fd.
 */
#ifndef JORCH_TC_INT_H
#define JORCH_TC_INT_H

#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "temporal/temporal.h"

typedef struct h2_pool h2_pool;
typedef struct h2_stream h2_stream;

/* How an attempt ended, when it did not end with the server's END_STREAM. */
enum {
    H2_OK = 0,       /* the response ended normally */
    H2_CONNECT,      /* the TCP connection could not be made (os_errno) */
    H2_LOST,         /* the connection broke or closed under the stream */
    H2_RESET,        /* the server reset the stream */
    H2_PROTOCOL,     /* the bytes from the server were not HTTP/2 */
    H2_LIMIT,        /* the response broke a size limit (msg says which) */
    H2_INTERNAL,     /* out of memory or similar on our side */
};

/* One request/response exchange. The caller fills the inputs and keeps the
 * struct (and what it points to) alive until done, or until h2_cancel. While
 * running, meta, deframer and body_err are written by whichever thread pumps
 * the pool, under the pool lock; done (release) hands them back. */
typedef struct tc_h2_attempt {
    /* inputs */
    tc_meta *meta;
    tc_deframer *deframer;
    jerr *body_err;
    bool *body_failed;
    const unsigned char *body;
    size_t body_len;
    int wake_fd;               /* written to when another thread completes this */
    /* owned by tc_h2c.c while running */
    h2_stream *stream;
    /* results, once done */
    atomic_bool done;
    int fail;                  /* H2_* */
    bool unprocessed;          /* the server never processed the request: safe to send again */
    bool opened_connection;    /* this attempt made the pool open a TCP connection */
    int os_errno;
    char msg[256];
} tc_h2_attempt;

typedef struct tc_h2_header {
    const char *name;
    const char *value;
    bool secret;               /* never added to the HPACK table (credentials) */
} tc_h2_header;

/* The pool of address (host:port, checked), shared: every get needs a put. */
h2_pool *h2_pool_get(const char *address, jerr *err);
void h2_pool_put(h2_pool *p);

/* Start att as POST path with the given headers (pseudo-headers are added).
 * Never fails synchronously: a failure marks att done with fail set. */
void h2_start(h2_pool *p, tc_h2_attempt *att, const char *path, const tc_h2_header *hdrs, size_t nhdrs);
/* Abandon a running attempt (RST_STREAM CANCEL); afterwards the pool never
 * touches att again. No-op when att is done. */
void h2_cancel(h2_pool *p, tc_h2_attempt *att);
/* Do the pool's pending I/O without waiting; self_wake_fd is the caller's
 * wake fd (attempts of that tc_conn are not signalled through it). */
void h2_pump(h2_pool *p, int self_wake_fd);
/* File descriptors (and poll events) to wait on for the pool's I/O; returns
 * how many were written (at most cap). */
size_t h2_pollfds(h2_pool *p, struct pollfd *fds, size_t cap);
/* TCP connections the pool has opened so far. */
long h2_pool_connects(h2_pool *p);

#endif
