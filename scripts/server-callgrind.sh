#!/usr/bin/env bash
# A demo server's user-space instructions per request or message, counted by callgrind
# (immune to the machine's noise; the kernel's part is not counted). Runs the release
# server under callgrind twice, under the same load for a short and a longer time, and
# prints the marginal instructions per request: the difference of the two runs' totals
# over the difference of the requests they served, so start-up, warm-up and shutdown
# cancel out. Use it to compare two builds of a hot path; the benchmarks
# (`../shared/bench`) give speed against other servers.
#
#   scripts/server-callgrind.sh http-pipelined|http|ws16|ws4k|echo64 [SHORT=3] [LONG=6]
#
#   http-pipelined  torus-http, wrk, 64 connections, 16 GET /plaintext per write
#   http            torus-http, wrk, 64 connections, one request at a time
#   ws16, ws4k      torus-ws, wsload, 64 connections x 16 in flight, 16 B text / 4 KiB binary
#   echo64          torus-echo, wsload --raw, 64 connections x 16 in flight x 64 B
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
PROFILE="${1:?usage: server-callgrind.sh http-pipelined|http|ws16|ws4k|echo64 [SHORT] [LONG]}"
SHORT="${2:-3}"
LONG="${3:-6}"
case "$PROFILE" in
    http-pipelined|http) PRODUCT=torus-http ;;
    ws16|ws4k) PRODUCT=torus-ws ;;
    echo64) PRODUCT=torus-echo ;;
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
    case "$PROFILE" in
        http-pipelined|http)
            local script=()
            [ "$PROFILE" = http-pipelined ] && script=(-s "$WORK/pipeline.lua")
            timeout $((seconds + 30)) wrk -t1 -c64 -d"${seconds}s" "${script[@]}" \
                -H 'Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7' \
                -H 'Connection: keep-alive' "http://127.0.0.1:$port/plaintext" >"$WORK/load-$seconds.txt"
            # wrk counts a pipelined write's requests one by one ("N requests in").
            served=$(awk '/requests in/ { print $1 }' "$WORK/load-$seconds.txt")
            ;;
        *)
            local args=(--conns 64 --inflight 16)
            case "$PROFILE" in
                ws16) args+=(--size 16 --text) ;;
                ws4k) args+=(--size 4096 --binary) ;;
                echo64) args+=(--size 64 --raw) ;;
            esac
            timeout $((seconds + 60)) "$WORK/wsload" --port "$port" "${args[@]}" --duration "$seconds" --warmup 0 \
                --connect-timeout 30 --json >"$WORK/load-$seconds.txt"
            served=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"])' "$WORK/load-$seconds.txt")
            ;;
    esac
    kill -TERM "$SERVER"
    wait "$SERVER" || { echo "server-callgrind: server exited non-zero" >&2; tail -5 "$WORK/server-$seconds.log" >&2; exit 1; }
    SERVER=""
    local total
    total=$(callgrind_total "$WORK/cg-$seconds.out")
    echo "$total $served"
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
