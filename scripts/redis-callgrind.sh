#!/usr/bin/env bash
# TorusRedis's user-space instructions per pipelined request, counted by callgrind
# (immune to the machine's noise; the kernel's part is not counted). Runs
# Benchmarks/redis-bench (batches of 16, 2 connections) under callgrind at two request
# counts, one dump per test, and prints the marginal instructions per request of SET
# and GET (the difference of the two runs over the difference of their requests, so
# start-up and warm-up cancel out). Starts its own redis-server on a free port.
#
#   scripts/redis-callgrind.sh [SMALL=100000] [LARGE=200000]
#
# Valgrind 3.19 (Debian 12) needs three workarounds, all outside the project's code:
# it cannot read the DWARF 5 that Swift emits (the binary is copied without debug
# info; the symbol table is enough), it writes into sigsuspend's mask, which
# libdispatch passes read-only (an LD_PRELOAD shim copies it), and it keeps its big
# lock across io_uring_enter, starving the other threads (the shim yields first).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SMALL="${1:-100000}"
LARGE="${2:-200000}"
for tool in redis-server redis-cli valgrind callgrind_annotate objcopy cc; do
    command -v "$tool" >/dev/null || { echo "redis-callgrind: $tool missing" >&2; exit 1; }
done
cd "$ROOT"
. scripts/lib/callgrind.sh
. scripts/lib/ports.sh
. scripts/lib/scratch.sh
swift build -c release --product redis-bench >&2
scratch_begin
objcopy --strip-debug "$(swift build -c release --show-bin-path)/redis-bench" "$WORK/redis-bench"
callgrind_shim "$WORK"
PORT=$(free_port)
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
SERVER=$!
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
# Dumps before each drive(): part 2 SET warm-up, 3 SET, 4 GET warm-up, the last GET.
for n in "$SMALL" "$LARGE"; do
    LD_PRELOAD="$WORK/shim.so" valgrind --tool=callgrind --dump-before='$s11redis_bench5drive_8requestsSuSaySSG_SitYaF' \
        --callgrind-out-file="$WORK/cg-$n.out" "$WORK/redis-bench" --port "$PORT" --requests "$n" \
        --pipeline 16 --connections 2 >/dev/null 2>&1
done
for test in SET GET; do
    suffix=$([ "$test" = SET ] && echo .3 || echo "")
    a=$(callgrind_total "$WORK/cg-$SMALL.out$suffix")
    b=$(callgrind_total "$WORK/cg-$LARGE.out$suffix")
    echo "$test: $(( (b - a) / (LARGE - SMALL) )) user instructions per request"
done
