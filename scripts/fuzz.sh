#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (AddressSanitizer + LeakSanitizer, no SwiftPM:
# each target's sources are compiled directly with its harness as one module).
#
#   scripts/fuzz.sh TARGET|all [SECONDS] [extra libFuzzer flags...]
#
# Targets (see Fuzz/README.md):
#   http       Fuzz/HTTPParserFuzz         HTTP/1.1 request and response parsers
#   websocket  Fuzz/WebSocketDecoderFuzz   WebSocket MessageDecoder, both roles, with and
#                                          without permessage-deflate, compression bombs
#   hub        Fuzz/HubFrameFuzz           torus-hub router frame decoder
#   tls        Fuzz/TLSRecordFuzz          TorusTLS engine: server and client handshakes
#                                          meeting any bytes, changed records after one
#   redis      Fuzz/RESPDecoderFuzz        TorusRedis RESP2/RESP3 reply decoder
#
# SECONDS (default 60) is per target. The working corpus is .build-fuzz/corpus/TARGET,
# seeded from Fuzz/corpus/TARGET (the repository is never written); crash, leak and
# timeout artifacts go to .build-fuzz/artifacts/TARGET/, logs to .build-fuzz/logs/.
# Exit status: 0 when every target ran clean, 1 otherwise (with a summary naming the
# failure: crash, leak, timeout or out-of-memory). TORUS_FUZZ_FRESH=1 starts from the
# committed seeds only; TORUS_FUZZ_BUILD_ONLY=1 only builds; TORUS_FUZZ_PREBUILT=1 runs
# the binaries already built (scripts/fuzz-ci.sh builds once, then runs two at a time).
# TORUS_FUZZ_ASAN=0 builds and runs the same targets with libFuzzer alone (no
# AddressSanitizer/LeakSanitizer: two to three times the executions per second; Swift's
# own bounds and overflow checks still trap), into .build-fuzz/fast/, sharing the working
# corpus: what scripts/fuzz-campaign.sh uses for its long run before replaying the
# corpus it grew under AddressSanitizer.
set -uo pipefail

ALL_TARGETS=(http websocket hub tls redis)
TARGET="${1:-}"
SECONDS_TO_RUN="${2:-60}"
shift 2 2>/dev/null || shift $# 2>/dev/null || true
EXTRA=("$@")
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# Binaries, logs and artifacts go to OUT; the working corpus is shared by both builds.
CORPUS_ROOT="$ROOT/.build-fuzz/corpus"
if [ "${TORUS_FUZZ_ASAN:-1}" = 0 ]; then
    OUT="$ROOT/.build-fuzz/fast"
    SANITIZE=fuzzer
else
    OUT="$ROOT/.build-fuzz"
    SANITIZE=fuzzer,address
fi
mkdir -p "$OUT/logs"

usage() {
    echo "usage: $0 ${ALL_TARGETS[*]// /|}|all [SECONDS] [libFuzzer flags...]" >&2
    exit 2
}
case "$TARGET" in
    all) TARGETS=("${ALL_TARGETS[@]}") ;;
    http | websocket | hub | tls | redis) TARGETS=("$TARGET") ;;
    *) usage ;;
esac
[[ "$SECONDS_TO_RUN" =~ ^[0-9]+$ ]] || usage

# The Swift runtime's crash backtracer and the sanitizers' reports fight over a crashing
# process (minutes of delay, garbled output): let libFuzzer and ASan report alone.
export SWIFT_BACKTRACE=enable=no

FUZZ_FLAGS=(-sanitize=$SANITIZE -parse-as-library -O -g -use-ld=lld -swift-version 6)

build_http_types() {
    # swift-http-types (the response parser's currency types) is built first as its own
    # module from the package's checkout (without its Foundation URL bridge).
    [ -f "$OUT/libHTTPTypes.a" ] && [ "$OUT/libHTTPTypes.a" -nt "$0" ] && return 0
    local types="$ROOT/.build/checkouts/swift-http-types/Sources/HTTPTypes"
    if [ ! -d "$types" ]; then
        echo "swift-http-types is not checked out: run 'swift package resolve' first" >&2
        return 1
    fi
    local sources=() flags=(-enable-upcoming-feature InternalImportsByDefault) f macro
    for f in "$types"/*.swift; do
        case "$f" in *+URL.swift) ;; *) sources+=("$f") ;; esac
    done
    # The availability macros its manifest defines (`"HTTPTypes 1.7": "macOS 10.0"`).
    while IFS= read -r macro; do
        flags+=(-enable-experimental-feature "AvailabilityMacro=$macro")
    done < <(sed -n 's/^ *"\(HTTPTypes [0-9.]*\)": "\([^"]*\)",*$/\1: \2/p' "$types/../../Package.swift")
    echo "building HTTPTypes"
    local asan=()
    [ "$SANITIZE" = fuzzer ] || asan=(-sanitize=address)
    swiftc ${asan[@]+"${asan[@]}"} -parse-as-library -O -g -swift-version 5 -module-name HTTPTypes "${flags[@]}" \
        -emit-module -emit-module-path "$OUT/HTTPTypes.swiftmodule" -emit-library -static \
        "${sources[@]}" -o "$OUT/libHTTPTypes.a"
}

# The tls target's certificates: a CA and a chain for "localhost" signed by it (EC P-256),
# made once with the openssl command into .build-fuzz/tls.
make_tls_certificates() {
    local dir="$OUT/tls"
    [ -s "$dir/chain.pem" ] && [ -s "$dir/key.pem" ] && [ -s "$dir/ca.pem" ] && return 0
    command -v openssl >/dev/null || { echo "the tls target needs the openssl command" >&2; return 1; }
    mkdir -p "$dir"
    (
        cd "$dir" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem \
            -out ca.pem -days 3650 -subj "/CN=Torus fuzz CA" &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out leaf.csr \
            -subj "/CN=localhost" &&
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >leaf.ext &&
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
            -extfile leaf.ext -out leaf.pem &&
        cat leaf.pem >chain.pem
    ) >"$OUT/logs/tls-certificates.log" 2>&1 || { cat "$OUT/logs/tls-certificates.log" >&2; return 1; }
}

# build TARGET: compiles .build-fuzz/TARGET-fuzz.
build() {
    local bin="$OUT/$1-fuzz"
    echo "== building $bin"
    rm -f "$bin"
    case "$1" in
    http)
        build_http_types || return 1
        swiftc "${FUZZ_FLAGS[@]}" -module-name HTTPParserFuzz -I "$OUT" -L "$OUT" -lHTTPTypes \
            "$ROOT"/Sources/TorusHTTP/Parser/*.swift "$ROOT/Fuzz/HTTPParserFuzz/HTTPParserFuzz.swift" \
            -o "$bin"
        ;;
    websocket)
        local ws="$ROOT/Sources/TorusWebSocket"
        swiftc "${FUZZ_FLAGS[@]}" -module-name WebSocketDecoderFuzz \
            -Xcc -fmodule-map-file="$ROOT/Sources/CZlib/module.modulemap" -I "$ROOT/Sources/CZlib" -lz \
            "$ws/MessageDecoder.swift" "$ws/FrameHeader.swift" "$ws/FrameEncoder.swift" "$ws/Masking.swift" \
            "$ws/Opcode.swift" "$ws/CloseCode.swift" "$ws/UTF8Validator.swift" "$ws/WebSocketEvent.swift" \
            "$ws/WebSocketProtocolError.swift" "$ws/PerMessageDeflateCompressor.swift" \
            "$ws/PerMessageDeflateDecompressor.swift" \
            "$ROOT/Fuzz/WebSocketDecoderFuzz/WebSocketDecoderFuzz.swift" \
            -o "$bin"
        ;;
    hub)
        swiftc "${FUZZ_FLAGS[@]}" -module-name HubFrameFuzz \
            "$ROOT/Sources/TorusHub/HubFrame.swift" "$ROOT/Fuzz/HubFrameFuzz/HubFrameFuzz.swift" \
            -o "$bin"
        ;;
    redis)
        swiftc "${FUZZ_FLAGS[@]}" -module-name RESPDecoderFuzz \
            "$ROOT/Sources/TorusRedis/RESPValue.swift" "$ROOT/Sources/TorusRedis/RESPDecoder.swift" \
            "$ROOT/Fuzz/RESPDecoderFuzz/RESPDecoderFuzz.swift" \
            -o "$bin"
        ;;
    tls)
        make_tls_certificates || return 1
        # The engine and what it needs; the two files that attach it to a Torus
        # connection (and import the runtime) stay out.
        local sources=() f
        for f in "$ROOT"/Sources/TorusTLS/*.swift; do
            case "$f" in */Connection+TLS.swift | */TLSTransform.swift) ;; *) sources+=("$f") ;; esac
        done
        swiftc "${FUZZ_FLAGS[@]}" -module-name TLSRecordFuzz \
            -Xcc -fmodule-map-file="$ROOT/Sources/COpenSSL/module.modulemap" -I "$ROOT/Sources/COpenSSL" \
            "${sources[@]}" "$ROOT/Fuzz/TLSRecordFuzz/TLSRecordFuzz.swift" \
            -o "$bin"
        ;;
    esac
}

# Per-target libFuzzer options.
target_flags() {
    case "$1" in
    http) echo "-max_len=4096 -dict=$ROOT/Fuzz/http.dict" ;;
    websocket) echo "-max_len=4096 -dict=$ROOT/Fuzz/websocket.dict -malloc_limit_mb=64" ;;
    hub) echo "-max_len=2048 -dict=$ROOT/Fuzz/hub.dict -malloc_limit_mb=64" ;;
    tls) echo "-max_len=4096 -dict=$ROOT/Fuzz/tls.dict" ;;
    redis) echo "-max_len=2048 -dict=$ROOT/Fuzz/redis.dict -malloc_limit_mb=128" ;;
    esac
}

# run TARGET: fuzzes for SECONDS_TO_RUN; prints one summary line into $SUMMARY.
SUMMARY="$(mktemp "${TMPDIR:-/tmp}/torus-fuzz-summary.XXXXXX")"
trap 'rm -f "$SUMMARY"' EXIT
run() {
    local t="$1" bin="$OUT/$1-fuzz" corpus="$CORPUS_ROOT/$1" artifacts="$OUT/artifacts/$1/" log="$OUT/logs/$1.log"
    if [ "${TORUS_FUZZ_FRESH:-0}" = 1 ]; then rm -rf "$corpus"; fi
    mkdir -p "$corpus" "$artifacts"
    cp -n "$ROOT/Fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null || true
    echo "== fuzzing $t for ${SECONDS_TO_RUN}s (corpus $corpus, log $log)"
    export TORUS_FUZZ_TLS_DIR="$OUT/tls"
    # shellcheck disable=SC2046
    "$bin" "$corpus" $(target_flags "$t") \
        -max_total_time="$SECONDS_TO_RUN" \
        -timeout=10 -rss_limit_mb=2048 \
        -error_exitcode=77 -timeout_exitcode=70 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts" \
        "${EXTRA[@]}" 2>&1 | tee "$log" | grep -v -E '^#[0-9]+.*(NEW|REDUCE)'
    local rc="${PIPESTATUS[0]}"
    local execs speed cov ft verdict
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)"
    ft="$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)"
    if [ "$rc" = 0 ]; then
        verdict=ok
    elif grep -q 'ERROR: libFuzzer: timeout' "$log"; then
        verdict="FAILED: timeout (an input ran > 10 s)"
    elif grep -q 'ERROR: LeakSanitizer' "$log"; then
        verdict="FAILED: memory leak"
    elif grep -qE 'ERROR: libFuzzer: (out-of-memory|malloc)' "$log"; then
        verdict="FAILED: out of memory / oversized allocation"
    elif grep -q 'ERROR: AddressSanitizer' "$log"; then
        verdict="FAILED: AddressSanitizer: $(grep -m1 -oE 'ERROR: AddressSanitizer: [a-z-]+' "$log" | cut -d' ' -f3)"
    elif grep -qE 'ERROR: libFuzzer: deadly signal|Fatal error' "$log"; then
        verdict="FAILED: crash ($(grep -m1 -E 'Fatal error' "$log" | cut -c1-160))"
    else
        verdict="FAILED: exit status $rc"
    fi
    local artifact
    artifact="$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | cut -d' ' -f5)"
    [ -n "$artifact" ] && verdict="$verdict; reproduce: $bin $artifact"
    printf '%-10s %-8s execs %-10s exec/s %-7s cov %-6s ft %-6s\n' \
        "$t" "$( [ "$rc" = 0 ] && echo ok || echo FAILED )" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" >>"$SUMMARY"
    [ "$rc" = 0 ] || echo "           $verdict" >>"$SUMMARY"
    return "$rc"
}

status=0
for t in "${TARGETS[@]}"; do
    if [ "${TORUS_FUZZ_PREBUILT:-0}" = 1 ] && [ -x "$OUT/$t-fuzz" ]; then continue; fi
    if ! build "$t"; then
        printf '%-10s FAILED   build failed\n' "$t" >>"$SUMMARY"
        status=1
    fi
done
if [ "${TORUS_FUZZ_BUILD_ONLY:-0}" = 1 ]; then
    cat "$SUMMARY"
    exit "$status"
fi
for t in "${TARGETS[@]}"; do
    [ -x "$OUT/$t-fuzz" ] || continue
    run "$t" || status=1
done
echo "== fuzz summary (${SECONDS_TO_RUN}s per target)"
cat "$SUMMARY"
if [ "$status" != 0 ]; then
    echo "FUZZING FAILED: see the lines above and the logs in $OUT/logs/" >&2
fi
exit "$status"
