#!/usr/bin/env bash
# Gossip encryption cost: seal/open time per packet size next to a plain copy (the anchor),
# then one pool converging and gossiping without and with encryption in the same run.
# Usage: benches/gossip-encrypt.sh [members] [steady-seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${1:-50}
STEADY=${2:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/registry-target}
PROFILE=${REGISTRY_PROFILE:-release}
if [ "$PROFILE" = release ]; then
    cargo build --release -q -p registry-bench --bin gossip-bench
else
    cargo build -q -p registry-bench --bin gossip-bench
    PROFILE=debug
fi
BIN=$CARGO_TARGET_DIR/$PROFILE/gossip-bench
mkdir -p benches/results
out=benches/results/gossip-encrypt-$(date -u +%Y%m%dT%H%M%SZ).jsonl
echo "nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg), profile $PROFILE" >&2
"$BIN" --codec --members "$MEMBERS" --steady-secs "$STEADY" --base-port 24000 | tee -a "$out"
"$BIN" --encrypt --members "$MEMBERS" --steady-secs "$STEADY" --base-port 24200 | tee -a "$out"
echo "results in $out" >&2
