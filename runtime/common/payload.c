/*
 * payload.c - Lua values <-> canonical JSON <-> temporal.api.common.v1.Payload.
 *
 * Canonical JSON (what replay compares byte for byte): no whitespace, object
 * keys sorted by byte order, integers as integers, floats in the shortest
 * text that reads back to the same double and always with a '.' or an
 * exponent, so 2.0 is written "2.0" and comes back as a Lua float.
 *
 * JSON text is parsed by a strict recursive-descent parser into a small DOM
 * (plain C, no Lua): the DOM is then pushed into Lua, or re-emitted
 * canonically for payload_from_json. Everything that touches a lua_State runs
 * inside a private lua_pcall, because Lua API calls that allocate can raise
 * memory errors; C-side scratch memory lives in a struct owned by the caller
 * of that pcall and is freed whatever happens. Tables are read with raw
 * access only, so no metamethod ever runs.
 *
 * Number text relies on the C locale for LC_NUMERIC ('.' as the decimal
 * point), which jorch never changes.
 */
#include "common/common.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

const payload_limits payload_default_limits = {
    .max_depth = 64,
    .max_bytes = (size_t)4 << 20,
};

/* The converters recurse in C once per nesting level, so whatever max_depth
 * says, nesting stops here to protect the C stack. */
#define PAYLOAD_DEPTH_CAP 1000

static const char ENC_KEY[] = "encoding";
static const char ENC_JSON_PLAIN[] = "json/plain";
static const char ENC_JSON_PROTOBUF[] = "json/protobuf";
static const char ENC_BINARY_NULL[] = "binary/null";
static const char ENC_BINARY_PLAIN[] = "binary/plain";

typedef Temporal__Api__Common__V1__Payload Payload;
typedef Temporal__Api__Common__V1__Payloads Payloads;
typedef Temporal__Api__Common__V1__Payload__MetadataEntry MetadataEntry;

/* A zero field (e.g. a zero-initialised config) means the default. */
static payload_limits effective_limits(const payload_limits *lim) {
    payload_limits l = lim ? *lim : payload_default_limits;
    if (l.max_depth == 0) l.max_depth = payload_default_limits.max_depth;
    if (l.max_bytes == 0) l.max_bytes = payload_default_limits.max_bytes;
    if (l.max_depth > PAYLOAD_DEPTH_CAP) l.max_depth = PAYLOAD_DEPTH_CAP;
    return l;
}

static void jbuf_truncate(jbuf *b, size_t len) {
    if (b->len > len) {
        b->len = len;
        b->data[len] = '\0';
    }
}

/* Grow *p (an array of *cap elements of size sz) so it holds at least need. */
static int grow_array(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (!size_mul(ncap, 2, &ncap)) return -1;
    }
    size_t bytes;
    if (!size_mul(ncap, sz, &bytes)) return -1;
    void *np = realloc(*p, bytes);
    if (!np) return -1;
    *p = np;
    *cap = ncap;
    return 0;
}

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 if there is none. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    }
    return len;
}

/* True if s is valid UTF-8; otherwise *bad is the offset of the first bad byte. */
static bool utf8_valid(const char *s, size_t len, size_t *bad) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_seq(u + i, len - i);
        if (n == 0) {
            *bad = i;
            return false;
        }
        i += n;
    }
    return true;
}

size_t utf8_char_len(const char *s, size_t n) { return n ? utf8_seq((const unsigned char *)s, n) : 0; }

static size_t utf8_put(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ------------------------------------------------------------ JSON paths */

/* One level of a JSON path: how the value being worked on is reached from
 * the container at this level. Keys live in an arena owned by the caller
 * (offsets, because the arena may move). */
enum { SEG_NONE, SEG_INDEX, SEG_KEY };
typedef struct seg {
    const void *table; /* encoder: the Lua table at this level (cycle check) */
    int kind;
    size_t index; /* 0-based, as JSON paths count */
    size_t key_off, key_len;
} seg;

typedef struct path {
    seg *segs;
    size_t n, cap;
} path;

static int path_push(path *p, const void *table) {
    if (grow_array((void **)&p->segs, &p->cap, p->n + 1, sizeof *p->segs) != 0) return -1;
    p->segs[p->n] = (seg){.table = table, .kind = SEG_NONE};
    p->n++;
    return 0;
}

/* Append n bytes to buf (capacity cap, NUL-terminated), dropping what does
 * not fit without splitting a UTF-8 character. */
static void text_add(char *buf, size_t cap, size_t *len, const char *s, size_t n) {
    size_t room = cap - 1 - *len;
    if (n > room) {
        n = room;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
}

static bool is_identifier(const char *k, size_t len) {
    if (len == 0) return false;
    for (size_t i = 0; i < len; i++) {
        char c = k[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

/* "$.a[2]["odd key"]" for the first n segments; long keys are shortened. */
static void path_format(const seg *segs, size_t n, const char *arena, char *buf, size_t cap) {
    enum { KEY_SHOWN = 64 };
    size_t len = 0;
    buf[0] = '\0';
    text_add(buf, cap, &len, "$", 1);
    for (size_t i = 0; i < n; i++) {
        const seg *s = &segs[i];
        if (s->kind == SEG_INDEX) {
            char t[32];
            int k = snprintf(t, sizeof t, "[%zu]", s->index);
            text_add(buf, cap, &len, t, (size_t)k);
        } else if (s->kind == SEG_KEY) {
            /* no arena yet when every key so far was empty: no arithmetic on NULL */
            const char *key = arena != NULL ? arena + s->key_off : "";
            size_t klen = arena != NULL ? s->key_len : 0;
            if (is_identifier(key, klen)) {
                text_add(buf, cap, &len, ".", 1);
                text_add(buf, cap, &len, key, klen);
                continue;
            }
            bool cut = klen > KEY_SHOWN;
            if (cut) {
                klen = KEY_SHOWN;
                while (klen > 0 && ((unsigned char)key[klen] & 0xC0) == 0x80) klen--;
            }
            text_add(buf, cap, &len, "[\"", 2);
            for (size_t j = 0; j < klen; j++) {
                unsigned char c = (unsigned char)key[j];
                char esc[8];
                if (c == '"' || c == '\\') {
                    esc[0] = '\\';
                    esc[1] = (char)c;
                    text_add(buf, cap, &len, esc, 2);
                } else if (c < 0x20) {
                    int k = snprintf(esc, sizeof esc, "\\u%04x", c);
                    text_add(buf, cap, &len, esc, (size_t)k);
                } else {
                    text_add(buf, cap, &len, key + j, 1);
                }
            }
            if (cut) text_add(buf, cap, &len, "...", 3);
            text_add(buf, cap, &len, "\"]", 2);
        }
    }
}

/* ------------------------------------------------- canonical JSON writer */

/* Output into a caller's jbuf, counting bytes from base against max. */
typedef struct jw {
    jbuf *out;
    size_t base;
    size_t max;
} jw;

enum { JW_OK = 0, JW_TOO_LARGE = -1, JW_FULL = -2, JW_NOMEM = -3 };

static int jw_put(jw *w, const void *p, size_t n) {
    size_t total;
    if (!size_add(w->out->len - w->base, n, &total) || total > w->max) return JW_TOO_LARGE;
    if (jbuf_append(w->out, p, n) != 0) {
        size_t need;
        if (!size_add(w->out->len, n, &need) || need > w->out->max) return JW_FULL;
        return JW_NOMEM;
    }
    return JW_OK;
}

static int jw_error(int rc, jerr *err, int code, const char *where, size_t max) {
    if (rc == JW_TOO_LARGE)
        return jerr_set(err, code,
                        "%s: the JSON is larger than %zu bytes (max_bytes); pass less data, "
                        "e.g. keep large values elsewhere and pass a reference",
                        where, max);
    if (rc == JW_FULL)
        return jerr_set(err, code, "%s: the JSON does not fit in the output buffer", where);
    return jerr_oom(err, "writing JSON");
}

static int jw_int(jw *w, long long v) {
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld", v);
    return jw_put(w, buf, (size_t)n);
}

/* Shortest of %.15g/%.16g/%.17g that reads back equal; a '.0' is added to
 * integral-looking text so the value stays a float when decoded. d is finite. */
static size_t format_double(double d, char buf[48]) {
    static const char *const fmts[] = {"%.15g", "%.16g", "%.17g"};
    int n = 0;
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        n = snprintf(buf, 48, fmts[i], d);
        if (strtod(buf, NULL) == d) break;
    }
    if (strspn(buf, "-0123456789") == (size_t)n) {
        memcpy(buf + n, ".0", 3);
        n += 2;
    }
    return (size_t)n;
}

static int jw_double(jw *w, double d) {
    char buf[48];
    size_t n = format_double(d, buf);
    return jw_put(w, buf, n);
}

/* s must be valid UTF-8: only '"', '\\' and control characters are escaped. */
static int jw_string(jw *w, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    int rc = jw_put(w, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < len && rc == JW_OK; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        rc = jw_put(w, s + run, i - run);
        if (rc == JW_OK) rc = jw_put(w, esc, n);
        run = i + 1;
    }
    if (rc == JW_OK && len > run) rc = jw_put(w, s + run, len - run); /* s may be NULL when len is 0 */
    if (rc == JW_OK) rc = jw_put(w, "\"", 1);
    return rc;
}

/* Object keys, sorted by bytes (a shorter prefix first); ties broken by
 * node so the last duplicate of a JSON key sorts last. */
typedef struct keyref {
    const char *ptr;
    size_t off, len;
    size_t node;
} keyref;

static int keyref_cmp(const void *a, const void *b) {
    const keyref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->ptr, y->ptr, n) : 0;
    if (c != 0) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    if (x->node != y->node) return x->node < y->node ? -1 : 1;
    return 0;
}

/* ------------------------------------------------------- Lua protection */

static int lua_status_error(lua_State *L, int status, const char *what, jerr *err) {
    if (status == LUA_ERRMEM)
        return jerr_set(err, JERR_FAILED,
                        "not enough Lua memory while %s (is the workflow memory limit too low?)",
                        what);
    const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "non-string error";
    return jerr_set(err, JERR_INTERNAL, "Lua error while %s: %s", what, m);
}

/* Call f(ud [, copy of the value at value_idx]) under lua_pcall with
 * nresults results; on failure nothing is left on the stack. */
static int run_protected(lua_State *L, lua_CFunction f, void *ud, int value_idx, int nresults,
                         const char *what, jerr *err) {
    if (!lua_checkstack(L, 3 + nresults))
        return jerr_set(err, JERR_FAILED, "Lua stack overflow while %s", what);
    lua_pushcfunction(L, f);
    lua_pushlightuserdata(L, ud);
    int nargs = 1;
    if (value_idx != 0) {
        lua_pushvalue(L, value_idx);
        nargs = 2;
    }
    int status = lua_pcall(L, nargs, nresults, 0);
    if (status == LUA_OK) return 0;
    lua_status_error(L, status, what, err);
    lua_pop(L, 1);
    return -1;
}

/* ------------------------------------------------------ Lua -> JSON */

typedef struct encoder {
    lua_State *L;
    jw w;
    size_t max_depth;
    path path;     /* enclosing tables and how the current value is reached */
    char *keys;    /* copies of the keys of the objects being written */
    size_t keys_len, keys_cap;
    keyref *refs;  /* stack of those keys, one run per open object */
    size_t nrefs, refs_cap;
    jerr *err;
    int rc;
} encoder;

static int enc_fail(encoder *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int enc_fail(encoder *e, int code, const char *fmt, ...) {
    char where[400], msg[600];
    path_format(e->path.segs, e->path.n, e->keys, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jerr_set(e->err, code, "%s: %s", where, msg);
}

static int enc_check(encoder *e, int rc) {
    if (rc == JW_OK) return 0;
    char where[400];
    path_format(e->path.segs, e->path.n, e->keys, where, sizeof where);
    return jw_error(rc, e->err, JERR_FAILED, where, e->w.max);
}

static int enc_put(encoder *e, const char *s, size_t n) { return enc_check(e, jw_put(&e->w, s, n)); }

static int enc_string(encoder *e, const char *s, size_t len, const char *what) {
    size_t bad;
    if (!utf8_valid(s, len, &bad))
        return enc_fail(e, JERR_FAILED,
                        "%s is not valid UTF-8 (byte 0x%02x at offset %zu); JSON text must be "
                        "UTF-8, so encode binary data first (e.g. base64)",
                        what, (unsigned char)s[bad], bad);
    return enc_check(e, jw_string(&e->w, s, len));
}

static int enc_number(encoder *e, int idx) {
    lua_State *L = e->L;
    if (lua_isinteger(L, idx)) return enc_check(e, jw_int(&e->w, (long long)lua_tointeger(L, idx)));
    double d = (double)lua_tonumber(L, idx);
    if (isnan(d)) return enc_fail(e, JERR_FAILED, "NaN cannot be converted to JSON");
    if (isinf(d))
        return enc_fail(e, JERR_FAILED, "%s cannot be converted to JSON", d > 0 ? "inf" : "-inf");
    return enc_check(e, jw_double(&e->w, d));
}

static int enc_value(encoder *e, int idx);

/* An empty table is [] only if its metatable says __jsontype = "array". */
static int enc_empty(encoder *e, int idx) {
    lua_State *L = e->L;
    bool array = false;
    if (lua_getmetatable(L, idx)) {
        lua_pushliteral(L, "__jsontype");
        lua_rawget(L, -2);
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            array = len == 5 && memcmp(s, "array", 5) == 0;
        }
        lua_pop(L, 2);
    }
    return array ? enc_put(e, "[]", 2) : enc_put(e, "{}", 2);
}

static int enc_array(encoder *e, int idx, size_t n) {
    lua_State *L = e->L;
    if (enc_put(e, "[", 1) != 0) return -1;
    if (path_push(&e->path, lua_topointer(L, idx)) != 0) return jerr_oom(e->err, "writing JSON");
    size_t level = e->path.n - 1;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && enc_put(e, ",", 1) != 0) return -1;
        e->path.segs[level].kind = SEG_INDEX;
        e->path.segs[level].index = i;
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        if (enc_value(e, lua_gettop(L)) != 0) return -1;
        lua_pop(L, 1);
    }
    e->path.n--;
    return enc_put(e, "]", 1);
}

/* Keys [base, base+n) of e->refs were collected by enc_table. */
static int enc_object(encoder *e, int idx, size_t base, size_t n) {
    lua_State *L = e->L;
    for (size_t i = 0; i < n; i++) e->refs[base + i].ptr = e->keys + e->refs[base + i].off;
    qsort(e->refs + base, n, sizeof *e->refs, keyref_cmp);
    if (enc_put(e, "{", 1) != 0) return -1;
    if (path_push(&e->path, lua_topointer(L, idx)) != 0) return jerr_oom(e->err, "writing JSON");
    size_t level = e->path.n - 1;
    for (size_t i = 0; i < n; i++) {
        /* copied: nested objects may move e->refs and e->keys */
        keyref k = e->refs[base + i];
        if (i > 0 && enc_put(e, ",", 1) != 0) return -1;
        e->path.segs[level].kind = SEG_NONE;
        if (enc_string(e, e->keys + k.off, k.len, "an object key") != 0) return -1;
        if (enc_put(e, ":", 1) != 0) return -1;
        e->path.segs[level].kind = SEG_KEY;
        e->path.segs[level].key_off = k.off;
        e->path.segs[level].key_len = k.len;
        lua_pushlstring(L, e->keys + k.off, k.len);
        lua_rawget(L, idx);
        if (enc_value(e, lua_gettop(L)) != 0) return -1;
        lua_pop(L, 1);
    }
    e->path.n--;
    return enc_put(e, "}", 1);
}

/* Keys are copied (not borrowed from Lua) so that nothing a finalizer might
 * do to the table while we allocate can leave us with dangling pointers. */
static int enc_keep_key(encoder *e, const char *k, size_t len) {
    size_t need;
    if (!size_add(e->keys_len, len, &need) || !size_add(need, 1, &need) ||
        grow_array((void **)&e->keys, &e->keys_cap, need, 1) != 0 ||
        grow_array((void **)&e->refs, &e->refs_cap, e->nrefs + 1, sizeof *e->refs) != 0)
        return jerr_oom(e->err, "writing JSON");
    if (len) memcpy(e->keys + e->keys_len, k, len);
    e->refs[e->nrefs++] = (keyref){.off = e->keys_len, .len = len};
    e->keys_len += len;
    return 0;
}

static int enc_bad_key(encoder *e, int idx) {
    lua_State *L = e->L;
    int t = lua_type(L, idx);
    if (t == LUA_TNUMBER && !lua_isinteger(L, idx)) {
        char num[48];
        double d = (double)lua_tonumber(L, idx);
        snprintf(num, sizeof num, "%.14g", d);
        return enc_fail(e, JERR_FAILED,
                        "table key %s is not an integer or a string; JSON object keys must be "
                        "strings and arrays need keys 1..n",
                        num);
    }
    if (t == LUA_TBOOLEAN)
        return enc_fail(e, JERR_FAILED,
                        "table key %s (a boolean) cannot be converted to JSON; object keys must "
                        "be strings",
                        lua_toboolean(L, idx) ? "true" : "false");
    return enc_fail(e, JERR_FAILED,
                    "a table key of type %s cannot be converted to JSON; object keys must be "
                    "strings",
                    lua_typename(L, t));
}

static int enc_table(encoder *e, int idx) {
    lua_State *L = e->L;
    const void *self = lua_topointer(L, idx);
    if (e->path.n >= e->max_depth)
        return enc_fail(e, JERR_FAILED,
                        "tables are nested more than %zu levels deep (max_depth); flatten the value",
                        e->max_depth);
    for (size_t i = 0; i < e->path.n; i++) {
        if (e->path.segs[i].table != self) continue;
        char anc[300];
        path_format(e->path.segs, i, e->keys, anc, sizeof anc);
        return enc_fail(e, JERR_FAILED,
                        "the table contains itself (it is %s again); JSON cannot represent cycles",
                        anc);
    }
    if (!lua_checkstack(L, 4)) return enc_fail(e, JERR_FAILED, "Lua stack overflow");

    /* One pass over the keys decides array or object and collects the keys. */
    size_t keys_mark = e->keys_len, base = e->nrefs, n = 0, nint = 0;
    lua_Integer imin = LUA_MAXINTEGER, imax = LUA_MININTEGER;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        n++;
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t len;
            const char *k = lua_tolstring(L, -2, &len);
            if (enc_keep_key(e, k, len) != 0) return -1;
        } else if (lua_isinteger(L, -2)) {
            lua_Integer k = lua_tointeger(L, -2);
            nint++;
            if (k < imin) imin = k;
            if (k > imax) imax = k;
        } else {
            return enc_bad_key(e, lua_gettop(L) - 1);
        }
        lua_pop(L, 1);
    }
    size_t nstr = e->nrefs - base;
    int rc;
    if (n == 0) {
        rc = enc_empty(e, idx);
    } else if (nstr > 0 && nint > 0) {
        rc = enc_fail(e, JERR_FAILED,
                      "the table mixes array items (integer keys) and object fields (string "
                      "keys); JSON needs one or the other");
    } else if (nint > 0 && imin < 1) {
        rc = enc_fail(e, JERR_FAILED,
                      "the table has integer key %lld; JSON arrays need keys 1..n",
                      (long long)imin);
    } else if (nint > 0 && (lua_Unsigned)imax != (lua_Unsigned)n) {
        rc = enc_fail(e, JERR_FAILED,
                      "the array is sparse: %zu items but the largest key is %lld; JSON arrays "
                      "need keys 1..n without holes (a nil cannot be stored in a Lua table)",
                      n, (long long)imax);
    } else if (nint > 0) {
        rc = enc_array(e, idx, n);
    } else {
        rc = enc_object(e, idx, base, nstr);
    }
    e->nrefs = base;
    e->keys_len = keys_mark;
    return rc;
}

static int enc_value(encoder *e, int idx) {
    lua_State *L = e->L;
    int t = lua_type(L, idx);
    switch (t) {
    case LUA_TNONE:
    case LUA_TNIL:
        return enc_put(e, "null", 4);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? enc_put(e, "true", 4) : enc_put(e, "false", 5);
    case LUA_TNUMBER:
        return enc_number(e, idx);
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        return enc_string(e, s, len, "the string");
    }
    case LUA_TTABLE:
        return enc_table(e, idx);
    default:
        return enc_fail(e, JERR_FAILED,
                        "a %s cannot be converted to JSON (only nil, booleans, numbers, strings "
                        "and tables can)",
                        lua_typename(L, t));
    }
}

static int enc_protected(lua_State *L) {
    encoder *e = lua_touserdata(L, 1);
    e->L = L;
    e->rc = enc_value(e, 2);
    return 0;
}

int payload_lua_to_json(lua_State *L, int idx, const payload_limits *lim, jbuf *out, jerr *err) {
    payload_limits l = effective_limits(lim);
    encoder e;
    memset(&e, 0, sizeof e);
    e.w = (jw){.out = out, .base = out->len, .max = l.max_bytes};
    e.max_depth = l.max_depth;
    e.err = err;
    e.rc = -1;
    idx = lua_absindex(L, idx);
    int rc = run_protected(L, enc_protected, &e, idx, 0, "converting a value to JSON", err);
    free(e.path.segs);
    free(e.keys);
    free(e.refs);
    if (rc != 0 || e.rc != 0) {
        jbuf_truncate(out, e.w.base);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------ JSON -> DOM */

enum { JN_NULL, JN_FALSE, JN_TRUE, JN_INT, JN_FLOAT, JN_STRING, JN_ARRAY, JN_OBJECT };

typedef struct jnode {
    int type;
    size_t next;             /* next sibling; 0 = none (node 0, the root, is nobody's sibling) */
    size_t key_off, key_len; /* member key in the arena, for object members */
    union {
        long long i;
        double d;
        struct {
            size_t off, len;
        } s;
        struct {
            size_t first, count;
        } c;
    } u;
} jnode;

/* Nodes and the bytes of all strings and keys (unescaped). */
typedef struct jdom {
    jnode *nodes;
    size_t n, cap;
    char *arena;
    size_t alen, acap;
    bool has_array;
} jdom;

/* Text at offset off of the arena. An empty document has no arena: pointer
 * arithmetic on NULL is undefined even for offset 0, so "" stands in. */
static const char *arena_at(const jdom *d, size_t off) { return d->arena ? d->arena + off : ""; }

static void dom_free(jdom *d) {
    free(d->nodes);
    free(d->arena);
    memset(d, 0, sizeof *d);
}

typedef struct jparser {
    const unsigned char *s;
    size_t len, pos;
    size_t max_depth;
    jdom *dom;
    path path;
    jerr *err;
} jparser;

static int parse_fail(jparser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int parse_fail(jparser *p, const char *fmt, ...) {
    char where[400], msg[600];
    path_format(p->path.segs, p->path.n, p->dom->arena, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jerr_set(p->err, JERR_USAGE, "%s: %s", where, msg);
}

/* A syntax error at p->pos, with its line and column (both from 1). */
static int parse_syntax(jparser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int parse_syntax(jparser *p, const char *fmt, ...) {
    char msg[500];
    size_t line = 1, col = 1;
    for (size_t i = 0; i < p->pos && i < p->len; i++) {
        if (p->s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return parse_fail(p, "invalid JSON at line %zu, column %zu: %s", line, col, msg);
}

static int parse_oom(jparser *p) { return jerr_oom(p->err, "parsing JSON"); }

static int peek(const jparser *p) { return p->pos < p->len ? p->s[p->pos] : -1; }

static void skip_ws(jparser *p) {
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int dom_node(jparser *p, int type, size_t *out) {
    jdom *d = p->dom;
    if (grow_array((void **)&d->nodes, &d->cap, d->n + 1, sizeof *d->nodes) != 0)
        return parse_oom(p);
    memset(&d->nodes[d->n], 0, sizeof d->nodes[0]);
    d->nodes[d->n].type = type;
    *out = d->n++;
    return 0;
}

static int arena_put(jparser *p, const void *s, size_t n) {
    jdom *d = p->dom;
    size_t need;
    if (!size_add(d->alen, n, &need) || grow_array((void **)&d->arena, &d->acap, need, 1) != 0)
        return parse_oom(p);
    if (n) memcpy(d->arena + d->alen, s, n);
    d->alen += n;
    return 0;
}

static int hex4(const jparser *p, size_t at, uint32_t *out) {
    if (at > p->len || p->len - at < 4) return -1;
    uint32_t v = 0;
    for (size_t i = 0; i < 4; i++) {
        unsigned char c = p->s[at + i];
        uint32_t d;
        if (c >= '0' && c <= '9') {
            d = (uint32_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            d = (uint32_t)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            d = (uint32_t)(c - 'A' + 10);
        } else {
            return -1;
        }
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

/* p->pos is at a backslash inside a string. */
static int parse_escape(jparser *p) {
    size_t start = p->pos;
    if (p->len - p->pos < 2) return parse_syntax(p, "unterminated string");
    unsigned char c = p->s[p->pos + 1];
    char ch;
    switch (c) {
    case '"': ch = '"'; break;
    case '\\': ch = '\\'; break;
    case '/': ch = '/'; break;
    case 'b': ch = '\b'; break;
    case 'f': ch = '\f'; break;
    case 'n': ch = '\n'; break;
    case 'r': ch = '\r'; break;
    case 't': ch = '\t'; break;
    case 'u': {
        uint32_t cp, lo;
        if (hex4(p, p->pos + 2, &cp) != 0)
            return parse_syntax(p, "\\u must be followed by four hex digits");
        p->pos += 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            p->pos = start;
            return parse_syntax(p, "unpaired surrogate \\u%04x in a string", (unsigned)cp);
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            bool paired = p->len - p->pos >= 6 && p->s[p->pos] == '\\' &&
                          p->s[p->pos + 1] == 'u' && hex4(p, p->pos + 2, &lo) == 0 &&
                          lo >= 0xDC00 && lo <= 0xDFFF;
            if (!paired) {
                p->pos = start;
                return parse_syntax(p, "unpaired surrogate \\u%04x in a string", (unsigned)cp);
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p->pos += 6;
        }
        char buf[4];
        return arena_put(p, buf, utf8_put(cp, buf));
    }
    default:
        if (c >= 0x20 && c < 0x7F) return parse_syntax(p, "invalid escape \\%c in a string", c);
        return parse_syntax(p, "invalid escape in a string");
    }
    p->pos += 2;
    return arena_put(p, &ch, 1);
}

/* p->pos is at the opening quote; the unescaped bytes go to the arena. */
static int parse_string(jparser *p, size_t *off, size_t *len) {
    size_t start = p->dom->alen;
    p->pos++;
    for (;;) {
        if (p->pos >= p->len) return parse_syntax(p, "unterminated string");
        unsigned char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c == '\\') {
            if (parse_escape(p) != 0) return -1;
            continue;
        }
        if (c < 0x20)
            return parse_syntax(p, "control character 0x%02x in a string must be escaped", c);
        size_t run = p->pos;
        while (p->pos < p->len) {
            c = p->s[p->pos];
            if (c == '"' || c == '\\' || c < 0x20) break;
            if (c < 0x80) {
                p->pos++;
                continue;
            }
            size_t n = utf8_seq(p->s + p->pos, p->len - p->pos);
            if (n == 0) return parse_syntax(p, "a string is not valid UTF-8 (byte 0x%02x)", c);
            p->pos += n;
        }
        if (arena_put(p, p->s + run, p->pos - run) != 0) return -1;
    }
    *off = start;
    *len = p->dom->alen - start;
    return 0;
}

static bool is_digit(int c) { return c >= '0' && c <= '9'; }

/* Integers without fraction or exponent that fit int64 stay exact; the
 * rest go through strtod. */
static int parse_number(jparser *p, size_t *out) {
    size_t start = p->pos;
    bool neg = peek(p) == '-', integral = true;
    if (neg) p->pos++;
    if (!is_digit(peek(p))) return parse_syntax(p, "expected a digit after '-'");
    if (peek(p) == '0') {
        p->pos++;
        if (is_digit(peek(p))) return parse_syntax(p, "numbers cannot have leading zeros");
    }
    while (is_digit(peek(p))) p->pos++;
    if (peek(p) == '.') {
        integral = false;
        p->pos++;
        if (!is_digit(peek(p))) return parse_syntax(p, "expected a digit after '.'");
        while (is_digit(peek(p))) p->pos++;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        integral = false;
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-') p->pos++;
        if (!is_digit(peek(p))) return parse_syntax(p, "expected a digit in the exponent");
        while (is_digit(peek(p))) p->pos++;
    }
    const char *text = (const char *)p->s + start;
    size_t tlen = p->pos - start;
    if (integral) {
        uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, acc = 0;
        bool fits = true;
        for (size_t i = neg ? 1 : 0; i < tlen && fits; i++) {
            uint64_t d = (uint64_t)(text[i] - '0');
            if (acc > (limit - d) / 10) {
                fits = false;
            } else {
                acc = acc * 10 + d;
            }
        }
        if (fits) {
            if (dom_node(p, JN_INT, out) != 0) return -1;
            /* -2^63 has no positive counterpart: build it without overflow */
            p->dom->nodes[*out].u.i = neg ? (acc == 0 ? 0 : -(long long)(acc - 1) - 1) : (long long)acc;
            return 0;
        }
    }
    /* strtod needs a NUL-terminated copy; the arena tail is scratch here */
    size_t mark = p->dom->alen;
    if (arena_put(p, text, tlen) != 0 || arena_put(p, "", 1) != 0) return -1;
    errno = 0;
    double d = strtod(p->dom->arena + mark, NULL);
    p->dom->alen = mark;
    if (isinf(d)) {
        p->pos = start;
        return parse_syntax(p, "number %.*s%s is too large for a double", tlen > 40 ? 40 : (int)tlen,
                            text, tlen > 40 ? "..." : "");
    }
    if (dom_node(p, JN_FLOAT, out) != 0) return -1;
    p->dom->nodes[*out].u.d = d;
    return 0;
}

static int parse_value(jparser *p, size_t depth, size_t *out);

/* Link child after prev (or first) in container self. */
static void dom_link(jdom *d, size_t self, size_t *prev, size_t child) {
    if (d->nodes[self].u.c.count == 0) {
        d->nodes[self].u.c.first = child;
    } else {
        d->nodes[*prev].next = child;
    }
    d->nodes[self].u.c.count++;
    *prev = child;
}

static int parse_container(jparser *p, size_t depth, bool object, size_t *out) {
    if (depth >= p->max_depth)
        return parse_fail(p, "JSON nested more than %zu levels deep (max_depth)", p->max_depth);
    size_t self, prev = 0;
    if (dom_node(p, object ? JN_OBJECT : JN_ARRAY, &self) != 0) return -1;
    if (!object) p->dom->has_array = true;
    if (path_push(&p->path, NULL) != 0) return parse_oom(p);
    size_t level = p->path.n - 1;
    int close = object ? '}' : ']';
    p->pos++;
    skip_ws(p);
    if (peek(p) == close) {
        p->pos++;
    } else {
        for (;;) {
            size_t koff = 0, klen = 0, child;
            skip_ws(p);
            if (object) {
                if (peek(p) != '"')
                    return parse_syntax(p, "expected a string key");
                if (parse_string(p, &koff, &klen) != 0) return -1;
                skip_ws(p);
                if (peek(p) != ':') return parse_syntax(p, "expected ':' after an object key");
                p->pos++;
                p->path.segs[level] = (seg){.kind = SEG_KEY, .key_off = koff, .key_len = klen};
            } else {
                p->path.segs[level] =
                    (seg){.kind = SEG_INDEX, .index = p->dom->nodes[self].u.c.count};
            }
            if (parse_value(p, depth + 1, &child) != 0) return -1;
            p->dom->nodes[child].key_off = koff;
            p->dom->nodes[child].key_len = klen;
            dom_link(p->dom, self, &prev, child);
            p->path.segs[level].kind = SEG_NONE;
            skip_ws(p);
            if (peek(p) == ',') {
                p->pos++;
                continue;
            }
            if (peek(p) == close) {
                p->pos++;
                break;
            }
            return parse_syntax(p, object ? "expected ',' or '}' after an object member"
                                          : "expected ',' or ']' after an array item");
        }
    }
    p->path.n--;
    *out = self;
    return 0;
}

static int parse_literal(jparser *p, const char *word, int type, size_t *out) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return parse_syntax(p, "unexpected character '%c'", p->s[p->pos]);
    p->pos += n;
    return dom_node(p, type, out);
}

static int parse_value(jparser *p, size_t depth, size_t *out) {
    skip_ws(p);
    int c = peek(p);
    switch (c) {
    case -1:
        return parse_syntax(p, "expected a value, found the end of the text");
    case '{':
    case '[':
        return parse_container(p, depth, c == '{', out);
    case '"': {
        size_t off, len;
        if (parse_string(p, &off, &len) != 0 || dom_node(p, JN_STRING, out) != 0) return -1;
        p->dom->nodes[*out].u.s.off = off;
        p->dom->nodes[*out].u.s.len = len;
        return 0;
    }
    case 't':
        return parse_literal(p, "true", JN_TRUE, out);
    case 'f':
        return parse_literal(p, "false", JN_FALSE, out);
    case 'n':
        return parse_literal(p, "null", JN_NULL, out);
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, out);
        if (c > 0x20 && c < 0x7F) return parse_syntax(p, "unexpected character '%c'", c);
        return parse_syntax(p, "unexpected byte 0x%02x", (unsigned)c);
    }
}

/* Parse a whole JSON text (one value, optional whitespace around it). */
static int dom_parse(jdom *d, const char *json, size_t len, const payload_limits *l, jerr *err) {
    memset(d, 0, sizeof *d);
    if (len > l->max_bytes)
        return jerr_set(err, JERR_USAGE,
                        "the JSON text is %zu bytes, more than the %zu-byte limit (max_bytes)", len,
                        l->max_bytes);
    jparser p = {
        .s = (const unsigned char *)json, .len = len, .max_depth = l->max_depth, .dom = d, .err = err};
    size_t root;
    int rc = parse_value(&p, 0, &root);
    if (rc == 0) {
        skip_ws(&p);
        p.path.n = 0;
        if (p.pos < p.len) rc = parse_syntax(&p, "unexpected text after the JSON value");
    }
    free(p.path.segs);
    if (rc != 0) dom_free(d);
    return rc;
}

/* ------------------------------------------------------ DOM -> Lua */

/* Runs under lua_pcall: every push may raise. mt is the stack slot of the
 * metatable that marks arrays (so that [] stays [] when re-encoded). */
static void dom_push(lua_State *L, const jdom *d, size_t i, int mt) {
    const jnode *nd = &d->nodes[i];
    luaL_checkstack(L, 3, "decoding JSON");
    switch (nd->type) {
    case JN_NULL: lua_pushnil(L); break;
    case JN_FALSE: lua_pushboolean(L, 0); break;
    case JN_TRUE: lua_pushboolean(L, 1); break;
    case JN_INT: lua_pushinteger(L, (lua_Integer)nd->u.i); break;
    case JN_FLOAT: lua_pushnumber(L, (lua_Number)nd->u.d); break;
    case JN_STRING: lua_pushlstring(L, arena_at(d, nd->u.s.off), nd->u.s.len); break;
    case JN_ARRAY: {
        size_t n = nd->u.c.count, c = nd->u.c.first;
        lua_createtable(L, n > INT_MAX ? INT_MAX : (int)n, 0);
        for (size_t k = 1; k <= n; k++) {
            dom_push(L, d, c, mt);
            lua_rawseti(L, -2, (lua_Integer)k);
            c = d->nodes[c].next;
        }
        lua_pushvalue(L, mt);
        lua_setmetatable(L, -2);
        break;
    }
    default: { /* JN_OBJECT: later duplicates overwrite earlier ones, nulls remove */
        size_t n = nd->u.c.count, c = nd->u.c.first;
        lua_createtable(L, 0, n > INT_MAX ? INT_MAX : (int)n);
        for (size_t k = 0; k < n; k++) {
            lua_pushlstring(L, arena_at(d, d->nodes[c].key_off), d->nodes[c].key_len);
            dom_push(L, d, c, mt);
            lua_rawset(L, -3);
            c = d->nodes[c].next;
        }
        break;
    }
    }
}

static int dom_push_protected(lua_State *L) {
    const jdom *d = lua_touserdata(L, 1);
    int mt = 0;
    if (d->has_array) {
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "__jsontype");
        lua_pushliteral(L, "array");
        lua_rawset(L, -3);
        mt = lua_gettop(L);
    }
    dom_push(L, d, 0, mt);
    return 1;
}

int payload_json_to_lua(lua_State *L, const char *json, size_t len, const payload_limits *lim,
                        jerr *err) {
    payload_limits l = effective_limits(lim);
    jdom d;
    if (dom_parse(&d, json, len, &l, err) != 0) return -1;
    int rc = run_protected(L, dom_push_protected, &d, 0, 1, "decoding JSON into Lua", err);
    dom_free(&d);
    return rc;
}

/* ------------------------------------------------------ DOM -> canonical JSON */

static int dom_emit(jw *w, const jdom *d, size_t i) {
    const jnode *nd = &d->nodes[i];
    switch (nd->type) {
    case JN_NULL: return jw_put(w, "null", 4);
    case JN_FALSE: return jw_put(w, "false", 5);
    case JN_TRUE: return jw_put(w, "true", 4);
    case JN_INT: return jw_int(w, nd->u.i);
    case JN_FLOAT: return jw_double(w, nd->u.d);
    case JN_STRING: return jw_string(w, arena_at(d, nd->u.s.off), nd->u.s.len);
    case JN_ARRAY: {
        int rc = jw_put(w, "[", 1);
        size_t c = nd->u.c.first;
        for (size_t k = 0; k < nd->u.c.count && rc == JW_OK; k++) {
            if (k > 0) rc = jw_put(w, ",", 1);
            if (rc == JW_OK) rc = dom_emit(w, d, c);
            c = d->nodes[c].next;
        }
        return rc == JW_OK ? jw_put(w, "]", 1) : rc;
    }
    default: {
        size_t n = nd->u.c.count, c = nd->u.c.first, bytes;
        keyref *keys = NULL;
        if (n > 0) {
            if (!size_mul(n, sizeof *keys, &bytes)) return JW_NOMEM;
            keys = malloc(bytes);
            if (!keys) return JW_NOMEM;
        }
        for (size_t k = 0; k < n; k++) {
            keys[k] = (keyref){.ptr = arena_at(d, d->nodes[c].key_off),
                               .len = d->nodes[c].key_len,
                               .node = c};
            c = d->nodes[c].next;
        }
        if (n > 1) qsort(keys, n, sizeof *keys, keyref_cmp);
        int rc = jw_put(w, "{", 1);
        bool first = true;
        for (size_t k = 0; k < n && rc == JW_OK; k++) {
            /* of duplicate keys the last one wins, as when decoding into Lua */
            if (k + 1 < n && keys[k + 1].len == keys[k].len &&
                memcmp(keys[k + 1].ptr, keys[k].ptr, keys[k].len) == 0)
                continue;
            if (!first) rc = jw_put(w, ",", 1);
            first = false;
            if (rc == JW_OK) rc = jw_string(w, keys[k].ptr, keys[k].len);
            if (rc == JW_OK) rc = jw_put(w, ":", 1);
            if (rc == JW_OK) rc = dom_emit(w, d, keys[k].node);
        }
        free(keys);
        return rc == JW_OK ? jw_put(w, "}", 1) : rc;
    }
    }
}

/* ------------------------------------------------------ Payload messages */

/* A Payload with one metadata entry, encoding; takes data (malloc'ed or
 * NULL) whatever happens. */
static Payload *payload_build(const char *encoding, char *data, size_t len) {
    size_t elen = strlen(encoding);
    Payload *p = malloc(sizeof *p);
    MetadataEntry **slots = malloc(sizeof *slots);
    MetadataEntry *e = malloc(sizeof *e);
    char *key = jstrdup(ENC_KEY);
    uint8_t *value = malloc(elen);
    if (!p || !slots || !e || !key || !value) {
        free(p);
        free(slots);
        free(e);
        free(key);
        free(value);
        free(data);
        return NULL;
    }
    temporal__api__common__v1__payload__init(p);
    temporal__api__common__v1__payload__metadata_entry__init(e);
    memcpy(value, encoding, elen);
    e->key = key;
    e->value.data = value;
    e->value.len = elen;
    slots[0] = e;
    p->n_metadata = 1;
    p->metadata = slots;
    if (len == 0) {
        free(data);
        data = NULL;
    }
    p->data.data = (uint8_t *)data;
    p->data.len = len;
    return p;
}

Payload *payload_new_json(const char *json, size_t len) {
    char *copy = NULL;
    if (len > 0) {
        copy = malloc(len);
        if (!copy) return NULL;
        memcpy(copy, json, len);
    }
    return payload_build(ENC_JSON_PLAIN, copy, len);
}

/* The encoding metadata value, or NULL if there is none. */
static const ProtobufCBinaryData *payload_encoding(const Payload *p) {
    for (size_t i = 0; i < p->n_metadata; i++) {
        const MetadataEntry *e = p->metadata[i];
        if (e && e->key && strcmp(e->key, ENC_KEY) == 0) return &e->value;
    }
    return NULL;
}

static bool encoding_is(const ProtobufCBinaryData *enc, const char *name) {
    size_t n = strlen(name);
    return enc->len == n && (n == 0 || memcmp(enc->data, name, n) == 0);
}

/* The encoding as printable text for messages (it comes from the wire). */
static void encoding_text(const ProtobufCBinaryData *enc, char buf[80]) {
    size_t n = 0;
    for (size_t i = 0; i < enc->len && n < 64; i++) {
        unsigned char c = enc->data[i];
        buf[n++] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
    }
    if (enc->len > 64) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
}

static int no_encoding_error(jerr *err) {
    return jerr_set(err, JERR_FAILED,
                    "the payload has no \"encoding\" metadata, so jorch cannot tell how to read it");
}

static int unsupported_encoding(const ProtobufCBinaryData *enc, jerr *err) {
    char name[80];
    encoding_text(enc, name);
    return jerr_set(err, JERR_FAILED,
                    "payload encoding \"%s\" is not supported (jorch reads json/plain, "
                    "json/protobuf, binary/plain and binary/null)",
                    name);
}

Payload *payload_from_lua(lua_State *L, int idx, const payload_limits *lim, jerr *err) {
    idx = lua_absindex(L, idx);
    if (lua_isnoneornil(L, idx)) {
        Payload *p = payload_build(ENC_BINARY_NULL, NULL, 0);
        if (!p) jerr_oom(err, "building a payload");
        return p;
    }
    jbuf b;
    jbuf_init(&b, 0);
    if (payload_lua_to_json(L, idx, lim, &b, err) != 0) {
        jbuf_free(&b);
        return NULL;
    }
    size_t len;
    char *data = jbuf_take(&b, &len);
    Payload *p = data ? payload_build(ENC_JSON_PLAIN, data, len) : NULL;
    if (!p) jerr_oom(err, "building a payload");
    return p;
}

typedef struct lstring {
    const char *s;
    size_t len;
} lstring;

static int push_string_protected(lua_State *L) {
    const lstring *s = lua_touserdata(L, 1);
    lua_pushlstring(L, s->len ? s->s : "", s->len);
    return 1;
}

int payload_to_lua(lua_State *L, const Payload *p, const payload_limits *lim, jerr *err) {
    if (!p) {
        if (!lua_checkstack(L, 1)) return jerr_set(err, JERR_FAILED, "Lua stack overflow");
        lua_pushnil(L);
        return 0;
    }
    const ProtobufCBinaryData *enc = payload_encoding(p);
    if (!enc) return no_encoding_error(err);
    const char *data = (const char *)p->data.data;
    size_t len = p->data.len;
    if (encoding_is(enc, ENC_BINARY_NULL)) {
        if (!lua_checkstack(L, 1)) return jerr_set(err, JERR_FAILED, "Lua stack overflow");
        lua_pushnil(L);
        return 0;
    }
    if (encoding_is(enc, ENC_JSON_PLAIN) || encoding_is(enc, ENC_JSON_PROTOBUF)) {
        if (payload_json_to_lua(L, data, len, lim, err) != 0)
            return jerr_prefix(err, "reading a %s payload",
                               encoding_is(enc, ENC_JSON_PLAIN) ? ENC_JSON_PLAIN : ENC_JSON_PROTOBUF);
        return 0;
    }
    if (encoding_is(enc, ENC_BINARY_PLAIN)) {
        payload_limits l = effective_limits(lim);
        if (len > l.max_bytes)
            return jerr_set(err, JERR_FAILED,
                            "a binary/plain payload of %zu bytes is more than the %zu-byte limit "
                            "(max_bytes)",
                            len, l.max_bytes);
        lstring s = {data, len};
        return run_protected(L, push_string_protected, &s, 0, 1, "reading a binary/plain payload",
                             err);
    }
    return unsupported_encoding(enc, err);
}

Payloads *payloads_new(void) {
    Payloads *ps = malloc(sizeof *ps);
    if (ps) temporal__api__common__v1__payloads__init(ps);
    return ps;
}

/* On failure the caller still owns p. */
int payloads_add(Payloads *ps, Payload *p) {
    size_t n, bytes;
    if (!ps || !p || !size_add(ps->n_payloads, 1, &n) || !size_mul(n, sizeof *ps->payloads, &bytes))
        return -1;
    Payload **np = realloc(ps->payloads, bytes);
    if (!np) return -1;
    np[ps->n_payloads] = p;
    ps->payloads = np;
    ps->n_payloads = n;
    return 0;
}

Payloads *payloads_from_lua(lua_State *L, int first, int n, const payload_limits *lim, jerr *err) {
    first = lua_absindex(L, first);
    Payloads *ps = payloads_new();
    if (!ps) {
        jerr_oom(err, "building payloads");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        Payload *p = payload_from_lua(L, first + i, lim, err);
        if (!p) {
            if (n > 1) jerr_prefix(err, "value %d of %d", i + 1, n);
            protobuf_c_message_free_unpacked(&ps->base, NULL);
            return NULL;
        }
        if (payloads_add(ps, p) != 0) {
            protobuf_c_message_free_unpacked(&p->base, NULL);
            protobuf_c_message_free_unpacked(&ps->base, NULL);
            jerr_oom(err, "building payloads");
            return NULL;
        }
    }
    return ps;
}

int payloads_to_lua(lua_State *L, const Payloads *ps, const payload_limits *lim, int *pushed,
                    jerr *err) {
    *pushed = 0;
    size_t n = ps ? ps->n_payloads : 0;
    if (n == 0) return 0;
    if (n > INT_MAX - 8 || !lua_checkstack(L, (int)n + 8))
        return jerr_set(err, JERR_FAILED, "%zu payloads are too many values for the Lua stack", n);
    for (size_t i = 0; i < n; i++) {
        if (payload_to_lua(L, ps->payloads[i], lim, err) != 0) {
            lua_pop(L, (int)i);
            if (n > 1) jerr_prefix(err, "payload %zu of %zu", i + 1, n);
            return -1;
        }
    }
    *pushed = (int)n;
    return 0;
}

/* ------------------------------------------------------ Payload <-> JSON text */

Payload *payload_from_json(const char *json, size_t len, jerr *err) {
    payload_limits l = effective_limits(NULL);
    jdom d;
    if (dom_parse(&d, json, len, &l, err) != 0) return NULL;
    if (d.nodes[0].type == JN_NULL) {
        dom_free(&d);
        Payload *p = payload_build(ENC_BINARY_NULL, NULL, 0);
        if (!p) jerr_oom(err, "building a payload");
        return p;
    }
    jbuf b;
    jbuf_init(&b, 0);
    jw w = {.out = &b, .base = 0, .max = l.max_bytes};
    int rc = dom_emit(&w, &d, 0);
    dom_free(&d);
    if (rc != JW_OK) {
        jbuf_free(&b);
        jw_error(rc, err, JERR_USAGE, "$", l.max_bytes);
        return NULL;
    }
    size_t n;
    char *data = jbuf_take(&b, &n);
    Payload *p = data ? payload_build(ENC_JSON_PLAIN, data, n) : NULL;
    if (!p) jerr_oom(err, "building a payload");
    return p;
}

/* The parser's message from its position on: "at line 1, column 2:
 * expected a string key" (without the lead "$.path: invalid JSON "). */
static const char *json_error_text(const char *msg) {
    const char *at = strstr(msg, "invalid JSON at ");
    return at ? at + strlen("invalid JSON ") : msg;
}

Payload *payload_from_arg(const char *arg, bool *looks_json, jerr *err) {
    *looks_json = false;
    jerr perr = {0};
    Payload *p = payload_from_json(arg, strlen(arg), &perr);
    if (p) return p;
    const char *t = arg + strspn(arg, " \t\r\n");
    if (*t == '{' || *t == '[' || *t == '"') {
        *looks_json = true;
        jerr_set(err, JERR_USAGE, "starts with '%c' but is not valid JSON: %s%s", *t, json_error_text(perr.msg),
                 *t == '{' ? ". Keys and strings need double quotes ('{\"autoProceed\": false}')" : "");
        return NULL;
    }
    /* the text as a JSON string */
    jbuf b;
    jbuf_init(&b, 16u << 20);
    int bad = jbuf_putc(&b, '"');
    for (const unsigned char *s = (const unsigned char *)arg; *s && !bad; s++) {
        if (*s == '"' || *s == '\\') bad = jbuf_putc(&b, '\\') || jbuf_putc(&b, (char)*s);
        else if (*s < 0x20) bad = jbuf_printf(&b, "\\u%04x", *s) < 0;
        else bad = jbuf_putc(&b, (char)*s);
    }
    if (bad || jbuf_putc(&b, '"') != 0) {
        jbuf_free(&b);
        jerr_set(err, JERR_USAGE, "is too long (over 16 MiB as a JSON string) or memory ran out");
        return NULL;
    }
    p = payload_from_json(b.data, b.len, err);
    jbuf_free(&b);
    if (!p) err->code = JERR_USAGE;
    return p;
}

static int out_put(jbuf *out, const char *s, size_t n, jerr *err) {
    jw w = {.out = out, .base = out->len, .max = SIZE_MAX};
    int rc = jw_put(&w, s, n);
    return rc == JW_OK ? 0 : jw_error(rc, err, JERR_FAILED, "writing payloads", SIZE_MAX);
}

int payload_to_json(const Payload *p, jbuf *out, jerr *err) {
    if (!p) return out_put(out, "null", 4, err);
    const ProtobufCBinaryData *enc = payload_encoding(p);
    if (!enc) return no_encoding_error(err);
    const char *data = (const char *)p->data.data;
    size_t len = p->data.len;
    if (encoding_is(enc, ENC_BINARY_NULL)) return out_put(out, "null", 4, err);
    if (encoding_is(enc, ENC_JSON_PLAIN) || encoding_is(enc, ENC_JSON_PROTOBUF)) {
        /* written as is, but only if it is JSON, so the output stays valid */
        payload_limits l = {.max_depth = PAYLOAD_DEPTH_CAP, .max_bytes = SIZE_MAX};
        jdom d;
        if (dom_parse(&d, data, len, &l, err) != 0) return jerr_prefix(err, "a JSON payload");
        dom_free(&d);
        return out_put(out, data, len, err);
    }
    if (encoding_is(enc, ENC_BINARY_PLAIN)) {
        size_t bad;
        if (!utf8_valid(data, len, &bad))
            return jerr_set(err, JERR_FAILED,
                            "a binary/plain payload of %zu bytes is not UTF-8 text (byte 0x%02x at "
                            "offset %zu), so it cannot be shown as JSON",
                            len, (unsigned char)data[bad], bad);
        size_t start = out->len;
        jw w = {.out = out, .base = start, .max = SIZE_MAX};
        int rc = jw_string(&w, len ? data : "", len);
        if (rc != JW_OK) {
            jbuf_truncate(out, start);
            return jw_error(rc, err, JERR_FAILED, "writing a binary/plain payload", SIZE_MAX);
        }
        return 0;
    }
    return unsupported_encoding(enc, err);
}

int payloads_to_json(const Payloads *ps, bool single_unwrap, jbuf *out, jerr *err) {
    size_t n = ps ? ps->n_payloads : 0;
    if (n == 0) return out_put(out, "null", 4, err);
    if (n == 1 && single_unwrap) return payload_to_json(ps->payloads[0], out, err);
    size_t start = out->len;
    if (out_put(out, "[", 1, err) != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        if ((i > 0 && out_put(out, ",", 1, err) != 0) ||
            payload_to_json(ps->payloads[i], out, err) != 0) {
            jbuf_truncate(out, start);
            return jerr_prefix(err, "payload %zu of %zu", i + 1, n);
        }
    }
    if (out_put(out, "]", 1, err) != 0) {
        jbuf_truncate(out, start);
        return -1;
    }
    return 0;
}
