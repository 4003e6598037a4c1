#!/usr/bin/env bash
# Dead peers across a real cut link.
#
# Proves that torus-echo notices peers that vanish without a FIN or RST (TCP
# keepalive for idle links, TCP_USER_TIMEOUT for links with unacknowledged data)
# and that every such connection is closed through the one close path: the ledger
# returns to its baseline (connections 0, in-flight operations back to the
# listener's own, no buffers out) and the process RSS stays bounded: within
# baseline + 20 MiB, and flat over repeated rounds of 1,000 dead links.
#
# Topology (both namespaces are created here, named with this shell's PID; the
# veth pair and the addresses exist only inside them, nothing touches the host's
# network):
#
#     [ns tdp-srv-PID]  vs 10.213.0.1/30  <== veth ==>  vc 10.213.0.2/30  [ns tdp-cli-PID]
#       torus-echo                                          clients.py
#
# The cut is `ip link set vc down` inside the client namespace. The client
# kernel can then transmit nothing; the server's end loses carrier and its
# packets are dropped silently (no error reaches the socket). The harness checks
# that the cut really was silent: while cut, the server-side interface receives
# no packet and the server namespace no TCP segment (so no FIN, no RST), and the
# server namespace counts one TCPAbortOnTimeout per connection (the kernel gave
# up on a timer: keepalive, retransmission or window probe).
#
# With --hub PATH_TO_torus-hub it also runs case h (hub-cases.sh): router links
# and WebSocket clients of torus-hub, removed by the hub's own heartbeat and ping
# timeouts once the link is cut.
#
# Usage: scripts/deadpeer/harness.sh --server PATH_TO_torus-echo [--hub PATH_TO_torus-hub]
#        [--keep-logs] [--rounds N] [--hub-rounds N] [--only A|B|H]   (see README.md here)
# Exit: 0 all cases passed, 1 a case failed, 2 usage error, 77 skipped (cannot
# create network namespaces here). Last line: "N passed, M failed".
set -euo pipefail

usage() {
    echo "usage: $0 --server PATH_TO_torus-echo [--hub PATH_TO_torus-hub] [--keep-logs] [--rounds N] [--hub-rounds N] [--only A|B|H]" >&2
    echo "  --hub PATH      also run case h against torus-hub (routers and WebSocket clients)" >&2
    echo "  --rounds N      rounds of 1,000 dead links in case d (default 3, at most 99)" >&2
    echo "  --hub-rounds N  rounds of case h (default 2, at most 99)" >&2
    echo "  --only A|B|H    run only server A's cases (a, c, d), server B's (b, c) or the hub's (h)" >&2
    exit 2
}

SERVER=""
HUB=""
KEEP_LOGS=0
D_ROUNDS=3
H_ROUNDS=2
ONLY=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --server) [[ $# -ge 2 ]] || usage; SERVER="$2"; shift 2 ;;
        --hub) [[ $# -ge 2 ]] || usage; HUB="$2"; shift 2 ;;
        --hub-rounds) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]?$ ]] || usage; H_ROUNDS="$2"; shift 2 ;;
        --keep-logs) KEEP_LOGS=1; shift ;;
        --rounds) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]?$ ]] || usage; D_ROUNDS="$2"; shift 2 ;;
        --only) [[ $# -ge 2 && "$2" =~ ^(A|B|H)$ ]] || usage; ONLY="$2"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
if [[ "$ONLY" == H ]]; then
    [[ -n "$HUB" ]] || usage
else
    [[ -n "$SERVER" ]] || usage
    [[ -x "$SERVER" ]] || { echo "error: server binary not executable: $SERVER" >&2; exit 2; }
    SERVER="$(cd "$(dirname "$SERVER")" && pwd)/$(basename "$SERVER")"
fi
if [[ -n "$HUB" ]]; then
    [[ -x "$HUB" ]] || { echo "error: hub binary not executable: $HUB" >&2; exit 2; }
    HUB="$(cd "$(dirname "$HUB")" && pwd)/$(basename "$HUB")"
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLIENTS="$HERE/clients.py"
# shellcheck source=hub-cases.sh
source "$HERE/hub-cases.sh"

skip() { echo "SKIP: $*"; exit 77; }

# ---------------------------------------------------------------- preconditions
[[ "$(id -u)" -eq 0 ]] || skip "needs root (network namespaces)"
command -v ip >/dev/null || skip "iproute2 'ip' not found"
command -v ss >/dev/null || skip "iproute2 'ss' not found"
command -v python3 >/dev/null || skip "python3 not found"
# The real interpreter (not a pyenv shim) so that the PID we record is python's.
PY="$(python3 -c 'import sys; print(sys.executable)')"

SFX=$$
NS_S="tdp-srv-$SFX"
NS_C="tdp-cli-$SFX"
IP_S=10.213.0.1
IP_C=10.213.0.2
PORT_A=7000
PORT_B=7001
WORK="$(mktemp -d /tmp/deadpeer.XXXXXX)"
PIDS=()            # every process this script started (and only those)
NS_MADE=()

# ---------------------------------------------------------------- cleanup
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    done
    local i
    for i in $(seq 1 30); do            # up to 3 s for them to go
        local alive=0
        for pid in "${PIDS[@]}"; do
            is_running "$pid" && alive=1
        done
        [[ $alive -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        is_running "$pid" && kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    local ns
    for ns in "${NS_MADE[@]}"; do
        ip netns del "$ns" 2>/dev/null || echo "warning: could not delete namespace $ns" >&2
    done
    # The log directory was named on the first line; keep it when asked or when
    # something failed (printing nothing here, so the summary stays the last line).
    [[ $KEEP_LOGS -eq 1 || $rc -ne 0 ]] || rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

# A child that exited but was not yet reaped is a zombie: kill -0 still succeeds,
# so look at its state.
is_running() {
    local st
    st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$st" && "$st" != "Z" && "$st" != "X" ]]
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

# ---------------------------------------------------------------- namespaces
ip netns add "$NS_S" 2>"$WORK/netns.err" || skip "cannot create network namespaces: $(head -1 "$WORK/netns.err")"
NS_MADE+=("$NS_S")
ip netns add "$NS_C" 2>"$WORK/netns.err" || skip "cannot create a second network namespace: $(head -1 "$WORK/netns.err")"
NS_MADE+=("$NS_C")
ip -n "$NS_S" link add vs type veth peer name vc netns "$NS_C" 2>"$WORK/veth.err" \
    || skip "cannot create a veth pair: $(head -1 "$WORK/veth.err")"
ip -n "$NS_S" link set lo up
ip -n "$NS_C" link set lo up
ip -n "$NS_S" addr add "$IP_S/30" dev vs
ip -n "$NS_C" addr add "$IP_C/30" dev vc
ip -n "$NS_S" link set vs up
ip -n "$NS_C" link set vc up

# 1,000 connections need 1,000+ descriptors on each side.
if [[ "$(ulimit -n)" != unlimited && "$(ulimit -n)" -lt 4096 ]]; then
    ulimit -n 4096 || skip "cannot raise the open-file limit to 4096"
fi

echo "namespaces $NS_S ($IP_S) <-> $NS_C ($IP_C); server ${SERVER:-none}; hub ${HUB:-none}; logs $WORK (kept on failure or with --keep-logs)"

# ---------------------------------------------------------------- helpers
PASSED=0
FAILED=0
RESULTS=()
result() {   # result NAME pass|fail DETAIL
    local line="case $1: ${2^^} — $3"
    echo "$line"
    RESULTS+=("$line")
    if [[ "$2" == pass ]]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
}
note() { echo "  $*"; }

# snmp NS FILE FIELD: a counter from /proc/net/{snmp,netstat} of namespace NS
# (e.g. snmp NS netstat TCPAbortOnTimeout, snmp NS snmp InSegs).
snmp() {
    ip netns exec "$1" cat "/proc/net/$2" | awk -v f="$3" '
        NR % 2 == 1 { for (i = 2; i <= NF; i++) name[i] = $i; next }
        { for (i = 2; i <= NF; i++) if (name[i] == f) { print $i; found = 1 } }
        END { if (!found) print 0 }' | head -1
}
rx_packets() { ip netns exec "$NS_S" cat /sys/class/net/vs/statistics/rx_packets; }
established() {  # established TCP sockets in the server namespace on port $1
    ip netns exec "$NS_S" ss -Htn state established "( sport = :$1 )" | wc -l
}

cut_link() { ip -n "$NS_C" link set vc down; }
restore_link() { ip -n "$NS_C" link set vc up; }

# wait_for_line FILE REGEX SECONDS
wait_for_line() {
    local i
    for i in $(seq 1 $(( $3 * 10 ))); do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Server ------------------------------------------------------------------------
SRV_PID=""
SRV_LOG=""
SRV_PORT=""
BASE_OPS=""
# launch_and_baseline WHAT LOG READY_REGEX CMD...: runs CMD in the server namespace
# with its output in LOG (SRV_LOG), waits for READY_REGEX, then takes the baseline
# from the stats lines: sets SRV_PID and BASE_OPS. Used by the echo and hub cases.
launch_and_baseline() {
    local what=$1 ready=$3
    SRV_LOG=$2
    shift 3
    ip netns exec "$NS_S" "$@" >"$SRV_LOG" 2>&1 &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    if ! wait_for_line "$SRV_LOG" "$ready" 20; then
        echo "$what did not print '$ready' within 20 s:" >&2
        sed 's/^/  | /' "$SRV_LOG" >&2
        return 1
    fi
    # Two stats lines with no connection give the baseline: the listeners' accepts and
    # each loop's wake-up operation stay in flight (BASE_OPS). A loop's own timers
    # (memory housekeeping, the deadline timer) come and go while it is idle, so they
    # are counted apart (`timers=`) and left out of the comparison.
    wait_for_line "$SRV_LOG" '^stats: ' 10 || { echo "$what prints no stats lines" >&2; return 1; }
    sleep 1.2
    local line
    line="$(last_stats 0)"
    BASE_OPS=$(( $(stat_field "$line" in_flight) - $(stat_field "$line" timers) ))
}

start_server() {  # start_server NAME PORT ARGS...
    local name=$1 port=$2; shift 2
    SRV_PORT=$port
    launch_and_baseline "server $name" "$WORK/server-$name.log" '^listening on ' \
        "$SERVER" --host "$IP_S" --port "$port" --stats-interval 1 "$@" || return 1
    note "server $name pid $SRV_PID on $IP_S:$port ($*); baseline: $(last_stats 0)"
}

# last_stats FROM_LINE: the newest stats line after line FROM_LINE of the log.
last_stats() { tail -n "+$(( $1 + 1 ))" "$SRV_LOG" | grep '^stats: ' | tail -1 || true; }
stat_field() { sed -n "s/.*[ :]$2=\([0-9]*\).*/\1/p" <<<"$1"; }
log_lines() { wc -l <"$SRV_LOG"; }

# wait_stats FROM_LINE SECONDS CONDITION: poll the stats lines printed after
# FROM_LINE until one satisfies CONDITION (an awk expression over connections,
# in_flight, parked, buffers_out, rss_kib, timers); prints that line.
wait_stats() {
    local from=$1 secs=$2 cond=$3 i line
    for i in $(seq 0 $(( secs * 10 ))); do
        [[ $i -gt 0 ]] && sleep 0.1
        line="$(last_stats "$from")"
        if [[ -n "$line" ]] && awk -v l="$line" "BEGIN {
                n = split(l, kv, /[ =]/)
                for (j = 2; j < n; j += 2) v[kv[j]] = kv[j + 1] + 0
                connections = v[\"connections\"]; in_flight = v[\"in_flight\"]; parked = v[\"parked\"]
                buffers_out = v[\"buffers_out\"]; rss_kib = v[\"rss_kib\"]; timers = v[\"timers\"]
                exit !($cond) }"; then
            echo "$line"
            return 0
        fi
    done
    return 1
}
# Back at baseline: no connection, no parked operation, no buffer out, the idle
# operations only (a loop's own timers at most one per idle operation: two per loop,
# as accept and wake are).
reclaimed_cond() {
    echo "connections == 0 && in_flight - timers == $BASE_OPS && timers <= $BASE_OPS && parked == 0 && buffers_out == 0"
}

# stop_server NAME: SIGTERM, wait (bounded), require a quiescent ledger and exit 0.
stop_server() {
    local name=$1 i rc=0
    [[ -n "$SRV_PID" ]] || { result "shutdown-$name" fail "server not running"; return; }
    kill -TERM "$SRV_PID"
    for i in $(seq 1 150); do is_running "$SRV_PID" || break; sleep 0.1; done
    if is_running "$SRV_PID"; then
        result "shutdown-$name" fail "server did not exit within 15 s of SIGTERM"
        kill -KILL "$SRV_PID" 2>/dev/null || true
        wait "$SRV_PID" 2>/dev/null || true
        SRV_PID=""
        return
    fi
    wait "$SRV_PID" || rc=$?
    SRV_PID=""
    local ledger
    ledger="$(grep -m1 '^ledger: ' "$SRV_LOG" || true)"
    if [[ $rc -eq 0 && "$ledger" == "ledger: quiescent"* ]]; then
        result "shutdown-$name" pass "exit 0, $ledger"
    else
        result "shutdown-$name" fail "exit $rc, ${ledger:-no ledger line}"
        sed -n '/^ledger: /,$p' "$SRV_LOG" | sed 's/^/  | /'
    fi
}

# Clients -----------------------------------------------------------------------
CLI_PID=""
CLI_STOP=""
start_clients() {  # start_clients NAME PORT COUNT SEND_BYTES [clients.py options]
    local name=$1 port=$2 count=$3 bytes=$4; shift 4
    CLI_STOP="$WORK/clients-$name.stop"
    local ready="$WORK/clients-$name.ready"
    ip netns exec "$NS_C" "$PY" "$CLIENTS" hold --host "$IP_S" --port "$port" --count "$count" \
        --send-bytes "$bytes" --ready-file "$ready" --stop-file "$CLI_STOP" --max-seconds 120 "$@" \
        >"$WORK/clients-$name.log" 2>&1 &
    CLI_PID=$!
    PIDS+=("$CLI_PID")
    local i
    for i in $(seq 1 600); do     # 60 s for connect + fill
        [[ -f "$ready" ]] && break
        is_running "$CLI_PID" || break
        sleep 0.1
    done
    if [[ ! -f "$ready" ]]; then
        echo "clients $name not ready:" >&2
        sed 's/^/  | /' "$WORK/clients-$name.log" >&2
        return 1
    fi
    note "clients: $(grep -m1 '^ready' "$WORK/clients-$name.log")"
}
stop_clients() {
    [[ -n "$CLI_PID" ]] || return 0
    touch "$CLI_STOP"
    local i
    for i in $(seq 1 50); do is_running "$CLI_PID" || break; sleep 0.1; done
    is_running "$CLI_PID" && kill -KILL "$CLI_PID" 2>/dev/null
    wait "$CLI_PID" 2>/dev/null || true
    CLI_PID=""
}

# echo_round_trip PORT: one new connection from the client namespace, bounded retries
# while the link comes back.
echo_round_trip() {
    local i out
    for i in $(seq 1 20); do
        if out="$(timeout 10 ip netns exec "$NS_C" "$PY" "$CLIENTS" echo --host "$IP_S" --port "$1" --connect-timeout 2 2>&1)"; then
            ECHO_TRIES=$i
            return 0
        fi
        sleep 0.25
    done
    echo "  last attempt: $out"
    return 1
}

# cut_and_measure NAME PORT COUNT LIMIT MIN: cut the link with COUNT connections
# open; wait until the kernel dropped them (ss) and the ledger is back to baseline
# (stats). Sets CUT_KERNEL_S, CUT_RECLAIM_S, CUT_LINE, CUT_NOTES; returns 1 on a
# failed check (CUT_WHY says which).
cut_and_measure() {
    local name=$1 port=$2 count=$3 limit=$4 min=$5
    CUT_WHY=""
    local aborts0 insegs0 rx0 from t0
    aborts0="$(snmp "$NS_S" netstat TCPAbortOnTimeout)"
    from="$(log_lines)"
    t0="$(now)"
    cut_link
    # Counters for "nothing reached the server while cut", taken a moment after
    # the cut so that frames already handed to the server's backlog are counted
    # before, not during.
    sleep 0.2
    rx0="$(rx_packets)"
    insegs0="$(snmp "$NS_S" snmp InSegs)"
    CUT_KERNEL_S=""
    CUT_RECLAIM_S=""
    CUT_LINE=""
    local deadline=$(( $(date +%s) + limit + 10 )) line
    while [[ $(date +%s) -le $deadline ]]; do
        if [[ -z "$CUT_KERNEL_S" && "$(established "$port")" -eq 0 ]]; then
            CUT_KERNEL_S="$(elapsed "$t0" "$(now)")"
        fi
        if [[ -z "$CUT_RECLAIM_S" ]] && line="$(wait_stats "$from" 0 "$(reclaimed_cond)")"; then
            CUT_RECLAIM_S="$(elapsed "$t0" "$(now)")"
            CUT_LINE="$line"
        fi
        [[ -n "$CUT_KERNEL_S" && -n "$CUT_RECLAIM_S" ]] && break
        sleep 0.2
    done
    local aborts insegs rx
    aborts=$(( $(snmp "$NS_S" netstat TCPAbortOnTimeout) - aborts0 ))
    insegs=$(( $(snmp "$NS_S" snmp InSegs) - insegs0 ))
    rx=$(( $(rx_packets) - rx0 ))
    CUT_NOTES="kernel dropped all ${count} at ${CUT_KERNEL_S:-never} s, ledger at baseline at ${CUT_RECLAIM_S:-never} s after the cut; server namespace while cut: TCPAbortOnTimeout +$aborts, TCP segments in +$insegs, vs rx packets +$rx"
    note "$name: $CUT_NOTES"
    note "$name: last stats: $(last_stats "$from")"
    if [[ -z "$CUT_RECLAIM_S" ]]; then CUT_WHY="ledger not back to baseline (in_flight $BASE_OPS besides the loops' timers, connections/parked/buffers_out 0) within $((limit + 10)) s"; return 1; fi
    if ! le "$CUT_RECLAIM_S" "$limit"; then CUT_WHY="reclaimed after ${CUT_RECLAIM_S} s > ${limit} s"; return 1; fi
    if ! le "$min" "$CUT_RECLAIM_S"; then CUT_WHY="reclaimed after ${CUT_RECLAIM_S} s < ${min} s: too fast for a timer, something told the server"; return 1; fi
    if [[ $insegs -ne 0 ]]; then CUT_WHY="the server namespace received $insegs TCP segments while cut: the cut was not silent"; return 1; fi
    if [[ $rx -ne 0 ]]; then CUT_WHY="the server interface received $rx packets while cut"; return 1; fi
    if [[ $aborts -lt $count ]]; then CUT_WHY="only $aborts of $count connections were aborted by a kernel timer"; return 1; fi
    return 0
}

# ---------------------------------------------------------------- cases
# Server A: keepalive 2/1/3 for idle links. TCP_USER_TIMEOUT is off (0) on
# purpose: when set, Linux uses it instead of the probe count to end keepalive
# (the default 60 s would hide the 2+1*3 s bound under test); send timeout off so
# only the kernel's timers act.
KA_ARGS=(--keepalive-idle 2 --keepalive-interval 1 --keepalive-count 3 --user-timeout-ms 0 --send-timeout 0)

case_a() {
    start_clients a "$PORT_A" 200 0 || { CASE_WHY="client driver failed"; return 1; }
    wait_stats "$(log_lines)" 15 "connections == 200" >/dev/null \
        || { CASE_WHY="server never reported 200 connections: $(last_stats 0)"; return 1; }
    # Bound: idle 2 s + 3 probes * 1 s = 5 s of kernel time from the last packet,
    # plus the stats interval (1 s) and polling slack; 15 s as the issue asks.
    # Lower bound 2 s: a close driven by a reset or an error would come at once.
    cut_and_measure a "$PORT_A" 200 15 2 || { CASE_WHY="$CUT_WHY"; return 1; }
    CASE_WHY="200 idle connections; $CUT_NOTES; $CUT_LINE"
    A_DETECT="$CUT_RECLAIM_S"; A_KERNEL="$CUT_KERNEL_S"
}

case_c() {  # case_c PORT
    restore_link
    echo_round_trip "$1" || { CASE_WHY="no echo round trip within 20 attempts after 'ip link set up'"; return 1; }
    wait_stats "$(log_lines)" 5 "$(reclaimed_cond)" >/dev/null \
        || { CASE_WHY="echo worked but the ledger did not return to baseline: $(last_stats 0)"; return 1; }
    CASE_WHY="link up; echo round trip ok (attempt $ECHO_TRIES); ledger back at baseline"
}

# One round of case d: 1,000 connections, cut, reclaim. Sets R_CONN (RSS with
# 1,000 connected), R_PEAK (highest RSS from the cut on), R_AFTER (RSS 2 s after
# the ledger is back at baseline), R_DETECT, R_KERNEL; CASE_WHY on failure.
d_round() {
    local round=$1
    start_clients "d$round" "$PORT_A" 1000 4096 || { CASE_WHY="round $round: client driver failed"; return 1; }
    local line
    line="$(wait_stats "$(log_lines)" 20 "connections == 1000")" \
        || { CASE_WHY="round $round: server never reported 1000 connections: $(last_stats 0)"; return 1; }
    R_CONN="$(stat_field "$line" rss_kib)"
    local from; from="$(log_lines)"
    # 1,000 sockets' keepalive timers run independently; the 15 s bound still holds.
    cut_and_measure "d$round" "$PORT_A" 1000 15 2 || { CASE_WHY="round $round: $CUT_WHY"; return 1; }
    sleep 2   # two more stats lines; RSS from the newest
    R_PEAK="$(tail -n "+$((from + 1))" "$SRV_LOG" | grep '^stats: ' | awk -F'rss_kib=' '{ if ($2 + 0 > m) m = $2 + 0 } END { print m + 0 }')"
    R_AFTER="$(stat_field "$(last_stats 0)" rss_kib)"
    R_DETECT="$CUT_RECLAIM_S"; R_KERNEL="$CUT_KERNEL_S"; R_NOTES="$CUT_NOTES"
    stop_clients
    restore_link
    echo "  round $round RSS: before ${D_BEFORE} KiB, during ${R_CONN} KiB (1000 connected) / ${R_PEAK} KiB (peak from the cut on), after ${R_AFTER} KiB"
}

case_d() {
    # Baseline after cases a and c: what the server keeps for its lifetime from
    # any earlier load already exists, so growth from here is what 1,000 links
    # (live, then dead) cost.
    D_BEFORE="$(stat_field "$(last_stats 0)" rss_kib)"
    d_round 1 || return 1
    local after1=$R_AFTER during1="$R_CONN/$R_PEAK" notes1="$R_NOTES" r afters="$R_AFTER"
    D_DETECT="$R_DETECT"; D_KERNEL="$R_KERNEL"
    # Again (--rounds, default 3): the RSS after reclaiming does not come back to
    # the baseline (see below), so the leak check is that later rounds of 1,000
    # dead links reuse that memory instead of adding to it: the RSS plateaus.
    local after2nd=$R_AFTER
    for r in $(seq 2 "$D_ROUNDS"); do
        d_round "$r" || return 1
        if [[ $r -eq 2 ]]; then after2nd=$R_AFTER; fi
        afters="$afters $R_AFTER"
        D_DETECT2="$R_DETECT"; D_KERNEL2="$R_KERNEL"
    done
    local last=$R_AFTER max=$after1 a
    for a in $afters; do if [[ $a -gt $max ]]; then max=$a; fi; done
    D_RSS="before ${D_BEFORE} KiB; during ${during1} KiB (connected/peak); after ${after1} KiB; after each round: ${afters// / / } KiB"
    echo "  RSS before: ${D_BEFORE} KiB"
    echo "  RSS during: ${during1} KiB (1000 connected / peak from the cut on)"
    echo "  RSS after:  ${after1} KiB (after each of $D_ROUNDS rounds: $afters)"
    # Bound: baseline + 20 MiB. Reclaiming frees everything in the ledger, but
    # the RSS does not drop back: memory the process touched stays resident.
    # What 1,000 connections with a 4 KiB echo each may legitimately leave:
    #   - receive buffers: 2 loops x 1,024 provided buffers x 16 KiB are allocated
    #     up front but become resident only when the kernel writes into them; a
    #     4 KiB receive touches one page, and the ring hands out buffers in order,
    #     so round 1 touches ~1,000 pages (4 MiB), round 2 the next ~1,000, round 3
    #     wraps onto pages already resident. At most 2,048 x 4 KiB = 8 MiB.
    #   - outbound pool: 16 KiB chunks, 256 per loop at start, grown by slabs of
    #     64 and never freed while the loop runs (the kernel may point into them).
    #     Each connection holds at most one chunk for its echo, so at most ~512 per
    #     loop: growth <= 2 x 256 x 16 KiB = 8 MiB (measured: +3 to +4 MiB).
    #   - heap pages glibc keeps mapped after 1,000 Connection objects (iovec
    #     array, msghdr, write-queue ring, handler) are freed: ~1-2 MiB.
    # Measured: +6 to +8.5 MiB after round 1, a plateau at +10 to +12.5 MiB from
    # round 2 on (with --rounds 8, flat through round 8). 20 MiB is the sum of the
    # worst cases with room for allocator noise; a leak of one 16 KiB chunk per
    # connection would exceed it in the first round.
    local bound=$(( D_BEFORE + 20 * 1024 ))
    if [[ "$max" -gt "$bound" ]]; then
        CASE_WHY="RSS after a round ${max} KiB > baseline ${D_BEFORE} KiB + 20 MiB; $D_RSS"
        return 1
    fi
    # Plateau: from round 2 on, the receive buffers are resident and the pool has
    # met this load, so later rounds may add at most 3 MiB in total; a leak of
    # 3 KiB per dead connection would fail with the default 3 rounds, and more
    # rounds (--rounds) catch smaller ones.
    if [[ "$D_ROUNDS" -ge 3 && $(( last - after2nd )) -gt 3072 ]]; then
        CASE_WHY="RSS grew by $(( last - after2nd )) KiB from round 2 to round $D_ROUNDS of 1000 dead links; $D_RSS"
        return 1
    fi
    CASE_WHY="1000 connections (4 KiB echoed each), $D_ROUNDS rounds; round 1: $notes1; RSS $D_RSS (bound ${bound} KiB)"
}

# Server B: TCP_USER_TIMEOUT 3 s for links with unacknowledged data; keepalive
# and the application send timeout off, so only the user timeout can act.
UT_ARGS=(--keepalive-idle 0 --user-timeout-ms 3000 --send-timeout 0)

case_b() {
    local n=50 rate=$((256 << 10))
    # A slow consumer: each client offers 8 MiB and reads its echo back at only
    # 256 KiB/s, so the server's write queue stays above its high water mark with
    # bytes in flight and unacknowledged when the link goes. (A client that never
    # reads would not do: with its window shut for longer than TCP_USER_TIMEOUT,
    # Linux aborts the connection even while the peer answers window probes, so
    # the server would drop it before any cut.)
    start_clients b "$PORT_B" "$n" $((8 << 20)) --read-rate "$rate" --max-fill-seconds 3 \
        || { CASE_WHY="client driver failed"; return 1; }
    local line
    line="$(wait_stats "$(log_lines)" 10 "connections == $n && buffers_out > 0")" \
        || { CASE_WHY="server queue holds no data before the cut: $(last_stats 0)"; return 1; }
    # Live but slow peers must survive longer than the user timeout.
    sleep 4
    line="$(wait_stats "$(log_lines)" 3 "connections == $n && buffers_out > 0")" \
        || { CASE_WHY="live slow readers were dropped before the cut (user timeout 3 s): $(last_stats 0)"; return 1; }
    local sendq
    sendq="$(ip netns exec "$NS_S" ss -Htn state established "( sport = :$PORT_B )" | awk '$3 > 0 { c++ } END { print c + 0 }')"
    note "b: 4 s later, before the cut: $line; $sendq of $n server sockets have a non-empty Send-Q"
    # Bound: user timeout 3 s, checked when the retransmission or window-probe
    # timer fires (the backoff is short: the peer acknowledged data moments before
    # the cut), plus the stats interval; 15 s. Lower bound 2 s as in case a.
    cut_and_measure b "$PORT_B" "$n" 15 2 || { CASE_WHY="$CUT_WHY"; return 1; }
    CASE_WHY="$n slow readers, server queues above high water; $CUT_NOTES; $CUT_LINE"
    B_DETECT="$CUT_RECLAIM_S"; B_KERNEL="$CUT_KERNEL_S"
}

run_case() {  # run_case NAME FUNCTION ARGS...
    local name=$1; shift
    CASE_WHY=""
    echo "--- case $name"
    if "$@"; then
        result "$name" pass "$CASE_WHY"
    else
        result "$name" fail "$CASE_WHY"
    fi
    stop_clients
    restore_link
}

A_DETECT=""; D_DETECT=""; D_DETECT2=""; B_DETECT=""; D_RSS=""; H_DETECT=""; H_DETECT_LAST=""; H_RSS=""
T_START="$(now)"

if [[ "$ONLY" == B || "$ONLY" == H ]]; then
    :
elif start_server A "$PORT_A" "${KA_ARGS[@]}"; then
    run_case a case_a
    run_case c-after-a case_c "$PORT_A"
    run_case d case_d
    stop_server A
else
    result a fail "server A did not start"
fi

if [[ "$ONLY" == A || "$ONLY" == H ]]; then
    :
elif start_server B "$PORT_B" "${UT_ARGS[@]}"; then
    run_case b case_b
    run_case c-after-b case_c "$PORT_B"
    stop_server B
else
    result b fail "server B did not start"
fi

if [[ -n "$HUB" && ( -z "$ONLY" || "$ONLY" == H ) ]]; then
    run_hub_cases
fi

echo "--- summary ($(elapsed "$T_START" "$(now)") s)"
echo "detection (cut -> ledger at baseline): a ${A_DETECT:-n/a} s (kernel ${A_KERNEL:-n/a} s), d ${D_DETECT:-n/a} s (kernel ${D_KERNEL:-n/a} s) (last round ${D_DETECT2:-n/a} s, kernel ${D_KERNEL2:-n/a} s), b ${B_DETECT:-n/a} s (kernel ${B_KERNEL:-n/a} s)"
echo "rss: ${D_RSS:-n/a}"
if [[ -n "$HUB" ]]; then
    echo "hub (cut -> ledger at baseline): round 1 ${H_DETECT:-n/a} s (no ESTABLISHED socket at ${H_KERNEL:-n/a} s), last round ${H_DETECT_LAST:-n/a} s; rss: ${H_RSS:-n/a}"
fi
for r in "${RESULTS[@]}"; do echo "$r"; done
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
