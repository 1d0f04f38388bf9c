/*
 * test_act_slots.c - the activity attempt table (runtime/activity/
 * act_slots.c) that backends keep beside the activity host: capacity,
 * heartbeat throttling and cancellation, marks, late heartbeats, release.
 */
#include <time.h>

#include "activity/activity.h"
#include "test.h"

static Temporal__Api__Common__V1__Payloads *one_payload(const char *json) {
    Temporal__Api__Common__V1__Payloads *ps = payloads_new();
    Temporal__Api__Common__V1__Payload *p = payload_new_json(json, strlen(json));
    if (ps == NULL || p == NULL || payloads_add(ps, p) != 0) abort();
    return ps;
}

static void capacity_and_tokens(void) {
    jerr err = {0};
    act_slots *s = act_slots_new(2, &err);
    CHECK(s != NULL);
    CHECK_INT(act_slots_capacity(s), 2);
    int a = 1, b = 2, c = 3;
    CHECK_INT(act_slots_add(s, 10, &a, 1000), 0);
    CHECK_INT(act_slots_add(s, 10, &b, 1000), -1); /* a token is held once */
    CHECK_INT(act_slots_add(s, 11, &b, 1000), 0);
    CHECK_INT(act_slots_add(s, 12, &c, 1000), -1); /* full */
    CHECK_INT(act_slots_used(s), 2);
    act_slot_info info;
    CHECK(act_slots_release(s, 10, &info));
    CHECK(info.task == &a);
    CHECK(!act_slots_release(s, 10, &info)); /* already released */
    CHECK_INT(act_slots_add(s, 12, &c, 1000), 0);
    CHECK_INT(act_slots_used(s), 2);
    act_slots_free(s, NULL);
}

static void heartbeat_throttle_and_cancel(void) {
    jerr err = {0};
    act_slots *s = act_slots_new(4, &err);
    int task = 0;
    CHECK_INT(act_slots_add(s, 7, &task, (int64_t)60 * 1000000000), 0);
    act_beat b = act_slots_beat(s, 99, NULL, false);
    CHECK(!b.known);
    b = act_slots_beat(s, 7, NULL, false);
    CHECK(b.known && b.send && !b.cancel && b.task == &task); /* the first is always sent */
    b = act_slots_beat(s, 7, NULL, false);
    CHECK(b.known && !b.send && !b.cancel); /* then at most once per interval */
    CHECK(act_slots_mark(s, 7, true, false, false));
    b = act_slots_beat(s, 7, NULL, false);
    CHECK(b.cancel && !b.send); /* a cancelled attempt's heartbeats are not forwarded */
    CHECK(!act_slots_mark(s, 8, true, false, false));
    act_slot_info info;
    CHECK(act_slots_release(s, 7, &info));
    CHECK(info.cancel_requested && !info.gone && !info.heartbeat_timed_out);
    act_slots_free(s, NULL);
}

static void details_kept(void) {
    jerr err = {0};
    act_slots *s = act_slots_new(1, &err);
    CHECK_INT(act_slots_add(s, 1, NULL, 0), 0);
    Temporal__Api__Common__V1__Payloads *d1 = one_payload("1"), *d2 = one_payload("\"two\"");
    act_slots_beat(s, 1, d1, true);
    act_slots_beat(s, 1, d2, true);
    act_slots_beat(s, 1, NULL, true); /* no details keeps the last ones */
    protobuf_c_message_free_unpacked(&d1->base, NULL);
    protobuf_c_message_free_unpacked(&d2->base, NULL);
    act_slot_info info;
    CHECK(act_slots_release(s, 1, &info));
    CHECK(info.details != NULL && info.details->n_payloads == 1);
    if (info.details != NULL && info.details->n_payloads == 1)
        CHECK_INT(info.details->payloads[0]->data.len, 5);
    if (info.details) protobuf_c_message_free_unpacked(&info.details->base, NULL);
    /* details still held at free are freed with the table (ASan checks) */
    CHECK_INT(act_slots_add(s, 2, NULL, 0), 0);
    Temporal__Api__Common__V1__Payloads *d3 = one_payload("3");
    act_slots_beat(s, 2, d3, true);
    protobuf_c_message_free_unpacked(&d3->base, NULL);
    act_slots_free(s, NULL);
}

static void late_heartbeat(void) {
    jerr err = {0};
    act_slots *s = act_slots_new(2, &err);
    CHECK_INT(act_slots_add(s, 5, NULL, 0), 0);
    int64_t now = time_now_nanos();
    /* the clock runs only once a host thread started the attempt */
    int64_t next = -1;
    CHECK(!act_slots_heartbeat_late(s, 5, 1000, now + 1000000000, &next));
    CHECK(next == now + 1000000000 + 1000); /* not started: one timeout from now */
    act_slots_started(s, 5);
    int64_t t = time_now_nanos();
    CHECK(!act_slots_heartbeat_late(s, 5, (int64_t)10 * 1000000000, t, &next));
    CHECK(next > t && next <= time_now_nanos() + (int64_t)10 * 1000000000 + 1); /* last beat + timeout */
    CHECK(!act_slots_heartbeat_late(s, 99, 1000, t, &next));
    CHECK(next == 0); /* not held */
    CHECK(act_slots_heartbeat_late(s, 5, 1000, time_now_nanos() + 1000000000, NULL));
    CHECK(!act_slots_heartbeat_late(s, 5, 1000, time_now_nanos() + 1000000000, &next)); /* once */
    CHECK(next == 0); /* cancelled: nothing more to watch */
    act_beat b = act_slots_beat(s, 5, NULL, false);
    CHECK(b.cancel);
    act_slot_info info;
    CHECK(act_slots_release(s, 5, &info));
    CHECK(info.heartbeat_timed_out && info.cancel_requested);
    act_slots_free(s, NULL);
}

static int freed = 0;
static void count_free(void *task) {
    (void)task;
    freed++;
}

static void free_tasks_left(void) {
    jerr err = {0};
    act_slots *s = act_slots_new(3, &err);
    static int t1, t2;
    act_slots_add(s, 1, &t1, 0);
    act_slots_add(s, 2, &t2, 0);
    act_slots_release(s, 1, NULL);
    freed = 0;
    act_slots_free(s, count_free);
    CHECK_INT(freed, 1);
}

TEST_MAIN(TEST_CASE(capacity_and_tokens), TEST_CASE(heartbeat_throttle_and_cancel), TEST_CASE(details_kept),
          TEST_CASE(late_heartbeat), TEST_CASE(free_tasks_left))
