/*
 * act_int.h - internals shared by the activity host's files (act_host.c:
 * pool, attempts, the `activity` object; act_toolkit.c: jorch.http,
 * jorch.json, jorch.fs, jorch.env/sleep/now; act_exec.c: jorch.exec).
 * Not part of the public face (activity.h).
 */
#ifndef JORCH_ACT_INT_H
#define JORCH_ACT_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "activity/activity.h"

struct lua_State;

/* Why an attempt must stop what it is doing now. */
enum { ACT_GO = 0, ACT_STOP_CANCEL = 1, ACT_STOP_TIMEOUT = 2, ACT_STOP_ABORT = 3 };

typedef struct act_attempt act_attempt;

/* The attempt that owns Lua state L (NULL outside an attempt, e.g. in the
 * state act_host_has uses). */
act_attempt *act_attempt_of(struct lua_State *L);

/* ACT_GO, or the reason to stop: start-to-close deadline passed (sets the
 * attempt's timed-out mark), host shutting down, or cancellation requested.
 * Blocking toolkit calls poll this a few times a second. NULL: ACT_GO. */
int act_attempt_check(act_attempt *a);

/* Raises the Lua error that matches a stop reason (a CancelledError table
 * for cancellation; the host's timeout/abort marker otherwise). */
int act_attempt_raise_stop(struct lua_State *L, int reason);

/* Sends a heartbeat with the attempt's last details (used by jorch.exec's
 * `heartbeat=` option); returns true if cancellation was requested. */
bool act_attempt_heartbeat_again(act_attempt *a);

/* Monotonic clock in nanoseconds. */
int64_t act_mono_ns(void);

/* A userdata that owns one C resource and frees it with free_fn when
 * collected, so a Lua error (even out of memory) between acquiring and
 * releasing a resource cannot leak it. Store the resource in *slot right
 * after acquiring it; act_box_free releases it early (and empties it). */
void **act_box_push(struct lua_State *L, void (*free_fn)(void *));
void act_box_free(void **slot);

/* Pushes the `jorch` toolkit table (http, json, exec, fs, env, sleep, now). */
void act_toolkit_push(struct lua_State *L);
/* Pushes the jorch.exec function's table entry: called by act_toolkit_push. */
int act_exec_lua(struct lua_State *L);

#endif
