#!/usr/bin/env bash
# Checks scripts/run-cluster.sh end to end, once on one Redis server and once on a
# three-master Redis Cluster (--redis-cluster): two torus-hub nodes (release) on
# loopback; routers held on node 1 (scripts/deadpeer/hub_clients.py, stdlib Python)
# must be listed by node 2 with their node, an event from a router on node 1 must
# reach /app and /web clients on node 2, and SIGTERM must stop both nodes with their
# ledgers quiescent and run-cluster.sh exiting 0. Every wait is bounded.
# Usage: scripts/cluster-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
clients=scripts/deadpeer/hub_clients.py

source scripts/lib/ports.sh

wait_for() {  # FILE PATTERN SECONDS PID
  local i
  for i in $(seq 1 $(( $3 * 10 ))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$4" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

smoke() {  # server|cluster
  local kind="$1" dir base http router redis pid holder status flags=()
  dir="$(mktemp -d /tmp/torus-cluster-smoke.XXXXXX)"
  # Free ports below the ephemeral range: two HTTP, two router, three Redis (and
  # their cluster bus ports, +10000).
  base="$(free_base 22000 23800 0 1 100 101 200 201 202 10200 10201 10202)"
  http=$base router=$((base + 100)) redis=$((base + 200))
  [ "$kind" = cluster ] && flags=(--redis-cluster)
  python3 "$clients" credentials --out "$dir/credentials.json" --routers 4
  echo "== cluster smoke ($kind): run-cluster.sh --nodes 2 ${flags[*]-} (HTTP $http.., routers $router.., Redis $redis)"
  scripts/run-cluster.sh --nodes 2 ${flags[@]+"${flags[@]}"} --redis-port "$redis" --http-port "$http" \
    --router-port "$router" --credentials "$dir/credentials.json" --lease-seconds 3 >"$dir/run.log" 2>&1 &
  pid=$!
  if ! wait_for "$dir/run.log" "nodes up" 600 "$pid"; then
    cat "$dir/run.log"; kill -TERM "$pid" 2>/dev/null || true; wait "$pid" || true
    echo "cluster smoke ($kind): the nodes did not come up"; return 1
  fi
  python3 "$clients" hold --credentials "$dir/credentials.json" --router-port "$router" --http-port "$http" \
    --routers 4 --ws 0 --ready-file "$dir/ready" --stop-file "$dir/stop" --max-seconds 60 >"$dir/hold.log" 2>&1 &
  holder=$!
  local ok=1 i listing=""
  for i in $(seq 1 100); do [ -e "$dir/ready" ] && break; sleep 0.1; done
  [ -e "$dir/ready" ] || { echo "routers did not connect: $(cat "$dir/hold.log")"; ok=0; }
  # Node 2 lists node 1's routers (within a few renewals at most).
  for i in $(seq 1 50); do
    listing="$(python3 "$clients" get --credentials "$dir/credentials.json" --url "http://127.0.0.1:$((http + 1))/devices" || true)"
    [ "$(grep -o '"node":"n1"' <<<"$listing" | wc -l)" -eq 4 ] && break
    sleep 0.2
  done
  if [ "$(grep -o '"node":"n1"' <<<"$listing" | wc -l)" -ne 4 ]; then echo "node 2 lists: $listing"; ok=0; fi
  # An event from a router on node 1 reaches /app and /web on node 2.
  python3 "$clients" check --credentials "$dir/credentials.json" --router-port "$router" --http-port "$((http + 1))" \
    || ok=0
  touch "$dir/stop"
  wait "$holder" || true
  kill -TERM "$pid"
  status=0
  wait "$pid" || status=$?
  grep '^\[cluster\] node' "$dir/run.log" | grep ledger || true
  if [ "$status" -ne 0 ] || [ "$(grep -c 'ledger: quiescent' "$dir/run.log")" -ne 2 ]; then
    cat "$dir/run.log"; echo "cluster smoke ($kind): exit $status or a ledger not quiescent"; ok=0
  fi
  if [ "$ok" -eq 1 ]; then
    echo "cluster smoke ($kind): ok"; rm -rf "$dir"
  else
    echo "cluster smoke ($kind): FAILED (files in $dir)"; return 1
  fi
}

smoke server
smoke cluster
