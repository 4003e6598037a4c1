#!/usr/bin/env bash
# Builds the libFuzzer harness for the HTTP/1.1 request parser with AddressSanitizer and
# runs it for SECONDS (default 60). The seed corpus in Fuzz/corpus/http is copied into a
# scratch folder, so runs never write into the repository; crash artifacts go to
# .build-fuzz/artifacts/.
#
#   scripts/fuzz-http.sh [SECONDS] [extra libFuzzer flags...]
set -euo pipefail

SECONDS_TO_RUN="${1:-60}"
shift || true
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/.build-fuzz"
BIN="$OUT/http-parser-fuzz"
mkdir -p "$OUT/artifacts"

# The parser sources only; the swift-http-types bridge is left out (no package deps here).
SOURCES=()
for f in "$ROOT"/Sources/TorusHTTP/Parser/*.swift; do
    grep -q '^import HTTPTypes' "$f" || SOURCES+=("$f")
done

echo "building $BIN"
swiftc -sanitize=fuzzer,address -parse-as-library -O -g -use-ld=lld \
    -swift-version 6 -module-name HTTPParserFuzz \
    "${SOURCES[@]}" "$ROOT/Fuzz/HTTPParserFuzz/HTTPParserFuzz.swift" \
    -o "$BIN"

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/torus-http-fuzz.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
cp "$ROOT"/Fuzz/corpus/http/* "$SCRATCH"/

echo "fuzzing for ${SECONDS_TO_RUN}s (corpus copy: $SCRATCH)"
"$BIN" "$SCRATCH" \
    -max_total_time="$SECONDS_TO_RUN" \
    -max_len=4096 \
    -dict="$ROOT/Fuzz/http.dict" \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -print_final_stats=1 \
    -artifact_prefix="$OUT/artifacts/" \
    "$@"
