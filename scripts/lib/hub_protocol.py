"""torus-hub's router protocol for Python tools (stdlib only): framing, the version 2
handshake, and the small helpers the benchmarks share. Used by
scripts/deadpeer/hub_clients.py, Demos/torus-hub/cluster_bench.py and
Demos/torus-hub/handshake_cost.py (they add this folder to sys.path).

Frames are a 4-byte big-endian length (type byte + payload), a type byte, then the
payload; Demos/torus-hub/README.md specifies them."""
import hashlib
import hmac
import os
import socket
import struct

HELLO, WELCOME, HEARTBEAT, EVENT, COMMAND, REPLY, BYE = 1, 2, 3, 4, 5, 6, 7
AUTH, AUTHOK, REFUSED = 8, 9, 10
PROTOCOL_VERSION = 2
NONCE_WELCOME_SIZE = 36  # heartbeat ms (4 bytes) + nonce (32 bytes)


def frame(kind, payload=b""):
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def read_frame(s):
    """(type, payload) of the next frame; ConnectionError when the link closes."""
    length, kind = struct.unpack(">IB", recv_exact(s, 5))
    return kind, recv_exact(s, length - 1)


def proof(secret, nonce, rid):
    """HMAC-SHA256(secret, nonce + id): what AUTH carries."""
    return hmac.new(secret, nonce + rid, hashlib.sha256).digest()


def hello(rid, version=PROTOCOL_VERSION):
    """A HELLO frame for router id `rid` (bytes); version 1 has no version byte."""
    return frame(HELLO, (b"" if version == 1 else bytes([version])) + rid)


def expect_welcome(s):
    """Reads WELCOME with a nonce; returns (heartbeat seconds, nonce)."""
    kind, body = read_frame(s)
    if kind != WELCOME or len(body) != NONCE_WELCOME_SIZE:
        raise ConnectionError(f"expected WELCOME with a nonce, got type {kind}: {body!r}")
    return struct.unpack(">I", body[:4])[0] / 1000.0, body[4:]


def expect_authok(s):
    kind, reason = read_frame(s)
    if kind != AUTHOK:
        raise ConnectionError(f"authentication refused (type {kind}): {reason!r}")


AUTH_NO_CONFIRM = b"\x01"  # AUTH's flags byte: the hub sends no AUTHOK


def authenticate(s, rid, secret, pipelined=True, confirm=True):
    """The version 2 handshake on a connected socket; returns the heartbeat in
    seconds. Pipelined: the hub's WELCOME (sent at accept) first, then HELLO and AUTH
    in one send. Otherwise HELLO, WELCOME, AUTH, each after the other's answer.
    confirm=False (pipelined only): AUTH carries the no-AUTHOK flag and nothing is
    awaited; a refusal shows as REFUSED on the next read."""
    if not confirm:
        heartbeat, nonce = expect_welcome(s)
        s.sendall(hello(rid) + frame(AUTH, proof(secret, nonce, rid) + AUTH_NO_CONFIRM))
        return heartbeat
    if pipelined:
        heartbeat, nonce = expect_welcome(s)
        s.sendall(hello(rid) + frame(AUTH, proof(secret, nonce, rid)))
    else:
        s.sendall(hello(rid))
        heartbeat, nonce = expect_welcome(s)
        s.sendall(frame(AUTH, proof(secret, nonce, rid)))
    expect_authok(s)
    return heartbeat


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid`, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
