#!/usr/bin/env bash
# Builds (release) and runs the main demo, torus-hub: the smart-home gateway
# (router links on --router-port, HTTP API, event streams and its own page on
# --http-port). Extra arguments go to the demo; --help lists them.
#
# --simulate N (first argument) also starts N simulated routers beside it
# (torus-sim: events, command replies, routers that leave and come back), adds
# their secrets and an admin token to the credential file, and prints the page's
# address and the token to paste there. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh

if [ "${1:-}" != "--simulate" ]; then
  swift build -c release --product torus-hub
  exec "$(swift build -c release --show-bin-path)/torus-hub" "$@"
fi

routers="${2:-}"
case "$routers" in ''|*[!0-9]*) echo "usage: $0 --simulate N [torus-hub flags]" >&2; exit 2 ;; esac
shift 2
# The flags the simulation must agree on with the hub (defaults as torus-hub's).
credentials=torus-hub-credentials.json; router_port=7100; http_port=8080; host=127.0.0.1
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  next="${args[i+1]:-}"
  case "${args[i]}" in
    --credentials) credentials="$next" ;;
    --credentials=*) credentials="${args[i]#*=}" ;;
    --router-port) router_port="$next" ;;
    --router-port=*) router_port="${args[i]#*=}" ;;
    --http-port) http_port="$next" ;;
    --http-port=*) http_port="${args[i]#*=}" ;;
    --host) host="$next" ;;
    --host=*) host="${args[i]#*=}" ;;
  esac
done

swift build -c release --product torus-hub
swift build -c release --product torus-sim
bin="$(swift build -c release --show-bin-path)"
token="$("$bin/torus-sim" --prepare --routers "$routers" --credentials "$credentials" | sed -n 's/^token: //p')"

hub_pid=; sim_pid=
stop() {
  trap - INT TERM EXIT
  [ -n "$sim_pid" ] && kill -TERM "$sim_pid" 2>/dev/null || true
  [ -n "$hub_pid" ] && kill -TERM "$hub_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$hub_pid" 2>/dev/null || kill -0 "$sim_pid" 2>/dev/null || break
    sleep 0.1
  done
}
trap stop INT TERM EXIT

"$bin/torus-hub" "$@" &
hub_pid=$!
# Up when the health check answers (bounded: 30 s).
for _ in $(seq 1 300); do
  curl -fs "http://$host:$http_port/healthz" >/dev/null 2>&1 && break
  kill -0 "$hub_pid" 2>/dev/null || { echo "torus-hub exited" >&2; exit 1; }
  sleep 0.1
done
"$bin/torus-sim" --routers "$routers" --credentials "$credentials" --host "$host" --router-port "$router_port" &
sim_pid=$!

cat <<NOTE

  The hub's page:  http://$host:$http_port/
  Token to paste:  $token
  (or open http://$host:$http_port/#token=$token)
  $routers simulated routers are connecting; Ctrl-C stops the hub and them.

NOTE
wait "$hub_pid" || true
