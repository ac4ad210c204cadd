#!/usr/bin/env bash
# benches/client.sh — client agents (issue 10, "Performance"): a KV read through a client
# agent next to the same read straight to the server it forwards to (the anchor, same run),
# and the RSS of a client agent holding 10 services and 20 checks.
#
#   bash benches/client.sh
#
# Knobs: BENCH_DURATION=10 (measured seconds per figure), BENCH_CLIENTS=1 (concurrent
# readers; 1 gives the added latency of one hop), BENCH_NO_BUILD=1, BENCH_KEEP=1,
# BENCH_PORT_BASE=28000, BENCH_QUIET_MAX=10.
#
# A benchmark, not a test: it asserts nothing about timing. Every process listens on
# 127.0.0.1 only and is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source benches/lib.sh

DUR=${BENCH_DURATION:-10}
CLIENTS=${BENCH_CLIENTS:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BASE=${BENCH_PORT_BASE:-28000}
SRV_HTTP=$((BASE + 500))
SRV_RPC=$((BASE + 300))
CL_HTTP=$((BASE + 510))
CL_RPC=$((BASE + 310))
CL_DNS=$((BASE + 600))

WORK=$(mktemp -d /tmp/registry-client-bench.XXXXXX)
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
PIDS=()
trap cleanup_work EXIT

if [ -z "${BENCH_NO_BUILD:-}" ]; then
    cargo build --release -q -p registry-agent -p registry-bench
fi
BIN=$TARGET_DIR/release/registry
BENCH=$TARGET_DIR/release/registry-bench

start_single "$BIN" "$WORK/server" "$SRV_HTTP" "$SRV_RPC"
PIDS+=("$PID")
SERVER_PID=$PID
wait_http "http://127.0.0.1:$SRV_HTTP/v1/status/leader" 20

mkdir -p "$WORK/client"
"$BIN" agent -node c1 -data-dir "$WORK/client" -bind 127.0.0.1 -client 127.0.0.1 \
    -http-port "$CL_HTTP" -server-port "$CL_RPC" -serf-lan-port $((CL_RPC + 1)) \
    -serf-wan-port $((CL_RPC + 2)) -dns-port "$CL_DNS" -retry-join "127.0.0.1:$SRV_RPC" \
    -hcl $'limits {\n  http_max_conns_per_client = 0\n  rpc_max_conns_per_client = 0\n}' \
    >"$WORK/client.log" 2>&1 &
CLIENT_PID=$!
PIDS+=("$CLIENT_PID")
for _ in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CL_HTTP/v1/status/leader")" = 200 ] && break
    sleep 0.1
done

curl -sf -X PUT -d "$(head -c 100 /dev/zero | tr '\0' v)" "http://127.0.0.1:$SRV_HTTP/v1/kv/bench/key" >/dev/null

printf '\n== KV read, %s client(s): straight to the server (anchor), then through a client agent\n' "$CLIENTS" >&2
bench "server-direct" http-get "http://127.0.0.1:$SRV_HTTP/v1/kv/bench/key" \
    --clients "$CLIENTS" --duration "$DUR" --pid "$SERVER_PID"
bench "through-client" http-get "http://127.0.0.1:$CL_HTTP/v1/kv/bench/key" \
    --clients "$CLIENTS" --duration "$DUR" --pid "$SERVER_PID" --pid "$CLIENT_PID"

printf '\n== client agent RSS with 10 services and 20 checks\n' >&2
rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
IDLE=$(rss_kib "$CLIENT_PID")
for i in $(seq 10); do
    curl -sf -X PUT "http://127.0.0.1:$CL_HTTP/v1/agent/service/register" -d "{
        \"Name\": \"svc$i\", \"ID\": \"svc$i\", \"Port\": $((9000 + i)),
        \"Checks\": [{\"TTL\": \"600s\"},
                     {\"TCP\": \"127.0.0.1:$SRV_HTTP\", \"Interval\": \"10s\"}]}" >/dev/null
done
sleep 3
CHECKS=$(curl -sf "http://127.0.0.1:$CL_HTTP/v1/agent/checks" | grep -o '"CheckID"' | wc -l)
LOADED=$(rss_kib "$CLIENT_PID")
echo "{\"label\":\"client-rss\",\"services\":10,\"checks\":$CHECKS,\"idle_rss_kib\":$IDLE,\"rss_kib\":$LOADED}" | tee -a "$RESULTS"

python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {r.get("label"): r for r in rows}
d, c = by.get("server-direct"), by.get("through-client")
if d and c:
    print(f"read p50: direct {d['p50_us']} us, through a client {c['p50_us']} us, "
          f"added {c['p50_us'] - d['p50_us']} us (target < 150 us)")
    print(f"read p99: direct {d['p99_us']} us, through a client {c['p99_us']} us")
m = by.get("client-rss")
if m:
    print(f"client agent RSS: {m['rss_kib'] / 1024:.1f} MiB with {m['services']} services and "
          f"{m['checks']} checks (idle {m['idle_rss_kib'] / 1024:.1f} MiB; target < 30 MiB)")
EOF
