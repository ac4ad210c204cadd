#!/usr/bin/env bash
# benches/ab.sh — the same registry-bench figure on two registry binaries, alternating, so
# that both see the same (noisy) machine: A, B, A, B, ... each on a fresh server and data dir.
#
#   bash benches/ab.sh OLD_REGISTRY NEW_REGISTRY ROUNDS -- <registry-bench mode and args>
#   e.g. bash benches/ab.sh /tmp/old/registry target/release/registry 6 -- \
#            kv-put --clients 1 --duration 3 --warmup 1
#
# Prints one JSON line per measurement (label "a.<round>" / "b.<round>") and, at the end, the
# median of a few fields per binary. The load generator is $BENCH (default
# $CARGO_TARGET_DIR/release/registry-bench, else target/release/registry-bench); --addr and
# --pid are added. Knobs: BENCH_PORT_BASE (27000; HTTP port is +600), BENCH_AGENT_ARGS (extra
# `registry agent` arguments, e.g. "-config-file x.json"). Benchmark only: asserts nothing.
set -euo pipefail
[ $# -ge 4 ] && [ "$4" = -- ] || { sed -n 2,13p "$0" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
ROUNDS=$3
shift 4
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
BENCH=${BENCH:-${CARGO_TARGET_DIR:-$PWD/target}/release/registry-bench}
BASE=${BENCH_PORT_BASE:-27000}
HTTP=$((BASE + 600))
SRV=$((BASE + 610))
WORK=$(mktemp -d /tmp/registry-ab.XXXXXX)
OUT=$WORK/results.jsonl
PID=
cleanup() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run_one() { # label, binary, registry-bench args...
    local label=$1 bin=$2 dir=$WORK/data.$1
    shift 2
    # shellcheck disable=SC2086
    start_single "$bin" "$dir" $HTTP $SRV -log-level warn ${BENCH_AGENT_ARGS:-}
    sleep 0.5
    "$BENCH" "$@" --addr "127.0.0.1:$HTTP" --pid "$PID" --label "$label" | tee -a "$OUT"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    rm -rf "$dir"
}

for r in $(seq "$ROUNDS"); do
    run_one "a.$r" "$A" "$@"
    run_one "b.$r" "$B" "$@"
done

python3 - "$OUT" "$A" "$B" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
fields = ["ops_per_s", "p50_us", "p99_us", "all_p99_us", "server_cpu_us_per_op",
          "bench_cpu_us_per_op", "foreign_cpu_s", "rss_bytes_per_instance",
          "overhead_bytes_per_instance"]
for side, path in (("a", sys.argv[2]), ("b", sys.argv[3])):
    mine = [r for r in rows if r.get("label", "").startswith(side + ".")]
    med = {f: statistics.median(r[f] for r in mine) for f in fields if all(f in r for r in mine) and mine}
    print(f"median of {len(mine)} ({side}: {path}): " + ", ".join(f"{k}={v:g}" for k, v in med.items()))
PY
