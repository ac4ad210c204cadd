#!/usr/bin/env bash
# benches/metrics-overhead.sh — the cost of metrics on KV PUT/s (issue 16 target: under 3%).
#
# Alternates rounds of the same release `registry` binary with metrics on (the default) and
# off (REGISTRY_METRICS=off: no recorder, no timers, no sampler), a one-server persistent
# registry each time (fresh data dir), `registry-bench kv-put` with 64 clients. Alternating
# spreads the drift of a shared machine over both sides; the medians are compared.
#
#   bash benches/metrics-overhead.sh
#
# Knobs: BENCH_ROUNDS=3 (pairs), BENCH_DURATION=10 (s per round), BENCH_CLIENTS=64,
# BENCH_NO_BUILD=1 (use the release binaries already built), BENCH_OUT=FILE (JSON lines).
# A benchmark: prints figures, asserts nothing. Servers listen on 127.0.0.1 only and are
# stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. benches/lib.sh

ROUNDS=${BENCH_ROUNDS:-3}
DUR=${BENCH_DURATION:-10}
CLIENTS=${BENCH_CLIENTS:-64}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/metrics-overhead.XXXXXX)
RESULTS=${BENCH_OUT:-$WORK/results.jsonl}
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    cargo build --release -p registry-agent -p registry-bench >&2
fi
BIN=$TARGET_DIR/release/registry
BENCH=$TARGET_DIR/release/registry-bench
HTTP=18650
SRV=18660

run_round() { # on|off, round
    local mode=$1 round=$2 dir=$WORK/$1-$2
    if [ "$mode" = off ]; then
        REGISTRY_METRICS=off start_single "$BIN" "$dir" "$HTTP" "$SRV"
    else
        start_single "$BIN" "$dir" "$HTTP" "$SRV"
    fi
    if [ "$mode" = on ]; then
        curl -sf "http://127.0.0.1:$HTTP/v1/agent/metrics?format=prometheus" | grep -q consul_runtime_alloc_bytes \
            || { sleep 1.5; curl -sf "http://127.0.0.1:$HTTP/v1/agent/metrics?format=prometheus" | grep -q consul_runtime_alloc_bytes; } \
            || { echo "metrics are not on" >&2; exit 1; }
    else
        ! curl -sf "http://127.0.0.1:$HTTP/v1/agent/metrics?format=prometheus" | grep -q consul_ \
            || { echo "metrics are not off" >&2; exit 1; }
    fi
    bench "metrics-$mode" kv-put --addr "127.0.0.1:$HTTP" --clients "$CLIENTS" \
        --duration "$DUR" --pid "$PID" >/dev/null
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
}

for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then run_round on "$r"; run_round off "$r"; else run_round off "$r"; run_round on "$r"; fi
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
by = {}
for r in rows:
    by.setdefault(r["label"], []).append(r)
def med(label, key):
    return statistics.median(r[key] for r in by[label] if key in r)
print(f"{'metrics':<8} {'rounds':>6} {'PUT/s (each)':<30} {'median':>9} {'p99 us':>7}")
for label in ("metrics-on", "metrics-off"):
    each = ", ".join(f"{r['ops_per_s']:.0f}" for r in by[label])
    p99 = med(label, "p99_us") if any("p99_us" in r for r in by[label]) else float("nan")
    print(f"{label[8:]:<8} {len(by[label]):>6} {each:<30} {med(label, 'ops_per_s'):>9.0f} {p99:>7.0f}")
on, off = med("metrics-on", "ops_per_s"), med("metrics-off", "ops_per_s")
print(f"overhead of metrics on KV PUT/s: {100 * (off - on) / off:+.1f}% (target: under 3%)")
PY
