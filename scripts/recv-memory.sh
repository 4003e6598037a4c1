#!/usr/bin/env bash
# Resident memory of torus-http at the end of the 64-connection plaintext load
# (issue 11): starts the release server pinned to CPU 0, runs wrk -c64 on CPU 1
# against /plaintext, then reads VmRSS / RssAnon / VmHWM and the server's CPU time
# from /proc before stopping it (by PID). Usage: scripts/recv-memory.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-1}
port=${PORT:-18480}
bin=.build/release/torus-http
[[ -x $bin ]] || swift build -c release --product torus-http >/dev/null
tick=$(getconf CLK_TCK)
for ((r = 1; r <= rounds; r++)); do
    taskset -c 0 "$bin" --port "$port" --threads 1 >/dev/null 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null || true' EXIT
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    idle_anon=$(awk '/RssAnon/ {print $2}' /proc/$pid/status)
    cpu0=$(awk '{print $14 + $15}' /proc/$pid/stat)
    out=$(timeout $((secs + 20)) taskset -c 1 wrk -t1 -c64 -d"${secs}s" "http://127.0.0.1:$port/plaintext")
    cpu1=$(awk '{print $14 + $15}' /proc/$pid/stat)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    read -r rss anon hwm < <(awk '/VmRSS/ {r=$2} /RssAnon/ {a=$2} /VmHWM/ {h=$2} END {print r, a, h}' /proc/$pid/status)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    trap - EXIT
    cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$tick" -v s="$secs" 'BEGIN {printf "%.2f", (b - a) / t / s}')
    percpu=$(awk -v r="$rps" -v c="$cpu" 'BEGIN {printf "%.0f", (c > 0 ? r / c : 0)}')
    echo "round $r: ${rps} req/s, server CPU ${cpu}, ${percpu} req per CPU-s; KiB: idle RssAnon ${idle_anon}, end VmRSS ${rss}, RssAnon ${anon}, VmHWM ${hwm}"
done
