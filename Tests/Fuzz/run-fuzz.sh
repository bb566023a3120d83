#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (Tests/Fuzz/README.md).
#
#   Tests/Fuzz/run-fuzz.sh [seconds] [target...]   # default 600 s per target, all targets
#   Tests/Fuzz/run-fuzz.sh --smoke                 # CI smoke test: 30 s per target
#
# Environment:
#   FUZZ_PARALLEL  targets run at once (default 1; 2 suits a 2-core machine)
#   FUZZ_SCRATCH   SwiftPM scratch path (default .build-fuzz)
#   FUZZ_OUT       where logs, grown corpora and crashes go (default $FUZZ_SCRATCH/fuzz-out)
#
# Crashes, leaks and timeouts are saved as $FUZZ_OUT/crashes/<target>/{crash,leak,timeout,oom}-<sha1>;
# reproduce one with `.build-fuzz/release/<target> <file>`. The seed corpus in
# Tests/Fuzz/corpus/<target> is only read; new inputs go to $FUZZ_OUT/corpus/<target>.
# Exits non-zero if any target crashed.
set -euo pipefail

# Everything is in a function so bash reads the whole file before running any of it:
# editing the script during a long run cannot change the run.
main() {
    cd "$(dirname "$0")/../.."

    seconds=600
    if [[ $# -gt 0 ]]; then
        if [[ $1 == --smoke ]]; then seconds=30; else seconds=$1; fi
        shift
    fi
    targets=("$@")
    [[ ${#targets[@]} -gt 0 ]] || targets=(FuzzQuery FuzzZoneFile FuzzRData FuzzConfig)
    parallel=${FUZZ_PARALLEL:-1}
    scratch=${FUZZ_SCRATCH:-.build-fuzz}
    outdir=${FUZZ_OUT:-$scratch/fuzz-out}

    # lld: ld.gold fails with an internal error on the release sanitizer build (dwarf_reader.cc).
    for t in "${targets[@]}"; do
        echo "== building $t"
        MERIDIAN_FUZZ=1 swift build -c release --product "$t" --scratch-path "$scratch" \
            -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld 2>&1 | grep -v "Cannot export local symbol" || true
        [[ -x $scratch/release/$t ]] || { echo "build of $t failed" >&2; exit 2; }
    done

    run_one() {
        local t=$1
        mkdir -p "$outdir/corpus/$t" "$outdir/crashes/$t"
        local extra=()
        [[ -f Tests/Fuzz/$t.dict ]] && extra+=(-dict="Tests/Fuzz/$t.dict")
        # Zone files past 4 KiB add parse time, not new paths: keep the fuzzer fast.
        [[ $t == FuzzZoneFile ]] && extra+=(-max_len=4096)
        # Swift's backtracer would catch the signal before ASan and libFuzzer see it.
        SWIFT_BACKTRACE=enable=no "$scratch/release/$t" \
            -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$outdir/crashes/$t/" "${extra[@]}" \
            "$outdir/corpus/$t" "Tests/Fuzz/corpus/$t" >"$outdir/$t.log" 2>&1 || true
    }

    mkdir -p "$outdir"
    running=0
    for t in "${targets[@]}"; do
        echo "== fuzzing $t for ${seconds}s (log: $outdir/$t.log)"
        run_one "$t" &
        running=$((running + 1))
        if (( running >= parallel )); then wait -n || true; running=$((running - 1)); fi
    done
    wait

    status=0
    for t in "${targets[@]}"; do
        log=$outdir/$t.log
        echo "== $t"
        grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1 || true
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
        crashes=$(find "$outdir/crashes/$t" -type f | wc -l)
        echo "crashes: $crashes"
        if (( crashes > 0 )) || grep -qE 'ERROR: (libFuzzer|AddressSanitizer)|SUMMARY: ' "$log"; then
            status=1
            grep -E 'ERROR: |SUMMARY: |Fatal error|Test unit written' "$log" | head -5 || true
        fi
    done
    return $status
}

main "$@"
exit $?
