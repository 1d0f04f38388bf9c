/*
 * common.h - the public face of runtime/common: errors, bounded buffers,
 * logging, durations and times, hashing, payloads (Lua <-> JSON <->
 * temporal.api.common.v1.Payload) and protojson (Temporal's JSON form of
 * protobuf messages, histories in particular).
 *
 * Conventions used across jorch:
 *  - Functions that can fail return 0 on success and -1 on failure, and fill
 *    a caller-provided jerr with a message that says what failed, on what,
 *    and what to do.
 *  - Every protobuf-c message that jorch builds (or parses from JSON) is
 *    allocated with malloc throughout, so protobuf_c_message_free_unpacked(m,
 *    NULL) frees it whole. Never point a message field at static or
 *    borrowed memory, except proto3 string defaults (protobuf_c_empty_string).
 */
#ifndef JORCH_COMMON_H
#define JORCH_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "temporal/api/common/v1/message.pb-c.h"
#include "temporal/api/history/v1/message.pb-c.h"

struct lua_State;

/* ---------------------------------------------------------------- errors */

/* Error categories; they map onto the CLI's exit codes. */
enum {
    JERR_OK = 0,
    JERR_FAILED = 1,   /* the workflow (or the operation asked for) failed */
    JERR_USAGE = 2,    /* bad input: usage, configuration, malformed files  */
    JERR_BACKEND = 3,  /* cannot reach the backend (store, Temporal)        */
    JERR_INTERNAL = 4, /* out of memory, bug                                */
};

typedef struct jerr {
    int code;
    char msg[1024];
} jerr;

/* Set the error (printf-style); returns -1 so callers can `return jerr_set(...)`.
 * A NULL err is allowed and ignored. */
int jerr_set(jerr *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix an existing message: "<prefix>: <old message>". Returns -1. */
int jerr_prefix(jerr *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int jerr_oom(jerr *err, const char *what);

/* ------------------------------------------------------- bounded buffers */

/* A growable byte buffer with a hard maximum (curl's dynbuf idea): appends
 * past `max` fail instead of growing without bound. data is always
 * NUL-terminated (not counted in len). */
typedef struct jbuf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
} jbuf;

void jbuf_init(jbuf *b, size_t max);
int jbuf_append(jbuf *b, const void *p, size_t n);
int jbuf_puts(jbuf *b, const char *s);
int jbuf_putc(jbuf *b, char c);
int jbuf_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jbuf_reset(jbuf *b);
/* Hand the storage to the caller (NUL-terminated; free() it); the buffer is
 * left empty. Returns NULL only if nothing was ever allocated and malloc fails. */
char *jbuf_take(jbuf *b, size_t *len);
void jbuf_free(jbuf *b);

/* Read a whole file, refusing files larger than max. *out is malloc'ed and
 * NUL-terminated. */
int file_read_all(const char *path, size_t max, char **out, size_t *len, jerr *err);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool size_add(size_t a, size_t b, size_t *out) {
    if (a > SIZE_MAX - b) return false;
    *out = a + b;
    return true;
}
static inline bool size_mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

/* Replaces a protobuf-c string field with a malloc'ed copy of value,
 * freeing the old one unless it is protobuf-c's shared empty default.
 * Returns -1 (field unchanged) on allocation failure. */
int pb_str_replace(char **field, const char *value);

/* malloc'ed copies; NULL on allocation failure. */
char *jstrdup(const char *s);
char *jstrndup(const char *s, size_t n);

/* ------------------------------------------------------- ids and text */

/* Length of the well-formed UTF-8 character at s (1..4; RFC 3629: no
 * overlongs, surrogates or code points above U+10FFFF), 0 if there is none. */
size_t utf8_char_len(const char *s, size_t n);

/* Temporal's default limit (limit.maxIDLength) on workflow ids, signal,
 * query and activity names, task queues. */
#define ID_MAX_BYTES 1000

/* Checks an id or name the way Temporal does (not empty, at most max
 * bytes, valid UTF-8) and also refuses control characters (C0, DEL, C1),
 * which would forge lines in listings and logs or reach a terminal as
 * escape sequences. `what` names it in the message ("workflow id"); the
 * message shows the value escaped (text_escape). JERR_USAGE. */
int id_check(const char *what, const char *s, size_t max, jerr *err);

/* Appends s[0..len) for a terminal or a log line: control characters,
 * DEL, C1 controls and bytes that are not UTF-8 become \n, \t, \r, \xNN
 * or \u0085, so no byte sequence can move the cursor, recolour or forge
 * a line (text for people: a backslash stays as it is). keep_lines keeps
 * '\n' and '\t' (multi-line messages). Returns -1 when out is full. */
int text_escape(jbuf *out, const char *s, size_t len, bool keep_lines);

/* Free text (a reason): only valid UTF-8 is required. JERR_USAGE. */
int text_check_utf8(const char *what, const char *s, jerr *err);

/* A file name for an id (log files, artifacts): ASCII letters, digits,
 * '.', '_' and '-' are kept, every other byte becomes %XX, and so does a
 * leading '.', so the name is never "." or "..", never hidden, never a path,
 * and two ids never share it. Returns -1 (out set to "") when it does not fit. */
int id_file_name(const char *id, char *out, size_t cap);

/* ---------------------------------------------------------------- logging */

enum { JLOG_ERROR, JLOG_WARN, JLOG_INFO, JLOG_DEBUG };
/* Level from JORCH_LOG (error|warn|info|debug), default warn. Messages go
 * to stderr as "jorch: ..." lines. Never pass secrets to these. */
void jlog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jlog_set_level(int level);
int jlog_level(void);

/* ------------------------------------------------------ durations, times */

/* Durations are int64 nanoseconds. Accepted: numbers of seconds (Lua
 * number) and strings "1.5", "500ms", "5s", "10 sec", "2m", "2 minutes",
 * "2h", "2 hours", "7d", "7 days", and combinations ("1h30m"). */
int duration_parse(const char *s, int64_t *nanos, jerr *err);
/* Seconds (may be fractional) to nanoseconds, refusing negatives, NaN and
 * values that overflow. */
int duration_from_seconds(double secs, int64_t *nanos, jerr *err);
/* "1.5s"-style text as protojson prints Durations. buf >= 32 bytes. */
void duration_format(int64_t nanos, char *buf, size_t buflen);
/* Human text for messages: "7 days", "2h30m", "500ms". buf >= 32. */
void duration_human(int64_t nanos, char *buf, size_t buflen);

/* Wall clock in nanoseconds since the Unix epoch (backends only: workflow
 * code gets time from history). */
int64_t time_now_nanos(void);
/* RFC 3339 UTC with 0/3/6/9 fraction digits <-> nanoseconds since epoch. */
int time_parse_rfc3339(const char *s, int64_t *nanos, jerr *err);
void time_format_rfc3339(int64_t nanos, char *buf, size_t buflen); /* buf >= 40 */

/* Duration / Timestamp messages (malloc'ed, see conventions above). */
Google__Protobuf__Duration *pb_duration_new(int64_t nanos);
Google__Protobuf__Timestamp *pb_timestamp_new(int64_t nanos);
int64_t pb_duration_nanos(const Google__Protobuf__Duration *d);   /* NULL -> 0 */
int64_t pb_timestamp_nanos(const Google__Protobuf__Timestamp *t); /* NULL -> 0 */

/* ---------------------------------------------------------------- hashing */

/* SHA-256 of data as 64 lowercase hex characters plus NUL. */
void sha256_hex(const void *data, size_t len, char out[65]);
/* Random UUIDv4 text (36 chars + NUL) from the OS CSPRNG; for ids made by
 * backends, never inside workflow code. */
int uuid_random(char out[37]);

/* --------------------------------------------------------------- payloads */

/* Limits on conversions between Lua values, JSON and payloads. A zero field
 * means its default; max_depth is capped at 1000 (the converters recurse). */
typedef struct payload_limits {
    size_t max_depth;  /* nesting of tables/arrays; default 64          */
    size_t max_bytes;  /* encoded JSON size; default 4 MiB              */
} payload_limits;
extern const payload_limits payload_default_limits;

/* Lua value at idx -> canonical JSON text appended to out: object keys
 * sorted by byte order, integers as integers, floats in shortest round-trip
 * form, no whitespace. Tables whose keys are exactly 1..n are arrays; other
 * tables must have only string keys and become objects; an empty table is
 * {} unless its metatable has __jsontype = "array". Uses raw access only
 * (no metamethods run). Errors name the path of the offending value
 * (e.g. "$.phases[3].fn: a function cannot be converted to JSON") for
 * functions, userdata, threads, cycles, NaN/inf, invalid UTF-8, mixed or
 * sparse tables, too deep, too large. */
int payload_lua_to_json(struct lua_State *L, int idx, const payload_limits *lim,
                        jbuf *out, jerr *err);
/* JSON text -> Lua value pushed on L's stack (objects and arrays become
 * tables; JSON null becomes nil; integral numbers without fraction or
 * exponent that fit int64 become integers). Checks the stack, depth, size. */
int payload_json_to_lua(struct lua_State *L, const char *json, size_t len,
                        const payload_limits *lim, jerr *err);

/* Lua value -> Payload: nil -> binary/null, otherwise json/plain with the
 * canonical JSON. */
Temporal__Api__Common__V1__Payload *payload_from_lua(struct lua_State *L, int idx,
                                                     const payload_limits *lim, jerr *err);
/* Payload -> Lua value pushed on the stack. Understands binary/null (nil),
 * json/plain, binary/plain (a Lua string), json/protobuf (decoded JSON);
 * anything else is an error naming the encoding. */
int payload_to_lua(struct lua_State *L, const Temporal__Api__Common__V1__Payload *p,
                   const payload_limits *lim, jerr *err);
/* Lua values at stack slots first..first+n-1 -> Payloads (one per value). */
Temporal__Api__Common__V1__Payloads *payloads_from_lua(struct lua_State *L, int first, int n,
                                                       const payload_limits *lim, jerr *err);
/* Pushes each payload; *pushed gets the count (0 for NULL/empty). */
int payloads_to_lua(struct lua_State *L, const Temporal__Api__Common__V1__Payloads *ps,
                    const payload_limits *lim, int *pushed, jerr *err);

/* JSON text <-> Payload without Lua (CLI input/output). payload_from_json
 * re-encodes canonically; "null" gives binary/null. */
Temporal__Api__Common__V1__Payload *payload_from_json(const char *json, size_t len, jerr *err);
/* One command-line argument (of a workflow, signal, query or activity) as a
 * payload: JSON when it parses, otherwise the text as a string (PROJ-123).
 * An argument that starts like a JSON object, array or string ({ [ ") must
 * parse: '{autoProceed: false}' passed on as text would silently change
 * what runs. NULL with err (JERR_USAGE) when it cannot be used; *looks_json
 * is then true when that is why, and err says so with the parse position
 * ("starts with '{' but is not valid JSON: at line 1, column 2: ..."), for
 * the caller to put after the argument's name. */
Temporal__Api__Common__V1__Payload *payload_from_arg(const char *arg, bool *looks_json, jerr *err);
/* Payload as JSON text appended to out: json/plain data as is, binary/null
 * as null, binary/plain as a JSON string if UTF-8 else an error. */
int payload_to_json(const Temporal__Api__Common__V1__Payload *p, jbuf *out, jerr *err);
/* Payloads as a JSON array, or the single value if there is exactly one
 * payload and single_unwrap is true. NULL or empty -> null. */
int payloads_to_json(const Temporal__Api__Common__V1__Payloads *ps, bool single_unwrap,
                     jbuf *out, jerr *err);
/* A Payload with encoding json/plain and the given (already valid) JSON. */
Temporal__Api__Common__V1__Payload *payload_new_json(const char *json, size_t len);
Temporal__Api__Common__V1__Payloads *payloads_new(void);
int payloads_add(Temporal__Api__Common__V1__Payloads *ps, Temporal__Api__Common__V1__Payload *p);

/* -------------------------------------------------------------- protojson */

/* Temporal's JSON form of protobuf messages (what `temporal workflow show
 * --output json` prints), generic over protobuf-c descriptors: lowerCamelCase
 * names, enums by full name, int64 as strings, bytes as base64, Duration
 * "1.5s", Timestamp RFC 3339, maps as objects, default values omitted.
 * The reader also accepts proto field names, PascalCase legacy enum names
 * ("WorkflowExecutionStarted", "Normal"), numeric enums, int64 as numbers,
 * and ignores unknown fields. Errors name the JSON path. */
ProtobufCMessage *protojson_parse(const ProtobufCMessageDescriptor *desc,
                                  const char *json, size_t len, jerr *err);
/* indent 0: compact; >0: pretty-printed with that many spaces. */
int protojson_write(const ProtobufCMessage *msg, int indent, jbuf *out, jerr *err);
/* PROTOJSON_SHORTHAND: payloads as the official CLI prints them by default
 * (api-go's "shorthand"): Payloads as an array of values, a json/plain
 * Payload as its JSON value, binary/null as null, json/protobuf as its
 * object with "_protoMessageType"; other encodings in the standard form.
 * The reader accepts both forms. */
#define PROTOJSON_SHORTHAND 1u
int protojson_write_ex(const ProtobufCMessage *msg, int indent, unsigned flags, jbuf *out, jerr *err);

/* A history file: canonical {"events":[...]}, or the older form, an array
 * of histories [{"events":[...]}] (the first is taken). Checks that event
 * ids start at 1 and increase by one, and that each event's type matches its
 * attributes. */
Temporal__Api__History__V1__History *protojson_parse_history(const char *json, size_t len,
                                                              jerr *err);
int protojson_read_history_file(const char *path, Temporal__Api__History__V1__History **out,
                                jerr *err);

/* Enum helpers shared with the engine's messages. */
const char *event_type_name(int event_type);   /* "ActivityTaskScheduled" style */
const char *command_type_name(int command_type); /* "ScheduleActivityTask" style */

/* ----------------------------------------------------------------- config */

/* jorch.yaml (runtime/common/config.c): YAML -> canonical JSON text appended
 * to json_out. Mappings (scalar keys, no duplicates), sequences and scalars;
 * plain scalars typed as in YAML 1.2's core schema (null, true/false,
 * integers, floats), quoted and block scalars are strings; an empty file is
 * {}. Aliases, more than one document, nesting deeper than 64 and inputs over
 * 1 MiB are refused. Errors read "file:line:column: problem". */
int config_yaml_to_json(const char *buf, size_t len, const char *name, jbuf *json_out, jerr *err);
int config_load_yaml_as_json(const char *path, jbuf *json_out, jerr *err);
/* Where jorch.yaml is: $JORCH_CONFIG if set (it must be readable), else
 * ./jorch.yaml if it exists. Returns 1 with *path set, 0 when there is no
 * configuration file, -1 (JERR_USAGE) when JORCH_CONFIG names a file that
 * cannot be read. */
int config_locate(const char **path, jerr *err);
/* What activities see as jorch.config: the configuration file as JSON, with
 * "home" set to the store directory unless the file sets it. out is
 * initialised here; free it with jbuf_free even on failure. */
int config_activity_json(const char *home, jbuf *out, jerr *err);
/* Sets one key of a section from its text; source names the key where it
 * was found ("jorch.yaml: limits.memory_mb"), for the message. */
typedef int (*config_setter)(void *target, const char *key, const char *value, const char *source, jerr *err);
/* A section of jorch.yaml whose keys are set one by one from text. */
typedef struct config_section {
    const char *name;         /* "limits" for limits: */
    const char *mapping_hint; /* the end of "PATH: NAME: must be a mapping ..." */
    const char *value_hint;   /* the end of "PATH: NAME.KEY must be ...": what a value may be */
    bool booleans;            /* true/false reach set as "true"/"false"; else they are refused */
    config_setter set;
} config_section;
/* Hands each key of the section sec->name of the configuration file at
 * path to sec->set, in the file's order: a number as "%.17g" text, a string
 * as it is, a key with no value skipped. A missing or empty section sets
 * nothing. A section that is not a mapping, or a value of another type, is
 * JERR_USAGE with the hints; the first failure stops. */
int config_section_apply(const char *path, const config_section *sec, void *target, jerr *err);

#endif
