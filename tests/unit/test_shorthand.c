/*
 * test_shorthand.c - payloads in the official CLI's shorthand JSON form
 * (PROTOJSON_SHORTHAND), read back in both forms, and the worker-version
 * fields of SDK-recorded histories that `temporal workflow show --output
 * json` prints and jorch used to drop.
 */
#include "common/common.h"

#include "protojson_helpers.h"
#include "test.h"

/* base64("json/plain") = anNvbi9wbGFpbg==, base64("binary/null") = YmluYXJ5L251bGw=,
 * base64("json/protobuf") = anNvbi9wcm90b2J1Zg==, base64("x.Msg") = eC5Nc2c=,
 * base64("binary/plain") = YmluYXJ5L3BsYWlu */
static const char raw_history[] =
    "{\"events\":[{\"eventId\":\"1\",\"eventType\":\"EVENT_TYPE_WORKFLOW_EXECUTION_STARTED\","
    "\"workflowExecutionStartedEventAttributes\":{\"input\":{\"payloads\":["
    "{\"metadata\":{\"encoding\":\"anNvbi9wbGFpbg==\"},\"data\":\"eyJhIjpbMSwyLjVdLCJiIjoxMjM0NTY3ODkwMTIzNDU2Nzg5fQ==\"},"
    "{\"metadata\":{\"encoding\":\"YmluYXJ5L251bGw=\"}},"
    "{\"metadata\":{\"encoding\":\"anNvbi9wcm90b2J1Zg==\",\"messageType\":\"eC5Nc2c=\"},\"data\":\"eyJrIjoidiJ9\"}]},"
    "\"memo\":{\"fields\":{\"m\":{\"metadata\":{\"encoding\":\"anNvbi9wbGFpbg==\"},\"data\":\"InZhbHVlIg==\"}}}}},"
    "{\"eventId\":\"2\",\"eventType\":\"EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED\","
    "\"workflowExecutionSignaledEventAttributes\":{\"signalName\":\"s\",\"input\":{\"payloads\":["
    "{\"metadata\":{\"encoding\":\"YmluYXJ5L3BsYWlu\"},\"data\":\"AAEC\"}]}}}]}";

static void test_shorthand_round_trip(void) {
    History *h = parse_history(raw_history, NULL);
    CHECK(h != NULL);
    if (!h) return;
    char *s = to_json(&h->base, 2, PROTOJSON_SHORTHAND);
    CHECK(s != NULL);
    if (s) {
        /* json/plain as its value, numbers as written; binary/null as null;
         * json/protobuf with its type; memo values too */
        CHECK_CONTAINS(s, "\"input\": [\n");
        CHECK_CONTAINS(s, "\"b\": 1234567890123456789");
        CHECK_CONTAINS(s, "2.5");
        CHECK_CONTAINS(s, "    null,\n");
        CHECK_CONTAINS(s, "\"_protoMessageType\": \"x.Msg\"");
        CHECK_CONTAINS(s, "\"m\": \"value\"");
        /* binary/plain has no shorthand: the whole Payloads stays raw */
        CHECK_CONTAINS(s, "\"encoding\": \"YmluYXJ5L3BsYWlu\"");
        History *back = parse_history(s, NULL);
        CHECK(back != NULL);
        if (back) {
            /* same events; the JSON payloads carry the same values */
            CHECK(back->n_events == 2);
            char *again = to_json(&back->base, 2, PROTOJSON_SHORTHAND);
            CHECK(again && strcmp(again, s) == 0);
            free(again);
            char *raw1 = to_json(&h->base, 0, 0), *raw2 = to_json(&back->base, 0, 0);
            CHECK(raw1 && raw2);
            /* the protobuf payload keeps its type; the null keeps binary/null */
            if (raw2) {
                CHECK_CONTAINS(raw2, "\"messageType\":\"eC5Nc2c=\"");
                CHECK_CONTAINS(raw2, "{\"metadata\":{\"encoding\":\"YmluYXJ5L251bGw=\"}}");
            }
            /* the binary payload is untouched */
            CHECK(same_pb(&h->events[1]->base, &back->events[1]->base));
            free(raw1);
            free(raw2);
            protobuf_c_message_free_unpacked(&back->base, NULL);
        }
    }
    /* without the flag: the raw form, byte for byte what was read */
    char *raw = to_json(&h->base, 0, 0);
    History *back = raw ? parse_history(raw, NULL) : NULL;
    CHECK(back && same_pb(&h->base, &back->base));
    if (back) protobuf_c_message_free_unpacked(&back->base, NULL);
    free(raw);
    free(s);
    protobuf_c_message_free_unpacked(&h->base, NULL);
}

/* Shorthand values that look a little like raw payloads are still values. */
static void test_shorthand_reading(void) {
    History *h = parse_history("{\"events\":[{\"eventId\":\"1\",\"eventType\":\"EVENT_TYPE_WORKFLOW_EXECUTION_STARTED\","
                               "\"workflowExecutionStartedEventAttributes\":{\"input\":[{\"data\":\"x\"}, {}, \"s\", 7, [true]]}}]}", NULL);
    CHECK(h != NULL);
    if (!h) return;
    const Temporal__Api__Common__V1__Payloads *in = h->events[0]->workflow_execution_started_event_attributes->input;
    CHECK(in && in->n_payloads == 5);
    const char *want[] = {"{\"data\":\"x\"}", "{}", "\"s\"", "7", "[true]"};
    for (size_t i = 0; in && i < in->n_payloads && i < 5; i++) {
        jbuf b;
        jbuf_init(&b, 0);
        jerr err = {0};
        CHECK(payload_to_json(in->payloads[i], &b, &err) == 0);
        CHECK_STREQ(b.data, want[i]);
        jbuf_free(&b);
    }
    protobuf_c_message_free_unpacked(&h->base, NULL);
}

/* A JSON value the reader would take for a raw payload (or for a typed
 * one) is written raw, so shorthand output always reads back the same. */
static void test_shorthand_ambiguous_stays_raw(void) {
    /* data: {"metadata":{"encoding":"eA=="},"data":"eA=="} and {"_protoMessageType":"t"} */
    History *h = parse_history("{\"events\":[{\"eventId\":\"1\",\"eventType\":\"EVENT_TYPE_WORKFLOW_EXECUTION_STARTED\","
                               "\"workflowExecutionStartedEventAttributes\":{\"input\":{\"payloads\":["
                               "{\"metadata\":{\"encoding\":\"anNvbi9wbGFpbg==\"},"
                               "\"data\":\"eyJtZXRhZGF0YSI6eyJlbmNvZGluZyI6ImVBPT0ifSwiZGF0YSI6ImVBPT0ifQ==\"}]},"
                               "\"lastCompletionResult\":{\"payloads\":[{\"metadata\":{\"encoding\":\"anNvbi9wbGFpbg==\"},"
                               "\"data\":\"eyJfcHJvdG9NZXNzYWdlVHlwZSI6InQifQ==\"}]}}}]}", NULL);
    CHECK(h != NULL);
    if (!h) return;
    char *s = to_json(&h->base, 0, PROTOJSON_SHORTHAND);
    CHECK(s != NULL);
    History *back = s ? parse_history(s, NULL) : NULL;
    CHECK(back && same_pb(&h->base, &back->base));
    if (s) CHECK_CONTAINS(s, "\"input\":{\"payloads\":[{\"metadata\"");
    if (back) protobuf_c_message_free_unpacked(&back->base, NULL);
    free(s);
    protobuf_c_message_free_unpacked(&h->base, NULL);
}

/* Worker-version fields of SDK-recorded histories survive a round trip. */
static void test_worker_version_kept(void) {
    const char *json =
        "{\"events\":[{\"eventId\":\"1\",\"eventType\":\"EVENT_TYPE_WORKFLOW_EXECUTION_STARTED\","
        "\"workflowExecutionStartedEventAttributes\":{\"sourceVersionStamp\":{\"buildId\":\"b0\"},"
        "\"inheritedBuildId\":\"b0\"}},"
        "{\"eventId\":\"2\",\"eventType\":\"EVENT_TYPE_WORKFLOW_TASK_SCHEDULED\","
        "\"workflowTaskScheduledEventAttributes\":{}},"
        "{\"eventId\":\"3\",\"eventType\":\"EVENT_TYPE_WORKFLOW_TASK_STARTED\","
        "\"workflowTaskStartedEventAttributes\":{\"scheduledEventId\":\"2\",\"workerVersion\":{\"buildId\":\"b1\"}}},"
        "{\"eventId\":\"4\",\"eventType\":\"EVENT_TYPE_WORKFLOW_TASK_COMPLETED\","
        "\"workflowTaskCompletedEventAttributes\":{\"scheduledEventId\":\"2\",\"startedEventId\":\"3\","
        "\"workerVersion\":{\"buildId\":\"b2\",\"useVersioning\":true},\"workerDeploymentVersion\":\"d.b2\"}},"
        "{\"eventId\":\"5\",\"eventType\":\"EVENT_TYPE_ACTIVITY_TASK_SCHEDULED\","
        "\"activityTaskScheduledEventAttributes\":{\"activityId\":\"1\"}},"
        "{\"eventId\":\"6\",\"eventType\":\"EVENT_TYPE_ACTIVITY_TASK_STARTED\","
        "\"activityTaskStartedEventAttributes\":{\"scheduledEventId\":\"5\",\"workerVersion\":{\"buildId\":\"b3\"}}},"
        "{\"eventId\":\"7\",\"eventType\":\"EVENT_TYPE_ACTIVITY_TASK_COMPLETED\","
        "\"activityTaskCompletedEventAttributes\":{\"scheduledEventId\":\"5\",\"workerVersion\":{\"buildId\":\"b4\"}}}]}";
    History *h = parse_history(json, NULL);
    CHECK(h != NULL);
    if (!h) return;
    char *out = to_json(&h->base, 0, 0);
    CHECK(out != NULL);
    if (out) {
        CHECK_CONTAINS(out, "\"sourceVersionStamp\":{\"buildId\":\"b0\"}");
        CHECK_CONTAINS(out, "\"inheritedBuildId\":\"b0\"");
        CHECK_CONTAINS(out, "\"workerVersion\":{\"buildId\":\"b1\"}");
        CHECK_CONTAINS(out, "\"workerVersion\":{\"buildId\":\"b2\",\"useVersioning\":true}");
        CHECK_CONTAINS(out, "\"workerDeploymentVersion\":\"d.b2\"");
        CHECK_CONTAINS(out, "\"workerVersion\":{\"buildId\":\"b3\"}");
        CHECK_CONTAINS(out, "\"workerVersion\":{\"buildId\":\"b4\"}");
    }
    free(out);
    protobuf_c_message_free_unpacked(&h->base, NULL);
}

TEST_MAIN(TEST_CASE(test_shorthand_round_trip), TEST_CASE(test_shorthand_reading),
          TEST_CASE(test_shorthand_ambiguous_stays_raw),
          TEST_CASE(test_worker_version_kept))
