/*
 * fuzz_script - loading untrusted workflow scripts: the bytes are a script
 * compiled and run (top level) in a fresh sandbox with small limits. Any
 * crash, leak or sanitizer report is a bug; errors are expected.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    /* keep each input quick: a runaway loop stops after a million instructions */
    setenv("JORCH_INSTRUCTION_BUDGET", "1000000", 1);
    setenv("JORCH_MEMORY_LIMIT_MB", "16", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 64 * 1024) return 0;
    jerr e = {0};
    engine_check_script("fuzz.lua", (const char *)data, size, NULL, NULL, &e);
    return 0;
}
