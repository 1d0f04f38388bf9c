#!/usr/bin/env bash
# cppcheck.sh - static analysis as part of ctest, so the suite every
# developer runs before merging catches a new cppcheck finding (scripts/test
# runs scripts/cppcheck as a stage of its own too).
. "$JORCH_SOURCE_DIR/tests/cli/lib.sh"
t_begin "cppcheck --enable=warning finds nothing in runtime/ fuzz/ bench/ tests/unit/"
out=$("$JORCH_SOURCE_DIR/scripts/cppcheck" 2>&1)
rc=$?
if [ "$rc" -eq 0 ]; then ok "scripts/cppcheck"; else fail "scripts/cppcheck (exit $rc)" "$out"; fi
t_end
