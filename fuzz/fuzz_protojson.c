/*
 * fuzz_protojson.c - protojson_parse_history on arbitrary bytes. Whatever
 * parses must write, parse again, and write to identical bytes (the writer's
 * output is a fixed point), in the raw and in the shorthand payload form,
 * with everything freed.
 */
#include "common/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *write_json_ex(const ProtobufCMessage *m, int indent, unsigned flags, size_t *len) {
    jbuf b;
    jerr err = {0};
    jbuf_init(&b, 0);
    if (protojson_write_ex(m, indent, flags, &b, &err) != 0) {
        fprintf(stderr, "write of a parsed history failed: %s\n", err.msg);
        abort();
    }
    return jbuf_take(&b, len);
}

static char *write_json(const ProtobufCMessage *m, int indent, size_t *len) {
    return write_json_ex(m, indent, 0, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    jerr err = {0};
    Temporal__Api__History__V1__History *h =
        protojson_parse_history((const char *)data, size, &err);
    if (!h) return 0;
    /* Pretty output for half the inputs, to cover indentation too. */
    int indent = size % 2 ? 2 : 0;
    size_t alen = 0, blen = 0;
    char *a = write_json(&h->base, indent, &alen);
    if (!a) abort(); /* out of memory in a fuzzer: stop loudly */
    Temporal__Api__History__V1__History *h2 = protojson_parse_history(a, alen, &err);
    if (!h2) {
        fprintf(stderr, "re-parse of written history failed: %s\n", err.msg);
        abort();
    }
    char *b = write_json(&h2->base, indent, &blen);
    if (!b || alen != blen || memcmp(a, b, alen) != 0) {
        fprintf(stderr, "write is not a fixed point\n");
        abort();
    }
    /* Shorthand payloads (--output json's default): read back, they give
     * the same shorthand text again. */
    size_t slen = 0, s2len = 0;
    char *sa = write_json_ex(&h->base, indent, PROTOJSON_SHORTHAND, &slen);
    Temporal__Api__History__V1__History *h3 = sa ? protojson_parse_history(sa, slen, &err) : NULL;
    if (!h3) {
        fprintf(stderr, "re-parse of shorthand output failed: %s\n", err.msg);
        abort();
    }
    char *sb = write_json_ex(&h3->base, indent, PROTOJSON_SHORTHAND, &s2len);
    if (!sb || slen != s2len || memcmp(sa, sb, slen) != 0) {
        fprintf(stderr, "shorthand write is not a fixed point\n");
        abort();
    }
    free(sa);
    free(sb);
    protobuf_c_message_free_unpacked(&h3->base, NULL);
    free(a);
    free(b);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    protobuf_c_message_free_unpacked(&h2->base, NULL);
    return 0;
}
