#!/usr/bin/env bash
# Builds the libFuzzer harness for the HTTP/1.1 request and response parsers with
# AddressSanitizer and runs it for SECONDS (default 60). Kept for existing callers: it is
# `scripts/fuzz.sh http SECONDS ...` (working corpus .build-fuzz/corpus/http, seeded from
# Fuzz/corpus/http; crash artifacts in .build-fuzz/artifacts/http/).
#
#   scripts/fuzz-http.sh [SECONDS] [extra libFuzzer flags...]
set -euo pipefail
SECONDS_TO_RUN="${1:-60}"
shift || true
exec "$(cd "$(dirname "$0")" && pwd)/fuzz.sh" http "$SECONDS_TO_RUN" "$@"
