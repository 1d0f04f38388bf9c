/*
 * tc_wire.c - gRPC wire pieces without any I/O: message framing and
 * deframing, response metadata (grpc-status, grpc-message,
 * grpc-status-details-bin), base64 and percent decoding. Kept pure so the
 * unit tests and the fuzzer can drive them byte by byte.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "temporal/temporal.h"

static bool depth_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end, int left);

static const char *const code_names[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

const char *tc_code_name(int code, char *buf, size_t buflen) {
    if (code >= 0 && (size_t)code < sizeof code_names / sizeof code_names[0])
        return code_names[code];
    snprintf(buf, buflen, "code %d", code);
    return buf;
}

/* ---------------------------------------------------------------- base64 */

static int b64_value(unsigned char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+' || ch == '-') return 62;
    if (ch == '/' || ch == '_') return 63;
    return -1;
}

int tc_base64_decode(const char *in, size_t len, unsigned char **out, size_t *outlen,
                     jerr *err) {
    /* Padding only at the end, at most two characters, and the unpadded
     * length must not leave a lone 6-bit group. */
    size_t n = len;
    size_t pad = 0;
    while (n > 0 && in[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if (pad > 0 && (len % 4) != 0)
        return jerr_set(err, JERR_USAGE, "invalid base64: padded text of length %zu is not a multiple of 4", len);
    if (n % 4 == 1)
        return jerr_set(err, JERR_USAGE, "invalid base64: %zu significant characters cannot encode whole bytes", n);
    size_t cap = n / 4 * 3 + 3;
    unsigned char *buf = malloc(cap);
    if (buf == NULL) return jerr_oom(err, "decoding base64");
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0) {
            free(buf);
            return jerr_set(err, JERR_USAGE, "invalid base64: unexpected character at offset %zu", i);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    *out = buf;
    *outlen = o;
    return 0;
}

/* --------------------------------------------------------- percent codec */

static int hex_value(unsigned char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

size_t tc_percent_decode(const char *in, size_t len, char *out, size_t outcap) {
    size_t o = 0;
    if (outcap == 0) return 0;
    for (size_t i = 0; i < len && o + 1 < outcap; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '%' && len - i >= 3) {
            int hi = hex_value((unsigned char)in[i + 1]);
            int lo = hex_value((unsigned char)in[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out[o++] = (char)(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return o;
}

/* -------------------------------------------------------------- framing */

int tc_frame(const void *msg, size_t len, size_t max_message, unsigned char **out,
             size_t *outlen, jerr *err) {
    size_t total;
    if (len > max_message || len > 0xffffffffu)
        return jerr_set(err, JERR_USAGE,
                        "gRPC request of %zu bytes is larger than the %zu-byte limit; send less data", len,
                        max_message);
    if (!size_add(len, 5, &total)) return jerr_oom(err, "framing a gRPC request");
    unsigned char *buf = malloc(total);
    if (buf == NULL) return jerr_oom(err, "framing a gRPC request");
    buf[0] = 0;
    buf[1] = (unsigned char)(len >> 24);
    buf[2] = (unsigned char)(len >> 16);
    buf[3] = (unsigned char)(len >> 8);
    buf[4] = (unsigned char)len;
    if (len > 0) memcpy(buf + 5, msg, len);
    *out = buf;
    *outlen = total;
    return 0;
}

void tc_deframer_init(tc_deframer *d, size_t max_message) {
    memset(d, 0, sizeof *d);
    d->max_message = max_message;
    jbuf_init(&d->body, max_message);
}

static int deframer_fail(tc_deframer *d, jerr *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int deframer_fail(tc_deframer *d, jerr *err, const char *fmt, ...) {
    d->failed = true;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jerr_set(err, JERR_BACKEND, "malformed gRPC response from Temporal: %s", msg);
}

int tc_deframer_feed(tc_deframer *d, const void *data, size_t len, jerr *err) {
    const unsigned char *p = data;
    if (d->failed)
        return jerr_set(err, JERR_BACKEND, "malformed gRPC response from Temporal: data after an error");
    while (len > 0) {
        if (!d->in_body) {
            if (d->have_message)
                return deframer_fail(d, err, "more than one message in a unary response (%zu extra bytes)", len);
            size_t take = 5 - d->prefix_have;
            if (take > len) take = len;
            memcpy(d->prefix + d->prefix_have, p, take);
            d->prefix_have += take;
            p += take;
            len -= take;
            if (d->prefix_have < 5) break;
            if (d->prefix[0] == 1)
                return deframer_fail(d, err, "compressed message received though none was asked for");
            if (d->prefix[0] != 0)
                return deframer_fail(d, err, "bad message flag %u", (unsigned)d->prefix[0]);
            size_t want = ((size_t)d->prefix[1] << 24) | ((size_t)d->prefix[2] << 16) |
                          ((size_t)d->prefix[3] << 8) | (size_t)d->prefix[4];
            /* Checked before allocating anything: a hostile length costs nothing. */
            if (want > d->max_message)
                return deframer_fail(d, err, "message of %zu bytes exceeds the %zu-byte limit", want,
                                     d->max_message);
            d->want = want;
            d->in_body = true;
            jbuf_reset(&d->body);
        }
        size_t need = d->want - d->body.len;
        size_t take = need < len ? need : len;
        if (take > 0 && jbuf_append(&d->body, p, take) != 0) {
            d->failed = true;
            return jerr_oom(err, "receiving a gRPC message");
        }
        p += take;
        len -= take;
        if (d->body.len == d->want) {
            d->in_body = false;
            d->have_message = true;
            d->prefix_have = 0;
        }
    }
    return 0;
}

int tc_deframer_finish(tc_deframer *d, jerr *err) {
    if (d->failed) return jerr_set(err, JERR_BACKEND, "malformed gRPC response from Temporal");
    if (d->in_body || d->prefix_have > 0)
        return deframer_fail(d, err, "stream ended inside a message (%zu of %zu bytes)",
                             d->in_body ? d->body.len : d->prefix_have, d->in_body ? d->want : 5);
    return 0;
}

void tc_deframer_free(tc_deframer *d) {
    jbuf_free(&d->body);
    memset(d, 0, sizeof *d);
}

/* -------------------------------------------------------------- metadata */

void tc_meta_init(tc_meta *m) { memset(m, 0, sizeof *m); }

void tc_meta_free(tc_meta *m) {
    free(m->details);
    memset(m, 0, sizeof *m);
}

static bool name_is(const char *name, size_t nlen, const char *want) {
    return nlen == strlen(want) && strncasecmp(name, want, nlen) == 0;
}

static void meta_status_line(tc_meta *m, const char *line, size_t len) {
    /* "HTTP/2 200": a new response starts (curl may show interim ones). */
    size_t i = 0;
    while (i < len && line[i] != ' ') i++;
    while (i < len && line[i] == ' ') i++;
    int status = 0;
    size_t digits = 0;
    while (i < len && digits < 3 && isdigit((unsigned char)line[i])) {
        status = status * 10 + (line[i] - '0');
        i++;
        digits++;
    }
    m->http_status = digits == 3 ? status : 0;
}

static void meta_grpc_status(tc_meta *m, const char *v, size_t vlen) {
    int code = 0;
    bool ok = vlen > 0 && vlen <= 9;
    for (size_t i = 0; ok && i < vlen; i++) {
        if (!isdigit((unsigned char)v[i])) ok = false;
        else code = code * 10 + (v[i] - '0');
    }
    m->have_grpc_status = true;
    m->grpc_status = ok ? code : TC_UNKNOWN;
}

void tc_meta_line(tc_meta *m, const char *line, size_t len) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    if (len == 0) return;
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        meta_status_line(m, line, len);
        return;
    }
    const char *colon = memchr(line, ':', len);
    if (colon == NULL) return;
    size_t nlen = (size_t)(colon - line);
    tc_meta_header(m, line, nlen, colon + 1, len - nlen - 1);
}

void tc_meta_header(tc_meta *m, const char *name, size_t nlen, const char *v, size_t vlen) {
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
    const char *line = name;
    if (name_is(name, nlen, ":status")) {
        /* HTTP/2's pseudo-header: the status line's digits. */
        int status = 0;
        bool ok = vlen == 3;
        for (size_t i = 0; ok && i < vlen; i++) {
            if (!isdigit((unsigned char)v[i])) ok = false;
            else status = status * 10 + (v[i] - '0');
        }
        m->http_status = ok ? status : 0;
    } else if (name_is(line, nlen, "content-type")) {
        m->grpc_content_type = vlen >= 16 && strncasecmp(v, "application/grpc", 16) == 0 &&
                               (vlen == 16 || v[16] == '+' || v[16] == ';');
    } else if (name_is(line, nlen, "grpc-status")) {
        meta_grpc_status(m, v, vlen);
    } else if (name_is(line, nlen, "grpc-message")) {
        tc_percent_decode(v, vlen, m->grpc_message, sizeof m->grpc_message);
    } else if (name_is(line, nlen, "grpc-status-details-bin")) {
        unsigned char *bin = NULL;
        size_t binlen = 0;
        free(m->details);
        m->details = NULL;
        m->details_len = 0;
        m->details_bad = tc_base64_decode(v, vlen, &bin, &binlen, NULL) != 0;
        if (!m->details_bad) {
            m->details = bin;
            m->details_len = binlen;
        }
    }
}

void tc_status_init(tc_status *st) { memset(st, 0, sizeof *st); }

void tc_status_clear(tc_status *st) {
    if (st->details != NULL)
        protobuf_c_message_free_unpacked(&st->details->base, NULL);
    memset(st, 0, sizeof *st);
}

static int code_from_http(int http) {
    switch (http) {
    case 400: return TC_INTERNAL;
    case 401: return TC_UNAUTHENTICATED;
    case 403: return TC_PERMISSION_DENIED;
    case 404: return TC_UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return TC_UNAVAILABLE;
    default: return TC_UNKNOWN;
    }
}

void tc_status_from_meta(const tc_meta *m, tc_status *st) {
    tc_status_clear(st);
    if (m->have_grpc_status) {
        st->code = m->grpc_status;
        snprintf(st->message, sizeof st->message, "%s", m->grpc_message);
        if (m->details != NULL && m->grpc_status != TC_OK)
            if (depth_ok(&google__rpc__status__descriptor, m->details, m->details + m->details_len,
                         TC_MAX_PROTO_DEPTH))
                st->details = google__rpc__status__unpack(NULL, m->details_len, m->details);
        return;
    }
    if (m->http_status != 200) {
        st->code = code_from_http(m->http_status);
        if (m->http_status == 0)
            snprintf(st->message, sizeof st->message, "the server sent no HTTP status");
        else
            snprintf(st->message, sizeof st->message, "HTTP status %d without a gRPC status%s",
                     m->http_status, m->grpc_content_type ? "" : " (is this a gRPC endpoint?)");
        return;
    }
    st->code = TC_INTERNAL;
    snprintf(st->message, sizeof st->message,
             "the response ended without a grpc-status%s",
             m->grpc_content_type ? "" : " and is not gRPC (is this a gRPC endpoint?)");
}

ProtobufCMessage *tc_status_detail(const tc_status *st, const ProtobufCMessageDescriptor *desc) {
    if (st->details == NULL) return NULL;
    size_t nlen = strlen(desc->name);
    for (size_t i = 0; i < st->details->n_details; i++) {
        const Google__Protobuf__Any *any = st->details->details[i];
        if (any == NULL || any->type_url == NULL) continue;
        size_t ulen = strlen(any->type_url);
        /* type.googleapis.com/<full name>: compare the part after the last '/'. */
        if (ulen < nlen + 1 || any->type_url[ulen - nlen - 1] != '/' ||
            strcmp(any->type_url + ulen - nlen, desc->name) != 0)
            continue;
        if (!depth_ok(desc, any->value.data, any->value.data + any->value.len, TC_MAX_PROTO_DEPTH)) return NULL;
        return protobuf_c_message_unpack(desc, NULL, any->value.len, any->value.data);
    }
    return NULL;
}

/* ------------------------------------------------- protobuf nesting depth */

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end) return false;
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

static bool depth_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end, int left) {
    if (left <= 0) return false;
    while (p < end) {
        uint64_t key;
        if (!read_varint(&p, end, &key)) return false;
        uint32_t field = (uint32_t)(key >> 3);
        uint64_t v;
        switch (key & 7) {
        case 0:
            if (!read_varint(&p, end, &v)) return false;
            break;
        case 1:
            if ((size_t)(end - p) < 8) return false;
            p += 8;
            break;
        case 5:
            if ((size_t)(end - p) < 4) return false;
            p += 4;
            break;
        case 2: {
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p)) return false;
            const ProtobufCFieldDescriptor *f = desc ? protobuf_c_message_descriptor_get_field(desc, field) : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                !depth_ok((const ProtobufCMessageDescriptor *)f->descriptor, p, p + v, left - 1))
                return false;
            p += v;
            break;
        }
        default:
            return false; /* groups (3, 4) are not used by these protos */
        }
    }
    return true;
}

bool tc_pb_depth_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len, int max_depth) {
    return depth_ok(desc, data, data + len, max_depth);
}
