/*
 * act_toolkit.c - the `jorch` table activities see: jorch.http (libcurl),
 * jorch.json, jorch.fs, jorch.env, jorch.sleep, jorch.now. jorch.exec lives
 * in act_exec.c. Blocking calls poll the attempt's stop reasons, so a
 * start-to-close timeout or a cancellation interrupts them.
 *
 * Messages never echo secrets: URLs lose their userinfo and query, header
 * values and environment values are never printed.
 */
#define _GNU_SOURCE /* mkostemp, O_CLOEXEC */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include "activity/act_int.h"

#define HTTP_DEFAULT_TIMEOUT_S 120.0
#define HTTP_CONNECT_TIMEOUT_MS 30000L
#define HTTP_DEFAULT_MAX_BYTES ((size_t)16 << 20)
#define HTTP_MAX_HEADER_BYTES ((size_t)256 << 10)
#define FS_READ_MAX ((size_t)1 << 30)
#define FS_LIST_MAX ((size_t)64 << 20)
#define SLEEP_SLICE_NS 20000000LL

/* ----------------------------------------------------------- resource box */

typedef struct box {
    void *p; /* first: a slot pointer is the box pointer */
    void (*free_fn)(void *);
} box;

static int box_gc(lua_State *L) {
    box *b = lua_touserdata(L, 1);
    if (b && b->p) {
        b->free_fn(b->p);
        b->p = NULL;
    }
    return 0;
}

void **act_box_push(lua_State *L, void (*free_fn)(void *)) {
    box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->p = NULL;
    b->free_fn = free_fn;
    if (luaL_newmetatable(L, "jorch.box")) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return &b->p;
}

void act_box_free(void **slot) {
    box *b = (box *)slot;
    if (b->p) b->free_fn(b->p);
    b->p = NULL;
}

/* ------------------------------------------------------------ secrecy */

/* The URL for messages: scheme://host[:port] only. Userinfo, query and
 * fragment often carry tokens, and so can the path (a Slack webhook's
 * secret is its path), so "/..." stands for whatever followed. */
static void redact_url(const char *url, char *out, size_t cap) {
    const char *p = strstr(url, "://");
    const char *auth = p ? p + 3 : url;
    const char *auth_end = auth + strcspn(auth, "/?#");
    const char *host = auth;
    for (const char *q = auth; q < auth_end; q++)
        if (*q == '@') host = q + 1;
    bool more = *auth_end != '\0' && strcmp(auth_end, "/") != 0;
    snprintf(out, cap, "%.*s%.*s%s", (int)(auth - url), url, (int)(auth_end - host), host, more ? "/..." : "");
}

/* ----------------------------------------------------------------- http */

typedef struct http_req {
    CURL *curl;
    struct curl_slist *headers;
    jbuf body;
    jbuf head;
    size_t max_bytes;
    bool too_big;
    int stop; /* ACT_* stop reason seen by the progress callback */
    act_attempt *attempt;
} http_req;

static void http_req_free(void *p) {
    http_req *r = p;
    if (r->curl) curl_easy_cleanup(r->curl);
    curl_slist_free_all(r->headers);
    jbuf_free(&r->body);
    jbuf_free(&r->head);
    free(r);
}

static size_t http_on_body(char *data, size_t size, size_t n, void *ud) {
    http_req *r = ud;
    size_t bytes;
    if (!size_mul(size, n, &bytes)) return 0;
    if (jbuf_append(&r->body, data, bytes) < 0) {
        r->too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return bytes;
}

static size_t http_on_header(char *data, size_t size, size_t n, void *ud) {
    http_req *r = ud;
    size_t bytes;
    if (!size_mul(size, n, &bytes)) return 0;
    /* A new status line starts a new response (redirects, 100 Continue):
     * only the last response's headers are reported. */
    if (bytes >= 5 && memcmp(data, "HTTP/", 5) == 0) jbuf_reset(&r->head);
    if (jbuf_append(&r->head, data, bytes) < 0) return 0;
    return bytes;
}

static int http_on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    http_req *r = ud;
    r->stop = act_attempt_check(r->attempt);
    return r->stop != ACT_GO;
}

static bool has_crlf(const char *s, size_t len) { return memchr(s, '\r', len) || memchr(s, '\n', len); }

/* Validates headers={name=value} and builds the curl list. */
static void http_headers(lua_State *L, int opts, http_req *r) {
    if (lua_getfield(L, opts, "headers") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    luaL_argcheck(L, lua_istable(L, -1), 1, "headers must be a table of name = value strings");
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "jorch.http: headers must map strings to strings (a %s maps to a %s)",
                       luaL_typename(L, -2), luaL_typename(L, -1));
        size_t kl, vl;
        const char *k = lua_tolstring(L, -2, &kl);
        const char *v = lua_tolstring(L, -1, &vl);
        if (kl == 0 || has_crlf(k, kl) || has_crlf(v, vl) || memchr(k, ':', kl))
            luaL_error(L, "jorch.http: header '%s' has an empty name or contains ':' or a line break", k);
        jbuf line;
        jbuf_init(&line, kl + vl + 8);
        /* "Name;" is curl's spelling of an empty header value. */
        int rc = vl ? jbuf_printf(&line, "%s: %s", k, v) : jbuf_printf(&line, "%s;", k);
        struct curl_slist *nl = rc == 0 ? curl_slist_append(r->headers, line.data) : NULL;
        jbuf_free(&line);
        if (!nl) luaL_error(L, "jorch.http: out of memory building headers");
        r->headers = nl;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* headers={lowercased name -> value}; repeated headers joined by ", ". */
static void http_push_headers(lua_State *L, const jbuf *head) {
    lua_newtable(L);
    const char *p = head->data ? head->data : "";
    const char *end = p + head->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && memcmp(p, "HTTP/", 5) != 0) {
            luaL_Buffer name;
            luaL_buffinit(L, &name);
            for (const char *q = p; q < colon; q++) luaL_addchar(&name, (char)tolower((unsigned char)*q));
            luaL_pushresult(&name);
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            lua_pushvalue(L, -1);
            if (lua_rawget(L, -3) == LUA_TSTRING) {
                lua_pushliteral(L, ", ");
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_concat(L, 3);
            } else {
                lua_pop(L, 1);
                lua_pushlstring(L, v, (size_t)(ve - v));
            }
            lua_rawset(L, -3);
        }
        p = eol + 1;
    }
}

static double opt_number(lua_State *L, int t, const char *k, double def) {
    lua_getfield(L, t, k);
    double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static bool opt_bool(lua_State *L, int t, const char *k) {
    lua_getfield(L, t, k);
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static const char *opt_string(lua_State *L, int t, const char *k, size_t *len) {
    if (lua_getfield(L, t, k) == LUA_TNIL) {
        lua_pop(L, 1);
        if (len) *len = 0;
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option '%s' must be a string", k);
    const char *s = lua_tolstring(L, -1, len);
    lua_pop(L, 1); /* still anchored by the options table */
    return s;
}

static size_t opt_size(lua_State *L, int t, const char *k, size_t def) {
    double v = opt_number(L, t, k, (double)def);
    if (!(v >= 0) || v > (double)(SIZE_MAX / 2)) luaL_error(L, "option '%s' must be a non-negative size", k);
    return (size_t)v;
}

/* Does text contain any of the secrets we were handed (userinfo, query,
 * header values)? Then it is not echoed. */
static bool mentions_secret(lua_State *L, int opts, const char *url, const char *text) {
    const char *p = strstr(url, "://");
    const char *auth = p ? p + 3 : url;
    const char *at = NULL;
    for (const char *q = auth; *q && !strchr("/?#", *q); q++)
        if (*q == '@') at = q;
    if (at && at > auth) {
        size_t tl = strlen(text);
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (memmem(text, tl, auth, (size_t)(at - auth))) return true;
        if (colon && at - colon > 1 && memmem(text, tl, colon + 1, (size_t)(at - colon - 1))) return true;
    }
    const char *query = strpbrk(auth, "?#");
    if (query && query[1] && strstr(text, query + 1)) return true;
    /* the path too (see redact_url): libcurl's detail may quote it */
    const char *path = auth + strcspn(auth, "/?#");
    if (*path == '/' && path[1] && path[1] != '?' && path[1] != '#' &&
        memmem(text, strlen(text), path + 1, strcspn(path + 1, "?#")))
        return true;
    bool found = false;
    if (lua_getfield(L, opts, "headers") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            size_t vl;
            const char *v = lua_tolstring(L, -1, &vl);
            if (v && vl >= 4 && strstr(text, v)) found = true;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return found;
}

static int http_request(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    const char *url = opt_string(L, 1, "url", NULL);
    if (!url || !*url) return luaL_error(L, "jorch.http.request: url is required (e.g. url = \"https://host/path\")");
    const char *method = opt_string(L, 1, "method", NULL);
    if (!method) method = "GET";
    for (const char *m = method; *m; m++)
        if (!isupper((unsigned char)*m) && *m != '-')
            return luaL_error(L, "jorch.http.request: method '%s' must be an upper-case token like GET or POST",
                              method);
    size_t body_len;
    const char *body = opt_string(L, 1, "body", &body_len);
    double timeout = opt_number(L, 1, "timeout", HTTP_DEFAULT_TIMEOUT_S);
    if (!(timeout > 0) || timeout > 1e7) return luaL_error(L, "jorch.http.request: timeout must be a positive number of seconds");
    size_t max_bytes = opt_size(L, 1, "max_bytes", HTTP_DEFAULT_MAX_BYTES);
    bool follow = opt_bool(L, 1, "follow");
    const char *ca_file = opt_string(L, 1, "ca_file", NULL);
    char shown[1024];
    redact_url(url, shown, sizeof shown);

    void **slot = act_box_push(L, http_req_free);
    http_req *r = calloc(1, sizeof *r);
    if (!r) return luaL_error(L, "jorch.http: out of memory");
    *slot = r;
    jbuf_init(&r->body, max_bytes);
    jbuf_init(&r->head, HTTP_MAX_HEADER_BYTES);
    r->max_bytes = max_bytes;
    r->attempt = act_attempt_of(L);
    http_headers(L, 1, r);
    r->curl = curl_easy_init();
    if (!r->curl) return luaL_error(L, "jorch.http: cannot create a curl handle (out of memory?)");
    CURL *c = r->curl;
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    /* Verification is not optional; ca_file only adds a trust anchor. */
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000.0));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, HTTP_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "jorch/" JORCH_VERSION);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, http_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, http_on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, r);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0 || body) {
        if (body || strcmp(method, "POST") == 0) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        }
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        if (rc == CURLE_ABORTED_BY_CALLBACK && r->stop != ACT_GO) {
            int stop = r->stop;
            act_box_free(slot);
            return act_attempt_raise_stop(L, stop);
        }
        char msg[2048];
        if (r->too_big) {
            snprintf(msg, sizeof msg, "http %s %s failed: the response body is larger than max_bytes = %zu "
                     "(raise max_bytes to accept it)", method, shown, max_bytes);
        } else {
            bool detail = errbuf[0] && !mentions_secret(L, 1, url, errbuf);
            snprintf(msg, sizeof msg, "http %s %s failed: %s%s%s%s", method, shown, curl_easy_strerror(rc),
                     detail ? " (" : "", detail ? errbuf : "", detail ? ")" : "");
        }
        act_box_free(slot);
        return luaL_error(L, "%s", msg);
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    http_push_headers(L, &r->head);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
    lua_setfield(L, -2, "body");
    act_box_free(slot);
    return 1;
}

/* get(url, opts) / post(url, body, opts): request with url (and body) set. */
static int http_shortcut(lua_State *L, const char *method, bool with_body) {
    luaL_checkstring(L, 1);
    int opts = with_body ? 3 : 2;
    lua_newtable(L);
    int t = lua_gettop(L);
    if (!lua_isnoneornil(L, opts)) {
        luaL_checktype(L, opts, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, opts)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, t);
        }
    }
    lua_pushvalue(L, 1);
    lua_setfield(L, t, "url");
    if (lua_getfield(L, t, "method") == LUA_TNIL) {
        lua_pushstring(L, method);
        lua_setfield(L, t, "method");
    }
    lua_pop(L, 1);
    if (with_body && !lua_isnoneornil(L, 2)) {
        luaL_checkstring(L, 2);
        lua_pushvalue(L, 2);
        lua_setfield(L, t, "body");
    }
    lua_pushcfunction(L, http_request);
    lua_pushvalue(L, t);
    lua_call(L, 1, 1);
    return 1;
}

static int http_get(lua_State *L) { return http_shortcut(L, "GET", false); }
static int http_post(lua_State *L) { return http_shortcut(L, "POST", true); }

/* ----------------------------------------------------------------- json */

static void jbuf_free_box(void *p) {
    jbuf_free(p);
    free(p);
}

static int json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    void **slot = act_box_push(L, jbuf_free_box);
    jbuf *b = malloc(sizeof *b);
    if (!b) return luaL_error(L, "jorch.json.encode: out of memory");
    jbuf_init(b, payload_default_limits.max_bytes ? payload_default_limits.max_bytes : ((size_t)4 << 20));
    *slot = b;
    jerr err = {0};
    if (payload_lua_to_json(L, 1, NULL, b, &err) < 0) {
        act_box_free(slot);
        return luaL_error(L, "jorch.json.encode: %s", err.msg);
    }
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    act_box_free(slot);
    return 1;
}

static int json_decode(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    jerr err = {0};
    if (payload_json_to_lua(L, s, len, NULL, &err) < 0) return luaL_error(L, "jorch.json.decode: %s", err.msg);
    return 1;
}

/* ------------------------------------------------------------------- fs */

static int fs_fail(lua_State *L, const char *fn, const char *what, const char *path, int e) {
    return luaL_error(L, "jorch.fs.%s: cannot %s '%s': %s (check the path and its permissions)", fn, what,
                      path, strerror(e));
}

static void free_box(void *p) { free(p); }

static int fs_read(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    void **slot = act_box_push(L, free_box);
    char *data = NULL;
    size_t len = 0;
    jerr err = {0};
    if (file_read_all(path, FS_READ_MAX, &data, &len, &err) < 0) return luaL_error(L, "jorch.fs.read: %s", err.msg);
    *slot = data;
    lua_pushlstring(L, data ? data : "", len);
    act_box_free(slot);
    return 1;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Atomic replace: write a temporary file beside the target, fsync it, then
 * rename over the target, so readers see the old or the new file, never a
 * half-written one. */
static int fs_write(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof tmp) return luaL_error(L, "jorch.fs.write: path '%s' is too long", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) return fs_fail(L, "write", "create a temporary file beside", path, errno);
    struct stat st;
    mode_t mode = stat(path, &st) == 0 ? (st.st_mode & 07777) : 0644;
    int e = 0;
    if (write_all(fd, data, len) < 0 || fchmod(fd, mode) < 0 || fsync(fd) < 0) e = errno;
    if (close(fd) < 0 && !e) e = errno;
    if (!e && rename(tmp, path) < 0) e = errno;
    if (e) {
        unlink(tmp);
        return fs_fail(L, "write", "write", path, e);
    }
    /* Make the rename itself durable. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

static int fs_append(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return fs_fail(L, "append", "open", path, errno);
    int e = write_all(fd, data, len) < 0 ? errno : 0;
    if (close(fd) < 0 && !e) e = errno;
    if (e) return fs_fail(L, "append", "append to", path, e);
    return 0;
}

static int fs_exists(lua_State *L) {
    struct stat st;
    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0);
    return 1;
}

static int fs_mkdir_p(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char buf[PATH_MAX];
    int n = snprintf(buf, sizeof buf, "%s", path);
    if (n <= 0 || (size_t)n >= sizeof buf) return luaL_error(L, "jorch.fs.mkdir_p: path '%s' is empty or too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        struct stat st;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST) return fs_fail(L, "mkdir_p", "create directory", buf, errno);
        if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode))
            return luaL_error(L, "jorch.fs.mkdir_p: '%s' exists and is not a directory", buf);
        *p = saved;
        if (saved == '\0') break;
    }
    return 0;
}

static int cmp_cstr(const void *x, const void *y) { return strcmp(*(const char *const *)x, *(const char *const *)y); }

static int fs_list(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    /* Names are gathered in C first (NUL-separated), so no Lua error can
     * happen while the directory is open. */
    void **slot = act_box_push(L, jbuf_free_box);
    jbuf *names = malloc(sizeof *names);
    if (!names) return luaL_error(L, "jorch.fs.list: out of memory");
    jbuf_init(names, FS_LIST_MAX);
    *slot = names;
    DIR *d = opendir(path);
    if (!d) return fs_fail(L, "list", "open directory", path, errno);
    size_t count = 0;
    bool full = false;
    for (;;) {
        struct dirent *e = readdir(d);
        if (!e) break;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (jbuf_append(names, e->d_name, strlen(e->d_name) + 1) < 0) {
            full = true;
            break;
        }
        count++;
    }
    closedir(d);
    if (full) return luaL_error(L, "jorch.fs.list: directory '%s' has too many entries", path);
    size_t bytes;
    if (!size_mul(count ? count : 1, sizeof(char *), &bytes)) return luaL_error(L, "jorch.fs.list: too many entries");
    const char **v = lua_newuserdatauv(L, bytes, 0);
    const char *p = names->data;
    for (size_t i = 0; i < count; i++) {
        v[i] = p;
        p += strlen(p) + 1;
    }
    qsort(v, count, sizeof *v, cmp_cstr);
    if (count > (size_t)INT_MAX) return luaL_error(L, "jorch.fs.list: too many entries");
    lua_createtable(L, (int)count, 0);
    for (size_t i = 0; i < count; i++) {
        lua_pushstring(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int fs_remove(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    if (unlink(path) == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    int e = errno;
    if (e == EISDIR || e == EPERM) {
        if (rmdir(path) == 0) {
            lua_pushboolean(L, 1);
            return 1;
        }
        e = errno;
    }
    if (e == ENOENT) {
        lua_pushboolean(L, 0);
        return 1;
    }
    return fs_fail(L, "remove", "remove", path, e);
}

/* ------------------------------------------------- env, sleep, now */

static int tk_env(lua_State *L) {
    const char *v = getenv(luaL_checkstring(L, 1));
    if (v) lua_pushstring(L, v);
    else lua_pushnil(L);
    return 1;
}

static int tk_sleep(lua_State *L) {
    double secs = luaL_checknumber(L, 1);
    if (!(secs >= 0) || secs > 1e9) return luaL_error(L, "jorch.sleep: seconds must be a non-negative number");
    int64_t until = act_mono_ns() + (int64_t)(secs * 1e9);
    act_attempt *a = act_attempt_of(L);
    for (;;) {
        int stop = act_attempt_check(a);
        if (stop != ACT_GO) return act_attempt_raise_stop(L, stop);
        int64_t left = until - act_mono_ns();
        if (left <= 0) return 0;
        if (left > SLEEP_SLICE_NS) left = SLEEP_SLICE_NS;
        struct timespec ts = {(time_t)(left / 1000000000LL), (long)(left % 1000000000LL)};
        nanosleep(&ts, NULL);
    }
}

static int tk_now(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    return 1;
}

static const luaL_Reg http_fns[] = {{"request", http_request}, {"get", http_get}, {"post", http_post}, {NULL, NULL}};
static const luaL_Reg json_fns[] = {{"encode", json_encode}, {"decode", json_decode}, {NULL, NULL}};
static const luaL_Reg fs_fns[] = {
    {"read", fs_read},     {"write", fs_write}, {"append", fs_append}, {"exists", fs_exists},
    {"mkdir_p", fs_mkdir_p}, {"list", fs_list},   {"remove", fs_remove}, {NULL, NULL},
};
static const luaL_Reg top_fns[] = {
    {"env", tk_env}, {"sleep", tk_sleep}, {"now", tk_now}, {"exec", act_exec_lua}, {NULL, NULL},
};

void act_toolkit_push(lua_State *L) {
    luaL_newlib(L, top_fns);
    luaL_newlib(L, http_fns);
    lua_setfield(L, -2, "http");
    luaL_newlib(L, json_fns);
    lua_setfield(L, -2, "json");
    luaL_newlib(L, fs_fns);
    lua_setfield(L, -2, "fs");
}
