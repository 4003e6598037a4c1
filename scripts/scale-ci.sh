#!/usr/bin/env bash
# scale-ci.sh - the CI step of the hub scale table (issue 11): one release torus-hub
# holds 10,000 idle connections at once - 5,000 router links and 5,000 /web WebSocket
# subscribers, opened by separate client processes - then one event is broadcast to
# every subscriber and one command is sent to each of 1,000 routers through the HTTP
# API. Prints the figures (Markdown) and fails (exit 1) when:
#   - any connection failed or did not stay open through the idle window,
#   - any subscriber did not get the event exactly once, or any command was not
#     answered with its router's REPLY (or a router did not get its command),
#   - the hub did not exit 0 with a quiescent ledger on SIGTERM,
#   - VmRSS grew by more than TORUS_SCALE_MAX_KIB (default 3) KiB per connection.
# The bound applies to the release build (debug RSS is larger). Needs only the
# torus-hub demo and python3 (no ../shared). Exit 77: this machine cannot hold the
# connections (descriptor hard limit too low).
#
#   scripts/scale-ci.sh [--no-build] [--conns N=10000]
#   TORUS_SCALE_MAX_KIB=K   the KiB/conn bound
#   TORUS_SCALE_OUT=DIR     where the JSON and Markdown go (default ${TMPDIR:-/tmp}/torus-scale-ci)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD=1
CONNS=10000
while (($#)); do
	case $1 in
	--no-build) BUILD=0 ;;
	--conns) CONNS=$2; shift ;;
	-h | --help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "scale-ci.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
OUT="${TORUS_SCALE_OUT:-${TMPDIR:-/tmp}/torus-scale-ci}"
MAX_KIB="${TORUS_SCALE_MAX_KIB:-3}"
mkdir -p "$OUT"

hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < CONNS + 200)); then
	echo "scale-ci: SKIPPED: descriptor hard limit $hard is below $CONNS + 200" >&2
	exit 77
fi
command -v python3 >/dev/null || { echo "scale-ci: python3 missing" >&2; exit 1; }

if ((BUILD)); then
	echo "== swift build -c release --product torus-hub" >&2
	swift build -c release --product torus-hub >&2
fi
BIN="$(swift build -c release --show-bin-path)"

# Bounded: every wait inside has its own timeout; the whole run is capped too.
timeout 300 python3 "$ROOT/Benchmarks/idle-memory/idle_memory.py" --scale \
	--targets torus-hub-mixed --scale-steps "$CONNS" --bin-dir "$BIN" \
	--settle 2 --idle-cpu 3 --connect-timeout 60 --deliver-timeout 30 \
	--commands 1000 --command-concurrency 32 --max-kib-per-conn "$MAX_KIB" \
	--workdir "$OUT/logs" --json "$OUT/scale-ci.json" --md "$OUT/scale-ci.md"
