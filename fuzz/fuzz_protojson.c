/*
 * fuzz_protojson.c - protojson_parse_history on arbitrary bytes. Whatever
 * parses must write, parse again, and write to identical bytes (the writer's
 * output is a fixed point), with everything freed.
 */
#include "common/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *write_json(const ProtobufCMessage *m, int indent, size_t *len) {
    jbuf b;
    jerr err = {0};
    jbuf_init(&b, 0);
    if (protojson_write(m, indent, &b, &err) != 0) {
        fprintf(stderr, "write of a parsed history failed: %s\n", err.msg);
        abort();
    }
    return jbuf_take(&b, len);
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
    free(a);
    free(b);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    protobuf_c_message_free_unpacked(&h2->base, NULL);
    return 0;
}
