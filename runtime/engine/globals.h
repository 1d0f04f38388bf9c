/*
 * globals.h - engine-internal: the global names a workflow script reads and
 * writes, found by compiling it (never running it); `jorch check` uses
 * them to report uses of `os`, `io` and other names the sandbox does not
 * have, with their lines, before a run reaches them.
 */
#ifndef JORCH_ENGINE_GLOBALS_H
#define JORCH_ENGINE_GLOBALS_H

#include <stddef.h>

#include "common/common.h"

enum {
    ENGINE_GLOBAL_READ = 1,    /* name: a global read */
    ENGINE_GLOBAL_WRITE,       /* name: a global assigned */
    ENGINE_GLOBAL_LIB_FIELD,   /* lib.name read right after the global lib (string.dump) */
    ENGINE_GLOBAL_FIELD_WRITE, /* t.name = v for some table t (maybe _G) */
    ENGINE_GLOBAL_ENV_VALUE,   /* _ENV used as a value: globals may be used out of sight */
};
#define ENGINE_GLOBAL_NAME_MAX 128 /* longer names are skipped */

typedef void (*engine_globals_fn)(void *ud, int kind, const char *name, const char *lib, int line);

/* Calls fn for each use in the text chunk src (chunkname names it in
 * errors). Returns 0 when scanned, -1 when src does not compile (err set),
 * 1 when this Lua's compiled form is not one the scanner reads (fn was not
 * called: the caller reports nothing). */
int engine_globals_scan(const char *chunkname, const char *src, size_t len, engine_globals_fn fn, void *ud,
                        jerr *err);

#endif
