#!/usr/bin/env bash
# Runs libFuzzer targets one after the other: bash tests/fuzz/run.sh DIR SECONDS TARGET...
# (make fuzz builds DIR/tests/fuzz_TARGET, then runs this; docs/fuzzing.md).
# Each target runs for SECONDS on DIR/corpus/TARGET (the seed corpus tests/fuzz/corpus/TARGET
# copied in, plus what earlier runs found there) and tests/fuzz/regress/TARGET, and prints
# its executions and executions per second. An input that crashes, leaks or hangs is left in
# DIR/crashes/TARGET/ and named on stderr; the exit status is 1 if any target failed.
set -uo pipefail
cd "$(dirname "$0")/../.."

dir=$1 secs=$2
shift 2
failed=()
for t in "$@"; do
    case $t in
        xml) max_len=16384 ;;   # a ListObjectsV2 page of a few dozen keys
        options) max_len=1024 ;;
        *) max_len=4096 ;;      # header lines, records, a request to sign
    esac
    corpus=$dir/corpus/$t crashes=$dir/crashes/$t log=$dir/fuzz_$t.log
    mkdir -p "$corpus" "$crashes"
    cp -n tests/fuzz/corpus/"$t"/* "$corpus"/
    echo "== fuzz_$t: ${secs}s (log $log)"
    UBSAN_OPTIONS=print_stacktrace=1 "$dir/tests/fuzz_$t" -max_total_time="$secs" \
        -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -close_fd_mask=1 -artifact_prefix="$crashes/" "$corpus" "tests/fuzz/regress/$t" \
        >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    if [ "$rc" -eq 0 ]; then
        echo "fuzz_$t: ${execs:-?} executions, ${rate:-?} exec/s, corpus $(ls "$corpus" | wc -l) inputs"
        continue
    fi
    failed+=("$t")
    input=$(sed -n 's/^.*Test unit written to //p' "$log" | tail -n 1)
    grep -E "^(==[0-9]+==ERROR|SUMMARY|.*invariant broken)" "$log" | head -n 5 >&2
    echo "fuzz_$t FAILED (exit $rc): log $log" >&2
    if [ -n "$input" ]; then
        echo "  input: $input" >&2
        echo "  reproduce: $dir/tests/fuzz_$t $input" >&2
        echo "  once fixed: cp $input tests/fuzz/regress/$t/ (make unit then runs it)" >&2
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "== fuzzing failed: ${failed[*]}" >&2
    exit 1
fi
