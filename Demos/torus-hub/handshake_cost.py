#!/usr/bin/env python3
"""Hub CPU per router handshake, with and without the challenge (issue 15).

Starts two hubs from HUB (a torus-hub binary, release for a meaningful number), one
loop each: one with --insecure-routers (version 1 accepted: the plain baseline, the
protocol before authentication) and one as deployed (version 2 only, which sends its
WELCOME with the nonce at accept). Then alternates rounds of N sequential handshakes
from this one process:
  plain:      connect, HELLO (version 1), WELCOME, close              (insecure hub)
  challenge:  connect, HELLO (version 2), WELCOME + nonce, AUTH, AUTHOK, close
  pipelined:  connect, WELCOME + nonce (sent at accept), HELLO + AUTH in one write,
              AUTHOK, close
  unconfirmed: connect, WELCOME + nonce, HELLO + AUTH (flag: no AUTHOK) in one
              write, close                                             (all: secure hub)
and reads each hub's CPU time (utime + stime from /proc/PID/stat) around each round.
Prints handshakes per hub CPU-second for each round and the ratios of the medians.
Loopback only; bounded by --rounds and -n.
With --parallel K, K client threads share the N handshakes (the GIL keeps them
nearly sequential). With --generator BIN (the handshake-bench product, release) and
--concurrency K, that Torus client drives the plain and challenged rounds instead,
K routers at once (a reconnect storm: the hub's wake-ups are shared by the handshakes
in flight): plain, challenge (HubRouterClient's default: HELLO first, AUTHOK awaited)
and unconfirmed (its confirm: false). Usage:
  handshake_cost.py HUB [-n 2000] [--rounds 5] [--parallel K] [--generator BIN --concurrency K]
"""
import argparse, base64, json, os, socket, statistics, subprocess, sys, tempfile, threading, time


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "lib"))
from hub_protocol import WELCOME, authenticate, cpu_seconds, hello, read_frame  # noqa: E402


def handshake(port, rid, secret, pipelined=False, confirm=True):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if secret is None:
        s.sendall(hello(rid, version=1))
        kind, _ = read_frame(s)
        assert kind == WELCOME, kind
    else:
        authenticate(s, rid, secret, pipelined=pipelined, confirm=confirm)
    s.close()


TWO_CORES = (os.cpu_count() or 1) >= 2 and subprocess.run(["which", "taskset"], capture_output=True).returncode == 0
PIN_HUB = ["taskset", "-c", "0"] if TWO_CORES else []
PIN_CLIENT = ["taskset", "-c", "1"] if TWO_CORES else []


def main():
    p = argparse.ArgumentParser()
    p.add_argument("hub")
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--parallel", type=int, default=1, help="client threads sharing the N handshakes")
    p.add_argument("--generator", help="handshake-bench binary: drive the rounds with it")
    p.add_argument("--concurrency", type=int, default=64, help="with --generator: routers at once")
    a = p.parse_args()
    folder = tempfile.mkdtemp(prefix="hub-handshake-")
    creds = os.path.join(folder, "credentials.json")
    secret = os.urandom(32)
    routers = {"bench": base64.b64encode(secret).decode()}
    for k in range(a.concurrency):
        routers[f"bench-{k}"] = base64.b64encode(os.urandom(32)).decode()
    fd = os.open(creds, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps({"routers": routers, "tokens": {}}).encode())
    os.close(fd)
    def start(insecure):
        # One core for the hub, the other for the clients (taskset execs: same pid).
        # The clients all come from 127.0.0.1: lift the per-source cap on links
        # waiting to authenticate.
        hub = subprocess.Popen(PIN_HUB + [a.hub, "--router-port", "0", "--http-port", "0", "--threads", "1",
                                          "--credentials", creds, "--log-level", "warning",
                                          "--max-unauthenticated", "100000"]
                               + (["--insecure-routers"] if insecure else []),
                               stdout=subprocess.PIPE, text=True)
        lines = [hub.stdout.readline(), hub.stdout.readline()]
        return hub, int(lines[1].strip().rsplit(":", 1)[1])
    plain_hub, plain_port = start(True)
    secure_hub, secure_port = start(False)
    try:
        # (name, hub, port, secret, pipelined, confirm)
        modes = (("plain", plain_hub, plain_port, None, False, True),
                 ("challenge", secure_hub, secure_port, secret, False, True),
                 ("pipelined", secure_hub, secure_port, secret, True, True),
                 ("unconfirmed", secure_hub, secure_port, secret, True, False))
        if a.generator:
            modes = modes[:2] + modes[3:]
        results = {name: [] for name, *_ in modes}
        for _ in range(a.rounds):
            for name, hub, port, key, pipelined, confirm in modes:
                time.sleep(0.3)
                before = cpu_seconds(hub.pid)
                def worker(count, port=port, key=key, pipelined=pipelined, confirm=confirm):
                    for _ in range(count):
                        handshake(port, b"bench", key, pipelined, confirm)
                if a.generator:
                    command = PIN_CLIENT + [a.generator, "--port", str(port), "--count", str(a.n), "--concurrency", str(a.concurrency)]
                    if key is not None:
                        command += ["--secret-file", creds]
                    if not confirm:
                        command += ["--no-confirm", "1"]
                    out = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
                    if "failed 0 " not in out:
                        raise SystemExit(f"generator: {out}")
                else:
                    threads = [threading.Thread(target=worker, args=(a.n // a.parallel,)) for _ in range(a.parallel)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                time.sleep(0.3)  # let the hub finish the last closes
                used = cpu_seconds(hub.pid) - before
                rate = a.n / used if used > 0 else float("inf")
                results[name].append(rate)
                print(f"{name:11s} {a.n} handshakes, hub CPU {used:.2f} s: {rate:,.0f} per CPU-second", flush=True)
        plain = statistics.median(results["plain"])
        for name in [m[0] for m in modes[1:]]:
            m = statistics.median(results[name])
            print(f"median: plain {plain:,.0f}/CPU-s, {name} {m:,.0f}/CPU-s; "
                  f"{name} costs {100 * (plain / m - 1):.1f}% more hub CPU per handshake")
    finally:
        for hub in (plain_hub, secure_hub):
            hub.terminate()
            hub.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
