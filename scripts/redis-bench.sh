#!/usr/bin/env bash
# TorusRedis against redis-benchmark (its client is C, on hiredis): pipelined SET and
# GET (-P 16), the same number of requests and connections, alternating rounds, each
# client's CPU time (user + system) measured; prints requests per client CPU-second
# for both and the ratio of the medians. Starts its own redis-server on a free port
# (pinned to CPU 0; the clients to CPU 1 when the machine has two).
#
#   scripts/redis-bench.sh [ROUNDS=3] [REQUESTS=1000000] [CONNECTIONS=2]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${1:-3}"
REQUESTS="${2:-1000000}"
CONNS="${3:-2}"
for tool in redis-server redis-benchmark /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "redis-bench: $tool missing (apt-get install redis-server time)" >&2; exit 1; }
done
cd "$ROOT"
swift build -c release --product redis-bench >&2
BIN="$(swift build -c release --show-bin-path)/redis-bench"
. scripts/lib/ports.sh
PORT=$(free_port)
SERVER_CPU=0; CLIENT_CPU=1
[ "$(nproc)" -ge 2 ] || CLIENT_CPU=0
taskset -c "$SERVER_CPU" redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
SERVER=$!
TIMES="$(mktemp)"
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; rm -f "$TIMES"' EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# cpu_of CMD...: runs it, prints its user + system seconds.
cpu_of() {
    /usr/bin/time -f "%U %S" -o "$TIMES" "$@" >/dev/null 2>&1
    awk '{ print $1 + $2 }' "$TIMES"
}
declare -A RATES
for test in set get; do
    for round in $(seq "$ROUNDS"); do
        c=$(cpu_of taskset -c "$CLIENT_CPU" redis-benchmark -p "$PORT" -t "$test" -P 16 -n "$REQUESTS" -c "$CONNS" -q)
        rb=$(awk -v n="$REQUESTS" -v c="$c" 'BEGIN { printf "%d", n / c }')
        line=$(taskset -c "$CLIENT_CPU" "$BIN" --port "$PORT" --requests "$REQUESTS" --pipeline 16 --connections "$CONNS" 2>/dev/null \
            | grep -i "^$test:")
        tr=$(sed -E 's/.* ([0-9]+) requests per client CPU-second.*/\1/' <<<"$line")
        allocs=$(sed -E 's/.*, ([0-9.]+) allocations per request.*/\1/' <<<"$line")
        echo "$test round $round: redis-benchmark $rb/CPU-s ($c s), TorusRedis $tr/CPU-s ($allocs allocations per request)"
        RATES[$test-rb]+="$rb "
        RATES[$test-tr]+="$tr "
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
for test in set get; do
    rb=$(median <<<"${RATES[$test-rb]}")
    tr=$(median <<<"${RATES[$test-tr]}")
    awk -v t="$test" -v rb="$rb" -v tr="$tr" \
        'BEGIN { printf "%s: median redis-benchmark %d, TorusRedis %d requests per client CPU-second: %.2fx\n", toupper(t), rb, tr, tr / rb }'
done
