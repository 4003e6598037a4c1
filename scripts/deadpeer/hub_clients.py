#!/usr/bin/env python3
"""Router and WebSocket client driver for the hub case of the dead-peer harness
(stdlib only; runs inside a network namespace with `ip netns exec`).

Modes:
  hold   Open --routers router links (HELLO dp-NNN, AUTH over WELCOME's nonce with the secret from --credentials, HEARTBEAT every
         third of the hub's heartbeat timeout, an EVENT every --event-interval s,
         REPLY to every COMMAND) and --ws WebSocket clients (half on
         /app?routers=dp-000,dp-001, half on /web; the raw RFC 6455 handshake,
         masked pongs to the hub's pings, events read and discarded). Prints one
         `ready routers=N ws=M` line, then keeps everything open until --stop-file
         exists, SIGTERM/SIGINT arrives, or --max-seconds passes. Sockets are never
         closed explicitly before exit: once the link is cut, nothing we send
         reaches the hub.
  check  One router, one /app client (subscribed to it) and one /web client: the
         router sends an EVENT, both clients must receive it. Prints `check ok` and
         exits 0, or `check FAIL: reason` and exits 1.
  get    GET --url (http://HOST:PORT/PATH) and print the body; exit 1 unless 200.
  credentials  Write --out, a credential file (mode 0600) with secrets for dp-000..
         and dp-check and an admin token's hash (the token in --out.token); hold, check
         and get read them with --credentials.

Every wait is bounded (connect and handshake timeouts, --max-seconds).
"""
import argparse
import base64
import hashlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from hub_protocol import BYE, COMMAND, EVENT, HEARTBEAT, REPLY, authenticate, frame  # noqa: E402

SECRETS = {}  # router id -> secret bytes, from --credentials
TOKEN = [""]  # the admin API token, from --credentials + ".token"


def say(line):
    print(line, flush=True)


def open_router(host, port, rid, timeout):
    """Connects and authenticates (protocol v2: HELLO, WELCOME with a nonce, AUTH
    with HMAC-SHA256(secret, nonce + id), AUTHOK); returns (socket, heartbeat s)."""
    s = socket.create_connection((host, port), timeout=timeout)
    heartbeat = authenticate(s, rid.encode(), SECRETS.get(rid, b""), pipelined=False)
    return s, heartbeat


def write_credentials(a):
    """Writes a credential file (mode 0600) with a fresh secret for dp-000.. and dp-check
    and the hash of a fresh admin API token; the token itself goes to FILE.token (mode
    0600), where hold, check and get read it (the hub's faces need one)."""
    ids = [f"dp-{i:03d}" for i in range(a.routers)] + ["dp-check"]
    routers = {rid: base64.b64encode(os.urandom(32)).decode() for rid in ids}
    token = "thk_" + os.urandom(24).hex()
    tokens = {hashlib.sha256(token.encode()).hexdigest(): {"routers": "*", "rights": ["admin"]}}
    for path, write in [(a.out, lambda f: json.dump({"routers": routers, "tokens": tokens}, f, indent=2, sort_keys=True)),
                        (a.out + ".token", lambda f: f.write(token + "\n"))]:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            write(f)
    return 0


def ws_frame(opcode, payload=b""):
    """A masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def open_ws(host, port, target, timeout):
    """Raw opening handshake; returns (socket, bytes that followed the 101 head)."""
    s = socket.create_connection((host, port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Bearer {TOKEN[0]}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        buf += chunk
        if len(buf) > 16384:
            raise ConnectionError("response head too large")
    head, rest = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"handshake refused: {head.splitlines()[0]!r}")
    return s, rest


class WSReader:
    """Incremental parser of unmasked server frames."""

    def __init__(self, initial=b""):
        self.buf = bytearray(initial)

    def feed(self, data):
        self.buf += data

    def frames(self):
        while True:
            if len(self.buf) < 2:
                return
            b0, b1 = self.buf[0], self.buf[1]
            n = b1 & 0x7F
            i = 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n = struct.unpack(">H", self.buf[2:4])[0]
                i = 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n = struct.unpack(">Q", self.buf[2:10])[0]
                i = 10
            if len(self.buf) < i + n:
                return
            payload = bytes(self.buf[i:i + n])
            del self.buf[:i + n]
            yield b0 & 0x0F, payload


class RouterReader:
    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data

    def frames(self):
        while len(self.buf) >= 5:
            length = struct.unpack(">I", self.buf[:4])[0]
            if len(self.buf) < 4 + length:
                return
            kind = self.buf[4]
            payload = bytes(self.buf[5:4 + length])
            del self.buf[:4 + length]
            yield kind, payload


def hold(a):
    stop = {"now": False}

    def on_signal(*_):
        stop["now"] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sel = selectors.DefaultSelector()
    routers, sockets_ws, failures, first_error = [], [], 0, None
    heartbeat = 30.0
    for i in range(a.routers):
        try:
            s, heartbeat = open_router(a.host, a.router_port, f"dp-{i:03d}", a.connect_timeout)
        except OSError as e:
            failures += 1
            first_error = first_error or f"router: {e!r}"
            continue
        s.setblocking(False)
        state = {"kind": "router", "reader": RouterReader(), "sock": s}
        sel.register(s, selectors.EVENT_READ, state)
        routers.append(state)
    for i in range(a.ws):
        target = "/app?routers=dp-000,dp-001" if i % 2 == 0 else "/web"
        try:
            s, rest = open_ws(a.host, a.http_port, target, a.connect_timeout)
        except OSError as e:
            failures += 1
            first_error = first_error or f"websocket: {e!r}"
            continue
        s.setblocking(False)
        state = {"kind": "ws", "reader": WSReader(rest), "sock": s, "messages": 0}
        sel.register(s, selectors.EVENT_READ, state)
        sockets_ws.append(state)
    say(f"ready routers={len(routers)} ws={len(sockets_ws)} failures={failures} first_error={first_error}")
    if a.ready_file:
        open(a.ready_file, "w").close()
    beat = heartbeat / 3
    next_beat = time.monotonic() + beat
    next_event = time.monotonic() + a.event_interval
    deadline = time.monotonic() + a.max_seconds
    seq = 0

    def send(state, data):
        try:
            state["sock"].send(data)  # small frames; a full buffer (link cut) just drops them
        except OSError:
            pass
    while not stop["now"] and time.monotonic() < deadline:
        if a.stop_file and os.path.exists(a.stop_file):
            break
        now = time.monotonic()
        if now >= next_event and a.event_interval > 0:
            seq += 1
            for r in routers:
                send(r, frame(EVENT, json.dumps({"seq": seq}).encode()))
            next_event = now + a.event_interval
            next_beat = now + beat
        elif now >= next_beat:
            for r in routers:
                send(r, frame(HEARTBEAT))
            next_beat = now + beat
        for key, _ in sel.select(timeout=0.1):
            state = key.data
            try:
                data = state["sock"].recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(state["sock"])
                continue
            state["reader"].feed(data)
            for kind, payload in state["reader"].frames():
                if state["kind"] == "router":
                    if kind == COMMAND and len(payload) >= 4:
                        send(state, frame(REPLY, payload[:4] + b"ok"))
                else:
                    if kind == 0x9:
                        send(state, ws_frame(0xA, payload))
                    elif kind == 0x8:
                        send(state, ws_frame(0x8, payload[:2]))
                    elif kind in (0x1, 0x2):
                        state["messages"] += 1
    say(f"done messages={sum(w['messages'] for w in sockets_ws)}")


def ws_next_text(s, reader, deadline):
    while time.monotonic() < deadline:
        for kind, payload in reader.frames():
            if kind == 0x1:
                return payload.decode()
            if kind == 0x9:
                s.sendall(ws_frame(0xA, payload))
            if kind == 0x8:
                raise ConnectionError("closed by the hub")
        s.settimeout(max(0.05, deadline - time.monotonic()))
        data = s.recv(65536)
        if not data:
            raise ConnectionError("closed")
        reader.feed(data)
    raise TimeoutError("no message in time")


def check(a):
    deadline = time.monotonic() + a.max_seconds
    rid = "dp-check"
    try:
        r, _ = open_router(a.host, a.router_port, rid, a.connect_timeout)
        app, rest = open_ws(a.host, a.http_port, f"/app?routers={rid}", a.connect_timeout)
        app_reader = WSReader(rest)
        web, rest = open_ws(a.host, a.http_port, "/web", a.connect_timeout)
        web_reader = WSReader(rest)
        if json.loads(ws_next_text(app, app_reader, deadline)) != {"subscribed": [rid]}:
            raise ValueError("bad /app acknowledgement")
        if json.loads(ws_next_text(web, web_reader, deadline)) != {"subscribed": ["*"]}:
            raise ValueError("bad /web acknowledgement")
        r.sendall(frame(EVENT, b'{"check":true}'))
        for name, s, reader in (("app", app, app_reader), ("web", web, web_reader)):
            while True:
                m = json.loads(ws_next_text(s, reader, deadline))
                if m.get("router") == rid:
                    if json.loads(m["data"]) != {"check": True}:
                        raise ValueError(f"{name}: wrong data {m}")
                    break
        r.sendall(frame(BYE, b"check done"))
        for s in (app, web):
            s.sendall(ws_frame(0x8, struct.pack(">H", 1000)))
        time.sleep(0.2)
        for s in (r, app, web):
            s.close()
    except Exception as e:  # noqa: BLE001 - reported as the check's failure
        say(f"check FAIL: {e!r}")
        return 1
    say("check ok")
    return 0


def get(a):
    try:
        request = urllib.request.Request(a.url, headers={"Authorization": "Bearer " + TOKEN[0]})
        with urllib.request.urlopen(request, timeout=a.connect_timeout) as r:
            body = r.read().decode()
            print(body, end="" if body.endswith("\n") else "\n")
            return 0 if r.status == 200 else 1
    except Exception as e:  # noqa: BLE001
        say(f"get FAIL: {e!r}")
        return 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["hold", "check", "get", "credentials"])
    p.add_argument("--credentials", help="the hub's credential file (router secrets)")
    p.add_argument("--out", help="credentials mode: the file to write")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--router-port", type=int, default=7100)
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--routers", type=int, default=100)
    p.add_argument("--ws", type=int, default=100)
    p.add_argument("--event-interval", type=float, default=2.0)
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--ready-file")
    p.add_argument("--stop-file")
    p.add_argument("--max-seconds", type=float, default=120)
    p.add_argument("--url")
    a = p.parse_args()
    if a.mode == "credentials":
        return write_credentials(a)
    if a.credentials:
        with open(a.credentials) as f:
            for rid, secret in json.load(f).get("routers", {}).items():
                SECRETS[rid] = base64.b64decode(secret)
        with open(a.credentials + ".token") as f:
            TOKEN[0] = f.read().strip()
    if a.mode == "hold":
        hold(a)
        return 0
    if a.mode == "check":
        return check(a)
    return get(a)


if __name__ == "__main__":
    sys.exit(main())
