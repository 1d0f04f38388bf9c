/*
 * cli_worker.c - `jorch worker`: serves workflows/ and activities/ on a
 * Temporal task queue.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli_int.h"

int cli_verb_worker(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("Usage: jorch worker\n\nServes workflows/ and activities/ on a Temporal task queue.\n"
               "Not available in this version: the Temporal worker is still being built. Use the\n"
               "embedded backend ('jorch run') or start workflows on Temporal with 'jorch start --temporal'.\n");
        return 0;
    }
    cli_errorf("'jorch worker' is not available in this version: the Temporal worker is still being built "
               "(use 'jorch run' on the embedded backend)");
    return CLI_USAGE;
}

