#!/usr/bin/env bash
# LAN gossip at 50, 100 and 200 members in one process on loopback UDP ports: convergence,
# failure-detection time, gossip bytes/s and CPU per member, false failures in steady state.
# Usage: benches/gossip.sh [steady-seconds]   (MEMBERS="50 100 200" to choose the sizes)
#
# With COMPARE=1 (the default) every size runs twice in the same run: "after" (the agent as
# it is) and "before" (the member list recomputed on every poll and polled by copying every
# member's list, as before the change check; REGISTRY_GOSSIP_ALWAYS_RECOMPUTE=1 and
# --copying-polls). EXTRA="--phi 24" or DIGEST=v0 try other settings on the "after" run;
# THREADS (default 2) sets the worker threads of both runs: on a machine whose run queue is
# long, one process with 2 threads gets 2 threads' share of the CPU for all its members
# (a real deployment has one process, with its own share, per member).
set -euo pipefail
cd "$(dirname "$0")/.."
STEADY=${1:-60}
MEMBERS=${MEMBERS:-"50 100 200"}
COMPARE=${COMPARE:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/registry-target}
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -q -p registry-bench --bin gossip-bench
BIN=$CARGO_TARGET_DIR/release/gossip-bench
mkdir -p benches/results
out=benches/results/gossip-$(date -u +%Y%m%dT%H%M%SZ).jsonl
echo "nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
port=24000
for n in $MEMBERS; do
    echo "== $n members: after" >&2
    REGISTRY_GOSSIP_DIGEST=${DIGEST:-v1} "$BIN" --members "$n" --steady-secs "$STEADY" \
        --base-port "$port" --threads "${THREADS:-2}" --label after ${EXTRA:-} | tee -a "$out" || true
    port=$((port + n + 10))
    if [ "$COMPARE" = 1 ]; then
        echo "== $n members: before" >&2
        REGISTRY_GOSSIP_ALWAYS_RECOMPUTE=1 "$BIN" --members "$n" --steady-secs "$STEADY" \
            --base-port "$port" --threads "${THREADS:-2}" --copying-polls --label before | tee -a "$out" || true
        port=$((port + n + 10))
    fi
    echo "load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "results in $out" >&2
