#!/usr/bin/env bash
# Builds (release) and runs the main demo, torus-hub: the smart-home gateway
# (router links on --router-port, HTTP API and event streams on --http-port).
# Extra arguments go to the demo; --help lists them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
swift build -c release --product torus-hub
exec "$(swift build -c release --show-bin-path)/torus-hub" "$@"
