/*
 * fuzz_grpc.c - libFuzzer target for the gRPC wire pieces of
 * runtime/temporal: the deframer fed in fuzzer-chosen chunks, and the
 * response-metadata parser (grpc-status, grpc-message,
 * grpc-status-details-bin -> google.rpc.Status -> Temporal errordetails).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "temporal/temporal.h"
#include "temporal/api/errordetails/v1/message.pb-c.h"

static void fuzz_deframer(const uint8_t *data, size_t size) {
    /* First byte: chunk size; a small max so the limit path is reached. */
    if (size < 2) return;
    size_t chunk = (size_t)data[0] % 17 + 1;
    size_t max = (size_t)data[1] * 64;
    data += 2;
    size -= 2;
    tc_deframer d;
    tc_deframer_init(&d, max);
    jerr err;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (tc_deframer_feed(&d, data + off, n, &err) != 0) break;
    }
    if (tc_deframer_finish(&d, &err) == 0 && d.have_message && d.body.len > max) abort();
    tc_deframer_free(&d);
}

static void fuzz_metadata(const uint8_t *data, size_t size) {
    tc_meta m;
    tc_meta_init(&m);
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\n') {
            tc_meta_line(&m, (const char *)data + start, i - start);
            start = i + 1;
        }
    }
    /* Also the raw bytes as one details value: reaches the Status decoder directly. */
    tc_status st;
    tc_status_init(&st);
    tc_status_from_meta(&m, &st);
    static const ProtobufCMessageDescriptor *const descs[] = {
        &temporal__api__errordetails__v1__workflow_execution_already_started_failure__descriptor,
        &temporal__api__errordetails__v1__namespace_not_found_failure__descriptor,
        &temporal__api__errordetails__v1__query_failed_failure__descriptor,
    };
    for (size_t i = 0; i < sizeof descs / sizeof descs[0]; i++) {
        ProtobufCMessage *d = tc_status_detail(&st, descs[i]);
        if (d != NULL) protobuf_c_message_free_unpacked(d, NULL);
    }
    if (strlen(st.message) >= sizeof st.message) abort();
    tc_status_clear(&st);
    tc_meta_free(&m);

    unsigned char *bin = NULL;
    size_t binlen = 0;
    if (tc_base64_decode((const char *)data, size, &bin, &binlen, NULL) == 0) {
        if (binlen > size) abort();
        Google__Rpc__Status *s = google__rpc__status__unpack(NULL, binlen, bin);
        if (s != NULL) google__rpc__status__free_unpacked(s, NULL);
        free(bin);
    }
    char out[64];
    size_t n = tc_percent_decode((const char *)data, size, out, sizeof out);
    if (n >= sizeof out || out[n] != '\0') abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (data[0] & 1)
        fuzz_deframer(data + 1, size - 1);
    else
        fuzz_metadata(data + 1, size - 1);
    return 0;
}
