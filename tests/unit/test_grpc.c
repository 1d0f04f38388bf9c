/*
 * test_grpc.c - the gRPC wire pieces of runtime/temporal without a network:
 * framing split at every byte boundary, oversize and malformed streams,
 * response metadata (trailers, trailers-only, HTTP errors), status details,
 * base64 and percent decoding, and the Temporal configuration rules.
 */
#include <stdlib.h>
#include <string.h>

#include "temporal/temporal.h"
#include "temporal/api/errordetails/v1/message.pb-c.h"
#include "temporal/api/failure/v1/message.pb-c.h"
#include "test.h"

/* ------------------------------------------------------------ helpers */

static char *b64_encode(const unsigned char *in, size_t len, bool pad) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(len / 3 * 4 + 8);
    size_t o = 0;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
        out[o++] = a[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        if (pad) { out[o++] = '='; out[o++] = '='; }
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
        if (pad) out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

static void meta_lines(tc_meta *m, const char *const *lines) {
    for (size_t i = 0; lines[i] != NULL; i++) tc_meta_line(m, lines[i], strlen(lines[i]));
}

/* --------------------------------------------------------------- base64 */

static void test_base64_padded_and_unpadded(void) {
    static const char *const cases[][2] = {
        {"", ""}, {"Zg==", "f"}, {"Zg", "f"}, {"Zm8=", "fo"}, {"Zm8", "fo"},
        {"Zm9v", "foo"}, {"Zm9vYg==", "foob"}, {"Zm9vYg", "foob"}, {"Zm9vYmE=", "fooba"},
        {"Zm9vYmE", "fooba"}, {"Zm9vYmFy", "foobar"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char *out = NULL;
        size_t n = 0;
        jerr err = {0};
        CHECK_MSG(tc_base64_decode(cases[i][0], strlen(cases[i][0]), &out, &n, &err) == 0, "%s: %s",
                  cases[i][0], err.msg);
        CHECK_INT(n, strlen(cases[i][1]));
        CHECK(out != NULL && memcmp(out, cases[i][1], n) == 0);
        free(out);
    }
    /* Every byte value survives, in both forms and the URL alphabet. */
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
    for (size_t len = 0; len <= 256; len += 37) {
        for (int pad = 0; pad < 2; pad++) {
            char *text = b64_encode(all, len, pad);
            unsigned char *out = NULL;
            size_t n = 0;
            CHECK(tc_base64_decode(text, strlen(text), &out, &n, NULL) == 0);
            CHECK_INT(n, len);
            CHECK(memcmp(out, all, len) == 0);
            free(out);
            free(text);
        }
    }
    unsigned char *out = NULL;
    size_t n = 0;
    CHECK(tc_base64_decode("-_8", 3, &out, &n, NULL) == 0 && n == 2 && out[0] == 0xfb && out[1] == 0xff);
    free(out);
}

static void test_base64_rejects_garbage(void) {
    static const char *const bad[] = {"Z", "Zg=", "Zm9v!", "Zg===", "Z===", "ab=c", "Zm 9v"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char *out = NULL;
        size_t n = 0;
        jerr err = {0};
        CHECK_MSG(tc_base64_decode(bad[i], strlen(bad[i]), &out, &n, &err) != 0, "%s accepted", bad[i]);
        CHECK_CONTAINS(err.msg, "invalid base64");
        CHECK(out == NULL);
    }
}

/* --------------------------------------------------------------- percent */

static void test_percent_decoding(void) {
    char out[64];
    tc_percent_decode("workflow%20not%20found", 22, out, sizeof out);
    CHECK_STREQ(out, "workflow not found");
    tc_percent_decode("caf%C3%A9 %E2%9C%93", 19, out, sizeof out);
    CHECK_STREQ(out, "caf\xc3\xa9 \xe2\x9c\x93");
    /* Malformed escapes stay as they are, never dropped. */
    tc_percent_decode("100%", 4, out, sizeof out);
    CHECK_STREQ(out, "100%");
    tc_percent_decode("%zz%4", 5, out, sizeof out);
    CHECK_STREQ(out, "%zz%4");
    tc_percent_decode("%41%4a%4A", 9, out, sizeof out);
    CHECK_STREQ(out, "AJJ");
    /* Truncated to the buffer, always terminated. */
    char small[4];
    CHECK_INT(tc_percent_decode("abcdef", 6, small, sizeof small), 3);
    CHECK_STREQ(small, "abc");
}

/* --------------------------------------------------------------- framing */

static unsigned char *make_frame(size_t len, size_t *framelen) {
    unsigned char *msg = malloc(len + 1);
    for (size_t i = 0; i < len; i++) msg[i] = (unsigned char)(i * 7 + 3);
    unsigned char *frame = NULL;
    CHECK(tc_frame(msg, len, TC_MAX_MESSAGE, &frame, framelen, NULL) == 0);
    free(msg);
    return frame;
}

static bool body_ok(const tc_deframer *d, size_t len) {
    if (!d->have_message || d->body.len != len) return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)d->body.data[i] != (unsigned char)(i * 7 + 3)) return false;
    return true;
}

static void test_frame_prefix_is_big_endian(void) {
    size_t n = 0;
    unsigned char *f = make_frame(0x10203, &n);
    CHECK_INT(n, 0x10203 + 5);
    CHECK(f[0] == 0 && f[1] == 0 && f[2] == 1 && f[3] == 2 && f[4] == 3);
    free(f);
}

static void test_deframe_split_at_every_boundary(void) {
    const size_t sizes[] = {0, 1, 4, 5, 6, 130, 1000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = 0;
        unsigned char *f = make_frame(sizes[s], &n);
        for (size_t cut = 0; cut <= n; cut++) {
            tc_deframer d;
            tc_deframer_init(&d, TC_MAX_MESSAGE);
            jerr err = {0};
            CHECK(tc_deframer_feed(&d, f, cut, &err) == 0);
            CHECK(tc_deframer_feed(&d, f + cut, n - cut, &err) == 0);
            CHECK_MSG(tc_deframer_finish(&d, &err) == 0, "size %zu cut %zu: %s", sizes[s], cut, err.msg);
            CHECK_MSG(body_ok(&d, sizes[s]), "size %zu cut %zu", sizes[s], cut);
            tc_deframer_free(&d);
        }
        /* Three pieces: every pair of cut points for the small ones. */
        for (size_t a = 0; n <= 140 && a <= n; a++) {
            for (size_t b = a; b <= n; b++) {
                tc_deframer d;
                tc_deframer_init(&d, TC_MAX_MESSAGE);
                CHECK(tc_deframer_feed(&d, f, a, NULL) == 0);
                CHECK(tc_deframer_feed(&d, f + a, b - a, NULL) == 0);
                CHECK(tc_deframer_feed(&d, f + b, n - b, NULL) == 0);
                CHECK(tc_deframer_finish(&d, NULL) == 0 && body_ok(&d, sizes[s]));
                tc_deframer_free(&d);
            }
        }
        /* One byte at a time. */
        tc_deframer d;
        tc_deframer_init(&d, TC_MAX_MESSAGE);
        for (size_t i = 0; i < n; i++) CHECK(tc_deframer_feed(&d, f + i, 1, NULL) == 0);
        CHECK(tc_deframer_finish(&d, NULL) == 0 && body_ok(&d, sizes[s]));
        tc_deframer_free(&d);
        free(f);
    }
}

static void test_deframe_truncated_stream_fails(void) {
    size_t n = 0;
    unsigned char *f = make_frame(50, &n);
    for (size_t cut = 1; cut < n; cut++) {
        tc_deframer d;
        tc_deframer_init(&d, TC_MAX_MESSAGE);
        jerr err = {0};
        CHECK(tc_deframer_feed(&d, f, cut, &err) == 0);
        CHECK(tc_deframer_finish(&d, &err) != 0);
        CHECK_CONTAINS(err.msg, "stream ended inside a message");
        CHECK(!d.have_message);
        tc_deframer_free(&d);
    }
    free(f);
}

static void test_deframe_oversize_rejected_before_allocating(void) {
    tc_deframer d;
    jerr err = {0};
    tc_deframer_init(&d, 1000);
    const unsigned char big[5] = {0, 0, 0, 0x03, 0xe9}; /* 1001 bytes */
    CHECK(tc_deframer_feed(&d, big, 5, &err) != 0);
    CHECK_CONTAINS(err.msg, "message of 1001 bytes exceeds the 1000-byte limit");
    CHECK(d.body.cap == 0 && d.body.data == NULL);
    CHECK(tc_deframer_feed(&d, "x", 1, NULL) != 0); /* stays failed */
    tc_deframer_free(&d);

    /* At the real limit: 128 MiB + 1 announced, nothing allocated. */
    tc_deframer_init(&d, TC_MAX_MESSAGE);
    const unsigned char huge[5] = {0, 0x08, 0, 0, 0x01};
    CHECK(tc_deframer_feed(&d, huge, 5, &err) != 0);
    CHECK_CONTAINS(err.msg, "exceeds the 134217728-byte limit");
    CHECK(d.body.data == NULL);
    tc_deframer_free(&d);
    const unsigned char max4g[5] = {0, 0xff, 0xff, 0xff, 0xff};
    tc_deframer_init(&d, TC_MAX_MESSAGE);
    CHECK(tc_deframer_feed(&d, max4g, 5, &err) != 0);
    tc_deframer_free(&d);

    /* Exactly at the limit is fine. */
    tc_deframer_init(&d, 3);
    const unsigned char ok[8] = {0, 0, 0, 0, 3, 'a', 'b', 'c'};
    CHECK(tc_deframer_feed(&d, ok, 8, NULL) == 0 && tc_deframer_finish(&d, NULL) == 0);
    CHECK(d.have_message && d.body.len == 3);
    tc_deframer_free(&d);

    /* Requests are bounded too. */
    unsigned char *frame = NULL;
    size_t flen = 0;
    CHECK(tc_frame("abcd", 4, 3, &frame, &flen, &err) != 0);
    CHECK_CONTAINS(err.msg, "larger than the 3-byte limit");
}

static void test_deframe_rejects_compressed_and_extra_messages(void) {
    tc_deframer d;
    jerr err = {0};
    tc_deframer_init(&d, TC_MAX_MESSAGE);
    const unsigned char comp[6] = {1, 0, 0, 0, 1, 'x'};
    CHECK(tc_deframer_feed(&d, comp, 6, &err) != 0);
    CHECK_CONTAINS(err.msg, "compressed");
    tc_deframer_free(&d);

    tc_deframer_init(&d, TC_MAX_MESSAGE);
    const unsigned char flag[5] = {7, 0, 0, 0, 0};
    CHECK(tc_deframer_feed(&d, flag, 5, &err) != 0);
    CHECK_CONTAINS(err.msg, "bad message flag 7");
    tc_deframer_free(&d);

    tc_deframer_init(&d, TC_MAX_MESSAGE);
    const unsigned char two[12] = {0, 0, 0, 0, 1, 'a', 0, 0, 0, 0, 1, 'b'};
    CHECK(tc_deframer_feed(&d, two, 12, &err) != 0);
    CHECK_CONTAINS(err.msg, "more than one message");
    tc_deframer_free(&d);
}

/* -------------------------------------------------------------- metadata */

static void test_status_ok_from_trailers(void) {
    tc_meta m;
    tc_meta_init(&m);
    static const char *const lines[] = {
        "HTTP/2 200\r\n", "content-type: application/grpc\r\n", "\r\n",
        /* body would arrive here; then the trailers */
        "grpc-status: 0\r\n", "grpc-message: \r\n", "\r\n", NULL,
    };
    meta_lines(&m, lines);
    CHECK_INT(m.http_status, 200);
    CHECK(m.grpc_content_type);
    tc_status st;
    tc_status_init(&st);
    tc_status_from_meta(&m, &st);
    CHECK_INT(st.code, TC_OK);
    CHECK(st.details == NULL);
    tc_status_clear(&st);
    tc_meta_free(&m);
}

static void test_trailers_only_error(void) {
    tc_meta m;
    tc_meta_init(&m);
    static const char *const lines[] = {
        "HTTP/2 200", "content-type: application/grpc", "GRPC-Status:   5  ",
        "grpc-message: workflow%20execution%20not%20found%3A%20%27wf-1%27", "", NULL,
    };
    meta_lines(&m, lines);
    tc_status st;
    tc_status_init(&st);
    tc_status_from_meta(&m, &st);
    CHECK_INT(st.code, TC_NOT_FOUND);
    CHECK_STREQ(st.message, "workflow execution not found: 'wf-1'");
    CHECK(!st.transport);
    tc_status_clear(&st);
    tc_meta_free(&m);
}

static void test_http_errors_without_grpc_status(void) {
    static const struct { int http; int code; } map[] = {
        {401, TC_UNAUTHENTICATED}, {403, TC_PERMISSION_DENIED}, {404, TC_UNIMPLEMENTED},
        {429, TC_UNAVAILABLE}, {502, TC_UNAVAILABLE}, {503, TC_UNAVAILABLE}, {504, TC_UNAVAILABLE},
        {500, TC_UNKNOWN}, {400, TC_INTERNAL},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        tc_meta m;
        tc_meta_init(&m);
        char line[32];
        snprintf(line, sizeof line, "HTTP/2 %d\r\n", map[i].http);
        tc_meta_line(&m, line, strlen(line));
        tc_meta_line(&m, "content-type: text/html", 23);
        tc_status st;
        tc_status_init(&st);
        tc_status_from_meta(&m, &st);
        CHECK_INT(st.code, map[i].code);
        CHECK_CONTAINS(st.message, "without a gRPC status");
        tc_meta_free(&m);
    }
    /* 200 but no grpc-status at all: INTERNAL, not OK. */
    tc_meta m;
    tc_meta_init(&m);
    tc_meta_line(&m, "HTTP/2 200", 10);
    tc_status st;
    tc_status_init(&st);
    tc_status_from_meta(&m, &st);
    CHECK_INT(st.code, TC_INTERNAL);
    CHECK_CONTAINS(st.message, "without a grpc-status");
    tc_meta_free(&m);
    /* A garbled grpc-status is UNKNOWN. */
    tc_meta_init(&m);
    tc_meta_line(&m, "grpc-status: 1x", 15);
    tc_status_from_meta(&m, &st);
    CHECK_INT(st.code, TC_UNKNOWN);
    tc_meta_free(&m);
}

static char *details_line(const ProtobufCMessage *detail, const char *type_url, bool pad) {
    size_t dlen = protobuf_c_message_get_packed_size(detail);
    uint8_t *dbuf = malloc(dlen + 1);
    protobuf_c_message_pack(detail, dbuf);
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = (char *)type_url;
    any.value.data = dbuf;
    any.value.len = dlen;
    Google__Protobuf__Any *anys[1] = {&any};
    Google__Rpc__Status s = GOOGLE__RPC__STATUS__INIT;
    s.code = 6;
    s.message = "workflow already started";
    s.n_details = 1;
    s.details = anys;
    size_t slen = google__rpc__status__get_packed_size(&s);
    uint8_t *sbuf = malloc(slen + 1);
    google__rpc__status__pack(&s, sbuf);
    char *b64 = b64_encode(sbuf, slen, pad);
    size_t linecap = strlen(b64) + 64;
    char *line = malloc(linecap);
    snprintf(line, linecap, "grpc-status-details-bin: %s\r\n", b64);
    free(b64);
    free(sbuf);
    free(dbuf);
    return line;
}

static void test_status_details_decoded(void) {
    Temporal__Api__Errordetails__V1__WorkflowExecutionAlreadyStartedFailure f =
        TEMPORAL__API__ERRORDETAILS__V1__WORKFLOW_EXECUTION_ALREADY_STARTED_FAILURE__INIT;
    f.start_request_id = "req-1";
    f.run_id = "run-42";
    for (int pad = 0; pad < 2; pad++) {
        char *line = details_line(&f.base,
            "type.googleapis.com/temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure", pad);
        tc_meta m;
        tc_meta_init(&m);
        tc_meta_line(&m, "HTTP/2 200", 10);
        tc_meta_line(&m, "content-type: application/grpc", 30);
        tc_meta_line(&m, "grpc-status: 6", 14);
        tc_meta_line(&m, "grpc-message: Workflow%20execution%20is%20already%20running.", 60);
        tc_meta_line(&m, line, strlen(line));
        CHECK(!m.details_bad);
        tc_status st;
        tc_status_init(&st);
        tc_status_from_meta(&m, &st);
        CHECK_INT(st.code, TC_ALREADY_EXISTS);
        CHECK_STREQ(st.message, "Workflow execution is already running.");
        CHECK(st.details != NULL && st.details->n_details == 1);
        ProtobufCMessage *d = tc_status_detail(
            &st, &temporal__api__errordetails__v1__workflow_execution_already_started_failure__descriptor);
        CHECK(d != NULL);
        if (d != NULL) {
            Temporal__Api__Errordetails__V1__WorkflowExecutionAlreadyStartedFailure *got = (void *)d;
            CHECK_STREQ(got->run_id, "run-42");
            CHECK_STREQ(got->start_request_id, "req-1");
            protobuf_c_message_free_unpacked(d, NULL);
        }
        /* Another detail type is not confused with it. */
        CHECK(tc_status_detail(&st, &temporal__api__errordetails__v1__namespace_not_found_failure__descriptor) ==
              NULL);
        tc_status_clear(&st);
        tc_meta_free(&m);
        free(line);
    }
    /* NamespaceNotFoundFailure under a different type_url host. */
    Temporal__Api__Errordetails__V1__NamespaceNotFoundFailure nf =
        TEMPORAL__API__ERRORDETAILS__V1__NAMESPACE_NOT_FOUND_FAILURE__INIT;
    nf.namespace_ = "nope";
    char *line = details_line(&nf.base, "example.com/x/temporal.api.errordetails.v1.NamespaceNotFoundFailure", true);
    tc_meta m;
    tc_meta_init(&m);
    tc_meta_line(&m, "grpc-status: 5", 14);
    tc_meta_line(&m, line, strlen(line));
    tc_status st;
    tc_status_init(&st);
    tc_status_from_meta(&m, &st);
    Temporal__Api__Errordetails__V1__NamespaceNotFoundFailure *got = (void *)tc_status_detail(
        &st, &temporal__api__errordetails__v1__namespace_not_found_failure__descriptor);
    CHECK(got != NULL && strcmp(got->namespace_, "nope") == 0);
    if (got != NULL) protobuf_c_message_free_unpacked(&got->base, NULL);
    /* A type_url that only ends with the name is not a match. */
    CHECK(tc_status_detail(&st, &temporal__api__errordetails__v1__not_found_failure__descriptor) == NULL);
    tc_status_clear(&st);
    tc_meta_free(&m);
    free(line);
}

static void test_bad_status_details_keep_the_status(void) {
    tc_meta m;
    tc_meta_init(&m);
    static const char *const lines[] = {"grpc-status: 14", "grpc-message: down", "grpc-status-details-bin: !!!", NULL};
    meta_lines(&m, lines);
    CHECK(m.details_bad);
    tc_status st;
    tc_status_init(&st);
    tc_status_from_meta(&m, &st);
    CHECK_INT(st.code, TC_UNAVAILABLE);
    CHECK_STREQ(st.message, "down");
    CHECK(st.details == NULL);
    tc_meta_free(&m);
    /* Valid base64 that is not a Status: details stay NULL. */
    tc_meta_init(&m);
    static const char *const lines2[] = {"grpc-status: 13", "grpc-status-details-bin: //8", NULL};
    meta_lines(&m, lines2);
    tc_status_from_meta(&m, &st);
    CHECK_INT(st.code, TC_INTERNAL);
    CHECK(st.details == NULL);
    tc_status_clear(&st);
    tc_meta_free(&m);
}

static void test_code_names(void) {
    char buf[16];
    CHECK_STREQ(tc_code_name(0, buf, sizeof buf), "OK");
    CHECK_STREQ(tc_code_name(6, buf, sizeof buf), "ALREADY_EXISTS");
    CHECK_STREQ(tc_code_name(16, buf, sizeof buf), "UNAUTHENTICATED");
    CHECK_STREQ(tc_code_name(99, buf, sizeof buf), "code 99");
}

/* ---------------------------------------------------------------- config */

static void clear_env(void) {
    static const char *const vars[] = {
        "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE", "TEMPORAL_API_KEY", "TEMPORAL_TLS",
        "TEMPORAL_TLS_CA", "TEMPORAL_TLS_CLIENT_CERT", "TEMPORAL_TLS_CLIENT_KEY", "TEMPORAL_TLS_SERVER_NAME",
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
}

static void test_config_defaults_and_env_override(void) {
    clear_env();
    tc_config c;
    jerr err = {0};
    tc_config_init(&c);
    CHECK(tc_config_from_env(&c, &err) == 0);
    CHECK(tc_config_check(&c, &err) == 0);
    CHECK_STREQ(c.address, "127.0.0.1:7233");
    CHECK_STREQ(c.namespace_, "default");
    CHECK_STREQ(c.task_queue, "jira-orchestration");
    CHECK(!tc_config_uses_tls(&c));
    CHECK(c.identity != NULL && strstr(c.identity, "@jorch") != NULL);
    tc_config_free(&c);

    /* jorch.yaml values first, then the environment wins. */
    tc_config_init(&c);
    CHECK(tc_config_set(&c, "address", "10.0.0.1:7233", &err) == 0);
    CHECK(tc_config_set(&c, "namespace", "from-yaml", &err) == 0);
    CHECK(tc_config_set(&c, "task_queue", "yaml-q", &err) == 0);
    setenv("TEMPORAL_NAMESPACE", "from-env", 1);
    setenv("TEMPORAL_ADDRESS", "", 1); /* empty: left alone */
    CHECK(tc_config_from_env(&c, &err) == 0);
    CHECK(tc_config_check(&c, &err) == 0);
    CHECK_STREQ(c.namespace_, "from-env");
    CHECK_STREQ(c.address, "10.0.0.1:7233");
    CHECK_STREQ(c.task_queue, "yaml-q");
    tc_config_free(&c);
    clear_env();

    tc_config_init(&c);
    CHECK(tc_config_set(&c, "colour", "blue", &err) != 0);
    CHECK_CONTAINS(err.msg, "unknown Temporal setting 'colour'");
    setenv("TEMPORAL_TLS", "maybe", 1);
    CHECK(tc_config_from_env(&c, &err) != 0);
    CHECK_CONTAINS(err.msg, "TEMPORAL_TLS");
    CHECK_CONTAINS(err.msg, "not a boolean");
    tc_config_free(&c);
    clear_env();
}

static void test_config_api_key_rules(void) {
    clear_env();
    tc_config c;
    jerr err = {0};
    /* A key turns TLS on by itself. */
    tc_config_init(&c);
    tc_config_set(&c, "address", "my-ns.a1b2c.tmprl.cloud:7233", NULL);
    tc_config_set(&c, "api_key", "sekrit-key-123", NULL);
    CHECK(tc_config_check(&c, &err) == 0);
    CHECK(tc_config_uses_tls(&c));
    tc_config_free(&c);
    /* Forcing cleartext with a key to another host is refused, without the key in the message. */
    tc_config_init(&c);
    tc_config_set(&c, "address", "temporal.example.com:7233", NULL);
    tc_config_set(&c, "api_key", "sekrit-key-123", NULL);
    tc_config_set(&c, "tls", "false", NULL);
    CHECK(tc_config_check(&c, &err) != 0);
    CHECK_CONTAINS(err.msg, "refusing to send the Temporal API key without TLS to temporal.example.com:7233");
    CHECK(strstr(err.msg, "sekrit") == NULL);
    CHECK_INT(err.code, JERR_USAGE);
    tc_config_free(&c);
    /* ... but a loopback address (a local proxy, the dev server) may have it. */
    tc_config_init(&c);
    tc_config_set(&c, "address", "127.0.0.1:7233", NULL);
    tc_config_set(&c, "api_key", "sekrit-key-123", NULL);
    tc_config_set(&c, "tls", "false", NULL);
    CHECK(tc_config_check(&c, &err) == 0);
    CHECK(!tc_config_uses_tls(&c));
    tc_config_free(&c);
    /* mTLS needs both halves. */
    tc_config_init(&c);
    tc_config_set(&c, "tls_client_cert", "/etc/hostname", NULL);
    CHECK(tc_config_check(&c, &err) != 0);
    CHECK_CONTAINS(err.msg, "TEMPORAL_TLS_CLIENT_KEY");
    tc_config_free(&c);
    /* Missing CA file: named. */
    tc_config_init(&c);
    tc_config_set(&c, "tls_ca", "/nonexistent/ca.pem", NULL);
    CHECK(tc_config_check(&c, &err) != 0);
    CHECK_CONTAINS(err.msg, "cannot read the TLS CA file '/nonexistent/ca.pem'");
    tc_config_free(&c);
    /* Bad addresses. */
    static const char *const bad[] = {"localhost", "http://h:1", "h:0", "h:99999", "h:12x", "[::1]", ":7233"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tc_config_init(&c);
        tc_config_set(&c, "address", bad[i], NULL);
        CHECK_MSG(tc_config_check(&c, &err) != 0, "%s accepted", bad[i]);
        CHECK_CONTAINS(err.msg, "TEMPORAL_ADDRESS");
        tc_config_free(&c);
    }
}

static void test_loopback_detection(void) {
    CHECK(tc_address_is_loopback("127.0.0.1:7233"));
    CHECK(tc_address_is_loopback("127.1.2.3:1"));
    CHECK(tc_address_is_loopback("localhost:7233"));
    CHECK(tc_address_is_loopback("[::1]:7233"));
    CHECK(!tc_address_is_loopback("128.0.0.1:7233"));
    CHECK(!tc_address_is_loopback("127.0.0.1.evil.com:7233"));
    CHECK(!tc_address_is_loopback("localhost.evil.com:7233"));
    CHECK(!tc_address_is_loopback("[::2]:7233"));
    CHECK(!tc_address_is_loopback("127.0.0.256:1"));
}

/* A chain of n Failure messages (each the previous one's cause), packed. */
static uint8_t *nested_failures(int n, size_t *len) {
    Temporal__Api__Failure__V1__Failure *fs = calloc((size_t)n, sizeof *fs);
    for (int i = 0; i < n; i++) {
        temporal__api__failure__v1__failure__init(&fs[i]);
        fs[i].message = (char *)"m";
        if (i + 1 < n) fs[i].cause = &fs[i + 1];
    }
    *len = protobuf_c_message_get_packed_size(&fs[0].base);
    uint8_t *b = malloc(*len);
    protobuf_c_message_pack(&fs[0].base, b);
    free(fs);
    return b;
}

static void test_nesting_depth_is_bounded(void) {
    size_t len;
    uint8_t *b = nested_failures(50, &len);
    CHECK(tc_pb_depth_ok(&temporal__api__failure__v1__failure__descriptor, b, len, TC_MAX_PROTO_DEPTH));
    CHECK(!tc_pb_depth_ok(&temporal__api__failure__v1__failure__descriptor, b, len - 1, TC_MAX_PROTO_DEPTH));
    free(b);
    b = nested_failures(500, &len); /* a few KiB that would recurse 500 deep */
    CHECK(!tc_pb_depth_ok(&temporal__api__failure__v1__failure__descriptor, b, len, TC_MAX_PROTO_DEPTH));
    free(b);
    static const uint8_t bad_varint[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    CHECK(!tc_pb_depth_ok(&temporal__api__failure__v1__failure__descriptor, bad_varint, sizeof bad_varint, 10));
}

static void test_loopback_is_strict(void) {
    CHECK(tc_address_is_loopback("127.0.0.1:7233"));
    CHECK(tc_address_is_loopback("localhost:7233"));
    CHECK(tc_address_is_loopback("[::1]:7233"));
    CHECK(tc_address_is_loopback("127.9.9.9:1"));
    /* curl reads a leading zero as octal: 0127.0.0.1 is 87.0.0.1 */
    CHECK(!tc_address_is_loopback("0127.0.0.1:7233"));
    CHECK(!tc_address_is_loopback("127.0.0.1.evil.example:7233"));
    CHECK(!tc_address_is_loopback("128.0.0.1:7233"));
}

TEST_MAIN(TEST_CASE(test_nesting_depth_is_bounded), TEST_CASE(test_loopback_is_strict),
          TEST_CASE(test_base64_padded_and_unpadded), TEST_CASE(test_base64_rejects_garbage),
          TEST_CASE(test_percent_decoding), TEST_CASE(test_frame_prefix_is_big_endian),
          TEST_CASE(test_deframe_split_at_every_boundary), TEST_CASE(test_deframe_truncated_stream_fails),
          TEST_CASE(test_deframe_oversize_rejected_before_allocating),
          TEST_CASE(test_deframe_rejects_compressed_and_extra_messages),
          TEST_CASE(test_status_ok_from_trailers), TEST_CASE(test_trailers_only_error),
          TEST_CASE(test_http_errors_without_grpc_status), TEST_CASE(test_status_details_decoded),
          TEST_CASE(test_bad_status_details_keep_the_status), TEST_CASE(test_code_names),
          TEST_CASE(test_config_defaults_and_env_override), TEST_CASE(test_config_api_key_rules),
          TEST_CASE(test_loopback_detection))
