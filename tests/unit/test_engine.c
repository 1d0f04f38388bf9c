/*
 * test_engine.c - the workflow engine against histories built in C: each
 * command machine, replay matching, nondeterminism messages, patches, side
 * effects, signals, queries, cancellation, limits and bad histories.
 */
#include "test.h"
#include "history_builder.h"

#include "engine/engine.h"

typedef struct fed {
    engine_run *r;
    engine_output out;
    jerr err;
    int rc;
} fed;

static fed feed_script(const char *src, hb *h) {
    fed f;
    memset(&f, 0, sizeof f);
    engine_run_config cfg = {
        .script_name = "workflows/test.lua", .script_src = src, .script_len = strlen(src),
        .limits = engine_limits_default(), .workflow_id = "wf-1", .run_id = "run-1",
    };
    f.r = engine_run_new(&cfg, &f.err);
    if (!f.r) {
        f.rc = -1;
        return f;
    }
    f.rc = engine_run_feed(f.r, h->ev, h->n, &f.out, &f.err);
    return f;
}

static void fed_free(fed *f) { engine_run_free(f->r); }

/* A history of workflow type "test" that starts with one argument (a JSON
 * value) or none: how nearly every case here begins. */
static void hb_begin(hb *h, const char *arg) {
    hb_init(h);
    hb_started(h, "test", arg != NULL ? &arg : NULL, arg != NULL ? 1 : 0);
}

static const char *cmd_payload_json(const Command *c, char *buf, size_t len) {
    const Payloads *ps = NULL;
    if (c->attributes_case == CMD_ATTR(SCHEDULE_ACTIVITY_TASK)) ps = c->schedule_activity_task_command_attributes->input;
    if (c->attributes_case == CMD_ATTR(COMPLETE_WORKFLOW_EXECUTION)) ps = c->complete_workflow_execution_command_attributes->result;
    jbuf b;
    jbuf_init(&b, 0);
    jerr e = {0};
    payloads_to_json(ps, false, &b, &e);
    snprintf(buf, len, "%s", b.data ? b.data : "");
    jbuf_free(&b);
    return buf;
}

static const char *one_activity =
    "return function(name)\n"
    "  local r = workflow.execute_activity('greet', {name}, {start_to_close_timeout = '10s'})\n"
    "  return 'got ' .. r\n"
    "end\n";

static void first_task_schedules_activity(void) {
    hb h;
    hb_begin(&h, "\"ada\"");
    hb_open_task(&h);
    fed f = feed_script(one_activity, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK(f.out.has_task);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands == 1) {
        const Command *c = f.out.commands[0];
        CHECK_INT(c->command_type, CT(SCHEDULE_ACTIVITY_TASK));
        CHECK_STREQ(c->schedule_activity_task_command_attributes->activity_type->name, "greet");
        CHECK_STREQ(c->schedule_activity_task_command_attributes->activity_id, "1");
        CHECK_STREQ(c->schedule_activity_task_command_attributes->task_queue->name, "tq");
        CHECK_INT(pb_duration_nanos(c->schedule_activity_task_command_attributes->start_to_close_timeout),
                  INT64_C(10000000000));
        char buf[256];
        CHECK_STREQ(cmd_payload_json(c, buf, sizeof buf), "[\"ada\"]");
    }
    fed_free(&f);
    hb_free(&h);
}

static void replay_then_complete(void) {
    hb h;
    hb_begin(&h, "\"ada\"");
    hb_task(&h);
    int64_t s = hb_activity_scheduled(&h, "1", "greet");
    hb_activity_completed(&h, s, "\"hello ada\"");
    hb_open_task(&h);
    fed f = feed_script(one_activity, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands == 1) {
        CHECK_INT(f.out.commands[0]->command_type, CT(COMPLETE_WORKFLOW_EXECUTION));
        char buf[256];
        CHECK_STREQ(cmd_payload_json(f.out.commands[0], buf, sizeof buf), "[\"got hello ada\"]");
    }
    CHECK(engine_run_closed(f.r));
    fed_free(&f);
    hb_free(&h);
}

static void incremental_feed_matches_like_full(void) {
    hb h;
    hb_begin(&h, "\"ada\"");
    hb_open_task(&h);
    engine_run_config cfg = {.script_name = "workflows/test.lua", .script_src = one_activity,
                             .script_len = strlen(one_activity), .limits = engine_limits_default()};
    jerr e = {0};
    engine_run *r = engine_run_new(&cfg, &e);
    engine_output out;
    CHECK(engine_run_feed(r, h.ev, h.n, &out, &e) == 0);
    size_t done = h.n;
    hb_wft_completed(&h);
    int64_t s = hb_activity_scheduled(&h, "1", "greet");
    hb_activity_completed(&h, s, "\"hi\"");
    hb_open_task(&h);
    CHECK_MSG(engine_run_feed(r, h.ev + done, h.n - done, &out, &e) == 0, "%s", e.msg);
    CHECK_INT(out.n_commands, 1);
    if (out.n_commands) CHECK_INT(out.commands[0]->command_type, CT(COMPLETE_WORKFLOW_EXECUTION));
    engine_run_free(r);
    hb_free(&h);
}

static void closed_history_replays_to_the_end(void) {
    hb h;
    hb_begin(&h, "\"ada\"");
    hb_task(&h);
    int64_t s = hb_activity_scheduled(&h, "1", "greet");
    hb_activity_completed(&h, s, "\"hi\"");
    hb_task(&h);
    hb_completed(&h, "\"got hi\"");
    fed f = feed_script(one_activity, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK(!f.out.has_task);
    engine_output end;
    CHECK_MSG(engine_run_check_end(f.r, &end, &f.err) == 0, "%s", f.err.msg);
    CHECK(engine_run_closed(f.r));
    fed_free(&f);
    /* the same history cut before the completion event: the script's
     * CompleteWorkflowExecution has no event */
    HistoryEvent *last = h.ev[--h.n];
    f = feed_script(one_activity, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK(engine_run_check_end(f.r, &end, &f.err) != 0);
    CHECK_CONTAINS(f.err.msg, "CompleteWorkflowExecution");
    fed_free(&f);
    h.ev[h.n++] = last;
    hb_free(&h);
}

static void timer_cancel_replays(void) {
    static const char *src =
        "return function()\n"
        "  local t = workflow.timer(60)\n"
        "  t:cancel()\n"
        "  workflow.sleep(1)\n"
        "  return 'ok'\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    /* started and cancelled in one task: neither command is sent */
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands) CHECK_STREQ(f.out.commands[0]->start_timer_command_attributes->timer_id, "2");
    fed_free(&f);
    hb_free(&h);
    /* a timer cancelled in a later task */
    static const char *src2 =
        "return function()\n"
        "  local t = workflow.timer(60)\n"
        "  workflow.sleep(1)\n"
        "  t:cancel()\n"
        "  return 'ok'\n"
        "end\n";
    hb_begin(&h, NULL);
    hb_task(&h);
    int64_t t1 = hb_timer_started(&h, "1", INT64_C(60) * 1000000000);
    int64_t t2 = hb_timer_started(&h, "2", INT64_C(1) * 1000000000);
    hb_timer_fired(&h, "2", t2);
    hb_task(&h);
    hb_timer_canceled(&h, "1", t1);
    hb_completed(&h, "\"ok\"");
    f = feed_script(src2, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    engine_output end;
    CHECK_MSG(engine_run_check_end(f.r, &end, &f.err) == 0, "%s", f.err.msg);
    fed_free(&f);
    hb_free(&h);
}

static void nondeterminism_names_event_command_and_line(void) {
    hb h;
    hb_begin(&h, "\"ada\"");
    hb_task(&h);
    hb_activity_scheduled(&h, "1", "farewell"); /* history says another activity */
    hb_open_task(&h);
    fed f = feed_script(one_activity, &h);
    CHECK(f.rc != 0);
    CHECK_INT(f.out.failure, ENGINE_NONDETERMINISM);
    CHECK_INT(f.out.failed_event_id, 5);
    CHECK_CONTAINS(f.err.msg, "nondeterminism");
    CHECK_CONTAINS(f.err.msg, "5 ActivityTaskScheduled (activity 'farewell', id '1')");
    CHECK_CONTAINS(f.err.msg, "ScheduleActivityTask (activity 'greet', id '1')");
    CHECK_CONTAINS(f.err.msg, "workflows/test.lua:2");
    fed_free(&f);
    hb_free(&h);
}

static void missing_command_is_nondeterminism(void) {
    static const char *src = "return function() return 1 end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_task(&h);
    hb_timer_started(&h, "1", 1000000000);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK(f.rc != 0);
    CHECK_INT(f.out.failure, ENGINE_NONDETERMINISM);
    CHECK_CONTAINS(f.err.msg, "TimerStarted");
    fed_free(&f);
    hb_free(&h);
}

static void extra_command_is_nondeterminism(void) {
    static const char *src = "return function() workflow.sleep(5) workflow.sleep(6) end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_task(&h); /* the recorded task produced no timer */
    hb_signal(&h, "poke", NULL);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK(f.rc != 0);
    CHECK_INT(f.out.failure, ENGINE_NONDETERMINISM);
    CHECK_CONTAINS(f.err.msg, "StartTimer (timer '1')");
    CHECK_CONTAINS(f.err.msg, "workflows/test.lua:1");
    fed_free(&f);
    hb_free(&h);
}

static void timer_then_signal_wait_condition(void) {
    static const char *src =
        "return function()\n"
        "  local got = nil\n"
        "  workflow.on_signal('approve', function(who) got = who end)\n"
        "  local ok = workflow.wait_condition(function() return got ~= nil end, '1 hour')\n"
        "  return {ok = ok, who = got, now = workflow.now() > 0}\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands) {
        CHECK_INT(f.out.commands[0]->command_type, CT(START_TIMER));
        CHECK_INT(pb_duration_nanos(f.out.commands[0]->start_timer_command_attributes->start_to_fire_timeout),
                  INT64_C(3600) * 1000000000);
    }
    fed_free(&f);
    /* the signal arrives: the condition holds, the timer is cancelled, the run completes */
    hb_wft_completed(&h);
    int64_t ts = hb_timer_started(&h, "1", INT64_C(3600) * 1000000000);
    hb_signal(&h, "approve", "\"bob\"");
    hb_open_task(&h);
    f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 2);
    if (f.out.n_commands == 2) {
        CHECK_INT(f.out.commands[0]->command_type, CT(CANCEL_TIMER));
        CHECK_INT(f.out.commands[1]->command_type, CT(COMPLETE_WORKFLOW_EXECUTION));
        char buf[256];
        CHECK_STREQ(cmd_payload_json(f.out.commands[1], buf, sizeof buf), "[{\"now\":true,\"ok\":true,\"who\":\"bob\"}]");
    }
    fed_free(&f);
    (void)ts;
    hb_free(&h);
}

static void wait_condition_times_out(void) {
    static const char *src =
        "return function()\n"
        "  local ok = workflow.wait_condition(function() return false end, 60)\n"
        "  return ok\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_task(&h);
    int64_t ts = hb_timer_started(&h, "1", INT64_C(60) * 1000000000);
    hb_timer_fired(&h, "1", ts);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands) {
        char buf[64];
        CHECK_STREQ(cmd_payload_json(f.out.commands[0], buf, sizeof buf), "[false]");
    }
    fed_free(&f);
    hb_free(&h);
}

static void signals_before_handler_are_buffered(void) {
    static const char *src =
        "return function()\n"
        "  local seen = {}\n"
        "  workflow.on_signal('add', function(v) seen[#seen + 1] = v end)\n"
        "  workflow.wait_condition(function() return #seen >= 2 end)\n"
        "  return seen\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_signal(&h, "add", "1"); /* signal-with-start: before the first task */
    hb_signal(&h, "add", "2");
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands) {
        char buf[64];
        CHECK_STREQ(cmd_payload_json(f.out.commands[0], buf, sizeof buf), "[[1,2]]");
    }
    fed_free(&f);
    hb_free(&h);
}

static void activity_failure_surfaces_typed(void) {
    static const char *src =
        "return function()\n"
        "  local ok, e = pcall(workflow.execute_activity, 'x', {}, {start_to_close_timeout = 5})\n"
        "  return {ok = ok, type = e.type, cause = e.cause.type, msg = e.cause.message, nr = e.cause.non_retryable}\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_task(&h);
    int64_t s = hb_activity_scheduled(&h, "1", "x");
    hb_activity_failed(&h, s, "ValidationError", "bad key", 1);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    if (f.out.n_commands) {
        char buf[256];
        CHECK_STREQ(cmd_payload_json(f.out.commands[0], buf, sizeof buf),
                    "[{\"cause\":\"ValidationError\",\"msg\":\"bad key\",\"nr\":true,\"ok\":false,\"type\":\"ActivityError\"}]");
    }
    fed_free(&f);
    hb_free(&h);
}

static void application_error_fails_workflow(void) {
    static const char *src =
        "return function()\n"
        "  error(workflow.ApplicationError{type = 'ValidationError', message = 'bad key', non_retryable = true})\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands) {
        const Command *c = f.out.commands[0];
        CHECK_INT(c->command_type, CT(FAIL_WORKFLOW_EXECUTION));
        const Failure *fl = c->fail_workflow_execution_command_attributes->failure;
        CHECK_STREQ(fl->message, "bad key");
        CHECK_STREQ(fl->application_failure_info->type, "ValidationError");
        CHECK(fl->application_failure_info->non_retryable);
    }
    fed_free(&f);
    hb_free(&h);
}

static void lua_error_fails_the_task_with_line(void) {
    static const char *src = "return function()\n  local t = nil\n  return t.x\nend\n";
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK(f.rc != 0);
    CHECK_INT(f.out.failure, ENGINE_TASK_FAILED);
    CHECK_CONTAINS(f.err.msg, "workflows/test.lua:3");
    CHECK_CONTAINS(f.err.msg, "attempt to index a nil value");
    fed_free(&f);
    hb_free(&h);
}

static void infinite_loop_fails_the_task(void) {
    static const char *src = "return function()\n  while true do pcall(function() while true do end end) end\nend\n";
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK(f.rc != 0);
    CHECK_INT(f.out.failure, ENGINE_TASK_FAILED);
    CHECK_CONTAINS(f.err.msg, "instruction budget exceeded");
    fed_free(&f);
    hb_free(&h);
}

static void patched_new_run_emits_marker(void) {
    static const char *src =
        "return function()\n"
        "  if workflow.patched('v2') then return 'new' end\n"
        "  return 'old'\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    /* marker, TemporalChangeVersion upsert (runtime flag 2), completion */
    CHECK_INT(f.out.n_commands, 3);
    if (f.out.n_commands == 3) {
        const Command *m = f.out.commands[0];
        CHECK_INT(m->command_type, CT(RECORD_MARKER));
        CHECK_STREQ(m->record_marker_command_attributes->marker_name, "core_patch");
        CHECK_STREQ(m->record_marker_command_attributes->details[0]->key, "patch-data");
        const ProtobufCBinaryData *d = &m->record_marker_command_attributes->details[0]->value->payloads[0]->data;
        CHECK(d->len == strlen("{\"deprecated\":false,\"id\":\"v2\"}") &&
              memcmp(d->data, "{\"deprecated\":false,\"id\":\"v2\"}", d->len) == 0);
        CHECK_INT(f.out.commands[1]->command_type, CT(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES));
        char buf[64];
        CHECK_STREQ(cmd_payload_json(f.out.commands[2], buf, sizeof buf), "[\"new\"]");
    }
    fed_free(&f);
    hb_free(&h);
}

static void patched_old_history_takes_old_branch(void) {
    /* recorded before the patch existed: a timer, no marker */
    static const char *src =
        "return function()\n"
        "  if workflow.patched('v2') then\n"
        "    workflow.execute_activity('newstep', {}, {start_to_close_timeout = 5})\n"
        "  else\n"
        "    workflow.sleep(1)\n"
        "  end\n"
        "  return 'done'\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_task(&h);
    int64_t ts = hb_timer_started(&h, "1", 1000000000);
    hb_timer_fired(&h, "1", ts);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands) CHECK_INT(f.out.commands[0]->command_type, CT(COMPLETE_WORKFLOW_EXECUTION));
    fed_free(&f);
    /* and with the marker recorded, the new branch replays */
    hb h2;
    hb_begin(&h2, NULL);
    hb_task(&h2);
    hb_patch_marker(&h2, "v2", 0);
    int64_t s = hb_activity_scheduled(&h2, "1", "newstep");
    hb_activity_completed(&h2, s, NULL);
    hb_open_task(&h2);
    f = feed_script(src, &h2);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    fed_free(&f);
    hb_free(&h);
    hb_free(&h2);
}

static void deprecated_patch_marker_is_skipped(void) {
    static const char *src = "return function() workflow.sleep(1) return 1 end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_task(&h);
    hb_patch_marker(&h, "old", 1);
    int64_t ts = hb_timer_started(&h, "1", 1000000000);
    hb_timer_fired(&h, "1", ts);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    fed_free(&f);
    hb_free(&h);
}

static void side_effect_replays_recorded_value(void) {
    static const char *src =
        "local n = 0\n"
        "return function()\n"
        "  local v = workflow.side_effect(function() n = n + 1 return 'first-' .. n end)\n"
        "  return v\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 2);
    if (f.out.n_commands == 2) {
        CHECK_INT(f.out.commands[0]->command_type, CT(RECORD_MARKER));
        char buf[64];
        CHECK_STREQ(cmd_payload_json(f.out.commands[1], buf, sizeof buf), "[\"first-1\"]");
    }
    fed_free(&f);
    hb_free(&h);
}

static void query_reads_state_and_cannot_block(void) {
    static const char *src =
        "return function()\n"
        "  local phase = 'EXPLORE'\n"
        "  workflow.on_query('getPhase', function() return phase end)\n"
        "  workflow.on_query('bad', function() workflow.sleep(1) end)\n"
        "  workflow.sleep(10)\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    Payloads *ans = NULL;
    jerr e = {0};
    CHECK(engine_run_query(f.r, "getPhase", NULL, &ans, &e) == 0);
    if (ans) {
        jbuf b;
        jbuf_init(&b, 0);
        payloads_to_json(ans, true, &b, &e);
        CHECK_STREQ(b.data, "\"EXPLORE\"");
        jbuf_free(&b);
        protobuf_c_message_free_unpacked(&ans->base, NULL);
    }
    CHECK(engine_run_query(f.r, "bad", NULL, &ans, &e) != 0);
    CHECK_CONTAINS(e.msg, "query");
    CHECK(engine_run_query(f.r, "nope", NULL, &ans, &e) != 0);
    CHECK_CONTAINS(e.msg, "unknown query type 'nope'");
    CHECK_CONTAINS(e.msg, "getPhase");
    fed_free(&f);
    hb_free(&h);
}

static void cancellation_cancels_timer_and_ends_cancelled(void) {
    static const char *src = "return function() workflow.sleep(100) return 'slept' end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_task(&h);
    hb_timer_started(&h, "1", INT64_C(100) * 1000000000);
    hb_cancel_requested(&h);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 2);
    if (f.out.n_commands == 2) {
        CHECK_INT(f.out.commands[0]->command_type, CT(CANCEL_TIMER));
        CHECK_INT(f.out.commands[1]->command_type, CT(CANCEL_WORKFLOW_EXECUTION));
    }
    fed_free(&f);
    hb_free(&h);
}

static void go_coroutines_and_await_all(void) {
    static const char *src =
        "return function()\n"
        "  local acts = workflow.activities{start_to_close_timeout = '1 minute'}\n"
        "  local fs = {}\n"
        "  for i = 1, 3 do fs[i] = workflow.go(function() return acts.step(i) end) end\n"
        "  return workflow.await_all(fs)\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 3);
    for (size_t i = 0; i < f.out.n_commands && i < 3; i++) {
        char buf[32], want[32];
        snprintf(want, sizeof want, "[%zu]", i + 1);
        CHECK_STREQ(cmd_payload_json(f.out.commands[i], buf, sizeof buf), want);
    }
    fed_free(&f);
    /* results arrive out of order; await_all keeps list order */
    hb_wft_completed(&h);
    int64_t a = hb_activity_scheduled(&h, "1", "step");
    int64_t b = hb_activity_scheduled(&h, "2", "step");
    int64_t c = hb_activity_scheduled(&h, "3", "step");
    hb_activity_completed(&h, c, "30");
    hb_activity_completed(&h, a, "10");
    hb_activity_completed(&h, b, "20");
    hb_open_task(&h);
    f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    if (f.out.n_commands == 1) {
        char buf[64];
        CHECK_STREQ(cmd_payload_json(f.out.commands[0], buf, sizeof buf), "[[10,20,30]]");
    }
    fed_free(&f);
    hb_free(&h);
}

static void unknown_event_type_respects_worker_may_ignore(void) {
    static const char *src = "return function() workflow.sleep(1) end\n";
    for (int ignore = 0; ignore <= 1; ignore++) {
        hb h;
        hb_begin(&h, NULL);
        HistoryEvent *e = hb_push(&h, 55); /* WorkflowExecutionOptionsUpdated: not handled */
        e->worker_may_ignore = ignore;
        hb_open_task(&h);
        fed f = feed_script(src, &h);
        if (ignore) {
            CHECK_MSG(f.rc == 0, "%s", f.err.msg);
        } else {
            CHECK(f.rc != 0);
            CHECK_CONTAINS(f.err.msg, "history event 2");
        }
        fed_free(&f);
        hb_free(&h);
    }
}

static void bad_options_are_clear(void) {
    static const char *src = "return function() workflow.execute_activity('x', {}, {start_to_close = 5}) end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK(f.rc != 0);
    CHECK_CONTAINS(f.err.msg, "unknown option 'start_to_close'");
    CHECK_CONTAINS(f.err.msg, "workflows/test.lua:1");
    fed_free(&f);
    hb_free(&h);
}

static void syntax_error_before_history(void) {
    engine_run_config cfg = {.script_name = "workflows/bad.lua", .script_src = "return function(\n x = end",
                             .script_len = strlen("return function(\n x = end"), .limits = engine_limits_default()};
    jerr e = {0};
    engine_run *r = engine_run_new(&cfg, &e);
    CHECK(r == NULL);
    CHECK_CONTAINS(e.msg, "workflows/bad.lua:2:");
}

/* jorch.workflow and the script are compiled once per version and every
 * run loads the bytecode (sandbox.c, "compiled chunks"): the first run in
 * a process (a miss) and the next ones (hits) must be the same run - the
 * same commands, the same heap (object keys hash by address), the same
 * line numbers in errors. */
static void compiled_once_runs_the_same(void) {
    static const char *src = /* text no other test uses: its first load here is a miss */
        "-- compiled_once_runs_the_same\n"
        "return function(n)\n"
        "  local keys, t = {}, {}\n"
        "  for i = 1, n do local k = {i}; keys[i] = k; t[k] = i end\n"
        "  local holes = {}\n"
        "  for i = 1, n, 3 do holes[i] = true end\n"
        "  local r = workflow.execute_activity('greet', {#holes, #keys}, {start_to_close_timeout = '10s'})\n"
        "  if r == 'boom' then local x = nil; return x.y end\n"
        "  return r\n"
        "end\n";
    size_t mem[3] = {0};
    char first[256] = "", json[256];
    for (int round = 0; round < 3; round++) {
        hb h;
        hb_init(&h);
        const char *args[] = {"40"};
        hb_started(&h, "test", args, 1);
        hb_open_task(&h);
        fed f = feed_script(src, &h);
        CHECK_INT(f.rc, 0);
        CHECK_INT(f.out.n_commands, 1);
        if (f.rc == 0 && f.out.n_commands == 1) {
            cmd_payload_json(f.out.commands[0], json, sizeof json);
            if (round == 0) snprintf(first, sizeof first, "%s", json);
            else CHECK_STREQ(json, first);
        }
        mem[round] = f.r ? engine_run_memory(f.r) : 0;
        fed_free(&f);
        hb_free(&h);
    }
    CHECK(mem[0] > 0);
    CHECK_INT(mem[1], mem[0]);
    CHECK_INT(mem[2], mem[0]);
    /* an error in the loaded bytecode names the script's line */
    hb h;
    hb_init(&h);
    const char *args[] = {"1"};
    hb_started(&h, "test", args, 1);
    hb_task(&h);
    int64_t sched = hb_activity_scheduled(&h, "1", "greet");
    hb_activity_completed(&h, sched, "\"boom\"");
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK(f.rc != 0);
    CHECK_CONTAINS(f.err.msg, "workflows/test.lua:8");
    fed_free(&f);
    hb_free(&h);
}

static void script_must_return_function(void) {
    jerr e = {0};
    CHECK(engine_check_script("workflows/x.lua", "return 42", 9, NULL, NULL, &e) != 0);
    CHECK_CONTAINS(e.msg, "must return its workflow function");
    static const char *uses_os = "local x = os.time()\nreturn function() end";
    CHECK(engine_check_script("workflows/x.lua", uses_os, strlen(uses_os), NULL, NULL, &e) != 0);
    CHECK_CONTAINS(e.msg, "'os' is not available in workflows");
    CHECK(engine_check_script("workflows/x.lua", "return function() end", 21, NULL, NULL, &e) == 0);
}

static void waiting_inside_pcall_and_xpcall(void) {
    static const char *src =
        "return function()\n"
        "  local ok1 = pcall(workflow.sleep, 1)\n"
        "  local ok2, v = xpcall(function() workflow.sleep(2) return 'v' end, function(m) return 'h:' .. tostring(m) end)\n"
        "  local ok3, m = xpcall(function() error('boom', 0) end, function(m) return 'h:' .. m end)\n"
        "  return {ok1, ok2, v, ok3, m}\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_task(&h);
    int64_t t1 = hb_timer_started(&h, "1", 1000000000);
    hb_timer_fired(&h, "1", t1);
    hb_task(&h);
    int64_t t2 = hb_timer_started(&h, "2", 2000000000);
    hb_timer_fired(&h, "2", t2);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands) {
        char buf[128];
        CHECK_STREQ(cmd_payload_json(f.out.commands[0], buf, sizeof buf), "[[true,true,\"v\",false,\"h:boom\"]]");
    }
    fed_free(&f);
    hb_free(&h);
}

static void event_without_attributes_is_rejected(void) {
    hb h;
    hb_begin(&h, NULL);
    hb_task(&h);
    hb_push(&h, ET(ACTIVITY_TASK_COMPLETED)); /* no attributes: a damaged history */
    hb_open_task(&h);
    fed f = feed_script(one_activity, &h);
    CHECK(f.rc != 0);
    CHECK_CONTAINS(f.err.msg, "history event 5 (ActivityTaskCompleted) does not carry its attributes");
    fed_free(&f);
    hb_free(&h);
}

static void out_of_order_history_is_rejected(void) {
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    h.ev[1]->event_id = 7;
    fed f = feed_script("return function() end", &h);
    CHECK(f.rc != 0);
    CHECK_CONTAINS(f.err.msg, "expected event 2, got 7");
    fed_free(&f);
    hb_free(&h);
}


/* ------------------------------------------------------------ runtime flags */

/* Marks the last WorkflowTaskCompleted of h with jorch's metadata and flags
 * (n == 0: jorch's name only). */
static void hb_jorch_flags(hb *h, const uint32_t *flags, size_t n) {
    HistoryEvent *e = NULL;
    for (size_t i = h->n; i-- > 0;)
        if (h->ev[i]->event_type == ET(WORKFLOW_TASK_COMPLETED)) {
            e = h->ev[i];
            break;
        }
    Temporal__Api__Sdk__V1__WorkflowTaskCompletedMetadata *m = malloc(sizeof *m);
    temporal__api__sdk__v1__workflow_task_completed_metadata__init(m);
    m->sdk_name = jstrdup("jorch");
    if (n) {
        m->lang_used_flags = malloc(n * sizeof *flags);
        memcpy(m->lang_used_flags, flags, n * sizeof *flags);
        m->n_lang_used_flags = n;
    }
    e->workflow_task_completed_event_attributes->sdk_metadata = m;
}

/* Task 1 of this script: activity, timer; task 2 (open): another activity. */
static const char *ids_script =
    "return function()\n"
    "  local f = workflow.start_activity('a', {}, {start_to_close_timeout = '10s'})\n"
    "  workflow.sleep(1)\n"
    "  return workflow.execute_activity('b', {}, {start_to_close_timeout = '10s'})\n"
    "end\n";

static void ids_history(hb *h, const char *timer_id, const uint32_t *flags, size_t nflags, bool meta) {
    hb_begin(h, NULL);
    hb_task(h);
    if (meta) hb_jorch_flags(h, flags, nflags);
    hb_activity_scheduled(h, "1", "a");
    int64_t t = hb_timer_started(h, timer_id, INT64_C(1000000000));
    hb_timer_fired(h, timer_id, t);
    hb_open_task(h);
}

static void flag1_new_run_records_kind_ids(void) {
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    fed f = feed_script(ids_script, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 2);
    if (f.out.n_commands == 2)
        CHECK_STREQ(f.out.commands[1]->start_timer_command_attributes->timer_id, "1");
    CHECK(f.out.first_task);
    Temporal__Api__Sdk__V1__WorkflowTaskCompletedMetadata *md = NULL;
    jerr e = {0};
    CHECK(engine_task_metadata(&f.out, &md, &e) == 0 && md);
    if (md) {
        CHECK_STREQ(md->sdk_name, "jorch");
        bool has1 = false;
        for (size_t i = 0; i < md->n_lang_used_flags; i++) has1 |= md->lang_used_flags[i] == ENGINE_FLAG_KIND_IDS;
        CHECK(has1);
        protobuf_c_message_free_unpacked(&md->base, NULL);
    }
    fed_free(&f);
    hb_free(&h);
}

static void flag1_without_replays_shared_counter(void) {
    hb h;
    ids_history(&h, "2", NULL, 0, false); /* jorch before flags: A1, T2 */
    fed f = feed_script(ids_script, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands == 1)
        CHECK_STREQ(f.out.commands[0]->schedule_activity_task_command_attributes->activity_id, "3");
    CHECK_INT(f.out.n_new_flags, 0); /* an old run never takes on start flags */
    fed_free(&f);
    hb_free(&h);
}

static void flag1_with_replays_kind_ids(void) {
    hb h;
    const uint32_t fl[] = {ENGINE_FLAG_KIND_IDS};
    ids_history(&h, "1", fl, 1, true); /* A1, T1 */
    fed f = feed_script(ids_script, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands == 1)
        CHECK_STREQ(f.out.commands[0]->schedule_activity_task_command_attributes->activity_id, "2");
    fed_free(&f);
    hb_free(&h);
    /* the same history without the flag is nondeterministic: timer '2' expected */
    ids_history(&h, "1", NULL, 0, false);
    f = feed_script(ids_script, &h);
    CHECK(f.rc != 0);
    CHECK_INT(f.out.failure, ENGINE_NONDETERMINISM);
    fed_free(&f);
    hb_free(&h);
}

static void flag1_core_history_uses_kind_ids(void) {
    /* recorded by an sdk-core SDK: its name and core's flags, no jorch flags */
    hb h;
    ids_history(&h, "1", NULL, 0, false);
    for (size_t i = 0; i < h.n; i++)
        if (h.ev[i]->event_type == ET(WORKFLOW_TASK_COMPLETED)) {
            Temporal__Api__Sdk__V1__WorkflowTaskCompletedMetadata *m = malloc(sizeof *m);
            temporal__api__sdk__v1__workflow_task_completed_metadata__init(m);
            m->sdk_name = jstrdup("temporal-python");
            m->core_used_flags = malloc(2 * sizeof(uint32_t));
            m->core_used_flags[0] = 1;
            m->core_used_flags[1] = 2;
            m->n_core_used_flags = 2;
            h.ev[i]->workflow_task_completed_event_attributes->sdk_metadata = m;
            break;
        }
    fed f = feed_script(ids_script, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    if (f.out.n_commands == 1)
        CHECK_STREQ(f.out.commands[0]->schedule_activity_task_command_attributes->activity_id, "2");
    fed_free(&f);
    hb_free(&h);
}

static void unknown_flag_fails_the_task(void) {
    hb h;
    const uint32_t fl[] = {ENGINE_FLAG_MAX + 1};
    ids_history(&h, "1", fl, 1, true);
    fed f = feed_script(ids_script, &h);
    CHECK(f.rc != 0);
    CHECK_INT(f.out.failure, ENGINE_TASK_FAILED);
    CHECK_CONTAINS(f.err.msg, "records runtime flag 4");
    CHECK_CONTAINS(f.err.msg, "newer jorch");
    fed_free(&f);
    hb_free(&h);
}

/* A WorkflowTaskCompleted carrying another event's attributes (a damaged
 * history; the fuzzer's find): the flags are read ahead of the per-event
 * check, and must not take the other attributes for the task's. */
static void completion_with_foreign_attributes_is_damage(void) {
    hb h;
    hb_begin(&h, NULL);
    int64_t done = hb_task(&h);
    HistoryEvent *e = h.ev[done - 1];
    protobuf_c_message_free_unpacked(&e->workflow_task_completed_event_attributes->base, NULL);
    Temporal__Api__History__V1__TimerStartedEventAttributes *a = malloc(sizeof *a);
    temporal__api__history__v1__timer_started_event_attributes__init(a);
    a->timer_id = jstrdup("1");
    e->attributes_case = EV_ATTR(TIMER_STARTED);
    e->timer_started_event_attributes = a;
    hb_open_task(&h);
    fed f = feed_script(ids_script, &h);
    CHECK(f.rc != 0);
    CHECK_INT(f.out.failure, ENGINE_TASK_FAILED);
    CHECK_CONTAINS(f.err.msg, "(WorkflowTaskCompleted) does not carry its attributes");
    fed_free(&f);
    hb_free(&h);
}

static const char *patch_script =
    "return function()\n"
    "  workflow.sleep(1)\n"
    "  if workflow.patched('p1') then return 'new' end\n"
    "  return 'old'\n"
    "end\n";

static void flag2_patch_upsert(void) {
    /* task 1 recorded without flag 2; task 2 (new) takes it on and records it */
    hb h;
    hb_begin(&h, NULL);
    hb_task(&h);
    hb_jorch_flags(&h, NULL, 0);
    int64_t t = hb_timer_started(&h, "1", INT64_C(1000000000));
    hb_timer_fired(&h, "1", t);
    hb_open_task(&h);
    fed f = feed_script(patch_script, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 3);
    if (f.out.n_commands == 3) {
        const Command *u = f.out.commands[1];
        CHECK_INT(u->command_type, CT(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES));
        const Temporal__Api__Common__V1__SearchAttributes *sa =
            u->upsert_workflow_search_attributes_command_attributes->search_attributes;
        CHECK_STREQ(sa->indexed_fields[0]->key, "TemporalChangeVersion");
        const ProtobufCBinaryData *d = &sa->indexed_fields[0]->value->data;
        CHECK(d->len == 6 && memcmp(d->data, "[\"p1\"]", 6) == 0);
    }
    CHECK_INT(f.out.n_new_flags, 1);
    if (f.out.n_new_flags == 1) CHECK_INT(f.out.new_flags[0], ENGINE_FLAG_PATCH_UPSERT);
    fed_free(&f);
    hb_free(&h);

    /* replay: task 2 recorded without flag 2 (marker only) replays the old way */
    hb_begin(&h, NULL);
    hb_task(&h);
    hb_jorch_flags(&h, NULL, 0);
    t = hb_timer_started(&h, "1", INT64_C(1000000000));
    hb_timer_fired(&h, "1", t);
    hb_task(&h);
    hb_patch_marker(&h, "p1", 0);
    hb_completed(&h, "\"new\"");
    f = feed_script(patch_script, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    engine_output o;
    CHECK_MSG(engine_run_check_end(f.r, &o, &f.err) == 0, "%s", f.err.msg);
    fed_free(&f);
    /* ... and with flag 2 recorded, the upsert must be there */
    const uint32_t fl[] = {ENGINE_FLAG_PATCH_UPSERT};
    hb_jorch_flags(&h, fl, 1); /* the last completion: task 2 */
    f = feed_script(patch_script, &h);
    CHECK(f.rc != 0);
    CHECK_INT(f.out.failure, ENGINE_NONDETERMINISM);
    CHECK_CONTAINS(f.err.msg, "UpsertWorkflowSearchAttributes");
    fed_free(&f);
    hb_free(&h);
}

static const char *details_script =
    "return function()\n"
    "  local ok, e = pcall(workflow.execute_activity, 'a', {}, {start_to_close_timeout = '10s'})\n"
    "  return e.cause.details\n"
    "end\n";

static void details_history(hb *h, const uint32_t *flags, size_t n) {
    hb_begin(h, NULL);
    hb_task(h);
    hb_jorch_flags(h, flags, n);
    int64_t s = hb_activity_scheduled(h, "1", "a");
    hb_activity_failed(h, s, "E", "boom", 1);
    /* two detail payloads on the failure */
    HistoryEvent *e = h->ev[h->n - 1];
    Temporal__Api__Failure__V1__Failure *c = e->activity_task_failed_event_attributes->failure;
    Temporal__Api__Failure__V1__ApplicationFailureInfo *ai =
        c->cause ? c->cause->application_failure_info : c->application_failure_info;
    ai->details = hb_payloads("{\"k\":1}");
    payloads_add(ai->details, payload_new_json("\"second\"", 8));
    hb_open_task(h);
}

static void flag3_details_list(void) {
    hb h;
    details_history(&h, NULL, 0); /* a jorch run without flag 3: the first payload */
    fed f = feed_script(details_script, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    char buf[128];
    if (f.out.n_commands == 1) CHECK_STREQ(cmd_payload_json(f.out.commands[0], buf, sizeof buf), "[{\"k\":1}]");
    fed_free(&f);
    hb_free(&h);
    const uint32_t fl[] = {ENGINE_FLAG_DETAILS_LIST};
    details_history(&h, fl, 1); /* with flag 3: one list element per payload */
    f = feed_script(details_script, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    if (f.out.n_commands == 1)
        CHECK_STREQ(cmd_payload_json(f.out.commands[0], buf, sizeof buf), "[[{\"k\":1},\"second\"]]");
    fed_free(&f);
    hb_free(&h);
}

static void flag3_heartbeat_details_list(void) {
    static const char *src =
        "return function()\n"
        "  local ok, e = pcall(workflow.execute_activity, 'a', {}, {start_to_close_timeout = '10s'})\n"
        "  return e.cause.last_heartbeat_details or 'none'\n"
        "end\n";
    for (int with = 0; with <= 1; with++) {
        hb h;
        hb_begin(&h, NULL);
        hb_task(&h);
        const uint32_t fl[] = {ENGINE_FLAG_DETAILS_LIST};
        hb_jorch_flags(&h, fl, with ? 1 : 0);
        int64_t sch = hb_activity_scheduled(&h, "1", "a");
        hb_activity_failed(&h, sch, "E", "late", 0);
        Temporal__Api__Failure__V1__Failure *c = h.ev[h.n - 1]->activity_task_failed_event_attributes->failure;
        /* a heartbeat timeout with two detail payloads */
        protobuf_c_message_free_unpacked(&c->application_failure_info->base, NULL);
        c->application_failure_info = NULL;
        c->timeout_failure_info = malloc(sizeof *c->timeout_failure_info);
        temporal__api__failure__v1__timeout_failure_info__init(c->timeout_failure_info);
        c->failure_info_case = FAILURE_INFO(TIMEOUT);
        c->timeout_failure_info->timeout_type = 4;
        c->timeout_failure_info->last_heartbeat_details = hb_payloads("{\"at\":3}");
        payloads_add(c->timeout_failure_info->last_heartbeat_details, payload_new_json("7", 1));
        hb_open_task(&h);
        fed f = feed_script(src, &h);
        CHECK_MSG(f.rc == 0, "%s", f.err.msg);
        char buf[128];
        if (f.out.n_commands == 1)
            CHECK_STREQ(cmd_payload_json(f.out.commands[0], buf, sizeof buf), with ? "[[{\"at\":3},7]]" : "[\"none\"]");
        fed_free(&f);
        hb_free(&h);
    }
}

static void flag3_error_details_as_payloads(void) {
    static const char *src =
        "return function()\n"
        "  error(workflow.ApplicationError{type = 'E', message = 'm', details = {'d1', {k = 1}}})\n"
        "end\n";
    hb h;
    hb_begin(&h, NULL);
    hb_open_task(&h);
    fed f = feed_script(src, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    if (f.out.n_commands == 1) {
        const Temporal__Api__Failure__V1__Failure *fl =
            f.out.commands[0]->fail_workflow_execution_command_attributes->failure;
        CHECK_INT(fl->application_failure_info->details->n_payloads, 2);
    }
    fed_free(&f);
    hb_free(&h);
}

/* A history recorded before the size limits (or by another SDK) with a
 * command over 2 MiB replays: limits judge new tasks, not recorded ones;
 * the same command in a new task fails the workflow. */
static const char *big_activity =
    "return function()\n"
    "  local r = workflow.execute_activity('greet', {string.rep('x', 3 * 1024 * 1024)},\n"
    "                                      {start_to_close_timeout = '10s'})\n"
    "  return 'got ' .. r\n"
    "end\n";

static void recorded_oversized_command_still_replays(void) {
    hb h;
    hb_begin(&h, NULL);
    hb_task(&h);
    int64_t s = hb_activity_scheduled(&h, "1", "greet");
    hb_activity_completed(&h, s, "\"ok\"");
    hb_open_task(&h);
    fed f = feed_script(big_activity, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands == 1) CHECK_INT(f.out.commands[0]->command_type, CT(COMPLETE_WORKFLOW_EXECUTION));
    fed_free(&f);
    hb_free(&h);

    hb_begin(&h, NULL);
    hb_open_task(&h);
    f = feed_script(big_activity, &h);
    CHECK_MSG(f.rc == 0, "%s", f.err.msg);
    CHECK_INT(f.out.n_commands, 1);
    if (f.out.n_commands == 1) CHECK_INT(f.out.commands[0]->command_type, CT(FAIL_WORKFLOW_EXECUTION));
    fed_free(&f);
    hb_free(&h);
}

TEST_MAIN(TEST_CASE(first_task_schedules_activity), TEST_CASE(flag1_new_run_records_kind_ids),
          TEST_CASE(flag1_without_replays_shared_counter), TEST_CASE(flag1_with_replays_kind_ids),
          TEST_CASE(flag1_core_history_uses_kind_ids), TEST_CASE(unknown_flag_fails_the_task),
          TEST_CASE(completion_with_foreign_attributes_is_damage),
          TEST_CASE(flag2_patch_upsert), TEST_CASE(flag3_details_list), TEST_CASE(flag3_heartbeat_details_list), TEST_CASE(flag3_error_details_as_payloads), TEST_CASE(replay_then_complete),
          TEST_CASE(closed_history_replays_to_the_end), TEST_CASE(timer_cancel_replays),
          TEST_CASE(incremental_feed_matches_like_full), TEST_CASE(nondeterminism_names_event_command_and_line),
          TEST_CASE(missing_command_is_nondeterminism), TEST_CASE(extra_command_is_nondeterminism),
          TEST_CASE(timer_then_signal_wait_condition), TEST_CASE(wait_condition_times_out),
          TEST_CASE(signals_before_handler_are_buffered), TEST_CASE(activity_failure_surfaces_typed),
          TEST_CASE(application_error_fails_workflow), TEST_CASE(lua_error_fails_the_task_with_line),
          TEST_CASE(infinite_loop_fails_the_task), TEST_CASE(patched_new_run_emits_marker),
          TEST_CASE(patched_old_history_takes_old_branch), TEST_CASE(deprecated_patch_marker_is_skipped),
          TEST_CASE(side_effect_replays_recorded_value), TEST_CASE(query_reads_state_and_cannot_block),
          TEST_CASE(cancellation_cancels_timer_and_ends_cancelled), TEST_CASE(go_coroutines_and_await_all),
          TEST_CASE(unknown_event_type_respects_worker_may_ignore), TEST_CASE(bad_options_are_clear),
          TEST_CASE(syntax_error_before_history), TEST_CASE(compiled_once_runs_the_same),
          TEST_CASE(script_must_return_function),
          TEST_CASE(waiting_inside_pcall_and_xpcall), TEST_CASE(event_without_attributes_is_rejected),
          TEST_CASE(out_of_order_history_is_rejected),
          TEST_CASE(recorded_oversized_command_still_replays))
