/*
 * protojson.c - Temporal's JSON form of protobuf messages, generic over
 * protobuf-c descriptors.
 *
 * Reading is a strict recursive-descent JSON parser that fills messages
 * directly (no intermediate tree). Numbers keep their text, so 64-bit ids
 * are converted exactly; strings must be valid UTF-8; nesting is bounded.
 * Writing follows api-go's protojson: lowerCamelCase names, enums by full
 * name, 64-bit integers as strings, bytes as padded base64, Duration,
 * Timestamp and wrappers in their JSON forms, default values omitted.
 *
 * Deliberate differences from upstream protojson:
 *  - Fields are written in field-number order (protobuf-c's order), not in
 *    declaration order.
 *  - google.protobuf.Any: protobuf-c has no type registry, so an Any is
 *    written as {"@type": "<url>", "value": "<base64 of the packed bytes>"}
 *    and only that form is read. Any appears in protocol messages and
 *    status details, never in history events.
 *  - json_name options are invisible through protobuf-c: the JSON name is
 *    always lowerCamelCase of the proto name (true for all Temporal protos).
 *  - Unknown enum names are dropped (the field stays unset), as sdk-go's
 *    HistoryFromJSON does with DiscardUnknown.
 *  - Duration and Timestamp are converted here rather than through util.c's
 *    int64-nanosecond helpers, because protojson's ranges (+-10000 years of
 *    Duration, years 1..9999 of Timestamp) do not fit int64 nanoseconds.
 *  - Floating-point text is converted with strtod, which assumes the "C"
 *    LC_NUMERIC locale (jorch never calls setlocale for numbers).
 */
#include "common/common.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "temporal/api/common/v1/message.pb-c.h"
#include "temporal/api/enums/v1/command_type.pb-c.h"
#include "temporal/api/enums/v1/event_type.pb-c.h"

#define PJ_MAX_DEPTH 100
#define PJ_MAX_FILE ((size_t)256 * 1024 * 1024)
/* protojson limits: Duration +-10000 years, Timestamp 0001-01-01..9999-12-31. */
#define PJ_DURATION_MAX_SECS INT64_C(315576000000)
#define PJ_TS_MIN_SECS INT64_C(-62135596800)
#define PJ_TS_MAX_SECS INT64_C(253402300799)

/* ------------------------------------------------------------ JSON paths */

/* One step of the path to the value being read or written: an object key
 * (camel: render the proto name as lowerCamelCase) or an array index. */
typedef struct pj_seg {
    const char *name; /* NULL: an index */
    size_t nlen;
    size_t index;
    bool camel;
} pj_seg;

/* Depth is bounded, so the stack is too; n may exceed the stored steps only
 * if a caller misbehaves, and then the path is shown truncated. */
typedef struct pj_path {
    pj_seg seg[PJ_MAX_DEPTH + 8];
    size_t n;
} pj_path;

static void path_push_name(pj_path *p, const char *name, size_t nlen, bool camel) {
    if (p->n < sizeof p->seg / sizeof p->seg[0]) {
        p->seg[p->n].name = name;
        p->seg[p->n].nlen = nlen;
        p->seg[p->n].index = 0;
        p->seg[p->n].camel = camel;
    }
    p->n++;
}

static void path_push_index(pj_path *p, size_t index) {
    if (p->n < sizeof p->seg / sizeof p->seg[0]) {
        p->seg[p->n].name = NULL;
        p->seg[p->n].nlen = 0;
        p->seg[p->n].index = index;
        p->seg[p->n].camel = false;
    }
    p->n++;
}

static void path_pop(pj_path *p) {
    if (p->n > 0) p->n--;
}

/* Path as text ("events[12].activityTaskScheduledEventAttributes.input");
 * bytes that are not printable ASCII are shown as '?' so error messages
 * stay clean whatever the input held. */
static void path_render(const pj_path *p, char *buf, size_t buflen) {
    size_t o = 0;
    size_t n = p->n < sizeof p->seg / sizeof p->seg[0] ? p->n : sizeof p->seg / sizeof p->seg[0];
    buf[0] = '\0';
    for (size_t i = 0; i < n && o + 1 < buflen; i++) {
        const pj_seg *s = &p->seg[i];
        if (!s->name) {
            int k = snprintf(buf + o, buflen - o, "[%zu]", s->index);
            if (k < 0 || (size_t)k >= buflen - o) break;
            o += (size_t)k;
            continue;
        }
        if (i > 0 && o + 1 < buflen) buf[o++] = '.';
        bool up = false;
        for (size_t j = 0; j < s->nlen && o + 1 < buflen; j++) {
            char c = s->name[j];
            if (s->camel && c == '_') {
                up = true;
                continue;
            }
            if (up && c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
            up = false;
            buf[o++] = (c >= 0x20 && c < 0x7f) ? c : '?';
        }
        buf[o] = '\0';
    }
    if (o < buflen) buf[o] = '\0';
}

/* ---------------------------------------------------------- small helpers */

static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_upper(int c) { return c >= 'A' && c <= 'Z'; }
static bool is_lower(int c) { return c >= 'a' && c <= 'z'; }
static char to_upper(char c) { return is_lower(c) ? (char)(c - 'a' + 'A') : c; }
static char to_lower(char c) { return is_upper(c) ? (char)(c - 'A' + 'a') : c; }

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if
 * invalid: no overlongs, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        if (n < 3 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80) return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        if (n < 4 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

/* Length of a JSON number at s (RFC 8259 grammar), 0 if there is none. */
static size_t number_len(const char *s, size_t n) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n || !is_digit(s[i])) return 0;
    if (s[i] == '0') {
        i++;
    } else {
        while (i < n && is_digit(s[i])) i++;
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i])) return 0;
        while (i < n && is_digit(s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !is_digit(s[i])) return 0;
        while (i < n && is_digit(s[i])) i++;
    }
    return i;
}

enum { INT_OK = 0, INT_NOT_INTEGRAL = -1, INT_TOO_BIG = -2 };

/* Exact integer value of a grammatical JSON number ("12", "1.2e1", "-0"):
 * the decimal point is moved by the exponent on the digit string itself, so
 * nothing goes through double. */
static int int_from_number(const char *s, size_t n, bool *neg, uint64_t *mag) {
    size_t i = 0;
    *neg = false;
    *mag = 0;
    if (i < n && s[i] == '-') {
        *neg = true;
        i++;
    }
    const char *ip = s + i;
    size_t il = 0;
    while (i < n && is_digit(s[i])) {
        i++;
        il++;
    }
    const char *fp = NULL;
    size_t fl = 0;
    if (i < n && s[i] == '.') {
        i++;
        fp = s + i;
        while (i < n && is_digit(s[i])) {
            i++;
            fl++;
        }
    }
    long long exp = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        if (i < n && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
        while (i < n && is_digit(s[i])) {
            /* Cap: beyond this every non-zero value overflows or vanishes. */
            if (exp < 1000000) exp = exp * 10 + (s[i] - '0');
            i++;
        }
        if (eneg) exp = -exp;
    }
    /* Digits d[0..il+fl) with the point after il+exp. */
    if (il > (size_t)INT64_MAX / 4 || fl > (size_t)INT64_MAX / 4) return INT_TOO_BIG;
    long long point = (long long)il + exp;
    size_t total = il + fl;
    uint64_t v = 0;
    for (size_t k = 0; k < total; k++) {
        unsigned d = (unsigned)((k < il ? ip[k] : fp[k - il]) - '0');
        if ((long long)k < point) {
            if (v > (UINT64_MAX - d) / 10) return INT_TOO_BIG;
            v = v * 10 + d;
        } else if (d != 0) {
            return INT_NOT_INTEGRAL;
        }
    }
    if (v != 0) {
        for (long long k = (long long)total; k < point; k++) {
            if (v > UINT64_MAX / 10) return INT_TOO_BIG;
            v *= 10;
        }
    }
    *mag = v;
    return INT_OK;
}

/* "EventType" + "_" + "WorkflowExecutionStarted" -> "EVENT_TYPE_WORKFLOW_
 * EXECUTION_STARTED": underscores at lower->upper, acronym->word and
 * letter<->digit boundaries, like the strcase ToScreamingSnake api-go uses
 * for legacy enum names. malloc'ed; NULL on allocation failure. */
static char *screaming_snake(const char *a, const char *b, size_t blen) {
    size_t alen = strlen(a), n, cap;
    if (!size_add(alen, blen, &n) || !size_add(n, 1, &n) || !size_mul(n, 2, &cap)) return NULL;
    char *in = malloc(n + 1);
    char *out = malloc(cap + 1);
    if (!in || !out) {
        free(in);
        free(out);
        return NULL;
    }
    memcpy(in, a, alen);
    in[alen] = '_';
    memcpy(in + alen + 1, b, blen);
    in[n] = '\0';
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '_' || c == '-' || c == ' ' || c == '.') {
            if (o > 0 && out[o - 1] != '_') out[o++] = '_';
            continue;
        }
        if (i > 0 && o > 0 && out[o - 1] != '_') {
            char p = in[i - 1], nx = in[i + 1];
            bool alpha_p = is_upper(p) || is_lower(p), alpha_c = is_upper(c) || is_lower(c);
            if (((is_lower(p) || is_digit(p)) && is_upper(c)) ||
                (is_upper(p) && is_upper(c) && is_lower(nx)) || (alpha_p && is_digit(c)) ||
                (is_digit(p) && alpha_c))
                out[o++] = '_';
        }
        out[o++] = to_upper(c);
    }
    out[o] = '\0';
    free(in);
    return out;
}

/* lowerCamelCase JSON name of a proto field name (protoc's ToJsonName)
 * into buf; returns the length, or 0 if buf is too small. */
static size_t camel_name(const char *name, char *buf, size_t buflen) {
    size_t o = 0;
    bool up = false;
    for (const char *p = name; *p; p++) {
        if (*p == '_') {
            up = true;
            continue;
        }
        if (o + 1 >= buflen) return 0;
        buf[o++] = up ? to_upper(*p) : *p;
        up = false;
    }
    buf[o] = '\0';
    return o;
}

/* Does a JSON key name this proto field, by its camel or its proto name? */
static bool key_names_field(const char *name, const char *key, size_t klen) {
    size_t i = 0;
    bool up = false, camel_ok = true;
    for (const char *p = name; *p; p++) {
        if (*p == '_') {
            up = true;
            continue;
        }
        char c = up ? to_upper(*p) : *p;
        up = false;
        if (i >= klen || key[i] != c) {
            camel_ok = false;
            break;
        }
        i++;
    }
    if (camel_ok && i == klen) return true;
    return strlen(name) == klen && memcmp(name, key, klen) == 0;
}

static const ProtobufCFieldDescriptor *field_by_key(const ProtobufCMessageDescriptor *d,
                                                    const char *key, size_t klen) {
    for (unsigned i = 0; i < d->n_fields; i++)
        if (key_names_field(d->fields[i].name, key, klen)) return &d->fields[i];
    return NULL;
}

/* protobuf-c does not flag map entries; a map field is a repeated message
 * whose type is a nested "...Entry" with exactly key = 1 and value = 2. */
static bool field_is_map(const ProtobufCFieldDescriptor *f) {
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE) return false;
    const ProtobufCMessageDescriptor *d = f->descriptor;
    size_t sl = strlen(d->short_name);
    if (sl < 5 || strcmp(d->short_name + sl - 5, "Entry") != 0 || d->n_fields != 2) return false;
    const ProtobufCFieldDescriptor *k = protobuf_c_message_descriptor_get_field(d, 1);
    const ProtobufCFieldDescriptor *v = protobuf_c_message_descriptor_get_field(d, 2);
    return k && v && strcmp(k->name, "key") == 0 && strcmp(v->name, "value") == 0 &&
           k->label != PROTOBUF_C_LABEL_REPEATED && v->label != PROTOBUF_C_LABEL_REPEATED &&
           k->type != PROTOBUF_C_TYPE_MESSAGE && k->type != PROTOBUF_C_TYPE_BYTES &&
           k->type != PROTOBUF_C_TYPE_FLOAT && k->type != PROTOBUF_C_TYPE_DOUBLE &&
           k->type != PROTOBUF_C_TYPE_ENUM;
}

/* Size of one element of a repeated field of this type in protobuf-c. */
static size_t elem_size(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 8;
}

typedef enum { WKT_NONE, WKT_DURATION, WKT_TIMESTAMP, WKT_WRAPPER, WKT_ANY } wkt_kind;

static wkt_kind wkt_of(const ProtobufCMessageDescriptor *d) {
    static const char *const wrappers[] = {"DoubleValue", "FloatValue",  "Int64Value",
                                           "UInt64Value", "Int32Value",  "UInt32Value",
                                           "BoolValue",   "StringValue", "BytesValue"};
    if (strncmp(d->name, "google.protobuf.", 16) != 0) return WKT_NONE;
    const char *n = d->name + 16;
    if (strcmp(n, "Duration") == 0) return WKT_DURATION;
    if (strcmp(n, "Timestamp") == 0) return WKT_TIMESTAMP;
    if (strcmp(n, "Any") == 0) return WKT_ANY;
    for (size_t i = 0; i < sizeof wrappers / sizeof wrappers[0]; i++)
        if (strcmp(n, wrappers[i]) == 0 && d->n_fields == 1) return WKT_WRAPPER;
    return WKT_NONE;
}

static ProtobufCMessage *msg_new(const ProtobufCMessageDescriptor *d) {
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (m) d->message_init(m);
    return m;
}

/* Map entries order by key: bytewise for strings, numerically otherwise
 * (api-go's GenericKeyOrder), so parse and write are deterministic. */
static int entry_cmp(const void *pa, const void *pb) {
    const ProtobufCMessage *a = *(const ProtobufCMessage *const *)pa;
    const ProtobufCMessage *b = *(const ProtobufCMessage *const *)pb;
    const ProtobufCFieldDescriptor *kf = protobuf_c_message_descriptor_get_field(a->descriptor, 1);
    const char *ka = (const char *)a + kf->offset, *kb = (const char *)b + kf->offset;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *sa = *(char *const *)ka, *sb = *(char *const *)kb;
        return strcmp(sa ? sa : "", sb ? sb : "");
    }
    case PROTOBUF_C_TYPE_BOOL: {
        int x = *(const protobuf_c_boolean *)ka != 0, y = *(const protobuf_c_boolean *)kb != 0;
        return (x > y) - (x < y);
    }
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: {
        int32_t x = *(const int32_t *)ka, y = *(const int32_t *)kb;
        return (x > y) - (x < y);
    }
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: {
        uint32_t x = *(const uint32_t *)ka, y = *(const uint32_t *)kb;
        return (x > y) - (x < y);
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: {
        int64_t x = *(const int64_t *)ka, y = *(const int64_t *)kb;
        return (x > y) - (x < y);
    }
    default: {
        uint64_t x = *(const uint64_t *)ka, y = *(const uint64_t *)kb;
        return (x > y) - (x < y);
    }
    }
}

/* ------------------------------------------------- Duration and Timestamp */

static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* n decimal digits at s (all must be digits). */
static bool digits(const char *s, size_t n, int *out) {
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i])) return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Fraction of 1..9 digits after a '.', scaled to nanoseconds. */
static size_t parse_fraction(const char *s, size_t n, int32_t *nanos) {
    size_t i = 0;
    int32_t v = 0;
    while (i < n && i < 9 && is_digit(s[i])) v = v * 10 + (s[i++] - '0');
    if (i == 0 || (i < n && is_digit(s[i]))) return 0;
    for (size_t k = i; k < 9; k++) v *= 10;
    *nanos = v;
    return i;
}

/* "[-]S[.F]s" with up to 9 fraction digits, within +-10000 years. */
static bool duration_from_text(const char *s, size_t n, int64_t *secs, int32_t *nanos) {
    size_t i = 0;
    bool neg = false;
    if (i < n && s[i] == '-') {
        neg = true;
        i++;
    }
    int64_t v = 0;
    size_t nd = 0;
    while (i < n && is_digit(s[i])) {
        if (v > PJ_DURATION_MAX_SECS) return false;
        v = v * 10 + (s[i++] - '0');
        nd++;
    }
    if (nd == 0 || v > PJ_DURATION_MAX_SECS) return false;
    int32_t ns = 0;
    if (i < n && s[i] == '.') {
        i++;
        size_t k = parse_fraction(s + i, n - i, &ns);
        if (k == 0) return false;
        i += k;
    }
    if (i + 1 != n || s[i] != 's') return false;
    *secs = neg ? -v : v;
    *nanos = neg ? -ns : ns;
    return true;
}

/* protojson Duration text, 0/3/6/9 fraction digits; false if invalid. */
static bool duration_to_text(int64_t secs, int32_t nanos, char *buf, size_t buflen) {
    if (secs < -PJ_DURATION_MAX_SECS || secs > PJ_DURATION_MAX_SECS) return false;
    if (nanos <= -1000000000 || nanos >= 1000000000) return false;
    if ((secs > 0 && nanos < 0) || (secs < 0 && nanos > 0)) return false;
    bool neg = secs < 0 || nanos < 0;
    uint64_t as = (uint64_t)(secs < 0 ? -secs : secs);
    uint32_t an = (uint32_t)(nanos < 0 ? -nanos : nanos);
    char frac[16] = "";
    if (an % 1000000 == 0) {
        if (an) snprintf(frac, sizeof frac, ".%03" PRIu32, an / 1000000);
    } else if (an % 1000 == 0) {
        snprintf(frac, sizeof frac, ".%06" PRIu32, an / 1000);
    } else {
        snprintf(frac, sizeof frac, ".%09" PRIu32, an);
    }
    snprintf(buf, buflen, "%s%" PRIu64 "%ss", neg ? "-" : "", as, frac);
    return true;
}

static int days_in_month(int64_t y, int m) {
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.F{1,9}](Z|+HH:MM|-HH:MM), within years
 * 0001..9999 after the offset is applied. */
static bool timestamp_from_text(const char *s, size_t n, int64_t *secs, int32_t *nanos) {
    int y, mo, d, h, mi, se;
    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':')
        return false;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
        !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &se))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59)
        return false;
    size_t i = 19;
    int32_t ns = 0;
    if (s[i] == '.') {
        i++;
        size_t k = parse_fraction(s + i, n - i, &ns);
        if (k == 0) return false;
        i += k;
    }
    int64_t off = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        int oh, om;
        if (n - i < 6 || s[i + 3] != ':' || !digits(s + i + 1, 2, &oh) ||
            !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        off = (int64_t)oh * 3600 + om * 60;
        if (s[i] == '-') off = -off;
        i += 6;
    } else {
        return false;
    }
    if (i != n) return false;
    int64_t v = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
    if (v < PJ_TS_MIN_SECS || v > PJ_TS_MAX_SECS) return false;
    *secs = v;
    *nanos = ns;
    return true;
}

static bool timestamp_to_text(int64_t secs, int32_t nanos, char *buf, size_t buflen) {
    if (secs < PJ_TS_MIN_SECS || secs > PJ_TS_MAX_SECS || nanos < 0 || nanos >= 1000000000)
        return false;
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    char frac[16] = "";
    if (nanos % 1000000 == 0) {
        if (nanos) snprintf(frac, sizeof frac, ".%03" PRId32, nanos / 1000000);
    } else if (nanos % 1000 == 0) {
        snprintf(frac, sizeof frac, ".%06" PRId32, nanos / 1000);
    } else {
        snprintf(frac, sizeof frac, ".%09" PRId32, nanos);
    }
    snprintf(buf, buflen, "%04d-%02d-%02dT%02d:%02d:%02d%sZ", (int)y, m, d, (int)(rem / 3600),
             (int)(rem / 60 % 60), (int)(rem % 60), frac);
    return true;
}

/* ---------------------------------------------------------------- base64 */

static int b64_value(unsigned char c, bool url) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (url ? '-' : '+')) return 62;
    if (c == (url ? '_' : '/')) return 63;
    return -1;
}

/* Standard or URL-safe alphabet (not mixed); padding optional, but only at
 * the end of a length that is a multiple of 4 (Go's Std vs RawStd rule). */
static bool b64_decode(const char *s, size_t n, ProtobufCBinaryData *out, bool *oom) {
    *oom = false;
    out->len = 0;
    out->data = NULL;
    bool url = memchr(s, '-', n) || memchr(s, '_', n);
    size_t m = n;
    if (n % 4 == 0) {
        if (m > 0 && s[m - 1] == '=') m--;
        if (m > 0 && s[m - 1] == '=') m--;
    }
    if (m % 4 == 1) return false;
    if (n % 4 == 0 && n != m && (m % 4) + (n - m) != 4) return false;
    size_t olen = m / 4 * 3 + (m % 4 == 2 ? 1 : m % 4 == 3 ? 2 : 0);
    if (olen == 0) return m == 0;
    uint8_t *o = malloc(olen);
    if (!o) {
        *oom = true;
        return false;
    }
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < m; i++) {
        int v = b64_value((unsigned char)s[i], url);
        if (v < 0) {
            free(o);
            return false;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (k < olen) o[k++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    out->len = olen;
    out->data = o;
    return true;
}

/* ------------------------------------------------------------------ reader */

typedef struct pj_reader {
    const char *s;
    size_t len;
    size_t pos;
    int depth;
    jerr *err;
    pj_path path;
} pj_reader;

static void line_col(const pj_reader *r, size_t *line, size_t *col) {
    size_t l = 1, last = 0;
    size_t end = r->pos < r->len ? r->pos : r->len;
    for (size_t i = 0; i < end; i++) {
        if (r->s[i] == '\n') {
            l++;
            last = i + 1;
        }
    }
    *line = l;
    *col = end - last + 1;
}

/* Error naming the JSON path; with at, also the input position. */
static int rd_err(pj_reader *r, int code, bool at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int rd_err(pj_reader *r, int code, bool at, const char *fmt, ...) {
    char msg[600], where[420], pos[80] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    path_render(&r->path, where, sizeof where);
    if (at) {
        size_t line, col;
        line_col(r, &line, &col);
        snprintf(pos, sizeof pos, " at line %zu column %zu", line, col);
    }
    if (where[0]) return jerr_set(r->err, code, "%s: %s%s", where, msg, pos);
    return jerr_set(r->err, code, "%s%s", msg, pos);
}

static int rd_oom(pj_reader *r) { return rd_err(r, JERR_INTERNAL, false, "out of memory"); }

static void rd_ws(pj_reader *r) {
    while (r->pos < r->len) {
        char c = r->s[r->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        r->pos++;
    }
}

static int rd_peek(pj_reader *r) {
    rd_ws(r);
    return r->pos < r->len ? (unsigned char)r->s[r->pos] : -1;
}

/* Syntax error at the current position: "unexpected end of input" or the
 * unexpected character, and what was expected. */
static int rd_unexpected(pj_reader *r, const char *expected) {
    size_t line, col;
    line_col(r, &line, &col);
    if (r->pos >= r->len)
        return rd_err(r, JERR_USAGE, false, "unexpected end of input at line %zu column %zu (expected %s)",
                      line, col, expected);
    unsigned char c = (unsigned char)r->s[r->pos];
    if (c >= 0x21 && c < 0x7f)
        return rd_err(r, JERR_USAGE, false, "unexpected character '%c' at line %zu column %zu (expected %s)",
                      c, line, col, expected);
    return rd_err(r, JERR_USAGE, false, "unexpected byte 0x%02x at line %zu column %zu (expected %s)", c,
                  line, col, expected);
}

/* After an item of an object or array: ',' means another follows (1), the
 * closing bracket ends it (0), anything else is an error (-1). */
static int rd_after_item(pj_reader *r, char close) {
    int c = rd_peek(r);
    if (c == ',' || c == close) {
        r->pos++;
        return c == ',';
    }
    return rd_unexpected(r, close == '}' ? "',' or '}'" : "',' or ']'");
}


static int rd_expect(pj_reader *r, char c, const char *what) {
    if (rd_peek(r) != (unsigned char)c) return rd_unexpected(r, what);
    r->pos++;
    return 0;
}

static int rd_enter(pj_reader *r) {
    if (r->depth >= PJ_MAX_DEPTH)
        return rd_err(r, JERR_USAGE, true, "JSON nested deeper than %d levels", PJ_MAX_DEPTH);
    r->depth++;
    return 0;
}

static void rd_leave(pj_reader *r) { r->depth--; }

static int rd_literal(pj_reader *r, const char *lit) {
    size_t n = strlen(lit);
    rd_ws(r);
    for (size_t i = 0; i < n; i++) {
        if (r->pos + i >= r->len || r->s[r->pos + i] != lit[i]) {
            r->pos += i;
            return rd_unexpected(r, lit);
        }
    }
    r->pos += n;
    return 0;
}

static int rd_number(pj_reader *r, const char **start, size_t *n) {
    rd_ws(r);
    size_t k = number_len(r->s + r->pos, r->len - r->pos);
    if (k == 0) return rd_unexpected(r, "a number");
    *start = r->s + r->pos;
    *n = k;
    r->pos += k;
    return 0;
}

static int hex4(const char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* A JSON string at the current position. With out, the decoded text is
 * malloc'ed and NUL-terminated (U+0000 is refused there: C strings cannot
 * hold it); without, the string is only validated. Decoding never grows
 * the text, so the raw length bounds the allocation. */
static int rd_string(pj_reader *r, char **out, size_t *outlen) {
    if (rd_peek(r) != '"') return rd_unexpected(r, "a string");
    size_t start = r->pos + 1, end = start;
    while (end < r->len && r->s[end] != '"') end += r->s[end] == '\\' ? 2 : 1;
    if (end >= r->len) {
        r->pos = r->len;
        return rd_unexpected(r, "the end of a string");
    }
    char *buf = NULL;
    if (out) {
        buf = malloc(end - start + 1);
        if (!buf) return rd_oom(r);
    }
    size_t o = 0, i = start;
    while (i < end) {
        unsigned char c = (unsigned char)r->s[i];
        if (c < 0x20) {
            r->pos = i;
            free(buf);
            return rd_err(r, JERR_USAGE, true, "control character 0x%02x in a string", c);
        }
        if (c >= 0x80) {
            size_t k = utf8_seq_len((const unsigned char *)r->s + i, end - i);
            if (k == 0) {
                r->pos = i;
                free(buf);
                return rd_err(r, JERR_USAGE, true, "invalid UTF-8 in a string");
            }
            if (buf) memcpy(buf + o, r->s + i, k);
            o += k;
            i += k;
            continue;
        }
        if (c != '\\') {
            if (buf) buf[o] = (char)c;
            o++;
            i++;
            continue;
        }
        char e = r->s[i + 1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e != '\0' && simple) {
            static const char map[] = "\"\\/\b\f\n\r\t";
            if (buf) buf[o] = map[simple - "\"\\/bfnrt"];
            o++;
            i += 2;
            continue;
        }
        uint32_t cp, lo;
        if (e != 'u' || end - i < 6 || hex4(r->s + i + 2, &cp) != 0) {
            r->pos = i;
            free(buf);
            return rd_err(r, JERR_USAGE, true, "invalid escape in a string");
        }
        size_t used = 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end - i < 12 || r->s[i + 6] != '\\' || r->s[i + 7] != 'u' ||
                hex4(r->s + i + 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) {
                r->pos = i;
                free(buf);
                return rd_err(r, JERR_USAGE, true, "unpaired UTF-16 surrogate in a string");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            used = 12;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            r->pos = i;
            free(buf);
            return rd_err(r, JERR_USAGE, true, "unpaired UTF-16 surrogate in a string");
        }
        if (cp == 0 && buf) {
            r->pos = i;
            free(buf);
            return rd_err(r, JERR_USAGE, true, "\\u0000 in a string is not supported");
        }
        if (buf) {
            if (cp < 0x80) {
                buf[o] = (char)cp;
            } else if (cp < 0x800) {
                buf[o] = (char)(0xC0 | (cp >> 6));
                buf[o + 1] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                buf[o] = (char)(0xE0 | (cp >> 12));
                buf[o + 1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[o + 2] = (char)(0x80 | (cp & 0x3F));
            } else {
                buf[o] = (char)(0xF0 | (cp >> 18));
                buf[o + 1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                buf[o + 2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[o + 3] = (char)(0x80 | (cp & 0x3F));
            }
        }
        o += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        i += used;
    }
    r->pos = end + 1;
    if (buf) {
        buf[o] = '\0';
        *out = buf;
        if (outlen) *outlen = o;
    }
    return 0;
}

/* Validate and skip any JSON value (unknown fields, extra histories). */
static int rd_skip(pj_reader *r) {
    int c = rd_peek(r);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        if (rd_enter(r)) return -1;
        r->pos++;
        if (rd_peek(r) == close) {
            r->pos++;
            rd_leave(r);
            return 0;
        }
        for (;;) {
            if (close == '}') {
                if (rd_string(r, NULL, NULL) || rd_expect(r, ':', "':'")) return -1;
            }
            if (rd_skip(r)) return -1;
            int d = rd_peek(r);
            if (d == ',') {
                r->pos++;
                continue;
            }
            if (d == close) {
                r->pos++;
                break;
            }
            return rd_unexpected(r, close == '}' ? "',' or '}'" : "',' or ']'");
        }
        rd_leave(r);
        return 0;
    }
    if (c == '"') return rd_string(r, NULL, NULL);
    if (c == 't') return rd_literal(r, "true");
    if (c == 'f') return rd_literal(r, "false");
    if (c == 'n') return rd_literal(r, "null");
    const char *s;
    size_t n;
    return rd_number(r, &s, &n);
}

static const char *token_kind(int c) {
    switch (c) {
    case '{': return "an object";
    case '[': return "an array";
    case '"': return "a string";
    case 't':
    case 'f': return "a boolean";
    case 'n': return "null";
    default: return (c == '-' || is_digit(c)) ? "a number" : "something that is not JSON";
    }
}

/* Wrong JSON type for a field (or a syntax error if it is not JSON). */
static int rd_type_err(pj_reader *r, const char *expected) {
    int c = rd_peek(r);
    if (c <= 0 || !strchr("{[\"tfn-0123456789", c)) return rd_unexpected(r, expected);
    return rd_err(r, JERR_USAGE, false, "expected %s, found %s", expected, token_kind(c));
}

/* Number text from a JSON number or from a string holding one ("123",
 * as protojson writes 64-bit integers). *tofree gets the string copy. */
static int rd_numeric_text(pj_reader *r, const char *what, const char **txt, size_t *n,
                           char **tofree) {
    *tofree = NULL;
    int c = rd_peek(r);
    if (c == '"') {
        if (rd_string(r, tofree, n)) return -1;
        if (*n == 0 || number_len(*tofree, *n) != *n) {
            free(*tofree);
            *tofree = NULL;
            return rd_err(r, JERR_USAGE, false, "invalid %s: not a number", what);
        }
        *txt = *tofree;
        return 0;
    }
    if (c == '-' || is_digit(c)) return rd_number(r, txt, n);
    return rd_type_err(r, what);
}

static int rd_integer(pj_reader *r, const char *what, bool is_signed, uint64_t max, int64_t *sv,
                      uint64_t *uv) {
    const char *t = NULL;
    size_t n;
    char *tofree;
    if (rd_numeric_text(r, what, &t, &n, &tofree)) return -1;
    bool neg;
    uint64_t mag;
    int rc = int_from_number(t, n, &neg, &mag);
    free(tofree);
    if (rc == INT_NOT_INTEGRAL)
        return rd_err(r, JERR_USAGE, false, "invalid %s: not an integer", what);
    /* For signed types max is the positive limit; the negative one is max+1. */
    if (rc == INT_TOO_BIG || (!neg && mag > max) || (neg && is_signed && mag > max + 1) ||
        (neg && !is_signed && mag != 0))
        return rd_err(r, JERR_USAGE, false, "invalid %s: out of range", what);
    if (is_signed) {
        *sv = !neg ? (int64_t)mag : mag == 0 ? 0 : -(int64_t)(mag - 1) - 1;
    } else {
        *uv = mag;
    }
    return 0;
}

static int rd_floating(pj_reader *r, bool is32, double *out) {
    const char *what = is32 ? "float" : "double";
    int c = rd_peek(r);
    char *text = NULL;
    size_t n = 0;
    if (c == '"') {
        if (rd_string(r, &text, &n)) return -1;
        if (strcmp(text, "NaN") == 0 || strcmp(text, "Infinity") == 0 ||
            strcmp(text, "-Infinity") == 0) {
            *out = text[0] == 'N' ? NAN : text[0] == '-' ? -INFINITY : INFINITY;
            free(text);
            return 0;
        }
        if (n == 0 || number_len(text, n) != n) {
            free(text);
            return rd_err(r, JERR_USAGE, false, "invalid %s: not a number", what);
        }
    } else if (c == '-' || is_digit(c)) {
        const char *t = NULL;
        if (rd_number(r, &t, &n)) return -1;
        text = jstrndup(t, n);
        if (!text) return rd_oom(r);
    } else {
        return rd_type_err(r, what);
    }
    /* strtof directly for float fields: strtod then (float) could round twice. */
    double v = is32 ? (double)strtof(text, NULL) : strtod(text, NULL);
    free(text);
    if (isinf(v)) return rd_err(r, JERR_USAGE, false, "invalid %s: out of range", what);
    *out = v;
    return 0;
}

/* Enum by full name, legacy PascalCase name or number. Unknown names set
 * *skip (the value is dropped, as with DiscardUnknown). */
static int rd_enum(pj_reader *r, const ProtobufCEnumDescriptor *ed, int32_t *out, bool *skip) {
    int c = rd_peek(r);
    if (c == '"') {
        char *name;
        size_t n;
        if (rd_string(r, &name, &n)) return -1;
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(ed, name);
        if (!v) {
            char *legacy = screaming_snake(ed->short_name, name, n);
            if (!legacy) {
                free(name);
                return rd_oom(r);
            }
            v = protobuf_c_enum_descriptor_get_value_by_name(ed, legacy);
            free(legacy);
        }
        free(name);
        if (v) {
            *out = (int32_t)v->value;
        } else {
            *skip = true;
        }
        return 0;
    }
    if (c == '-' || is_digit(c)) {
        int64_t v;
        if (rd_integer(r, "enum number", true, INT32_MAX, &v, NULL)) return -1;
        *out = (int32_t)v;
        return 0;
    }
    return rd_type_err(r, "an enum name or number");
}

static int rd_message(pj_reader *r, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out);

/* One value of field f into dst, the storage of a single element. On
 * failure dst is unchanged. */
static int rd_single(pj_reader *r, const ProtobufCFieldDescriptor *f, void *dst, bool *skip) {
    int64_t sv = 0;
    uint64_t uv = 0;
    double dv = 0;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (rd_integer(r, "int32", true, INT32_MAX, &sv, NULL)) return -1;
        *(int32_t *)dst = (int32_t)sv;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (rd_integer(r, "uint32", false, UINT32_MAX, NULL, &uv)) return -1;
        *(uint32_t *)dst = (uint32_t)uv;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (rd_integer(r, "int64", true, INT64_MAX, &sv, NULL)) return -1;
        *(int64_t *)dst = sv;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (rd_integer(r, "uint64", false, UINT64_MAX, NULL, &uv)) return -1;
        *(uint64_t *)dst = uv;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
        if (rd_floating(r, true, &dv)) return -1;
        *(float *)dst = (float)dv;
        return 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (rd_floating(r, false, &dv)) return -1;
        *(double *)dst = dv;
        return 0;
    case PROTOBUF_C_TYPE_BOOL: {
        int c = rd_peek(r);
        if (c != 't' && c != 'f') return rd_type_err(r, "a boolean");
        if (rd_literal(r, c == 't' ? "true" : "false")) return -1;
        *(protobuf_c_boolean *)dst = c == 't';
        return 0;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v = 0;
        if (rd_enum(r, f->descriptor, &v, skip)) return -1;
        if (!*skip) *(int32_t *)dst = v;
        return 0;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (rd_peek(r) != '"') return rd_type_err(r, "a string");
        char *s;
        if (rd_string(r, &s, NULL)) return -1;
        *(char **)dst = s;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (rd_peek(r) != '"') return rd_type_err(r, "a base64 string");
        char *s;
        size_t n;
        if (rd_string(r, &s, &n)) return -1;
        ProtobufCBinaryData bd;
        bool oom;
        bool ok = b64_decode(s, n, &bd, &oom);
        free(s);
        if (oom) return rd_oom(r);
        if (!ok) return rd_err(r, JERR_USAGE, false, "invalid base64");
        *(ProtobufCBinaryData *)dst = bd;
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return rd_message(r, f->descriptor, (ProtobufCMessage **)dst);
    }
    return rd_err(r, JERR_INTERNAL, false, "unsupported field type %d", (int)f->type);
}

/* Make room for one more element in a repeated field's array. */
static int rd_grow(pj_reader *r, void **arr, size_t n, size_t *cap, size_t esz) {
    if (n < *cap) return 0;
    size_t ncap = *cap ? *cap : 4, bytes;
    if (*cap && !size_mul(*cap, 2, &ncap)) return rd_oom(r);
    if (!size_mul(ncap, esz, &bytes)) return rd_oom(r);
    void *p = realloc(*arr, bytes);
    if (!p) return rd_oom(r);
    memset((char *)p + n * esz, 0, (ncap - n) * esz);
    *arr = p;
    *cap = ncap;
    return 0;
}

/* The array is stored in the message as it grows, so on failure
 * protobuf_c_message_free_unpacked frees what was parsed. */
static int rd_repeated(pj_reader *r, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    if (rd_peek(r) != '[') return rd_type_err(r, "an array");
    if (rd_enter(r)) return -1;
    r->pos++;
    size_t esz = elem_size(f->type), cap = 0, index = 0;
    size_t *np = (size_t *)((char *)m + f->quantifier_offset);
    void **parr = (void **)((char *)m + f->offset);
    if (rd_peek(r) == ']') {
        r->pos++;
        rd_leave(r);
        return 0;
    }
    for (;;) {
        if (rd_grow(r, parr, *np, &cap, esz)) return -1;
        path_push_index(&r->path, index);
        if (rd_peek(r) == 'n')
            return rd_err(r, JERR_USAGE, false, "null is not allowed in a list");
        bool skip = false;
        if (rd_single(r, f, (char *)*parr + *np * esz, &skip)) return -1;
        if (!skip) (*np)++;
        path_pop(&r->path);
        index++;
        int more = rd_after_item(r, ']');
        if (more < 0) return -1;
        if (!more) break;
    }
    rd_leave(r);
    return 0;
}

static int rd_map_key(pj_reader *r, const ProtobufCFieldDescriptor *kf, const char *k, size_t kn,
                      void *dst) {
    if (kf->type == PROTOBUF_C_TYPE_STRING) {
        char *s = jstrndup(k, kn);
        if (!s) return rd_oom(r);
        *(char **)dst = s;
        return 0;
    }
    if (kf->type == PROTOBUF_C_TYPE_BOOL) {
        if (strcmp(k, "true") != 0 && strcmp(k, "false") != 0)
            return rd_err(r, JERR_USAGE, false, "invalid map key: expected true or false");
        *(protobuf_c_boolean *)dst = k[0] == 't';
        return 0;
    }
    bool neg;
    uint64_t mag;
    if (kn == 0 || number_len(k, kn) != kn || int_from_number(k, kn, &neg, &mag) != INT_OK)
        return rd_err(r, JERR_USAGE, false, "invalid map key: expected an integer");
    bool bad;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        bad = neg ? mag > (uint64_t)INT32_MAX + 1 : mag > INT32_MAX;
        if (!bad) *(int32_t *)dst = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        bad = (neg && mag) || mag > UINT32_MAX;
        if (!bad) *(uint32_t *)dst = (uint32_t)mag;
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        bad = neg ? mag > (uint64_t)INT64_MAX + 1 : mag > INT64_MAX;
        if (!bad) *(int64_t *)dst = !neg ? (int64_t)mag : mag == 0 ? 0 : -(int64_t)(mag - 1) - 1;
        break;
    default:
        bad = neg && mag;
        if (!bad) *(uint64_t *)dst = mag;
        break;
    }
    if (bad) return rd_err(r, JERR_USAGE, false, "invalid map key: out of range");
    return 0;
}

/* A map as a JSON object; entries end up sorted by key, duplicates refused. */
static int rd_map(pj_reader *r, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    if (rd_peek(r) != '{') return rd_type_err(r, "an object (map)");
    if (rd_enter(r)) return -1;
    r->pos++;
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = protobuf_c_message_descriptor_get_field(ed, 1);
    const ProtobufCFieldDescriptor *vf = protobuf_c_message_descriptor_get_field(ed, 2);
    size_t *np = (size_t *)((char *)m + f->quantifier_offset);
    void **parr = (void **)((char *)m + f->offset);
    size_t cap = 0;
    if (rd_peek(r) == '}') {
        r->pos++;
        rd_leave(r);
        return 0;
    }
    for (;;) {
        char *k;
        size_t kn;
        if (rd_peek(r) != '"') return rd_unexpected(r, "a map key string");
        if (rd_string(r, &k, &kn)) return -1;
        path_push_name(&r->path, k, kn, false);
        int rc = -1;
        ProtobufCMessage *entry = NULL;
        if (rd_expect(r, ':', "':'")) goto done;
        if (rd_peek(r) == 'n') {
            rd_err(r, JERR_USAGE, false, "null is not allowed as a map value");
            goto done;
        }
        entry = msg_new(ed);
        if (!entry) {
            rd_oom(r);
            goto done;
        }
        if (rd_map_key(r, kf, k, kn, (char *)entry + kf->offset)) goto done;
        bool skip = false;
        if (rd_single(r, vf, (char *)entry + vf->offset, &skip)) goto done;
        if (!skip) {
            if (rd_grow(r, parr, *np, &cap, sizeof(ProtobufCMessage *))) goto done;
            ((ProtobufCMessage **)*parr)[(*np)++] = entry;
            entry = NULL;
        }
        rc = 0;
    done:
        if (entry) protobuf_c_message_free_unpacked(entry, NULL);
        if (rc) {
            free(k);
            return -1;
        }
        path_pop(&r->path);
        free(k);
        int more = rd_after_item(r, '}');
        if (more < 0) return -1;
        if (!more) break;
    }
    rd_leave(r);
    ProtobufCMessage **arr = *parr;
    qsort(arr, *np, sizeof *arr, entry_cmp);
    for (size_t i = 1; i < *np; i++)
        if (entry_cmp(&arr[i - 1], &arr[i]) == 0)
            return rd_err(r, JERR_USAGE, false, "duplicate map key");
    return 0;
}

/* One member of a message: repeated, map or singular; sets the oneof case
 * or has_ flag so protobuf-c sees the field as present. */
static int rd_field(pj_reader *r, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return field_is_map(f) ? rd_map(r, m, f) : rd_repeated(r, m, f);
    uint32_t *oneof_case = NULL;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        oneof_case = (uint32_t *)((char *)m + f->quantifier_offset);
        if (*oneof_case != 0 && *oneof_case != f->id) {
            const ProtobufCFieldDescriptor *other =
                protobuf_c_message_descriptor_get_field(m->descriptor, *oneof_case);
            char on[128];
            if (!other || camel_name(other->name, on, sizeof on) == 0) snprintf(on, sizeof on, "?");
            return rd_err(r, JERR_USAGE, false, "conflicts with \"%s\": only one field of a oneof may be set", on);
        }
    }
    bool skip = false;
    if (rd_single(r, f, (char *)m + f->offset, &skip)) return -1;
    if (skip) return 0;
    if (oneof_case) {
        *oneof_case = f->id;
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
               f->type != PROTOBUF_C_TYPE_MESSAGE) {
        *(protobuf_c_boolean *)((char *)m + f->quantifier_offset) = 1;
    }
    return 0;
}

/* A message as a JSON object. Unknown keys are skipped; a key given twice
 * (even once by camel and once by proto name) is refused. */
static int rd_object(pj_reader *r, const ProtobufCMessageDescriptor *d, ProtobufCMessage *m) {
    if (rd_peek(r) != '{') {
        char what[200];
        snprintf(what, sizeof what, "an object (%s)", d->name);
        return rd_type_err(r, what);
    }
    if (rd_enter(r)) return -1;
    r->pos++;
    unsigned char seen_small[128];
    unsigned char *seen = seen_small;
    if (d->n_fields > sizeof seen_small) {
        seen = calloc(d->n_fields, 1);
        if (!seen) return rd_oom(r);
    } else {
        memset(seen_small, 0, sizeof seen_small);
    }
    int rc = -1;
    if (rd_peek(r) == '}') {
        r->pos++;
        rc = 0;
        goto out;
    }
    for (;;) {
        char *k;
        size_t kn;
        if (rd_peek(r) != '"') {
            rd_unexpected(r, "a field name string");
            goto out;
        }
        if (rd_string(r, &k, &kn)) goto out;
        path_push_name(&r->path, k, kn, false);
        int frc = rd_expect(r, ':', "':'");
        const ProtobufCFieldDescriptor *f = frc ? NULL : field_by_key(d, k, kn);
        if (frc) {
            /* syntax error already reported */
        } else if (!f) {
            frc = rd_skip(r);
        } else if (rd_peek(r) == 'n') {
            frc = rd_literal(r, "null"); /* null: the field stays unset */
        } else if (seen[f - d->fields]) {
            frc = rd_err(r, JERR_USAGE, false, "field given twice");
        } else {
            seen[f - d->fields] = 1;
            frc = rd_field(r, m, f);
        }
        if (frc) {
            free(k);
            goto out;
        }
        path_pop(&r->path);
        free(k);
        int more = rd_after_item(r, '}');
        if (more < 0) goto out;
        if (!more) break;
    }
    rc = 0;
out:
    if (seen != seen_small) free(seen);
    if (rc == 0) rd_leave(r);
    return rc;
}

/* Any: {"@type": url, "value": base64} only (see the file comment). */
static int rd_any(pj_reader *r, const ProtobufCMessageDescriptor *d, ProtobufCMessage *m) {
    const ProtobufCFieldDescriptor *tf = protobuf_c_message_descriptor_get_field_by_name(d, "type_url");
    const ProtobufCFieldDescriptor *vf = protobuf_c_message_descriptor_get_field_by_name(d, "value");
    if (!tf || !vf) return rd_err(r, JERR_INTERNAL, false, "unexpected google.protobuf.Any descriptor");
    if (rd_peek(r) != '{') return rd_type_err(r, "an object (google.protobuf.Any)");
    if (rd_enter(r)) return -1;
    r->pos++;
    bool have_t = false, have_v = false;
    if (rd_peek(r) == '}') {
        r->pos++;
        rd_leave(r);
        return 0;
    }
    for (;;) {
        char *k;
        size_t kn;
        if (rd_peek(r) != '"') return rd_unexpected(r, "a field name string");
        if (rd_string(r, &k, &kn)) return -1;
        path_push_name(&r->path, k, kn, false);
        bool is_t = strcmp(k, "@type") == 0, is_v = strcmp(k, "value") == 0;
        int rc = rd_expect(r, ':', "':'");
        if (rc == 0 && !is_t && !is_v)
            rc = rd_err(r, JERR_USAGE, false,
                        "google.protobuf.Any is only supported as {\"@type\": ..., \"value\": "
                        "base64} (no type registry)");
        if (rc == 0 && ((is_t && have_t) || (is_v && have_v)))
            rc = rd_err(r, JERR_USAGE, false, "field given twice");
        if (rc == 0 && rd_peek(r) == 'n') {
            rc = rd_literal(r, "null");
        } else if (rc == 0) {
            bool skip = false;
            const ProtobufCFieldDescriptor *f = is_t ? tf : vf;
            rc = rd_single(r, f, (char *)m + f->offset, &skip);
            if (is_t) have_t = true;
            if (is_v) have_v = true;
        }
        if (rc) {
            free(k);
            return -1;
        }
        path_pop(&r->path);
        free(k);
        int more = rd_after_item(r, '}');
        if (more < 0) return -1;
        if (!more) break;
    }
    rd_leave(r);
    return 0;
}

/* Duration / Timestamp from their JSON strings into (seconds, nanos). */
static int rd_time_wkt(pj_reader *r, const ProtobufCMessageDescriptor *d, ProtobufCMessage *m,
                       bool is_duration) {
    const char *what = is_duration ? "a duration string like \"1.5s\"" : "an RFC 3339 timestamp string";
    if (rd_peek(r) != '"') return rd_type_err(r, what);
    char *s;
    size_t n;
    if (rd_string(r, &s, &n)) return -1;
    int64_t secs = 0;
    int32_t nanos = 0;
    bool ok = is_duration ? duration_from_text(s, n, &secs, &nanos)
                          : timestamp_from_text(s, n, &secs, &nanos);
    free(s);
    if (!ok)
        return rd_err(r, JERR_USAGE, false, "invalid %s: expected %s%s",
                      is_duration ? "duration" : "timestamp", what,
                      is_duration ? " within +-10000 years" : " in years 0001..9999");
    const ProtobufCFieldDescriptor *sf = protobuf_c_message_descriptor_get_field_by_name(d, "seconds");
    const ProtobufCFieldDescriptor *nf = protobuf_c_message_descriptor_get_field_by_name(d, "nanos");
    if (!sf || !nf) return rd_err(r, JERR_INTERNAL, false, "unexpected %s descriptor", d->name);
    *(int64_t *)((char *)m + sf->offset) = secs;
    *(int32_t *)((char *)m + nf->offset) = nanos;
    return 0;
}

/* ------------------------------------------------- shorthand payloads */

/* The official CLI's "shorthand" payloads (api-go's payload_json.go):
 * Payloads as a JSON array of values, a json/plain Payload as its JSON
 * value, binary/null as null, json/protobuf as its object plus a
 * "_protoMessageType" member. The reader takes both forms anywhere; the
 * writer uses shorthand when asked (PROTOJSON_SHORTHAND). */
#define SHORTHAND_TYPE_KEY "_protoMessageType"
#define BINARY_NULL_B64 "YmluYXJ5L251bGw="

static bool is_payloads(const ProtobufCMessageDescriptor *d) {
    return d == &temporal__api__common__v1__payloads__descriptor;
}
static bool is_payload(const ProtobufCMessageDescriptor *d) {
    return d == &temporal__api__common__v1__payload__descriptor;
}

/* Lookahead on a copy of the reader: is the object at r a payload in the
 * standard form {"metadata": {"encoding": base64, ...}, "data": base64}
 * (data may be absent for binary/null)? Anything else is shorthand. */
static bool standard_payload_ahead(const pj_reader *r0) {
    pj_reader *t = malloc(sizeof *t);
    if (!t) return true; /* the standard reader then reports what it finds */
    *t = *r0;
    jerr ignore = {0};
    t->err = &ignore;
    bool std = false, has_md = false, has_enc = false, has_data = false, null_enc = false;
    if (rd_expect(t, '{', "'{'") || rd_peek(t) == '}') goto out;
    for (;;) {
        char *k = NULL;
        if (rd_peek(t) != '"' || rd_string(t, &k, NULL) || rd_expect(t, ':', "':'")) {
            free(k);
            goto out;
        }
        bool is_md = strcmp(k, "metadata") == 0, is_data = strcmp(k, "data") == 0;
        free(k);
        if (is_md && !has_md && rd_peek(t) == '{') {
            has_md = true;
            t->pos++;
            if (rd_peek(t) == '}') {
                t->pos++;
            } else {
                for (;;) {
                    char *mk = NULL, *mv = NULL;
                    if (rd_peek(t) != '"' || rd_string(t, &mk, NULL) || rd_expect(t, ':', "':'") ||
                        rd_peek(t) != '"' || rd_string(t, &mv, NULL)) {
                        free(mk);
                        free(mv);
                        goto out;
                    }
                    if (strcmp(mk, "encoding") == 0) {
                        has_enc = true;
                        null_enc = strcmp(mv, BINARY_NULL_B64) == 0;
                    }
                    free(mk);
                    free(mv);
                    int more = rd_after_item(t, '}');
                    if (more < 0) goto out;
                    if (!more) break;
                }
            }
        } else if (is_data && !has_data && rd_peek(t) == '"') {
            has_data = true;
            if (rd_string(t, NULL, NULL)) goto out;
        } else {
            goto out;
        }
        int more = rd_after_item(t, '}');
        if (more < 0) goto out;
        if (!more) break;
    }
    std = has_md && has_enc && (has_data || null_enc);
out:
    free(t);
    return std;
}

/* Copies the JSON value at r to out without insignificant white space
 * (numbers and strings exactly as written). At the top level of an object,
 * the SHORTHAND_TYPE_KEY member is left out and its string returned in
 * *msg_type (if msg_type is not NULL). */
static int rd_copy_compact(pj_reader *r, jbuf *out, char **msg_type) {
    int c = rd_peek(r);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        if (rd_enter(r)) return -1;
        r->pos++;
        if (jbuf_putc(out, (char)c)) return rd_oom(r);
        bool first = true;
        if (rd_peek(r) == close) {
            r->pos++;
        } else {
            for (;;) {
                bool skip = false;
                size_t mark = out->len;
                if (!first && jbuf_putc(out, ',')) return rd_oom(r);
                if (close == '}') {
                    if (rd_peek(r) != '"') return rd_unexpected(r, "a member name string");
                    rd_ws(r);
                    size_t ks = r->pos;
                    char *k = NULL;
                    size_t kn = 0;
                    if (rd_string(r, &k, &kn)) return -1;
                    skip = msg_type && kn == strlen(SHORTHAND_TYPE_KEY) && memcmp(k, SHORTHAND_TYPE_KEY, kn) == 0 &&
                           rd_peek(r) == ':';
                    free(k);
                    if (jbuf_append(out, r->s + ks, r->pos - ks) || jbuf_putc(out, ':')) return rd_oom(r);
                    if (rd_expect(r, ':', "':'")) return -1;
                }
                if (skip && rd_peek(r) == '"') {
                    free(*msg_type);
                    *msg_type = NULL;
                    if (rd_string(r, msg_type, NULL)) return -1;
                    out->len = mark; /* drop the member */
                    out->data[mark] = '\0';
                } else {
                    if (rd_copy_compact(r, out, NULL)) return -1;
                    first = false;
                }
                int more = rd_after_item(r, close);
                if (more < 0) return -1;
                if (!more) break;
            }
        }
        rd_leave(r);
        if (jbuf_putc(out, close)) return rd_oom(r);
        return 0;
    }
    rd_ws(r);
    size_t start = r->pos;
    if (rd_skip(r)) return -1;
    if (jbuf_append(out, r->s + start, r->pos - start)) return rd_oom(r);
    return 0;
}

static int payload_set_meta(Temporal__Api__Common__V1__Payload *p, const char *key, const char *val) {
    Temporal__Api__Common__V1__Payload__MetadataEntry **arr =
        realloc(p->metadata, (p->n_metadata + 1) * sizeof *arr);
    if (!arr) return -1;
    p->metadata = arr;
    Temporal__Api__Common__V1__Payload__MetadataEntry *e = malloc(sizeof *e);
    if (!e) return -1;
    temporal__api__common__v1__payload__metadata_entry__init(e);
    e->key = jstrdup(key);
    e->value.data = (uint8_t *)jstrdup(val);
    e->value.len = strlen(val);
    arr[p->n_metadata++] = e;
    if (!e->key || !e->value.data) return -1;
    return 0;
}

/* One payload in either form into m (a Payload). */
static int rd_payload(pj_reader *r, ProtobufCMessage *m) {
    Temporal__Api__Common__V1__Payload *p = (Temporal__Api__Common__V1__Payload *)m;
    int c = rd_peek(r);
    if (c == '{' && standard_payload_ahead(r)) return rd_object(r, m->descriptor, m);
    if (c == 'n') {
        if (rd_literal(r, "null")) return -1;
        return payload_set_meta(p, "encoding", "binary/null") ? rd_oom(r) : 0;
    }
    jbuf data;
    jbuf_init(&data, 0);
    char *msg_type = NULL;
    if (rd_copy_compact(r, &data, c == '{' ? &msg_type : NULL)) {
        jbuf_free(&data);
        free(msg_type);
        return -1;
    }
    int rc = msg_type ? (payload_set_meta(p, "encoding", "json/protobuf") || payload_set_meta(p, "messageType", msg_type))
                      : payload_set_meta(p, "encoding", "json/plain");
    free(msg_type);
    if (rc) {
        jbuf_free(&data);
        return rd_oom(r);
    }
    size_t n = 0;
    char *d = jbuf_take(&data, &n);
    if (!d) return rd_oom(r);
    p->data.data = (uint8_t *)d;
    p->data.len = n;
    return 0;
}

/* Payloads as an array of payloads in either form. */
static int rd_payloads_array(pj_reader *r, ProtobufCMessage *m) {
    Temporal__Api__Common__V1__Payloads *ps = (Temporal__Api__Common__V1__Payloads *)m;
    if (rd_enter(r)) return -1;
    r->pos++;
    size_t cap = 0;
    if (rd_peek(r) == ']') {
        r->pos++;
        rd_leave(r);
        return 0;
    }
    for (;;) {
        path_push_index(&r->path, ps->n_payloads);
        if (rd_grow(r, (void **)&ps->payloads, ps->n_payloads, &cap, sizeof *ps->payloads)) return -1;
        ProtobufCMessage *pm = msg_new(&temporal__api__common__v1__payload__descriptor);
        if (!pm) return rd_oom(r);
        ps->payloads[ps->n_payloads++] = (Temporal__Api__Common__V1__Payload *)pm;
        if (rd_payload(r, pm)) return -1;
        path_pop(&r->path);
        int more = rd_after_item(r, ']');
        if (more < 0) return -1;
        if (!more) break;
    }
    rd_leave(r);
    return 0;
}

/* A message value (object, or the JSON form of a well-known type). On
 * failure *out is unchanged and the partial message is freed. */
static int rd_message(pj_reader *r, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out) {
    ProtobufCMessage *m = msg_new(d);
    if (!m) return rd_oom(r);
    int rc;
    switch (wkt_of(d)) {
    case WKT_DURATION:
        rc = rd_time_wkt(r, d, m, true);
        break;
    case WKT_TIMESTAMP:
        rc = rd_time_wkt(r, d, m, false);
        break;
    case WKT_WRAPPER: {
        bool skip = false;
        rc = rd_single(r, &d->fields[0], (char *)m + d->fields[0].offset, &skip);
        break;
    }
    case WKT_ANY:
        rc = rd_any(r, d, m);
        break;
    default:
        if (is_payload(d))
            rc = rd_payload(r, m);
        else if (is_payloads(d) && rd_peek(r) == '[')
            rc = rd_payloads_array(r, m);
        else
            rc = rd_object(r, d, m);
        break;
    }
    if (rc) {
        protobuf_c_message_free_unpacked(m, NULL);
        return -1;
    }
    *out = m;
    return 0;
}

static void rd_init(pj_reader *r, const char *json, size_t len, jerr *err) {
    memset(r, 0, sizeof *r);
    r->s = json ? json : "";
    r->len = json ? len : 0;
    r->err = err;
}

static int rd_finish(pj_reader *r) {
    rd_ws(r);
    if (r->pos != r->len) return rd_unexpected(r, "the end of input");
    return 0;
}

ProtobufCMessage *protojson_parse(const ProtobufCMessageDescriptor *desc, const char *json,
                                  size_t len, jerr *err) {
    pj_reader r;
    rd_init(&r, json, len, err);
    ProtobufCMessage *m = NULL;
    if (rd_message(&r, desc, &m)) return NULL;
    if (rd_finish(&r)) {
        protobuf_c_message_free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

/* ------------------------------------------------------------------ writer */

typedef struct pj_writer {
    jbuf *out;
    bool shorthand; /* payloads in the official CLI's shorthand */
    int indent;
    int level; /* open objects/arrays, for indentation */
    int depth; /* nested messages, bounded like the reader's */
    jerr *err;
    pj_path path;
} pj_writer;

static int wr_err(pj_writer *w, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int wr_err(pj_writer *w, int code, const char *fmt, ...) {
    char msg[600], where[420];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    path_render(&w->path, where, sizeof where);
    if (where[0]) return jerr_set(w->err, code, "%s: %s", where, msg);
    return jerr_set(w->err, code, "%s", msg);
}

static int wr_put(pj_writer *w, const char *s, size_t n) {
    if (jbuf_append(w->out, s, n) != 0)
        return wr_err(w, JERR_INTERNAL,
                      "JSON output exceeds the buffer limit of %zu bytes (or out of memory)",
                      w->out->max);
    return 0;
}

static int wr_puts(pj_writer *w, const char *s) { return wr_put(w, s, strlen(s)); }

static int wr_newline(pj_writer *w) {
    if (w->indent <= 0) return 0;
    static const char spaces[] = "                                ";
    if (wr_put(w, "\n", 1)) return -1;
    size_t n = (size_t)w->level * (size_t)w->indent;
    while (n > 0) {
        size_t k = n < sizeof spaces - 1 ? n : sizeof spaces - 1;
        if (wr_put(w, spaces, k)) return -1;
        n -= k;
    }
    return 0;
}

/* JSON string with protojson's escaping; invalid UTF-8 is an error. */
static int wr_string(pj_writer *w, const char *s, size_t n) {
    if (wr_put(w, "\"", 1)) return -1;
    size_t run = 0, i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t k = utf8_seq_len((const unsigned char *)s + i, n - i);
            if (k == 0) return wr_err(w, JERR_USAGE, "string is not valid UTF-8");
            i += k;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (wr_put(w, s + run, i - run)) return -1;
        char esc[8];
        switch (c) {
        case '"': strcpy(esc, "\\\""); break;
        case '\\': strcpy(esc, "\\\\"); break;
        case '\b': strcpy(esc, "\\b"); break;
        case '\f': strcpy(esc, "\\f"); break;
        case '\n': strcpy(esc, "\\n"); break;
        case '\r': strcpy(esc, "\\r"); break;
        case '\t': strcpy(esc, "\\t"); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", c); break;
        }
        if (wr_puts(w, esc)) return -1;
        i++;
        run = i;
    }
    if (wr_put(w, s + run, n - run)) return -1;
    return wr_put(w, "\"", 1);
}

static int wr_base64(pj_writer *w, const uint8_t *p, size_t n) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char chunk[256];
    size_t o = 0;
    if (wr_put(w, "\"", 1)) return -1;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        chunk[o++] = tbl[(v >> 18) & 63];
        chunk[o++] = tbl[(v >> 12) & 63];
        chunk[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        chunk[o++] = i + 2 < n ? tbl[v & 63] : '=';
        if (o + 4 > sizeof chunk) {
            if (wr_put(w, chunk, o)) return -1;
            o = 0;
        }
    }
    if (wr_put(w, chunk, o)) return -1;
    return wr_put(w, "\"", 1);
}

/* Shortest text that reads back to the same value, in the layout of Go's
 * protojson: fixed notation for 1e-6 <= |v| < 1e21, else 1e+21 / 1e-7. */
static void fmt_floating(double v, bool is32, char *out, size_t outlen) {
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (is32 ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v) break;
    }
    if (v == 0) {
        snprintf(out, outlen, "%s", signbit(v) ? "-0" : "0");
        return;
    }
    char dig[24] = "";
    size_t nd = 0;
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (is_digit(*p) && nd < sizeof dig - 1) dig[nd++] = *p;
    int e = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    dig[nd] = '\0';
    size_t o = 0;
    char buf[64];
    if (neg) buf[o++] = '-';
    if (e < -6 || e >= 21) {
        buf[o++] = dig[0];
        if (nd > 1) {
            buf[o++] = '.';
            memcpy(buf + o, dig + 1, nd - 1);
            o += nd - 1;
        }
        snprintf(buf + o, sizeof buf - o, e < 0 ? "e-%d" : "e+%02d", e < 0 ? -e : e);
    } else if (e >= 0) {
        for (size_t i = 0; i < nd || (int)i <= e; i++) {
            if ((int)i == e + 1) buf[o++] = '.';
            buf[o++] = i < nd ? dig[i] : '0';
        }
        buf[o] = '\0';
    } else {
        buf[o++] = '0';
        buf[o++] = '.';
        for (int i = 0; i < -e - 1; i++) buf[o++] = '0';
        memcpy(buf + o, dig, nd);
        o += nd;
        buf[o] = '\0';
    }
    snprintf(out, outlen, "%s", buf);
}

static int wr_floating(pj_writer *w, double v, bool is32) {
    if (isnan(v)) return wr_puts(w, "\"NaN\"");
    if (isinf(v)) return wr_puts(w, v < 0 ? "\"-Infinity\"" : "\"Infinity\"");
    char buf[64];
    fmt_floating(v, is32, buf, sizeof buf);
    return wr_puts(w, buf);
}

static int wr_message(pj_writer *w, const ProtobufCMessage *m);

/* One value of field f stored at p. */
static int wr_single(pj_writer *w, const ProtobufCFieldDescriptor *f, const void *p) {
    char buf[48];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        snprintf(buf, sizeof buf, "%" PRId32, *(const int32_t *)p);
        return wr_puts(w, buf);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(buf, sizeof buf, "%" PRIu32, *(const uint32_t *)p);
        return wr_puts(w, buf);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, sizeof buf, "\"%" PRId64 "\"", *(const int64_t *)p);
        return wr_puts(w, buf);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, sizeof buf, "\"%" PRIu64 "\"", *(const uint64_t *)p);
        return wr_puts(w, buf);
    case PROTOBUF_C_TYPE_FLOAT:
        return wr_floating(w, *(const float *)p, true);
    case PROTOBUF_C_TYPE_DOUBLE:
        return wr_floating(w, *(const double *)p, false);
    case PROTOBUF_C_TYPE_BOOL:
        return wr_puts(w, *(const protobuf_c_boolean *)p ? "true" : "false");
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v = *(const int32_t *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        if (ev) return wr_string(w, ev->name, strlen(ev->name));
        snprintf(buf, sizeof buf, "%" PRId32, v); /* open enum: unknown number */
        return wr_puts(w, buf);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s ? wr_string(w, s, strlen(s)) : wr_puts(w, "\"\"");
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = p;
        return wr_base64(w, bd->data, bd->data ? bd->len : 0);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sm = *(ProtobufCMessage *const *)p;
        if (sm) return wr_message(w, sm);
        /* A NULL element or map value: write the empty message's JSON. */
        ProtobufCMessage *tmp = msg_new(f->descriptor);
        if (!tmp) return wr_err(w, JERR_INTERNAL, "out of memory");
        int rc = wr_message(w, tmp);
        protobuf_c_message_free_unpacked(tmp, NULL);
        return rc;
    }
    }
    return wr_err(w, JERR_INTERNAL, "unsupported field type %d", (int)f->type);
}

/* Would protobuf-c serialise this field? Then protojson writes it. */
static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    const char *base = (const char *)m;
    const void *p = base + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) return *(const size_t *)(base + f->quantifier_offset) > 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED) return true;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
        if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)
            return *(void *const *)p != NULL;
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset) != 0;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return *(const uint32_t *)p != 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)p != 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)p != 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p != 0;
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)p != 0;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s && s[0];
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len > 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(void *const *)p != NULL;
    }
    return false;
}

/* Opens an object member: separator, indentation, quoted key, colon. The
 * key is a proto name written in camel case, or used as is. */
static int wr_key(pj_writer *w, bool *first, const char *name, bool camel) {
    if (!*first && wr_put(w, ",", 1)) return -1;
    *first = false;
    if (wr_newline(w)) return -1;
    if (wr_put(w, "\"", 1)) return -1;
    if (camel) {
        char buf[256];
        size_t n = camel_name(name, buf, sizeof buf);
        if (n == 0 && name[0]) return wr_err(w, JERR_INTERNAL, "field name too long");
        if (wr_put(w, buf, n)) return -1;
    } else if (wr_puts(w, name)) {
        return -1;
    }
    return wr_puts(w, w->indent > 0 ? "\": " : "\":");
}

static int wr_close(pj_writer *w, bool empty, char c) {
    w->level--;
    if (!empty && wr_newline(w)) return -1;
    return wr_put(w, &c, 1);
}

static int wr_array(pj_writer *w, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
    const char *arr = *(char *const *)((const char *)m + f->offset);
    size_t esz = elem_size(f->type);
    if (wr_put(w, "[", 1)) return -1;
    w->level++;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && wr_put(w, ",", 1)) return -1;
        if (wr_newline(w)) return -1;
        path_push_index(&w->path, i);
        if (wr_single(w, f, arr + i * esz)) return -1;
        path_pop(&w->path);
    }
    return wr_close(w, n == 0, ']');
}

static int wr_map(pj_writer *w, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
    ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)((const char *)m + f->offset);
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = protobuf_c_message_descriptor_get_field(ed, 1);
    const ProtobufCFieldDescriptor *vf = protobuf_c_message_descriptor_get_field(ed, 2);
    size_t bytes;
    if (!size_mul(n, sizeof *arr, &bytes)) return wr_err(w, JERR_INTERNAL, "out of memory");
    const ProtobufCMessage **sorted = malloc(bytes ? bytes : 1);
    if (!sorted) return wr_err(w, JERR_INTERNAL, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (arr[i]) sorted[k++] = arr[i];
    qsort(sorted, k, sizeof *sorted, entry_cmp);
    int rc = -1;
    bool first = true;
    if (wr_put(w, "{", 1)) goto out;
    w->level++;
    for (size_t i = 0; i < k; i++) {
        if (i > 0 && entry_cmp(&sorted[i - 1], &sorted[i]) == 0) {
            wr_err(w, JERR_USAGE, "duplicate map key");
            goto out;
        }
        const char *kp = (const char *)sorted[i] + kf->offset;
        char kbuf[48];
        const char *ktext = kbuf;
        switch (kf->type) {
        case PROTOBUF_C_TYPE_STRING:
            ktext = *(char *const *)kp ? *(char *const *)kp : "";
            break;
        case PROTOBUF_C_TYPE_BOOL:
            ktext = *(const protobuf_c_boolean *)kp ? "true" : "false";
            break;
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
            snprintf(kbuf, sizeof kbuf, "%" PRId32, *(const int32_t *)kp);
            break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
            snprintf(kbuf, sizeof kbuf, "%" PRIu32, *(const uint32_t *)kp);
            break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
            snprintf(kbuf, sizeof kbuf, "%" PRId64, *(const int64_t *)kp);
            break;
        default:
            snprintf(kbuf, sizeof kbuf, "%" PRIu64, *(const uint64_t *)kp);
            break;
        }
        if (!first && wr_put(w, ",", 1)) goto out;
        first = false;
        if (wr_newline(w)) goto out;
        path_push_name(&w->path, ktext, strlen(ktext), false);
        if (wr_string(w, ktext, strlen(ktext))) goto out;
        if (wr_puts(w, w->indent > 0 ? ": " : ":")) goto out;
        if (wr_single(w, vf, (const char *)sorted[i] + vf->offset)) goto out;
        path_pop(&w->path);
    }
    rc = wr_close(w, k == 0, '}');
out:
    free(sorted);
    return rc;
}

static int wr_object(pj_writer *w, const ProtobufCMessage *m) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    bool first = true;
    if (wr_put(w, "{", 1)) return -1;
    w->level++;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!field_present(m, f)) continue;
        if (wr_key(w, &first, f->name, true)) return -1;
        path_push_name(&w->path, f->name, strlen(f->name), true);
        int rc;
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            rc = field_is_map(f) ? wr_map(w, m, f) : wr_array(w, m, f);
        else
            rc = wr_single(w, f, (const char *)m + f->offset);
        if (rc) return -1;
        path_pop(&w->path);
    }
    return wr_close(w, first, '}');
}

static int wr_any(pj_writer *w, const ProtobufCMessage *m) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const ProtobufCFieldDescriptor *tf = protobuf_c_message_descriptor_get_field_by_name(d, "type_url");
    const ProtobufCFieldDescriptor *vf = protobuf_c_message_descriptor_get_field_by_name(d, "value");
    if (!tf || !vf) return wr_err(w, JERR_INTERNAL, "unexpected google.protobuf.Any descriptor");
    bool first = true;
    if (wr_put(w, "{", 1)) return -1;
    w->level++;
    if (field_present(m, tf)) {
        if (wr_key(w, &first, "@type", false) || wr_single(w, tf, (const char *)m + tf->offset))
            return -1;
    }
    if (field_present(m, vf)) {
        if (wr_key(w, &first, "value", false) || wr_single(w, vf, (const char *)m + vf->offset))
            return -1;
    }
    return wr_close(w, first, '}');
}

static int wr_time_wkt(pj_writer *w, const ProtobufCMessage *m, bool is_duration) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const ProtobufCFieldDescriptor *sf = protobuf_c_message_descriptor_get_field_by_name(d, "seconds");
    const ProtobufCFieldDescriptor *nf = protobuf_c_message_descriptor_get_field_by_name(d, "nanos");
    if (!sf || !nf) return wr_err(w, JERR_INTERNAL, "unexpected %s descriptor", d->name);
    int64_t secs = *(const int64_t *)((const char *)m + sf->offset);
    int32_t nanos = *(const int32_t *)((const char *)m + nf->offset);
    char buf[64];
    bool ok = is_duration ? duration_to_text(secs, nanos, buf, sizeof buf)
                          : timestamp_to_text(secs, nanos, buf, sizeof buf);
    if (!ok)
        return wr_err(w, JERR_USAGE, "%s out of range (seconds %" PRId64 ", nanos %" PRId32 ")",
                      is_duration ? "duration" : "timestamp", secs, nanos);
    if (wr_put(w, "\"", 1) || wr_puts(w, buf)) return -1;
    return wr_put(w, "\"", 1);
}

/* Shorthand for one payload: 0 none (write the standard form), 1
 * binary/null, 2 json/plain, 3 json/protobuf; *msg_type for 3. The data
 * must be valid JSON (an object for json/protobuf). */
static int shorthand_kind(const Temporal__Api__Common__V1__Payload *p, const char **msg_type, size_t *mtlen) {
    const ProtobufCBinaryData *enc = NULL, *mt = NULL;
    for (size_t i = 0; i < p->n_metadata; i++) {
        if (!p->metadata[i] || !p->metadata[i]->key) return 0;
        if (strcmp(p->metadata[i]->key, "encoding") == 0) enc = &p->metadata[i]->value;
        if (strcmp(p->metadata[i]->key, "messageType") == 0) mt = &p->metadata[i]->value;
    }
    if (!enc || !enc->data) return 0;
#define ENC_IS(lit) (enc->len == sizeof lit - 1 && memcmp(enc->data, lit, enc->len) == 0)
    int kind = 0;
    if (ENC_IS("binary/null")) return p->data.len == 0 && p->n_metadata == 1 ? 1 : 0;
    if (ENC_IS("json/plain") && p->n_metadata == 1) kind = 2;
    if (ENC_IS("json/protobuf") && p->n_metadata == 2 && mt && mt->len > 0 && mt->data) kind = 3;
#undef ENC_IS
    if (!kind) return 0;
    pj_reader t;
    jerr ignore = {0};
    rd_init(&t, (const char *)p->data.data, p->data.data ? p->data.len : 0, &ignore);
    if (kind == 3 && rd_peek(&t) != '{') return 0;
    /* a value the reader would take for something else stays raw: an
     * object in the raw payload form, or one with the type member */
    if (rd_peek(&t) == '{') {
        if (standard_payload_ahead(&t)) return 0;
        pj_reader u = t;
        jbuf scratch;
        jbuf_init(&scratch, 0);
        char *mt_seen = NULL;
        int crc = rd_copy_compact(&u, &scratch, &mt_seen);
        jbuf_free(&scratch);
        bool has_type = mt_seen != NULL;
        free(mt_seen);
        if (crc || has_type) return 0;
    }
    if (rd_skip(&t) || rd_finish(&t)) return 0;
    if (kind == 3) {
        /* the type name becomes a JSON string: it must be UTF-8 without NULs */
        for (size_t i = 0; i < mt->len;) {
            size_t k = mt->data[i] >= 0x80 ? utf8_seq_len(mt->data + i, mt->len - i) : (mt->data[i] ? 1 : 0);
            if (k == 0) return 0;
            i += k;
        }
        *msg_type = (const char *)mt->data;
        *mtlen = mt->len;
    }
    return kind;
}

/* Re-writes valid JSON text (checked by shorthand_kind) with the writer's
 * indentation; numbers and strings are copied as they are. */
static int wr_json_text(pj_writer *w, pj_reader *r, const char *msg_type, size_t mtlen) {
    int c = rd_peek(r);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        char open = (char)c;
        r->pos++;
        if (wr_put(w, &open, 1)) return -1;
        w->level++;
        bool first = true;
        if (rd_peek(r) == close) {
            r->pos++;
        } else {
            for (;;) {
                if (!first && wr_put(w, ",", 1)) return -1;
                first = false;
                if (wr_newline(w)) return -1;
                if (close == '}') {
                    rd_ws(r);
                    size_t ks = r->pos;
                    if (rd_string(r, NULL, NULL) || wr_put(w, r->s + ks, r->pos - ks) ||
                        rd_expect(r, ':', "':'") || wr_puts(w, w->indent > 0 ? ": " : ":"))
                        return -1;
                }
                if (wr_json_text(w, r, NULL, 0)) return -1;
                int more = rd_after_item(r, close);
                if (more < 0) return -1;
                if (!more) break;
            }
        }
        if (msg_type) {
            if ((!first && wr_put(w, ",", 1)) || wr_newline(w) || wr_string(w, SHORTHAND_TYPE_KEY, strlen(SHORTHAND_TYPE_KEY)) ||
                wr_puts(w, w->indent > 0 ? ": " : ":") || wr_string(w, msg_type, mtlen))
                return -1;
            first = false;
        }
        return wr_close(w, first, close);
    }
    rd_ws(r);
    size_t start = r->pos;
    if (rd_skip(r)) return -1;
    return wr_put(w, r->s + start, r->pos - start);
}

static int wr_payload_value(pj_writer *w, const Temporal__Api__Common__V1__Payload *p, int kind, const char *mt,
                            size_t mtlen) {
    if (kind == 1) return wr_puts(w, "null");
    pj_reader r;
    jerr rerr = {0};
    rd_init(&r, (const char *)p->data.data, p->data.len, &rerr);
    if (wr_json_text(w, &r, kind == 3 ? mt : NULL, mtlen)) {
        if (rerr.msg[0]) return wr_err(w, JERR_INTERNAL, "payload JSON: %s", rerr.msg);
        return -1;
    }
    return 0;
}

/* 1: not applicable (write the standard form), 0 written, -1 error. */
static int wr_shorthand(pj_writer *w, const ProtobufCMessage *m) {
    const char *mt = NULL;
    size_t mtlen = 0;
    if (is_payload(m->descriptor)) {
        const Temporal__Api__Common__V1__Payload *p = (const Temporal__Api__Common__V1__Payload *)m;
        int kind = shorthand_kind(p, &mt, &mtlen);
        return kind ? wr_payload_value(w, p, kind, mt, mtlen) : 1;
    }
    const Temporal__Api__Common__V1__Payloads *ps = (const Temporal__Api__Common__V1__Payloads *)m;
    if (ps->n_payloads == 0) return 1;
    /* all or nothing, as the official CLI does */
    for (size_t i = 0; i < ps->n_payloads; i++)
        if (!ps->payloads[i] || !shorthand_kind(ps->payloads[i], &mt, &mtlen)) return 1;
    if (wr_put(w, "[", 1)) return -1;
    w->level++;
    for (size_t i = 0; i < ps->n_payloads; i++) {
        if (i > 0 && wr_put(w, ",", 1)) return -1;
        if (wr_newline(w)) return -1;
        path_push_index(&w->path, i);
        int kind = shorthand_kind(ps->payloads[i], &mt, &mtlen);
        if (wr_payload_value(w, ps->payloads[i], kind, mt, mtlen)) return -1;
        path_pop(&w->path);
    }
    return wr_close(w, false, ']');
}

static int wr_message(pj_writer *w, const ProtobufCMessage *m) {
    if (w->depth >= PJ_MAX_DEPTH)
        return wr_err(w, JERR_USAGE, "messages nested deeper than %d levels", PJ_MAX_DEPTH);
    w->depth++;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    int rc;
    switch (wkt_of(d)) {
    case WKT_DURATION:
        rc = wr_time_wkt(w, m, true);
        break;
    case WKT_TIMESTAMP:
        rc = wr_time_wkt(w, m, false);
        break;
    case WKT_WRAPPER:
        rc = wr_single(w, &d->fields[0], (const char *)m + d->fields[0].offset);
        break;
    case WKT_ANY:
        rc = wr_any(w, m);
        break;
    default:
        rc = 1;
        if (w->shorthand && (is_payload(d) || is_payloads(d))) rc = wr_shorthand(w, m);
        if (rc == 1) rc = wr_object(w, m);
        break;
    }
    w->depth--;
    return rc;
}

int protojson_write(const ProtobufCMessage *msg, int indent, jbuf *out, jerr *err) {
    return protojson_write_ex(msg, indent, 0, out, err);
}

int protojson_write_ex(const ProtobufCMessage *msg, int indent, unsigned flags, jbuf *out, jerr *err) {
    if (!msg) return jerr_set(err, JERR_INTERNAL, "protojson_write: no message");
    pj_writer *w = calloc(1, sizeof *w); /* the path stack is a few KiB */
    if (!w) return jerr_oom(err, "writing JSON");
    w->out = out;
    w->shorthand = (flags & PROTOJSON_SHORTHAND) != 0;
    w->indent = indent < 0 ? 0 : indent > 16 ? 16 : indent;
    w->err = err;
    size_t start = out->len;
    int rc = wr_message(w, msg);
    free(w);
    if (rc) {
        /* Leave out as it was: no half-written JSON. */
        out->len = start;
        if (out->data) out->data[start] = '\0';
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------------- history */

/* "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" -> "activity_task_scheduled_event_
 * attributes", the HistoryEvent oneof member for that type; NULL if the
 * subset lacks it. */
static const ProtobufCFieldDescriptor *attributes_field_for(int32_t event_type) {
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value(&temporal__api__enums__v1__event_type__descriptor, event_type);
    if (!ev || ev->value == 0) return NULL;
    const char *n = ev->name;
    if (strncmp(n, "EVENT_TYPE_", 11) == 0) n += 11;
    char buf[160];
    size_t len = strlen(n);
    static const char suffix[] = "_event_attributes";
    if (len + sizeof suffix > sizeof buf) return NULL;
    for (size_t i = 0; i < len; i++) buf[i] = to_lower(n[i]);
    memcpy(buf + len, suffix, sizeof suffix);
    return protobuf_c_message_descriptor_get_field_by_name(
        &temporal__api__history__v1__history_event__descriptor, buf);
}

static int validate_history(const Temporal__Api__History__V1__History *h, jerr *err) {
    if (h->n_events == 0) return jerr_set(err, JERR_USAGE, "the history has no events");
    const ProtobufCMessageDescriptor *hd = &temporal__api__history__v1__history_event__descriptor;
    for (size_t i = 0; i < h->n_events; i++) {
        const Temporal__Api__History__V1__HistoryEvent *ev = h->events[i];
        if ((uint64_t)ev->event_id != (uint64_t)i + 1)
            return jerr_set(err, JERR_USAGE,
                            "events[%zu].eventId: expected %zu, got %" PRId64
                            " (event ids must start at 1 and increase by one)",
                            i, i + 1, ev->event_id);
        const ProtobufCFieldDescriptor *want = attributes_field_for((int32_t)ev->event_type);
        uint32_t have_id = (uint32_t)ev->attributes_case;
        const ProtobufCFieldDescriptor *have =
            have_id ? protobuf_c_message_descriptor_get_field(hd, have_id) : NULL;
        char wn[128] = "", hn[128] = "";
        if (want) camel_name(want->name, wn, sizeof wn);
        if (have) camel_name(have->name, hn, sizeof hn);
        if (!have && want)
            return jerr_set(err, JERR_USAGE, "events[%zu] (eventId %" PRId64 "): eventType %s but no %s",
                            i, ev->event_id, event_type_name((int)ev->event_type), wn);
        if (have && (!want || want->id != have->id))
            return jerr_set(err, JERR_USAGE,
                            "events[%zu] (eventId %" PRId64 "): eventType %s does not match the attributes %s",
                            i, ev->event_id, event_type_name((int)ev->event_type), hn);
    }
    return 0;
}

Temporal__Api__History__V1__History *protojson_parse_history(const char *json, size_t len,
                                                              jerr *err) {
    pj_reader *r = malloc(sizeof *r); /* the path stack is a few KiB */
    if (!r) {
        jerr_oom(err, "parsing a history");
        return NULL;
    }
    rd_init(r, json, len, err);
    const ProtobufCMessageDescriptor *hd = &temporal__api__history__v1__history__descriptor;
    ProtobufCMessage *m = NULL;
    int c = rd_peek(r);
    int rc = -1;
    if (c == '[') {
        /* Older form: an array of histories; the first one is the history,
         * the rest only need to be well-formed JSON. */
        if (rd_enter(r)) goto out;
        r->pos++;
        if (rd_peek(r) == ']') {
            rd_err(r, JERR_USAGE, false,
                   "the JSON array holds no history (expected {\"events\": [...]} or "
                   "[{\"events\": [...]}])");
            goto out;
        }
        if (rd_peek(r) != '{') {
            rd_type_err(r, "a history object {\"events\": [...]}");
            goto out;
        }
        if (rd_message(r, hd, &m)) goto out;
        for (size_t i = 1;; i++) {
            int d = rd_peek(r);
            if (d == ']') {
                r->pos++;
                break;
            }
            if (d != ',') {
                rd_unexpected(r, "',' or ']'");
                goto out;
            }
            r->pos++;
            path_push_index(&r->path, i);
            if (rd_skip(r)) goto out;
            path_pop(&r->path);
        }
        rd_leave(r);
    } else if (c == '{') {
        if (rd_message(r, hd, &m)) goto out;
    } else if (c < 0) {
        jerr_set(err, JERR_USAGE, "empty input: expected a JSON history {\"events\": [...]}");
        goto out;
    } else {
        rd_unexpected(r, "a JSON history: '{' or '['");
        goto out;
    }
    if (rd_finish(r)) goto out;
    if (validate_history((Temporal__Api__History__V1__History *)m, err)) goto out;
    rc = 0;
out:
    free(r);
    if (rc) {
        if (m) protobuf_c_message_free_unpacked(m, NULL);
        return NULL;
    }
    return (Temporal__Api__History__V1__History *)m;
}

int protojson_read_history_file(const char *path, Temporal__Api__History__V1__History **out,
                                jerr *err) {
    *out = NULL;
    char *data;
    size_t n;
    if (file_read_all(path, PJ_MAX_FILE, &data, &n, err)) return -1;
    Temporal__Api__History__V1__History *h = protojson_parse_history(data, n, err);
    free(data);
    if (!h) return jerr_prefix(err, "%s", path);
    *out = h;
    return 0;
}

/* ------------------------------------------------------------ enum names */

#define NAME_TABLE_MAX 128
#define NAME_MAX_LEN 80

typedef struct name_table {
    const ProtobufCEnumDescriptor *desc;
    char names[NAME_TABLE_MAX][NAME_MAX_LEN];
} name_table;

static name_table event_names = {&temporal__api__enums__v1__event_type__descriptor, {{0}}};
static name_table command_names = {&temporal__api__enums__v1__command_type__descriptor, {{0}}};
static pthread_once_t event_names_once = PTHREAD_ONCE_INIT;
static pthread_once_t command_names_once = PTHREAD_ONCE_INIT;

/* "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" -> "ActivityTaskScheduled": the
 * enum's own prefix (ScreamingSnake of its short name) dropped, each word
 * capitalised. */
static void fill_names(name_table *t) {
    char *prefix = screaming_snake(t->desc->short_name, "", 0); /* "EVENT_TYPE_" */
    size_t plen = prefix ? strlen(prefix) : 0;
    for (unsigned i = 0; i < t->desc->n_values && i < NAME_TABLE_MAX; i++) {
        const char *n = t->desc->values[i].name;
        if (prefix && strncmp(n, prefix, plen) == 0 && n[plen]) n += plen;
        size_t o = 0;
        bool start = true;
        for (; *n && o + 1 < NAME_MAX_LEN; n++) {
            if (*n == '_') {
                start = true;
                continue;
            }
            t->names[i][o++] = start ? to_upper(*n) : to_lower(*n);
            start = false;
        }
        t->names[i][o] = '\0';
    }
    free(prefix);
}

static void fill_event_names(void) { fill_names(&event_names); }
static void fill_command_names(void) { fill_names(&command_names); }

static const char *enum_short_name(name_table *t, pthread_once_t *once, void (*fill)(void), int v) {
    static _Thread_local char unknown[32];
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(t->desc, v);
    if (ev) {
        size_t idx = (size_t)(ev - t->desc->values);
        if (idx < NAME_TABLE_MAX && pthread_once(once, fill) == 0 && t->names[idx][0])
            return t->names[idx];
    }
    snprintf(unknown, sizeof unknown, "Unknown(%d)", v);
    return unknown;
}

const char *event_type_name(int event_type) {
    return enum_short_name(&event_names, &event_names_once, fill_event_names, event_type);
}

const char *command_type_name(int command_type) {
    return enum_short_name(&command_names, &command_names_once, fill_command_names, command_type);
}
