/*
 * bench_transport - the cost of one cheap gRPC call (GetSystemInfo) through
 * runtime/temporal's transport against a running server: calls per second
 * and process CPU per call, one call at a time, then BATCH calls in flight
 * at once on one tc_conn, then THREADS threads each with its own tc_conn.
 *   usage: bench_transport ADDRESS [CALLS] [THREADS]
 * (cleartext; TEMPORAL_TLS and the other TEMPORAL_* variables apply).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "temporal/temporal.h"
#include "temporal/api/workflowservice/v1/request_response.pb-c.h"

#define BATCH 50

static tc_config cfg;
static int calls_per_thread;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static const ProtobufCMessageDescriptor *resp_desc(void) {
    return &temporal__api__workflowservice__v1__get_system_info_response__descriptor;
}

static int sequential(tc_conn *conn, int n) {
    Temporal__Api__Workflowservice__V1__GetSystemInfoRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_SYSTEM_INFO_REQUEST__INIT;
    int ok = 0;
    for (int i = 0; i < n; i++) {
        ProtobufCMessage *resp = NULL;
        tc_status st;
        tc_status_init(&st);
        if (tc_unary(conn, "GetSystemInfo", &req.base, resp_desc(), NULL, &resp, &st) == 0) ok++;
        else if (ok == i) fprintf(stderr, "bench_transport: call %d: %s\n", i, st.message);
        if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
        tc_status_clear(&st);
    }
    return ok;
}

static int batched(tc_conn *conn, int n) {
    Temporal__Api__Workflowservice__V1__GetSystemInfoRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_SYSTEM_INFO_REQUEST__INIT;
    int ok = 0;
    for (int done = 0; done < n; done += BATCH) {
        tc_call *calls[BATCH];
        int k = n - done < BATCH ? n - done : BATCH;
        for (int i = 0; i < k; i++) calls[i] = tc_call_start(conn, "GetSystemInfo", &req.base, resp_desc(), NULL, NULL);
        while (tc_conn_perform(conn, 1000, NULL) > 0) {
        }
        for (int i = 0; i < k; i++) {
            ProtobufCMessage *resp = NULL;
            tc_status st;
            tc_status_init(&st);
            if (calls[i] != NULL && tc_call_result(calls[i], &resp, &st) == 0) ok++;
            if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
            tc_status_clear(&st);
            tc_call_free(calls[i]);
        }
    }
    return ok;
}

static void *thread_main(void *arg) {
    tc_conn *conn = arg;
    int *ok = malloc(sizeof *ok);
    if (ok != NULL) *ok = sequential(conn, calls_per_thread);
    return ok;
}

static void report(const char *what, int ok, int n, double t0, double c0) {
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    printf("%-28s %6d/%d ok  %9.0f calls/s  %7.1f us CPU/call\n", what, ok, n, ok / wall, cpu / (ok ? ok : 1) * 1e6);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_transport ADDRESS [CALLS] [THREADS]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    int threads = argc > 3 ? atoi(argv[3]) : 4;
    if (n < 1) n = 1;
    if (threads < 1 || threads > 64) threads = 4;
    jerr err = {0};
    tc_config_init(&cfg);
    if (tc_config_from_env(&cfg, &err) != 0 || tc_config_set(&cfg, "address", argv[1], &err) != 0 ||
        tc_config_check(&cfg, &err) != 0) {
        fprintf(stderr, "bench_transport: %s\n", err.msg);
        return 2;
    }
    tc_conn *conn = tc_conn_new(&cfg, &err);
    if (conn == NULL) {
        fprintf(stderr, "bench_transport: %s\n", err.msg);
        return 1;
    }
    sequential(conn, 20); /* warm up */
    double t0 = now_s(), c0 = cpu_s();
    report("one at a time", sequential(conn, n), n, t0, c0);
    t0 = now_s(), c0 = cpu_s();
    report("50 in flight, one tc_conn", batched(conn, n), n, t0, c0);

    tc_conn *conns[64];
    pthread_t tids[64];
    for (int i = 0; i < threads; i++) conns[i] = tc_conn_new(&cfg, &err);
    calls_per_thread = n / threads;
    t0 = now_s(), c0 = cpu_s();
    for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, thread_main, conns[i]);
    int ok = 0;
    for (int i = 0; i < threads; i++) {
        void *r = NULL;
        pthread_join(tids[i], &r);
        if (r != NULL) ok += *(int *)r;
        free(r);
    }
    char what[64];
    snprintf(what, sizeof what, "%d threads, one at a time", threads);
    report(what, ok, calls_per_thread * threads, t0, c0);
    long connects = tc_conn_connects(conn);
    for (int i = 0; i < threads; i++) {
        connects += tc_conn_connects(conns[i]);
        tc_conn_free(conns[i]);
    }
    printf("connections opened: %ld\n", connects);
    tc_conn_free(conn);
    tc_config_free(&cfg);
    return 0;
}
