/*
 * tc_config.c - where and how to reach Temporal: defaults, jorch.yaml-style
 * setters, environment overrides, and the security checks (TLS settled,
 * no API key in cleartext to another machine).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <strings.h>
#include <unistd.h>

#include "temporal/temporal.h"

static int set_string(char **field, const char *value, jerr *err) {
    char *copy = NULL;
    if (value != NULL) {
        copy = jstrdup(value);
        if (copy == NULL) return jerr_oom(err, "copying a Temporal setting");
    }
    free(*field);
    *field = copy;
    return 0;
}

void tc_config_init(tc_config *c) {
    memset(c, 0, sizeof *c);
    c->tls = -1;
}

void tc_config_free(tc_config *c) {
    free(c->address);
    free(c->namespace_);
    free(c->task_queue);
    free(c->api_key);
    free(c->tls_ca);
    free(c->tls_client_cert);
    free(c->tls_client_key);
    free(c->tls_server_name);
    free(c->identity);
    tc_config_init(c);
}

static int parse_bool(const char *v, int *out) {
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

int tc_config_set(tc_config *c, const char *name, const char *value, jerr *err) {
    static const struct {
        const char *name;
        size_t offset;
    } fields[] = {
        {"address", offsetof(tc_config, address)},
        {"api_key", offsetof(tc_config, api_key)},
        {"identity", offsetof(tc_config, identity)},
        {"namespace", offsetof(tc_config, namespace_)},
        {"task_queue", offsetof(tc_config, task_queue)},
        {"tls_ca", offsetof(tc_config, tls_ca)},
        {"tls_client_cert", offsetof(tc_config, tls_client_cert)},
        {"tls_client_key", offsetof(tc_config, tls_client_key)},
        {"tls_server_name", offsetof(tc_config, tls_server_name)},
    };
    if (strcmp(name, "tls") == 0) {
        if (value == NULL) {
            c->tls = -1;
            return 0;
        }
        if (parse_bool(value, &c->tls) != 0)
            return jerr_set(err, JERR_USAGE,
                            "Temporal setting tls: '%s' is not a boolean (use true or false)", value);
        return 0;
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (strcmp(name, fields[i].name) == 0)
            return set_string((char **)((char *)c + fields[i].offset), value, err);
    }
    return jerr_set(err, JERR_USAGE,
                    "unknown Temporal setting '%s' (known: address, namespace, task_queue, api_key, tls, "
                    "tls_ca, tls_client_cert, tls_client_key, tls_server_name, identity)", name);
}

int tc_config_from_env(tc_config *c, jerr *err) {
    static const struct {
        const char *var;
        const char *name;
    } vars[] = {
        {"TEMPORAL_ADDRESS", "address"},
        {"TEMPORAL_NAMESPACE", "namespace"},
        {"TEMPORAL_TASK_QUEUE", "task_queue"},
        {"TEMPORAL_API_KEY", "api_key"},
        {"TEMPORAL_TLS", "tls"},
        {"TEMPORAL_TLS_CA", "tls_ca"},
        {"TEMPORAL_TLS_CLIENT_CERT", "tls_client_cert"},
        {"TEMPORAL_TLS_CLIENT_KEY", "tls_client_key"},
        {"TEMPORAL_TLS_SERVER_NAME", "tls_server_name"},
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i].var);
        if (v == NULL || v[0] == '\0') continue;
        if (tc_config_set(c, vars[i].name, v, err) != 0)
            return jerr_prefix(err, "environment variable %s", vars[i].var);
    }
    return 0;
}

/* Split "host:port" / "[v6]:port" into the host part (without brackets). */
static int address_host(const char *address, char *host, size_t hostcap) {
    const char *start = address;
    size_t len;
    if (address[0] == '[') {
        const char *close = strchr(address, ']');
        if (close == NULL) return -1;
        start = address + 1;
        len = (size_t)(close - start);
    } else {
        const char *colon = strrchr(address, ':');
        len = colon != NULL ? (size_t)(colon - address) : strlen(address);
    }
    if (len == 0 || len >= hostcap) return -1;
    memcpy(host, start, len);
    host[len] = '\0';
    return 0;
}

bool tc_address_is_loopback(const char *address) {
    char host[256];
    if (address == NULL || address_host(address, host, sizeof host) != 0) return false;
    if (strcasecmp(host, "localhost") == 0 || strcmp(host, "::1") == 0) return true;
    /* 127.0.0.0/8 in strict dotted-decimal form only: inet_pton refuses
     * leading zeros, which curl would read as octal (0127.0.0.1 is 87.0.0.1). */
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1) return false;
    return (ntohl(a.s_addr) >> 24) == 127;
}

static int check_address(const char *address, jerr *err) {
    char host[256];
    /* a DNS name is at most 253 bytes; with a port and brackets this bounds every URL built from it */
    if (strlen(address) > 262)
        return jerr_set(err, JERR_USAGE, "Temporal address is too long (%zu bytes; at most 262)", strlen(address));
    const char *colon = address[0] == '[' ? strstr(address, "]:") : strrchr(address, ':');
    if (address_host(address, host, sizeof host) != 0 || colon == NULL)
        return jerr_set(err, JERR_USAGE,
                        "Temporal address '%s' is not host:port (set TEMPORAL_ADDRESS, e.g. 127.0.0.1:7233)",
                        address);
    const char *port = address[0] == '[' ? colon + 2 : colon + 1;
    char *end = NULL;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (port[0] == '\0' || *end != '\0' || errno != 0 || p < 1 || p > 65535)
        return jerr_set(err, JERR_USAGE,
                        "Temporal address '%s' has no valid port (set TEMPORAL_ADDRESS, e.g. 127.0.0.1:7233)",
                        address);
    for (const char *s = address; *s; s++) {
        /* Goes into a URL: refuse anything that could change its meaning. */
        if (*s == '/' || *s == '@' || *s == '?' || *s == '#' || *s == ' ' || (unsigned char)*s < 0x21)
            return jerr_set(err, JERR_USAGE,
                            "Temporal address '%s' must be host:port without a scheme or path "
                            "(set TEMPORAL_ADDRESS, e.g. 127.0.0.1:7233)", address);
    }
    return 0;
}

static int check_readable(const char *path, const char *what, const char *var, jerr *err) {
    if (path == NULL) return 0;
    if (access(path, R_OK) != 0)
        return jerr_set(err, JERR_USAGE, "cannot read the TLS %s '%s': %s (check %s)", what, path,
                        strerror(errno), var);
    return 0;
}

static int settle_default(char **field, const char *def, jerr *err) {
    if (*field != NULL && (*field)[0] != '\0') return 0;
    return set_string(field, def, err);
}

int tc_config_check(tc_config *c, jerr *err) {
    if (settle_default(&c->address, "127.0.0.1:7233", err) != 0 ||
        settle_default(&c->namespace_, "default", err) != 0 ||
        settle_default(&c->task_queue, "jira-orchestration", err) != 0)
        return -1;
    if (c->identity == NULL || c->identity[0] == '\0') {
        char host[128] = "localhost";
        char id[256];
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        snprintf(id, sizeof id, "%ld@%s@jorch", (long)getpid(), host);
        if (set_string(&c->identity, id, err) != 0) return -1;
    }
    if (check_address(c->address, err) != 0) return -1;
    if (c->api_key != NULL && c->api_key[0] == '\0') {
        free(c->api_key);
        c->api_key = NULL;
    }
    if (c->api_key != NULL && strlen(c->api_key) > TC_MAX_API_KEY)
        return jerr_set(err, JERR_USAGE,
                        "the Temporal API key is %zu bytes long, more than the %d bytes a key can be "
                        "(check TEMPORAL_API_KEY or temporal.api_key_file: it must hold the key alone)",
                        strlen(c->api_key), TC_MAX_API_KEY);
    if (strlen(c->namespace_) > TC_MAX_NAMESPACE)
        return jerr_set(err, JERR_USAGE, "the Temporal namespace is %zu bytes long, more than %d (check "
                        "TEMPORAL_NAMESPACE)", strlen(c->namespace_), TC_MAX_NAMESPACE);
    if (c->api_key != NULL && strpbrk(c->api_key, "\r\n") != NULL)
        return jerr_set(err, JERR_USAGE, "the Temporal API key contains a line break (check TEMPORAL_API_KEY)");
    if ((c->tls_client_cert == NULL) != (c->tls_client_key == NULL))
        return jerr_set(err, JERR_USAGE,
                        "mTLS needs both a client certificate and its key "
                        "(set TEMPORAL_TLS_CLIENT_CERT and TEMPORAL_TLS_CLIENT_KEY)");
    if (c->tls < 0)
        c->tls = (c->api_key != NULL || c->tls_ca != NULL || c->tls_client_cert != NULL) ? 1 : 0;
    if (!c->tls && (c->tls_ca != NULL || c->tls_client_cert != NULL))
        return jerr_set(err, JERR_USAGE,
                        "TLS certificates are configured but TLS is off (unset TEMPORAL_TLS=false or the "
                        "TEMPORAL_TLS_* files)");
    if (!c->tls && c->api_key != NULL && !tc_address_is_loopback(c->address))
        return jerr_set(err, JERR_USAGE,
                        "refusing to send the Temporal API key without TLS to %s (remove TEMPORAL_TLS=false; "
                        "keys go in cleartext only to a loopback address)", c->address);
    if (c->tls_server_name != NULL && strlen(c->tls_server_name) > 253)
        return jerr_set(err, JERR_USAGE, "TLS server name is too long (at most 253 bytes)");
    if (c->tls_server_name != NULL && strpbrk(c->tls_server_name, "/@:?# ") != NULL)
        return jerr_set(err, JERR_USAGE, "TLS server name '%s' must be a plain host name (check "
                        "TEMPORAL_TLS_SERVER_NAME)", c->tls_server_name);
    if (check_readable(c->tls_ca, "CA file", "TEMPORAL_TLS_CA", err) != 0 ||
        check_readable(c->tls_client_cert, "client certificate", "TEMPORAL_TLS_CLIENT_CERT", err) != 0 ||
        check_readable(c->tls_client_key, "client key", "TEMPORAL_TLS_CLIENT_KEY", err) != 0)
        return -1;
    if (strpbrk(c->namespace_, "\r\n") != NULL)
        return jerr_set(err, JERR_USAGE, "Temporal namespace contains a line break (check TEMPORAL_NAMESPACE)");
    return 0;
}

bool tc_config_uses_tls(const tc_config *c) { return c->tls > 0; }
