#!/usr/bin/env python3
"""What a torus-hub cluster costs: cross-node commands and events (issue 16).

Starts a redis-server on a free loopback port and two nodes A and B of HUB (a
torus-hub binary, release for a meaningful number; --threads 1 each unless told),
plus a single hub S with no Redis for the baseline, all with one generated
credential file. Then:

  commands  K routers on A answer every COMMAND at once. N sequential POSTs on one
            keep-alive connection to A (same node) and to B (cross node: B reads the
            lease in Redis, publishes to A's channel, A runs it and publishes the
            REPLY back): p50, p99 and mean round trip of each.
  events    the K routers send E events (in batches of 256, at most --window ahead of
            the slowest stream)
            while an event stream (/events) on each node counts what arrives; each
            node's CPU time (utime + stime from /proc/PID/stat) over the run gives
            events per node CPU-second on A (the router's node: local delivery and
            one PUBLISH per event) and on B (delivery of events from Redis), next
            to S doing the same work alone; Redis's own counters give its
            commands per event.

Stops every process it started (SIGTERM; the nodes must exit 0 with a quiescent
ledger). Loopback only, bounded by -n and -e. Usage:
  cluster_bench.py HUB [--routers 8] [-n 2000] [-e 200000] [--threads 1] [--rounds 3]
"""
import argparse, base64, hashlib, http.client, json, os, re, socket, statistics, subprocess
import sys, tempfile, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "lib"))
from hub_protocol import COMMAND, EVENT, REPLY, authenticate, cpu_seconds, frame, free_port, read_frame  # noqa: E402


class Router:
    """One authenticated router link; a thread answers commands until close."""

    def __init__(self, port, rid, secret):
        self.rid = rid.encode()
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        authenticate(self.s, self.rid, secret)  # WELCOME (sent at accept), then HELLO + AUTH
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.answer, daemon=True)
        self.thread.start()

    def answer(self):
        try:
            while True:
                kind, body = read_frame(self.s)
                if kind == COMMAND:
                    with self.lock:
                        self.s.sendall(frame(REPLY, body[:4] + b"ack:" + body[4:]))
        except (OSError, ConnectionError):
            return

    def send_events(self, count, batch=256, size=64):
        one = frame(EVENT, b"x" * size)
        while count > 0:
            n = min(batch, count)
            with self.lock:
                self.s.sendall(one * n)
            count -= n

    def close(self):
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.s.close()


class EventCounter:
    """An /events stream; counts `event:` lines in a thread."""

    def __init__(self, port, token):
        self.count = 0
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        head = b""
        while b": subscribed" not in head:
            head += self.s.recv(4096)
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        marker = b"\nevent: "  # after each event's "id: N" line
        tail = b""  # shorter than the marker: a marker counted ends in the new chunk
        try:
            while True:
                chunk = self.s.recv(1 << 16)
                if not chunk:
                    return
                data = tail + chunk
                self.count += data.count(marker)
                tail = data[-(len(marker) - 1):]
        except OSError:
            return

    def close(self):
        self.s.close()


def start_hub(hub, name, args, cred):
    p = subprocess.Popen([hub, "--router-port", "0", "--http-port", "0", "--credentials", cred] + args,
                         stdout=subprocess.PIPE, stderr=open(os.path.join(os.path.dirname(cred), name + ".log"), "w"), text=True)
    ports = []
    while len(ports) < 2:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"{name} did not start")
        if line.startswith("listening on"):
            ports.append(int(line.rsplit(":", 1)[1]))
    return p, ports[0], ports[1]


def stop_hub(name, p):
    p.send_signal(15)
    out, _ = p.communicate(timeout=30)
    ledger = next((l for l in out.splitlines() if l.startswith("ledger:")), "(no ledger line)")
    ok = p.returncode == 0 and ledger.startswith("ledger: quiescent")
    print(f"{name}: exit {p.returncode}, {ledger}")
    return ok


def commands(port, token, rid, n):
    c = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    for i in range(n):
        t = time.perf_counter()
        c.request("POST", f"/devices/{rid}/commands", body=b"go", headers=headers)
        r = c.getresponse()
        body = r.read()
        times.append(time.perf_counter() - t)
        assert r.status == 200 and body == b"ack:go", (r.status, body)
    c.close()
    times.sort()
    return times[len(times) // 2] * 1e3, times[int(len(times) * 0.99)] * 1e3, statistics.mean(times) * 1e3


def redis_info(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "all"], capture_output=True, text=True).stdout
    total = int(re.search(r"total_commands_processed:(\d+)", out).group(1))
    publish = re.search(r"cmdstat_publish:calls=(\d+)", out)
    return total, int(publish.group(1)) if publish else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hub")
    ap.add_argument("--routers", type=int, default=8)
    ap.add_argument("-n", type=int, default=2000, help="commands per measurement")
    ap.add_argument("-e", type=int, default=200000, help="events per round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=int, default=16384, help="events sent beyond what the streams have read")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="torus-cluster-bench.")
    ids = [f"cb-{i:03d}" for i in range(a.routers)]
    secrets = {rid: os.urandom(32) for rid in ids}
    token = "thk_" + os.urandom(24).hex()
    cred = os.path.join(work, "credentials.json")
    with open(os.open(cred, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        json.dump({"routers": {r: base64.b64encode(s).decode() for r, s in secrets.items()},
                   "tokens": {hashlib.sha256(token.encode()).hexdigest(): {"routers": "*", "rights": ["admin"]}}}, f)
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = {}
    ok = True
    try:
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(redis_port), "ping"], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        common = ["--threads", str(a.threads), "--subscriber-queue", "1000000", "--heartbeat-timeout", "600"]
        cluster = ["--redis", f"redis://127.0.0.1:{redis_port}", "--lease-seconds", "15"]
        procs["A"] = start_hub(a.hub, "A", common + cluster + ["--node-id", "a"], cred)
        procs["B"] = start_hub(a.hub, "B", common + cluster + ["--node-id", "b"], cred)
        procs["S"] = start_hub(a.hub, "S", common, cred)
        routers = [Router(procs["A"][2], rid, secrets[rid]) for rid in ids]
        single = [Router(procs["S"][2], rid, secrets[rid]) for rid in ids]
        time.sleep(0.5)

        print(f"commands ({a.n} sequential each, one keep-alive connection; ms):")
        for label, port in [("same node (A)", procs["A"][1]), ("cross node (B -> A)", procs["B"][1]),
                            ("single hub (S)", procs["S"][1])]:
            commands(port, token, ids[0], min(200, a.n))  # warm up
            p50, p99, mean = commands(port, token, ids[0], a.n)
            print(f"  {label:22s} p50 {p50:.3f}  p99 {p99:.3f}  mean {mean:.3f}")

        total = a.e // (256 * len(routers)) * 256 * len(routers)
        print(f"events ({total} per round, {len(routers)} routers, 64 B each; events per node CPU-second):")
        results = {"A": [], "B": [], "S": [], "rate": [], "ops": [], "publish": []}
        for round in range(a.rounds):
            counters = {k: EventCounter(procs[k][1], token) for k in ("A", "B", "S")}
            time.sleep(0.2)
            before = {k: cpu_seconds(procs[k][0].pid) for k in procs}
            ops0, pub0 = redis_info(redis_port)
            t0 = time.perf_counter()
            # Windowed: at most `window` events beyond what every stream has read, so
            # the measure is throughput, not how deep a burst the hubs buffer (a
            # node drops events for other nodes beyond maxEventsInFlight waiting
            # for Redis, and counts them).
            sent = 0
            deadline = time.time() + 120
            while sent < total and time.time() < deadline:
                while sent - min(c.count for c in counters.values()) > a.window and time.time() < deadline:
                    time.sleep(0.001)
                for r in routers + single:
                    r.send_events(256)
                sent += 256 * len(routers)
            deadline = time.time() + 120
            while any(c.count < total for c in counters.values()) and time.time() < deadline:
                time.sleep(0.02)
            elapsed = time.perf_counter() - t0
            after = {k: cpu_seconds(procs[k][0].pid) for k in procs}
            ops1, pub1 = redis_info(redis_port)
            got = {k: c.count for k, c in counters.items()}
            for c in counters.values():
                c.close()
            if any(n < total for n in got.values()):
                print(f"  round {round + 1}: events missing: {got} of {total}")
                ok = False
                continue
            for k in ("A", "B", "S"):
                results[k].append(total / max(after[k] - before[k], 1e-9))
            results["rate"].append(total / elapsed)
            results["ops"].append((ops1 - ops0) / total)
            results["publish"].append((pub1 - pub0) / total)
            print(f"  round {round + 1}: A {results['A'][-1]:,.0f}  B {results['B'][-1]:,.0f}  single {results['S'][-1]:,.0f}"
                  f"  (delivered on B at {total / elapsed:,.0f}/s; Redis commands per event {results['ops'][-1]:.3f},"
                  f" PUBLISH per event {results['publish'][-1]:.3f})")
        if results["A"]:
            med = {k: statistics.median(v) for k, v in results.items()}
            print(f"median: A (router's node) {med['A']:,.0f}, B (other node) {med['B']:,.0f}, single hub {med['S']:,.0f} "
                  f"events per CPU-second; A/single {med['A'] / med['S']:.2f}; Redis commands per event {med['ops']:.3f}")
        for r in routers + single:
            r.close()
    finally:
        for name, (p, _, _) in procs.items():
            ok = stop_hub(name, p) and ok
        redis.terminate()
        redis.wait(timeout=10)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
