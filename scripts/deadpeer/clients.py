#!/usr/bin/env python3
"""Client driver for the dead-peer harness (stdlib only).

Runs inside the client network namespace (`ip netns exec NS python3 clients.py ...`).

Modes:
  hold  Open --count connections to --host:--port, optionally send up to
        --send-bytes on each, reading nothing (or at most --read-rate bytes/s per
        connection), so the echo server's replies pile up: first in this side's
        receive buffer, then in the server's send path. The fill phase ends when
        every connection sent its bytes, nothing moved for --stall-seconds, or
        --max-fill-seconds passed; then it prints one `ready ...` line with the
        counts and keeps every socket open (still sending what is left and reading
        at the rate) until --stop-file exists, SIGTERM/SIGINT arrives, or
        --max-seconds passes.
        The sockets are never closed explicitly before exit; when the harness has
        cut the link, whatever the kernel sends on exit cannot reach the server.
  echo  Open one connection, send a short message, read it back, print
        `echo ok` or `echo FAIL: reason`; exit 0 only on a correct round trip.

Every wait is bounded (connect timeout, send stall timeout, --max-seconds).
"""
import argparse
import errno
import os
import selectors
import signal
import socket
import sys
import time


def say(line):
    print(line, flush=True)


def open_connections(host, port, count, timeout):
    """Opens up to `count` blocking-connect sockets; returns (sockets, failures, first_error)."""
    socks, failed, first_error = [], 0, None
    deadline = time.monotonic() + max(timeout, 1.0) * 4
    for _ in range(count):
        if time.monotonic() > deadline:
            failed += count - len(socks) - failed
            first_error = first_error or "connect phase deadline"
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except OSError as e:
            failed += 1
            first_error = first_error or repr(e)
            s.close()
            continue
        s.setblocking(False)
        socks.append(s)
    return socks, failed, first_error


class Pump:
    """Sends up to `send_bytes` on every socket and, when `read_rate` > 0, reads at
    most `read_rate` bytes per second per socket (0: never reads). Non-blocking;
    `run_until` drives it for a bounded time."""

    def __init__(self, socks, send_bytes, read_rate):
        self.chunk = b"x" * 65536
        self.by_fd = {s.fileno(): s for s in socks}
        self.to_send = {s.fileno(): send_bytes for s in socks if send_bytes > 0}
        self.read_rate = read_rate
        self.read_budget = {fd: 0.0 for fd in self.by_fd}
        self.sent = 0
        self.received = 0
        self.errors = 0
        self.last_progress = time.monotonic()
        self.last_refill = time.monotonic()
        self.sel = selectors.DefaultSelector()
        for fd, s in self.by_fd.items():
            if self._events(fd):
                self.sel.register(s, self._events(fd))

    def _events(self, fd):
        ev = selectors.EVENT_WRITE if fd in self.to_send else 0
        if self.read_rate > 0 and self.read_budget[fd] >= 1:
            ev |= selectors.EVENT_READ
        return ev

    def _update(self, fd):
        s = self.by_fd.get(fd)
        if s is None:
            return
        ev = self._events(fd)
        try:
            if ev:
                self.sel.modify(s, ev)
            else:
                self.sel.unregister(s)
        except (KeyError, ValueError):
            if ev:
                self.sel.register(s, ev)

    def _drop(self, fd, err):
        self.errors += 1
        if self.errors <= 3:
            say(f"socket error: {err!r}")
        try:
            self.sel.unregister(self.by_fd[fd])
        except (KeyError, ValueError):
            pass
        self.to_send.pop(fd, None)
        self.read_budget.pop(fd, None)
        del self.by_fd[fd]

    def reached_target(self):
        return len(self.by_fd) - len(self.to_send)

    def step(self, timeout):
        now = time.monotonic()
        if self.read_rate > 0 and now - self.last_refill >= 0.05:
            add = self.read_rate * (now - self.last_refill)
            self.last_refill = now
            for fd in list(self.read_budget):
                before = self.read_budget[fd]
                self.read_budget[fd] = min(before + add, float(self.read_rate))
                if before < 1 <= self.read_budget[fd]:
                    self._update(fd)
        if not self.sel.get_map():
            time.sleep(timeout)
            return
        for key, ev in self.sel.select(timeout=timeout):
            fd = key.fd
            if fd not in self.by_fd:
                continue
            s = self.by_fd[fd]
            if ev & selectors.EVENT_READ:
                try:
                    data = s.recv(int(min(self.read_budget[fd], 65536)))
                    if data:
                        self.received += len(data)
                        self.read_budget[fd] -= len(data)
                        self.last_progress = time.monotonic()
                except BlockingIOError:
                    pass
                except OSError as e:
                    self._drop(fd, e)
                    continue
            if ev & selectors.EVENT_WRITE and fd in self.to_send:
                want = self.to_send[fd]
                try:
                    n = s.send(self.chunk[: min(len(self.chunk), want)])
                except BlockingIOError:
                    n = 0
                except OSError as e:
                    self._drop(fd, e)
                    continue
                if n > 0:
                    self.sent += n
                    self.last_progress = time.monotonic()
                    if want - n <= 0:
                        del self.to_send[fd]
                    else:
                        self.to_send[fd] = want - n
            self._update(fd)

    def fill(self, stall_seconds, max_seconds):
        """Runs until every socket sent its bytes, nothing moved for
        `stall_seconds`, or `max_seconds` passed."""
        start = time.monotonic()
        self.last_progress = start
        while self.to_send:
            now = time.monotonic()
            if now - self.last_progress > stall_seconds or now - start > max_seconds:
                break
            self.step(0.05)


def hold(args):
    stop = {"signal": None}

    def on_signal(sig, _frame):
        stop["signal"] = sig

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t0 = time.monotonic()
    socks, failed, first_error = open_connections(args.host, args.port, args.count, args.connect_timeout)
    t1 = time.monotonic()
    pump = Pump(socks, args.send_bytes, args.read_rate)
    pump.fill(args.stall_seconds, args.max_fill_seconds)
    t2 = time.monotonic()
    say(f"ready connected={len(socks)} failed={failed} sent_bytes={pump.sent} "
        f"received_bytes={pump.received} reached_target={pump.reached_target()} "
        f"connect_s={t1 - t0:.2f} fill_s={t2 - t1:.2f}"
        + (f" first_error={first_error}" if first_error else ""))
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            f.write(f"{len(socks)} {failed} {pump.sent}\n")
        os.rename(args.ready_file + ".tmp", args.ready_file)

    deadline = time.monotonic() + args.max_seconds
    reason = "max-seconds"
    while time.monotonic() < deadline:
        if stop["signal"] is not None:
            reason = f"signal {stop['signal']}"
            break
        if args.stop_file and os.path.exists(args.stop_file):
            reason = "stop-file"
            break
        # Keep streaming (remaining bytes, rate-limited reads) while holding.
        pump.step(0.1)
    say(f"stopping ({reason}) holding={len(socks)} sent_bytes={pump.sent} "
        f"received_bytes={pump.received} socket_errors={pump.errors}")
    # Exit without an orderly close: the harness has cut the link by now, so
    # whatever the kernel emits for these sockets (FIN or RST) goes nowhere.
    sys.stdout.flush()
    os._exit(0)


def echo(args):
    msg = b"torus dead-peer round trip %d\n" % os.getpid()
    try:
        with socket.create_connection((args.host, args.port), timeout=args.connect_timeout) as s:
            s.settimeout(args.connect_timeout)
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                part = s.recv(len(msg) - len(got))
                if not part:
                    break
                got += part
    except OSError as e:
        say(f"echo FAIL: {e!r}")
        return 1
    if got != msg:
        say(f"echo FAIL: got {got!r}")
        return 1
    say("echo ok")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["hold", "echo"])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--send-bytes", type=int, default=0, help="bytes to send per connection, never reading")
    p.add_argument("--read-rate", type=int, default=0,
                   help="read at most this many bytes/s per connection (0: never read)")
    p.add_argument("--stall-seconds", type=float, default=1.5, help="end the fill phase after this long without progress")
    p.add_argument("--max-fill-seconds", type=float, default=20.0, help="end the fill phase after this long")
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--ready-file", help="written (atomically) once all connections are open and filled")
    p.add_argument("--stop-file", help="exit once this file exists")
    p.add_argument("--max-seconds", type=float, default=120.0, help="exit after holding this long regardless")
    args = p.parse_args()
    if args.mode == "echo":
        sys.exit(echo(args))
    hold(args)


if __name__ == "__main__":
    main()
