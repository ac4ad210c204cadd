#!/usr/bin/env bash
# benches/scans-ab.sh — before/after figures for whole-catalog scans (issue 18), with two
# registry binaries taking turns on the same catalog in the same minutes:
#
#   ptr   dnsperf of DNS reverse lookups (PTR) against a server holding BENCH_NODES nodes
#         (BENCH_PER_NODE instances each, and a node-level check each). The query file
#         names 250,000 distinct addresses (10.0-3.x.y; the nodes are 10.0.0.1 onwards), so
#         that every query misses the per-worker answer cache (65,536 entries) and the
#         answer is built from the store: the cost of the lookup itself, queries/s and the
#         server's CPU per query.
#   idle  the server's CPU over BENCH_IDLE seconds with nothing to do (the leader's gossip
#         reconciliation walked every catalog node with checks every 5 s before).
#
# The catalog is filled once (through batched `PUT /v1/txn`, by NEW) and saved with
# `GET /v1/snapshot`; each turn starts the binary as `agent -dev` and restores it.
#
#   bash benches/scans-ab.sh OLD_REGISTRY NEW_REGISTRY [ROUNDS]
#
# Knobs: BENCH_NODES=10000, BENCH_PER_NODE=5, BENCH_DURATION=15 (s of dnsperf),
# BENCH_IDLE=60, BENCH_IP=127.0.94.1, BENCH=registry-bench binary (default: the debug build),
# BENCH_OUT=FILE (copy of the raw JSON lines). A benchmark, not a test: it asserts nothing
# about timing. Loopback only; every process it starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

OLD=${1:?usage: scans-ab.sh OLD_REGISTRY NEW_REGISTRY [ROUNDS]}
NEW=${2:?usage: scans-ab.sh OLD_REGISTRY NEW_REGISTRY [ROUNDS]}
ROUNDS=${3:-2}
NODES=${BENCH_NODES:-10000}
PER_NODE=${BENCH_PER_NODE:-5}
DUR=${BENCH_DURATION:-15}
IDLE=${BENCH_IDLE:-60}
IP=${BENCH_IP:-127.0.94.1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BENCH=${BENCH:-$TARGET_DIR/debug/registry-bench}
TICKS=$(getconf CLK_TCK)

WORK=$(mktemp -d /tmp/registry-scans.XXXXXX)
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
PIDS=()
log() { printf '\n== %s\n' "$*" >&2; }
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
trap cleanup_work EXIT
trap 'exit 130' INT TERM

command -v dnsperf >/dev/null || { echo "dnsperf is not installed" >&2; exit 1; }
mkdir -p "$WORK/bin"
cp "$OLD" "$WORK/bin/old"
cp "$NEW" "$WORK/bin/new"
cp "$BENCH" "$WORK/bin/registry-bench"
BENCH=$WORK/bin/registry-bench

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}
start() { # binary
    (exec 3<>"/dev/tcp/$IP/8500") 2>/dev/null && { echo "$IP:8500 is busy" >&2; exit 1; }
    NO_COLOR=1 "$1" agent -dev -node scans -bind "$IP" -client "$IP" -log-level warn \
        >>"$WORK/agent.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 600); do
        local leader
        leader=$(curl -s --max-time 1 "http://$IP:8500/v1/status/leader" || true)
        if [ -n "$leader" ] && [ "$leader" != '""' ]; then return 0; fi
        sleep 0.1
    done
    echo "no leader" >&2
    tail -20 "$WORK/agent.log" >&2
    exit 1
}
ptr_of() { dig +short +time=2 +tries=2 @"$IP" -p 8600 -x "$1"; }

log "filling $NODES nodes x $PER_NODE instances (new binary)"
start "$WORK/bin/new"
"$BENCH" fill --addr "$IP:8500" --nodes-to "$NODES" --per-node "$PER_NODE" --node-check \
    --label fill | tee -a "$RESULTS"
curl -sf -o "$WORK/fill.snap" "http://$IP:8500/v1/snapshot"
stop_pid "$PID"

awk 'BEGIN { for (a = 0; a < 4; a++) for (b = 0; b < 250; b++) for (c = 1; c <= 250; c++)
    printf "%d.%d.%d.10.in-addr.arpa PTR\n", c, b, a }' >"$WORK/ptr-queries.txt"

for round in $(seq "$ROUNDS"); do
    for which in old new; do
        log "round $round: $which"
        start "$WORK/bin/$which"
        curl -sf -o /dev/null -X PUT --data-binary @"$WORK/fill.snap" "http://$IP:8500/v1/snapshot"
        got=$(ptr_of 10.0.0.1)
        [ "$got" = "node-0.node.dc1.consul." ] || { echo "PTR 10.0.0.1 answered '$got'" >&2; exit 1; }
        sleep 5
        rss=$(awk '/VmRSS/{print $2}' "/proc/$PID/status")
        c0=$(cpu_ticks "$PID")
        dnsperf -s "$IP" -p 8600 -d "$WORK/ptr-queries.txt" -l "$DUR" -c 4 -T 1 -q 500 \
            >"$WORK/dnsperf.txt" 2>&1 || true
        c1=$(cpu_ticks "$PID")
        qps=$(awk '/Queries per second/{print $4}' "$WORK/dnsperf.txt")
        done_q=$(awk '/Queries completed/{print $3}' "$WORK/dnsperf.txt")
        lost=$(awk '/Queries lost/{print $3}' "$WORK/dnsperf.txt")
        cpu_us=$(awk -v d="$((c1 - c0))" -v t="$TICKS" -v q="${done_q:-0}" \
            'BEGIN { if (q > 0) printf "%.1f", d / t * 1e6 / q; else print "null" }')
        echo "{\"mode\":\"ptr\",\"binary\":\"$which\",\"round\":$round,\"qps\":${qps:-0},\"completed\":${done_q:-0},\"lost\":${lost:-0},\"server_cpu_us_per_query\":$cpu_us,\"rss_kib\":$rss}" |
            tee -a "$RESULTS"
        sleep 5
        c2=$(cpu_ticks "$PID")
        sleep "$IDLE"
        c3=$(cpu_ticks "$PID")
        pct=$(awk -v d="$((c3 - c2))" -v t="$TICKS" -v s="$IDLE" 'BEGIN { printf "%.2f", d / t / s * 100 }')
        echo "{\"mode\":\"idle\",\"binary\":\"$which\",\"round\":$round,\"seconds\":$IDLE,\"cpu_ms\":$(((c3 - c2) * 1000 / TICKS)),\"cpu_pct\":$pct}" |
            tee -a "$RESULTS"
        stop_pid "$PID"
    done
done

[ -n "${BENCH_OUT:-}" ] && cp "$RESULTS" "$BENCH_OUT"
log "summary (medians over $ROUNDS rounds)"
python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(mode, which, key):
    v = [r[key] for r in rows if r.get("mode") == mode and r.get("binary") == which and r.get(key) is not None]
    return statistics.median(v) if v else float("nan")
print("| figure | old | new | new / old |")
print("|---|---|---|---|")
for mode, key, name in [("ptr", "qps", "PTR queries/s (every one a cache miss)"),
                        ("ptr", "server_cpu_us_per_query", "server CPU per PTR query (us)"),
                        ("ptr", "rss_kib", "server RSS with the catalog restored (KiB)"),
                        ("idle", "cpu_ms", "server CPU over the idle window (ms)")]:
    o, n = med(mode, "old", key), med(mode, "new", key)
    print(f"| {name} | {o:,.1f} | {n:,.1f} | {n / o if o else float('nan'):.2f}x |")
EOF
