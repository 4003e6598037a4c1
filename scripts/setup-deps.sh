#!/usr/bin/env bash
# Installs what Torus needs on a fresh Debian machine (idempotent; quiet when all
# is present): liburing-dev, zlib1g-dev and libssl-dev for the build, the openssl
# CLI for the TLS tests (certificates, s_server/s_client), curl and Python's
# websockets for the interop tests and the example check, iproute2 for the dead-peer
# harness, redis-server for TorusRedis's tests (they start their own servers), pip to install websockets, and venv for the Autobahn|Testsuite driver
# (which makes its own virtual environment), and chromium for the hub dashboard's
# browser tests (headless, driven over DevTools). DocC comes with the Swift toolchain.
set -euo pipefail

need=()
dpkg -s liburing-dev >/dev/null 2>&1 || need+=(liburing-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need+=(zlib1g-dev)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
dpkg -s pkg-config >/dev/null 2>&1 || dpkg -s pkgconf >/dev/null 2>&1 || need+=(pkg-config)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need+=(python3-venv)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != "0" ]; then SUDO=sudo; else SUDO=; fi
  echo "[setup] installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "${TORUS_SKIP_PYTHON:-0}" != "1" ] && ! python3 -c "import websockets" >/dev/null 2>&1; then
  echo "[setup] installing python websockets"
  python3 -m pip install -q websockets 2>/dev/null \
    || python3 -m pip install -q --break-system-packages websockets
fi
