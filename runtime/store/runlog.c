/*
 * runlog.c - the lines a run's executor prints (progress, workflow.log,
 * activity logs): escaped so no script, issue text or id can move the
 * cursor or forge a line, each cut at RUNLOG_LINE_MAX bytes, and, when
 * standard output and error are the run's log file ($JORCH_HOME/logs/
 * ID.log of a background run), rotated at RUNLOG_FILE_MAX bytes keeping
 * RUNLOG_KEEP older files, so one run's log holds at most
 * (RUNLOG_KEEP + 1) * RUNLOG_FILE_MAX bytes however much a script logs.
 *
 * Callers serialise (the runner's output mutex); the state is per process
 * because a process has one standard error.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *log_path;      /* the file behind fds 1 and 2, when rotating */
static uint64_t log_bytes;  /* size of the current file */

void runlog_configure(const char *path) {
    free(log_path);
    log_path = NULL;
    log_bytes = 0;
    if (!path || !*path) return;
    /* only when stderr really is that file: the variable alone moves nothing */
    struct stat a, b;
    if (stat(path, &a) != 0 || fstat(2, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino ||
        !S_ISREG(b.st_mode))
        return;
    log_path = jstrdup(path);
    log_bytes = (uint64_t)b.st_size;
}

/* PATH -> PATH.1 -> ... -> PATH.RUNLOG_KEEP (the oldest is dropped), with
 * from and to (n bytes each, strlen(path) + 24) as room for the names; stops
 * at the first rename that fails other than for a missing file. */
static void shift_files(const char *path, char *from, char *to, size_t n) {
    for (int k = RUNLOG_KEEP; k >= 1; k--) {
        if (k == 1) snprintf(from, n, "%s", path);
        else snprintf(from, n, "%s.%d", path, k - 1);
        snprintf(to, n, "%s.%d", path, k);
        if (rename(from, to) != 0 && errno != ENOENT) break;
    }
}

/* ID.log -> ID.log.1 -> ... -> ID.log.RUNLOG_KEEP (the oldest is dropped);
 * a fresh ID.log becomes stdout and stderr. On failure the current file is
 * kept (and rotation retried after the next RUNLOG_FILE_MAX bytes). */
static void rotate(void) {
    size_t n = strlen(log_path) + 24;
    char *from = malloc(n), *to = malloc(n);
    if (!from || !to) {
        free(from);
        free(to);
        log_bytes = 0;
        return;
    }
    fflush(stdout);
    fflush(stderr);
    shift_files(log_path, from, to, n);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    log_bytes = 0;
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        snprintf(to, n, "%s.1", log_path);
        const char *base = strrchr(to, '/');
        int w = fprintf(stderr, "[jorch] log rotated at %d MiB; earlier output in %s\n",
                        (int)(RUNLOG_FILE_MAX >> 20), base ? base + 1 : to);
        if (w > 0) log_bytes = (uint64_t)w;
    }
    free(from);
    free(to);
}

/* prefix and text as one escaped line in b (initialised here; free it),
 * text cut at RUNLOG_LINE_MAX bytes saying how much was left out; -1 when
 * memory ran out. */
static int format_line(jbuf *b, const char *prefix, const char *text) {
    size_t len = strlen(text);
    size_t keep = len > RUNLOG_LINE_MAX ? RUNLOG_LINE_MAX : len;
    /* do not cut a UTF-8 character in two */
    while (keep < len && keep > 0 && ((unsigned char)text[keep] & 0xC0) == 0x80) keep--;
    jbuf_init(b, 0);
    int rc = text_escape(b, prefix, strlen(prefix), false);
    if (rc == 0) rc = text_escape(b, text, keep, false);
    if (rc == 0 && keep < len) rc = jbuf_printf(b, " [... %zu more bytes not shown]", len - keep);
    if (rc == 0) rc = jbuf_putc(b, '\n');
    return rc;
}

void runlog_write(const char *prefix, const char *text) {
    jbuf b;
    int rc = format_line(&b, prefix, text);
    if (rc == 0 && b.data) {
        fwrite(b.data, 1, b.len, stderr);
        if (log_path) {
            log_bytes += b.len;
            if (log_bytes >= RUNLOG_FILE_MAX) rotate();
        }
    }
    jbuf_free(&b);
}

void runlog_append(const char *path, const char *prefix, const char *text) {
    jbuf b;
    int rc = format_line(&b, prefix, text);
    int fd = rc == 0 && b.data ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600) : -1;
    if (fd >= 0) {
        struct stat st;
        ssize_t w = write(fd, b.data, b.len);
        (void)w;
        bool full = fstat(fd, &st) == 0 && (uint64_t)st.st_size >= RUNLOG_FILE_MAX;
        close(fd);
        if (full) {
            /* ID.log -> ID.log.1 -> ... (the oldest is dropped); the next line starts a new ID.log */
            size_t n = strlen(path) + 24;
            char *from = malloc(n), *to = malloc(n);
            if (from && to) shift_files(path, from, to, n);
            free(from);
            free(to);
        }
    }
    jbuf_free(&b);
}
