#!/usr/bin/env python3
"""Hub CPU per router handshake, with and without the challenge (issue 15).

Starts HUB (a torus-hub binary, release for a meaningful number) with
--insecure-routers so that both protocols are accepted, then alternates rounds of
N sequential handshakes from this one process:
  plain:     connect, HELLO (version 1), WELCOME, close
  challenge: connect, HELLO (version 2), WELCOME + nonce, AUTH (HMAC-SHA256), AUTHOK, close
and reads the hub's CPU time (utime + stime from /proc/PID/stat) around each round.
Prints handshakes per hub CPU-second for each round and the ratio of the medians.
Loopback only; bounded by --rounds and -n.
With --parallel K, K client threads share the N handshakes (the hub then batches
wake-ups, as in a reconnect storm). Usage: handshake_cost.py HUB [-n 2000] [--rounds 5] [--parallel K]
"""
import argparse, base64, hashlib, hmac, json, os, socket, statistics, struct, subprocess, sys, tempfile, threading, time


def frame(kind, payload=b""):
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def read_frame(s):
    head = b""
    while len(head) < 5:
        chunk = s.recv(5 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    n, kind = struct.unpack(">IB", head)
    body = b""
    while len(body) < n - 1:
        body += s.recv(n - 1 - len(body))
    return kind, body


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handshake(port, rid, secret):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if secret is None:
        s.sendall(frame(1, rid))
        kind, _ = read_frame(s)
        assert kind == 2
    else:
        s.sendall(frame(1, b"\x02" + rid))
        kind, body = read_frame(s)
        assert kind == 2 and len(body) == 36
        s.sendall(frame(8, hmac.new(secret, body[4:] + rid, hashlib.sha256).digest()))
        kind, _ = read_frame(s)
        assert kind == 9, kind
    s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("hub")
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--parallel", type=int, default=1, help="client threads sharing the N handshakes")
    a = p.parse_args()
    folder = tempfile.mkdtemp(prefix="hub-handshake-")
    creds = os.path.join(folder, "credentials.json")
    secret = os.urandom(32)
    fd = os.open(creds, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps({"routers": {"bench": base64.b64encode(secret).decode()}, "tokens": {}}).encode())
    os.close(fd)
    hub = subprocess.Popen([a.hub, "--router-port", "0", "--http-port", "0", "--threads", "1",
                            "--insecure-routers", "--credentials", creds, "--log-level", "warning"],
                           stdout=subprocess.PIPE, text=True)
    try:
        lines = [hub.stdout.readline(), hub.stdout.readline()]
        port = int(lines[1].strip().rsplit(":", 1)[1])
        results = {"plain": [], "challenge": []}
        for _ in range(a.rounds):
            for name, key in (("plain", None), ("challenge", secret)):
                time.sleep(0.3)
                before = cpu_seconds(hub.pid)
                def worker(count, key=key):
                    for _ in range(count):
                        handshake(port, b"bench", key)
                threads = [threading.Thread(target=worker, args=(a.n // a.parallel,)) for _ in range(a.parallel)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                time.sleep(0.3)  # let the hub finish the last closes
                used = cpu_seconds(hub.pid) - before
                rate = a.n / used if used > 0 else float("inf")
                results[name].append(rate)
                print(f"{name:9s} {a.n} handshakes, hub CPU {used:.2f} s: {rate:,.0f} per CPU-second", flush=True)
        plain, challenge = statistics.median(results["plain"]), statistics.median(results["challenge"])
        print(f"median: plain {plain:,.0f}/CPU-s, challenge {challenge:,.0f}/CPU-s; "
              f"the challenge costs {100 * (plain / challenge - 1):.1f}% more hub CPU per handshake")
    finally:
        hub.terminate()
        hub.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
