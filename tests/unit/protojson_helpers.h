/*
 * protojson_helpers.h - what the protojson tests (test_protojson.c,
 * test_shorthand.c) both need: a message written as JSON, a history parsed
 * from a string, and binary equality of two messages. Header-only, static:
 * each test_*.c is its own executable.
 */
#ifndef JORCH_PROTOJSON_HELPERS_H
#define JORCH_PROTOJSON_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

typedef Temporal__Api__History__V1__History History;

/* Written JSON of a message with protojson_write_ex's flags (malloc'ed),
 * or NULL with the error printed. */
static char *to_json(const ProtobufCMessage *m, int indent, unsigned flags) {
    jbuf b;
    jbuf_init(&b, 0);
    jerr err = {0};
    if (protojson_write_ex(m, indent, flags, &b, &err) != 0) {
        fprintf(stderr, "protojson_write_ex: %s\n", err.msg);
        jbuf_free(&b);
        return NULL;
    }
    return jbuf_take(&b, NULL);
}

/* A history parsed from json; with err NULL a failure is printed. */
static History *parse_history(const char *json, jerr *err) {
    jerr local = {0};
    History *h = protojson_parse_history(json, strlen(json), err != NULL ? err : &local);
    if (h == NULL && err == NULL) fprintf(stderr, "parse: %s\n", local.msg);
    return h;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len) {
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *p = malloc(*len ? *len : 1);
    if (p) protobuf_c_message_pack(m, p);
    return p;
}

/* Same wire bytes. */
__attribute__((unused)) static bool same_pb(const ProtobufCMessage *a, const ProtobufCMessage *b) {
    size_t la, lb;
    uint8_t *pa = pack(a, &la), *pb = pack(b, &lb);
    bool same = pa && pb && la == lb && memcmp(pa, pb, la) == 0;
    free(pa);
    free(pb);
    return same;
}

#endif
