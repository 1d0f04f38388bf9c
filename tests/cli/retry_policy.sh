#!/usr/bin/env bash
# Retry policies decided by the embedded backend, as Temporal's server does:
# backoff, maximum attempts, non-retryable types, start-to-close timeouts.
. "$(dirname "$0")/lib.sh"
t_begin "retry policy"
run() { run_jorch run --quiet --id "$1" --activities "$ACTS" "$WFS/retries.lua" "$1"; }

start=$(date +%s%N)
run flaky
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect_eq "flaky activity succeeds on attempt 3" "$OUT" "3"
# backoff 200ms then 400ms: at least 600ms between the attempts
check "backoff intervals were waited (${elapsed_ms}ms >= 600ms)" test "$elapsed_ms" -ge 600
hist=$("$JORCH" history flaky --output json)
expect_contains "only the final attempt is in history" "$hist" '"attempt": 3'
expect_eq "one ActivityTaskStarted" "$(printf '%s' "$hist" | grep -c EVENT_TYPE_ACTIVITY_TASK_STARTED)" "1"

run exhausted
expect_eq "maximum attempts reached" "$OUT" '{"cause":"'"$ACTS"'/steps.lua:19: attempt 4 fails on purpose","ok":false,"retry_state":"MAXIMUM_ATTEMPTS_REACHED","type":"ActivityError"}'

run non_retryable
expect_eq "non-retryable error is not retried" "$OUT" '{"cause":"ValidationError","ok":false,"retry_state":"NON_RETRYABLE_FAILURE"}'
expect_contains "non-retryable ran once" "$("$JORCH" history non_retryable --output json)" '"attempt": 1'

run listed
expect_eq "type in non_retryable_error_types" "$OUT" '{"ok":false,"retry_state":"NON_RETRYABLE_FAILURE"}'

start=$(date +%s%N)
run hang
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect_eq "hanging activity times out and is retried" "$OUT" '{"cause":"TimeoutError","ok":false,"retry_state":"MAXIMUM_ATTEMPTS_REACHED","timeout":"START_TO_CLOSE"}'
check "two 1s attempts took about 2s (${elapsed_ms}ms)" test "$elapsed_ms" -ge 2000 -a "$elapsed_ms" -lt 10000
expect_contains "the timeout is an ActivityTaskTimedOut event" "$("$JORCH" history hang --output json)" EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT

run_jorch run --quiet --activities "$ACTS" "$JORCH_SOURCE_DIR/tests/cli/workflows/heartbeat.lua" beating
expect_eq "heartbeating activity outlives its heartbeat timeout" "$OUT" '{"ok":true,"value":"beat for 2.5s"}'
start=$(date +%s%N)
run_jorch run --quiet --id silent --activities "$ACTS" "$JORCH_SOURCE_DIR/tests/cli/workflows/heartbeat.lua" silent
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect_eq "silent activity: heartbeat timeout" "$OUT" '{"cause":"TimeoutError","ok":false,"retry_state":"MAXIMUM_ATTEMPTS_REACHED","timeout":"HEARTBEAT"}'
check "silent activity stopped early (${elapsed_ms}ms < 5000ms)" test "$elapsed_ms" -lt 5000

# heartbeat details reach the next attempt: every value of the last heartbeat
HB_DETAILS='{"a":"page","attempt":3,"b_nil":true,"c":{"cursor":7},"count":3,"first":"page"}'
run_jorch run --quiet --activities "$ACTS" "$JORCH_SOURCE_DIR/tests/cli/workflows/hb_details.lua"
expect_eq "heartbeat details: the next attempt gets all the values of the last heartbeat" "$RC:$OUT" "0:$HB_DETAILS"

run unknown
expect_eq "unknown activity fails the workflow (exit 1)" "$RC" "1"
expect_contains "unknown activity is named" "$ERR" "unknown activity 'doesNotExist'"

run bad_result
expect_eq "non-JSON activity result fails (exit 1)" "$RC" "1"
expect_contains "non-JSON result explained" "$ERR" "returnsFunction"
t_end
