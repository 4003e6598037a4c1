#!/usr/bin/env bash
# Memory soak of torus-hub: builds release, runs torus-soak against a fresh hub
# and writes the table, samples.csv, report.md and memory.png into ./soak-out/.
# Usage: scripts/soak.sh SECONDS [extra torus-soak flags]
# Exit status: torus-soak's verdict (non-zero on RSS growth, a non-quiescent hub
# ledger, or any request that should have succeeded and did not).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-120}"
shift || true

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
bin="$(swift build -c release --show-bin-path)"

mkdir -p soak-out
# Subscribers are WebSocket clients on /app and /web; HTTP callers use TorusHTTP's
# HTTPClient (keep-alive and one-shot).
"$bin/torus-soak" --hub "$bin/torus-hub" --duration "$seconds" \
  --routers 200 --ws-clients 100 --rate 50 --sample-interval 5 \
  --out soak-out "$@" 2>&1 | tee soak-out/torus-soak.log
exit "${PIPESTATUS[0]}"
