#!/usr/bin/env bash
# Runs every Torus test: the Swift test suite (unit, integration, interop with
# curl/Python clients), then the harnesses that need more than one process.
# Usage: scripts/test.sh            (everything, with Autobahn in ci mode)
#        TORUS_QUICK=1 scripts/test.sh   (the Swift suite only)
#        TORUS_SKIP_AUTOBAHN=1 scripts/test.sh   (everything but Autobahn)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh

echo "== swift test"
swift test 2>&1 | tee /tmp/torus-swift-test.log
grep -q "Test run with .* passed" /tmp/torus-swift-test.log

[ "${TORUS_QUICK:-0}" = "1" ] && exit 0

if [ "${TORUS_SKIP_AUTOBAHN:-0}" != "1" ]; then
  echo "== Autobahn|Testsuite against torus-ws (ci mode; scripts/autobahn.sh full for all 517 cases)"
  scripts/autobahn.sh ci
fi
