#!/usr/bin/env bash
# benches/client-watch.sh — a write woken to 1,000 blocking-query watchers of one key spread
# over client agents (issue 10, "Performance"), next to the same watchers directly on the
# server (the anchor, same run). Latency is PUT issued -> watcher has the new value; p50/p99
# over BENCH_WRITES paced writes, and the server's CPU per write.
#
#   bash benches/client-watch.sh
#
# One server and BENCH_CLIENTS (5) client agents, each on its own loopback address
# 127.201.1.x with the default ports; the writer always writes to the server. Knobs:
# BENCH_WATCHERS=1000, BENCH_WRITES=200, BENCH_RATE=20, BENCH_NO_BUILD=1, BENCH_KEEP=1,
# BENCH_PROFILE=release (debug: the debug binaries).
# BENCH_TARGET=health watches `/v1/health/service/web` instead (each write re-registers the
# instance through /v1/catalog/register) and adds a second set of client agents started with
# `use_streaming_backend = false`: the same watchers through client agents with the streaming
# backend (one event stream per agent) and without it (one forwarded long poll per watcher),
# next to the anchor on the server, in the same run. BENCH_TARGET=catalog is the same with
# `/v1/catalog/service/web` watched (streamed by client agents, a long poll in Consul).
# Every target also runs etcd's watch (single-member etcd, fsync on, the same number of watch
# streams on one key, the same writes at the same rate) as the issue's anchor: BENCH_ETCD=0
# leaves it out; etcd is installed from Debian (etcd-server) when missing.
# A benchmark, not a test: it asserts nothing. Processes are stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

CLIENTS=${BENCH_CLIENTS:-5}
WATCHERS=${BENCH_WATCHERS:-1000}
WRITES=${BENCH_WRITES:-200}
RATE=${BENCH_RATE:-20}
NET=${BENCH_NET:-127.201.1}
TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/registry-target}
export CARGO_TARGET_DIR=$TARGET_DIR

WORK=$(mktemp -d /tmp/registry-client-watch.XXXXXX)
PIDS=()
trap cleanup_work EXIT
ulimit -n 65536 2>/dev/null || true

PROFILE=${BENCH_PROFILE:-release}
build_bins

ETCD=${BENCH_ETCD:-1}
if [ "$ETCD" = 1 ] && ! command -v etcd >/dev/null; then
    echo "installing etcd-server" >&2
    as_root=(); [ "$(id -u)" = 0 ] || as_root=(sudo)
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends etcd-server >&2
fi
# etcd's watch first, on its own (nothing of ours running yet): the anchor of the issue.
if [ "$ETCD" = 1 ]; then
    ETCD_CLIENT=${BENCH_ETCD_PORT:-23990}
    port_free 127.0.0.1 "$ETCD_CLIENT" || { echo "port $ETCD_CLIENT is busy" >&2; exit 1; }
    etcd --name w1 --data-dir "$WORK/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
        --listen-peer-urls "http://127.0.0.1:$((ETCD_CLIENT + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_CLIENT + 1))" \
        --initial-cluster "w1=http://127.0.0.1:$((ETCD_CLIENT + 1))" \
        --logger=zap --log-level=warn >"$WORK/etcd.log" 2>&1 &
    ETCD_PID=$!
    PIDS+=("$ETCD_PID")
    wait_http "http://127.0.0.1:$ETCD_CLIENT/health" 30
    sleep 1
    "$BENCH" etcd-watch --endpoint "127.0.0.1:$ETCD_CLIENT" --watchers "$WATCHERS" \
        --writes "$WRITES" --rate "$RATE" --pid "$ETCD_PID" --label "etcd watch (anchor)" \
        | tee "$WORK/etcd.jsonl"
    kill "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
fi

mkdir -p "$WORK/s1"
# The watchers come from one address, and without the streaming backend every watcher on a
# client holds one connection to the server: lift the per-client connection limits.
LIMITS='limits {
  http_max_conns_per_client = 65536
  rpc_max_conns_per_client = 65536
}'
"$BIN" agent -server -bootstrap-expect 1 -node s1 -data-dir "$WORK/s1" -bind "$NET.1" \
    -client "$NET.1" -hcl "$LIMITS" >"$WORK/s1.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_http "http://$NET.1:8500/v1/status/leader" 60
ADDRS=()
for k in $(seq 1 "$CLIENTS"); do
    ip=$NET.$((10 + k))
    mkdir -p "$WORK/c$k"
    "$BIN" agent -node "c$k" -data-dir "$WORK/c$k" -bind "$ip" -client "$ip" \
        -retry-join "$NET.1" -hcl "$LIMITS" >"$WORK/c$k.log" 2>&1 &
    PIDS+=("$!")
    wait_http "http://$ip:8500/v1/status/leader" 60
    ADDRS+=("$ip:8500")
done
CLIENT_ADDRS=$(IFS=,; echo "${ADDRS[*]}")
TARGET=${BENCH_TARGET:-key}
WATCH_ARGS=()
[ "$TARGET" = catalog ] && WATCH_ARGS=(--catalog)
if [ "$TARGET" = health ] || [ "$TARGET" = catalog ]; then
    POLL_ADDRS=()
    for k in $(seq 1 "$CLIENTS"); do
        ip=$NET.$((100 + k))
        mkdir -p "$WORK/p$k"
        "$BIN" agent -node "p$k" -data-dir "$WORK/p$k" -bind "$ip" -client "$ip" \
            -retry-join "$NET.1" -hcl "$LIMITS" -hcl 'use_streaming_backend = false' >"$WORK/p$k.log" 2>&1 &
        PIDS+=("$!")
        wait_http "http://$ip:8500/v1/status/leader" 60
        POLL_ADDRS+=("$ip:8500")
    done
    POLL_ADDRS=$(IFS=,; echo "${POLL_ADDRS[*]}")
fi
echo "nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg); $WATCHERS watchers, $WRITES writes at $RATE/s" >&2

if [ "$TARGET" = health ] || [ "$TARGET" = catalog ]; then
    "$BENCH" watch --addr "$NET.1:8500" --watchers "$WATCHERS" --writes "$WRITES" --rate "$RATE" \
        --service w-direct "${WATCH_ARGS[@]}" --pid "$SERVER_PID" \
        --label "$TARGET: server (anchor)" | tee "$WORK/direct.jsonl"
    "$BENCH" watch --addr "$NET.1:8500" --watch-addrs "$CLIENT_ADDRS" --watchers "$WATCHERS" \
        --writes "$WRITES" --rate "$RATE" --service w-stream "${WATCH_ARGS[@]}" --pid "$SERVER_PID" \
        --label "$TARGET: $CLIENTS clients, streaming" | tee "$WORK/clients.jsonl"
    "$BENCH" watch --addr "$NET.1:8500" --watch-addrs "$POLL_ADDRS" --watchers "$WATCHERS" \
        --writes "$WRITES" --rate "$RATE" --service w-poll "${WATCH_ARGS[@]}" --pid "$SERVER_PID" \
        --label "$TARGET: $CLIENTS clients, long polls" | tee "$WORK/polls.jsonl"
    RESULT_FILES=("$WORK/direct.jsonl" "$WORK/clients.jsonl" "$WORK/polls.jsonl")
    [ "$ETCD" = 1 ] && RESULT_FILES+=("$WORK/etcd.jsonl")
else
"$BENCH" watch --addr "$NET.1:8500" --watchers "$WATCHERS" --writes "$WRITES" --rate "$RATE" \
    --key w/direct --pid "$SERVER_PID" --label "server (anchor)" | tee "$WORK/direct.jsonl"
"$BENCH" watch --addr "$NET.1:8500" --watch-addrs "$CLIENT_ADDRS" --watchers "$WATCHERS" \
    --writes "$WRITES" --rate "$RATE" --key w/clients --pid "$SERVER_PID" \
    --label "via $CLIENTS client agents" | tee "$WORK/clients.jsonl"
    RESULT_FILES=("$WORK/direct.jsonl" "$WORK/clients.jsonl")
    [ "$ETCD" = 1 ] && RESULT_FILES+=("$WORK/etcd.jsonl")
fi
python3 - "${RESULT_FILES[@]}" <<'PY'
import json, sys
rows = [json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:]]
keys = [k for k in rows[0] if "p50" in k or "p99" in k or "cpu" in k]
for r in rows:
    print(f"{r.get('label',''):>24}: " + ", ".join(f"{k}={r[k]}" for k in keys if k in r), file=sys.stderr)
PY
mkdir -p benches/results
out=benches/results/client-watch-$(date -u +%Y%m%dT%H%M%SZ)-$TARGET.jsonl
cat "${RESULT_FILES[@]}" >"$out"
echo "results in $out" >&2
