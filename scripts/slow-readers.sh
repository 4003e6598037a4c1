#!/usr/bin/env bash
# Slow readers (issue 11): 8 WebSocket clients send 64 x 64 KiB each to torus-ws's
# echo and never read; prints the server's VmRSS before, while they hang on, and 10 s
# after they left. Builds the release demo if needed. Extra arguments go to
# Benchmarks/slow-readers/slow_readers.py (e.g. --server 'CMD --port {port}').
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .build/release/torus-ws ]] || swift build -c release --product torus-ws >/dev/null
exec timeout 180 python3 Benchmarks/slow-readers/slow_readers.py "$@"
