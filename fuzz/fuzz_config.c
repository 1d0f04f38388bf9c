/*
 * fuzz_config.c - libFuzzer target for the jorch.yaml loader. Input bytes are
 * YAML text. Every input must either convert or fail with a message that
 * names the file; a successful conversion must be valid JSON (payload_from_json
 * accepts it).
 */
#include "common/common.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    jbuf out;
    jbuf_init(&out, 0);
    jerr err;
    memset(&err, 0, sizeof err);
    if (config_yaml_to_json((const char *)data, size, "fuzz.yaml", &out, &err) != 0) {
        if (strncmp(err.msg, "fuzz.yaml", 9) != 0 && strstr(err.msg, "out of memory") == NULL) abort();
        jbuf_free(&out);
        return 0;
    }
    if (!out.data) abort();
    Temporal__Api__Common__V1__Payload *p = payload_from_json(out.data, out.len, &err);
    if (!p) abort();
    protobuf_c_message_free_unpacked(&p->base, NULL);
    jbuf_free(&out);
    return 0;
}
