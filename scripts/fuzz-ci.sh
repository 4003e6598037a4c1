#!/usr/bin/env bash
# CI step: builds every libFuzzer target (http, websocket, hub, tls, redis) and fuzzes each for
# TORUS_FUZZ_SECONDS seconds (default 60, as issue 13 asks; 0 skips the step). Fails,
# naming the target and the kind of failure (crash, leak, timeout, out-of-memory, build),
# if any target fails; the reproducer is under .build-fuzz/artifacts/TARGET/ and the full
# log under .build-fuzz/logs/TARGET.log.
#
# Cost: about 2 to 3 minutes of compiling (the first time) plus 2 x TORUS_FUZZ_SECONDS.
#
#   TORUS_FUZZ_SECONDS=30 scripts/fuzz-ci.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECONDS_PER_TARGET="${TORUS_FUZZ_SECONDS:-60}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]]; then
    echo "fuzz-ci: TORUS_FUZZ_SECONDS must be a whole number of seconds, not '$SECONDS_PER_TARGET'" >&2
    exit 2
fi
if [ "$SECONDS_PER_TARGET" = 0 ]; then
    echo "fuzz-ci: skipped (TORUS_FUZZ_SECONDS=0)"
    exit 0
fi
if [ ! -d "$ROOT/.build/checkouts/swift-http-types" ]; then
    (cd "$ROOT" && swift package resolve) || { echo "fuzz-ci: FAILED: swift package resolve" >&2; exit 1; }
fi
echo "fuzz-ci: fuzzing http, websocket, hub, tls and redis for ${SECONDS_PER_TARGET}s each, two or three at a time"
start=$(date +%s)
# Built once, one after another; then run in pairs, one per core (each fuzzer is a
# single process): every target still gets its full time, in half the wall time.
TORUS_FUZZ_BUILD_ONLY=1 "$ROOT/scripts/fuzz.sh" all
rc=$?
if [ "$rc" = 0 ]; then
    # The two small decoders (hub, redis) share the second round with tls.
    for pair in "http websocket" "hub tls redis"; do
        pids=()
        for t in $pair; do
            TORUS_FUZZ_PREBUILT=1 "$ROOT/scripts/fuzz.sh" "$t" "$SECONDS_PER_TARGET" \
                >"$ROOT/.build-fuzz/logs/ci-$t.out" 2>&1 &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
        for t in $pair; do sed -n '/^== fuzz summary/,$p' "$ROOT/.build-fuzz/logs/ci-$t.out"; done
    done
fi
echo "fuzz-ci: took $(( $(date +%s) - start ))s"
if [ "$rc" != 0 ]; then
    echo "fuzz-ci: FAILED: a fuzz target crashed, leaked, timed out or did not build (summary above;" \
        "artifacts in .build-fuzz/artifacts/, logs in .build-fuzz/logs/)" >&2
    exit 1
fi
echo "fuzz-ci: passed"
