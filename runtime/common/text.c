/*
 * text.c - ids and names from outside (workflow ids, signal, query and
 * activity names) and text bound for terminals and log files: validation
 * as Temporal does it, escaping of control characters, safe file names.
 */
#include <stdio.h>
#include <string.h>

#include "common/common.h"

/* A C1 control (U+0080..U+009F) is encoded as C2 80..C2 9F. */
static bool is_c1(const unsigned char *u, size_t n) { return n == 2 && u[0] == 0xC2 && u[1] <= 0x9F; }

int text_escape(jbuf *out, const char *s, size_t len, bool keep_lines) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned char c = u[i];
        size_t n = c < 0x80 ? 1 : utf8_char_len(s + i, len - i);
        int rc;
        if (n == 0) { /* not UTF-8: the byte, in hex */
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            rc = jbuf_append(out, esc, 4);
            n = 1;
        } else if (is_c1(u + i, n)) {
            char esc[6] = {'\\', 'u', '0', '0', hex[u[i + 1] >> 4], hex[u[i + 1] & 15]};
            rc = jbuf_append(out, esc, 6);
        } else if (keep_lines && (c == '\n' || c == '\t')) {
            rc = jbuf_putc(out, (char)c);
        } else if (c == '\n') {
            rc = jbuf_append(out, "\\n", 2);
        } else if (c == '\t') {
            rc = jbuf_append(out, "\\t", 2);
        } else if (c == '\r') {
            rc = jbuf_append(out, "\\r", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            rc = jbuf_append(out, esc, 4);
        } else {
            rc = jbuf_append(out, s + i, n);
        }
        if (rc != 0) return -1;
        i += n;
    }
    return 0;
}

int id_check(const char *what, const char *s, size_t max, jerr *err) {
    if (!s || !*s) return jerr_set(err, JERR_USAGE, "the %s is empty", what);
    size_t len = strlen(s);
    if (len > max) return jerr_set(err, JERR_USAGE, "the %s is %zu bytes long; the limit is %zu bytes", what, len, max);
    const unsigned char *u = (const unsigned char *)s;
    const char *problem = NULL;
    size_t at = 0;
    for (size_t i = 0; i < len && !problem;) {
        size_t n = u[i] < 0x80 ? 1 : utf8_char_len(s + i, len - i);
        if (n == 0) problem = "is not valid UTF-8";
        else if (u[i] < 0x20 || u[i] == 0x7f || is_c1(u + i, n)) problem = "contains a control character";
        else i += n;
        at = i;
    }
    if (!problem) return 0;
    /* show a bounded, escaped prefix: the value itself is what is wrong */
    jbuf shown;
    jbuf_init(&shown, 256);
    text_escape(&shown, s, len < 120 ? len : 120, false);
    jerr_set(err, JERR_USAGE, "the %s '%s%s' %s (at byte %zu); use printable UTF-8 text", what,
             shown.data ? shown.data : "", len > 120 ? "..." : "", problem, at);
    jbuf_free(&shown);
    return -1;
}

int text_check_utf8(const char *what, const char *s, jerr *err) {
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        size_t n = (unsigned char)s[i] < 0x80 ? 1 : utf8_char_len(s + i, len - i);
        if (n == 0) return jerr_set(err, JERR_USAGE, "the %s is not valid UTF-8 (at byte %zu)", what, i);
        i += n;
    }
    return 0;
}

int id_file_name(const char *id, char *out, size_t cap) {
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (cap == 0) return -1;
    for (size_t i = 0; id[i]; i++) {
        unsigned char c = (unsigned char)id[i];
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || (c == '.' && i > 0);
        size_t need = keep ? 1 : 3;
        if (o + need >= cap) {
            out[0] = '\0';
            return -1;
        }
        if (keep) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return o ? 0 : -1;
}
