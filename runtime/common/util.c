/*
 * util.c - errors, bounded buffers, files, logging, durations, times,
 * hashing and ids: the small pieces every other module leans on.
 */
#include "common/common.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

/* ---------------------------------------------------------------- errors */

int jerr_set(jerr *err, int code, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
    return -1;
}

int jerr_prefix(jerr *err, const char *fmt, ...) {
    if (!err) return -1;
    char prefix[512];
    char old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* assemble by hand: snprintf("%s: %s") trips -Wformat-truncation */
    size_t pl = strlen(prefix), ol = strlen(old), cap = sizeof err->msg - 1, n = 0;
    if (pl > cap) pl = cap;
    memcpy(err->msg, prefix, pl);
    n = pl;
    if (n + 2 <= cap) {
        memcpy(err->msg + n, ": ", 2);
        n += 2;
    }
    if (ol > cap - n) ol = cap - n;
    memcpy(err->msg + n, old, ol);
    err->msg[n + ol] = '\0';
    if (err->code == JERR_OK) err->code = JERR_INTERNAL;
    return -1;
}

int jerr_oom(jerr *err, const char *what) {
    return jerr_set(err, JERR_INTERNAL, "out of memory while %s", what);
}

/* ------------------------------------------------------- bounded buffers */

void jbuf_init(jbuf *b, size_t max) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : SIZE_MAX / 2;
}

static int jbuf_reserve(jbuf *b, size_t extra) {
    size_t need;
    if (!size_add(b->len, extra, &need) || !size_add(need, 1, &need)) return -1;
    if (need - 1 > b->max) return -1;
    if (need <= b->cap) return 0;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            ncap = need;
            break;
        }
        ncap *= 2;
    }
    if (ncap > b->max + 1) ncap = b->max + 1;
    char *p = realloc(b->data, ncap);
    if (!p) return -1;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int jbuf_append(jbuf *b, const void *p, size_t n) {
    if (jbuf_reserve(b, n) != 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int jbuf_puts(jbuf *b, const char *s) { return jbuf_append(b, s, strlen(s)); }

int jbuf_putc(jbuf *b, char c) { return jbuf_append(b, &c, 1); }

int jbuf_printf(jbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if (jbuf_reserve(b, (size_t)n) != 0) return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void jbuf_reset(jbuf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

char *jbuf_take(jbuf *b, size_t *len) {
    char *p = b->data;
    if (!p) {
        p = malloc(1);
        if (!p) return NULL;
        p[0] = '\0';
    }
    if (len) *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

void jbuf_free(jbuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

int file_read_all(const char *path, size_t max, char **out, size_t *len, jerr *err) {
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return jerr_set(err, JERR_USAGE, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return jerr_set(err, JERR_USAGE, "cannot read %s: it is a directory", path);
    }
    jbuf b;
    jbuf_init(&b, max);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (jbuf_append(&b, chunk, n) != 0) {
            fclose(f);
            jbuf_free(&b);
            return jerr_set(err, JERR_USAGE, "cannot read %s: larger than the limit of %zu bytes",
                            path, max);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        jbuf_free(&b);
        return jerr_set(err, JERR_USAGE, "cannot read %s: read error", path);
    }
    *out = jbuf_take(&b, len);
    if (!*out) return jerr_oom(err, "reading a file");
    return 0;
}

char *jstrdup(const char *s) { return jstrndup(s, strlen(s)); }

int pb_str_replace(char **field, const char *value) {
    char *c = jstrdup(value ? value : "");
    if (!c) return -1;
    if (*field && *field != (char *)protobuf_c_empty_string) free(*field);
    *field = c;
    return 0;
}

char *jstrndup(const char *s, size_t n) {
    size_t sz;
    if (!size_add(n, 1, &sz)) return NULL;
    char *p = malloc(sz);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---------------------------------------------------------------- logging */

static int log_level = -1;

int jlog_level(void) {
    if (log_level < 0) {
        const char *e = getenv("JORCH_LOG");
        log_level = JLOG_WARN;
        if (e) {
            if (strcmp(e, "error") == 0) log_level = JLOG_ERROR;
            else if (strcmp(e, "info") == 0) log_level = JLOG_INFO;
            else if (strcmp(e, "debug") == 0) log_level = JLOG_DEBUG;
        }
    }
    return log_level;
}

void jlog_set_level(int level) { log_level = level; }

void jlog(int level, const char *fmt, ...) {
    if (level > jlog_level()) return;
    static const char *names[] = {"error", "warning", "info", "debug"};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (level <= JLOG_WARN)
        fprintf(stderr, "jorch: %s: %s\n", names[level], line);
    else
        fprintf(stderr, "jorch: %s\n", line);
}

/* ------------------------------------------------------ durations, times */

#define NS_PER_SEC INT64_C(1000000000)

int duration_from_seconds(double secs, int64_t *nanos, jerr *err) {
    if (isnan(secs) || secs < 0)
        return jerr_set(err, JERR_USAGE, "invalid duration %g: must be a non-negative number of seconds", secs);
    if (secs > 9.2e9)
        return jerr_set(err, JERR_USAGE, "invalid duration %g seconds: too large", secs);
    *nanos = (int64_t)llround(secs * 1e9);
    return 0;
}

struct unit_name { const char *name; int64_t nanos; };
static const struct unit_name duration_units[] = {
    {"ns", 1}, {"nanosecond", 1}, {"nanoseconds", 1},
    {"us", 1000}, {"microsecond", 1000}, {"microseconds", 1000},
    {"ms", 1000000}, {"millisecond", 1000000}, {"milliseconds", 1000000}, {"msec", 1000000}, {"msecs", 1000000},
    {"s", NS_PER_SEC}, {"sec", NS_PER_SEC}, {"secs", NS_PER_SEC}, {"second", NS_PER_SEC}, {"seconds", NS_PER_SEC},
    {"m", 60 * NS_PER_SEC}, {"min", 60 * NS_PER_SEC}, {"mins", 60 * NS_PER_SEC},
    {"minute", 60 * NS_PER_SEC}, {"minutes", 60 * NS_PER_SEC},
    {"h", 3600 * NS_PER_SEC}, {"hr", 3600 * NS_PER_SEC}, {"hrs", 3600 * NS_PER_SEC},
    {"hour", 3600 * NS_PER_SEC}, {"hours", 3600 * NS_PER_SEC},
    {"d", 86400 * NS_PER_SEC}, {"day", 86400 * NS_PER_SEC}, {"days", 86400 * NS_PER_SEC},
    {"w", 604800 * NS_PER_SEC}, {"week", 604800 * NS_PER_SEC}, {"weeks", 604800 * NS_PER_SEC},
};

int duration_parse(const char *s, int64_t *nanos, jerr *err) {
    const char *p = s;
    double total = 0;
    int parts = 0;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '\0')
        return jerr_set(err, JERR_USAGE, "invalid duration \"\": expected e.g. \"5s\", \"2 hours\" or \"7 days\"");
    while (*p) {
        char *end;
        if (!isdigit((unsigned char)*p) && *p != '.') goto bad;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno == ERANGE || v < 0) goto bad;
        p = end;
        while (isspace((unsigned char)*p)) p++;
        const char *u = p;
        while (isalpha((unsigned char)*p)) p++;
        size_t ulen = (size_t)(p - u);
        int64_t mult = NS_PER_SEC; /* a bare number means seconds */
        if (ulen) {
            size_t i;
            for (i = 0; i < sizeof duration_units / sizeof duration_units[0]; i++) {
                if (strlen(duration_units[i].name) == ulen &&
                    strncasecmp(duration_units[i].name, u, ulen) == 0)
                    break;
            }
            if (i == sizeof duration_units / sizeof duration_units[0]) goto bad;
            mult = duration_units[i].nanos;
        } else if (parts > 0 || *p) {
            goto bad;
        }
        total += v * (double)mult;
        parts++;
        while (isspace((unsigned char)*p) || *p == ',') p++;
        if (*p && strncmp(p, "and ", 4) == 0) p += 4;
    }
    if (total > 9.2e18) return jerr_set(err, JERR_USAGE, "invalid duration \"%s\": too large", s);
    *nanos = (int64_t)llround(total);
    return 0;
bad:
    return jerr_set(err, JERR_USAGE,
                    "invalid duration \"%s\": expected a number of seconds or text like \"500ms\", "
                    "\"5s\", \"10 minutes\", \"2 hours\", \"7 days\"", s);
}

void duration_format(int64_t nanos, char *buf, size_t buflen) {
    const char *sign = "";
    uint64_t u = (uint64_t)nanos;
    if (nanos < 0) {
        sign = "-";
        u = (uint64_t)0 - (uint64_t)nanos;
    }
    uint64_t secs = u / 1000000000u, frac = u % 1000000000u;
    if (frac == 0)
        snprintf(buf, buflen, "%s%llus", sign, (unsigned long long)secs);
    else if (frac % 1000000 == 0)
        snprintf(buf, buflen, "%s%llu.%03llus", sign, (unsigned long long)secs, (unsigned long long)(frac / 1000000));
    else if (frac % 1000 == 0)
        snprintf(buf, buflen, "%s%llu.%06llus", sign, (unsigned long long)secs, (unsigned long long)(frac / 1000));
    else
        snprintf(buf, buflen, "%s%llu.%09llus", sign, (unsigned long long)secs, (unsigned long long)frac);
}

void duration_human(int64_t nanos, char *buf, size_t buflen) {
    if (nanos < NS_PER_SEC) {
        snprintf(buf, buflen, "%lldms", (long long)(nanos / 1000000));
        return;
    }
    int64_t s = nanos / NS_PER_SEC;
    if (s % 86400 == 0) {
        snprintf(buf, buflen, "%lld day%s", (long long)(s / 86400), s == 86400 ? "" : "s");
    } else if (s % 3600 == 0) {
        snprintf(buf, buflen, "%lld hour%s", (long long)(s / 3600), s == 3600 ? "" : "s");
    } else if (s >= 3600) {
        snprintf(buf, buflen, "%lldh%02lldm%02llds", (long long)(s / 3600), (long long)(s % 3600 / 60),
                 (long long)(s % 60));
    } else if (s >= 60) {
        snprintf(buf, buflen, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    } else {
        snprintf(buf, buflen, "%llds", (long long)s);
    }
}

int64_t time_now_nanos(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian); Howard Hinnant's
 * algorithm, so no timegm() and no TZ dependence. */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
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

static int parse_digits(const char **p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int time_parse_rfc3339(const char *s, int64_t *nanos, jerr *err) {
    const char *p = s;
    int y, mo, d, h, mi, se;
    if (parse_digits(&p, 4, &y) || *p++ != '-' || parse_digits(&p, 2, &mo) || *p++ != '-' ||
        parse_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        goto bad;
    p++;
    if (parse_digits(&p, 2, &h) || *p++ != ':' || parse_digits(&p, 2, &mi) || *p++ != ':' ||
        parse_digits(&p, 2, &se))
        goto bad;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60) goto bad;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) goto bad;
    /* int64 nanoseconds reach from 1677 to 2262 */
    if (y < 1678 || y > 2261) goto bad;
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (isdigit((unsigned char)*p)) {
            if (digits < 9) {
                frac = frac * 10 + (*p - '0');
                digits++;
            }
            p++;
        }
        if (digits == 0) goto bad;
        while (digits < 9) {
            frac *= 10;
            digits++;
        }
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (parse_digits(&p, 2, &oh) || *p++ != ':' || parse_digits(&p, 2, &om)) goto bad;
        offset = sign * ((int64_t)oh * 3600 + om * 60);
    } else {
        goto bad;
    }
    if (*p) goto bad;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset;
    *nanos = secs * NS_PER_SEC + frac;
    return 0;
bad:
    return jerr_set(err, JERR_USAGE, "invalid timestamp \"%s\": expected RFC 3339, e.g. 2024-01-01T00:00:00Z", s);
}

void time_format_rfc3339(int64_t nanos, char *buf, size_t buflen) {
    int64_t secs = nanos / NS_PER_SEC, frac = nanos % NS_PER_SEC;
    if (frac < 0) {
        frac += NS_PER_SEC;
        secs--;
    }
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    char fr[16] = "";
    if (frac == 0)
        fr[0] = '\0';
    else if (frac % 1000000 == 0)
        snprintf(fr, sizeof fr, ".%03lld", (long long)(frac / 1000000));
    else if (frac % 1000 == 0)
        snprintf(fr, sizeof fr, ".%06lld", (long long)(frac / 1000));
    else
        snprintf(fr, sizeof fr, ".%09lld", (long long)frac);
    snprintf(buf, buflen, "%04lld-%02d-%02dT%02d:%02d:%02d%sZ", (long long)y, m, d, (int)(rem / 3600),
             (int)(rem % 3600 / 60), (int)(rem % 60), fr);
}

Google__Protobuf__Duration *pb_duration_new(int64_t nanos) {
    Google__Protobuf__Duration *d = malloc(sizeof *d);
    if (!d) return NULL;
    google__protobuf__duration__init(d);
    d->seconds = nanos / NS_PER_SEC;
    d->nanos = (int32_t)(nanos % NS_PER_SEC);
    return d;
}

Google__Protobuf__Timestamp *pb_timestamp_new(int64_t nanos) {
    Google__Protobuf__Timestamp *t = malloc(sizeof *t);
    if (!t) return NULL;
    google__protobuf__timestamp__init(t);
    int64_t secs = nanos / NS_PER_SEC, frac = nanos % NS_PER_SEC;
    if (frac < 0) {
        frac += NS_PER_SEC;
        secs--;
    }
    t->seconds = secs;
    t->nanos = (int32_t)frac;
    return t;
}

/* Saturating: protojson allows ±10,000 years, int64 nanoseconds ±292. */
static int64_t secs_nanos(int64_t secs, int32_t nanos) {
    if (nanos <= -NS_PER_SEC || nanos >= NS_PER_SEC) nanos = 0;
    if (secs > INT64_MAX / NS_PER_SEC - 1) return INT64_MAX;
    if (secs < INT64_MIN / NS_PER_SEC + 1) return INT64_MIN;
    return secs * NS_PER_SEC + nanos;
}

int64_t pb_duration_nanos(const Google__Protobuf__Duration *d) { return d ? secs_nanos(d->seconds, d->nanos) : 0; }

int64_t pb_timestamp_nanos(const Google__Protobuf__Timestamp *t) { return t ? secs_nanos(t->seconds, t->nanos) : 0; }

/* ---------------------------------------------------------------- hashing */

void sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    static const char hex[] = "0123456789abcdef";
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        memset(out, '0', 64);
        out[64] = '\0';
        return;
    }
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

int uuid_random(char out[37]) {
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return 0;
}
