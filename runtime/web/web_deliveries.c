/*
 * web_deliveries.c - Jira webhook deliveries already acted on, remembered
 * across restarts of the web server so that a redelivery (Jira retries a
 * delivery it thinks failed) is not applied twice.
 *
 * Each delivery is known by the SHA-256 of its X-Atlassian-Webhook-Identifier
 * (fixed size, any header text). On the embedded backend they live in the
 * store (store_delivery_seen, one transaction per delivery); on Temporal,
 * which has no such place, in a small file, $JORCH_HOME/web-deliveries: one
 * line "SECONDS HEX" per delivery, appended, rewritten (compacted) when
 * it holds twice what is kept. Both keep STORE_DELIVERY_KEEP (7 days) and
 * at most STORE_DELIVERY_MAX deliveries.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "store/store.h"
#include "web/web.h"

#define NS INT64_C(1000000000)

typedef struct delivery {
    char key[65];
    int64_t at; /* wall clock nanoseconds */
} delivery;

struct web_deliveries {
    char path[PATH_MAX];
    delivery *e; /* in the order remembered */
    size_t n, cap;
    size_t lines; /* lines the file holds */
};

void web_delivery_key(const char *id, char out[65]) {
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)id, strlen(id), h);
    for (size_t i = 0; i < sizeof h; i++) snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static bool key_ok(const char *k) {
    if (strlen(k) != 64) return false;
    for (; *k; k++)
        if (!((*k >= '0' && *k <= '9') || (*k >= 'a' && *k <= 'f'))) return false;
    return true;
}

/* Drops what is older than the window (wherever it is: the clock may have
 * been set back), then the first remembered beyond the limit. */
static void prune(web_deliveries *d, int64_t now) {
    size_t kept = 0;
    for (size_t i = 0; i < d->n; i++)
        if (d->e[i].at >= now - STORE_DELIVERY_KEEP) d->e[kept++] = d->e[i];
    d->n = kept;
    if (d->n <= STORE_DELIVERY_MAX) return;
    size_t drop = d->n - STORE_DELIVERY_MAX;
    memmove(d->e, d->e + drop, (d->n - drop) * sizeof *d->e);
    d->n -= drop;
}

static int push(web_deliveries *d, const char *key, int64_t at, jerr *err) {
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 64;
        delivery *g = realloc(d->e, nc * sizeof *g);
        if (!g) return jerr_oom(err, "remembering webhook deliveries");
        d->e = g;
        d->cap = nc;
    }
    snprintf(d->e[d->n].key, sizeof d->e[d->n].key, "%s", key);
    d->e[d->n].at = at;
    d->n++;
    return 0;
}

/* Writes what is kept to a new file and renames it over the old one. */
static int compact(web_deliveries *d, jerr *err) {
    char tmp[PATH_MAX + 8];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", d->path);
    if (n < 0 || (size_t)n >= sizeof tmp) return jerr_set(err, JERR_USAGE, "the path %s is too long", d->path);
    FILE *f = fopen(tmp, "w");
    if (!f) return jerr_set(err, JERR_BACKEND, "cannot write %s: %s", tmp, strerror(errno));
    for (size_t i = 0; i < d->n; i++) fprintf(f, "%" PRId64 " %s\n", d->e[i].at / NS, d->e[i].key);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, d->path) != 0) {
        int saved = errno;
        unlink(tmp);
        return jerr_set(err, JERR_BACKEND, "cannot write %s: %s", d->path, strerror(saved));
    }
    d->lines = d->n;
    return 0;
}

web_deliveries *web_deliveries_open(const char *path, int64_t now, jerr *err) {
    web_deliveries *d = calloc(1, sizeof *d);
    if (!d) {
        jerr_oom(err, "reading webhook deliveries");
        return NULL;
    }
    int n = snprintf(d->path, sizeof d->path, "%s", path);
    if (n < 0 || (size_t)n >= sizeof d->path) {
        free(d);
        jerr_set(err, JERR_USAGE, "the path %s is too long", path);
        return NULL;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT) return d; /* none yet */
        jerr_set(err, JERR_USAGE, "cannot read %s (the Jira webhook deliveries already handled): %s; make it "
                 "readable, or remove it", path, strerror(errno));
        free(d);
        return NULL;
    }
    char line[256];
    while (fgets(line, sizeof line, f)) {
        d->lines++;
        char key[65] = "";
        long long secs = 0;
        /* a damaged line is skipped (the next compaction drops it) */
        if (sscanf(line, "%lld %64s", &secs, key) != 2 || !key_ok(key) || secs < 0 || secs > INT64_MAX / NS)
            continue;
        if (push(d, key, (int64_t)secs * NS, err) != 0) {
            fclose(f);
            web_deliveries_free(d);
            return NULL;
        }
    }
    fclose(f);
    prune(d, now);
    return d;
}

bool web_deliveries_seen(const web_deliveries *d, const char *key) {
    for (size_t i = d->n; i-- > 0;)
        if (strcmp(d->e[i].key, key) == 0) return true;
    return false;
}

int web_deliveries_add(web_deliveries *d, const char *key, int64_t now, jerr *err) {
    if (!key_ok(key)) return jerr_set(err, JERR_INTERNAL, "a webhook delivery key is not a SHA-256 digest");
    if (push(d, key, now, err) != 0) return -1;
    prune(d, now);
    if (d->lines > 2 * d->n + 64) return compact(d, err); /* the new one included */
    char text[96];
    int n = snprintf(text, sizeof text, "%" PRId64 " %s\n", now / NS, key);
    int fd = open(d->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT) {
        /* $JORCH_HOME may not exist yet on Temporal */
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", d->path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = '\0';
            mkdir(dir, 0700);
            fd = open(d->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        }
    }
    if (fd < 0) return jerr_set(err, JERR_BACKEND, "cannot write %s: %s", d->path, strerror(errno));
    bool ok = write(fd, text, (size_t)n) == n;
    int saved = errno;
    close(fd);
    if (!ok) return jerr_set(err, JERR_BACKEND, "cannot write %s: %s", d->path, strerror(saved));
    d->lines++;
    return 0;
}

size_t web_deliveries_count(const web_deliveries *d) { return d->n; }

void web_deliveries_free(web_deliveries *d) {
    if (!d) return;
    free(d->e);
    free(d);
}
