#!/usr/bin/env bash
# Builds (release) and runs the main demo. Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
swift build -c release --product torus-echo
exec .build/release/torus-echo "$@"
