/*
 * test.h - the unit-test harness: a handful of CHECK macros and a runner
 * that prints one closing line, "N passed, N failed", and exits non-zero on
 * any failure. Each tests/unit/test_*.c is its own executable and ctest test.
 */
#ifndef JORCH_TEST_H
#define JORCH_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures_ = 0;
static int test_checks_failed_in_case_ = 0;

#define CHECK(cond) do { \
    if (!(cond)) { \
        fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        test_checks_failed_in_case_++; \
    } } while (0)

#define CHECK_MSG(cond, ...) do { \
    if (!(cond)) { \
        fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); \
        test_checks_failed_in_case_++; \
    } } while (0)

#define CHECK_STREQ(a, b) do { \
    const char *a_ = (a), *b_ = (b); \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) { \
        fprintf(stderr, "%s:%d: CHECK_STREQ failed:\n  got:      %s\n  expected: %s\n", \
                __FILE__, __LINE__, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
        test_checks_failed_in_case_++; \
    } } while (0)

#define CHECK_CONTAINS(hay, needle) do { \
    const char *h_ = (hay), *n_ = (needle); \
    if (h_ == NULL || strstr(h_, n_) == NULL) { \
        fprintf(stderr, "%s:%d: CHECK_CONTAINS failed:\n  text:     %s\n  expected to contain: %s\n", \
                __FILE__, __LINE__, h_ ? h_ : "(null)", n_); \
        test_checks_failed_in_case_++; \
    } } while (0)

#define CHECK_INT(a, b) do { \
    long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ != b_) { \
        fprintf(stderr, "%s:%d: CHECK_INT failed: %s == %lld, expected %lld\n", \
                __FILE__, __LINE__, #a, a_, b_); \
        test_checks_failed_in_case_++; \
    } } while (0)

typedef void (*test_fn)(void);
struct test_case { const char *name; test_fn fn; };
#define TEST_CASE(fn) { #fn, fn }

static int test_run_all(const struct test_case *cases, size_t n) {
    int passed = 0;
    const char *only = getenv("TEST_ONLY");
    for (size_t i = 0; i < n; i++) {
        if (only && strcmp(only, cases[i].name) != 0) continue;
        test_checks_failed_in_case_ = 0;
        cases[i].fn();
        if (test_checks_failed_in_case_) {
            fprintf(stderr, "FAIL %s\n", cases[i].name);
            test_failures_++;
        } else {
            fprintf(stderr, "ok   %s\n", cases[i].name);
            passed++;
        }
    }
    printf("%d passed, %d failed\n", passed, test_failures_);
    return test_failures_ ? 1 : 0;
}
#define TEST_MAIN(...) \
    int main(void) { \
        static const struct test_case cases_[] = { __VA_ARGS__ }; \
        return test_run_all(cases_, sizeof cases_ / sizeof cases_[0]); \
    }

#endif
