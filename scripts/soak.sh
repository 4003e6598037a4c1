#!/usr/bin/env bash
# Memory soak of torus-hub: builds release, runs torus-soak against a fresh hub
# and writes the table, samples.csv, report.md and memory.png into ./soak-out/.
# Usage: scripts/soak.sh SECONDS [--nodes N [--redis-cluster]] [extra torus-soak flags]
#        scripts/soak.sh --prepare   only the set-up below (then TORUS_SOAK_PREPARED=1
#                                    skips it: two soaks side by side do not race)
#   --nodes N (N > 1): N hub nodes as one cluster on a Redis this script starts
#   (Debian's redis-server on a free loopback port, no persistence, stopped by PID at
#   the end), or with --redis-cluster on a three-master Redis Cluster it creates;
#   the output goes to ./soak-out-cluster/, one folder per node.
# Exit status: torus-soak's verdict (non-zero on RSS growth of any node, a
# non-quiescent hub ledger, or any request that should have succeeded and did not).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-120}"
shift || true
prepare_only=0
[ "$seconds" = "--prepare" ] && prepare_only=1
nodes=1 redis_kind=server
if [ "${1:-}" = "--nodes" ]; then nodes="$2"; shift 2; fi
if [ "${1:-}" = "--redis-cluster" ]; then redis_kind=cluster; shift; fi

# Set-up (dependencies, matplotlib for the plot, the release build) once; a caller
# that already did it (test.sh, running two soaks side by side) sets
# TORUS_SOAK_PREPARED=1.
if [ "${TORUS_SOAK_PREPARED:-0}" != "1" ]; then
  scripts/setup-deps.sh
  # The plot needs matplotlib; install it from PyPI when missing (the soak still
  # runs and judges without it).
  if ! python3 -c "import matplotlib" >/dev/null 2>&1; then
    echo "[soak] installing matplotlib"
    python3 -m pip install -q matplotlib 2>/dev/null \
      || python3 -m pip install -q --break-system-packages matplotlib 2>/dev/null \
      || echo "[soak] matplotlib unavailable: no plot"
  fi
  echo "== swift build -c release (torus-hub, torus-soak)"
  swift build -c release --product torus-hub
  swift build -c release --product torus-soak
fi
[ "$prepare_only" = 1 ] && exit 0
bin="$(swift build -c release --show-bin-path)"

out=soak-out
cluster=()
source scripts/lib/redis.sh
source scripts/lib/ports.sh
trap redis_stop EXIT
if [ "$nodes" -gt 1 ]; then
  out=soak-out-cluster
  mkdir -p "$out"
  if [ "$redis_kind" = cluster ]; then
    # Three consecutive free ports below the ephemeral range, their bus ports too.
    port="$(free_base 20000 22000 0 1 2 10000 10001 10002)"
    redis_start_cluster 127.0.0.1 "$port" "$out"
    echo "[soak] Redis Cluster on $REDIS_SEEDS (3 masters), $nodes hub nodes"
    cluster=(--nodes "$nodes" --redis-cluster "$REDIS_SEEDS")
  else
    port="$(free_base 20000 22000 0)"
    redis_start_server 127.0.0.1 "$port" "$out"
    echo "[soak] Redis on $REDIS_URL, $nodes hub nodes"
    cluster=(--nodes "$nodes" --redis "$REDIS_URL")
  fi
fi

mkdir -p "$out"
# Subscribers are WebSocket clients on /app and /web; HTTP callers use TorusHTTP's
# HTTPClient (keep-alive and one-shot).
"$bin/torus-soak" --hub "$bin/torus-hub" --duration "$seconds" \
  --routers 200 --ws-clients 100 --rate 50 --sample-interval 5 \
  --out "$out" ${cluster[@]+"${cluster[@]}"} "$@" 2>&1 | tee "$out/torus-soak.log"
# (set -e with pipefail: a failing torus-soak has already ended the script with its
# status, and the trap stopped Redis.)
exit "${PIPESTATUS[0]}"
