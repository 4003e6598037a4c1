#!/usr/bin/env bash
# The TLS tax of a WebSocket server: torus-ws echo over ws:// and over wss:// (TLS 1.3,
# a P-256 certificate made here), the same load (Benchmarks/ws-load, a Torus client)
# against each, alternating per round; the server pinned to one CPU and the load to the
# other, as ../shared/bench pins them, the server's CPU time read from /proc around each
# run. Prints messages per server CPU-second for both, per profile (medians over rounds)
# and the tax: how much more server CPU a message costs over TLS.
#
# Usage: scripts/wss-bench.sh [--rounds R=3] [--seconds S=5] [--profiles LIST]
#   LIST: CONNECTIONS:INFLIGHT:SIZE[:text], comma separated (default
#   64:16:16:text,64:16:4096,1000:1:16:text, ../shared/bench's WebSocket profiles)
# Bounded: each load run is under `timeout`; the servers are stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
seconds=5
profiles=64:16:16:text,64:16:4096,1000:1:16:text
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --profiles) profiles="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "wss-bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
server_cpu="${BENCH_SERVER_CPU:-0}"
load_cpu="${BENCH_LOAD_CPU:-1}"
[ "$(nproc)" -ge 2 ] || load_cpu=0

echo "== building torus-ws and ws-load (release)"
swift build -c release --product torus-ws >/dev/null
swift build -c release --product ws-load >/dev/null
bin="$(swift build -c release --show-bin-path)"

work="$(mktemp -d "${TMPDIR:-/tmp}/torus-wss-bench.XXXXXX")"
pids=()
cleanup() {
  for pid in ${pids[@]+"${pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
  for pid in ${pids[@]+"${pids[@]}"}; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# start NAME [flags...]: a torus-ws on a free port; sets PORT_NAME and PID_NAME.
start() {
  local name="$1"; shift
  taskset -c "$server_cpu" "$bin/torus-ws" --host 127.0.0.1 --port 0 --threads 1 --no-deflate \
    --ping-interval 0 --log-level warning "$@" >"$work/$name.out" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local port=""
  for _ in $(seq 100); do
    port="$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$work/$name.out" | head -1)"
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "torus-ws ($name) did not start:"; cat "$work/$name.out"; exit 1; }
  printf -v "PORT_$name" '%s' "$port"
  printf -v "PID_$name" '%s' "$pid"
}
start ws
start wss --tls-cert "$work/cert.pem" --tls-key "$work/key.pem"

declare -A RATES
IFS=, read -r -a list <<<"$profiles"
for round in $(seq "$rounds"); do
  for profile in "${list[@]}"; do
    IFS=: read -r conns inflight size kind <<<"$profile"
    for scheme in ws wss; do
      port_var="PORT_$scheme" pid_var="PID_$scheme"
      port="${!port_var}" pid="${!pid_var}"
      args=(--url "$scheme://127.0.0.1:$port/" --connections "$conns" --inflight "$inflight" --size "$size"
            --seconds "$seconds")
      [ "$kind" = text ] && args+=(--text)
      [ "$scheme" = wss ] && args+=(--ca "$work/cert.pem")
      args+=(--server-pid "$pid")
      line="$(timeout $((seconds + 60)) taskset -c "$load_cpu" "$bin/ws-load" "${args[@]}")" || {
        echo "ws-load failed ($scheme, $profile): $line"; exit 1; }
      # Echoes and the server's CPU over the same measured window (ws-load reads both).
      per_cpu="$(awk '{ printf "%d", ($8 > 0 ? $2 / $8 : 0) }' <<<"$line")"
      echo "round $round $profile $scheme: $line; $per_cpu per server CPU-second"
      RATES["$profile $scheme"]+="$per_cpu "
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo
echo "| profile (connections:in flight:bytes) | ws:// per server CPU-s | wss:// per server CPU-s | TLS tax (server CPU per message) |"
echo "|---|---|---|---|"
for profile in "${list[@]}"; do
  ws="$(median <<<"${RATES["$profile ws"]}")"
  wss="$(median <<<"${RATES["$profile wss"]}")"
  awk -v p="$profile" -v a="$ws" -v b="$wss" \
    'BEGIN { printf "| %s | %d | %d | +%.0f %% |\n", p, a, b, (b > 0 ? (a / b - 1) * 100 : 0) }'
done
