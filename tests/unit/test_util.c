/*
 * test_util.c - durations, times, bounded buffers, errors, hashing.
 */
#include "test.h"

#include "common/common.h"

#define S INT64_C(1000000000)

static int64_t dur(const char *s) {
    int64_t ns = -1;
    jerr e = {0};
    if (duration_parse(s, &ns, &e) != 0) return -1;
    return ns;
}

static void durations_parse(void) {
    CHECK_INT(dur("5s"), 5 * S);
    CHECK_INT(dur("5"), 5 * S);
    CHECK_INT(dur("1.5"), 1500000000);
    CHECK_INT(dur("500ms"), 500000000);
    CHECK_INT(dur("2 hours"), 7200 * S);
    CHECK_INT(dur("7 days"), 7 * 86400 * S);
    CHECK_INT(dur("1 day"), 86400 * S);
    CHECK_INT(dur("10 minutes"), 600 * S);
    CHECK_INT(dur("1h30m"), 5400 * S);
    CHECK_INT(dur("2 weeks"), 14 * 86400 * S);
    CHECK_INT(dur("  3 sec "), 3 * S);
    CHECK_INT(dur("0"), 0);
}

static void durations_reject(void) {
    jerr e = {0};
    int64_t ns;
    CHECK(duration_parse("", &ns, &e) != 0);
    CHECK(duration_parse("soon", &ns, &e) != 0);
    CHECK_CONTAINS(e.msg, "invalid duration \"soon\"");
    CHECK_CONTAINS(e.msg, "7 days");
    CHECK(duration_parse("5 parsecs", &ns, &e) != 0);
    CHECK(duration_parse("-5s", &ns, &e) != 0);
    CHECK(duration_parse("5 5", &ns, &e) != 0);
    CHECK(duration_parse("1e30 days", &ns, &e) != 0);
    CHECK(duration_from_seconds(-1, &ns, &e) != 0);
    CHECK(duration_from_seconds(0.0 / 0.0, &ns, &e) != 0);
    CHECK(duration_from_seconds(2.5, &ns, &e) == 0 && ns == 2500000000);
}

static void durations_format(void) {
    char b[64];
    duration_format(10 * S, b, sizeof b);
    CHECK_STREQ(b, "10s");
    duration_format(500000000, b, sizeof b);
    CHECK_STREQ(b, "0.500s");
    duration_format(1000, b, sizeof b);
    CHECK_STREQ(b, "0.000001s");
    duration_format(1, b, sizeof b);
    CHECK_STREQ(b, "0.000000001s");
    duration_human(7 * 86400 * S, b, sizeof b);
    CHECK_STREQ(b, "7 days");
    duration_human(3600 * S, b, sizeof b);
    CHECK_STREQ(b, "1 hour");
    duration_human(90 * S, b, sizeof b);
    CHECK_STREQ(b, "1m30s");
    duration_human(250000000, b, sizeof b);
    CHECK_STREQ(b, "250ms");
}

static void times_round_trip(void) {
    int64_t ns = 0;
    jerr e = {0};
    char b[64];
    CHECK(time_parse_rfc3339("2021-12-06T22:09:44.602727Z", &ns, &e) == 0);
    time_format_rfc3339(ns, b, sizeof b);
    CHECK_STREQ(b, "2021-12-06T22:09:44.602727Z");
    CHECK(time_parse_rfc3339("1970-01-01T00:00:00Z", &ns, &e) == 0 && ns == 0);
    CHECK(time_parse_rfc3339("2024-02-29T12:00:00+02:00", &ns, &e) == 0);
    time_format_rfc3339(ns, b, sizeof b);
    CHECK_STREQ(b, "2024-02-29T10:00:00Z");
    CHECK(time_parse_rfc3339("2021-12-06T22:09:44.602759600Z", &ns, &e) == 0);
    time_format_rfc3339(ns, b, sizeof b);
    CHECK_STREQ(b, "2021-12-06T22:09:44.602759600Z");
    time_format_rfc3339(-1, b, sizeof b);
    CHECK_STREQ(b, "1969-12-31T23:59:59.999999999Z");
    CHECK(time_parse_rfc3339("2021-13-01T00:00:00Z", &ns, &e) != 0);
    CHECK(time_parse_rfc3339("yesterday", &ns, &e) != 0);
    CHECK_CONTAINS(e.msg, "RFC 3339");
    CHECK(time_parse_rfc3339("2021-12-06T22:09:44Zjunk", &ns, &e) != 0);
}

static void pb_time_helpers(void) {
    Google__Protobuf__Timestamp *t = pb_timestamp_new(-1);
    CHECK(t->seconds == -1 && t->nanos == 999999999);
    CHECK_INT(pb_timestamp_nanos(t), -1);
    protobuf_c_message_free_unpacked(&t->base, NULL);
    Google__Protobuf__Duration *d = pb_duration_new(2500000000);
    CHECK(d->seconds == 2 && d->nanos == 500000000);
    CHECK_INT(pb_duration_nanos(d), 2500000000);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    CHECK_INT(pb_duration_nanos(NULL), 0);
}

static void bounded_buffers(void) {
    jbuf b;
    jbuf_init(&b, 8);
    CHECK(jbuf_puts(&b, "abcd") == 0);
    CHECK(jbuf_printf(&b, "%d", 123) == 0);
    CHECK_STREQ(b.data, "abcd123");
    CHECK(jbuf_puts(&b, "xy") != 0); /* 9 > max 8 */
    CHECK_STREQ(b.data, "abcd123");  /* unchanged after a refused append */
    CHECK(jbuf_putc(&b, 'z') == 0);
    CHECK_INT(b.len, 8);
    size_t len;
    char *p = jbuf_take(&b, &len);
    CHECK_STREQ(p, "abcd123z");
    CHECK_INT(len, 8);
    CHECK(b.data == NULL && b.len == 0);
    free(p);
    jbuf_free(&b);
    size_t out;
    CHECK(!size_add(SIZE_MAX, 1, &out));
    CHECK(!size_mul(SIZE_MAX / 2, 3, &out));
    CHECK(size_mul(3, 4, &out) && out == 12);
}

static void errors_prefix(void) {
    jerr e = {0};
    CHECK(jerr_set(&e, JERR_USAGE, "bad %s", "thing") == -1);
    CHECK_INT(e.code, JERR_USAGE);
    jerr_prefix(&e, "loading %s", "x.lua");
    CHECK_STREQ(e.msg, "loading x.lua: bad thing");
    CHECK_INT(e.code, JERR_USAGE);
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    jerr_set(&e, JERR_FAILED, "%s", big);
    jerr_prefix(&e, "p");
    CHECK_INT(strlen(e.msg), sizeof e.msg - 1);
    CHECK(jerr_set(NULL, 1, "ignored") == -1);
}

static void hashing_and_ids(void) {
    char h[65];
    sha256_hex("abc", 3, h);
    CHECK_STREQ(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    char u1[37], u2[37];
    CHECK(uuid_random(u1) == 0 && uuid_random(u2) == 0);
    CHECK_INT(strlen(u1), 36);
    CHECK(u1[14] == '4');
    CHECK(strcmp(u1, u2) != 0);
}

static void files(void) {
    char *data = NULL;
    size_t len = 0;
    jerr e = {0};
    CHECK(file_read_all("/nonexistent/x", 100, &data, &len, &e) != 0);
    CHECK_CONTAINS(e.msg, "/nonexistent/x");
    CHECK(file_read_all("/etc", 100, &data, &len, &e) != 0);
    CHECK_CONTAINS(e.msg, "directory");
    CHECK(file_read_all("/etc/hostname", 1, &data, &len, &e) != 0 || len <= 1);
    free(data);
}

TEST_MAIN(TEST_CASE(durations_parse), TEST_CASE(durations_reject), TEST_CASE(durations_format),
          TEST_CASE(times_round_trip), TEST_CASE(pb_time_helpers), TEST_CASE(bounded_buffers),
          TEST_CASE(errors_prefix), TEST_CASE(hashing_and_ids), TEST_CASE(files))
