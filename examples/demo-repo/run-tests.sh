#!/bin/sh
# run-tests.sh - the demo repository's test suite: every tests/*.sh file
# defines one check; prints "N passed, N failed" like many runners do.
cd "$(dirname "$0")" || exit 2
passed=0
failed=0
for t in tests/*.sh; do
    [ -f "$t" ] || continue
    if sh "$t"; then
        echo "ok   $t"
        passed=$((passed + 1))
    else
        echo "FAIL $t"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
