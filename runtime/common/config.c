/*
 * config.c - jorch.yaml: a small YAML -> canonical JSON converter on libyaml.
 *
 * The configuration is read once, converted to JSON text and from there
 * handled like any other payload (the CLI hands it to activities as
 * `jorch.config`). Only the JSON-shaped part of YAML is accepted: mappings
 * with scalar keys, sequences and scalars. Plain scalars are typed the way
 * YAML 1.2's core schema types them (null, true/false, integers, floats);
 * quoted and block scalars are always strings. Aliases are refused (they are
 * the "billion laughs" vector and never needed in a config file), as are
 * duplicate keys, documents nested deeper than CONFIG_MAX_DEPTH and inputs
 * larger than CONFIG_MAX_BYTES. Object keys come out sorted by byte order,
 * so the same file always gives the same bytes.
 */
#include "common/common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <yaml.h>

enum {
    CONFIG_MAX_DEPTH = 64,
    CONFIG_MAX_BYTES = 1024 * 1024,
    CONFIG_MAX_NODES = 100000,
};

typedef struct conv {
    yaml_parser_t parser;
    const char *name;   /* file name used in messages */
    size_t nodes;
    size_t max_out;     /* limit for every intermediate buffer */
    jerr *err;
} conv;

typedef struct entry {
    char *key;
    size_t key_len;
    char *value;        /* JSON text of the value */
    size_t value_len;
} entry;

/* ------------------------------------------------------------- messages */

static int fail_at(conv *c, const yaml_mark_t *m, const char *fmt, const char *arg) {
    char what[512];
    snprintf(what, sizeof what, fmt, arg ? arg : "");
    return jerr_set(c->err, JERR_USAGE, "%s:%zu:%zu: %s", c->name, m->line + 1, m->column + 1,
                    what);
}

static int parser_failed(conv *c) {
    yaml_parser_t *p = &c->parser;
    if (p->error == YAML_MEMORY_ERROR) return jerr_oom(c->err, "parsing YAML configuration");
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->context)
        return jerr_set(c->err, JERR_USAGE, "%s:%zu:%zu: %s %s (fix the YAML syntax there)",
                        c->name, p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
                        p->context);
    return jerr_set(c->err, JERR_USAGE, "%s:%zu:%zu: %s (fix the YAML syntax there)", c->name,
                    p->problem_mark.line + 1, p->problem_mark.column + 1, problem);
}

/* Appends, telling "too large" apart from out of memory. */
static int put(conv *c, jbuf *b, const void *p, size_t n) {
    size_t need;
    if (!size_add(b->len, n, &need) || need > c->max_out)
        return jerr_set(c->err, JERR_USAGE,
                        "%s: configuration too large once converted (limit %zu bytes)", c->name,
                        c->max_out);
    if (jbuf_append(b, p, n) != 0) return jerr_oom(c->err, "converting YAML configuration");
    return 0;
}

static int puts_(conv *c, jbuf *b, const char *s) { return put(c, b, s, strlen(s)); }

static int next_event(conv *c, yaml_event_t *ev) {
    if (!yaml_parser_parse(&c->parser, ev)) return parser_failed(c);
    return 0;
}

/* ------------------------------------------------------------- scalars */

static int put_json_string(conv *c, jbuf *b, const char *s, size_t n) {
    if (put(c, b, "\"", 1) != 0) return -1;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[8];
        switch (ch) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (ch < 0x20 || ch == 0x7f) {
                snprintf(ubuf, sizeof ubuf, "\\u%04x", ch);
                esc = ubuf;
            }
        }
        if (esc) {
            if (put(c, b, s + i - run, run) != 0 || puts_(c, b, esc) != 0) return -1;
            run = 0;
        } else {
            run++;
        }
    }
    if (put(c, b, s + n - run, run) != 0) return -1;
    return put(c, b, "\"", 1);
}

static bool is_one_of(const char *s, const char *const *words) {
    for (size_t i = 0; words[i]; i++)
        if (strcmp(s, words[i]) == 0) return true;
    return false;
}

static bool all_digits(const char *s, const char *digits) {
    if (!*s) return false;
    for (; *s; s++)
        if (!strchr(digits, *s)) return false;
    return true;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool looks_float(const char *s) {
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    size_t int_digits = 0, frac_digits = 0;
    while (*p >= '0' && *p <= '9') { p++; int_digits++; }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') { p++; frac_digits++; }
    }
    if (int_digits == 0 && frac_digits == 0) return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+') p++;
        if (!(*p >= '0' && *p <= '9')) return false;
        while (*p >= '0' && *p <= '9') p++;
    }
    return *p == '\0';
}

/* A plain scalar typed per the YAML 1.2 core schema, written as JSON. */
static int put_plain_scalar(conv *c, jbuf *b, const char *s, size_t n, const yaml_mark_t *m) {
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    static const char *const specials[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
                                           "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN",
                                           NULL};
    /* A NUL inside means it came from an escape; such text is never a number. */
    if (strlen(s) != n) return put_json_string(c, b, s, n);
    if (is_one_of(s, nulls)) return puts_(c, b, "null");
    if (is_one_of(s, trues)) return puts_(c, b, "true");
    if (is_one_of(s, falses)) return puts_(c, b, "false");
    if (is_one_of(s, specials))
        return fail_at(c, m, "'%s' (infinity or NaN) cannot be represented in JSON; quote it "
                             "if a string is meant", s);

    const char *digits = s;
    if (*digits == '-' || *digits == '+') digits++;
    int base = 0;
    const char *body = NULL;
    if (all_digits(digits, "0123456789")) {
        base = 10;
        body = s;
    } else if (digits == s && strncmp(s, "0x", 2) == 0 && all_digits(s + 2, "0123456789abcdefABCDEF")) {
        base = 16;
        body = s + 2;
    } else if (digits == s && strncmp(s, "0o", 2) == 0 && all_digits(s + 2, "01234567")) {
        base = 8;
        body = s + 2;
    }
    if (base) {
        errno = 0;
        char *end = NULL;
        long long v = strtoll(body, &end, base);
        if (errno == ERANGE || !end || *end != '\0')
            return fail_at(c, m, "integer '%s' is out of range (64-bit signed); quote it if a "
                                 "string is meant", s);
        char num[32];
        snprintf(num, sizeof num, "%lld", v);
        return puts_(c, b, num);
    }
    if (looks_float(s)) {
        errno = 0;
        double d = strtod(s, NULL);
        if (!isfinite(d))
            return fail_at(c, m, "number '%s' is out of range; quote it if a string is meant", s);
        /* shortest text that reads back as the same double */
        char num[40];
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(num, sizeof num, "%.*g", prec, d);
            if (strtod(num, NULL) == d) break;
        }
        if (!strpbrk(num, ".eEn")) {
            /* keep it a float: "1e3" must not turn into the integer 1000 */
            size_t l = strlen(num);
            if (l + 2 < sizeof num) memcpy(num + l, ".0", 3);
        }
        return puts_(c, b, num);
    }
    return put_json_string(c, b, s, n);
}

static bool tagged_str(const yaml_char_t *tag) {
    return tag && strcmp((const char *)tag, YAML_STR_TAG) == 0;
}

static int put_scalar(conv *c, jbuf *b, const yaml_event_t *ev) {
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || tagged_str(ev->data.scalar.tag))
        return put_json_string(c, b, s, n);
    return put_plain_scalar(c, b, s, n, &ev->start_mark);
}

/* ------------------------------------------------------------- nodes */

static int convert_node(conv *c, yaml_event_t *ev, size_t depth, jbuf *out);

static void entries_free(entry *es, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(es[i].key);
        free(es[i].value);
    }
    free(es);
}

static int entry_cmp(const void *a, const void *b) {
    const entry *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int r = memcmp(x->key, y->key, n);
    if (r != 0) return r;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static int convert_sequence(conv *c, size_t depth, jbuf *out) {
    if (put(c, out, "[", 1) != 0) return -1;
    bool first = true;
    for (;;) {
        yaml_event_t ev;
        if (next_event(c, &ev) != 0) return -1;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        int rc = first ? 0 : put(c, out, ",", 1);
        if (rc == 0) rc = convert_node(c, &ev, depth + 1, out);
        yaml_event_delete(&ev);
        if (rc != 0) return -1;
        first = false;
    }
    return put(c, out, "]", 1);
}

/* Reads one key/value pair into *e; returns 1 at the end of the mapping. */
static int read_entry(conv *c, size_t depth, entry *e) {
    yaml_event_t ev;
    if (next_event(c, &ev) != 0) return -1;
    if (ev.type == YAML_MAPPING_END_EVENT) {
        yaml_event_delete(&ev);
        return 1;
    }
    if (ev.type != YAML_SCALAR_EVENT) {
        int rc = ev.type == YAML_ALIAS_EVENT
                     ? fail_at(c, &ev.start_mark, "aliases (*%s) are not supported in jorch "
                                                  "configuration; repeat the value instead",
                               (const char *)ev.data.alias.anchor)
                     : fail_at(c, &ev.start_mark, "a mapping key must be a plain text key%s", NULL);
        yaml_event_delete(&ev);
        return rc;
    }
    e->key = jstrndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
    e->key_len = ev.data.scalar.length;
    yaml_event_delete(&ev);
    if (!e->key) return jerr_oom(c->err, "converting YAML configuration");

    jbuf v;
    jbuf_init(&v, c->max_out);
    if (next_event(c, &ev) != 0) {
        jbuf_free(&v);
        return -1;
    }
    int rc = convert_node(c, &ev, depth + 1, &v);
    yaml_event_delete(&ev);
    if (rc != 0) {
        jbuf_free(&v);
        return -1;
    }
    e->value = jbuf_take(&v, &e->value_len);
    if (!e->value) return jerr_oom(c->err, "converting YAML configuration");
    return 0;
}

static int convert_mapping(conv *c, const yaml_mark_t *start, size_t depth, jbuf *out) {
    entry *es = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8, bytes;
            if (!size_mul(ncap, sizeof *es, &bytes)) {
                entries_free(es, n);
                return jerr_oom(c->err, "converting YAML configuration");
            }
            entry *ne = realloc(es, bytes);
            if (!ne) {
                entries_free(es, n);
                return jerr_oom(c->err, "converting YAML configuration");
            }
            es = ne;
            cap = ncap;
        }
        memset(&es[n], 0, sizeof es[n]);
        int rc = read_entry(c, depth, &es[n]);
        if (rc == 1) break;
        if (rc != 0) {
            entries_free(es, n + 1);
            return -1;
        }
        n++;
    }
    if (n > 1) qsort(es, n, sizeof *es, entry_cmp);
    for (size_t i = 1; i < n; i++) {
        if (entry_cmp(&es[i - 1], &es[i]) == 0) {
            int rc = fail_at(c, start, "duplicate key '%s' in this mapping; keep only one", es[i].key);
            entries_free(es, n);
            return rc;
        }
    }
    int rc = put(c, out, "{", 1);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i > 0) rc = put(c, out, ",", 1);
        if (rc == 0) rc = put_json_string(c, out, es[i].key, es[i].key_len);
        if (rc == 0) rc = put(c, out, ":", 1);
        if (rc == 0) rc = put(c, out, es[i].value, es[i].value_len);
    }
    if (rc == 0) rc = put(c, out, "}", 1);
    entries_free(es, n);
    return rc;
}

/* Converts the node that starts with ev (owned by the caller). */
static int convert_node(conv *c, yaml_event_t *ev, size_t depth, jbuf *out) {
    if (depth > CONFIG_MAX_DEPTH)
        return fail_at(c, &ev->start_mark, "nested too deeply (limit %s levels)", "64");
    if (++c->nodes > CONFIG_MAX_NODES)
        return fail_at(c, &ev->start_mark, "too many values (limit %s)", "100000");
    switch (ev->type) {
    case YAML_SCALAR_EVENT: return put_scalar(c, out, ev);
    case YAML_SEQUENCE_START_EVENT: return convert_sequence(c, depth, out);
    case YAML_MAPPING_START_EVENT: return convert_mapping(c, &ev->start_mark, depth, out);
    case YAML_ALIAS_EVENT:
        return fail_at(c, &ev->start_mark,
                       "aliases (*%s) are not supported in jorch configuration; repeat the value "
                       "instead",
                       (const char *)ev->data.alias.anchor);
    default:
        return fail_at(c, &ev->start_mark, "unexpected YAML event%s", NULL);
    }
}

/* stream-start, [document-start, node, document-end], stream-end */
static int convert_stream(conv *c, jbuf *out) {
    yaml_event_t ev;
    if (next_event(c, &ev) != 0) return -1;
    yaml_event_delete(&ev); /* stream start */
    if (next_event(c, &ev) != 0) return -1;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return puts_(c, out, "{}"); /* an empty file is an empty configuration */
    }
    yaml_event_delete(&ev); /* document start */
    if (next_event(c, &ev) != 0) return -1;
    int rc = convert_node(c, &ev, 1, out);
    yaml_event_delete(&ev);
    if (rc != 0) return -1;
    if (next_event(c, &ev) != 0) return -1;
    yaml_event_delete(&ev); /* document end */
    if (next_event(c, &ev) != 0) return -1;
    if (ev.type != YAML_STREAM_END_EVENT) {
        rc = fail_at(c, &ev.start_mark, "more than one YAML document (---); a configuration "
                                        "file holds exactly one%s", NULL);
        yaml_event_delete(&ev);
        return rc;
    }
    yaml_event_delete(&ev);
    return 0;
}

int config_yaml_to_json(const char *buf, size_t len, const char *name, jbuf *json_out, jerr *err) {
    if (!name) name = "<config>";
    if (!buf && len) return jerr_set(err, JERR_INTERNAL, "%s: no input buffer", name);
    if (len > CONFIG_MAX_BYTES)
        return jerr_set(err, JERR_USAGE, "%s: larger than the limit of %d bytes for a configuration "
                        "file", name, CONFIG_MAX_BYTES);
    conv c;
    memset(&c, 0, sizeof c);
    c.name = name;
    c.err = err;
    c.max_out = json_out->max < (size_t)16 * CONFIG_MAX_BYTES ? json_out->max
                                                                : (size_t)16 * CONFIG_MAX_BYTES;
    if (!yaml_parser_initialize(&c.parser)) return jerr_oom(err, "initialising the YAML parser");
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)(buf ? buf : ""), len);
    jbuf tmp;
    jbuf_init(&tmp, c.max_out);
    int rc = convert_stream(&c, &tmp);
    yaml_parser_delete(&c.parser);
    if (rc == 0) rc = put(&c, json_out, tmp.data ? tmp.data : "", tmp.len);
    jbuf_free(&tmp);
    return rc;
}

int config_load_yaml_as_json(const char *path, jbuf *json_out, jerr *err) {
    char *src = NULL;
    size_t len = 0;
    if (file_read_all(path, CONFIG_MAX_BYTES, &src, &len, err) != 0)
        return jerr_prefix(err, "cannot load configuration");
    int rc = config_yaml_to_json(src, len, path, json_out, err);
    free(src);
    return rc;
}

int config_locate(const char **path, jerr *err) {
    const char *env = getenv("JORCH_CONFIG");
    if (env != NULL && env[0] != '\0') {
        if (access(env, R_OK) != 0)
            return jerr_set(err, JERR_USAGE,
                            "cannot read the configuration file '%s' named by JORCH_CONFIG: %s "
                            "(fix the path or unset JORCH_CONFIG)", env, strerror(errno));
        *path = env;
        return 1;
    }
    if (access("jorch.yaml", F_OK) != 0) return 0;
    *path = "jorch.yaml";
    return 1;
}

/* jorch.yaml as JSON for activities (jorch.config), with "home" = the
 * store directory first so the file's own "home" wins. */
int config_activity_json(const char *home, jbuf *out, jerr *err) {
    jbuf_init(out, 2u << 20);
    jbuf yaml;
    jbuf_init(&yaml, 2u << 20);
    const char *path = NULL;
    int found = config_locate(&path, err);
    if (found < 0 || (found == 1 && config_load_yaml_as_json(path, &yaml, err) != 0)) {
        jbuf_free(&yaml);
        return -1;
    }
    const char *rest = found == 1 && yaml.data ? yaml.data : "{}";
    if (rest[0] != '{') {
        jbuf_free(&yaml);
        return jerr_set(err, JERR_USAGE, "%s: the configuration must be a mapping at the top level", path);
    }
    jbuf_puts(out, "{\"home\":\"");
    for (const unsigned char *p = (const unsigned char *)home; *p; p++) {
        if (*p == '"' || *p == '\\') jbuf_putc(out, '\\');
        if (*p >= 0x20) jbuf_putc(out, (char)*p);
    }
    jbuf_putc(out, '"');
    if (strcmp(rest, "{}") != 0) jbuf_putc(out, ',');
    int rc = jbuf_puts(out, rest + 1);
    jbuf_free(&yaml);
    return rc == 0 ? 0 : jerr_oom(err, "reading the configuration");
}


/* The one walk of a section's keys that the limits: and worker: sections
 * share; what a key means is the setter's. */
int config_section_apply(const char *path, const config_section *sec, void *target, jerr *err) {
    jbuf json;
    jbuf_init(&json, 0);
    if (config_load_yaml_as_json(path, &json, err) != 0) {
        jbuf_free(&json);
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(json.data != NULL ? json.data : "{}", json.data != NULL ? json.len : 2);
    jbuf_free(&json);
    if (root == NULL) return jerr_set(err, JERR_INTERNAL, "%s: the YAML converter produced invalid JSON", path);
    int rc = 0;
    const cJSON *t = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, sec->name) : NULL;
    if (t != NULL && !cJSON_IsNull(t) && !cJSON_IsObject(t))
        rc = jerr_set(err, JERR_USAGE, "%s: %s: must be a mapping %s", path, sec->name, sec->mapping_hint);
    for (const cJSON *kv = cJSON_IsObject(t) ? t->child : NULL; kv != NULL && rc == 0; kv = kv->next) {
        char source[1200], num[64];
        const char *value;
        snprintf(source, sizeof source, "%s: %s.%.60s", path, sec->name, kv->string);
        if (cJSON_IsNull(kv)) continue; /* "key:" with nothing: not set */
        if (cJSON_IsNumber(kv)) {
            snprintf(num, sizeof num, "%.17g", kv->valuedouble);
            value = num;
        } else if (cJSON_IsString(kv)) {
            value = kv->valuestring;
        } else if (sec->booleans && cJSON_IsBool(kv)) {
            value = cJSON_IsTrue(kv) ? "true" : "false";
        } else {
            rc = jerr_set(err, JERR_USAGE, "%s must be %s", source, sec->value_hint);
            break;
        }
        if (sec->set(target, kv->string, value, source, err) != 0) rc = -1;
    }
    cJSON_Delete(root);
    return rc;
}
