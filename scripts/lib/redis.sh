# Sourced by scripts that need a Redis of their own (soak.sh, run-cluster.sh):
# Debian's redis-server on loopback, no persistence, stopped by PID.
#
#   redis_start_server HOST PORT DIR    one server; REDIS_URL=redis://HOST:PORT
#   redis_start_cluster HOST PORT DIR   a three-master Redis Cluster on PORT, PORT+1,
#                                       PORT+2 (cluster bus on +10000), made with
#                                       redis-cli --cluster create;
#                                       REDIS_SEEDS=HOST:PORT,HOST:PORT+1,HOST:PORT+2
#   redis_stop                          stops every redis-server these started
# Logs and the cluster's node files go to DIR.

REDIS_PIDS=()

redis_wait() {  # HOST PORT PID LOG
  local _
  for _ in $(seq 1 100); do
    redis-cli -h "$1" -p "$2" ping >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || { cat "$4"; echo "[redis] redis-server on $1:$2 did not start" >&2; return 1; }
    sleep 0.1
  done
  echo "[redis] redis-server on $1:$2 did not answer" >&2
  return 1
}

redis_start_server() {  # HOST PORT DIR
  redis-server --port "$2" --bind "$1" --save '' --appendonly no >"$3/redis-$2.log" 2>&1 &
  REDIS_PIDS+=($!)
  redis_wait "$1" "$2" "${REDIS_PIDS[-1]}" "$3/redis-$2.log" || return 1
  REDIS_URL="redis://$1:$2"
}

redis_start_cluster() {  # HOST PORT DIR
  local host="$1" first="$2" dir port seeds=() _
  dir="$(cd "$3" && pwd)"  # redis-server reads its node file relative to --dir
  for port in "$first" $((first + 1)) $((first + 2)); do
    redis-server --port "$port" --bind "$host" --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
      --cluster-node-timeout 5000 --save '' --appendonly no --dir "$dir" >"$dir/redis-$port.log" 2>&1 &
    REDIS_PIDS+=($!)
    redis_wait "$host" "$port" "${REDIS_PIDS[-1]}" "$dir/redis-$port.log" || return 1
    seeds+=("$host:$port")
  done
  redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$dir/cluster-create.log" 2>&1 \
    || { cat "$dir/cluster-create.log"; echo "[redis] cluster create failed" >&2; return 1; }
  for _ in $(seq 1 100); do
    redis-cli -h "$host" -p "$first" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
    sleep 0.1
  done
  REDIS_SEEDS="$(IFS=,; echo "${seeds[*]}")"
}

redis_stop() {
  local pid
  for pid in ${REDIS_PIDS[@]+"${REDIS_PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in ${REDIS_PIDS[@]+"${REDIS_PIDS[@]}"}; do wait "$pid" 2>/dev/null || true; done
  REDIS_PIDS=()
}
