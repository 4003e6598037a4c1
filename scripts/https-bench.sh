#!/usr/bin/env bash
# HTTPS against nginx, per server CPU-second: torus-http --tls-cert and nginx from
# Debian on the same certificate (P-256), TLS 1.3 with AES-128-GCM only, answering
# GET /plaintext. Two loads per round, wrk on one CPU and the server on the other
# (as ../shared/bench pins them), the server's CPU time read from /proc:
#   keep-alive   wrk -t1 -c64, requests on kept-alive TLS connections
#   handshakes   wrk -t1 -c64 with "Connection: close": a new connection and a full
#                handshake per request (wrk does not resume sessions), so requests
#                per CPU-second are handshakes per CPU-second
#   resumed      a new connection per request that resumes the session of the first
#                (TLS 1.3 ticket, PSK with ECDHE): `openssl s_time -reuse`, four at
#                once, each GETting /plaintext over HTTP/1.0 once per connection; a
#                connection that was not resumed fails the round
#
# Usage: scripts/https-bench.sh [--rounds R=3] [--duration S=5] [--conns C=64]
# Prints a markdown table (medians over rounds) and writes it, with every round's
# numbers, to $TORUS_BENCH_OUT (default /tmp/torus-https-bench), which also holds
# the certificate, nginx's configuration and logs. Bounded: each wrk run is under
# `timeout`, every server is stopped by PID.
#
# The cipher: wrk and s_time are OpenSSL clients; OPENSSL_CONF points them at a
# configuration whose only TLS 1.3 suite is TLS_AES_128_GCM_SHA256, so both servers negotiate it
# (nginx is told the same with ssl_conf_command). Needs nginx and wrk (installed
# with apt-get when missing), and a release torus-http (built here).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
duration=5
conns=64
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --conns) conns="$2"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "https-bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != "0" ]; then SUDO=sudo; else SUDO=; fi
  echo "[setup] installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

out="${TORUS_BENCH_OUT:-/tmp/torus-https-bench}"
rm -rf "$out"
mkdir -p "$out/nginx"
server_cpu="${BENCH_SERVER_CPU:-0}"
load_cpu="${BENCH_LOAD_CPU:-1}"

echo "== building torus-http (release)"
swift build -c release --product torus-http >/dev/null
TORUS="$(swift build -c release --show-bin-path)/torus-http"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null
cat >"$out/client-openssl.cnf" <<EOF
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.3
Ciphersuites = TLS_AES_128_GCM_SHA256
EOF

. scripts/lib/ports.sh

start_nginx() { # PORT -> PID
  local port=$1
  cat >"$out/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $out/nginx/nginx.pid;
error_log $out/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 65;
  tcp_nodelay on;
  client_body_temp_path $out/nginx/body;
  proxy_temp_path $out/nginx/proxy;
  fastcgi_temp_path $out/nginx/fastcgi;
  uwsgi_temp_path $out/nginx/uwsgi;
  scgi_temp_path $out/nginx/scgi;
  server {
    listen 127.0.0.1:$port ssl backlog=4096;
    ssl_certificate $out/cert.pem;
    ssl_certificate_key $out/key.pem;
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
    location = /plaintext {
      default_type text/plain;
      add_header Server nginx;
      return 200 "Hello, World!";
    }
  }
}
EOF
  taskset -c "$server_cpu" "$NGINX" -c "$out/nginx/nginx.conf" -p "$out/nginx" >"$out/nginx/stdout.log" 2>&1 &
  echo $!
}

start_torus() { # PORT -> PID
  local port=$1
  taskset -c "$server_cpu" "$TORUS" --host 127.0.0.1 --port "$port" --threads 1 \
    --tls-cert "$out/cert.pem" --tls-key "$out/key.pem" >"$out/torus.log" 2>&1 &
  echo $!
}

wait_port() { # PORT
  for _ in $(seq 1 100); do
    if curl -sk --max-time 1 -o /dev/null "https://127.0.0.1:$1/plaintext"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# Server CPU ticks (utime + stime) of a process and its children threads/processes.
cpu_ticks() { # PID
  local total=0 p
  for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
    if [ -r "/proc/$p/stat" ]; then
      total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    fi
  done
  echo "$total"
}

stop_server() { # PID
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

hz=$(getconf CLK_TCK)
results="$out/rounds.tsv"
printf 'round\tserver\tload\treq_s\tp50_ms\tp99_ms\tcpu_pct\treq_per_cpu_s\n' >"$results"

# resumed: RESUMERS `openssl s_time -reuse` processes for the round's duration; the
# connections they made (all of them resumed, or the round counts 0) over the wall time.
resumers=4
run_resumed() { # SERVER PORT PID ROUND
  local server=$1 port=$2 pid=$3 round=$4 log i pids=() before after start end
  log="$out/$server-resumed-r$round"
  for i in $(seq 1 "$resumers"); do   # warm-up
    OPENSSL_CONF="$out/client-openssl.cnf" timeout 30 taskset -c "$load_cpu" openssl s_time \
      -connect "127.0.0.1:$port" -reuse -www /plaintext -time 1 >/dev/null 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
  before=$(cpu_ticks "$pid"); start=$(date +%s.%N)
  for i in $(seq 1 "$resumers"); do
    OPENSSL_CONF="$out/client-openssl.cnf" timeout $((duration + 30)) taskset -c "$load_cpu" openssl s_time \
      -connect "127.0.0.1:$port" -reuse -www /plaintext -time "$duration" >"$log-$i.txt" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}" 2>/dev/null || true
  after=$(cpu_ticks "$pid"); end=$(date +%s.%N)
  python3 - "$log" "$resumers" "$server" "$round" "$((after - before))" "$hz" "$start" "$end" >>"$results" <<'PY'
import re, sys
log, n, server, rnd, ticks, hz, start, end = sys.argv[1:9]
total = reused = fresh = 0
for i in range(1, int(n) + 1):
    text = open('%s-%d.txt' % (log, i)).read()
    # The reuse phase: "Now timing with session id reuse." then one character per
    # connection ('r' resumed, '*' not) and "N connections in T real seconds".
    part = text.split('session id reuse', 1)[-1]
    counts = re.findall(r'^(\d+) connections in [\d.]+ real seconds', part, re.M)
    total += int(counts[-1]) if counts else 0
    marks = ''.join(l for l in part.splitlines() if re.fullmatch(r'[r*]+', l.strip() or 'x'))
    reused += marks.count('r'); fresh += marks.count('*')
wall = float(end) - float(start)
rate = total / wall if wall > 0 and fresh == 0 and reused > 0 else 0.0
cpu = int(ticks) / float(hz) / wall if wall > 0 else 0.0
per_cpu = rate / cpu if cpu > 0 else 0.0
if fresh: print('https-bench: %s resumed r%s: %d connections not resumed' % (server, rnd, fresh), file=sys.stderr)
print('%s\t%s\tresumed\t%.0f\tnan\tnan\t%.0f\t%.0f' % (rnd, server, rate, cpu * 100, per_cpu))
PY
  tail -n 1 "$results" | awk -F'\t' '{printf "  %-6s %-10s r%s %9s conn/s                     cpu %s%%  %s per CPU-s\n", $2, $3, $1, $4, $7, $8}'
}

run_load() { # SERVER LOAD PORT PID ROUND
  local server=$1 load=$2 port=$3 pid=$4 round=$5 extra=() log
  if [ "$load" = resumed ]; then run_resumed "$server" "$port" "$pid" "$round"; return; fi
  [ "$load" = handshakes ] && extra=(-H "Connection: close")
  log="$out/$server-$load-r$round.txt"
  # warm-up
  OPENSSL_CONF="$out/client-openssl.cnf" timeout 30 taskset -c "$load_cpu" wrk -t1 -c"$conns" -d2s "${extra[@]}" \
    "https://127.0.0.1:$port/plaintext" >/dev/null 2>&1 || true
  local before after
  before=$(cpu_ticks "$pid")
  OPENSSL_CONF="$out/client-openssl.cnf" timeout $((duration + 30)) taskset -c "$load_cpu" wrk -t1 -c"$conns" \
    -d"${duration}s" --latency "${extra[@]}" "https://127.0.0.1:$port/plaintext" >"$log" 2>&1 || true
  after=$(cpu_ticks "$pid")
  python3 - "$log" "$server" "$load" "$round" "$((after - before))" "$hz" "$duration" >>"$results" <<'PY'
import re, sys
log, server, load, rnd, ticks, hz, duration = sys.argv[1:8]
text = open(log).read()
def ms(label):
    m = re.search(r'^\s*%s\s+([\d.]+)(us|ms|s)\b' % label, text, re.M)
    if not m: return float('nan')
    v = float(m.group(1)); return {'us': v / 1000, 'ms': v, 's': v * 1000}[m.group(2)]
m = re.search(r'Requests/sec:\s+([\d.]+)', text)
rate = float(m.group(1)) if m else 0.0
errors = re.search(r'Non-2xx or 3xx responses: (\d+)', text)
if errors and int(errors.group(1)) > 0: rate = 0.0
cpu = int(ticks) / float(hz) / float(duration)
per_cpu = rate / cpu if cpu > 0 else 0.0
print('%s\t%s\t%s\t%.0f\t%.3f\t%.3f\t%.0f\t%.0f' % (rnd, server, load, rate, ms('50%'), ms('99%'), cpu * 100, per_cpu))
PY
  tail -n 1 "$results" | awk -F'\t' '{printf "  %-6s %-10s r%s %9s req/s  p50 %s ms  p99 %s ms  cpu %s%%  %s req per CPU-s\n", $2, $3, $1, $4, $5, $6, $7, $8}'
}

echo "== $rounds rounds of ${duration}s, $conns connections, server CPU $server_cpu, wrk CPU $load_cpu"
for round in $(seq 1 "$rounds"); do
  for server in torus nginx; do
    port=$(free_port)
    if [ "$server" = torus ]; then pid=$(start_torus "$port"); else pid=$(start_nginx "$port"); fi
    if ! wait_port "$port"; then
      echo "https-bench.sh: $server did not answer on $port" >&2
      stop_server "$pid"
      exit 1
    fi
    # What was negotiated (once per server and round).
    echo | OPENSSL_CONF="$out/client-openssl.cnf" timeout 10 openssl s_client -connect "127.0.0.1:$port" 2>/dev/null \
      | grep -m1 -E '^New, TLSv1.3, Cipher is' | sed "s/^/  $server: /" || true
    for load in keep-alive handshakes resumed; do run_load "$server" "$load" "$port" "$pid" "$round"; done
    stop_server "$pid"
  done
done

python3 - "$results" "$out/table.md" <<'PY'
import statistics, sys
rows = [line.rstrip('\n').split('\t') for line in open(sys.argv[1])][1:]
def median(server, load, i):
    values = [float(r[i]) for r in rows if r[1] == server and r[2] == load and float(r[3]) > 0]
    return statistics.median(values) if values else float('nan')
out = ['| load | Torus req/s | nginx req/s | Torus per CPU-s | nginx per CPU-s | Torus ÷ nginx (per CPU-s) | p50/p99 ms Torus | p50/p99 ms nginx |',
       '|---|---:|---:|---:|---:|---:|---|---|']
for load in ('keep-alive', 'handshakes', 'resumed'):
    t, n = median('torus', load, 7), median('nginx', load, 7)
    def latency(server):
        p50, p99 = median(server, load, 4), median(server, load, 5)
        return '—' if p50 != p50 else '%.2f / %.2f' % (p50, p99)   # s_time reports none
    out.append('| %s | %.0f | %.0f | %.0f | %.0f | %.2f | %s | %s |' % (
        load, median('torus', load, 3), median('nginx', load, 3), t, n, t / n if n else float('nan'),
        latency('torus'), latency('nginx')))
text = '\n'.join(out)
open(sys.argv[2], 'w').write(text + '\n')
print(text)
PY
echo "== rounds: $results; table: $out/table.md"
