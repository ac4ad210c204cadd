#!/usr/bin/env bash
# benches/cluster-ab.sh — 1-client (or N-client) KV PUT latency on 3-server clusters of
# several registry binaries and on a 3-member etcd cluster, alternating, so that every build
# sees the same (noisy) machine: etcd, A, B, ..., etcd, A, B, ... each on fresh processes and
# data dirs, with the load sent to each cluster's leader.
#
#   bash benches/cluster-ab.sh ROUNDS SECONDS CLIENTS etcd OLD_REGISTRY NEW_REGISTRY ...
#   e.g. bash benches/cluster-ab.sh 4 5 1 etcd /tmp/old/registry target/release/registry
#
# Prints one JSON line per measurement (label "<binary or etcd>.<round>") and a summary line
# with p50/p99. The load generator is $BENCH (default $CARGO_TARGET_DIR/release/registry-bench,
# else target/release/registry-bench). Registry servers listen on $BENCH_NET.1-3 (default
# 127.0.91), etcd on 127.0.0.1:23791-23793. Benchmark only: asserts nothing about timing.
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,13p "$0" >&2; exit 2; }
ROUNDS=$1 SECS=$2 CLIENTS=$3
shift 3
TARGETS=()
for t in "$@"; do
    if [ "$t" = etcd ]; then TARGETS+=(etcd); else TARGETS+=("$(realpath "$t")"); fi
done
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
BENCH=${BENCH:-${CARGO_TARGET_DIR:-$PWD/target}/release/registry-bench}
NET=${BENCH_NET:-127.0.91}
WORK=$(mktemp -d /tmp/registry-cluster-ab.XXXXXX)
OUT=$WORK/results.jsonl
PIDS=()
trap 'stop_pids; rm -rf "$WORK"' EXIT

run_registry() { # binary, label
    local bin=$1 label=$2 i leader=""
    rm -rf "$WORK/r"
    for i in 1 2 3; do
        mkdir -p "$WORK/r/d$i"
        NO_COLOR=1 "$bin" agent -server -data-dir "$WORK/r/d$i" -node "n$i" -bind "$NET.$i" \
            -client "$NET.$i" -dns-port 0 -log-level warn -bootstrap-expect 3 \
            -retry-join "$NET.1" -retry-join "$NET.2" -retry-join "$NET.3" \
            >"$WORK/r/l$i.log" 2>&1 &
        PIDS+=("$!")
    done
    for _ in $(seq 300); do
        leader=$(curl -s "http://$NET.1:8500/v1/status/leader" | tr -d '"' || true)
        [ -n "$leader" ] && break
        sleep 0.1
    done
    [ -n "$leader" ] || { echo "cluster did not form" >&2; exit 1; }
    sleep 2
    "$BENCH" kv-put --addr "${leader%%:*}:8500" --clients "$CLIENTS" --duration "$SECS" \
        --warmup 1 --pid "${PIDS[0]}" --pid "${PIDS[1]}" --pid "${PIDS[2]}" --label "$label" \
        2>/dev/null | head -1 | tee -a "$OUT"
    stop_pids
}

run_etcd() { # label
    local label=$1
    rm -rf "$WORK/e"
    mkdir -p "$WORK/e"
    ETCD_PIDS=()
    etcd3_start "$WORK/e"
    PIDS+=("${ETCD_PIDS[@]}")
    sleep 1
    "$BENCH" etcd-put --endpoint "$(etcd3_endpoint leader)" --clients "$CLIENTS" \
        --duration "$SECS" --warmup 1 --pid "${ETCD_PIDS[1]}" --pid "${ETCD_PIDS[2]}" \
        --pid "${ETCD_PIDS[3]}" --label "$label" 2>/dev/null | head -1 | tee -a "$OUT"
    stop_pids
}

for r in $(seq "$ROUNDS"); do
    n=0
    for t in "${TARGETS[@]}"; do
        n=$((n + 1))
        if [ "$t" = etcd ]; then run_etcd "etcd.$r"; else run_registry "$t" "$n.$(basename "$t").$r"; fi
    done
done
echo "== p50 / p99 per run (µs)"
python3 - "$OUT" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f'{r["label"]:40} p50 {r["p50_us"]:>6} p99 {r["p99_us"]:>7} ops/s {r["ops_per_s"]:>8} foreign_cpu_s {r.get("foreign_cpu_s")}')
EOF
