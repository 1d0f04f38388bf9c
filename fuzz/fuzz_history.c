/*
 * fuzz_history - binary protobuf histories (what a Temporal server sends a
 * worker) fed to the engine with a workflow that uses timers, activities,
 * signals and patches. The engine must reject nonsense with an error, never
 * crash or leak.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "temporal/temporal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *script =
    "local acts = workflow.activities{start_to_close_timeout = 5}\n"
    "return function(...)\n"
    "  local got = {}\n"
    "  workflow.on_signal('*', function(name, v) got[#got + 1] = v end)\n"
    "  if workflow.patched('p1') then acts.a(1) end\n"
    "  workflow.sleep(1)\n"
    "  local f = workflow.start_activity('b', {...}, {start_to_close_timeout = 5})\n"
    "  workflow.wait_condition(function() return #got > 0 or f:is_ready() end, 10)\n"
    "  return {got = got, v = workflow.side_effect(function() return 1 end)}\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* as the transport does: protobuf-c's unpacker recurses without a limit */
    if (!tc_pb_depth_ok(&temporal__api__history__v1__history__descriptor, data, size, TC_MAX_PROTO_DEPTH)) return 0;
    Temporal__Api__History__V1__History *h = temporal__api__history__v1__history__unpack(NULL, size, data);
    if (!h) return 0;
    engine_run_config cfg = {.script_name = "fuzz.lua", .script_src = script, .script_len = strlen(script),
                             .limits = engine_limits_default(), .workflow_id = "fuzz", .run_id = "fuzz"};
    cfg.limits.instruction_budget = 1000000;
    jerr e = {0};
    engine_run *r = engine_run_new(&cfg, &e);
    if (r) {
        engine_output out;
        if (engine_run_feed(r, h->events, h->n_events, &out, &e) == 0) engine_run_check_end(r, &out, &e);
        engine_run_free(r);
    }
    protobuf_c_message_free_unpacked(&h->base, NULL);
    return 0;
}
