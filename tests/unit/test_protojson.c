/*
 * test_protojson.c - protojson reading and writing: the real Temporal
 * fixtures (older JSON form), their canonical form, conventions of the
 * output, round trips and error messages.
 *
 * PROTOJSON_REGEN=1 rewrites the JSON files in tests/histories/protojson from the
 * fixtures in tests/histories/protojson/legacy (then review the diff).
 */
#include "common/common.h"

#include <math.h>

#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "temporal/api/enums/v1/command_type.pb-c.h"
#include "protojson_helpers.h"
#include "test.h"

typedef Temporal__Api__History__V1__HistoryEvent Event;

static const struct {
    const char *file;
    size_t events;
} fixtures[] = {
    {"activity_retry_on_error__history.go.v1.5.0.json", 11},
    {"activity_retry_on_error__history.java.1.0.6.json", 11},
    {"bugs_go_activity_start_race__history.manual.json", 19},
    {"telemetry_metrics__history.go.v1.11.0.json", 17},
};
#define N_FIXTURES (sizeof fixtures / sizeof fixtures[0])

/* The recorded histories in their older JSON form (tests/histories/protojson/legacy). */
static void fixture_path(const char *file, char *buf, size_t n) {
    const char *dir = getenv("JORCH_SOURCE_DIR");
    snprintf(buf, n, "%s/tests/histories/protojson/legacy/%s", dir && dir[0] ? dir : JORCH_SOURCE_DIR, file);
}

static void canonical_path(const char *file, char *buf, size_t n) {
    const char *dir = getenv("JORCH_SOURCE_DIR");
    snprintf(buf, n, "%s/tests/histories/protojson/%s", dir && dir[0] ? dir : JORCH_SOURCE_DIR,
             file);
}

static History *load_fixture(size_t i) {
    char path[1024];
    fixture_path(fixtures[i].file, path, sizeof path);
    History *h = NULL;
    jerr err = {0};
    if (protojson_read_history_file(path, &h, &err) != 0) {
        fprintf(stderr, "cannot load %s: %s\n", path, err.msg);
        return NULL;
    }
    return h;
}

/* Parse must fail with a message containing want. */
static void expect_history_error(const char *json, const char *want) {
    jerr err = {0};
    History *h = parse_history(json, &err);
    CHECK_MSG(h == NULL, "parsed but expected error '%s'", want);
    if (h) protobuf_c_message_free_unpacked(&h->base, NULL);
    else CHECK_CONTAINS(err.msg, want);
}

/* ------------------------------------------------------------- fixtures */

static void test_fixtures_parse(void) {
    for (size_t i = 0; i < N_FIXTURES; i++) {
        History *h = load_fixture(i);
        CHECK(h != NULL);
        if (!h) continue;
        CHECK_INT(h->n_events, fixtures[i].events);
        for (size_t k = 0; k < h->n_events; k++) CHECK_INT(h->events[k]->event_id, (int64_t)k + 1);
        CHECK_INT(h->events[0]->event_type,
                  TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_STARTED);
        CHECK_INT(h->events[1]->event_type,
                  TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_SCHEDULED);
        protobuf_c_message_free_unpacked(&h->base, NULL);
    }
}

static void test_fixture_go_details(void) {
    History *h = load_fixture(0);
    CHECK(h != NULL);
    if (!h) return;
    Event *e1 = h->events[0];
    CHECK(e1->event_time != NULL);
    if (e1->event_time) {
        /* 2021-11-19T22:54:53.264854600Z */
        CHECK_INT(e1->event_time->seconds, 1637362493);
        CHECK_INT(e1->event_time->nanos, 264854600);
    }
    CHECK_INT(e1->task_id, 1048636);
    CHECK_INT(e1->attributes_case,
              TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_STARTED_EVENT_ATTRIBUTES);
    Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *st =
        e1->workflow_execution_started_event_attributes;
    CHECK_STREQ(st->workflow_type->name, "Workflow");
    CHECK_INT(st->task_queue->kind, TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL);
    CHECK_INT(st->workflow_task_timeout->seconds, 10);
    CHECK_INT(st->workflow_task_timeout->nanos, 0);
    CHECK(st->first_workflow_task_backoff != NULL); /* "0s" is present, just zero */
    CHECK(st->header != NULL);                      /* {} is an empty, present message */
    CHECK_INT(st->attempt, 1);

    Event *e5 = h->events[4];
    CHECK_STREQ(event_type_name((int)e5->event_type), "ActivityTaskScheduled");
    Temporal__Api__History__V1__ActivityTaskScheduledEventAttributes *as =
        e5->activity_task_scheduled_event_attributes;
    CHECK(as != NULL);
    if (as) {
        CHECK_STREQ(as->activity_type->name, "AlwaysFailActivity");
        CHECK_STREQ(as->activity_id, "5");
        CHECK_INT(as->workflow_task_completed_event_id, 4);
        CHECK_INT(as->retry_policy->initial_interval->seconds, 0);
        CHECK_INT(as->retry_policy->initial_interval->nanos, 1);
        CHECK_INT(as->retry_policy->maximum_interval->nanos, 100);
        CHECK(as->retry_policy->backoff_coefficient == 1.0);
        CHECK_INT(as->retry_policy->maximum_attempts, 5);
    }
    Event *e7 = h->events[6];
    CHECK_INT(e7->activity_task_failed_event_attributes->retry_state,
              TEMPORAL__API__ENUMS__V1__RETRY_STATE__RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED);
    CHECK_STREQ(e7->activity_task_failed_event_attributes->failure->message,
                "activity attempt 5 failed");
    CHECK_INT(h->events[7]->workflow_task_scheduled_event_attributes->task_queue->kind,
              TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_STICKY);
    Temporal__Api__Failure__V1__Failure *f =
        h->events[10]->workflow_execution_failed_event_attributes->failure;
    CHECK_STREQ(f->cause->message, "activity attempt 5 failed");
    CHECK_INT(f->failure_info_case,
              TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_ACTIVITY_FAILURE_INFO);
    CHECK_STREQ(f->activity_failure_info->activity_type->name, "AlwaysFailActivity");
    protobuf_c_message_free_unpacked(&h->base, NULL);
}

static const char *meta(const Temporal__Api__Common__V1__Payload *p, const char *key, size_t *len) {
    for (size_t i = 0; i < p->n_metadata; i++) {
        if (strcmp(p->metadata[i]->key, key) == 0) {
            *len = p->metadata[i]->value.len;
            return (const char *)p->metadata[i]->value.data;
        }
    }
    return NULL;
}

static void test_fixture_payloads(void) {
    History *h = load_fixture(3); /* telemetry */
    CHECK(h != NULL);
    if (!h) return;
    Temporal__Api__History__V1__ActivityTaskScheduledEventAttributes *as =
        h->events[4]->activity_task_scheduled_event_attributes;
    CHECK_STREQ(as->activity_type->name, "CommaJoin");
    CHECK_INT(as->input->n_payloads, 1);
    const Temporal__Api__Common__V1__Payload *p = as->input->payloads[0];
    size_t n = 0;
    const char *enc = meta(p, "encoding", &n);
    CHECK(enc && n == 10 && memcmp(enc, "json/plain", 10) == 0);
    CHECK_INT(p->data.len, 13);
    CHECK(p->data.len == 13 && memcmp(p->data.data, "[\"foo\",\"bar\"]", 13) == 0);
    const Temporal__Api__Common__V1__Payload *r =
        h->events[6]->activity_task_completed_event_attributes->result->payloads[0];
    CHECK(r->data.len == 10 && memcmp(r->data.data, "\"foo, bar\"", 10) == 0);
    CHECK_INT(h->events[16]->event_type,
              TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
    protobuf_c_message_free_unpacked(&h->base, NULL);

    h = load_fixture(2); /* signal with a binary/null payload */
    CHECK(h != NULL);
    if (!h) return;
    Event *sig = h->events[2];
    CHECK_STREQ(event_type_name((int)sig->event_type), "WorkflowExecutionSignaled");
    CHECK_STREQ(sig->workflow_execution_signaled_event_attributes->signal_name, "resume");
    p = sig->workflow_execution_signaled_event_attributes->input->payloads[0];
    enc = meta(p, "encoding", &n);
    CHECK(enc && n == 11 && memcmp(enc, "binary/null", 11) == 0);
    CHECK_INT(p->data.len, 0);
    protobuf_c_message_free_unpacked(&h->base, NULL);
}

/* Legacy fixture -> canonical text equals the checked-in canonical file,
 * and both parse to byte-identical protobuf. */
static void test_legacy_equals_canonical(void) {
    bool regen = getenv("PROTOJSON_REGEN") != NULL;
    for (size_t i = 0; i < N_FIXTURES; i++) {
        History *legacy = load_fixture(i);
        CHECK(legacy != NULL);
        if (!legacy) continue;
        char *text = to_json(&legacy->base, 2, 0);
        CHECK(text != NULL);
        char path[1024];
        canonical_path(fixtures[i].file, path, sizeof path);
        if (regen && text) {
            FILE *f = fopen(path, "wb");
            CHECK(f != NULL);
            if (f) {
                fputs(text, f);
                fputc('\n', f);
                fclose(f);
            }
        }
        char *file = NULL;
        size_t flen = 0;
        jerr err = {0};
        CHECK_MSG(file_read_all(path, 1 << 20, &file, &flen, &err) == 0, "%s", err.msg);
        if (file && text) {
            CHECK_MSG(flen == strlen(text) + 1 && memcmp(file, text, flen - 1) == 0,
                      "%s differs from the writer's output", path);
        }
        History *canon = NULL;
        CHECK_MSG(protojson_read_history_file(path, &canon, &err) == 0, "%s", err.msg);
        if (canon) {
            CHECK_MSG(same_pb(&legacy->base, &canon->base), "%s", fixtures[i].file);
            CHECK_CONTAINS(file, "\"eventType\": \"EVENT_TYPE_WORKFLOW_EXECUTION_STARTED\"");
            CHECK_CONTAINS(file, "\"kind\": \"TASK_QUEUE_KIND_NORMAL\"");
            CHECK_CONTAINS(file, "\"eventId\": \"1\"");
            CHECK(file[0] == '{');
            protobuf_c_message_free_unpacked(&canon->base, NULL);
        }
        free(file);
        free(text);
        protobuf_c_message_free_unpacked(&legacy->base, NULL);
    }
}

/* write -> parse -> write is a fixed point, compact and pretty. */
static void test_fixed_point(void) {
    for (size_t i = 0; i < N_FIXTURES; i++) {
        History *h = load_fixture(i);
        if (!h) {
            CHECK(h != NULL);
            continue;
        }
        for (int indent = 0; indent <= 4; indent += 4) {
            char *a = to_json(&h->base, indent, 0);
            CHECK(a != NULL);
            if (!a) continue;
            jerr err = {0};
            History *h2 = parse_history(a, &err);
            CHECK_MSG(h2 != NULL, "%s", err.msg);
            if (h2) {
                char *b = to_json(&h2->base, indent, 0);
                CHECK(b && strcmp(a, b) == 0);
                CHECK(same_pb(&h->base, &h2->base));
                free(b);
                protobuf_c_message_free_unpacked(&h2->base, NULL);
            }
            if (indent == 0) CHECK(strchr(a, '\n') == NULL && strstr(a, "\": ") == NULL);
            free(a);
        }
        protobuf_c_message_free_unpacked(&h->base, NULL);
    }
}

/* ---------------------------------------------------------- conventions */

static const char *legacy_event =
    "{\"events\": [{\"event_id\": 1, \"eventTime\": \"2021-11-19T22:54:53.5Z\","
    " \"eventType\": \"ActivityTaskScheduled\", \"taskId\": 9007199254740993,"
    " \"version\": \"-9223372036854775808\", \"fooUnknown\": {\"x\": [1, {\"y\": null}]},"
    " \"activityTaskScheduledEventAttributes\": {\"activityId\": \"\", \"activityType\": "
    "{\"name\": \"Greet\"}, \"taskQueue\": {\"name\": \"q\", \"kind\": 1},"
    " \"scheduleToCloseTimeout\": \"0.5s\", \"startToCloseTimeout\": \"10.000s\","
    " \"heartbeatTimeout\": \"-1.000000001s\", \"workflowTaskCompletedEventId\": \"4e0\","
    " \"input\": {\"payloads\": [{\"metadata\": {\"z\": \"\", \"encoding\": \"anNvbi9wbGFpbg\"},"
    " \"data\": \"_-8\"}]},"
    " \"retryPolicy\": {\"backoffCoefficient\": 1.5, \"maximumAttempts\": \"0\","
    " \"initialInterval\": null, \"nonRetryableErrorTypes\": [\"a\", \"\\u00e9\\ud83d\\ude00\"]}}}]}";

static void test_output_conventions(void) {
    jerr err = {0};
    History *h = parse_history(legacy_event, &err);
    CHECK_MSG(h != NULL, "%s", err.msg);
    if (!h) return;
    Event *e = h->events[0];
    CHECK_INT(e->task_id, INT64_C(9007199254740993)); /* 2^53 + 1: exact */
    CHECK(e->version == INT64_MIN);
    CHECK_INT(e->event_time->nanos, 500000000);
    Temporal__Api__History__V1__ActivityTaskScheduledEventAttributes *a =
        e->activity_task_scheduled_event_attributes;
    CHECK_INT(a->workflow_task_completed_event_id, 4);
    CHECK_INT(a->heartbeat_timeout->seconds, -1);
    CHECK_INT(a->heartbeat_timeout->nanos, -1);
    const Temporal__Api__Common__V1__Payload *p = a->input->payloads[0];
    CHECK(p->data.len == 2 && p->data.data[0] == 0xff && p->data.data[1] == 0xef);
    CHECK_INT(p->n_metadata, 2);
    CHECK_STREQ(p->metadata[0]->key, "encoding"); /* sorted by key */
    CHECK_STREQ(a->retry_policy->non_retryable_error_types[1], "\xc3\xa9\xf0\x9f\x98\x80");

    char *out = to_json(&h->base, 0, 0);
    CHECK(out != NULL);
    if (out) {
        CHECK_CONTAINS(out, "{\"events\":[{\"eventId\":\"1\",");
        CHECK_CONTAINS(out, "\"eventTime\":\"2021-11-19T22:54:53.500Z\"");
        CHECK_CONTAINS(out, "\"eventType\":\"EVENT_TYPE_ACTIVITY_TASK_SCHEDULED\"");
        CHECK_CONTAINS(out, "\"version\":\"-9223372036854775808\"");
        CHECK_CONTAINS(out, "\"taskId\":\"9007199254740993\"");
        CHECK_CONTAINS(out, "\"kind\":\"TASK_QUEUE_KIND_NORMAL\"");
        CHECK_CONTAINS(out, "\"scheduleToCloseTimeout\":\"0.500s\"");
        CHECK_CONTAINS(out, "\"startToCloseTimeout\":\"10s\"");
        CHECK_CONTAINS(out, "\"heartbeatTimeout\":\"-1.000000001s\"");
        CHECK_CONTAINS(out, "\"workflowTaskCompletedEventId\":\"4\"");
        CHECK_CONTAINS(out, "\"metadata\":{\"encoding\":\"anNvbi9wbGFpbg==\",\"z\":\"\"}");
        CHECK_CONTAINS(out, "\"data\":\"/+8=\"");
        CHECK_CONTAINS(out, "\"backoffCoefficient\":1.5");
        CHECK_CONTAINS(out, "\"nonRetryableErrorTypes\":[\"a\",\"\xc3\xa9\xf0\x9f\x98\x80\"]");
        CHECK(strstr(out, "activityId") == NULL);      /* "" is the default */
        CHECK(strstr(out, "maximumAttempts") == NULL); /* 0 is the default */
        CHECK(strstr(out, "initialInterval") == NULL); /* null: unset */
        CHECK(strstr(out, "fooUnknown") == NULL);
        CHECK(strstr(out, "workerMayIgnore") == NULL);
        free(out);
    }
    protobuf_c_message_free_unpacked(&h->base, NULL);
}

static void test_scalars_and_wkt(void) {
    jerr err = {0};
    struct {
        const ProtobufCMessageDescriptor *d;
        const char *in, *out;
    } cases[] = {
        {&google__protobuf__double_value__descriptor, "1.5", "1.5"},
        {&google__protobuf__double_value__descriptor, "\"NaN\"", "\"NaN\""},
        {&google__protobuf__double_value__descriptor, "\"-Infinity\"", "\"-Infinity\""},
        {&google__protobuf__double_value__descriptor, "1e21", "1e+21"},
        {&google__protobuf__double_value__descriptor, "0.0000001", "1e-7"},
        {&google__protobuf__double_value__descriptor, "100", "100"},
        {&google__protobuf__double_value__descriptor, "\"0.1\"", "0.1"},
        {&google__protobuf__float_value__descriptor, "0.1", "0.1"},
        {&google__protobuf__int64_value__descriptor, "-12", "\"-12\""},
        {&google__protobuf__uint64_value__descriptor, "\"18446744073709551615\"",
         "\"18446744073709551615\""},
        {&google__protobuf__int32_value__descriptor, "\"-7\"", "-7"},
        {&google__protobuf__int32_value__descriptor, "1.0e1", "10"},
        {&google__protobuf__bool_value__descriptor, "false", "false"},
        {&google__protobuf__string_value__descriptor, "\"a\\\"\\n\\u0001<\"", "\"a\\\"\\n\\u0001<\""},
        {&google__protobuf__bytes_value__descriptor, "\"YWI\"", "\"YWI=\""},
        {&google__protobuf__empty__descriptor, "{\"ignored\": 1}", "{}"},
        {&google__protobuf__any__descriptor, "{\"value\": \"AQI=\", \"@type\": \"type.googleapis.com/x.Y\"}",
         "{\"@type\":\"type.googleapis.com/x.Y\",\"value\":\"AQI=\"}"},
        {&google__protobuf__duration__descriptor, "\"315576000000s\"", "\"315576000000s\""},
        {&google__protobuf__duration__descriptor, "\"1.123456s\"", "\"1.123456s\""},
        {&google__protobuf__timestamp__descriptor, "\"0001-01-01T00:00:00Z\"", "\"0001-01-01T00:00:00Z\""},
        {&google__protobuf__timestamp__descriptor, "\"9999-12-31T23:59:59.999999999Z\"",
         "\"9999-12-31T23:59:59.999999999Z\""},
        {&google__protobuf__timestamp__descriptor, "\"2021-01-01T02:00:00.000001+02:00\"",
         "\"2021-01-01T00:00:00.000001Z\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ProtobufCMessage *m = protojson_parse(cases[i].d, cases[i].in, strlen(cases[i].in), &err);
        CHECK_MSG(m != NULL, "%s: %s", cases[i].in, err.msg);
        if (!m) continue;
        char *out = to_json(m, 0, 0);
        CHECK_STREQ(out, cases[i].out);
        free(out);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    const char *bad[][2] = {
        {"\"10\"", "invalid duration"},    /* no unit */
        {"\"315576000001s\"", "invalid duration"},
        {"\"1.1234567891s\"", "invalid duration"},
        {"\"2021-02-29T00:00:00Z\"", "invalid timestamp"},
        {"\"2021-01-01 00:00:00Z\"", "invalid timestamp"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const ProtobufCMessageDescriptor *d = i < 3 ? &google__protobuf__duration__descriptor
                                                    : &google__protobuf__timestamp__descriptor;
        ProtobufCMessage *m = protojson_parse(d, bad[i][0], strlen(bad[i][0]), &err);
        CHECK_MSG(m == NULL, "%s parsed", bad[i][0]);
        if (m) protobuf_c_message_free_unpacked(m, NULL);
        else CHECK_CONTAINS(err.msg, bad[i][1]);
    }
    ProtobufCMessage *m = protojson_parse(&google__protobuf__int32_value__descriptor, "2147483648", 10, &err);
    CHECK(m == NULL);
    CHECK_CONTAINS(err.msg, "out of range");
    m = protojson_parse(&google__protobuf__int32_value__descriptor, "1.5", 3, &err);
    CHECK(m == NULL);
    CHECK_CONTAINS(err.msg, "not an integer");
    m = protojson_parse(&google__protobuf__float_value__descriptor, "1e39", 4, &err);
    CHECK(m == NULL);
    CHECK_CONTAINS(err.msg, "out of range");
    m = protojson_parse(&google__protobuf__uint64_value__descriptor, "-1", 2, &err);
    CHECK(m == NULL);
    m = protojson_parse(&google__protobuf__any__descriptor, "{\"@type\":\"x\",\"a\":1}", 19, &err);
    CHECK(m == NULL);
    CHECK_CONTAINS(err.msg, "google.protobuf.Any");
}

static void test_enum_names(void) {
    CHECK_STREQ(event_type_name(1), "WorkflowExecutionStarted");
    CHECK_STREQ(event_type_name(10), "ActivityTaskScheduled");
    CHECK_STREQ(event_type_name(15), "ActivityTaskCancelRequested");
    CHECK_STREQ(event_type_name(9999), "Unknown(9999)");
    CHECK_STREQ(command_type_name(TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK),
                "ScheduleActivityTask");
    CHECK_STREQ(command_type_name(-5), "Unknown(-5)");
}

/* Unknown fields, unknown event types and unknown enum names are ignored. */
static void test_unknown_tolerated(void) {
    jerr err = {0};
    History *h = parse_history(
        "[{\"events\":[{\"eventId\":\"1\",\"eventType\":\"EVENT_TYPE_SOMETHING_NEW\","
        "\"workerMayIgnore\":true,\"somethingNewEventAttributes\":{\"a\":[{}]}},"
        "{\"eventId\":\"2\",\"eventType\":4242}]},{\"events\":[]}, 3]",
        &err);
    CHECK_MSG(h != NULL, "%s", err.msg);
    if (!h) return;
    CHECK_INT(h->n_events, 2);
    CHECK_INT(h->events[0]->event_type, 0);
    CHECK(h->events[0]->worker_may_ignore);
    CHECK_INT(h->events[0]->attributes_case, 0);
    CHECK_INT(h->events[1]->event_type, 4242);
    char *out = to_json(&h->base, 0, 0);
    CHECK_CONTAINS(out, "\"eventType\":4242");
    free(out);
    protobuf_c_message_free_unpacked(&h->base, NULL);
}

/* --------------------------------------------------------------- errors */

static void test_errors(void) {
    expect_history_error("", "empty input");
    expect_history_error("hello", "unexpected character 'h'");
    expect_history_error("\x89PNG", "unexpected byte 0x89");
    expect_history_error("[]", "holds no history");
    expect_history_error("{\"events\":[]}", "no events");
    expect_history_error("{}", "no events");
    expect_history_error("{\"events\":[{\"eventId\":\"1\"}]} x", "unexpected character 'x'");
    expect_history_error("{\"events\":[{\"eventId\":\"1\"}],}", "unexpected character '}'");
    expect_history_error("{\"events\":[{\"eventId\":{}}]}",
                         "events[0].eventId: expected int64, found an object");
    expect_history_error("{\"events\":[{\"eventId\":\"1\",\"eventType\":true}]}",
                         "events[0].eventType: expected an enum name or number, found a boolean");
    expect_history_error("{\"events\":[{\"eventId\":\"x1\"}]}", "events[0].eventId: invalid int64");
    expect_history_error("{\"events\":[{\"eventId\":\"2\"}]}", "events[0].eventId: expected 1, got 2");
    expect_history_error("{\"events\":[{\"eventId\":\"1\"},{\"eventId\":\"3\"}]}",
                         "events[1].eventId: expected 2, got 3");
    expect_history_error("{\"events\":[{\"eventId\":\"1\"},{\"eventId\":\"1\"}]}",
                         "expected 2, got 1");
    expect_history_error("{\"events\":[{\"eventId\":\"1\",\"eventId\":\"1\"}]}", "field given twice");
    expect_history_error("{\"events\":[{\"eventId\":\"1\",\"event_id\":\"1\"}]}", "field given twice");
    expect_history_error(
        "{\"events\":[{\"eventId\":\"1\",\"eventType\":\"ActivityTaskScheduled\","
        "\"workflowExecutionStartedEventAttributes\":{}}]}",
        "eventType ActivityTaskScheduled does not match the attributes workflowExecutionStartedEventAttributes");
    expect_history_error("{\"events\":[{\"eventId\":\"1\",\"eventType\":\"TimerFired\"}]}",
                         "eventType TimerFired but no timerFiredEventAttributes");
    expect_history_error("{\"events\":[{\"eventId\":\"1\",\"timerFiredEventAttributes\":{}}]}",
                         "eventType Unspecified does not match");
    expect_history_error(
        "{\"events\":[{\"eventId\":\"1\",\"timerFiredEventAttributes\":{},"
        "\"timerStartedEventAttributes\":{}}]}",
        "events[0].timerStartedEventAttributes: conflicts with \"timerFiredEventAttributes\"");
    expect_history_error(
        "{\"events\":[{\"eventId\":\"1\",\"eventType\":\"WorkflowExecutionStarted\","
        "\"workflowExecutionStartedEventAttributes\":{\"input\":{\"payloads\":[{\"metadata\":"
        "{\"encoding\":\"anNvbi9wbGFpbg==\"},\"data\":\"a$==\"}]}}}]}",
        "events[0].workflowExecutionStartedEventAttributes.input.payloads[0].data: invalid base64");
    expect_history_error(
        "{\"events\":[{\"eventId\":\"1\",\"eventType\":\"WorkflowExecutionStarted\","
        "\"workflowExecutionStartedEventAttributes\":{\"attempt\":3000000000}}]}",
        "workflowExecutionStartedEventAttributes.attempt: invalid int32: out of range");
    expect_history_error("{\"events\":[{\"eventId\":\"1\",\"eventTime\":\"yesterday\"}]}",
                         "events[0].eventTime: invalid timestamp");
    expect_history_error(
        "{\"events\":[{\"eventId\":\"1\",\"eventType\":\"WorkflowExecutionStarted\","
        "\"workflowExecutionStartedEventAttributes\":{\"input\":{\"payloads\":[{}, null]}}}]}",
        "events[0].workflowExecutionStartedEventAttributes.input.payloads[1]: null is not allowed");
    expect_history_error(
        "{\"events\":[{\"eventId\":\"1\",\"eventType\":\"WorkflowExecutionStarted\","
        "\"workflowExecutionStartedEventAttributes\":{\"input\":{\"payloads\":{}}}}]}",
        "input.payloads: expected an array, found an object");
    expect_history_error(
        "{\"events\":[{\"eventId\":\"1\",\"eventType\":\"WorkflowExecutionStarted\","
        "\"workflowExecutionStartedEventAttributes\":{\"input\":{\"payloads\":[{\"metadata\":"
        "{\"encoding\":\"\",\"encoding\":\"\"},\"data\":\"\"}]}}}]}",
        "input.payloads[0].metadata: duplicate map key");
    /* invalid UTF-8, raw and as escapes */
    expect_history_error("{\"events\":[{\"eventId\":\"1\",\"x\":\"a\xff\"}]}", "invalid UTF-8");
    expect_history_error("{\"events\":[{\"eventId\":\"1\",\"x\":\"\xed\xa0\x80\"}]}", "invalid UTF-8");
    expect_history_error("{\"events\":[{\"eventId\":\"1\",\"x\":\"\\ud800x\"}]}", "unpaired UTF-16");
    expect_history_error("{\"events\":[{\"eventId\":\"1\",\"x\":\"a\nb\"}]}", "control character");
    expect_history_error("{\"events\":[{\"eventId\":\"1\",\"x\":\"\\q\"}]}", "invalid escape");
    expect_history_error("{\"events\":[{\"eventId\":01}]}", "unexpected character '1'");
    expect_history_error("{\"events\":[{\"eventId\":1.}]}", "expected a number");
    expect_history_error("{\"events\":[{\"eventId\":\"1\"}]", "unexpected end of input at line 1 column 28");
}

static void test_truncated_file(void) {
    char path[1024];
    fixture_path(fixtures[3].file, path, sizeof path);
    char *text = NULL;
    size_t len = 0;
    jerr err = {0};
    CHECK_MSG(file_read_all(path, 1 << 20, &text, &len, &err) == 0, "%s", err.msg);
    if (!text) return;
    /* Every cut must fail cleanly; the final cut (before the last ']')
     * must say where the input ended. */
    for (size_t cut = 0; cut + 2 < len; cut += 97) {
        History *h = protojson_parse_history(text, cut, &err);
        CHECK_MSG(h == NULL, "cut at %zu parsed", cut);
        if (h) protobuf_c_message_free_unpacked(&h->base, NULL);
    }
    size_t cut = len;
    while (cut > 0 && text[cut - 1] != ']') cut--;
    History *h = protojson_parse_history(text, cut - 1, &err);
    CHECK(h == NULL);
    CHECK_CONTAINS(err.msg, "unexpected end of input at line 300 column");
    if (h) protobuf_c_message_free_unpacked(&h->base, NULL);
    free(text);

    Temporal__Api__History__V1__History *out = NULL;
    CHECK(protojson_read_history_file("/nonexistent/history.json", &out, &err) != 0);
    CHECK(out == NULL);
    CHECK_CONTAINS(err.msg, "/nonexistent/history.json");
}

static void test_depth_bomb(void) {
    const size_t n = 100000;
    char *s = malloc(2 * n + 64);
    CHECK(s != NULL);
    if (!s) return;
    size_t o = (size_t)sprintf(s, "{\"events\":[{\"eventId\":\"1\",\"x\":");
    for (size_t i = 0; i < n; i++) s[o++] = '[';
    for (size_t i = 0; i < n; i++) s[o++] = ']';
    o += (size_t)sprintf(s + o, "}]}");
    jerr err = {0};
    History *h = protojson_parse_history(s, o, &err);
    CHECK(h == NULL);
    CHECK_CONTAINS(err.msg, "nested deeper than 100 levels");
    if (h) protobuf_c_message_free_unpacked(&h->base, NULL);

    /* Deep but legal: Failure.cause chains within the limit parse. */
    o = (size_t)sprintf(s, "{\"message\":\"m\"");
    for (int i = 0; i < 90; i++) o += (size_t)sprintf(s + o, ",\"cause\":{\"message\":\"m\"");
    for (int i = 0; i < 91; i++) s[o++] = '}';
    s[o] = '\0';
    ProtobufCMessage *m = protojson_parse(&temporal__api__failure__v1__failure__descriptor, s, o, &err);
    CHECK_MSG(m != NULL, "%s", err.msg);
    if (m) {
        char *out = to_json(m, 0, 0);
        CHECK_STREQ(out, s);
        free(out);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    free(s);
}

static void test_write_errors(void) {
    /* A bounded buffer that is too small: error, and the buffer is left as it was. */
    History *h = load_fixture(0);
    if (!h) {
        CHECK(h != NULL);
        return;
    }
    jbuf b;
    jbuf_init(&b, 100);
    CHECK(jbuf_puts(&b, "prefix") == 0);
    jerr err = {0};
    CHECK(protojson_write(&h->base, 0, &b, &err) != 0);
    CHECK_CONTAINS(err.msg, "buffer limit");
    CHECK_STREQ(b.data, "prefix");
    jbuf_free(&b);

    /* Invalid UTF-8 in a string field and an out-of-range Duration are refused, with their path. */
    Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *st =
        h->events[0]->workflow_execution_started_event_attributes;
    char *old = st->identity;
    st->identity = (char *)"bad\xc0";
    jbuf_init(&b, 0);
    CHECK(protojson_write(&h->base, 0, &b, &err) != 0);
    CHECK_CONTAINS(err.msg, "events[0].workflowExecutionStartedEventAttributes.identity: string is not valid UTF-8");
    st->identity = old;
    st->workflow_task_timeout->nanos = -5;
    CHECK(protojson_write(&h->base, 0, &b, &err) != 0);
    CHECK_CONTAINS(err.msg, "workflowTaskTimeout: duration out of range");
    jbuf_free(&b);
    protobuf_c_message_free_unpacked(&h->base, NULL);
}

TEST_MAIN(TEST_CASE(test_fixtures_parse), TEST_CASE(test_fixture_go_details),
          TEST_CASE(test_fixture_payloads), TEST_CASE(test_legacy_equals_canonical),
          TEST_CASE(test_fixed_point), TEST_CASE(test_output_conventions),
          TEST_CASE(test_scalars_and_wkt), TEST_CASE(test_enum_names),
          TEST_CASE(test_unknown_tolerated), TEST_CASE(test_errors),
          TEST_CASE(test_truncated_file), TEST_CASE(test_depth_bomb),
          TEST_CASE(test_write_errors))
