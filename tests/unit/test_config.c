/* test_config.c - jorch.yaml loading: YAML -> canonical JSON, and its errors. */
#include "common/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

/* Converts src; returns the JSON (static buffer) or NULL with *err filled. */
static const char *conv(const char *src, jerr *err) {
    static char out[8192];
    jbuf b;
    jbuf_init(&b, 0);
    int rc = config_yaml_to_json(src, strlen(src), "jorch.yaml", &b, err);
    if (rc != 0) {
        jbuf_free(&b);
        return NULL;
    }
    snprintf(out, sizeof out, "%s", b.data ? b.data : "");
    jbuf_free(&b);
    return out;
}

static void check_ok(const char *src, const char *want) {
    jerr err = {0};
    const char *got = conv(src, &err);
    if (!got) fprintf(stderr, "unexpected error: %s\n", err.msg);
    CHECK_STREQ(got, want);
}

static void check_err(const char *src, const char *want_in_msg) {
    jerr err = {0};
    const char *got = conv(src, &err);
    CHECK(got == NULL);
    CHECK_CONTAINS(err.msg, want_in_msg);
}

static void test_mapping_sorted_and_nested(void) {
    check_ok("jira:\n  base_url: https://x.atlassian.net\n  email: a@b.c\nagent:\n"
             "  argv: [claude, -p]\n  timeout: 2 hours\n",
             "{\"agent\":{\"argv\":[\"claude\",\"-p\"],\"timeout\":\"2 hours\"},"
             "\"jira\":{\"base_url\":\"https://x.atlassian.net\",\"email\":\"a@b.c\"}}");
}

static void test_scalar_typing(void) {
    check_ok("a: true\nb: False\nc: ~\nd: null\ne: 42\nf: -7\ng: 0x1F\nh: 0o17\ni: 1.5\nj: 1e3\n"
             "k: '42'\nl: \"true\"\nm: yes\nn: 007\no:\n",
             "{\"a\":true,\"b\":false,\"c\":null,\"d\":null,\"e\":42,\"f\":-7,\"g\":31,\"h\":15,"
             "\"i\":1.5,\"j\":1e+03,\"k\":\"42\",\"l\":\"true\",\"m\":\"yes\",\"n\":7,\"o\":null}");
    check_ok("s: !!str 12\n", "{\"s\":\"12\"}");
}

static void test_strings_escaped(void) {
    check_ok("t: \"a\\\"b\\\\c\\nd\\te\\0f\"\n", "{\"t\":\"a\\\"b\\\\c\\nd\\te\\u0000f\"}");
    check_ok("u: |\n  line1\n  line2\n", "{\"u\":\"line1\\nline2\\n\"}");
    check_ok("v: héllo\n", "{\"v\":\"héllo\"}");
}

static void test_sequences_and_top_level(void) {
    check_ok("- 1\n- [a, {b: c}]\n- {}\n- []\n", "[1,[\"a\",{\"b\":\"c\"}],{},[]]");
    check_ok("", "{}");
    check_ok("# only a comment\n", "{}");
    check_ok("hello\n", "\"hello\"");
}

static void test_errors_have_line_and_column(void) {
    check_err("a: 1\nb: [1, 2\n", "jorch.yaml:");
    check_err("a: 1\n  b: 2\n", "jorch.yaml:2:");
    check_err("a:\n\t- x\n", "jorch.yaml:2:");
}

static void test_refusals(void) {
    check_err("a: &x [1]\nb: *x\n", "aliases (*x) are not supported");
    check_err("a: 1\na: 2\n", "duplicate key 'a'");
    check_err("? [a]\n: 1\n", "mapping key must be a plain text key");
    check_err("a: 1\n---\nb: 2\n", "more than one YAML document");
    check_err("a: .inf\n", "cannot be represented in JSON");
    check_err("a: 99999999999999999999\n", "out of range");
    char deep[400];
    size_t n = 0;
    for (int i = 0; i < 100; i++) deep[n++] = '[';
    for (int i = 0; i < 100; i++) deep[n++] = ']';
    deep[n] = '\0';
    check_err(deep, "nested too deeply");
}

static void test_size_limits(void) {
    size_t big = 1024 * 1024 + 1;
    char *s = malloc(big + 1);
    CHECK(s != NULL);
    if (!s) return;
    memset(s, 'a', big);
    s[big] = '\0';
    jbuf b;
    jbuf_init(&b, 0);
    jerr err = {0};
    CHECK_INT(config_yaml_to_json(s, big, "big.yaml", &b, &err), -1);
    CHECK_CONTAINS(err.msg, "larger than the limit");
    jbuf_free(&b);
    free(s);

    /* the caller's buffer limit bounds the output */
    jbuf small;
    jbuf_init(&small, 8);
    CHECK_INT(config_yaml_to_json("a: [1,2,3,4,5,6]\n", 17, "s.yaml", &small, &err), -1);
    CHECK_CONTAINS(err.msg, "too large");
    jbuf_free(&small);
}

static void test_load_file(void) {
    char path[] = "/tmp/jorch-test-config-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    const char *src = "notify:\n  slack_webhook_url: null\nworkflow:\n  auto_proceed: false\n";
    CHECK_INT(write(fd, src, strlen(src)), (long long)strlen(src));
    close(fd);
    jbuf b;
    jbuf_init(&b, 0);
    jerr err = {0};
    CHECK_INT(config_load_yaml_as_json(path, &b, &err), 0);
    CHECK_STREQ(b.data, "{\"notify\":{\"slack_webhook_url\":null},\"workflow\":{\"auto_proceed\":false}}");
    jbuf_free(&b);
    unlink(path);

    jbuf_init(&b, 0);
    CHECK_INT(config_load_yaml_as_json("/nonexistent/jorch.yaml", &b, &err), -1);
    CHECK_CONTAINS(err.msg, "/nonexistent/jorch.yaml");
    jbuf_free(&b);
}

TEST_MAIN(TEST_CASE(test_mapping_sorted_and_nested), TEST_CASE(test_scalar_typing),
          TEST_CASE(test_strings_escaped), TEST_CASE(test_sequences_and_top_level),
          TEST_CASE(test_errors_have_line_and_column), TEST_CASE(test_refusals),
          TEST_CASE(test_size_limits), TEST_CASE(test_load_file))
