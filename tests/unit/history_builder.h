/*
 * history_builder.h - builds Temporal histories in C for engine tests, the
 * way a server would write them: hb_task() appends a workflow task
 * (scheduled, started, completed), hb_open_task() one that is started but
 * not completed, and the hb_* event helpers append what the server records.
 * Every event is malloc'ed throughout (freed with hb_free).
 */
#ifndef JORCH_TEST_HISTORY_BUILDER_H
#define JORCH_TEST_HISTORY_BUILDER_H

#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "engine/engine_int.h"

typedef struct hb {
    HistoryEvent **ev;
    size_t n, cap;
    int64_t now; /* nanos; every event advances it by a millisecond */
} hb;

static HistoryEvent *hb_push(hb *h, int type) {
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->ev = realloc(h->ev, h->cap * sizeof *h->ev);
    }
    HistoryEvent *e = malloc(sizeof *e);
    temporal__api__history__v1__history_event__init(e);
    e->event_type = type;
    e->event_id = (int64_t)h->n + 1;
    h->now += 1000000;
    e->event_time = pb_timestamp_new(h->now);
    h->ev[h->n++] = e;
    return e;
}

static Payloads *hb_payloads(const char *json) {
    if (!json) return NULL;
    Payloads *ps = payloads_new();
    payloads_add(ps, payload_new_json(json, strlen(json)));
    return ps;
}

static inline void hb_init(hb *h) {
    memset(h, 0, sizeof *h);
    h->now = INT64_C(1700000000) * 1000000000;
}

static inline void hb_free(hb *h) {
    for (size_t i = 0; i < h->n; i++) protobuf_c_message_free_unpacked(&h->ev[i]->base, NULL);
    free(h->ev);
}

/* WorkflowExecutionStarted with the given input (a JSON array of arguments, or NULL). */
static inline void hb_started(hb *h, const char *type, const char *const *args, size_t nargs) {
    HistoryEvent *e = hb_push(h, ET(WORKFLOW_EXECUTION_STARTED));
    Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__workflow_execution_started_event_attributes__init(a);
    e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_STARTED);
    e->workflow_execution_started_event_attributes = a;
    a->workflow_type = malloc(sizeof *a->workflow_type);
    temporal__api__common__v1__workflow_type__init(a->workflow_type);
    a->workflow_type->name = jstrdup(type);
    a->task_queue = malloc(sizeof *a->task_queue);
    temporal__api__taskqueue__v1__task_queue__init(a->task_queue);
    a->task_queue->name = jstrdup("tq");
    a->original_execution_run_id = jstrdup("run-1");
    a->first_execution_run_id = jstrdup("run-1");
    a->attempt = 1;
    if (nargs) {
        a->input = payloads_new();
        for (size_t i = 0; i < nargs; i++) payloads_add(a->input, payload_new_json(args[i], strlen(args[i])));
    }
}

static inline int64_t hb_wft_scheduled(hb *h) {
    HistoryEvent *e = hb_push(h, ET(WORKFLOW_TASK_SCHEDULED));
    Temporal__Api__History__V1__WorkflowTaskScheduledEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__workflow_task_scheduled_event_attributes__init(a);
    a->attempt = 1;
    e->attributes_case = EV_ATTR(WORKFLOW_TASK_SCHEDULED);
    e->workflow_task_scheduled_event_attributes = a;
    return e->event_id;
}

static inline int64_t hb_wft_started(hb *h) {
    HistoryEvent *e = hb_push(h, ET(WORKFLOW_TASK_STARTED));
    Temporal__Api__History__V1__WorkflowTaskStartedEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__workflow_task_started_event_attributes__init(a);
    a->scheduled_event_id = e->event_id - 1;
    e->attributes_case = EV_ATTR(WORKFLOW_TASK_STARTED);
    e->workflow_task_started_event_attributes = a;
    return e->event_id;
}

static inline int64_t hb_wft_completed(hb *h) {
    HistoryEvent *e = hb_push(h, ET(WORKFLOW_TASK_COMPLETED));
    Temporal__Api__History__V1__WorkflowTaskCompletedEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__workflow_task_completed_event_attributes__init(a);
    a->scheduled_event_id = e->event_id - 2;
    a->started_event_id = e->event_id - 1;
    e->attributes_case = EV_ATTR(WORKFLOW_TASK_COMPLETED);
    e->workflow_task_completed_event_attributes = a;
    return e->event_id;
}

/* A completed workflow task; returns the completed event id. */
static inline int64_t hb_task(hb *h) {
    hb_wft_scheduled(h);
    hb_wft_started(h);
    return hb_wft_completed(h);
}

/* A task started but not completed: what a worker is asked to execute. */
static inline void hb_open_task(hb *h) {
    hb_wft_scheduled(h);
    hb_wft_started(h);
}

static inline int64_t hb_activity_scheduled(hb *h, const char *id, const char *type) {
    HistoryEvent *e = hb_push(h, ET(ACTIVITY_TASK_SCHEDULED));
    Temporal__Api__History__V1__ActivityTaskScheduledEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__activity_task_scheduled_event_attributes__init(a);
    e->attributes_case = EV_ATTR(ACTIVITY_TASK_SCHEDULED);
    e->activity_task_scheduled_event_attributes = a;
    a->activity_id = jstrdup(id);
    a->activity_type = malloc(sizeof *a->activity_type);
    temporal__api__common__v1__activity_type__init(a->activity_type);
    a->activity_type->name = jstrdup(type);
    return e->event_id;
}

static inline void hb_activity_completed(hb *h, int64_t sched, const char *result_json) {
    HistoryEvent *s = hb_push(h, ET(ACTIVITY_TASK_STARTED));
    Temporal__Api__History__V1__ActivityTaskStartedEventAttributes *sa = malloc(sizeof *sa);
    temporal__api__history__v1__activity_task_started_event_attributes__init(sa);
    s->attributes_case = EV_ATTR(ACTIVITY_TASK_STARTED);
    s->activity_task_started_event_attributes = sa;
    sa->scheduled_event_id = sched;
    sa->attempt = 1;
    HistoryEvent *e = hb_push(h, ET(ACTIVITY_TASK_COMPLETED));
    Temporal__Api__History__V1__ActivityTaskCompletedEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__activity_task_completed_event_attributes__init(a);
    e->attributes_case = EV_ATTR(ACTIVITY_TASK_COMPLETED);
    e->activity_task_completed_event_attributes = a;
    a->scheduled_event_id = sched;
    a->started_event_id = s->event_id;
    a->result = hb_payloads(result_json);
}

static inline void hb_activity_failed(hb *h, int64_t sched, const char *type, const char *message, int non_retryable) {
    HistoryEvent *s = hb_push(h, ET(ACTIVITY_TASK_STARTED));
    Temporal__Api__History__V1__ActivityTaskStartedEventAttributes *sa = malloc(sizeof *sa);
    temporal__api__history__v1__activity_task_started_event_attributes__init(sa);
    s->attributes_case = EV_ATTR(ACTIVITY_TASK_STARTED);
    s->activity_task_started_event_attributes = sa;
    sa->scheduled_event_id = sched;
    HistoryEvent *e = hb_push(h, ET(ACTIVITY_TASK_FAILED));
    Temporal__Api__History__V1__ActivityTaskFailedEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__activity_task_failed_event_attributes__init(a);
    e->attributes_case = EV_ATTR(ACTIVITY_TASK_FAILED);
    e->activity_task_failed_event_attributes = a;
    a->scheduled_event_id = sched;
    a->started_event_id = s->event_id;
    a->failure = malloc(sizeof *a->failure);
    temporal__api__failure__v1__failure__init(a->failure);
    a->failure->message = jstrdup(message);
    a->failure->application_failure_info = malloc(sizeof *a->failure->application_failure_info);
    temporal__api__failure__v1__application_failure_info__init(a->failure->application_failure_info);
    a->failure->failure_info_case = FAILURE_INFO(APPLICATION);
    a->failure->application_failure_info->type = jstrdup(type);
    a->failure->application_failure_info->non_retryable = non_retryable;
}

static inline int64_t hb_timer_started(hb *h, const char *timer_id, int64_t nanos) {
    HistoryEvent *e = hb_push(h, ET(TIMER_STARTED));
    Temporal__Api__History__V1__TimerStartedEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__timer_started_event_attributes__init(a);
    e->attributes_case = EV_ATTR(TIMER_STARTED);
    e->timer_started_event_attributes = a;
    a->timer_id = jstrdup(timer_id);
    a->start_to_fire_timeout = pb_duration_new(nanos);
    return e->event_id;
}

static inline void hb_timer_fired(hb *h, const char *timer_id, int64_t started) {
    HistoryEvent *e = hb_push(h, ET(TIMER_FIRED));
    Temporal__Api__History__V1__TimerFiredEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__timer_fired_event_attributes__init(a);
    e->attributes_case = EV_ATTR(TIMER_FIRED);
    e->timer_fired_event_attributes = a;
    a->timer_id = jstrdup(timer_id);
    a->started_event_id = started;
}

static inline void hb_timer_canceled(hb *h, const char *timer_id, int64_t started) {
    HistoryEvent *e = hb_push(h, ET(TIMER_CANCELED));
    Temporal__Api__History__V1__TimerCanceledEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__timer_canceled_event_attributes__init(a);
    e->attributes_case = EV_ATTR(TIMER_CANCELED);
    e->timer_canceled_event_attributes = a;
    a->timer_id = jstrdup(timer_id);
    a->started_event_id = started;
}

static inline void hb_signal(hb *h, const char *name, const char *json) {
    HistoryEvent *e = hb_push(h, ET(WORKFLOW_EXECUTION_SIGNALED));
    Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__workflow_execution_signaled_event_attributes__init(a);
    e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_SIGNALED);
    e->workflow_execution_signaled_event_attributes = a;
    a->signal_name = jstrdup(name);
    a->input = hb_payloads(json);
}

static inline void hb_cancel_requested(hb *h) {
    HistoryEvent *e = hb_push(h, ET(WORKFLOW_EXECUTION_CANCEL_REQUESTED));
    Temporal__Api__History__V1__WorkflowExecutionCancelRequestedEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__workflow_execution_cancel_requested_event_attributes__init(a);
    e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_CANCEL_REQUESTED);
    e->workflow_execution_cancel_requested_event_attributes = a;
}

/* A core_patch marker as sdk-core writes it. */
static inline void hb_patch_marker(hb *h, const char *id, int deprecated) {
    HistoryEvent *e = hb_push(h, ET(MARKER_RECORDED));
    Temporal__Api__History__V1__MarkerRecordedEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__marker_recorded_event_attributes__init(a);
    e->attributes_case = EV_ATTR(MARKER_RECORDED);
    e->marker_recorded_event_attributes = a;
    a->marker_name = jstrdup("core_patch");
    a->details = malloc(sizeof *a->details);
    a->n_details = 1;
    a->details[0] = malloc(sizeof *a->details[0]);
    temporal__api__history__v1__marker_recorded_event_attributes__details_entry__init(a->details[0]);
    a->details[0]->key = jstrdup("patch-data");
    char json[256];
    snprintf(json, sizeof json, "{\"deprecated\":%s,\"id\":\"%s\"}", deprecated ? "true" : "false", id);
    a->details[0]->value = hb_payloads(json);
}

/* A closing command event. */
static inline void hb_completed(hb *h, const char *result_json) {
    HistoryEvent *e = hb_push(h, ET(WORKFLOW_EXECUTION_COMPLETED));
    Temporal__Api__History__V1__WorkflowExecutionCompletedEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__workflow_execution_completed_event_attributes__init(a);
    e->attributes_case = EV_ATTR(WORKFLOW_EXECUTION_COMPLETED);
    e->workflow_execution_completed_event_attributes = a;
    a->result = hb_payloads(result_json);
}

#endif
