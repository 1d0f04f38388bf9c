/*
 * temporal.h - the public face of runtime/temporal: configuration, and gRPC
 * unary calls to Temporal's WorkflowService over HTTP/2 (TLS: libcurl;
 * cleartext: libnghttp2 on plain sockets, tc_h2c.c).
 *
 * Layers, bottom up:
 *  - wire pieces, pure and network-free (exposed for unit tests and the
 *    fuzzer): the length-prefixed message deframer, the response-metadata
 *    parser (grpc-status, grpc-message, grpc-status-details-bin), base64 and
 *    percent decoding;
 *  - tc_config: where and how to connect (address, namespace, TLS, API key);
 *  - tc_conn: the calls of one thread. Calls are started, driven together
 *    by tc_conn_perform (so a 70 s long poll never blocks other calls), and
 *    collected; tc_unary is the blocking form of one call. A tc_conn is
 *    used by one thread at a time; over TLS it is one curl multi handle,
 *    over cleartext a handle on the process-wide connection pool of its
 *    address (shared by all threads: their calls are streams on one TCP
 *    connection, and whichever thread does the I/O completes the others');
 *  - tc_client (tc_client.c): the client operations the CLI's verbs use
 *    (start, signal, query, ...), with failures worded for people;
 *  - tc_pin (tc_pin.c): the script version a run carries in its history;
 *  - tc_worker (tc_worker.c): `jorch worker`, and the in-process worker of
 *    `jorch run --temporal`.
 *
 * Transport facts this is built around:
 *  - Debian's libcurl 7.88.1 cannot reuse a cleartext HTTP/2 prior-knowledge
 *    connection (the second request fails with CURLE_HTTP2), so cleartext
 *    does not go through libcurl; over TLS (ALPN h2) curl multiplexes calls
 *    on shared connections.
 *  - libcurl hands HTTP/2 trailers to the header callback after the body,
 *    so grpc-status is looked for in both header blocks (a "Trailers-Only"
 *    error response has it in the first).
 *  - Secrets (the API key) are never logged, never put in error messages,
 *    and CURLOPT_VERBOSE is never enabled.
 */
#ifndef JORCH_TEMPORAL_H
#define JORCH_TEMPORAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "common/common.h"
#include "engine/engine.h"
#include "google/rpc/status.pb-c.h"
#include "temporal/api/workflowservice/v1/request_response.pb-c.h"

/* ------------------------------------------------------------- limits */

/* Largest message accepted or sent, as sdk-go allows (grpc_dialer.go). */
#define TC_MAX_MESSAGE ((size_t)128 * 1024 * 1024)
/* Longest API key and namespace accepted: both travel in one HTTP/2 header
 * line (tc_transport.c builds each in a buffer of TC_MAX_HEADER bytes). */
#define TC_MAX_API_KEY 8192
#define TC_MAX_NAMESPACE 1000
#define TC_MAX_HEADER 8448
/* Default deadline of an ordinary call, and of a long poll (sdk-go uses
 * 70 s for polls; the server answers empty after ~20 s). */
#define TC_DEFAULT_TIMEOUT_MS 10000
#define TC_LONG_POLL_TIMEOUT_MS 70000

/* gRPC status codes (grpc/grpc doc/statuscodes.md). */
enum {
    TC_OK = 0, TC_CANCELLED = 1, TC_UNKNOWN = 2, TC_INVALID_ARGUMENT = 3,
    TC_DEADLINE_EXCEEDED = 4, TC_NOT_FOUND = 5, TC_ALREADY_EXISTS = 6,
    TC_PERMISSION_DENIED = 7, TC_RESOURCE_EXHAUSTED = 8, TC_FAILED_PRECONDITION = 9,
    TC_ABORTED = 10, TC_OUT_OF_RANGE = 11, TC_UNIMPLEMENTED = 12, TC_INTERNAL = 13,
    TC_UNAVAILABLE = 14, TC_DATA_LOSS = 15, TC_UNAUTHENTICATED = 16,
};
/* "NOT_FOUND" etc.; "code 99" style text for unknown codes (buf >= 16). */
const char *tc_code_name(int code, char *buf, size_t buflen);

/* ------------------------------------------------- wire pieces (pure) */

/* protobuf-c's unpacker recurses once per nested message with no limit, so
 * a hostile response of a few kilobytes could exhaust the stack. This walks
 * the encoded bytes with the descriptors and refuses messages nested deeper
 * than max_depth (or malformed). */
#define TC_MAX_PROTO_DEPTH 100
bool tc_pb_depth_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                    int max_depth);

/* Base64 (standard alphabet; "-_" of the URL alphabet also accepted),
 * padded or unpadded, as grpc-status-details-bin may be either. *out is
 * malloc'ed (never NULL on success). Fails on bad characters or length. */
int tc_base64_decode(const char *in, size_t len, unsigned char **out, size_t *outlen,
                     jerr *err);

/* Percent-decode a grpc-message value into out (NUL-terminated, truncated
 * to outcap-1 bytes). Malformed escapes are kept literally, as the gRPC
 * spec asks (never drop the message). Returns the decoded length. */
size_t tc_percent_decode(const char *in, size_t len, char *out, size_t outcap);

/* Reassembles length-prefixed gRPC messages (1 flag byte, 4-byte big-endian
 * length, payload) from arbitrarily split bytes. Unary responses carry one
 * message: a second one, a compressed flag, or a length above max_message is
 * an error, detected from the 5-byte prefix before anything is allocated. */
typedef struct tc_deframer {
    size_t max_message;
    unsigned char prefix[5];
    size_t prefix_have;
    size_t want;          /* length announced by the current prefix */
    jbuf body;            /* the message being (or already) assembled */
    bool in_body;
    bool have_message;    /* one complete message is in body */
    bool failed;
} tc_deframer;

void tc_deframer_init(tc_deframer *d, size_t max_message);
int tc_deframer_feed(tc_deframer *d, const void *data, size_t len, jerr *err);
/* End of stream: fails if a message is cut short. */
int tc_deframer_finish(tc_deframer *d, jerr *err);
void tc_deframer_free(tc_deframer *d);

/* Frame one message: out gets 5 + len bytes (malloc'ed). */
int tc_frame(const void *msg, size_t len, size_t max_message, unsigned char **out,
             size_t *outlen, jerr *err);

/* Response metadata as header lines arrive ("HTTP/2 200", "name: value",
 * blank separators), both the first header block and the trailers. */
typedef struct tc_meta {
    int http_status;          /* 0 until the status line is seen */
    bool grpc_content_type;   /* content-type application/grpc[+...] */
    bool have_grpc_status;
    int grpc_status;
    char grpc_message[1024];  /* percent-decoded */
    unsigned char *details;   /* decoded grpc-status-details-bin, malloc'ed */
    size_t details_len;
    bool details_bad;         /* present but not valid base64 */
} tc_meta;

void tc_meta_init(tc_meta *m);
/* One header line as libcurl gives it (CRLF optional). Never fails on
 * malformed input: bad values are recorded as such (a non-numeric
 * grpc-status becomes UNKNOWN). */
void tc_meta_line(tc_meta *m, const char *line, size_t len);
/* One header field as HTTP/2 delivers it (name and value apart; ":status"
 * is the status line). Same rules as tc_meta_line. */
void tc_meta_header(tc_meta *m, const char *name, size_t nlen, const char *value, size_t vlen);
void tc_meta_free(tc_meta *m);

/* The outcome of a call. */
typedef struct tc_status {
    int code;                  /* gRPC code; TC_OK on success */
    bool transport;            /* no gRPC status arrived: connect/TLS/timeout failure */
    int curl_code;             /* CURLcode when transport is true (cleartext: the nearest one) */
    bool plaintext_peer;       /* the TLS handshake met a server that does not speak TLS */
    char message[1024];        /* grpc-message, or what went wrong in transport */
    Google__Rpc__Status *details; /* decoded grpc-status-details-bin, or NULL */
} tc_status;

void tc_status_init(tc_status *st);
void tc_status_clear(tc_status *st);  /* frees details, back to OK */
/* The status a finished response carries, from its metadata (grpc-status
 * from headers or trailers; an HTTP error without one is mapped per the gRPC
 * spec: 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED,
 * 429/502/503/504 UNAVAILABLE, else UNKNOWN). */
void tc_status_from_meta(const tc_meta *m, tc_status *st);
/* The first detail whose Any.type_url names desc (".../<full name>"),
 * unpacked (free with protobuf_c_message_free_unpacked), or NULL. */
ProtobufCMessage *tc_status_detail(const tc_status *st, const ProtobufCMessageDescriptor *desc);

/* ------------------------------------------------------------ config */

/* Where and how to connect. A plain struct: fill it from jorch.yaml with
 * tc_config_set, then let tc_config_from_env override (environment wins
 * over the file), then tc_config_check. Strings are malloc'ed and owned. */
typedef struct tc_config {
    char *address;          /* host:port; default 127.0.0.1:7233 */
    char *namespace_;       /* default "default" */
    char *task_queue;       /* default "jira-orchestration" */
    char *api_key;          /* sent as authorization: Bearer; never printed */
    int tls;                /* -1 auto (on with an API key, CA or client cert), 0 off, 1 on */
    char *tls_ca;           /* PEM file of CAs; NULL: the system store */
    char *tls_client_cert;  /* mTLS: PEM certificate and key files */
    char *tls_client_key;
    char *tls_server_name;  /* TLS name (SNI and verification) if not the address host */
    char *identity;         /* worker/client identity; default "<pid>@<host>@jorch" */
} tc_config;

void tc_config_init(tc_config *c);
/* Set one field by its jorch.yaml / snake_case name: address, namespace,
 * task_queue, api_key, tls (true/false/1/0/yes/no/on/off), tls_ca,
 * tls_client_cert, tls_client_key, tls_server_name, identity. value NULL
 * clears it. Unknown names and bad values are JERR_USAGE errors. */
int tc_config_set(tc_config *c, const char *name, const char *value, jerr *err);
/* TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE, TEMPORAL_API_KEY,
 * TEMPORAL_TLS, TEMPORAL_TLS_CA, TEMPORAL_TLS_CLIENT_CERT,
 * TEMPORAL_TLS_CLIENT_KEY, TEMPORAL_TLS_SERVER_NAME; unset or empty
 * variables leave the field alone. */
int tc_config_from_env(tc_config *c, jerr *err);
/* Validate and settle defaults: address form, mTLS cert and key together,
 * files readable, and never an API key in cleartext to a non-loopback host. */
int tc_config_check(tc_config *c, jerr *err);
/* Whether TLS is used after tc_config_check. */
bool tc_config_uses_tls(const tc_config *c);
void tc_config_free(tc_config *c);
/* true for 127.0.0.0/8, ::1 and "localhost". host may carry a port. */
bool tc_address_is_loopback(const char *address);

/* ------------------------------------------------------------- calls */

typedef struct tc_conn tc_conn;
typedef struct tc_call tc_call;

typedef struct tc_call_opts {
    int64_t timeout_ms;   /* per attempt deadline; 0: TC_DEFAULT_TIMEOUT_MS */
    bool retry_safe;      /* retry UNAVAILABLE / RESOURCE_EXHAUSTED / connect failures */
    int max_attempts;     /* 0: 5 */
} tc_call_opts;

/* The configuration is copied (tc_config_check must have passed). */
tc_conn *tc_conn_new(const tc_config *cfg, jerr *err);
/* Frees the connection; calls still in flight are aborted and freed. */
void tc_conn_free(tc_conn *c);
const tc_config *tc_conn_config(const tc_conn *c);

/* Create a call of WorkflowService/<method> and start it (it runs when
 * tc_conn_perform is driven). req is packed at once, so a stack-built
 * request may go out of scope after this returns. */
tc_call *tc_call_start(tc_conn *c, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc,
                       const tc_call_opts *opts, jerr *err);
/* Drive every started call: transfer what can be transferred, wait at most
 * wait_ms (capped at 250 ms) for activity (0: don't wait), start due
 * retries. Returns the
 * number of calls not yet done, or -1 on a curl multi failure. */
int tc_conn_perform(tc_conn *c, int wait_ms, jerr *err);
bool tc_call_done(const tc_call *call);
/* Take the outcome of a done call. On TC_OK *resp is the unpacked response
 * (free with protobuf_c_message_free_unpacked); otherwise *resp is NULL and
 * st says why. Returns st->code == TC_OK ? 0 : -1. */
int tc_call_result(tc_call *call, ProtobufCMessage **resp, tc_status *st);
/* Free a call (aborting it if still running). */
void tc_call_free(tc_call *call);

/* Blocking: start one call and drive the connection until it is done. */
int tc_unary(tc_conn *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, const tc_call_opts *opts,
             ProtobufCMessage **resp, tc_status *st);

/* Connections opened (or attempted) so far for this tc_conn's calls (for
 * tests of reuse). */
long tc_conn_connects(const tc_conn *c);

/* ------------------------------------------------------------ client */

/* The configuration as every jorch command builds it: jorch.yaml's
 * temporal: section ($JORCH_CONFIG, else ./jorch.yaml if present), then the
 * TEMPORAL_* variables (which win), then tc_config_check. On failure cfg is
 * left initialised and empty. Free with tc_config_free. */
int tc_config_load(tc_config *cfg, jerr *err);

/* The message for a failed call, naming the server and what to do.
 * what: the operation in words ("signal 'approve' to"); wid: the workflow
 * id or NULL. Returns -1 with err filled (JERR_BACKEND when the server
 * cannot be reached or is unavailable, JERR_USAGE for refusals). */
int tc_call_error(const tc_config *cfg, const tc_status *st, const char *what, const char *wid, jerr *err);

/* A client on one connection, configured by tc_config_load. Every
 * operation returns 0 or -1 with err filled as tc_call_error words it;
 * messages returned are protobuf-c messages the caller frees with
 * protobuf_c_message_free_unpacked. Not thread-safe. */
typedef struct tc_client tc_client;
tc_client *tc_client_new(jerr *err);
void tc_client_free(tc_client *c);
const tc_config *tc_client_config(const tc_client *c);

typedef struct tc_start_opts {
    const char *workflow_id;   /* NULL: "<type>-<uuid>" */
    const char *workflow_type;
    const char *task_queue;    /* NULL: the configured one */
    Temporal__Api__Common__V1__Payloads *input;
    Temporal__Api__Common__V1__Memo *memo; /* or NULL (the script version: see cli_pin.c) */
} tc_start_opts;
int tc_client_start(tc_client *c, const tc_start_opts *o, char **run_id, jerr *err);
int tc_client_signal(tc_client *c, const char *workflow_id, const char *name,
                     Temporal__Api__Common__V1__Payloads *args, jerr *err);
/* A run whose workflow task keeps failing answers with that failure (from
 * describe and the history) instead of waiting for a worker. */
int tc_client_query(tc_client *c, const char *workflow_id, const char *name,
                    Temporal__Api__Common__V1__Payloads *args, Temporal__Api__Common__V1__Payloads **result,
                    jerr *err);
int tc_client_describe(tc_client *c, const char *workflow_id,
                       Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse **out, jerr *err);
/* All pages (bounded); query is a visibility query or NULL. */
int tc_client_list(tc_client *c, const char *query,
                   Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse **out, jerr *err);
int tc_client_history(tc_client *c, const char *workflow_id, Temporal__Api__History__V1__History **out,
                      jerr *err);
/* Waits up to timeout_ms (<0: forever) for the close event, following a
 * continue-as-new chain to its newest run. */
int tc_client_result(tc_client *c, const char *workflow_id, int64_t timeout_ms,
                     Temporal__Api__History__V1__HistoryEvent **close_event, jerr *err);
int tc_client_cancel(tc_client *c, const char *workflow_id, const char *reason, jerr *err);
int tc_client_terminate(tc_client *c, const char *workflow_id, const char *reason, jerr *err);

/* ------------------------------------------------------ script versions */

/* A version is a bundle (engine_bundle): the workflow script and the
 * modules it requires, named by one SHA-256 over them. It travels in the
 * run's history with its sources: the start memo of `jorch start
 * --temporal` (tc_pin_memo), a `jorch upgrade --temporal` signal
 * (ENGINE_UPGRADE_SIGNAL, valid right after the history it checked), or the
 * worker's own record (a ModifyWorkflowProperties command upserting the
 * same jorch.* memo keys: ENGINE_VERSION_MEMO_PREFIX). The last one wins. */

/* The start memo for SCRIPT.lua (and the modules it requires): jorch.script,
 * jorch.script_sha256, jorch.version_sha256, jorch.script_version (label),
 * jorch.script_source, jorch.modules (with sources), jorch.version_modules. */
Temporal__Api__Common__V1__Memo *tc_pin_memo(const char *path, jerr *err);

/* A run's version as the worker executes it (opaque). */
typedef struct tc_pin_version tc_pin_version;
void tc_pin_version_free(tc_pin_version *v);
const char *tc_pin_version_digest(const tc_pin_version *v);
/* Does the version declare `-- jorch: auto_upgrade`? */
bool tc_pin_version_auto(const tc_pin_version *v);
/* The version the worker's own WF_DIR/TYPE.lua (and its modules) make. */
int tc_pin_own_digest(const char *wf_dir, const char *type, char digest[65], jerr *err);

/* One workflow task. */
typedef struct tc_pin_in {
    const char *wf_dir, *type;
    bool require_known;   /* refuse a version that is not the worker's own */
    bool completes;       /* the task will be completed (not a legacy query): records may be added */
    const char *namespace_, *workflow_id, *run_id;
    void (*log_fn)(void *ud, const char *workflow_id, const char *line);
    void *log_ud;
} tc_pin_in;
typedef struct tc_pin_task {
    engine_run *run;          /* fed with the history */
    engine_output out;        /* what the feed produced */
    /* the commands to send: out's, after the worker's version record when
     * one is due (a closing command stays last); a continue-as-new carries
     * the version in its memo */
    Temporal__Api__Command__V1__Command **commands;
    size_t n_commands;
    Temporal__Api__Command__V1__Command *record;
    tc_pin_version *version;  /* tc_pin_task_run: the version run executes (take it: set NULL) */
    char refused[65];         /* an auto_upgrade version refused for this run, or "" */
    bool nondeterminism;      /* on failure: the replay disagreed with history */
    char said[1600];          /* a line for the worker's log (auto_upgrade), or "" */
    bool owns_run_;           /* internal */
} tc_pin_task;
/* From the run's whole history: decides the version (the last record in
 * it, or the worker's own WF_DIR/TYPE.lua for a run that has none, then
 * recorded), applies --require-known-scripts and auto_upgrade, replays the
 * history on it into a new t->run (the caller takes it: set t->run NULL).
 * 0 with t ready; -1 with err (fail the workflow task with it). Free t
 * with tc_pin_task_free either way. */
int tc_pin_task_run(const tc_pin_in *in, Temporal__Api__History__V1__HistoryEvent **events, size_t n,
                    tc_pin_task *t, jerr *err);
/* A cached run of version v, fed the task's new events (run stays the
 * caller's). */
int tc_pin_task_continue(const tc_pin_in *in, engine_run *run, const tc_pin_version *v,
                         Temporal__Api__History__V1__HistoryEvent **events, size_t n, tc_pin_task *t, jerr *err);
void tc_pin_task_free(tc_pin_task *t);

/* jorch upgrade --temporal: replays the run's history h, and its pending
 * or failed workflow task, against SCRIPT and the modules it requires.
 * Clean: 0 with the ENGINE_UPGRADE_SIGNAL payload (malloc'ed JSON: the
 * version with its sources, checkedThroughEvent). Otherwise -1: JERR_FAILED
 * with the report, JERR_USAGE for a closed run or an unreadable script. */
int tc_pin_upgrade_check(const char *path, const char *workflow_id, const Temporal__Api__History__V1__History *h,
                         char **payload_json, jerr *err);
/* The last event of h an upgrade check covers: the last one before a
 * workflow task at the end (which may be transient: the server shows the
 * attempt in progress of a failing task but records it only if it ends
 * otherwise); the record's checkedThroughEvent. */
int64_t tc_pin_checked_through(const Temporal__Api__History__V1__History *h);
/* Whether the upgrade record checked through event `checked` is in h: 1
 * there and valid (nothing but failed workflow task attempts came after the
 * checked events), -1 there but void, 0 not yet (a run whose task attempt
 * is running gets the signal when the attempt ends). */
int tc_pin_upgrade_landed(const Temporal__Api__History__V1__History *h, int64_t checked);

/* ------------------------------------------------------------ worker */

/* A worker polls one task queue for workflow tasks (replayed with the
 * engine: runtime/engine) and activity tasks (run on an activity host:
 * runtime/activity) until stopped; see docs/temporal.md, "The worker".
 * It logs to stderr ("worker: ..." lines, and the workflows' and
 * activities' own lines), or in run mode prints the embedded runner's
 * progress lines instead. */
typedef struct tc_worker tc_worker;

/* How much the worker does at once, with the Temporal SDKs' names (the
 * worker: section of jorch.yaml, and `jorch worker` flags). */
typedef struct tc_worker_settings {
    int max_concurrent_workflow_task_executions; /* workflow task slots (threads); default 4 */
    int max_concurrent_activity_executions;      /* activity attempts at once (host threads); default 8 */
    int max_concurrent_workflow_task_pollers;    /* default 4 (at most the slots) */
    int max_concurrent_activity_task_pollers;    /* default 2 (at most the slots) */
    int max_cached_workflows;                    /* runs kept for sticky execution; default 1000; 0: none */
    int cache_memory_mb;                         /* Lua heap of the cached runs; default 512 */
    int64_t sticky_schedule_to_start_timeout_ms; /* default 5000 */
    bool disable_eager_activities;               /* never ask for activities in completions; default false */
} tc_worker_settings;
void tc_worker_settings_default(tc_worker_settings *s);
/* One setting by its name (above; sticky_schedule_to_start_timeout takes
 * seconds or a duration like "10s"); source names where the value came
 * from, for the message. JERR_USAGE on an unknown key or a bad value. */
int tc_worker_settings_set(tc_worker_settings *s, const char *key, const char *value, const char *source,
                           jerr *err);
/* The worker: section of jorch.yaml ($JORCH_CONFIG, else ./jorch.yaml if
 * present) over what s holds. */
int tc_worker_settings_load(tc_worker_settings *s, jerr *err);

typedef struct tc_worker_opts {
    const char *workflows_dir;   /* a workflow of type T runs DIR/T.lua; NULL: "workflows" */
    const char *activities_dir;  /* NULL: "activities" */
    const char *task_queue;      /* NULL: the configured one */
    bool require_known_scripts;  /* fail tasks of runs pinned to a script not in workflows_dir */
    bool run_mode;               /* in-process for `jorch run --temporal` */
    bool quiet;                  /* run mode: no progress lines */
    const tc_worker_settings *settings; /* NULL: the defaults, then jorch.yaml's worker: section */
} tc_worker_opts;
/* Loads the configuration (tc_config_load) and activities' jorch.config
 * ($JORCH_HOME or ./.jorch), connects, checks the server (DescribeNamespace:
 * unreachable is JERR_BACKEND, an unknown namespace or refused key
 * JERR_USAGE) and starts polling on threads that block SIGINT and SIGTERM.
 * Start and stop on the main thread (connections are made and freed there:
 * curl's global set-up is not thread-safe). */
tc_worker *tc_worker_start(const tc_worker_opts *o, jerr *err);
const tc_config *tc_worker_config(const tc_worker *w);
const char *tc_worker_task_queue(const tc_worker *w);
/* Run mode: whether a workflow task failed (the first failure's message
 * copied to msg); the worker then polls no more. */
bool tc_worker_task_failed(tc_worker *w, char *msg, size_t cap);
/* Stops polling, gives running activities a grace period, joins, frees. */
void tc_worker_stop(tc_worker *w);
/* A "worker: ..." line on stderr (control characters escaped). */
void tc_worker_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
