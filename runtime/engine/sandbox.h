/*
 * sandbox.h - engine-internal: the deterministic, restricted Lua 5.4 state
 * a workflow run lives in (rules: docs/sandbox.md). sandbox.c is the one
 * file that knows which Lua libraries exist; the rest of the engine sees
 * only this interface. Not part of the public API (that is engine.h).
 *
 * One sandbox = one lua_State = one workflow run. Nothing is shared
 * between runs, so a script cannot reach another run's values.
 */
#ifndef JORCH_ENGINE_SANDBOX_H
#define JORCH_ENGINE_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "common/common.h"
#include "engine/engine.h"


/* Finds a workflow-side module for the sandbox's require(): fills *src
 * (malloc'ed) and *chunkname (malloc'ed, e.g. "workflows/prompts.lua").
 * Returns 0 found, 1 not found, -1 error (err filled). */
typedef int (*sandbox_module_finder)(void *ud, const char *name, char **src, size_t *len,
                                     char **chunkname, jerr *err);

typedef struct sandbox sandbox;

/* A new state with the allow-listed environment. seed feeds math.random
 * (the engine derives it from the run's original execution run id).
 * finder may be NULL (then require only knows already-preloaded modules). */
sandbox *sandbox_new(const engine_limits *lim, uint64_t seed, sandbox_module_finder finder,
                     void *finder_ud, jerr *err);
void sandbox_free(sandbox *sb);
lua_State *sandbox_state(sandbox *sb);

/* Pushes the run's environment table (the script's _ENV and _G). */
void sandbox_push_env(sandbox *sb);

/* Compiles a text chunk (never binary) with the run environment as its
 * _ENV and pushes the function. Syntax errors come back as
 * "chunkname:line: message". Runs no code. */
int sandbox_load(sandbox *sb, const char *chunkname, const char *src, size_t len, jerr *err);

/* Compiles a text chunk as sandbox_load would, without a run: a syntax
 * error comes back as "chunkname:line: message" (JERR_USAGE). The bytecode
 * is kept, so loading the same text again costs no compilation. */
int sandbox_compile(const char *chunkname, const char *src, size_t len, jerr *err);

/* Registers src as the source of module `name` for require(), ahead of the
 * finder (used for lua/jorch modules and for pinned module versions). */
int sandbox_preload(sandbox *sb, const char *name, const char *chunkname, const char *src,
                    size_t len, jerr *err);

/* Every module loaded through require() so far, for pinning: calls fn for
 * each (name, chunkname, source) in load order. */
void sandbox_each_required(sandbox *sb,
                           void (*fn)(void *ud, const char *name, const char *chunkname,
                                      const char *src, size_t len),
                           void *ud);

/* Limits are accounted per activation: call before running workflow code
 * for one workflow task. Resets the instruction count and the deadline,
 * clears a tripped limit. */
void sandbox_begin_activation(sandbox *sb);

/* True when a limit tripped during this activation (instruction budget,
 * wall clock, memory). Sticky: once tripped, every further instruction in
 * any coroutine of the run raises the error again, so pcall or
 * coroutine.resume inside the script cannot swallow it. Fills err with the
 * message, e.g. "workflows/x.lua:88: instruction budget exceeded (possible
 * infinite loop)" or "memory limit of 64 MiB exceeded". */
bool sandbox_tripped(sandbox *sb, jerr *err);

/* Charges steps of a library function's C loop (where the count hook
 * never fires) to the instruction budget as that many instructions, and
 * checks the wall clock; raises the limit error as the hook would. Call
 * only from a C function the script called. */
void sandbox_charge(lua_State *L, uint64_t steps);

/* sandbox_pattern.c: sets find, match, gmatch and gsub (step-charged
 * versions of Lua's) in the table on top of the stack. */
void sandbox_set_pattern_functions(lua_State *L);

/* Bytes of Lua heap in use by this run. */
size_t sandbox_memory_used(sandbox *sb);

/* Stable text for a value as the sandbox's tostring() gives it (tables,
 * functions and threads get "table: #3"-style per-run numbers, never
 * addresses). Pushes the string. Must run inside a protected call. */
const char *sandbox_tostring(lua_State *L, int idx);

/* The text of an error value (the one at idx) for a host message, never
 * raising: strings and numbers as they are, objects through their
 * __tostring run in a protected call under the run's limits, with a fixed
 * text when that fails. Safe to call outside any protected call. */
void sandbox_error_text(lua_State *L, int idx, char *buf, size_t buflen);

/* The hint given for a name workflows may not use ("(use an activity)"),
 * or NULL when the name is not one of them. lib NULL: a global, else a
 * field of that library ("string", "dump"). */
const char *sandbox_forbidden_hint(const char *lib, const char *name);

/* While replaying, the host can silence side-effect-free output. */
void sandbox_set_replaying(sandbox *sb, bool replaying);

#endif
