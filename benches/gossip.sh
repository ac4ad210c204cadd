#!/usr/bin/env bash
# LAN gossip at 50, 100 and 200 members in one process on loopback UDP ports: convergence,
# failure-detection time, gossip bytes/s and CPU per member, false failures in steady state.
# Usage: benches/gossip.sh [steady-seconds]   (MEMBERS="50 100 200" to choose the sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
STEADY=${1:-60}
MEMBERS=${MEMBERS:-"50 100 200"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/registry-target}
cargo build --release -q -p registry-bench --bin gossip-bench
BIN=$CARGO_TARGET_DIR/release/gossip-bench
mkdir -p benches/results
out=benches/results/gossip-$(date -u +%Y%m%dT%H%M%SZ).jsonl
echo "nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
port=24000
for n in $MEMBERS; do
    "$BIN" --members "$n" --steady-secs "$STEADY" --base-port "$port" | tee -a "$out"
    port=$((port + n + 10))
done
echo "results in $out" >&2
