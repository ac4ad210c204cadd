#!/usr/bin/env bash
# DNS benchmark (issue 4, perf goal G10): dnsperf against the registry's DNS server and
# against Knot serving an equivalent zone, on loopback, in the same run. Prints QPS,
# latency, loss and server CPU-us per query for both, and the ratio registry/knot.
#
# Zone shape (docs/perf-anchors 3.4): 100 services x 3 instances on 300 nodes; per service
# svcN.service A (3), svcN.service SRV (3) and _svcN._tcp.service SRV (3), TTL 0; SRV
# answers carry the targets' A records. Query files: mixed (100 A + 200 SRV), SRV only,
# A only.
#
# Usage: benches/dns/run.sh [-l SECONDS] [-r RUNS] [-m "mixed srv a"] [--agent]
#   default: the DNS server runs in-process from the ignored test dns_bench_server
#            (release build), 2 UDP workers, catalog filled through the state machine.
#   --agent: a `registry agent -dev -dns-port N -http-port M` process instead, the catalog
#            registered over HTTP (needs target/release/registry with DNS wired in).
# Env: DNSPERF_ARGS (default "-c 4 -T 1 -q 500"), KEEP=1 keeps the work directory,
#      DNS_BENCH_WORKERS (UDP worker threads, 2), DNS_BENCH_REUSEPORT (true: one
#      SO_REUSEPORT socket per worker; default false: the workers share one socket),
#      DNS_BENCH_BIN (a built dns_bench_server test binary: skips the cargo build).
# Everything listens on 127.0.0.1 only; every process started here is stopped by PID.
set -euo pipefail

SECS=10
RUNS=1
MODES="mixed srv a"
AGENT=0
while [ $# -gt 0 ]; do
  case "$1" in
    -l) SECS="$2"; shift 2 ;;
    -r) RUNS="$2"; shift 2 ;;
    -m) MODES="$2"; shift 2 ;;
    --agent) AGENT=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
DNSPERF_ARGS=${DNSPERF_ARGS:-"-c 4 -T 1 -q 500"}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/dnsbench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] && echo "work dir kept: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need dnsperf || ! need knotd; then
  echo "installing dnsperf and knot (Debian packages)..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf knot) >/dev/null
fi

free_port() {
  python3 -c 'import socket
for _ in range(100):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: t.close(); u.close()'
}

# ---- zone and query files -------------------------------------------------------------
ZONE=$WORK/consul.zone
{
  echo '$ORIGIN consul.'
  echo '$TTL 0'
  echo '@ IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0'
  echo '@ IN NS ns.consul.'
  echo 'ns IN A 127.0.0.1'
  for n in $(seq 0 299); do echo "node$n.node.dc1 IN A 127.0.$((n / 250)).$((n % 250 + 1))"; done
  for s in $(seq 0 99); do
    for k in 0 1 2; do
      n=$((s * 3 + k)); ip="127.0.$((n / 250)).$((n % 250 + 1))"
      echo "svc$s.service IN A $ip"
      echo "svc$s.service IN SRV 1 1 $((8000 + k)) node$n.node.dc1.consul."
      echo "_svc$s._tcp.service IN SRV 1 1 $((8000 + k)) node$n.node.dc1.consul."
    done
  done
} > "$ZONE"
: > "$WORK/q_a.txt"; : > "$WORK/q_srv.txt"
for s in $(seq 0 99); do
  echo "svc$s.service.consul A" >> "$WORK/q_a.txt"
  echo "svc$s.service.consul SRV" >> "$WORK/q_srv.txt"
  echo "_svc$s._tcp.service.consul SRV" >> "$WORK/q_srv.txt"
done
# Mixed: interleaved so every dnsperf client sees both kinds.
paste -d '\n' "$WORK/q_a.txt" <(sed -n 'p;n' "$WORK/q_srv.txt") <(sed -n 'n;p' "$WORK/q_srv.txt") > "$WORK/q_mixed.txt"

# ---- servers ----------------------------------------------------------------------------
start_knot() {
  KNOT_PORT=$(free_port)
  mkdir -p "$WORK/knot/db"
  cat > "$WORK/knot/knot.conf" <<EOF
server:
    rundir: "$WORK/knot"
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: 2
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$WORK/knot/db"
log:
  - target: stderr
    any: warning
zone:
  - domain: consul
    file: "$ZONE"
    zonefile-sync: -1
    journal-content: none
EOF
  knotd -c "$WORK/knot/knot.conf" > "$WORK/knot.log" 2>&1 &
  KNOT_PID=$!; PIDS+=("$KNOT_PID")
  wait_dns "$KNOT_PORT" "svc1.service.consul" || { cat "$WORK/knot.log" >&2; exit 1; }
}

wait_dns() { # port name
  for _ in $(seq 1 200); do
    if dig +time=1 +tries=1 +short @127.0.0.1 -p "$1" "$2" A 2>/dev/null | grep -q '^127\.'; then return 0; fi
    sleep 0.1
  done
  echo "no DNS answer on port $1 for $2" >&2; return 1
}

start_registry_inprocess() {
  local bin=${DNS_BENCH_BIN:-}
  [ -n "$bin" ] || echo "building the benchmark server (release)..." >&2
  [ -n "$bin" ] || bin=$(cd "$ROOT" && cargo test --release -p registry-server --test dns_bench_server --no-run \
          --message-format=json 2>/dev/null \
        | python3 -c 'import json,sys
for l in sys.stdin:
    try: m = json.loads(l)
    except Exception: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "dns_bench_server" in m["executable"]:
        print(m["executable"])' | tail -1)
  [ -x "$bin" ] || { echo "could not build dns_bench_server" >&2; exit 1; }
  REG_PORT=$(free_port)
  DNS_BENCH_PORT=$REG_PORT DNS_BENCH_SECS=$((SECS * RUNS * 6 + 120)) DNS_BENCH_WORKERS=${DNS_BENCH_WORKERS:-2} \
    "$bin" --ignored --exact dns_bench_server --nocapture > "$WORK/registry.log" 2>&1 &
  REG_PID=$!; PIDS+=("$REG_PID")
  wait_dns "$REG_PORT" "svc1.service.consul" || { cat "$WORK/registry.log" >&2; exit 1; }
}

start_registry_agent() {
  local bin=${REGISTRY_BIN:-$ROOT/target/release/registry}
  [ -x "$bin" ] || (cd "$ROOT" && cargo build --release -p registry-agent >&2)
  REG_PORT=$(free_port); local http; http=$(free_port)
  "$bin" agent -dev -node bench -dns-port "$REG_PORT" -http-port "$http" > "$WORK/registry.log" 2>&1 &
  REG_PID=$!; PIDS+=("$REG_PID")
  for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$http/v1/status/leader" | grep -q '"' && break; sleep 0.1; done
  for s in $(seq 0 99); do
    for k in 0 1 2; do
      n=$((s * 3 + k))
      curl -fs -X PUT "http://127.0.0.1:$http/v1/catalog/register" -d "{\"Node\":\"node$n\",\"Address\":\"127.0.$((n / 250)).$((n % 250 + 1))\",\"Service\":{\"ID\":\"svc$s-$k\",\"Service\":\"svc$s\",\"Port\":$((8000 + k))}}" > /dev/null
    done
  done
  wait_dns "$REG_PORT" "svc1.service.consul" || { cat "$WORK/registry.log" >&2; exit 1; }
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# run_one NAME PORT PID QUERYFILE -> prints "qps lost_pct avg_ms cpu_us_per_q"
run_one() {
  local out c0 c1 qps lost lat done_q
  c0=$(cpu_ticks "$3")
  # shellcheck disable=SC2086
  out=$(timeout $((SECS + 30)) dnsperf -s 127.0.0.1 -p "$2" -d "$4" -l "$SECS" $DNSPERF_ARGS 2>&1)
  c1=$(cpu_ticks "$3")
  echo "$out" > "$WORK/dnsperf-$1-$(basename "$4").log"
  qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
  lost=$(echo "$out" | awk '/Queries lost/ {gsub(/[()%]/, "", $4); print $4}')
  lat=$(echo "$out" | awk '/Average Latency/ {print $4 * 1000}')
  done_q=$(echo "$out" | awk '/Queries completed/ {print $3}')
  awk -v q="$qps" -v l="$lost" -v a="$lat" -v c0="$c0" -v c1="$c1" -v t="$TICK" -v n="$done_q" \
    'BEGIN { printf "%.0f %.3f %.3f %.1f\n", q, l, a, (n > 0 ? (c1 - c0) / t * 1e6 / n : 0) }'
}

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

start_knot
if [ "$AGENT" = 1 ]; then start_registry_agent; else start_registry_inprocess; fi
echo "knot pid $KNOT_PID port $KNOT_PORT; registry pid $REG_PID port $REG_PORT; dnsperf $DNSPERF_ARGS -l $SECS; runs $RUNS" >&2

printf '%-6s %-9s %10s %8s %9s %10s\n' mode server qps lost% avg_ms cpu_us/q
for mode in $MODES; do
  qf=$WORK/q_$mode.txt
  declare -A best=()
  for server in knot registry; do
    if [ $server = knot ]; then port=$KNOT_PORT; pid=$KNOT_PID; else port=$REG_PORT; pid=$REG_PID; fi
    : > "$WORK/runs"
    for _ in $(seq 1 "$RUNS"); do run_one "$server" "$port" "$pid" "$qf" >> "$WORK/runs"; done
    q=$(awk '{print $1}' "$WORK/runs" | median)
    line=$(awk -v q="$q" '$1 == q {print; exit}' "$WORK/runs")
    read -r qps lost lat cpu <<< "$line"
    printf '%-6s %-9s %10s %8s %9s %10s\n' "$mode" "$server" "$qps" "$lost" "$lat" "$cpu"
    best[$server]=$qps
  done
  awk -v r="${best[registry]}" -v k="${best[knot]}" -v m="$mode" \
    'BEGIN { if (k > 0) printf "%-6s ratio registry/knot = %.2f\n", m, r / k }'
  unset best
done
