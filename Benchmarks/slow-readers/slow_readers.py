#!/usr/bin/env python3
"""Slow readers (issue 11): what peers that never read their replies make a server hold.

Starts a WebSocket echo server (by default .build/release/torus-ws), reads its VmRSS,
then opens N clients that each send M binary messages of S bytes to the echo at `/`
and never read a byte of the replies. While they hang on, the server's VmRSS is
sampled every 100 ms; then the clients close and, after a pause, VmRSS is read again.
The server is stopped by its PID. Python standard library only; everything bounded.

    slow_readers.py [--server CMD] [--clients 8] [--messages 64] [--size 65536]
                    [--hold 10] [--after 10] [--json FILE]

CMD is a shell command with {port} filled in (default: torus-ws on one loop).
"""
import argparse
import base64
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


def anon_mappings(pid, least_kib=256):
    """The mappings holding the most anonymous memory (for --verbose)."""
    out, current = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if "-" in line.split()[0] and not line.split()[0].endswith(":"):
                current = line.split()[0]
            elif line.startswith("Anonymous:") and int(line.split()[1]) >= least_kib:
                out.append((int(line.split()[1]), current))
    return sorted(out, reverse=True)


def wait_for_port(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"server did not listen on {port} within {timeout}s")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame(size, key=b"\x11\x22\x33\x44"):
    """One masked, final binary frame carrying `size` bytes."""
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    header = bytearray([0x82])
    if size < 126:
        header.append(0x80 | size)
    elif size < 1 << 16:
        header.append(0x80 | 126)
        header += size.to_bytes(2, "big")
    else:
        header.append(0x80 | 127)
        header += size.to_bytes(8, "big")
    header += key
    k = int.from_bytes((key * (size // 4 + 1))[:size], "big")
    masked = (int.from_bytes(payload, "big") ^ k).to_bytes(size, "big")
    return bytes(header) + masked


def handshake(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("server closed during the handshake")
        head += chunk
        if len(head) > 65536:
            raise RuntimeError("handshake response too long")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head[:80]!r}")
    return s


def sender(sock, data, count, deadline, result, i):
    """Sends `count` frames, never reading; stops at the deadline if the server stopped reading."""
    sent = 0
    try:
        for _ in range(count):
            view = memoryview(data)
            while view:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(min(left, 1.0))
                try:
                    n = sock.send(view)
                except socket.timeout:
                    continue
                view = view[n:]
                sent += n
    except (TimeoutError, OSError) as e:
        result[i] = (sent, type(e).__name__)
        return
    result[i] = (sent, "done")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default=".build/release/torus-ws --port {port} --threads 1")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--messages", type=int, default=64)
    ap.add_argument("--size", type=int, default=64 << 10)
    ap.add_argument("--hold", type=float, default=10.0, help="seconds the clients hang on after sending")
    ap.add_argument("--after", type=float, default=10.0, help="seconds after they leave before the last reading")
    ap.add_argument("--send-timeout", type=float, default=20.0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--json")
    ap.add_argument("--verbose", action="store_true", help="print the largest anonymous mappings")
    args = ap.parse_args()

    port = args.port or free_port()
    cmd = args.server.format(port=port)
    proc = subprocess.Popen(["bash", "-c", "exec " + cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_for_port(port, proc)
        time.sleep(1.0)
        before = status(proc.pid)

        socks = [handshake(port) for _ in range(args.clients)]
        data = frame(args.size)
        results = [None] * len(socks)
        deadline = time.monotonic() + args.send_timeout
        threads = [threading.Thread(target=sender, args=(s, data, args.messages, deadline, results, i))
                   for i, s in enumerate(socks)]
        peak = before["VmRSS"]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        # Sample while the clients send, then while they hang on.
        while any(t.is_alive() for t in threads) or time.monotonic() - t0 < args.hold:
            peak = max(peak, status(proc.pid)["VmRSS"])
            time.sleep(0.1)
            if time.monotonic() - t0 > args.send_timeout + args.hold + 5:
                break
        for t in threads:
            t.join(timeout=5)
        during = status(proc.pid)
        if args.verbose:
            print("end of hold:", anon_mappings(proc.pid))
        peak = max(peak, during["VmRSS"])
        for s in socks:
            s.close()
        time.sleep(args.after)
        after = status(proc.pid)
        if args.verbose:
            print("after:", anon_mappings(proc.pid))
        alive = proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    mib = lambda kib: kib / 1024
    sent = [r[0] if r else 0 for r in results]
    report = {
        "server": cmd, "clients": args.clients, "messages": args.messages, "size": args.size,
        "hold_s": args.hold, "after_s": args.after, "server_survived": alive,
        "sent_bytes_per_client": sent, "offered_bytes_per_client": args.messages * len(data),
        "before_kib": before, "during_kib": during, "peak_vmrss_kib": peak, "after_kib": after,
        "grow_peak_mib": round(mib(peak - before["VmRSS"]), 1),
        "grow_during_mib": round(mib(during["VmRSS"] - before["VmRSS"]), 1),
        "grow_after_mib": round(mib(after["VmRSS"] - before["VmRSS"]), 1),
    }
    print(f"server: {cmd}")
    print(f"{args.clients} clients x {args.messages} messages x {args.size} B, never reading; "
          f"sent per client (MiB): {', '.join(f'{s / 2**20:.1f}' for s in sent)}")
    print(f"VmRSS MiB: before {mib(before['VmRSS']):.1f}, peak while held {mib(peak):.1f} "
          f"(+{report['grow_peak_mib']}), end of hold {mib(during['VmRSS']):.1f} (+{report['grow_during_mib']}), "
          f"{args.after:g} s after they left {mib(after['VmRSS']):.1f} (+{report['grow_after_mib']})")
    print(f"RssAnon MiB: before {mib(before['RssAnon']):.1f}, end of hold {mib(during['RssAnon']):.1f}, "
          f"after {mib(after['RssAnon']):.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if not alive:
        sys.exit("the server died")


if __name__ == "__main__":
    main()
