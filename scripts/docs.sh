#!/usr/bin/env bash
# Builds the DocC documentation of the library targets with swift-docc-plugin (a
# dependency of the package): the catalogs in Sources/<Target>/<Target>.docc plus
# every public symbol's doc comment. Any DocC warning fails the build
# (--warnings-as-errors: a broken symbol link, a parameter documented that does not
# exist or one left undocumented in a `- Parameters:` list), and so does any other
# `warning:` line printed while the targets are built for their symbol graphs.
#
# Usage: scripts/docs.sh [TARGET...]   (default: Torus TorusHTTP TorusWebSocket TorusTLS TorusRedis TorusHub)
# Output: .build/plugins/Swift-DocC/outputs/TARGET.doccarchive (static-hosting
# layout). To browse one locally:
#   swift package --disable-sandbox preview-documentation --target Torus
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(Torus TorusHTTP TorusWebSocket TorusTLS TorusRedis TorusHub)
LOG="$(mktemp /tmp/torus-docs.XXXXXX)"
trap 'rm -f "$LOG"' EXIT
failed=()
# One target at a time, so that every target's diagnostics are shown even when an
# earlier one fails.
for t in "${targets[@]}"; do
  echo "== DocC: $t"
  rc=0
  swift package generate-documentation --target "$t" --warnings-as-errors >"$LOG" 2>&1 || rc=$?
  # The compile steps are noise; keep DocC's own lines and every diagnostic.
  grep -v -E '^\[[0-9]+/[0-9]+\] (Compiling|Emitting|Write|Linking|Building|Wrapping)' "$LOG" || true
  archive=".build/plugins/Swift-DocC/outputs/$t.doccarchive"
  if [ "$rc" -ne 0 ]; then
    echo "docs.sh: $t FAILED: swift package generate-documentation exited $rc (diagnostics above)" >&2
    failed+=("$t")
  elif grep -q -E '(^|: )warning:' "$LOG"; then
    echo "docs.sh: $t FAILED: warnings while building its documentation:" >&2
    grep -E '(^|: )warning:' "$LOG" >&2
    failed+=("$t")
  elif [ ! -d "$archive" ]; then
    echo "docs.sh: $t FAILED: $archive was not produced" >&2
    failed+=("$t")
  else
    echo "docs.sh: $t -> $archive"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "docs.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "docs.sh: ${#targets[@]} catalogs built without warnings"
