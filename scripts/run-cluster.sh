#!/usr/bin/env bash
# Runs a local torus-hub cluster: one Redis (Debian's redis-server, no persistence),
# or with --redis-cluster a three-master Redis Cluster (on --redis-port and the two
# ports after it), and N hub nodes on loopback ports, sharing one credential file. Prints where each
# node listens. SIGTERM or SIGINT (Ctrl-C) stops every node gracefully (each prints
# its ledger), then Redis; the exit status is non-zero when any node's was.
#
# Usage: scripts/run-cluster.sh [--nodes N] [--host HOST] [--threads N]
#          [--redis-port PORT] [--redis-cluster] [--http-port FIRST] [--router-port FIRST]
#          [--lease-seconds S] [--credentials FILE] [-- extra torus-hub flags]
# Node i (from 1) listens on FIRST+i-1 of each face: by default HTTP on 8081…,
# routers on 7101…; Redis on 6390.
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=3 host=127.0.0.1 threads=2 redis_port=6390 http_port=8081 router_port=7101 lease=15
credentials=torus-hub-credentials.json redis_kind=server
extra=()
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes="$2"; shift 2 ;;
    --host) host="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --redis-port) redis_port="$2"; shift 2 ;;
    --redis-cluster) redis_kind=cluster; shift ;;
    --http-port) http_port="$2"; shift 2 ;;
    --router-port) router_port="$2"; shift 2 ;;
    --lease-seconds) lease="$2"; shift 2 ;;
    --credentials) credentials="$2"; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "run-cluster: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

scripts/setup-deps.sh
swift build -c release --product torus-hub
hub="$(swift build -c release --show-bin-path)/torus-hub"
logs="$(mktemp -d /tmp/torus-cluster.XXXXXX)"

source scripts/lib/redis.sh
node_pids=()
stop_all() {
  local status=0 pid i=1
  for pid in "${node_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${node_pids[@]}"; do
    if ! wait "$pid"; then status=1; echo "[cluster] node n$i exited non-zero (log: $logs/n$i.log)"; fi
    echo "[cluster] node n$i: $(grep -h '^ledger' "$logs/n$i.out" || echo 'no ledger line')"
    i=$((i + 1))
  done
  redis_stop
  echo "[cluster] stopped; logs in $logs"
  exit "$status"
}
trap stop_all TERM INT

if [ "$redis_kind" = cluster ]; then
  redis_start_cluster "$host" "$redis_port" "$logs" || { redis_stop; exit 1; }
  store=(--redis-cluster "$REDIS_SEEDS")
  echo "[cluster] Redis Cluster (3 masters) on $REDIS_SEEDS"
else
  redis_start_server "$host" "$redis_port" "$logs" || { redis_stop; exit 1; }
  store=(--redis "$REDIS_URL")
  echo "[cluster] Redis on $REDIS_URL"
fi

# Node 1 first: on a first start it writes the credential file (and prints the
# admin token) that the other nodes then share.
for i in $(seq 1 "$nodes"); do
  "$hub" --host "$host" --threads "$threads" --http-port $((http_port + i - 1)) --router-port $((router_port + i - 1)) \
    --credentials "$credentials" "${store[@]}" --node-id "n$i" --lease-seconds "$lease" \
    "${extra[@]}" >"$logs/n$i.out" 2>"$logs/n$i.log" &
  node_pids+=($!)
  for _ in $(seq 1 300); do
    [ "$(grep -c '^listening on' "$logs/n$i.out" 2>/dev/null || true)" -ge 2 ] && break
    kill -0 "${node_pids[-1]}" 2>/dev/null || { cat "$logs/n$i.out" "$logs/n$i.log"; echo "[cluster] node n$i did not start"; stop_all; }
    sleep 0.1
  done
  grep -v '^listening on' "$logs/n$i.out" || true
  echo "[cluster] node n$i (pid ${node_pids[-1]}): HTTP http://$host:$((http_port + i - 1)), routers $host:$((router_port + i - 1))"
done
echo "[cluster] $nodes nodes up; every node lists every node's routers (GET /devices with the admin token). Ctrl-C stops all."
while :; do
  for pid in "${node_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "[cluster] a node exited on its own"; stop_all; }
  done
  sleep 1 &
  wait $! || true
done
