#!/usr/bin/env bash
# What one plaintext HTTP request costs the server, Torus against the C liburing
# reference of ../shared/bench, counted by the kernel rather than read off throughput
# (which moves 10-30% between rounds on a shared VM). Each round starts one server and
# then the other, pinned to CPU 0, with the same wrk load pinned to CPU 1 (64
# connections, http.sh's request: GET /plaintext with Accept and Connection fields),
# a 2 s warm-up, then a measured run. Per request it prints:
#
#   cpu_us      the server's CPU (utime + stime from /proc, every thread) per request
#   enters      io_uring_enter calls          submits  SQEs the kernel took
#   cqes        completions posted            fget     file lookups (0: direct descriptors)
#   segs        TCP segments sent (nstat, both ends: the whole machine's loopback)
#   kern, user  with --record: perf samples per 1,000 requests in the kernel and in
#               user space (cpu-clock at 20 kHz; each sample is 50 us of CPU), from a
#               second run of the same server (sampling slows it, so that run is
#               not counted in the columns above)
#
# and the medians of each column per server. Torus and C do the same io_uring work per
# request (the same submissions, completions and segments), so the CPU difference
# between them is what each does with it.
#
#   scripts/request-cost.sh [--rounds N] [--duration S] [--conns C] [--record]
#
# Needs wrk, perf (linux-perf; the tracepoints need root or perf_event_paranoid <= 1),
# nstat (iproute2), cc and liburing-dev; the C reference's source comes from
# ../shared/bench (absent: the script says so and exits 2; under CI=true, 1). Builds
# torus-http in release. Bounded: rounds x 2 servers x (duration + 3 s), with
# --record another duration each. Stops only the servers it started, by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=3 DURATION=5 CONNS=64 RECORD=0
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --conns) CONNS="$2"; shift 2 ;;
        --record) RECORD=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "request-cost: unknown argument $1" >&2; exit 2 ;;
    esac
done
for v in ROUNDS DURATION CONNS; do
    [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] || { echo "request-cost: --${v,,} needs a positive number" >&2; exit 2; }
done
[ "$DURATION" -le 60 ] && [ "$ROUNDS" -le 20 ] || { echo "request-cost: at most 20 rounds of 60 s" >&2; exit 2; }
. "$ROOT/scripts/lib/shared.sh"
# Said first: without ../shared there is nothing to compare with.
[ -d "$ROOT/../shared/bench" ] || shared_absent request-cost "$ROOT/../shared/bench"
for tool in wrk perf nstat cc taskset python3; do
    command -v "$tool" >/dev/null || { echo "request-cost: $tool missing" >&2; exit 1; }
done
cd "$ROOT"
. scripts/lib/ports.sh
. scripts/lib/scratch.sh
scratch_begin
export NSTAT_HISTORY="$WORK/nstat.history"  # nstat's counters baseline, kept in the scratch folder
shared_c_reference request-cost "$WORK"
swift build -c release --product torus-http >&2
TORUS="$(swift build -c release --show-bin-path)/torus-http"
EVENTS=syscalls:sys_enter_io_uring_enter,io_uring:io_uring_submit_req,io_uring:io_uring_complete,io_uring:io_uring_file_get
perf stat -e "$EVENTS" -- true >/dev/null 2>&1 || { echo "request-cost: perf cannot read the io_uring tracepoints (run as root, or lower perf_event_paranoid)" >&2; exit 1; }

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
load() {
    timeout $((DURATION + 30)) taskset -c 1 wrk -t1 -c"$CONNS" -d"$1s" "${BENCH_HTTP_FIELDS[@]}" \
        "http://127.0.0.1:$2/plaintext"
}

# One measured run of server $1 ("c" or "torus"); appends its row to $WORK/rows.
measure() {
    local name="$1" port ticks0 ticks1 requests hz
    port=$(free_port)
    if [ "$name" = c ]; then
        taskset -c 0 "$WORK/c-uring" http --port "$port" >"$WORK/server.log" 2>&1 &
    else
        taskset -c 0 "$TORUS" --host 127.0.0.1 --port "$port" --threads 1 >"$WORK/server.log" 2>&1 &
    fi
    SERVER=$!
    for _ in $(seq 100); do grep -q "listening on" "$WORK/server.log" && break; sleep 0.1; done
    grep -q "listening on" "$WORK/server.log" || { echo "request-cost: $name did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }
    load 2 "$port" >/dev/null
    taskset -c 1 perf stat -x, -e "$EVENTS" -p "$SERVER" -o "$WORK/stat.csv" -- sleep $((DURATION + 1)) &
    local stat=$! split="- -" recorded
    nstat -n
    ticks0=$(cpu_ticks "$SERVER")
    load "$DURATION" "$port" >"$WORK/wrk.txt"
    ticks1=$(cpu_ticks "$SERVER")
    nstat TcpOutSegs >"$WORK/nstat.txt" || true
    wait "$stat"
    if [ "$RECORD" = 1 ]; then
        # A run of its own: sampling slows the server, so it counts nothing above.
        taskset -c 1 perf record -q -F 20000 -e cpu-clock -p "$SERVER" -o "$WORK/rec.data" -- sleep $((DURATION + 1)) >/dev/null 2>&1 &
        local rec=$!
        load "$DURATION" "$port" >"$WORK/wrk-rec.txt"
        wait "$rec"
        recorded=$(awk '/requests in/ { print $1 }' "$WORK/wrk-rec.txt")
        split=$(perf report -i "$WORK/rec.data" --sort dso -q -F sample,dso 2>/dev/null |
            awk -v r="${recorded:-0}" 'r > 0 { if ($2 ~ /kernel/) k += $1; else u += $1 } END { if (r > 0) printf "%.1f %.1f", k * 1000 / r, u * 1000 / r; else print "- -" }')
    fi
    kill -TERM "$SERVER"
    if [ "$name" = torus ]; then
        wait "$SERVER" || { echo "request-cost: torus-http exited non-zero (ledger not quiescent?)" >&2; tail -5 "$WORK/server.log" >&2; exit 1; }
    else
        wait "$SERVER" 2>/dev/null || true
    fi
    SERVER=""
    requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.txt")
    [ -n "$requests" ] && [ "$requests" -gt 0 ] || { echo "request-cost: wrk served nothing from $name" >&2; cat "$WORK/wrk.txt" >&2; exit 1; }
    hz=$(getconf CLK_TCK)
    # shellcheck disable=SC2086
    python3 - "$name" "$requests" "$((ticks1 - ticks0))" "$hz" "$WORK/stat.csv" "$WORK/nstat.txt" $split >>"$WORK/rows" <<'PY'
import sys
name, requests, ticks, hz, stat, nstat, kern, user = sys.argv[1:9]
requests = int(requests)
counts = {}
for line in open(stat):
    parts = line.strip().split(",")
    if len(parts) > 2 and parts[0].isdigit():
        counts[parts[2]] = int(parts[0])
segs = 0
for line in open(nstat):
    parts = line.split()
    if len(parts) >= 2 and parts[0] == "TcpOutSegs":
        segs = int(parts[1])
per = lambda key: counts.get(key, 0) / requests
print(f"{name} {requests} {int(ticks) / int(hz) * 1e6 / requests:.3f} "
      f"{per('syscalls:sys_enter_io_uring_enter'):.3f} {per('io_uring:io_uring_submit_req'):.3f} "
      f"{per('io_uring:io_uring_complete'):.3f} {per('io_uring:io_uring_file_get'):.3f} "
      f"{segs / requests:.2f} {kern} {user}")
PY
}

echo "server requests cpu_us enters submits cqes fget segs kern user" >"$WORK/rows"
ROW='%-6s %-6s %9s %7s %7s %7s %6s %6s %5s %6s %5s\n'
# shellcheck disable=SC2059
printf "$ROW" round server requests cpu_us enters submits cqes fget segs kern user
for round in $(seq "$ROUNDS"); do
    for name in c torus; do
        measure "$name"
        # shellcheck disable=SC2059,SC2046
        printf "$ROW" "$round" $(tail -1 "$WORK/rows")
    done
done
echo
echo "medians over $ROUNDS rounds (per request; kern/user per 1,000 requests):"
python3 - "$WORK/rows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
head, rows = rows[0], rows[1:]
med = {}
for name in ("c", "torus"):
    mine = [r for r in rows if r[0] == name]
    cols = []
    for i in range(2, len(head)):
        values = [float(r[i]) for r in mine if r[i] != "-"]
        cols.append(statistics.median(values) if values else None)
    med[name] = cols
    print(f"  {name:6s} " + " ".join(f"{h}={v:.3f}" if v is not None else f"{h}=-" for h, v in zip(head[2:], cols)))
c, t = med["c"][0], med["torus"][0]
print(f"  CPU per request, Torus / C: {t / c:.3f} (a per-CPU-second ratio of {c / t:.3f})")
PY
