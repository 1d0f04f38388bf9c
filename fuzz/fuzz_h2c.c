/*
 * fuzz_h2c.c - libFuzzer target for the cleartext transport's handling of
 * what a server sends (tc_h2c.c's nghttp2 callbacks: headers into tc_meta,
 * DATA into the deframer, GOAWAY, resets, closes, size limits) and the
 * settling of the call in tc_transport.c. Each input is the byte stream a
 * "server" on a loopback socket answers one GetSystemInfo call with, before
 * it closes its side; the call must end (any status) without a crash.
 * Seeds (fuzz/corpus/h2c): well-formed answers - OK with trailers,
 * trailers-only NOT_FOUND with details, HTTP 403, GOAWAY, REFUSED_STREAM.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "temporal/api/workflowservice/v1/request_response.pb-c.h"
#include "temporal/temporal.h"

static int listen_fd = -1;
static tc_config cfg;

static int setup(void) {
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(listen_fd, 64) != 0 ||
        getsockname(listen_fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    jerr err;
    tc_config_init(&cfg);
    if (tc_config_set(&cfg, "address", addr, &err) != 0 || tc_config_set(&cfg, "tls", "false", &err) != 0 ||
        tc_config_check(&cfg, &err) != 0)
        return -1;
    return 0;
}

/* Read what the client sent so far (so closing does not reset). */
static void drain(int fd) {
    char buf[65536];
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    while (poll(&pf, 1, 0) > 0 && recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (listen_fd < 0 && setup() != 0) abort();
    if (size > 256 * 1024) return 0; /* more than the socket buffers hold without a reader */
    jerr err;
    tc_conn *conn = tc_conn_new(&cfg, &err);
    if (conn == NULL) abort();
    Temporal__Api__Workflowservice__V1__GetSystemInfoRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_SYSTEM_INFO_REQUEST__INIT;
    tc_call_opts opts = {.timeout_ms = 5000};
    tc_call *call = tc_call_start(conn, "GetSystemInfo", &req.base,
                                  &temporal__api__workflowservice__v1__get_system_info_response__descriptor, &opts,
                                  &err);
    if (call == NULL) abort();
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0) abort();
    tc_conn_perform(conn, 0, &err); /* the request goes out */
    drain(fd);
    size_t off = 0;
    while (off < size) {
        ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    /* The closed stream ends the call; a refused stream may be sent again
     * on a new connection, which gets an immediate close. */
    for (int i = 0; i < 1000 && !tc_call_done(call); i++) {
        tc_conn_perform(conn, 10, &err);
        drain(fd);
        struct pollfd pf = {.fd = listen_fd, .events = POLLIN};
        if (poll(&pf, 1, 0) > 0) {
            int extra = accept(listen_fd, NULL, NULL);
            if (extra >= 0) close(extra);
        }
    }
    if (!tc_call_done(call)) abort(); /* the server is gone: the call must have ended */
    ProtobufCMessage *resp = NULL;
    tc_status st;
    tc_status_init(&st);
    tc_call_result(call, &resp, &st);
    if ((resp != NULL) != (st.code == TC_OK)) abort();
    if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
    tc_status_clear(&st);
    tc_call_free(call);
    tc_conn_free(conn);
    close(fd);
    return 0;
}
