#!/usr/bin/env python3
"""Idle memory per connection (issue 11, "A held connection costs almost nothing").

For each target server: start it (pinned to the server CPU), read its VmRSS, open N
idle connections that each complete the target's protocol (raw TCP: connected; HTTP:
one GET answered, then keep-alive; WebSocket: 101 with the right Sec-WebSocket-Accept;
hub router link: HELLO answered by WELCOME), wait --settle seconds, read VmRSS again,
then the server's CPU and context switches over --idle-cpu seconds. Per connection =
(after - before) / N. A target where any connection failed is reported as failed, not
as a figure.

Scale mode (--scale): one hub per face (/web, /app?routers=*, router links, and "mixed":
half router links, half /web in one hub) holds 5,000, 10,000, 19,000 connections; after
each step's idle measurement, a router link of this process sends one EVENT and every
subscriber must receive exactly that event once (timed from the send to the last
receipt, CLOCK_MONOTONIC), and 1,000 of the held router links get one command each
through POST /devices/{id}/commands (the router checks the body, the caller the REPLY).
A least-squares line over the steps gives KiB per connection and the projection to
100,000 and 1,000,000 links. The hub must exit 0 with a quiescent ledger on SIGTERM.

The connections are held by worker processes (this file with --worker), each below
its descriptor limit, pinned to the load CPU. Python 3 standard library only.

Run through scripts/idle-memory.sh (builds the demos and the anchors); see
Benchmarks/idle-memory/README.md.
"""

import argparse
import base64
import datetime
import errno
import hashlib
import json
import os
import platform
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time

# The idle links speak the router protocol's version 1 (HELLO, WELCOME: what idle
# memory is measured on), which the hub accepts only with --insecure-routers; the
# connect ramp opens thousands of links from one address at once, above the hub's
# default caps per source (unauthenticated router links, HTTP connections). The credential file goes to a
# temporary path, not the working directory: this script writes it (mode 0600) with
# the hash of a random API token that reads and commands every router, which the
# WebSocket subscribers and the command step send as `Authorization: Bearer`. The
# token reaches the client workers through the environment.
HUB_CREDENTIALS = "/tmp/torus-idle-memory-credentials-%d.json" % os.getpid()
HUB_TOKEN = os.environ.setdefault("TORUS_IDLE_MEMORY_TOKEN", "thk_" + os.urandom(24).hex())
HUB_AUTH_ARGS = ["--insecure-routers", "--max-unauthenticated", "1000000", "--max-http-connections-per-source", "0",
                 "--credentials", HUB_CREDENTIALS]


def write_hub_credentials():
    """The hub's credential file: no router secrets (the links are version 1), one token."""
    digest = hashlib.sha256(HUB_TOKEN.encode()).hexdigest()
    fd = os.open(HUB_CREDENTIALS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"routers": {}, "tokens": {digest: {"routers": "*", "rights": ["read", "command"]}}}, f)

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PER_WORKER_MAX = 9500
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
WORKER_SEQ = [0]  # numbers the client workers of a run (their source address)  # connections per client process (limit 20,000 fds, keep margin)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# --------------------------------------------------------------------------- worker

class Conn:
    __slots__ = ("sock", "fd", "state", "buf", "key", "t0", "ev", "ev_bad", "ev_seq")

    def __init__(self, sock):
        self.sock = sock
        self.fd = sock.fileno()
        self.state = "connecting"
        self.buf = b""
        self.key = None
        self.t0 = time.monotonic()


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def ws_frame(opcode, payload):
    """A masked client frame (payloads < 126 bytes: control frames only)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def parse_ws_frames(buf):
    """Yields (opcode, payload) of complete server frames; returns the rest."""
    frames = []
    while len(buf) >= 2:
        op = buf[0] & 0x0F
        n = buf[1] & 0x7F
        i = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = struct.unpack(">H", buf[2:4])[0]
            i = 4
        elif n == 127:
            if len(buf) < 10:
                break
            n = struct.unpack(">Q", buf[2:10])[0]
            i = 10
        if buf[1] & 0x80:  # a masked server frame: protocol error, treat as opaque
            i += 4
        if len(buf) < i + n:
            break
        frames.append((op, buf[i:i + n]))
        buf = buf[i + n:]
    return frames, buf


def run_worker(a):
    raise_nofile()
    if a.cpu is not None:
        try:
            os.sched_setaffinity(0, {a.cpu})
        except OSError:
            pass
    sel = selectors.EpollSelector()
    out = sys.stdout

    def say(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    addr = (a.host, a.port)
    proto = a.proto
    pending = list(range(a.count))
    pending.reverse()
    conns = {}
    done = []
    errors = {}
    failed = 0
    t_start = time.monotonic()
    deadline = t_start + a.connect_timeout

    def fail(c, why):
        nonlocal failed
        failed += 1
        errors[why] = errors.get(why, 0) + 1
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        conns.pop(c.fd, None)
        c.sock.close()

    def request_bytes(c, index):
        if proto == "http":
            return ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: keep-alive\r\n\r\n"
                    % (a.path, a.host, a.port)).encode()
        if proto in ("ws", "ws-hub"):
            c.key = base64.b64encode(os.urandom(16)).decode()
            auth = "Authorization: Bearer %s\r\n" % HUB_TOKEN if proto == "ws-hub" else ""
            return ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
                    % (a.path, a.host, a.port, c.key, auth)).encode()
        if proto == "router":
            rid = ("%s%d" % (a.id_prefix, index)).encode()
            c.key = rid  # the router id, for the commands' check
            return struct.pack(">IB", len(rid) + 1, 1) + rid  # HELLO: length, type 1, id
        return b""

    def established(c):
        c.state = "idle"
        c.buf = b""
        sel.modify(c.sock, selectors.EVENT_READ, c)
        done.append(c)

    def on_reply(c):
        """Checks the buffered answer; returns True when the connection is complete."""
        b = c.buf
        if proto == "router":
            if len(b) < 9:
                return False
            length, kind = struct.unpack(">IB", b[:5])
            if length == 5 and kind == 2:  # WELCOME: u32 heartbeat timeout (ms)
                c.buf = b[9:]
                return True
            raise ValueError("router: expected WELCOME, got type %d length %d" % (kind, length))
        end = b.find(b"\r\n\r\n")
        if end < 0:
            if len(b) > 65536:
                raise ValueError("header too long")
            return False
        head = b[:end].decode("latin-1").split("\r\n")
        status = head[0].split(" ")
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        rest = b[end + 4:]
        if proto == "http":
            if len(status) < 2 or status[1] != "200":
                raise ValueError("http status %s" % (status[1] if len(status) > 1 else "?"))
            n = int(headers.get("content-length", "0"))
            if len(rest) < n:
                return False
            return True
        if len(status) < 2 or status[1] != "101":
            raise ValueError("ws status %s" % (status[1] if len(status) > 1 else "?"))
        if headers.get("sec-websocket-accept") != ws_accept(c.key):
            raise ValueError("bad Sec-WebSocket-Accept")
        if proto == "ws-hub":  # the hub's faces send {"subscribed":[...]} first
            frames, _ = parse_ws_frames(rest)
            if not frames:
                return False
            if frames[0][0] != 1 or b"subscribed" not in frames[0][1]:
                raise ValueError("hub ws: unexpected first message")
        return True

    def start_one():
        index = pending.pop()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if a.src_ip:
            # Own source address per worker, port chosen at connect() for the 4-tuple:
            # each worker searches its own ephemeral port space (with one shared
            # address, connect() slows down sharply past ~14,000 ports in use).
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((a.src_ip, 0))
        c = Conn(s)
        c.key = index  # reused for the id until the request is built
        err = s.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            c.state = "x"
            failed_one = os.strerror(err)
            s.close()
            return failed_one
        conns[s.fileno()] = c
        sel.register(s, selectors.EVENT_WRITE, c)
        return None

    # ---- connect phase: at most --window connections connecting/handshaking at once
    in_flight = 0
    while (pending or in_flight) and time.monotonic() < deadline:
        while pending and in_flight < a.window:
            why = start_one()
            if why:
                failed += 1
                errors[why] = errors.get(why, 0) + 1
            else:
                in_flight += 1
        for key, mask in sel.select(timeout=0.5):
            c = key.data
            s = c.sock
            if c.state == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(c, "connect: " + os.strerror(err))
                    in_flight -= 1
                    continue
                if proto == "raw":
                    established(c)
                    in_flight -= 1
                    continue
                index = c.key
                req = request_bytes(c, index)
                try:
                    s.send(req)  # small: fits the empty send buffer
                except OSError as e:
                    fail(c, "send: " + e.strerror)
                    in_flight -= 1
                    continue
                c.state = "reply"
                sel.modify(s, selectors.EVENT_READ, c)
            elif c.state == "reply":
                try:
                    data = s.recv(65536)
                except OSError as e:
                    fail(c, "recv: " + e.strerror)
                    in_flight -= 1
                    continue
                if not data:
                    fail(c, "closed by server before the reply")
                    in_flight -= 1
                    continue
                c.buf += data
                try:
                    complete = on_reply(c)
                except ValueError as e:
                    fail(c, str(e))
                    in_flight -= 1
                    continue
                if complete:
                    established(c)
                    in_flight -= 1
    for c in list(conns.values()):
        if c.state != "idle":
            fail(c, "timeout (%s)" % c.state)
    elapsed = time.monotonic() - t_start
    say({"event": "connected", "ok": len(done), "failed": failed, "errors": errors,
         "seconds": round(elapsed, 3)})

    # ---- hold phase: read nothing unless the server sends; answer pings; count closes.
    # Commands on stdin (one line each, answered by one JSON line unless noted):
    #   check                 alive, closed, server messages, router commands answered
    #   expect ROUTER TOKEN   (ws-hub) wait for the event {"router":ROUTER,"data":TOKEN,...}
    #                         on every held connection; answers {"event":"delivered"} with
    #                         the monotonic time of the last receipt once all have it
    #   event-report          (ws-hub) per-connection tally of the expected event
    #   close                 close everything and exit
    # A router link answers each COMMAND with a REPLY "ack <id>" and checks that the
    # command's body is "scale-cmd <its id>".
    closed = 0
    events_seen = 0
    cmds_ok = cmds_bad = 0
    other_frames = 0
    alive = {c.sock.fileno(): c for c in done}
    for c in done:
        c.ev = 0      # expected events received
        c.ev_bad = 0  # other event messages received
        c.ev_seq = None
    expect = None     # (router, token)
    waiting = set()   # fds still to receive the expected event
    first_t = last_t = None
    stdin_fd = sys.stdin.fileno()
    stdin_buf = b""
    sel.register(stdin_fd, selectors.EVENT_READ, None)
    hold_end = time.monotonic() + a.max_hold
    stop = False

    def on_text(c, payload, now):
        nonlocal first_t, last_t
        try:
            msg = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            c.ev_bad += 1
            return
        if not isinstance(msg, dict) or "router" not in msg:
            return  # {"subscribed":...} and other answers
        if expect and msg.get("router") == expect[0] and msg.get("data") == expect[1]:
            c.ev += 1
            c.ev_seq = msg.get("seq")
            if c.fd in waiting:
                waiting.discard(c.fd)
                first_t = now if first_t is None else first_t
                last_t = now
                if not waiting:
                    say({"event": "delivered", "got": len(alive), "first": first_t, "last": last_t})
        else:
            c.ev_bad += 1

    def on_router_frames(c):
        nonlocal cmds_ok, cmds_bad, other_frames
        while len(c.buf) >= 5:
            length, kind = struct.unpack(">IB", c.buf[:5])
            if len(c.buf) < 4 + length:
                return
            payload = c.buf[5:4 + length]
            c.buf = c.buf[4 + length:]
            if kind == 5 and len(payload) >= 4:  # COMMAND: u32 request id, body
                body = payload[4:]
                if body == b"scale-cmd " + c.key:
                    cmds_ok += 1
                else:
                    cmds_bad += 1
                reply = payload[:4] + b"ack " + c.key
                try:
                    c.sock.send(struct.pack(">IB", len(reply) + 1, 6) + reply)  # REPLY
                except OSError:
                    cmds_bad += 1
            else:
                other_frames += 1

    def command(cmd):
        nonlocal stop, expect, waiting, first_t, last_t
        parts = cmd.split()
        if not parts:
            return
        if parts[0] == "check":
            say({"event": "check", "alive": len(alive), "closed": closed, "server_messages": events_seen,
                 "commands_ok": cmds_ok, "commands_bad": cmds_bad, "other_frames": other_frames})
        elif parts[0] == "expect" and len(parts) == 3:
            expect = (parts[1], parts[2])
            say({"event": "expecting"})
            for c in alive.values():
                c.ev = c.ev_bad = 0
                c.ev_seq = None
            waiting = set(alive)
            first_t = last_t = None
            if not waiting:
                say({"event": "delivered", "got": 0, "first": None, "last": None})
        elif parts[0] == "event-report":
            once = sum(1 for c in alive.values() if c.ev == 1 and c.ev_bad == 0)
            say({"event": "event-report", "alive": len(alive), "exactly_once": once,
                 "none": sum(1 for c in alive.values() if c.ev == 0),
                 "duplicate": sum(1 for c in alive.values() if c.ev > 1),
                 "other": sum(1 for c in alive.values() if c.ev_bad),
                 "seqs": sorted({c.ev_seq for c in alive.values() if c.ev_seq is not None})[:5],
                 "first": first_t, "last": last_t})
        elif parts[0] == "close":
            stop = True

    while not stop and time.monotonic() < hold_end:
        events = sel.select(timeout=1.0)
        now = time.monotonic()
        for key, mask in events:
            if key.data is None:
                chunk = os.read(stdin_fd, 4096)
                if not chunk:
                    stop = True
                    continue
                stdin_buf += chunk
                while b"\n" in stdin_buf:
                    line, stdin_buf = stdin_buf.split(b"\n", 1)
                    command(line.decode().strip())
                continue
            c = key.data
            try:
                data = c.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                closed += 1
                sel.unregister(c.sock)
                alive.pop(c.sock.fileno(), None)
                waiting.discard(c.fd)
                c.sock.close()
                continue
            events_seen += 1
            c.buf += data
            if proto in ("ws", "ws-hub"):
                frames, c.buf = parse_ws_frames(c.buf)
                for op, payload in frames:
                    if op == 9:  # ping -> pong
                        try:
                            c.sock.send(ws_frame(10, payload))
                        except OSError:
                            pass
                    elif op == 1 and proto == "ws-hub":
                        on_text(c, payload, now)
            elif proto == "router":
                on_router_frames(c)
            else:
                c.buf = b""
    for c in alive.values():
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
    say({"event": "closed", "alive_at_end": len(alive), "closed": closed})


# --------------------------------------------------------------------------- /proc

def proc_tree(root):
    """PIDs of root and its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            ppid = int(s[s.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def status_fields(pid):
    r = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                    r[k] = int(v.split()[0])  # kB
    except OSError:
        pass
    return r


def tree_memory(root):
    tot = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "RssShmem": 0}
    for p in proc_tree(root):
        f = status_fields(p)
        for k in tot:
            tot[k] += f.get(k, 0)
    return tot


def tree_cpu(root):
    """(utime+stime ticks, {tid: context switches}) over the tree's processes and threads."""
    ticks = 0
    switches = {}
    for p in proc_tree(root):
        try:
            with open("/proc/%d/stat" % p) as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError):
            continue
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except OSError:
            tasks = []
        for t in tasks:
            n = 0
            try:
                with open("/proc/%d/task/%s/status" % (p, t)) as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            n += int(line.split()[1])
            except OSError:
                continue
            switches[int(t)] = n
    return ticks, switches


def switches_between(before, after):
    """Context switches between two samples: threads that ended are left out, new ones count whole."""
    return sum(n - before.get(t, 0) for t, n in after.items())


def kernel_slab_kib():
    """Slab (reclaimable + unreclaimable) from /proc/meminfo: socket structures live here."""
    v = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(("SReclaimable:", "SUnreclaim:")):
                v += int(line.split()[1])
    return v


def tree_fds(root):
    n = 0
    for p in proc_tree(root):
        try:
            n += len(os.listdir("/proc/%d/fd" % p))
        except OSError:
            pass
    return n


def sockstat_tcp():
    """TCP line of /proc/net/sockstat: inuse, orphan, tw, alloc, mem (pages)."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                p = line.split()[1:]
                return {p[i]: int(p[i + 1]) for i in range(0, len(p) - 1, 2)}
    return {}


PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# --------------------------------------------------------------------------- targets

def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Ports:
    def __init__(self, base):
        self.next = base

    def take(self):
        while not port_free(self.next):
            self.next += 1
        p = self.next
        self.next += 1
        return p


NGINX_CONF = """worker_processes 1;
pid nginx.pid;
error_log error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 30000; }}
http {{
    access_log off;
    sendfile off;
    tcp_nodelay on;
    keepalive_timeout 650;
    keepalive_requests 100000000;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        default_type text/plain;
        location /plaintext {{ return 200 "Hello, World!"; }}
    }}
}}
"""


def target_specs(a):
    """name -> dict(kind, proto, path, make(ports, workdir) -> (argv, connect_port, ready_line))."""
    b = a.bin_dir
    t = str(a.threads)
    anchors = a.anchors_dir
    # Timers that would fire during the measurement are moved out of its window (the
    # per-connection timers stay armed, only longer): WebSocket pings (torus-ws 30 s,
    # hub 15 s) and the hub's router heartbeat timeout (30 s). A held link is idle.
    specs = {
        "torus-echo": dict(kind="torus", proto="raw", label="raw TCP",
                           exe=os.path.join(b, "torus-echo"),
                           argv=lambda p: ["--port", str(p[0]), "--threads", t]),
        "torus-http": dict(kind="torus", proto="http", path="/plaintext", label="HTTP keep-alive",
                           exe=os.path.join(b, "torus-http"),
                           argv=lambda p: ["--port", str(p[0]), "--threads", t]),
        "torus-ws": dict(kind="torus", proto="ws", path="/", label="WebSocket",
                         exe=os.path.join(b, "torus-ws"),
                         argv=lambda p: ["--port", str(p[0]), "--threads", t, "--ping-interval", "3600"]),
        "torus-hub": dict(kind="torus", proto="router", label="router link", nports=2, connect=1,
                          exe=os.path.join(b, "torus-hub"),
                          argv=lambda p: ["--http-port", str(p[0]), "--router-port", str(p[1]), "--threads", t,
                                          "--heartbeat-timeout", "3600", "--ws-ping-interval", "3600"] + HUB_AUTH_ARGS),
        "torus-hub-app": dict(kind="torus", proto="ws-hub", path="/app?routers=*", label="WebSocket (hub /app)",
                              nports=2, connect=0, exe=os.path.join(b, "torus-hub"),
                              argv=lambda p: ["--http-port", str(p[0]), "--router-port", str(p[1]),
                                              "--threads", t, "--heartbeat-timeout", "3600",
                                              "--ws-ping-interval", "3600"] + HUB_AUTH_ARGS),
        "torus-hub-web": dict(kind="torus", proto="ws-hub", path="/web", label="WebSocket (hub /web)",
                              nports=2, connect=0, exe=os.path.join(b, "torus-hub"),
                              argv=lambda p: ["--http-port", str(p[0]), "--router-port", str(p[1]),
                                              "--threads", t, "--heartbeat-timeout", "3600",
                                              "--ws-ping-interval", "3600"] + HUB_AUTH_ARGS),
        # The gateway as deployed: router links and /web subscribers in one hub, half each.
        "torus-hub-mixed": dict(kind="torus", proto="mixed", label="mixed: ½ router links + ½ /web",
                                nports=2, exe=os.path.join(b, "torus-hub"),
                                parts=[("router", None, 1, 0.5), ("ws-hub", "/web", 0, 0.5)],
                                argv=lambda p: ["--http-port", str(p[0]), "--router-port", str(p[1]),
                                                "--threads", t, "--heartbeat-timeout", "3600",
                                                "--ws-ping-interval", "3600"] + HUB_AUTH_ARGS),
        "nginx": dict(kind="anchor", proto="http", path="/plaintext", label="HTTP keep-alive",
                      exe=a.nginx, nginx=True, argv=None),
        "c-uring-echo": dict(kind="anchor", proto="raw", label="raw TCP",
                             exe=os.path.join(anchors, "bin", "c-uring"),
                             argv=lambda p: ["echo", "--port", str(p[0])]),
        "c-uring-http": dict(kind="anchor", proto="http", path="/plaintext", label="HTTP keep-alive",
                             exe=os.path.join(anchors, "bin", "c-uring"),
                             argv=lambda p: ["http", "--port", str(p[0])]),
        "c-uring-ws": dict(kind="anchor", proto="ws", path="/", label="WebSocket",
                           exe=os.path.join(anchors, "bin", "c-uring"),
                           argv=lambda p: ["ws", "--port", str(p[0])]),
    }
    for n, proto, label, path in (("echo", "raw", "raw TCP", None), ("http", "http", "HTTP keep-alive", "/plaintext"),
                                  ("ws", "ws", "WebSocket", "/")):
        specs["nio-" + n] = dict(kind="anchor", proto=proto, path=path, label=label,
                                 exe=os.path.join(a.nio_bin, "nio-" + n) if a.nio_bin else "",
                                 argv=lambda p: ["--port", str(p[0]), "--threads", "1"])
    return specs


DEFAULT_TARGETS = ("torus-echo,c-uring-echo,torus-http,nginx,c-uring-http,"
                   "torus-ws,nio-ws,c-uring-ws,torus-hub")


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class Server:
    def __init__(self, name, spec, ports, workdir, a):
        self.name = name
        self.spec = spec
        self.ports = ports
        os.makedirs(workdir, exist_ok=True)
        self.out_path = os.path.join(workdir, name + ".stdout")
        self.err_path = os.path.join(workdir, name + ".stderr")
        if spec.get("nginx"):
            d = os.path.join(workdir, "nginx-" + str(ports[0]))
            os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
            with open(os.path.join(d, "nginx.conf"), "w") as f:
                f.write(NGINX_CONF.format(port=ports[0]))
            argv = [spec["exe"], "-p", d + "/", "-c", "nginx.conf", "-e", "error.log", "-g", "daemon off;"]
        else:
            argv = [spec["exe"]] + spec["argv"](ports)
        if a.server_cpu is not None:
            argv = ["taskset", "-c", str(a.server_cpu)] + argv
        self.argv = argv
        self.out = open(self.out_path, "w")
        self.err = open(self.err_path, "w")
        # taskset execs the server: the PID is the server's.
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL,
                                     preexec_fn=raise_nofile)
        self.pid = self.proc.pid

    def wait_ready(self, timeout):
        """Torus demos: every 'listening on' line (one per face). Others: the port accepts."""
        end = time.monotonic() + timeout
        want = len(self.ports) if self.spec["kind"] == "torus" else 0
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return "exited with %s before it was ready" % self.proc.returncode
            if want:
                with open(self.out_path) as f:
                    n = sum(1 for line in f if line.startswith("listening on "))
                if n >= want:
                    return None
            else:
                s = socket.socket()
                s.settimeout(0.5)
                try:
                    s.connect(("127.0.0.1", self.ports[-1 if self.spec.get("connect", 0) else 0]))
                    s.close()
                    return None
                except OSError:
                    s.close()
            time.sleep(0.1)
        return "not ready within %ds" % timeout

    def stop(self, timeout=25):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log("%s: no exit %ds after SIGTERM; SIGKILL" % (self.name, timeout))
                for p in reversed(proc_tree(self.pid)):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                self.proc.wait(10)
                self.out.close()
                self.err.close()
                return "killed"
        self.out.close()
        self.err.close()
        return self.proc.returncode

    def ledger_line(self):
        try:
            with open(self.out_path) as f:
                lines = [line.strip() for line in f if line.strip().startswith("ledger")]
            return lines[-1] if lines else ""
        except OSError:
            return ""


class Clients:
    """Worker processes that open and hold the connections of one kind (one face)."""

    def __init__(self, a, port, proto, path, count, id_prefix="r"):
        self.procs = []
        self.proto = proto
        self.ids = []  # router links: (id prefix, count) per worker; ids are prefix + 0..count-1
        self.bufs = {}
        nworkers = max(1, -(-count // a.per_worker))
        per = [count // nworkers + (1 if i < count % nworkers else 0) for i in range(nworkers)]
        for i, n in enumerate(per):
            prefix = "%s%d-" % (id_prefix, i)
            argv = [sys.executable, os.path.abspath(__file__), "--worker", "--host", "127.0.0.1",
                    "--port", str(port), "--proto", proto, "--path", path or "/", "--count", str(n),
                    "--window", str(a.window), "--connect-timeout", str(a.connect_timeout),
                    "--max-hold", str(a.max_hold), "--id-prefix", prefix]
            if a.load_cpu is not None:
                argv += ["--cpu", str(a.load_cpu)]
            if not a.no_src_ips:
                WORKER_SEQ[0] += 1
                argv += ["--src-ip", "127.0.%d.%d" % (1 + WORKER_SEQ[0] // 250, 1 + WORKER_SEQ[0] % 250)]
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
            self.procs.append(p)
            self.bufs[p.pid] = b""
            self.ids.append((prefix, n))

    def _read(self, p, timeout, want=None):
        """The worker's next JSON line (of event `want` when given; others are skipped)."""
        end = time.monotonic() + timeout
        fd = p.stdout.fileno()
        while True:
            buf = self.bufs[p.pid]
            if b"\n" in buf:
                line, self.bufs[p.pid] = buf.split(b"\n", 1)
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if want is None or r.get("event") == want:
                    return r
                continue
            left = end - time.monotonic()
            if left <= 0:
                return None
            sel = selectors.DefaultSelector()
            sel.register(fd, selectors.EVENT_READ)
            try:
                ready = sel.select(left)
            finally:
                sel.close()
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.bufs[p.pid] += chunk

    def _send(self, line):
        for p in self.procs:
            try:
                p.stdin.write(line.encode() + b"\n")
                p.stdin.flush()
            except OSError:
                pass

    def connected(self, timeout):
        ok = failed = 0
        errors = {}
        secs = 0.0
        for p in self.procs:
            r = self._read(p, timeout, "connected")
            if r is None:
                failed += 1
                errors["client worker gave no answer"] = errors.get("client worker gave no answer", 0) + 1
                continue
            ok += r["ok"]
            failed += r["failed"]
            secs = max(secs, r["seconds"])
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        return ok, failed, errors, secs

    def check(self):
        """(alive, closed, server messages, router commands answered well, badly)."""
        alive = closed = msgs = cok = cbad = 0
        self._send("check")
        for p in self.procs:
            r = self._read(p, 30, "check")
            if r:
                alive += r["alive"]
                closed += r["closed"]
                msgs += r["server_messages"]
                cok += r.get("commands_ok", 0)
                cbad += r.get("commands_bad", 0) + r.get("other_frames", 0)
        return alive, closed, msgs, cok, cbad

    def expect(self, router, token):
        """Arms every worker; True when all of them acknowledged."""
        self._send("expect %s %s" % (router, token))
        return all(self._read(p, 30, "expecting") is not None for p in self.procs)

    def delivered(self, timeout):
        """Monotonic times of each worker's last receipt (None: not all of its connections got it)."""
        return [(r or {}).get("last") for r in (self._read(p, timeout, "delivered") for p in self.procs)]

    def event_report(self):
        self._send("event-report")
        tot = {"alive": 0, "exactly_once": 0, "none": 0, "duplicate": 0, "other": 0, "seqs": set(), "answers": 0,
               "firsts": []}
        for p in self.procs:
            r = self._read(p, 30, "event-report")
            if not r:
                continue
            tot["answers"] += 1
            tot["firsts"].append(r["first"])
            for k in ("alive", "exactly_once", "none", "duplicate", "other"):
                tot[k] += r[k]
            tot["seqs"].update(r["seqs"])
        return tot

    def router_ids(self):
        return ["%s%d" % (prefix, i) for prefix, n in self.ids for i in range(n)]

    def close(self):
        self._send("close")
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Publisher:
    """One router link held by this process: it publishes the broadcast event as an EVENT
    frame, the way a router's events reach every /web (and /app "*") subscriber."""

    def __init__(self, port, rid="scale-pub"):
        self.rid = rid
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(struct.pack(">IB", len(rid) + 1, 1) + rid.encode())  # HELLO
        b = b""
        while len(b) < 9:
            chunk = self.sock.recv(64)
            if not chunk:
                raise OSError("publisher: closed before WELCOME")
            b += chunk
        if struct.unpack(">IB", b[:5]) != (5, 2):
            raise OSError("publisher: expected WELCOME")

    def publish(self, token):
        payload = token.encode()
        self.sock.sendall(struct.pack(">IB", len(payload) + 1, 4) + payload)  # EVENT

    def close(self):
        try:
            self.sock.sendall(struct.pack(">IB", 1, 7))  # BYE
        except OSError:
            pass
        self.sock.close()


class PeakRSS:
    """Peak VmRSS of a process over a window: resets VmHWM (clear_refs 5) at the start and
    also samples VmRSS every few milliseconds in a thread (in case the reset is refused)."""

    def __init__(self, pid):
        import threading
        self.pid = pid
        self.peak = 0
        self.reset = False
        try:
            with open("/proc/%d/clear_refs" % pid, "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            pass
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set():
            self.peak = max(self.peak, status_fields(self.pid).get("VmRSS", 0))
            self.stopped.wait(0.003)

    def stop(self):
        self.stopped.set()
        self.thread.join()
        f = status_fields(self.pid)
        if self.reset:
            self.peak = max(self.peak, f.get("VmHWM", 0))
        return max(self.peak, f.get("VmRSS", 0))


def send_commands(http_port, ids, concurrency, timeout_ms=10000):
    """POSTs one command to each router id through the hub's HTTP API with `concurrency`
    keep-alive connections; returns (seconds, ok, failures by cause, latencies in s)."""
    import concurrent.futures
    import http.client
    import threading
    local = threading.local()

    def one(rid):
        t = time.monotonic()
        for attempt in (0, 1):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
            try:
                conn.request("POST", "/devices/%s/commands?timeout=%d" % (rid, timeout_ms),
                             body=("scale-cmd " + rid).encode(),
                             headers={"Content-Type": "text/plain", "Authorization": "Bearer " + HUB_TOKEN})
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                local.conn = None
                if attempt == 0 and isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError)):
                    continue  # the keep-alive connection was closed under us: once more, fresh
                return "error: %s" % type(e).__name__, time.monotonic() - t
            if resp.status != 200:
                return "status %d" % resp.status, time.monotonic() - t
            if body != ("ack " + rid).encode():
                return "wrong reply", time.monotonic() - t
            return None, time.monotonic() - t
        return "error: retries", time.monotonic() - t

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as ex:
        results = list(ex.map(one, ids))
    secs = time.monotonic() - t0
    fails = {}
    for why, _ in results:
        if why:
            fails[why] = fails.get(why, 0) + 1
    lat = sorted(d for _, d in results)
    return secs, len(ids) - sum(fails.values()), fails, lat


def spread(items, n):
    """n items evenly spread over the list (all of them when it is shorter)."""
    if len(items) <= n:
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def kib(x):
    return round(x, 2)


def face_parts(spec):
    """The kinds of connection a target holds: (proto, path, index of the port, share)."""
    return spec.get("parts") or [(spec["proto"], spec.get("path"), spec.get("connect", 0), 1.0)]


def broadcast_step(srv, pub, ws_clients, n_ws, count, a, r, problems):
    """One event through the publisher link to every held WebSocket subscriber."""
    token = "scale-%d-%s" % (count, os.urandom(4).hex())
    if not all(cl.expect(pub.rid, token) for cl in ws_clients):
        problems.append("a client worker did not arm for the broadcast")
        return
    peak = PeakRSS(srv.pid)
    cpu0 = tree_cpu(srv.pid)[0]
    t0 = time.monotonic()
    pub.publish(token)
    lasts = []
    for cl in ws_clients:
        lasts.extend(cl.delivered(a.deliver_timeout))
    cpu1 = tree_cpu(srv.pid)[0]
    peak_kib = peak.stop()
    time.sleep(0.5)  # anything after the event (a duplicate) arrives by now
    rep = {"alive": 0, "exactly_once": 0, "none": 0, "duplicate": 0, "other": 0, "seqs": set(), "answers": 0,
           "firsts": []}
    for cl in ws_clients:
        t = cl.event_report()
        for k in rep:
            rep[k] = rep[k] | t[k] if k == "seqs" else rep[k] + t[k]
    r["broadcast_subscribers"] = n_ws
    r["broadcast_received"] = rep["exactly_once"]
    r["broadcast_peak_rss_kib"] = peak_kib
    r["broadcast_peak_source"] = "VmHWM reset + 3 ms samples" if peak.reset else "3 ms samples"
    r["broadcast_hub_cpu_ms"] = round(1000.0 * (cpu1 - cpu0) / CLK_TCK)
    firsts = [x for x in rep["firsts"] if x is not None]
    if firsts:
        r["broadcast_first_s"] = round(min(firsts) - t0, 4)
    if all(x is not None for x in lasts) and lasts:
        r["broadcast_s"] = round(max(lasts) - t0, 4)
    else:
        problems.append("broadcast: %d worker(s) did not see it on every connection within %ss" % (
            sum(1 for x in lasts if x is None), a.deliver_timeout))
    if rep["exactly_once"] != n_ws or rep["duplicate"] or rep["other"] or len(rep["seqs"]) != 1:
        problems.append("broadcast: %d of %d got exactly the event once (none %d, duplicate %d, other messages %d, "
                        "seqs %s)" % (rep["exactly_once"], n_ws, rep["none"], rep["duplicate"], rep["other"],
                                      sorted(rep["seqs"])))
    log("%s: broadcast to %d subscribers: first receipt after %s s, last after %s s, %d exactly once, "
        "hub CPU %d ms, peak VmRSS %d KiB" % (srv.name, n_ws, r.get("broadcast_first_s"), r.get("broadcast_s"),
                                             rep["exactly_once"], r["broadcast_hub_cpu_ms"], peak_kib))


def commands_step(srv, http_port, router_clients, a, r, problems):
    """One command to each of a.commands routers (spread over the held links) via the HTTP API."""
    ids = spread([i for cl in router_clients for i in cl.router_ids()], a.commands)
    before = [cl.check() for cl in router_clients]
    secs, ok, fails, lat = send_commands(http_port, ids, a.command_concurrency)
    after = [cl.check() for cl in router_clients]
    got = sum(x[3] for x in after) - sum(x[3] for x in before)
    bad = sum(x[4] for x in after) - sum(x[4] for x in before)
    r.update({"commands": len(ids), "commands_ok": ok, "commands_s": round(secs, 3),
              "commands_routers_got": got, "command_p50_ms": round(1000 * lat[len(lat) // 2], 2) if lat else None,
              "command_p99_ms": round(1000 * lat[min(len(lat) - 1, (len(lat) * 99) // 100)], 2) if lat else None,
              "command_concurrency": a.command_concurrency})
    if ok != len(ids) or got != len(ids) or bad:
        problems.append("commands: %d of %d answered right, routers got %d right and %d wrong%s" % (
            ok, len(ids), got, bad, (" (" + ", ".join("%s: %d" % kv for kv in sorted(fails.items())) + ")")
            if fails else ""))
    log("%s: %d commands (%d at once) in %.2f s, %d ok, routers got %d" % (
        srv.name, len(ids), a.command_concurrency, secs, ok, got))


def measure(name, spec, a, ports_alloc, workdir, counts):
    """Runs one target; counts: list of connection counts (one step each, cumulative)."""
    res = {"target": name, "face": spec["label"], "conns": counts[-1], "status": "ok"}
    exe = spec["exe"]
    if a.skip_shared_anchors and name.startswith(("c-uring", "nio")):
        res["status"] = "skipped: " + a.skip_shared_anchors
        return [res]
    if not exe or not os.path.isfile(exe) or not os.access(exe, os.X_OK):
        res["status"] = "skipped: %s not found" % (exe or name)
        return [res]
    ports = [ports_alloc.take() for _ in range(spec.get("nports", 1))]
    srv = Server(name, spec, ports, workdir, a)
    res["command"] = " ".join(srv.argv)
    parts = face_parts(spec)
    steps = []
    clients = []  # (proto, Clients)
    pub = None
    try:
        why = srv.wait_ready(a.start_timeout)
        if why:
            res["status"] = "FAILED: server " + why
            return [res]
        # Scale mode on the hub: one router link of this process publishes the broadcast.
        if a.scale and spec["kind"] == "torus" and any(p[0] == "ws-hub" for p in parts) and a.broadcast:
            pub = Publisher(ports[1])
        time.sleep(1.0)  # let the start-up allocations finish
        mem0 = tree_memory(srv.pid)
        sock0 = sockstat_tcp()
        slab0 = kernel_slab_kib()
        fds0 = tree_fds(srv.pid)
        log("%s: pid %d, ports %s, VmRSS %d KiB, %d fds" % (name, srv.pid, ports, mem0["VmRSS"], fds0))
        held = [0] * len(parts)
        connect_total = 0.0
        for step, count in enumerate(counts):
            r = dict(res)
            t0 = time.monotonic()
            started = []
            for k, (proto, path, connect, share) in enumerate(parts):
                want = count - sum(int(count * p[3]) for p in parts[1:]) if k == 0 else int(count * share)
                cl = Clients(a, ports[connect], proto, path, want - held[k], id_prefix="r%d-%d-" % (step, k))
                clients.append((proto, cl))
                started.append((k, cl))
            failed = 0
            errors = {}
            for k, cl in started:
                ok, f, e, _ = cl.connected(a.connect_timeout + 30)
                held[k] += ok
                failed += f
                for key, v in e.items():
                    errors[key] = errors.get(key, 0) + v
            t_conn = time.monotonic() - t0
            connect_total += t_conn
            r["conns"] = count
            r["connect_s"] = round(t_conn, 2)
            r["connect_total_s"] = round(connect_total, 2)
            r["held_by_kind"] = {parts[k][0] + (parts[k][1] or ""): held[k] for k in range(len(parts))}
            time.sleep(a.settle)
            mem1 = tree_memory(srv.pid)
            sock1 = sockstat_tcp()
            slab1 = kernel_slab_kib()
            fds1 = tree_fds(srv.pid)
            c0 = tree_cpu(srv.pid)
            w0 = time.monotonic()
            time.sleep(a.idle_cpu)
            c1 = tree_cpu(srv.pid)
            w1 = time.monotonic()
            alive = sum(cl2.check()[0] for _, cl2 in clients)
            n = count
            r.update({
                "rss_before_kib": mem0["VmRSS"], "rss_after_kib": mem1["VmRSS"],
                "rss_per_conn_kib": kib((mem1["VmRSS"] - mem0["VmRSS"]) / n),
                "anon_before_kib": mem0["RssAnon"], "anon_after_kib": mem1["RssAnon"],
                "anon_per_conn_kib": kib((mem1["RssAnon"] - mem0["RssAnon"]) / n),
                "sockstat_mem_pages_before": sock0.get("mem"), "sockstat_mem_pages_after": sock1.get("mem"),
                "sockstat_kib_per_conn": kib(((sock1.get("mem", 0) - sock0.get("mem", 0)) * PAGE_KIB) / n),
                "tcp_inuse_before": sock0.get("inuse"), "tcp_inuse_after": sock1.get("inuse"),
                "server_fds_before": fds0, "server_fds_after": fds1,
                "idle_cpu_pct": round(100.0 * (c1[0] - c0[0]) / CLK_TCK / (w1 - w0), 2),
                "idle_wakeups_per_s": round(switches_between(c0[1], c1[1]) / (w1 - w0), 1),
                "slab_before_kib": slab0, "slab_after_kib": slab1,
                "slab_kib_per_conn": kib((slab1 - slab0) / n),
                "connect_failures": failed, "connect_errors": errors, "alive_at_end": alive,
            })
            problems = []
            if failed:
                problems.append("%d connections failed (%s)" % (
                    failed, ", ".join("%s: %d" % kv for kv in sorted(errors.items()))))
            if alive != n:
                problems.append("%d of %d connections alive after the idle window" % (alive, n))
            if fds1 - fds0 < n:
                problems.append("server holds %d new fds, expected >= %d" % (fds1 - fds0, n))
            if a.max_kib_per_conn and r["rss_per_conn_kib"] > a.max_kib_per_conn:
                problems.append("%.2f KiB/conn is above the bound %.2f" % (r["rss_per_conn_kib"], a.max_kib_per_conn))
            log("%s: %d conns in %.1fs, VmRSS %d -> %d KiB = %.2f KiB/conn (anon %.2f), "
                "sockstat mem %s -> %s pages, idle CPU %.2f%%, %.1f wakeups/s" % (
                    name, n, t_conn, mem0["VmRSS"], mem1["VmRSS"], r["rss_per_conn_kib"],
                    r["anon_per_conn_kib"], sock0.get("mem"), sock1.get("mem"), r["idle_cpu_pct"],
                    r["idle_wakeups_per_s"]))
            if a.scale and not failed and srv.proc.poll() is None:
                ws_clients = [cl for proto, cl in clients if proto == "ws-hub"]
                router_clients = [cl for proto, cl in clients if proto == "router"]
                if pub and ws_clients:
                    n_ws = sum(h for h, p in zip(held, parts) if p[0] == "ws-hub")
                    broadcast_step(srv, pub, ws_clients, n_ws, count, a, r, problems)
                if router_clients and a.commands > 0:
                    commands_step(srv, ports[0], router_clients, a, r, problems)
                r["rss_after_ops_kib"] = tree_memory(srv.pid)["VmRSS"]
            if srv.proc.poll() is not None:
                problems.append("server exited (%s)" % srv.proc.returncode)
            if problems:
                r["status"] = "FAILED: " + "; ".join(problems)
            log("%s: %d held: %s" % (name, n, r["status"]))
            steps.append(r)
            if failed or srv.proc.poll() is not None:
                break
        return steps
    finally:
        for _, cl in clients:
            cl.close()
        if pub:
            pub.close()
        # Let the server see the closes before it is stopped (bounded).
        end = time.monotonic() + 15
        base = locals().get("fds0")
        while base is not None and srv.proc.poll() is None and time.monotonic() < end:
            if tree_fds(srv.pid) <= base + 2:
                break
            time.sleep(0.2)
        rc = srv.stop()
        ledger = srv.ledger_line()
        for r in steps or [res]:
            r["exit"] = rc
            if ledger:
                r["ledger"] = ledger[:200]
            if spec["kind"] == "torus" and (rc != 0 or not ledger.startswith("ledger: quiescent")):
                why = "hub exit %s after SIGTERM, ledger: %s" % (rc, ledger[:120] or "none printed")
                r["status"] = why if r["status"] == "ok" else r["status"] + "; " + why
                if not r["status"].startswith("FAILED"):
                    r["status"] = "FAILED: " + r["status"]
        if spec["kind"] == "torus" and rc != 0:
            log("%s: exit status %s (not quiescent?) %s" % (name, rc, ledger))


def fmt(v, d=2):
    if v is None:
        return ""
    if isinstance(v, float):
        return ("%." + str(d) + "f") % v
    return str(v)


def markdown(results, meta):
    lines = ["Idle connections: %s; %s; server pinned to CPU %s, clients on CPU %s; settle %ss, idle CPU over %ss." % (
        meta["date"], meta["machine"], meta["server_cpu"], meta["load_cpu"], meta["settle_s"], meta["idle_cpu_s"]), ""]
    lines.append("| target | face | conns | VmRSS before KiB | after KiB | **KiB/conn** | RssAnon KiB/conn "
                 "| sockstat TCP mem pages before→after | kernel slab KiB/conn | connect s | idle CPU % | wakeups/s "
                 "| exit | status |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        ok = r["status"] == "ok"
        per = "**%s**" % fmt(r.get("rss_per_conn_kib")) if ok else "—"
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["target"], r["face"], r.get("conns", ""), fmt(r.get("rss_before_kib")), fmt(r.get("rss_after_kib")),
            per, fmt(r.get("anon_per_conn_kib")) if ok else "—",
            ("%s→%s" % (r.get("sockstat_mem_pages_before"), r.get("sockstat_mem_pages_after")))
            if "sockstat_mem_pages_before" in r else "",
            fmt(r.get("slab_kib_per_conn")) if ok else "—", fmt(r.get("connect_s")),
            fmt(r.get("idle_cpu_pct")), fmt(r.get("idle_wakeups_per_s"), 1), fmt(r.get("exit")),
            r["status"].replace("|", "/")))
    return "\n".join(lines) + "\n"


def fit_line(points):
    """Least squares y = slope * x + intercept; returns (slope, intercept, max |residual|, x, y of it)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    icpt = my - slope * mx
    worst = max(points, key=lambda p: abs(p[1] - (slope * p[0] + icpt)))
    return slope, icpt, abs(worst[1] - (slope * worst[0] + icpt)), worst


def read_int(path, default=None):
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return default


def host_limits():
    """The limits that bound how many links one node holds."""
    lo_hi = read_int("/proc/sys/net/ipv4/ip_local_port_range", [32768, 60999])
    mem_total = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1])
    return {"nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            "nr_open": (read_int("/proc/sys/fs/nr_open") or [None])[0],
            "file_max": (read_int("/proc/sys/fs/file-max") or [None])[0],
            "ports_per_client_address": lo_hi[1] - lo_hi[0] + 1, "port_range": lo_hi,
            "tcp_mem_pages": read_int("/proc/sys/net/ipv4/tcp_mem"), "mem_total_kib": mem_total}


def linearity(results):
    """Per target: the least-squares line of VmRSS, kernel slab and sockstat memory against
    connections held, over its ok steps (at least two)."""
    out = []
    by = {}
    for r in results:
        if r["status"] == "ok" and "rss_after_kib" in r:
            by.setdefault(r["target"], []).append(r)
    for name, rows in by.items():
        if len(rows) < 2:
            continue
        rss = fit_line([(r["conns"], float(r["rss_after_kib"])) for r in rows])
        anon = fit_line([(r["conns"], float(r["anon_after_kib"])) for r in rows])
        slab = fit_line([(r["conns"], float(r["slab_after_kib"] - r["slab_before_kib"])) for r in rows])
        sock = fit_line([(r["conns"], float((r["sockstat_mem_pages_after"] or 0) * PAGE_KIB)) for r in rows])
        cpu = fit_line([(r["conns"], float(r["idle_cpu_pct"])) for r in rows])
        out.append({"target": name, "face": rows[0]["face"], "points": [r["conns"] for r in rows],
                    "rss_slope_kib": round(rss[0], 3), "rss_intercept_kib": round(rss[1], 1),
                    "rss_max_dev_kib": round(rss[2], 1), "rss_max_dev_at": rss[3][0],
                    "rss_max_dev_pct": round(100.0 * rss[2] / rss[3][1], 2) if rss[3][1] else None,
                    "anon_slope_kib": round(anon[0], 3), "slab_slope_kib": round(slab[0], 3),
                    "slab_max_dev_kib": round(slab[2], 1), "sockstat_slope_kib": round(sock[0], 4),
                    "idle_cpu_slope_pct_per_10k": round(cpu[0] * 10000, 3),
                    "projection": {str(n): {"rss_mib": round((rss[1] + rss[0] * n) / 1024.0, 1),
                                            "slab_mib": round(slab[0] * n / 1024.0, 1),
                                            "idle_cpu_pct": round(cpu[1] + cpu[0] * n, 1)}
                                   for n in (100000, 1000000)}})
    return out


def markdown_scale(results, meta):
    lines = ["Hub scale: %s; %s; hub with --threads %s pinned to CPU %s, clients on CPU %s (several processes); "
             "settle %ss, idle CPU over %ss. Each row adds connections to those already held." % (
                 meta["date"], meta["machine"], meta["threads"], meta["server_cpu"], meta["load_cpu"],
                 meta["settle_s"], meta["idle_cpu_s"]), ""]
    lines.append("| face | held | VmRSS MiB | RssAnon MiB | KiB/conn (since start) | server fds "
                 "| sockstat TCP mem pages | kernel slab Δ MiB | connect s (this step / all) | idle CPU % | wakeups/s "
                 "| exit | status |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        ok = r["status"] == "ok"
        mib = lambda k: fmt(r[k] / 1024.0, 1) if k in r else ""
        slab = fmt((r["slab_after_kib"] - r["slab_before_kib"]) / 1024.0, 1) if "slab_after_kib" in r else ""
        lines.append("| %s (%s) | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s |" % (
            r["face"], r["target"], r.get("conns", ""), mib("rss_after_kib"), mib("anon_after_kib"),
            ("**%s**" % fmt(r.get("rss_per_conn_kib"))) if ok else "—", fmt(r.get("server_fds_after")),
            fmt(r.get("sockstat_mem_pages_after")), slab, fmt(r.get("connect_s")), fmt(r.get("connect_total_s")),
            fmt(r.get("idle_cpu_pct")), fmt(r.get("idle_wakeups_per_s"), 1), fmt(r.get("exit")),
            r["status"].replace("|", "/")))
    ops = [r for r in results if "broadcast_subscribers" in r or "commands" in r]
    cmd_rows = [r for r in ops if "commands" in r]
    if ops:
        lines += ["", "Broadcast: one EVENT from a router link of the driver, timed from its send to the last "
                  "subscriber's receipt (CLOCK_MONOTONIC, same machine). Commands: `POST /devices/{id}/commands`, "
                  "one to each of %s router links spread over those held, %s in flight at once, each checked "
                  "at the router (body) and at the caller (200 + the router's REPLY)." % (
                      cmd_rows[0]["commands"] if cmd_rows else "—",
                      cmd_rows[0]["command_concurrency"] if cmd_rows else "—"), "",
                  "| face | held | subscribers | got it exactly once | publish → first / last receipt ms "
                  "| hub CPU during it ms | peak VmRSS during broadcast MiB | commands ok / sent | routers got "
                  "| commands total s | p50 / p99 ms | VmRSS after MiB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in ops:
            b = "broadcast_subscribers" in r
            c = "commands" in r
            lines.append("| %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r["target"], r["conns"], r.get("broadcast_subscribers", "—"),
                r.get("broadcast_received", "") if b else "—",
                fmt(r["broadcast_first_s"] * 1000.0, 1) if "broadcast_first_s" in r else "—",
                fmt(r["broadcast_s"] * 1000.0, 1) if "broadcast_s" in r else "—",
                fmt(r.get("broadcast_hub_cpu_ms")) if b else "—",
                fmt(r["broadcast_peak_rss_kib"] / 1024.0, 1) if b else "—",
                "%s / %s" % (r["commands_ok"], r["commands"]) if c else "—",
                r.get("commands_routers_got", "") if c else "—", fmt(r.get("commands_s"), 2) if c else "—",
                "%s / %s" % (fmt(r.get("command_p50_ms"), 1), fmt(r.get("command_p99_ms"), 1)) if c else "—",
                fmt(r["rss_after_ops_kib"] / 1024.0, 1) if "rss_after_ops_kib" in r else ""))
    lin = meta.get("linearity") or []
    if lin:
        lim = meta["limits"]
        lines += ["", "Linearity: least squares over the held counts (VmRSS after settling; kernel slab Δ is "
                  "system-wide and holds both ends of each loopback connection: the node's own kernel cost is "
                  "taken as half of it). Projection = intercept + slope × N; node = hub VmRSS + half the slab.", "",
                  "| face | points | VmRSS slope KiB/conn | intercept MiB | max deviation from the line "
                  "| slab slope KiB/conn (both ends) | sockstat mem slope KiB/conn | idle CPU % of a core per 10k "
                  "| 100,000: VmRSS + ½ slab = node | 1,000,000: VmRSS + ½ slab = node | idle CPU at 100k / 1M |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for f in lin:
            p1, p2 = f["projection"]["100000"], f["projection"]["1000000"]
            lines.append("| %s | %s | **%.2f** | %.1f | %.0f KiB (%.1f %%) at %d | %.2f | %.3f | %.2f "
                         "| %.0f + %.0f = **%.0f MiB** | %.2f + %.2f = **%.2f GiB** | %.0f %% / %.0f %% |" % (
                             f["target"], ", ".join(str(x) for x in f["points"]), f["rss_slope_kib"],
                             f["rss_intercept_kib"] / 1024.0, f["rss_max_dev_kib"], f["rss_max_dev_pct"] or 0,
                             f["rss_max_dev_at"], f["slab_slope_kib"], f["sockstat_slope_kib"],
                             f["idle_cpu_slope_pct_per_10k"], p1["rss_mib"], p1["slab_mib"] / 2,
                             p1["rss_mib"] + p1["slab_mib"] / 2, p2["rss_mib"] / 1024.0, p2["slab_mib"] / 2048.0,
                             (p2["rss_mib"] + p2["slab_mib"] / 2) / 1024.0, p1["idle_cpu_pct"],
                             p2["idle_cpu_pct"]))
        ports = lim["ports_per_client_address"]
        lines += ["", "Limits on this host for one node: descriptors: RLIMIT_NOFILE hard %s, fs.nr_open %s, "
                  "fs.file-max %s (1,000,000 links need nofile and nr_open above 1,000,000); ports: %d ephemeral "
                  "ports (%d–%d) per client address and server address:port, so 100,000 links need at least %d "
                  "client addresses and 1,000,000 at least %d (or more listening ports/addresses on the hub); "
                  "memory: MemTotal %.1f GiB; tcp_mem %s pages (only queued data counts there: idle sockets "
                  "hold none)." % (
                      lim["nofile_hard"], lim["nr_open"], lim["file_max"], ports, lim["port_range"][0],
                      lim["port_range"][1], -(-100000 // ports), -(-1000000 // ports),
                      lim["mem_total_kib"] / 1048576.0, lim["tcp_mem_pages"])]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--targets", default=DEFAULT_TARGETS,
                    help="comma-separated (default: %s); also torus-hub-app, torus-hub-web, nio-echo, nio-http"
                    % DEFAULT_TARGETS)
    ap.add_argument("--json", help="write the results as JSON to this file")
    ap.add_argument("--md", help="write the Markdown table to this file")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after connecting before reading RSS")
    ap.add_argument("--idle-cpu", type=float, default=5.0, help="seconds over which idle CPU is measured")
    ap.add_argument("--threads", type=int, default=1, help="event loops of the Torus demos")
    ap.add_argument("--bin-dir", default=".build/release")
    ap.add_argument("--anchors-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "idle-anchors"))
    ap.add_argument("--nio-bin", default="", help="folder with nio-echo, nio-http, nio-ws")
    ap.add_argument("--nginx", default="/usr/sbin/nginx")
    ap.add_argument("--skip-shared-anchors", default="", metavar="REASON",
                    help="report the c-uring and nio targets as skipped, for REASON")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--load-cpu", default="1")
    ap.add_argument("--port-base", type=int, default=19100)
    ap.add_argument("--per-worker", type=int, default=PER_WORKER_MAX,
                    help="connections per client process (each below its fd limit)")
    ap.add_argument("--window", type=int, default=256, help="connections connecting/handshaking at once per client")
    ap.add_argument("--connect-timeout", type=float, default=120.0)
    ap.add_argument("--max-hold", type=float, default=900.0, help="a client worker closes after this many seconds")
    ap.add_argument("--start-timeout", type=float, default=30.0)
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "idle-memory"))
    ap.add_argument("--scale", action="store_true",
                    help="hub scale table: hold 5,000, 10,000, 19,000 (see --scale-steps) on one server, per face")
    ap.add_argument("--scale-steps", default="5000,10000,19000")
    ap.add_argument("--no-broadcast", dest="broadcast", action="store_false",
                    help="scale: skip the broadcast to the WebSocket subscribers")
    ap.add_argument("--commands", type=int, default=1000,
                    help="scale: commands sent through the HTTP API, one to each of this many router links (0: none)")
    ap.add_argument("--command-concurrency", type=int, default=32, help="scale: commands in flight at once")
    ap.add_argument("--deliver-timeout", type=float, default=60.0,
                    help="scale: seconds every subscriber has to receive the broadcast")
    ap.add_argument("--max-kib-per-conn", type=float, default=0.0,
                    help="a step whose VmRSS growth per connection exceeds this fails (0: no bound)")
    # worker mode (internal)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--proto", help=argparse.SUPPRESS)
    ap.add_argument("--path", default="/", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--id-prefix", default="r", help=argparse.SUPPRESS)
    ap.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--src-ip", default="", help=argparse.SUPPRESS)
    ap.add_argument("--no-src-ips", action="store_true",
                    help="connect from 127.0.0.1 only (default: one 127.0.x.y source address per client worker)")
    ap.add_argument("--render", metavar="JSON", help="print the Markdown of a saved --json run and exit")
    a = ap.parse_args()
    write_hub_credentials()
    if a.render:
        with open(a.render) as f:
            saved = json.load(f)
        meta = saved["meta"]
        if meta.get("mode") == "scale":
            meta["linearity"] = linearity(saved["results"])
            meta.setdefault("limits", host_limits())
            print(markdown_scale(saved["results"], meta))
        else:
            print(markdown(saved["results"], meta))
        return 0
    if a.worker:
        run_worker(a)
        return 0

    ncpu = os.cpu_count() or 1
    a.server_cpu = None if a.server_cpu in ("", "none") else int(a.server_cpu)
    a.load_cpu = None if a.load_cpu in ("", "none") else int(a.load_cpu)
    if ncpu < 2 and a.load_cpu is not None:
        a.load_cpu = a.server_cpu
    if a.per_worker > PER_WORKER_MAX:
        ap.error("--per-worker above %d leaves a client too close to its descriptor limit" % PER_WORKER_MAX)
    soft, hard = raise_nofile()
    specs = target_specs(a)
    names = [t.strip() for t in a.targets.split(",") if t.strip()]
    for t in names:
        if t not in specs:
            ap.error("unknown target %s (known: %s)" % (t, ", ".join(sorted(specs))))
    if a.scale:
        steps = [int(x) for x in a.scale_steps.split(",")]
        if hard < max(steps) + 100:
            log("warning: RLIMIT_NOFILE hard limit %d: the server cannot hold %d connections" % (hard, max(steps)))
        if a.targets == DEFAULT_TARGETS:
            names = ["torus-hub-web", "torus-hub-app", "torus-hub", "torus-hub-mixed"]
    else:
        steps = [a.conns]
        if a.conns + 200 > hard:
            ap.error("--conns %d is too close to the server's descriptor limit (%d)" % (a.conns, hard))
    run_id = time.strftime("%Y%m%d-%H%M%S")
    workdir = os.path.join(a.workdir, run_id)
    os.makedirs(workdir, exist_ok=True)
    ports = Ports(a.port_base)
    results = []
    for name in names:
        log("== %s (%s)" % (name, specs[name]["label"]))
        results.extend(measure(name, specs[name], a, ports, workdir, steps))
    uname = platform.uname()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": "%s, kernel %s, %d CPUs, load avg %s" % (
            platform.node(), uname.release, ncpu, " ".join("%.2f" % x for x in os.getloadavg())),
        "server_cpu": a.server_cpu, "load_cpu": a.load_cpu, "settle_s": a.settle, "idle_cpu_s": a.idle_cpu,
        "threads": a.threads, "mode": "scale" if a.scale else "per-connection", "logs": workdir,
        "page_kib": PAGE_KIB,
    }
    if a.scale:
        meta["linearity"] = linearity(results)
        meta["limits"] = host_limits()
    md = markdown_scale(results, meta) if a.scale else markdown(results, meta)
    print(md)
    if a.md:
        with open(a.md, "w") as f:
            f.write(md)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
    failed = [r for r in results if r["status"].startswith("FAILED")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
