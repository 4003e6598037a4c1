#!/usr/bin/env bash
# idle-memory.sh - idle memory per connection (issue 11): builds the Torus demos in
# release, builds or finds the anchors (nginx, c-uring, SwiftNIO from ../shared/bench),
# then runs Benchmarks/idle-memory/idle_memory.py over every target, one after another,
# and prints a Markdown table. See Benchmarks/idle-memory/README.md.
#
#   scripts/idle-memory.sh [--conns N=10000] [--targets LIST] [--json FILE] [--md FILE]
#                          [--settle S=3] [--idle-cpu S=5] [--threads T=1] [--scale]
#                          [--no-build] [--no-anchors]
#   scripts/idle-memory.sh --scale [--scale-steps 5000,10000,19000] [--commands 1000]
#                          [--command-concurrency 32] [--no-broadcast] [--max-kib-per-conn K]
#     hub scale table: web, app, router-link and mixed faces, each step followed by one
#     broadcast and one command to each of 1,000 routers; least-squares fit and projection.
#     scripts/scale-ci.sh is its bounded CI step (10,000 mixed links).
#
# Writes only under ${TMPDIR:-/tmp}/idle-anchors (anchor builds) and
# ${TMPDIR:-/tmp}/idle-memory (server logs); ../shared is read, never written.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SHARED_BENCH="${SHARED_BENCH:-$ROOT/../shared/bench}"
ANCHORS="${IDLE_ANCHORS_DIR:-${TMPDIR:-/tmp}/idle-anchors}"
BUILD=1
USE_ANCHORS=1
TARGETS=""
SCALE=0
ARGS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

while (($#)); do
	case $1 in
	--no-build) BUILD=0 ;;
	--no-anchors) USE_ANCHORS=0 ;;
	--targets) TARGETS=$2; ARGS+=("$1" "$2"); shift ;;
	--targets=*) TARGETS=${1#*=}; ARGS+=("$1") ;;
	--scale) SCALE=1; ARGS+=("$1") ;;
	--conns | --json | --md | --settle | --idle-cpu | --threads | --scale-steps | --port-base | --per-worker | --window | \
		--commands | --command-concurrency | --max-kib-per-conn | --deliver-timeout | --render)
		ARGS+=("$1" "$2"); shift ;;
	-h | --help) sed -n '2,17p' "$0"; exit 0 ;;
	*) ARGS+=("$1") ;;
	esac
	shift
done

# Every process this script starts in the background is stopped by PID on exit.
BG_PIDS=()
cleanup() {
	local p
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

APT_UPDATED=0
apt_install() {
	command -v apt-get >/dev/null 2>&1 || { log "warning: no apt-get to install $*"; return 1; }
	local sudo=
	((EUID == 0)) || sudo=sudo
	if ((!APT_UPDATED)); then $sudo apt-get update -qq >&2 || return 1; APT_UPDATED=1; fi
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}

command -v python3 >/dev/null || apt_install python3 || die "python3 missing"
command -v taskset >/dev/null || apt_install util-linux || die "taskset missing"

# Which targets need what (the default list is the Python script's).
wanted() { # NAME-PREFIX
	[[ -z $TARGETS ]] && { ((SCALE)) && [[ $1 == torus* ]] && return 0; ((!SCALE)) && return 0; return 1; }
	[[ ",$TARGETS," == *",$1"* ]]
}
explicit_anchor() { [[ -n $TARGETS && ",$TARGETS," =~ ,(c-uring|nio) ]]; }

# --- the Torus demos, release
if ((BUILD)); then
	for p in torus-echo torus-http torus-ws torus-hub; do
		wanted "$p" || continue
		log "swift build -c release --product $p"
		swift build -c release --product "$p" >&2 || die "building $p failed"
	done
fi

# --- anchors
NIO_BIN=""
if ((USE_ANCHORS)) && { wanted nginx || wanted c-uring || wanted nio; }; then
	if [[ ! -d $SHARED_BENCH ]]; then
		if [[ ${CI:-} == true ]] && explicit_anchor; then
			die "anchors asked for (--targets $TARGETS) but $SHARED_BENCH is missing"
		fi
		log "note: $SHARED_BENCH not found: the c-uring and nio anchors are skipped"
		ARGS+=(--skip-shared-anchors "$SHARED_BENCH not found")
	else
		mkdir -p "$ANCHORS/bin"
		if wanted c-uring; then
			src="$SHARED_BENCH/anchors/c-uring/server.c"
			if [[ ! -x $ANCHORS/bin/c-uring || $src -nt $ANCHORS/bin/c-uring ]]; then
				command -v gcc >/dev/null || apt_install build-essential || true
				echo '#include <liburing.h>' | gcc -E -x c - >/dev/null 2>&1 || apt_install liburing-dev || true
				log "building c-uring (gcc)"
				gcc -O2 -Wall -o "$ANCHORS/bin/c-uring.tmp.$$" "$src" -I"$SHARED_BENCH/tools" -luring &&
					mv -f "$ANCHORS/bin/c-uring.tmp.$$" "$ANCHORS/bin/c-uring" ||
					log "warning: c-uring build failed: skipped"
			fi
		fi
		if wanted nio; then
			if ! command -v swift >/dev/null; then
				log "warning: swift not in PATH: the nio anchors are skipped"
			else
				# A copy, because SwiftPM writes Package.resolved beside Package.swift.
				mkdir -p "$ANCHORS/nio-src"
				cp -Rp "$SHARED_BENCH/anchors/nio/Package.swift" "$SHARED_BENCH/anchors/nio/Sources" "$ANCHORS/nio-src/"
				log "building nio anchors (swift build -c release; the first build takes minutes; log: $ANCHORS/nio-build.log)"
				if timeout 1500 swift build -c release --package-path "$ANCHORS/nio-src" \
					--scratch-path "$ANCHORS/nio-build" >"$ANCHORS/nio-build.log" 2>&1; then
					NIO_BIN="$(swift build -c release --package-path "$ANCHORS/nio-src" \
						--scratch-path "$ANCHORS/nio-build" --show-bin-path 2>/dev/null)"
				else
					log "warning: nio build failed (see $ANCHORS/nio-build.log): skipped"
				fi
			fi
		fi
	fi
	if wanted nginx && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
		log "installing nginx-light"
		apt_install nginx-light || log "warning: nginx could not be installed: skipped"
	fi
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
if ((!USE_ANCHORS)) && [[ -z $TARGETS ]] && ((!SCALE)); then
	ARGS+=(--targets torus-echo,torus-http,torus-ws,torus-hub)
fi

log "running $ROOT/Benchmarks/idle-memory/idle_memory.py ${ARGS[*]}"
exec python3 "$ROOT/Benchmarks/idle-memory/idle_memory.py" --bin-dir "$ROOT/.build/release" \
	--anchors-dir "$ANCHORS" --nio-bin "$NIO_BIN" --nginx "$NGINX" "${ARGS[@]}"
