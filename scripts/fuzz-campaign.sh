#!/usr/bin/env bash
# The long fuzz campaign (issue 13: at least 10^8 executions across the targets), run by
# hand, not by CI. Three phases, each bounded in executions and in time:
#
#   1. fuzz: every target with libFuzzer alone (TORUS_FUZZ_ASAN=0: two to three times the
#      executions per second of the AddressSanitizer build; Swift's bounds and overflow
#      checks still trap), one target after another, each until its share of executions
#      or its time cap, whichever comes first; two chains of targets run side by side, one
#      per core. The websocket target always runs under AddressSanitizer: its harness
#      bounds inflation by the sanitizer allocator's count of live heap bytes;
#   2. replay: the corpus every target grew is run once, input by input, through the
#      AddressSanitizer + LeakSanitizer build that CI uses (what the fast build cannot
#      see: a heap overflow in unsafe-pointer code, a leak);
#   3. minimize: libFuzzer's merge keeps the inputs that add coverage into
#      .build-fuzz/campaign/min/TARGET (what Fuzz/corpus keeps of it is chosen by hand:
#      small inputs only).
#
#   scripts/fuzz-campaign.sh [SCALE]     SCALE multiplies every share and cap (default 1)
#
# Shares (executions) and caps (seconds) at SCALE 1: redis 50M/1500 s, hub 33M/1500 s,
# http 12M/1500 s, websocket 3M/1200 s, tls 2M/900 s: 10^8 in all, about 55 minutes of
# two cores on an idle machine. A summary with every run's executions, rate and coverage
# is written to .build-fuzz/campaign/summary.txt (and printed). Exit status 1 if any
# run or replay failed (the fuzz.sh summary names the failure and the reproducer).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCALE="${1:-1}"
[[ "$SCALE" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "usage: $0 [SCALE]" >&2; exit 2; }
DIR="$ROOT/.build-fuzz/campaign"
mkdir -p "$DIR/logs"
SUMMARY="$DIR/summary.txt"
export SWIFT_BACKTRACE=enable=no

share() { # TARGET -> "EXECUTIONS SECONDS"
    local runs secs
    case "$1" in
    redis) runs=50000000 secs=1500 ;;
    hub) runs=33000000 secs=1500 ;;
    http) runs=12000000 secs=1500 ;;
    websocket) runs=3000000 secs=1200 ;;
    tls) runs=2000000 secs=900 ;;
    esac
    awk -v r="$runs" -v s="$secs" -v k="$SCALE" 'BEGIN { printf "%d %d\n", r * k, s * k }'
}

if [ ! -d "$ROOT/.build/checkouts/swift-http-types" ]; then
    (cd "$ROOT" && swift package resolve) || exit 1
fi
echo "== building the fast (libFuzzer only) and the AddressSanitizer targets"
TORUS_FUZZ_ASAN=0 TORUS_FUZZ_BUILD_ONLY=1 "$ROOT/scripts/fuzz.sh" all || exit 1
TORUS_FUZZ_BUILD_ONLY=1 "$ROOT/scripts/fuzz.sh" all || exit 1

{
    echo "# fuzz campaign, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD), scale $SCALE"
    echo "# target     verdict  executions  seconds  exec/s  cov  ft"
} >"$SUMMARY"

status=0
chain() { # TARGET... : one after another
    local t runs secs start log rc execs speed cov ft
    for t in "$@"; do
        read -r runs secs < <(share "$t")
        log="$DIR/logs/$t.out"
        start=$(date +%s)
        rc=0
        local asan=0 fuzzlog="$ROOT/.build-fuzz/fast/logs/$t.log"
        if [ "$t" = websocket ]; then asan=1 fuzzlog="$ROOT/.build-fuzz/logs/$t.log"; fi
        TORUS_FUZZ_ASAN=$asan TORUS_FUZZ_PREBUILT=1 "$ROOT/scripts/fuzz.sh" "$t" "$secs" -runs="$runs" >"$log" 2>&1 || rc=$?
        execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$fuzzlog" | tail -1)"
        speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$fuzzlog" | tail -1)"
        cov="$(grep -oE 'cov: [0-9]+' "$fuzzlog" | tail -1 | cut -d' ' -f2)"
        ft="$(grep -oE 'ft: [0-9]+' "$fuzzlog" | tail -1 | cut -d' ' -f2)"
        cp "$fuzzlog" "$DIR/logs/$t.libfuzzer.log"
        printf '%-12s %-8s %-11s %-8s %-7s %-4s %s\n' "$t" "$([ "$rc" = 0 ] && echo ok || echo FAILED)" \
            "${execs:-?}" "$(( $(date +%s) - start ))" "${speed:-?}" "${cov:-?}" "${ft:-?}" >>"$SUMMARY"
        [ "$rc" = 0 ] || sed -n '/^== fuzz summary/,$p' "$log" >>"$SUMMARY"
    done
}
echo "== phase 1: fuzzing (two chains, one per core); progress in $DIR/logs/"
chain redis http tls &
a=$!
chain hub websocket &
b=$!
wait "$a" || status=1
wait "$b" || status=1
grep -q FAILED "$SUMMARY" && status=1
total="$(awk '!/^#/ && $3 ~ /^[0-9]+$/ { s += $3 } END { print s + 0 }' "$SUMMARY")"
echo "# executions in all: $total" >>"$SUMMARY"

echo "== phase 2: the grown corpus replayed under AddressSanitizer + LeakSanitizer"
export TORUS_FUZZ_TLS_DIR="$ROOT/.build-fuzz/tls"
for t in http websocket hub tls redis; do
    corpus="$ROOT/.build-fuzz/corpus/$t"
    n="$(find "$corpus" -type f | wc -l)"
    # shellcheck disable=SC2046
    if timeout 1800 "$ROOT/.build-fuzz/$t-fuzz" -runs=0 -timeout=10 -rss_limit_mb=2048 \
        $(awk -v t="$t" '$1 == t { $1 = ""; print }' <<'FLAGS'
http -max_len=4096
websocket -max_len=4096 -malloc_limit_mb=64
hub -max_len=2048 -malloc_limit_mb=64
tls -max_len=4096
redis -max_len=2048 -malloc_limit_mb=128
FLAGS
) "$corpus" >"$DIR/logs/$t.replay.log" 2>&1; then
        echo "# replay $t: $n inputs under ASan+LSan: ok" >>"$SUMMARY"
    else
        echo "# replay $t: $n inputs under ASan+LSan: FAILED (see $DIR/logs/$t.replay.log)" >>"$SUMMARY"
        status=1
    fi
done

echo "== phase 3: minimizing each corpus into $DIR/min/"
for t in http websocket hub tls redis; do
    rm -rf "$DIR/min/$t"
    mkdir -p "$DIR/min/$t"
    bin="$ROOT/.build-fuzz/fast/$t-fuzz"
    [ "$t" = websocket ] && bin="$ROOT/.build-fuzz/$t-fuzz"
    mkdir -p "$DIR/merge-artifacts/$t"
    timeout 900 "$bin" -merge=1 -artifact_prefix="$DIR/merge-artifacts/$t/" "$DIR/min/$t" "$ROOT/.build-fuzz/corpus/$t" \
        >"$DIR/logs/$t.merge.log" 2>&1 || status=1
    echo "# minimized $t: $(find "$DIR/min/$t" -type f | wc -l) inputs, $(du -sk "$DIR/min/$t" | cut -f1) KiB" >>"$SUMMARY"
done

cat "$SUMMARY"
exit "$status"
