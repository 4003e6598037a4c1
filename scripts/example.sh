#!/usr/bin/env bash
# Builds Examples/HelloTorus, a package of its own that depends on Torus by path as a
# user's package would and uses only the public API, then checks it with real
# clients: curl for `GET /`, Python's websockets for the echo on /echo (text and
# binary) and for a broadcast on /chat between two clients. Stops it by PID with
# SIGTERM and checks that it exited 0 with a quiescent ledger. Fails on any mismatch,
# on a compiler warning in the example, or when its code outgrows 20 lines.
#
# Usage: scripts/example.sh          (builds in Examples/HelloTorus/.build, debug)
set -euo pipefail
cd "$(dirname "$0")/../Examples/HelloTorus"
scripts_dir="$(cd ../../scripts && pwd)"
"$scripts_dir/setup-deps.sh"

# "Under 20 lines of its own code": lines that are not blank, comments or imports.
code_lines="$(grep -v -E '^\s*(//.*)?$|^import ' Sources/HelloTorus/main.swift | wc -l)"
echo "example.sh: hello-torus has $code_lines lines of code"
if [ "$code_lines" -ge 20 ]; then
  echo "example.sh: FAILED: the example should stay under 20 lines of code" >&2
  exit 1
fi

echo "== swift build (Examples/HelloTorus)"
BUILD_LOG="$(mktemp /tmp/hello-torus-build.XXXXXX)"
SERVER_LOG="$(mktemp /tmp/hello-torus.XXXXXX)"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; fi
  rm -f "$BUILD_LOG" "$SERVER_LOG"
}
trap cleanup EXIT
if ! swift build >"$BUILD_LOG" 2>&1; then
  cat "$BUILD_LOG" >&2
  echo "example.sh: FAILED: the example does not build" >&2
  exit 1
fi
if grep -E 'Sources/HelloTorus/.*warning:' "$BUILD_LOG" >&2; then
  echo "example.sh: FAILED: compiler warnings in the example" >&2
  exit 1
fi
BIN="$(swift build --show-bin-path)/hello-torus"

"$BIN" --port 0 >"$SERVER_LOG" 2>&1 &
PID=$!
PORT=""
for _ in $(seq 1 200); do
  PORT="$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$SERVER_LOG" | head -1)"
  [ -n "$PORT" ] && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$PORT" ]; then
  cat "$SERVER_LOG" >&2
  echo "example.sh: FAILED: hello-torus did not print 'listening on HOST:PORT'" >&2
  exit 1
fi
echo "== hello-torus (pid $PID) listening on 127.0.0.1:$PORT"

fail() {
  echo "example.sh: FAILED: $*" >&2
  cat "$SERVER_LOG" >&2
  exit 1
}

body="$(curl -sS --max-time 10 "http://127.0.0.1:$PORT/")" || fail "curl GET / failed"
[ "$body" = "Hello from Torus!" ] || fail "GET / answered '$body'"
echo "GET / -> $body"
status="$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/nowhere")" || fail "curl GET /nowhere failed"
[ "$status" = "404" ] || fail "GET /nowhere answered $status, not 404"
echo "GET /nowhere -> $status"

python3 - "$PORT" <<'PY' || fail "the WebSocket checks failed"
import asyncio, sys
import websockets

PORT = int(sys.argv[1])

async def recv(ws):
    return await asyncio.wait_for(ws.recv(), timeout=10)

async def main():
    async with websockets.connect(f"ws://127.0.0.1:{PORT}/echo") as ws:
        for message in ["hello", "é ✓ 🚀", b"\x00\x01\xfe\xff", "x" * 100_000]:
            await ws.send(message)
            got = await recv(ws)
            assert got == message, f"echo: sent {message[:40]!r}, got {got[:40]!r}"
    print("/echo: text, UTF-8, binary and 100 kB messages echoed")

    chat = f"ws://127.0.0.1:{PORT}/chat"
    async with websockets.connect(chat) as a, websockets.connect(chat) as b:
        await a.send("from a")
        assert await recv(a) == "from a", "a did not get its own message"
        assert await recv(b) == "from a", "b did not get a's message"
        await b.send("from b")
        assert await recv(a) == "from b", "a did not get b's message"
        assert await recv(b) == "from b", "b did not get its own message"
    print("/chat: each message went to both clients")

asyncio.run(main())
PY

echo "== stopping hello-torus (SIGTERM)"
kill -TERM "$PID"
rc=""
for _ in $(seq 1 400); do
  if ! kill -0 "$PID" 2>/dev/null; then
    rc=0
    wait "$PID" || rc=$?
    break
  fi
  sleep 0.05
done
[ -n "$rc" ] || fail "hello-torus did not stop within 20 s of SIGTERM"
PID=""
[ "$rc" -eq 0 ] || fail "hello-torus exited $rc"
grep -q '^ledger: quiescent' "$SERVER_LOG" || fail "hello-torus did not report a quiescent ledger"
grep '^ledger:' "$SERVER_LOG"
echo "example.sh: every check passed"
