#!/usr/bin/env bash
# A demo server's user-space instructions per request or message, counted by callgrind
# (immune to the machine's noise; the kernel's part is not counted). Runs the release
# server under callgrind twice, under the same load for a short and a longer time, and
# prints the marginal instructions per request: the difference of the two runs' totals
# over the difference of the requests they served, so start-up, warm-up and shutdown
# cancel out. Use it to compare two builds of a hot path; the benchmarks
# (`../shared/bench`) give speed against other servers.
#
#   scripts/server-callgrind.sh [--reference] http-pipelined|http|ws16|ws4k|echo64 [SHORT=3] [LONG=6]
#
#   http-pipelined  torus-http, wrk, 64 connections, 16 GET /plaintext per write
#   http            torus-http, wrk, 64 connections, one request at a time
#   ws16, ws4k      torus-ws, wsload, 64 connections x 16 in flight, 16 B text / 4 KiB binary
#   echo64          torus-echo, wsload --raw, 64 connections x 16 in flight x 64 B
#
# With --reference it then counts the C liburing reference server of `../shared/bench`
# (anchors/c-uring, the same mode: http, ws or echo) under the same load, and prints
# its figure too. That server does not stop under valgrind, so it is counted the other
# way: after a 2 s warm-up its counters are zeroed (`callgrind_control -z`), the load
# runs LONG seconds, the counts are dumped (`callgrind_control -d`), and it is killed;
# its figure is that dump over the requests of that run. (Absent `../shared`: exit 2,
# or 1 under CI=true.)
#
# With CALLGRIND_KEEP=DIR the two runs' callgrind outputs are kept as DIR/short.out and
# DIR/long.out (with DIR/served: the requests each served), for callgrind_annotate: a
# function's marginal cost is its count in long.out minus short.out, over the difference
# in requests served (with costs per instruction: `callgrind_annotate --auto=no`, or
# `--dump-instr` readers, against the binary the script built).
#
# wrk must be installed; the WebSocket and echo loads need `../shared/bench`'s wsload
# (absent: the script says so and exits 2; under CI=true, 1). Valgrind 3.19 (Debian
# 12) runs a copy of the binary without DWARF 5 debug info, with
# scripts/lib/callgrind.sh's LD_PRELOAD shim.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REFERENCE=0
if [ "${1:-}" = --reference ]; then
    REFERENCE=1
    shift
fi
PROFILE="${1:?usage: server-callgrind.sh [--reference] http-pipelined|http|ws16|ws4k|echo64 [SHORT] [LONG]}"
SHORT="${2:-3}"
LONG="${3:-6}"
case "$PROFILE" in
    http-pipelined|http) PRODUCT=torus-http MODE=http ;;
    ws16|ws4k) PRODUCT=torus-ws MODE=ws ;;
    echo64) PRODUCT=torus-echo MODE=echo ;;
    *) echo "server-callgrind: unknown profile $PROFILE" >&2; exit 2 ;;
esac
for tool in valgrind callgrind_annotate objcopy cc python3; do
    command -v "$tool" >/dev/null || { echo "server-callgrind: $tool missing" >&2; exit 1; }
done
cd "$ROOT"
. scripts/lib/callgrind.sh
. scripts/lib/ports.sh
. scripts/lib/scratch.sh
. scripts/lib/shared.sh
scratch_begin
case "$PROFILE" in
    http*) command -v wrk >/dev/null || { echo "server-callgrind: wrk missing" >&2; exit 1; } ;;
    *)
        WSLOAD_SRC="$ROOT/../shared/bench/tools/wsload.c"
        [ -f "$WSLOAD_SRC" ] || shared_absent server-callgrind "$WSLOAD_SRC"
        cc -O2 -o "$WORK/wsload" "$WSLOAD_SRC" -lm
        ;;
esac
if [ "$REFERENCE" = 1 ]; then
    command -v callgrind_control >/dev/null || { echo "server-callgrind: callgrind_control missing" >&2; exit 1; }
    shared_c_reference server-callgrind "$WORK"
fi
swift build -c release --product "$PRODUCT" >&2
objcopy --strip-debug "$(swift build -c release --show-bin-path)/$PRODUCT" "$WORK/$PRODUCT"
callgrind_shim "$WORK"
cat > "$WORK/pipeline.lua" <<'LUA'
init = function(args)
    local r = {}
    for i = 1, 16 do r[i] = wrk.format(nil, "/plaintext") end
    req = table.concat(r)
end
request = function() return req end
LUA

# Puts the profile's load on the server at port $2 for $1 seconds; prints the requests
# or messages served.
load() {
    local seconds="$1" port="$2" served
    case "$PROFILE" in
        http-pipelined|http)
            local script=()
            [ "$PROFILE" = http-pipelined ] && script=(-s "$WORK/pipeline.lua")
            timeout $((seconds + 30)) wrk -t1 -c64 -d"${seconds}s" "${script[@]}" "${BENCH_HTTP_FIELDS[@]}" \
                "http://127.0.0.1:$port/plaintext" >"$WORK/load-$port-$seconds.txt"
            # wrk counts a pipelined write's requests one by one ("N requests in").
            served=$(awk '/requests in/ { print $1 }' "$WORK/load-$port-$seconds.txt")
            ;;
        *)
            local args=(--conns 64 --inflight 16)
            case "$PROFILE" in
                ws16) args+=(--size 16 --text) ;;
                ws4k) args+=(--size 4096 --binary) ;;
                echo64) args+=(--size 64 --raw) ;;
            esac
            timeout $((seconds + 60)) "$WORK/wsload" --port "$port" "${args[@]}" --duration "$seconds" --warmup 0 \
                --connect-timeout 30 --json >"$WORK/load-$port-$seconds.txt"
            served=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"])' "$WORK/load-$port-$seconds.txt")
            ;;
    esac
    echo "$served"
}

# Runs the server under callgrind with the load for $1 seconds; prints "instructions served".
# Runs in a subshell (`< <(run …)`), so it stops its own server when it fails.
run() {
    local seconds="$1" port served
    trap scratch_stop_server EXIT
    port=$(free_port)
    LD_PRELOAD="$WORK/shim.so" valgrind --tool=callgrind ${CALLGRIND_KEEP:+--dump-instr=yes} --callgrind-out-file="$WORK/cg-$seconds.out" \
        "$WORK/$PRODUCT" --host 127.0.0.1 --port "$port" --threads 1 >"$WORK/server-$seconds.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 300); do grep -q "listening on" "$WORK/server-$seconds.log" && break; sleep 0.1; done
    grep -q "listening on" "$WORK/server-$seconds.log" || { echo "server-callgrind: server did not start" >&2; cat "$WORK/server-$seconds.log" >&2; exit 1; }
    served=$(load "$seconds" "$port")
    kill -TERM "$SERVER"
    wait "$SERVER" || { echo "server-callgrind: server exited non-zero" >&2; tail -5 "$WORK/server-$seconds.log" >&2; exit 1; }
    SERVER=""
    local total
    total=$(callgrind_total "$WORK/cg-$seconds.out")
    echo "$total $served"
}
# The C reference under callgrind: zeroed after a warm-up, dumped after $1 seconds of
# load, then killed (it does not stop on SIGTERM under valgrind); prints
# "instructions served". In a subshell, like `run`, killing its own server on failure.
run_reference() {
    local seconds="$1" port served
    trap 'if [ -n "$SERVER" ]; then kill -KILL "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; fi' EXIT
    port=$(free_port)
    valgrind --tool=callgrind --callgrind-out-file="$WORK/ref.out" \
        "$WORK/c-uring" "$MODE" --host 127.0.0.1 --port "$port" >"$WORK/ref.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 300); do grep -q "listening on" "$WORK/ref.log" && break; sleep 0.1; done
    grep -q "listening on" "$WORK/ref.log" || { echo "server-callgrind: the C reference did not start" >&2; cat "$WORK/ref.log" >&2; exit 1; }
    load 2 "$port" >/dev/null
    timeout 30 callgrind_control -z "$SERVER" >/dev/null 2>&1
    served=$(load "$seconds" "$port")
    timeout 30 callgrind_control -d "$SERVER" >/dev/null 2>&1
    kill -KILL "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
    # The one dump is ref.out.1 (the final one, at exit, is never written: the server
    # is killed).
    [ -s "$WORK/ref.out.1" ] || { echo "server-callgrind: the C reference's counts were not dumped" >&2; exit 1; }
    echo "$(callgrind_total "$WORK/ref.out.1") $served"
}

read -r a na < <(run "$SHORT")
read -r b nb < <(run "$LONG")
[ "$nb" -gt "$na" ] || { echo "server-callgrind: the longer run served no more ($na, $nb)" >&2; exit 1; }
if [ -n "${CALLGRIND_KEEP:-}" ]; then
    mkdir -p "$CALLGRIND_KEEP"
    cp "$WORK/cg-$SHORT.out" "$CALLGRIND_KEEP/short.out"
    cp "$WORK/cg-$LONG.out" "$CALLGRIND_KEEP/long.out"
    echo "$na $nb" > "$CALLGRIND_KEEP/served"
fi
echo "$PROFILE: $(( (b - a) / (nb - na) )) user instructions per request or message ($na and $nb served)"
if [ "$REFERENCE" = 1 ]; then
    read -r c nc < <(run_reference "$LONG")
    [ "${nc:-0}" -gt 0 ] || { echo "server-callgrind: the C reference served nothing" >&2; exit 1; }
    echo "$PROFILE: the C reference: $(( c / nc )) user instructions per request or message ($nc served)"
fi
