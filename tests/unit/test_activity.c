/*
 * test_activity.c - the activity host: outcomes, errors, resolution,
 * concurrency, timeouts, heartbeats and cancellation, and the toolkit
 * (exec, http, json, fs). Activities live in tests/activities/.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "activity/activity.h"
#include "test.h"

#define DIR_ "tests/activities"
#define SEC 1000000000LL
/* failure_info is a oneof (a union): test the case, not the pointer. */
#define IS_APP(f) ((f) && (f)->failure_info_case == TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_APPLICATION_FAILURE_INFO)
#define IS_TIMEOUT(f) ((f) && (f)->failure_info_case == TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_TIMEOUT_FAILURE_INFO)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static Temporal__Api__Common__V1__Payloads *args_of(const char *const *json) {
    Temporal__Api__Common__V1__Payloads *ps = payloads_new();
    for (size_t i = 0; json && json[i]; i++) {
        jerr err = {0};
        Temporal__Api__Common__V1__Payload *p = payload_from_json(json[i], strlen(json[i]), &err);
        if (!p) fprintf(stderr, "bad test JSON %s: %s\n", json[i], err.msg);
        payloads_add(ps, p);
    }
    return ps;
}

static act_host *host_new(int threads, act_heartbeat_fn hb, void *ud) {
    jerr err = {0};
    act_host_config cfg = {.activities_dir = DIR_, .threads = threads, .on_heartbeat = hb, .ud = ud};
    act_host *h = act_host_new(&cfg, &err);
    if (!h) fprintf(stderr, "act_host_new: %s\n", err.msg);
    return h;
}

static void submit(act_host *h, const char *name, const char *const *json, int64_t stc, uint64_t token) {
    Temporal__Api__Common__V1__Payloads *in = args_of(json);
    act_task t = {.activity_type = name, .activity_id = "a1", .workflow_id = "wf", .run_id = "run",
                  .workflow_type = "Flow", .attempt = 2, .input = in, .start_to_close_ns = stc, .token = token};
    jerr err = {0};
    CHECK(act_host_submit(h, &t, &err) == 0);
    protobuf_c_message_free_unpacked(&in->base, NULL);
}

/* Runs one activity on a fresh host; the outcome is the caller's. */
static void run1(const char *name, const char *const *json, int64_t stc, act_outcome *o) {
    act_host *h = host_new(1, NULL, NULL);
    submit(h, name, json, stc, 7);
    CHECK_INT(act_host_wait(h, 60000, o), 1);
    CHECK_INT(o->token, 7);
    act_host_free(h);
}

/* The result as JSON (a single payload unwrapped); static buffer. */
static const char *result_json(const act_outcome *o) {
    static char text[1 << 16];
    jbuf b;
    jbuf_init(&b, sizeof text - 1);
    jerr err = {0};
    text[0] = '\0';
    if (payloads_to_json(o->result, true, &b, &err) == 0) snprintf(text, sizeof text, "%s", b.data);
    else snprintf(text, sizeof text, "(error: %s)", err.msg);
    jbuf_free(&b);
    return text;
}

static const char *details_json(const Temporal__Api__Common__V1__Payloads *p) {
    act_outcome o = {.result = (Temporal__Api__Common__V1__Payloads *)p};
    return result_json(&o);
}

static const char *failure_type(const act_outcome *o) {
    if (!o->failure) return "(no failure)";
    if (IS_APP(o->failure)) return o->failure->application_failure_info->type;
    if (IS_TIMEOUT(o->failure)) return "(timeout)";
    return "(other)";
}

static void expect_failure(const act_outcome *o, const char *type) {
    CHECK_INT(o->kind, ACT_FAILED);
    CHECK_STREQ(failure_type(o), type);
    if (o->kind == ACT_COMPLETED) fprintf(stderr, "  result: %s\n", result_json(o));
    if (o->failure && strcmp(failure_type(o), type) != 0) fprintf(stderr, "  message: %s\n", o->failure->message);
}

/* -------------------------------------------------------------- outcomes */

static void test_result_round_trip(void) {
    act_outcome o;
    run1("echo", (const char *[]){"{\"b\":[1,2.5,\"x\"],\"a\":null}", "\"text\"", "7", NULL}, 0, &o);
    CHECK_INT(o.kind, ACT_COMPLETED);
    CHECK_STREQ(result_json(&o), "[{\"b\":[1,2.5,\"x\"]},\"text\",7]");
    act_outcome_clear(&o);

    run1("basic.add", (const char *[]){"2", "40", NULL}, 0, &o);
    CHECK_STREQ(result_json(&o), "42");
    act_outcome_clear(&o);

    run1("nothing", NULL, 0, &o);
    CHECK_INT(o.kind, ACT_COMPLETED);
    CHECK_STREQ(result_json(&o), "null");
    act_outcome_clear(&o);

    run1("greet", (const char *[]){"\"jorch\"", NULL}, 0, &o);
    CHECK_STREQ(result_json(&o), "\"hello jorch\"");
    act_outcome_clear(&o);
}

static void test_typed_error(void) {
    act_outcome o;
    run1("typed", NULL, 0, &o);
    expect_failure(&o, "BadInput");
    if (IS_APP(o.failure)) {
        CHECK_STREQ(o.failure->message, "input was bad");
        CHECK(o.failure->application_failure_info->non_retryable);
        CHECK_STREQ(details_json(o.failure->application_failure_info->details), "{\"field\":\"x\"}");
        CHECK_CONTAINS(o.failure->stack_trace, "basic.lua");
    }
    act_outcome_clear(&o);
    /* a list of details is a list of payloads: one per element */
    run1("typed_list", NULL, 0, &o);
    expect_failure(&o, "BadInput");
    if (IS_APP(o.failure)) {
        CHECK_INT(o.failure->application_failure_info->details->n_payloads, 2);
        CHECK_STREQ(details_json(o.failure->application_failure_info->details), "[\"a\",{\"n\":1}]");
    }
    act_outcome_clear(&o);
}

static void test_plain_error(void) {
    act_outcome o;
    run1("plain", NULL, 0, &o);
    expect_failure(&o, "Error");
    if (IS_APP(o.failure)) {
        CHECK_CONTAINS(o.failure->message, "boom");
        CHECK_CONTAINS(o.failure->message, "basic.lua");
        CHECK(!o.failure->application_failure_info->non_retryable);
        CHECK_CONTAINS(o.failure->stack_trace, "stack traceback");
    }
    act_outcome_clear(&o);
}

static void test_unknown_activity(void) {
    act_outcome o;
    run1("nope", NULL, 0, &o);
    expect_failure(&o, "ActivityNotFound");
    if (IS_APP(o.failure)) {
        CHECK(!o.failure->application_failure_info->non_retryable); /* retried, as on Temporal */
        CHECK_STREQ(o.failure->message, "unknown activity 'nope' (looked in tests/activities/: basic.lua, other.lua)");
    }
    act_outcome_clear(&o);

    run1("other.nope", NULL, 0, &o);
    expect_failure(&o, "ActivityNotFound");
    if (o.failure) CHECK_CONTAINS(o.failure->message, "other.lua has no function 'nope'");
    act_outcome_clear(&o);

    act_host *h = host_new(1, NULL, NULL);
    CHECK(act_host_has(h, "echo"));
    CHECK(act_host_has(h, "other.greet"));
    CHECK(!act_host_has(h, "nope"));
    CHECK(!act_host_has(h, "basic.greet"));
    act_host_free(h);

    jerr err = {0};
    act_host_config cfg = {.activities_dir = "/nonexistent/dir"};
    h = act_host_new(&cfg, &err);
    CHECK(!act_host_has(h, "echo"));
    act_host_free(h);
}

static void test_ambiguous_activity(void) {
    act_outcome o;
    run1("dup", NULL, 0, &o);
    expect_failure(&o, "AmbiguousActivity");
    if (o.failure) {
        CHECK_CONTAINS(o.failure->message, "basic.lua");
        CHECK_CONTAINS(o.failure->message, "other.lua");
    }
    act_outcome_clear(&o);
    run1("other.dup", NULL, 0, &o);
    CHECK_STREQ(result_json(&o), "\"other\"");
    act_outcome_clear(&o);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_module_errors(void) {
    char dir[] = "/tmp/jorch-act-modsXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    write_file(dir, "a.lua", "return { f = function( end }");
    write_file(dir, "b.lua", "return 5");
    write_file(dir, "c.lua", "return { ok = function() return 'ok' end }");
    jerr err = {0};
    act_host_config cfg = {.activities_dir = dir, .threads = 1};
    act_host *h = act_host_new(&cfg, &err);
    act_task t = {.activity_type = "x", .token = 1};
    CHECK(act_host_submit(h, &t, &err) == 0);
    t.activity_type = "b.f";
    CHECK(act_host_submit(h, &t, &err) == 0);
    t.activity_type = "c.ok";
    CHECK(act_host_submit(h, &t, &err) == 0);
    act_outcome o;
    CHECK_INT(act_host_wait(h, 30000, &o), 1);
    expect_failure(&o, "ActivityModuleError");
    if (o.failure) CHECK_CONTAINS(o.failure->message, "a.lua failed to load");
    act_outcome_clear(&o);
    CHECK_INT(act_host_wait(h, 30000, &o), 1);
    expect_failure(&o, "ActivityModuleError");
    if (o.failure) CHECK_CONTAINS(o.failure->message, "b.lua returned a number");
    act_outcome_clear(&o);
    /* Naming the module skips the broken ones. */
    CHECK_INT(act_host_wait(h, 30000, &o), 1);
    CHECK_STREQ(result_json(&o), "\"ok\"");
    act_outcome_clear(&o);
    /* A broken module answers "maybe": the attempt reports the real error. */
    CHECK(act_host_has(h, "x"));
    CHECK(act_host_has(h, "c.ok"));
    act_host_free(h);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* Sets path's modification time to *ts (NULL: keep it), which leaves its
 * change time at now: what an editor that restores times does. */
static void set_mtime(const char *dir, const char *name, const struct timespec *ts) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct timespec both[2] = {*ts, *ts};
    CHECK(utimensat(AT_FDCWD, path, both, 0) == 0);
}

static struct timespec mtime_of(const char *dir, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    memset(&st, 0, sizeof st);
    CHECK(stat(path, &st) == 0);
    return st.st_mtim;
}

static void expect_result(act_host *h, const char *name, const char *json) {
    act_task t = {.activity_type = name, .token = 1};
    jerr err = {0};
    CHECK(act_host_submit(h, &t, &err) == 0);
    act_outcome o;
    CHECK_INT(act_host_wait(h, 30000, &o), 1);
    if (json) {
        CHECK_STREQ(o.kind == ACT_COMPLETED ? result_json(&o) : failure_type(&o), json);
    } else {
        expect_failure(&o, "ActivityNotFound");
    }
    act_outcome_clear(&o);
}

/* Modules are compiled once per version of their file and the directory
 * listed once per version of it, yet every edit is seen by the next
 * attempt (docs/activities.md): a same-size edit that keeps the old
 * modification time, a broken then fixed module, files added and removed. */
static void test_module_versions(void) {
    char dir[] = "/tmp/jorch-act-versXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    write_file(dir, "m.lua", "return { v = function() return 1 end }");
    struct timespec first = mtime_of(dir, "m.lua");
    /* files changed within the last second are not cached (a second write
     * in the same clock tick would keep the time): let these settle */
    struct timespec pause = {2, 200000000};
    nanosleep(&pause, NULL);
    jerr err = {0};
    act_host_config cfg = {.activities_dir = dir, .threads = 2};
    act_host *h = act_host_new(&cfg, &err);
    CHECK(h != NULL);
    if (!h) return;
    expect_result(h, "v", "1");
    expect_result(h, "v", "1"); /* from the compiled copy and the listing kept */
    expect_result(h, "w", NULL);
    write_file(dir, "m.lua", "return { v = function() return 2 end }"); /* same size, same inode */
    set_mtime(dir, "m.lua", &first);
    expect_result(h, "v", "2");
    write_file(dir, "m.lua", "return { v = function( return 3 end }");
    expect_result(h, "v", "ActivityModuleError");
    write_file(dir, "m.lua", "return { v = function() return 4 end, x = 1 }");
    expect_result(h, "v", "4");
    write_file(dir, "n.lua", "return { w = function() return 5 end }");
    expect_result(h, "w", "5");
    expect_result(h, "n.w", "5");
    char path[256];
    snprintf(path, sizeof path, "%s/n.lua", dir);
    CHECK(unlink(path) == 0);
    expect_result(h, "w", NULL);
    expect_result(h, "v", "4");
    act_host_free(h);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void test_encoding_error(void) {
    act_outcome o;
    run1("bad_result", NULL, 0, &o);
    expect_failure(&o, "EncodingError");
    if (o.failure) CHECK_CONTAINS(o.failure->message, "activity 'bad_result'");
    act_outcome_clear(&o);
}

static void test_info(void) {
    act_host *h = host_new(1, NULL, NULL);
    Temporal__Api__Common__V1__Payloads *hb = args_of((const char *[]){"{\"step\":3}", NULL});
    act_task t = {.activity_type = "info", .activity_id = "act-9", .workflow_id = "wf-1", .run_id = "r-1",
                  .workflow_type = "Flow", .attempt = 3, .heartbeat_details = hb, .token = 1};
    jerr err = {0};
    CHECK(act_host_submit(h, &t, &err) == 0);
    protobuf_c_message_free_unpacked(&hb->base, NULL);
    act_outcome o;
    CHECK_INT(act_host_wait(h, 30000, &o), 1);
    CHECK_STREQ(result_json(&o), "{\"activity_id\":\"act-9\",\"activity_type\":\"info\",\"attempt\":3,"
                                 "\"heartbeat_details\":{\"step\":3},\"run_id\":\"r-1\",\"workflow_id\":\"wf-1\","
                                 "\"workflow_type\":\"Flow\"}");
    act_outcome_clear(&o);
    act_host_free(h);
}

static char log_seen[256];
static void capture_log(void *ud, const char *type, const char *line) {
    snprintf(log_seen, sizeof log_seen, "%s|%s", type, line);
}

static void test_log(void) {
    jerr err = {0};
    act_host_config cfg = {.activities_dir = DIR_, .log_fn = capture_log};
    act_host *h = act_host_new(&cfg, &err);
    submit(h, "log", (const char *[]){"\"x\"", NULL}, 0, 1);
    act_outcome o;
    CHECK_INT(act_host_wait(h, 30000, &o), 1);
    CHECK_STREQ(log_seen, "log|hello 42 x");
    act_outcome_clear(&o);
    submit(h, "print", (const char *[]){"1", NULL}, 0, 2);
    CHECK_INT(act_host_wait(h, 30000, &o), 1);
    CHECK_STREQ(log_seen, "print|printed 1");
    act_outcome_clear(&o);
    submit(h, "try", (const char *[]){"\"os.exit\"", "1", NULL}, 0, 3);
    CHECK_INT(act_host_wait(h, 30000, &o), 1);
    CHECK_CONTAINS(result_json(&o), "os.exit is not available to activities");
    act_outcome_clear(&o);
    act_host_free(h);
}

/* ---------------------------------------------------------- concurrency */

static double json_num(const char *json, const char *key) {
    const char *p = strstr(json, key);
    return p ? strtod(p + strlen(key) + 2, NULL) : NAN;
}

static void test_concurrent(void) {
    act_host *h = host_new(4, NULL, NULL);
    double t0 = now_s();
    for (uint64_t i = 1; i <= 3; i++) submit(h, "window", (const char *[]){"0.6", NULL}, 0, i);
    CHECK_INT(act_host_busy(h), 3);
    double max_start = 0, min_finish = 1e300;
    for (int i = 0; i < 3; i++) {
        act_outcome o;
        CHECK_INT(act_host_wait(h, 30000, &o), 1);
        CHECK_INT(o.kind, ACT_COMPLETED);
        const char *r = result_json(&o);
        double s = json_num(r, "\"start\""), f = json_num(r, "\"finish\"");
        if (s > max_start) max_start = s;
        if (f < min_finish) min_finish = f;
        act_outcome_clear(&o);
    }
    /* Overlap: every attempt started before any finished. */
    CHECK_MSG(max_start < min_finish, "latest start %.3f, earliest finish %.3f", max_start, min_finish);
    CHECK_MSG(now_s() - t0 < 1.6, "three 0.6 s activities took %.2f s", now_s() - t0);
    CHECK_INT(act_host_busy(h), 0);
    act_outcome o;
    CHECK_INT(act_host_wait(h, 0, &o), 0);
    act_host_free(h);
}

/* A slow activity never blocks the caller: submit returns at once, wait
 * with a timeout returns 0 while it runs. */
static void test_wait_timeout(void) {
    act_host *h = host_new(1, NULL, NULL);
    submit(h, "window", (const char *[]){"0.5", NULL}, 0, 1);
    act_outcome o;
    double t0 = now_s();
    CHECK_INT(act_host_wait(h, 100, &o), 0);
    CHECK(now_s() - t0 < 0.4);
    CHECK_INT(act_host_wait(h, 10000, &o), 1);
    act_outcome_clear(&o);
    act_host_free(h);
}

/* ------------------------------------------------------------- timeouts */

static void expect_timeout(const act_outcome *o, const char *name) {
    CHECK_INT(o->kind, ACT_FAILED);
    CHECK(IS_TIMEOUT(o->failure));
    if (IS_TIMEOUT(o->failure)) {
        CHECK_INT(o->failure->timeout_failure_info->timeout_type,
                  TEMPORAL__API__ENUMS__V1__TIMEOUT_TYPE__TIMEOUT_TYPE_START_TO_CLOSE);
        char want[128];
        snprintf(want, sizeof want, "activity '%s' exceeded its start-to-close timeout of", name);
        CHECK_CONTAINS(o->failure->message, want);
    } else if (o->failure) {
        fprintf(stderr, "  got failure: %s\n", o->failure->message);
    }
}

static void test_timeout_busy_loop(void) {
    const char *names[] = {"spin", "spin_pcall"};
    for (int i = 0; i < 2; i++) {
        act_outcome o;
        double t0 = now_s();
        run1(names[i], NULL, 300 * 1000000LL, &o);
        expect_timeout(&o, names[i]);
        CHECK_MSG(now_s() - t0 < 3.0, "%s stopped after %.2f s", names[i], now_s() - t0);
        act_outcome_clear(&o);
    }
    act_outcome o;
    run1("spin", NULL, 2 * SEC, &o);
    if (o.failure) CHECK_CONTAINS(o.failure->message, "timeout of 2s");
    act_outcome_clear(&o);
}

/* A process that is gone or a zombie (reaped by whoever adopted it). */
static bool process_alive(pid_t pid) {
    if (kill(pid, 0) < 0) return false;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

static void test_timeout_exec_kills_group(void) {
    char pidfile[] = "/tmp/jorch-act-pidsXXXXXX";
    int fd = mkstemp(pidfile);
    CHECK(fd >= 0);
    close(fd);
    char opts[512];
    /* The shell is the program under test here, not a tool of jorch.exec:
     * it records its pid and a grandchild's, then waits. */
    snprintf(opts, sizeof opts,
             "{\"argv\":[\"/bin/sh\",\"-c\",\"echo $$ > %s; sleep 30 & echo $! >> %s; wait\"]}", pidfile, pidfile);
    act_outcome o;
    double t0 = now_s();
    run1("exec", (const char *[]){opts, NULL}, 800 * 1000000LL, &o);
    expect_timeout(&o, "exec");
    CHECK_MSG(now_s() - t0 < 4.0, "stopped after %.2f s", now_s() - t0);
    act_outcome_clear(&o);
    FILE *f = fopen(pidfile, "r");
    int p1 = 0, p2 = 0;
    CHECK(f && fscanf(f, "%d %d", &p1, &p2) == 2);
    if (f) fclose(f);
    CHECK(p1 > 1 && p2 > 1);
    for (int i = 0; i < 50 && (process_alive(p1) || process_alive(p2)); i++) usleep(20000);
    CHECK_MSG(p1 > 1 && !process_alive(p1), "shell %d still alive", p1);
    CHECK_MSG(p2 > 1 && !process_alive(p2), "grandchild %d still alive", p2);
    unlink(pidfile);
}

/* ------------------------------------------------- heartbeat, cancellation */

typedef struct hb_state {
    pthread_mutex_t mu;
    int count;
    int cancel_after;
    char last[256];
} hb_state;

static bool on_hb(void *ud, uint64_t token, const Temporal__Api__Common__V1__Payloads *details) {
    hb_state *s = ud;
    pthread_mutex_lock(&s->mu);
    s->count++;
    snprintf(s->last, sizeof s->last, "%s", details_json(details));
    bool cancel = s->cancel_after && s->count >= s->cancel_after;
    pthread_mutex_unlock(&s->mu);
    return cancel;
}

static void test_heartbeat_cancel(void) {
    hb_state s = {.mu = PTHREAD_MUTEX_INITIALIZER, .cancel_after = 3};
    act_host *h = host_new(1, on_hb, &s);
    submit(h, "beat", NULL, 0, 5);
    act_outcome o;
    CHECK_INT(act_host_wait(h, 30000, &o), 1);
    CHECK_INT(o.kind, ACT_CANCELED);
    CHECK_INT(s.count, 3);
    CHECK_STREQ(s.last, "{\"i\":3}");
    CHECK_STREQ(details_json(o.details), "{\"i\":3}");
    act_outcome_clear(&o);

    /* Heartbeats without a cancel request let it finish. */
    s.count = 0;
    s.cancel_after = 0;
    submit(h, "beat", (const char *[]){"5", NULL}, 0, 6);
    CHECK_INT(act_host_wait(h, 30000, &o), 1);
    CHECK_STREQ(result_json(&o), "\"finished\"");
    CHECK_INT(s.count, 5);
    act_outcome_clear(&o);
    act_host_free(h);
}

static void test_host_cancel(void) {
    act_host *h = host_new(1, NULL, NULL);
    /* Running: observed at the next heartbeat. */
    submit(h, "beat", NULL, 0, 1);
    /* Queued behind it: completes as cancelled without running. */
    submit(h, "window", (const char *[]){"5", NULL}, 0, 2);
    usleep(100000);
    act_host_cancel(h, 2);
    act_outcome o;
    CHECK_INT(act_host_wait(h, 1000, &o), 1);
    CHECK_INT(o.token, 2);
    CHECK_INT(o.kind, ACT_CANCELED);
    act_outcome_clear(&o);
    act_host_cancel(h, 1);
    CHECK_INT(act_host_wait(h, 5000, &o), 1);
    CHECK_INT(o.token, 1);
    CHECK_INT(o.kind, ACT_CANCELED);
    act_outcome_clear(&o);

    act_host_free(h);

    /* A cancellation an activity catches is still visible to it. */
    hb_state s = {.mu = PTHREAD_MUTEX_INITIALIZER, .cancel_after = 1};
    h = host_new(1, on_hb, &s);
    submit(h, "cancelled_after_catch", NULL, 0, 4);
    CHECK_INT(act_host_wait(h, 5000, &o), 1);
    CHECK_STREQ(result_json(&o), "{\"cancelled\":true,\"ok\":false,\"type\":\"CancelledError\"}");
    act_outcome_clear(&o);

    /* Cancelling a running exec kills the child. */
    submit(h, "exec", (const char *[]){"{\"argv\":[\"sleep\",\"30\"]}", NULL}, 0, 5);
    usleep(200000);
    double t0 = now_s();
    act_host_cancel(h, 5);
    CHECK_INT(act_host_wait(h, 10000, &o), 1);
    CHECK_INT(o.kind, ACT_CANCELED);
    CHECK(now_s() - t0 < 3.0);
    act_outcome_clear(&o);
    act_host_free(h);
}

/* Freeing a host with a stuck activity stops it and returns. */
static void test_free_while_running(void) {
    act_host *h = host_new(2, NULL, NULL);
    submit(h, "spin", NULL, 0, 1);
    submit(h, "exec", (const char *[]){"{\"argv\":[\"sleep\",\"30\"]}", NULL}, 0, 2);
    submit(h, "window", (const char *[]){"30", NULL}, 0, 3);
    usleep(200000);
    double t0 = now_s();
    act_host_free(h);
    CHECK_MSG(now_s() - t0 < 4.0, "free took %.2f s", now_s() - t0);
}

/* ----------------------------------------------------------------- exec */

static void test_exec_hostile_args(void) {
    const char *opts =
        "{\"argv\":[\"/usr/bin/printf\",\"<%s>\",\"it's \\\"quoted\\\"\",\"$(touch /tmp/jorch-pwned)\","
        "\"`touch /tmp/jorch-pwned`\",\"a\\nb\",\"; rm -rf /tmp/jorch-nothing\",\"$HOME\",\"*\",\"| cat\",\"\"]}";
    unlink("/tmp/jorch-pwned");
    act_outcome o;
    run1("exec", (const char *[]){opts, NULL}, 0, &o);
    CHECK_INT(o.kind, ACT_COMPLETED);
    CHECK_STREQ(result_json(&o),
                "{\"status\":0,\"stderr\":\"\",\"stdout\":\"<it's \\\"quoted\\\"><$(touch /tmp/jorch-pwned)>"
                "<`touch /tmp/jorch-pwned`><a\\nb><; rm -rf /tmp/jorch-nothing><$HOME><*><| cat><>\","
                "\"timed_out\":false,\"truncated\":false}");
    CHECK(access("/tmp/jorch-pwned", F_OK) != 0);
    act_outcome_clear(&o);
}

static void test_exec_io(void) {
    act_outcome o;
    /* 3 MiB through cat: stdin is written while stdout is read. */
    run1("exec_stdin_big", (const char *[]){"3145728", NULL}, 0, &o);
    CHECK_STREQ(result_json(&o), "{\"len\":3145728,\"same\":true,\"status\":0}");
    act_outcome_clear(&o);

    run1("exec", (const char *[]){"{\"argv\":[\"sh\",\"-c\",\"echo out; echo err >&2; exit 3\"]}", NULL}, 0, &o);
    CHECK_STREQ(result_json(&o), "{\"status\":3,\"stderr\":\"err\\n\",\"stdout\":\"out\\n\",\"timed_out\":false,"
                                 "\"truncated\":false}");
    act_outcome_clear(&o);

    /* Output beyond max_output is cut and flagged; the child still finishes. */
    run1("exec",
         (const char *[]){"{\"argv\":[\"sh\",\"-c\",\"head -c 2000000 /dev/zero | tr '\\\\0' a\"],\"max_output\":1000}",
                          "true", NULL},
         0, &o);
    CHECK_STREQ(result_json(&o), "{\"status\":0,\"stderr_len\":0,\"stdout_len\":1000,\"stdout_ok\":true,"
                                 "\"timed_out\":false,\"truncated\":true}");
    act_outcome_clear(&o);

    /* 2 MiB on stdout and stderr at once. */
    run1("exec",
         (const char *[]){"{\"argv\":[\"sh\",\"-c\",\"head -c 2000000 /dev/zero | tr '\\\\0' b >&2; "
                          "head -c 2000000 /dev/zero | tr '\\\\0' a\"]}",
                          "true", NULL},
         0, &o);
    CHECK_CONTAINS(result_json(&o), "\"stdout_len\":2000000,\"stdout_ok\":true");
    act_outcome_clear(&o);

    /* Killed by a signal. */
    run1("exec", (const char *[]){"{\"argv\":[\"sh\",\"-c\",\"kill -9 $$\"]}", NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "\"signal\":9");
    act_outcome_clear(&o);
}

static void test_exec_cwd_env(void) {
    setenv("JORCH_TEST_SECRET", "s3cret", 1);
    act_outcome o;
    run1("exec",
         (const char *[]){"{\"argv\":[\"/bin/sh\",\"-c\",\"pwd; echo \\\"$FOO\\\"; echo \\\"${JORCH_TEST_SECRET-unset}\\\"\"],"
                          "\"cwd\":\"/tmp\",\"env\":{\"FOO\":\"bar baz\"}}",
                          NULL},
         0, &o);
    CHECK_CONTAINS(result_json(&o), "\"stdout\":\"/tmp\\nbar baz\\ns3cret\\n\"");
    act_outcome_clear(&o);
    run1("exec",
         (const char *[]){"{\"argv\":[\"/bin/sh\",\"-c\",\"echo \\\"$FOO\\\"; echo \\\"${JORCH_TEST_SECRET-unset}\\\"\"],"
                          "\"env\":{\"FOO\":\"x\"},\"env_clear\":true}",
                          NULL},
         0, &o);
    CHECK_CONTAINS(result_json(&o), "\"stdout\":\"x\\nunset\\n\"");
    act_outcome_clear(&o);
    run1("env", (const char *[]){"\"JORCH_TEST_SECRET\"", NULL}, 0, &o);
    CHECK_STREQ(result_json(&o), "\"s3cret\"");
    act_outcome_clear(&o);
}

static void test_exec_errors(void) {
    act_outcome o;
    run1("try", (const char *[]){"\"jorch.exec\"", "{\"argv\":[\"no-such-program-jorch\"]}", NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "exec: cannot run 'no-such-program-jorch': No such file or directory");
    act_outcome_clear(&o);
    run1("try", (const char *[]){"\"jorch.exec\"", "{\"argv\":[\"/no/such/prog\"]}", NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "exec: cannot run '/no/such/prog': No such file or directory");
    act_outcome_clear(&o);
    run1("try", (const char *[]){"\"jorch.exec\"", "{\"argv\":[]}", NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "argv is empty");
    act_outcome_clear(&o);
    run1("try", (const char *[]){"\"jorch.exec\"", "{\"argv\":[\"echo\",1]}", NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "argv[2] is a number");
    act_outcome_clear(&o);
    run1("try", (const char *[]){"\"jorch.exec\"", "{\"argv\":[\"pwd\"],\"cwd\":\"/no/such/dir\"}", NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "cannot change to directory '/no/such/dir'");
    act_outcome_clear(&o);

    /* exec's own timeout: the child is killed, the call returns. */
    double t0 = now_s();
    run1("exec", (const char *[]){"{\"argv\":[\"sleep\",\"30\"],\"timeout\":0.3}", NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "\"signal\":15");
    CHECK_CONTAINS(result_json(&o), "\"timed_out\":true");
    CHECK(now_s() - t0 < 3.0);
    act_outcome_clear(&o);
}

static void test_exec_heartbeat(void) {
    hb_state s = {.mu = PTHREAD_MUTEX_INITIALIZER, .cancel_after = 3};
    act_host *h = host_new(1, on_hb, &s);
    submit(h, "exec", (const char *[]){"{\"argv\":[\"sleep\",\"30\"],\"heartbeat\":0.1}", NULL}, 0, 1);
    act_outcome o;
    double t0 = now_s();
    CHECK_INT(act_host_wait(h, 10000, &o), 1);
    CHECK_INT(o.kind, ACT_CANCELED);
    CHECK_INT(s.count, 3);
    CHECK(now_s() - t0 < 3.0);
    act_outcome_clear(&o);
    act_host_free(h);
}

/* ----------------------------------------------------------------- http */

static pid_t server_pid;
static int server_port;
static int server_stdin = -1; /* the server exits when this closes */
static int server_stdout = -1; /* kept open until the server stops */

static bool start_server(void) {
    if (server_port) return true;
    int p[2], in[2];
    if (pipe2(p, O_CLOEXEC) < 0 || pipe2(in, O_CLOEXEC) < 0) return false;
    server_pid = fork();
    if (server_pid == 0) {
        dup2(p[1], 1);
        dup2(in[0], 0);
        execlp("python3", "python3", DIR_ "/http_echo.py", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    close(in[0]);
    server_stdin = in[1];
    char buf[32] = "";
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    server_stdout = p[0];
    if (n <= 0) return false;
    server_port = atoi(buf);
    return server_port > 0;
}

static void stop_server(void) {
    if (server_stdin >= 0) close(server_stdin);
    if (server_stdout >= 0) close(server_stdout);
    server_stdin = server_stdout = -1;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    server_pid = 0;
    server_port = 0;
}

static void test_http_echo(void) {
    if (!start_server()) {
        CHECK_MSG(false, "cannot start tests/activities/http_echo.py (python3 missing?)");
        return;
    }
    char opts[512];
    snprintf(opts, sizeof opts,
             "{\"url\":\"http://127.0.0.1:%d/path?q=1\",\"method\":\"POST\",\"body\":\"hello\","
             "\"headers\":{\"X-Token\":\"abc\",\"Content-Type\":\"text/plain\"}}",
             server_port);
    act_outcome o;
    run1("http", (const char *[]){opts, NULL}, 0, &o);
    const char *r = result_json(&o);
    CHECK_CONTAINS(r, "\"status\":200");
    CHECK_CONTAINS(r, "\"method\":\"POST\"");
    CHECK_CONTAINS(r, "\"path\":\"/path?q=1\"");
    CHECK_CONTAINS(r, "\"x-token\":\"abc\"");
    CHECK_CONTAINS(r, "\"content-type\":\"text/plain\"");
    CHECK_CONTAINS(r, "\"body\":\"hello\"");
    CHECK_CONTAINS(r, "\"x-test\":\"yes\"");
    CHECK_CONTAINS(r, "\"x-multi\":\"a, b\"");
    act_outcome_clear(&o);

    snprintf(opts, sizeof opts, "{\"url\":\"http://127.0.0.1:%d/x\",\"method\":\"PUT\",\"body\":\"{}\"}", server_port);
    run1("http", (const char *[]){opts, NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "\"status\":201");
    CHECK_CONTAINS(result_json(&o), "\"method\":\"PUT\"");
    act_outcome_clear(&o);

    /* Redirects are followed only when asked. */
    snprintf(opts, sizeof opts, "{\"url\":\"http://127.0.0.1:%d/redirect\"}", server_port);
    run1("http", (const char *[]){opts, NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "\"status\":302");
    act_outcome_clear(&o);
    snprintf(opts, sizeof opts, "{\"url\":\"http://127.0.0.1:%d/redirect\",\"follow\":true}", server_port);
    run1("http", (const char *[]){opts, NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "\"path\":\"/final\"");
    act_outcome_clear(&o);

    char url[128];
    snprintf(url, sizeof url, "\"http://127.0.0.1:%d/g\"", server_port);
    run1("http_get", (const char *[]){url, NULL}, 0, &o);
    CHECK_STREQ(result_json(&o), "200");
    act_outcome_clear(&o);

    /* max_bytes */
    snprintf(opts, sizeof opts, "{\"url\":\"http://127.0.0.1:%d/big\",\"max_bytes\":10}", server_port);
    run1("try", (const char *[]){"\"jorch.http.request\"", opts, NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "larger than max_bytes = 10");
    act_outcome_clear(&o);

    /* A slow server is cut off by the start-to-close timeout. */
    snprintf(opts, sizeof opts, "{\"url\":\"http://127.0.0.1:%d/slow\"}", server_port);
    double t0 = now_s();
    run1("http", (const char *[]){opts, NULL}, 500 * 1000000LL, &o);
    expect_timeout(&o, "http");
    CHECK(now_s() - t0 < 3.0);
    act_outcome_clear(&o);
}

static int free_port(void) {
    /* A port nobody listens on: bind an ephemeral one and release it. */
    int port = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static void test_http_refused_redacts(void) {
    int port = free_port();
    char opts[512], want[256];
    snprintf(opts, sizeof opts,
             "{\"url\":\"http://user:hunter2@127.0.0.1:%d/x?token=abcdef\",\"headers\":{\"Authorization\":\"Bearer zzz-secret\"}}",
             port);
    act_outcome o;
    run1("http", (const char *[]){opts, NULL}, 0, &o);
    expect_failure(&o, "Error");
    snprintf(want, sizeof want, "http GET http://127.0.0.1:%d/... failed: Couldn't connect to server", port);
    if (o.failure) {
        CHECK_CONTAINS(o.failure->message, want);
        CHECK(!strstr(o.failure->message, "hunter2"));
        CHECK(!strstr(o.failure->message, "abcdef"));
        CHECK(!strstr(o.failure->message, "zzz-secret"));
        CHECK(!strstr(o.failure->stack_trace, "hunter2"));
    }
    act_outcome_clear(&o);

    /* a path can be the secret too (a Slack webhook's is) */
    snprintf(opts, sizeof opts, "{\"url\":\"http://127.0.0.1:%d/services/T1/B1/webhook-secret-42\"}", port);
    run1("http", (const char *[]){opts, NULL}, 0, &o);
    expect_failure(&o, "Error");
    if (o.failure) {
        CHECK(!strstr(o.failure->message, "webhook-secret-42"));
        CHECK(!strstr(o.failure->stack_trace, "webhook-secret-42"));
    }
    act_outcome_clear(&o);

    /* Only http and https are spoken. */
    run1("try", (const char *[]){"\"jorch.http.request\"", "{\"url\":\"ftp://127.0.0.1/x\"}", NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "http GET ftp://127.0.0.1/... failed");
    act_outcome_clear(&o);
}

/* ------------------------------------------------------------ json, fs */

static void test_json(void) {
    act_outcome o;
    run1("json_roundtrip", (const char *[]){"{\"b\":[1,2],\"a\":\"x\"}", NULL}, 0, &o);
    CHECK_STREQ(result_json(&o), "{\"back\":{\"a\":\"x\",\"b\":[1,2]},\"text\":\"{\\\"a\\\":\\\"x\\\",\\\"b\\\":[1,2]}\"}");
    act_outcome_clear(&o);
    run1("try", (const char *[]){"\"jorch.json.decode\"", "\"{nope\"", NULL}, 0, &o);
    CHECK_CONTAINS(result_json(&o), "jorch.json.decode");
    act_outcome_clear(&o);
}

static void test_fs(void) {
    char dir[] = "/tmp/jorch-act-fsXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char arg[128];
    snprintf(arg, sizeof arg, "\"%s\"", dir);
    act_outcome o;
    run1("fs", (const char *[]){arg, NULL}, 0, &o);
    const char *r = result_json(&o);
    CHECK_CONTAINS(r, "\"read\":\"two\"");
    CHECK_CONTAINS(r, "\"log\":\"xy\"");
    CHECK_CONTAINS(r, "\"list\":[\"c.txt\",\"f.txt\",\"log\"]");
    CHECK_CONTAINS(r, "\"after\":[\"f.txt\",\"log\"]");
    CHECK_CONTAINS(r, "\"exists\":true");
    CHECK_CONTAINS(r, "\"missing\":false");
    CHECK_CONTAINS(r, "\"removed\":true,\"removed_again\":false");
    CHECK_CONTAINS(r, "jorch.fs.read: cannot open");
    act_outcome_clear(&o);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* ------------------------------------------------------------------ cli */

static int run_cli(char *out, size_t cap, int argc, char **argv) {
    fflush(stdout);
    int saved = dup(1);
    char path[] = "/tmp/jorch-act-cliXXXXXX";
    int fd = mkstemp(path);
    dup2(fd, 1);
    int rc = act_cli_main(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return rc;
}

static void test_cli(void) {
    char out[4096];
    char *a1[] = {"activity", "basic.add", "2", "3", "--activities", DIR_};
    CHECK_INT(run_cli(out, sizeof out, 6, a1), 0);
    CHECK_STREQ(out, "5\n");
    char *a2[] = {"activity", "--activities=" DIR_, "greet", "world"};
    CHECK_INT(run_cli(out, sizeof out, 4, a2), 0);
    CHECK_STREQ(out, "\"hello world\"\n");
    char *a3[] = {"activity", "plain", "--activities", DIR_};
    CHECK_INT(run_cli(out, sizeof out, 4, a3), 1);
    char *a4[] = {"activity"};
    CHECK_INT(run_cli(out, sizeof out, 1, a4), 2);
    char *a5[] = {"activity", "--bogus"};
    CHECK_INT(run_cli(out, sizeof out, 2, a5), 2);
    char *a6[] = {"activity", "--help"};
    CHECK_INT(run_cli(out, sizeof out, 2, a6), 0);
    CHECK_CONTAINS(out, "usage: jorch activity NAME");
    char *a7[] = {"activity", "spin", "--timeout", "200ms", "--activities", DIR_};
    CHECK_INT(run_cli(out, sizeof out, 6, a7), 1);
}

static void test_http_cleanup(void) { stop_server(); }

TEST_MAIN(TEST_CASE(test_result_round_trip), TEST_CASE(test_typed_error), TEST_CASE(test_plain_error),
          TEST_CASE(test_unknown_activity), TEST_CASE(test_ambiguous_activity), TEST_CASE(test_module_errors), TEST_CASE(test_module_versions),
          TEST_CASE(test_encoding_error),
          TEST_CASE(test_info), TEST_CASE(test_log), TEST_CASE(test_concurrent), TEST_CASE(test_wait_timeout),
          TEST_CASE(test_timeout_busy_loop), TEST_CASE(test_timeout_exec_kills_group),
          TEST_CASE(test_heartbeat_cancel), TEST_CASE(test_host_cancel), TEST_CASE(test_free_while_running),
          TEST_CASE(test_exec_hostile_args), TEST_CASE(test_exec_io), TEST_CASE(test_exec_cwd_env),
          TEST_CASE(test_exec_errors), TEST_CASE(test_exec_heartbeat), TEST_CASE(test_http_echo),
          TEST_CASE(test_http_refused_redacts), TEST_CASE(test_json), TEST_CASE(test_fs), TEST_CASE(test_cli),
          TEST_CASE(test_http_cleanup))
