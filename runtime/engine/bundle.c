/*
 * bundle.c - what a script version is made of, read from files: the script
 * and the workflow modules it requires by a literal name (a lexer over the
 * Lua source finds `require "name"` outside comments and strings), named
 * by one SHA-256 over them; and the declarations in a script's header
 * (`-- jorch: version LABEL`, `-- jorch: auto_upgrade`). Both backends name
 * and pin versions with these (runtime/store, runtime/temporal).
 */
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ header */

void engine_script_label(const char *src, size_t len, char *out, size_t outlen) {
    static const char tag[] = "-- jorch: version ";
    const size_t tlen = sizeof tag - 1;
    if (outlen) out[0] = '\0';
    size_t pos = 0;
    /* only the header: a label deep inside the file is not a declaration */
    for (int line = 0; line < 20 && pos < len; line++) {
        const char *p = src + pos;
        const char *nl = memchr(p, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - p) : len - pos;
        if (n > tlen && memcmp(p, tag, tlen) == 0) {
            size_t k = 0;
            for (size_t i = tlen; i < n && k + 1 < outlen; i++) {
                unsigned char c = (unsigned char)p[i];
                /* one word of [A-Za-z0-9._+-]: it is shown and put into JSON as is */
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '+' || c == '-'))
                    break;
                out[k++] = (char)c;
            }
            if (outlen) out[k] = '\0';
            return;
        }
        pos += n + 1;
    }
}

/* `-- jorch: auto_upgrade` among the first 20 lines. */
bool engine_script_auto_upgrade(const char *src, size_t len) {
    static const char tag[] = "-- jorch: auto_upgrade";
    const size_t tlen = sizeof tag - 1;
    size_t pos = 0;
    for (int line = 0; line < 20 && pos < len; line++) {
        const char *p = src + pos;
        const char *nl = memchr(p, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - p) : len - pos;
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\r' || p[n - 1] == '\t')) n--;
        if (n == tlen && memcmp(p, tag, tlen) == 0) return true;
        pos += (nl ? (size_t)(nl - p) : len - pos) + 1;
    }
    return false;
}

/* ------------------------------------------------------------ bundles */

#define BUNDLE_MAX_MODULES 256

void engine_bundle_free(engine_bundle *b) {
    for (size_t i = 0; i < b->n; i++) {
        free(b->m[i].name);
        free(b->m[i].chunkname);
        free(b->m[i].src);
    }
    free(b->m);
    b->m = NULL;
    b->n = b->cap = 0;
}

int engine_bundle_add(engine_bundle *b, const char *name, const char *chunkname, const char *src, size_t len,
                     jerr *err) {
    size_t at = 0;
    while (at < b->n && strcmp(b->m[at].name, name) < 0) at++;
    if (at < b->n && strcmp(b->m[at].name, name) == 0)
        return jerr_set(err, JERR_USAGE, "module '%s' appears twice in one script version", name);
    if (b->n >= BUNDLE_MAX_MODULES)
        return jerr_set(err, JERR_USAGE, "a script version may have at most %d modules", BUNDLE_MAX_MODULES);
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 8, bytes;
        if (!size_mul(nc, sizeof *b->m, &bytes)) return jerr_oom(err, "collecting a script's modules");
        engine_bundle_module *p = realloc(b->m, bytes);
        if (!p) return jerr_oom(err, "collecting a script's modules");
        b->m = p;
        b->cap = nc;
    }
    engine_bundle_module v = {.name = jstrdup(name), .chunkname = jstrdup(chunkname), .src = malloc(len + 1),
                             .len = len};
    if (!v.name || !v.chunkname || !v.src) {
        free(v.name);
        free(v.chunkname);
        free(v.src);
        return jerr_oom(err, "collecting a script's modules");
    }
    if (len) memcpy(v.src, src, len);
    v.src[len] = '\0';
    sha256_hex(src, len, v.sha);
    memmove(&b->m[at + 1], &b->m[at], (b->n - at) * sizeof *b->m);
    b->m[at] = v;
    b->n++;
    return 0;
}

int engine_bundle_digest(engine_bundle *b, jerr *err) {
    if (b->n == 0) {
        memcpy(b->digest, b->script_sha, sizeof b->digest);
        return 0;
    }
    jbuf t;
    jbuf_init(&t, (size_t)BUNDLE_MAX_MODULES * 1200 + 128);
    int bad = jbuf_puts(&t, "jorch-version 1\nscript ") | jbuf_puts(&t, b->script_sha) | jbuf_putc(&t, '\n');
    for (size_t i = 0; i < b->n; i++)
        bad |= jbuf_puts(&t, "module ") | jbuf_puts(&t, b->m[i].name) | jbuf_putc(&t, ' ') |
               jbuf_puts(&t, b->m[i].sha) | jbuf_putc(&t, '\n');
    if (bad || !t.data) {
        jbuf_free(&t);
        return jerr_oom(err, "naming a script version");
    }
    sha256_hex(t.data, t.len, b->digest);
    jbuf_free(&t);
    return 0;
}

/* Skips a long bracket [==[ ... ]==] starting at src[i] == '['; returns the
 * index after it, or i when src[i] does not open one. *body gets the
 * content's start and *blen its length. */
static size_t skip_long(const char *src, size_t len, size_t i, size_t *body, size_t *blen) {
    size_t j = i + 1, level = 0;
    while (j < len && src[j] == '=') {
        level++;
        j++;
    }
    if (j >= len || src[j] != '[') return i;
    size_t start = j + 1;
    for (size_t k = start; k < len; k++) {
        if (src[k] != ']') continue;
        size_t e = k + 1, l = 0;
        while (e < len && src[e] == '=') {
            l++;
            e++;
        }
        if (l == level && e < len && src[e] == ']') {
            if (body) *body = start;
            if (blen) *blen = k - start;
            return e + 1;
        }
    }
    if (body) *body = start;
    if (blen) *blen = len - start;
    return len;
}

/* Skips blanks and comments. */
static size_t skip_space(const char *src, size_t len, size_t i) {
    while (i < len) {
        unsigned char c = (unsigned char)src[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            i++;
        } else if (c == '-' && i + 1 < len && src[i + 1] == '-') {
            i += 2;
            size_t after = i < len && src[i] == '[' ? skip_long(src, len, i, NULL, NULL) : i;
            if (after != i) {
                i = after;
            } else {
                while (i < len && src[i] != '\n') i++;
            }
        } else {
            break;
        }
    }
    return i;
}

static bool ident_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* A name as the sandbox's require accepts it, and one a file can hold. */
static bool literal_module_name(const char *p, size_t n) {
    if (n == 0 || n > 200 || p[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!(ident_char(c) || c == '.' || c == '-')) return false;
        if (c == '.' && i + 1 < n && p[i + 1] == '.') return false;
    }
    return p[n - 1] != '.';
}

/* Calls fn for every `require "name"` / `require("name")` / `require[[name]]`
 * with a literal name in Lua source, outside comments and strings. A
 * lexer, not a parser: `x.require "n"` and `x:require "n"` are not require. */
static int scan_requires(const char *src, size_t len, int (*fn)(void *ud, const char *name, jerr *err), void *ud,
                         jerr *err) {
    size_t i = 0;
    char prev = '\0'; /* the last character of the previous token */
    while (i < len) {
        size_t j = skip_space(src, len, i);
        if (j != i) {
            i = j;
            continue;
        }
        unsigned char c = (unsigned char)src[i];
        if (c == '"' || c == '\'') {
            for (i++; i < len && (unsigned char)src[i] != c && src[i] != '\n'; i++)
                if (src[i] == '\\') i++;
            i++;
            prev = '"';
        } else if (c == '[' && (j = skip_long(src, len, i, NULL, NULL)) != i) {
            i = j;
            prev = '"';
        } else if (ident_char(c) && !(c >= '0' && c <= '9')) {
            size_t s0 = i;
            while (i < len && ident_char((unsigned char)src[i])) i++;
            bool is_req = i - s0 == 7 && memcmp(src + s0, "require", 7) == 0 && prev != '.' && prev != ':';
            prev = 'a';
            if (!is_req) continue;
            size_t k = skip_space(src, len, i);
            if (k < len && src[k] == '(') k = skip_space(src, len, k + 1);
            if (k >= len) continue;
            size_t nb = 0, nl = 0;
            if (src[k] == '"' || src[k] == '\'') {
                size_t e = k + 1;
                while (e < len && src[e] != src[k] && src[e] != '\\' && src[e] != '\n') e++;
                if (e >= len || src[e] != src[k]) continue; /* escapes: not a plain literal */
                nb = k + 1;
                nl = e - nb;
            } else if (src[k] == '[') {
                if (skip_long(src, len, k, &nb, &nl) == k) continue;
            } else {
                continue;
            }
            if (!literal_module_name(src + nb, nl)) continue;
            char name[256];
            memcpy(name, src + nb, nl);
            name[nl] = '\0';
            if (fn(ud, name, err) != 0) return -1;
        } else {
            prev = (char)c;
            i++;
        }
    }
    return 0;
}

typedef struct collect_ctx {
    engine_bundle *b;
    const char *dir;
} collect_ctx;

static int collect_one(void *ud, const char *name, jerr *err) {
    collect_ctx *c = ud;
    for (size_t i = 0; i < c->b->n; i++)
        if (strcmp(c->b->m[i].name, name) == 0) return 0;
    char *src = NULL, *chunkname = NULL;
    size_t len = 0;
    int rc = engine_find_module_in_dir((void *)c->dir, name, &src, &len, &chunkname, err);
    if (rc > 0) return 0; /* not a file here: jorch's own, or code never reached */
    if (rc < 0) return jerr_prefix(err, "reading module '%s' of the script", name);
    rc = engine_bundle_add(c->b, name, chunkname, src, len, err);
    if (rc == 0) rc = scan_requires(src, len, collect_one, c, err);
    free(src);
    free(chunkname);
    return rc;
}

int engine_bundle_collect(const char *dir, const char *src, size_t len, engine_bundle *b, jerr *err) {
    memset(b, 0, sizeof *b);
    sha256_hex(src, len, b->script_sha);
    collect_ctx c = {b, dir && *dir ? dir : "."};
    if (scan_requires(src, len, collect_one, &c, err) != 0) {
        engine_bundle_free(b);
        return -1;
    }
    if (engine_bundle_digest(b, err) != 0) {
        engine_bundle_free(b);
        return -1;
    }
    return 0;
}

