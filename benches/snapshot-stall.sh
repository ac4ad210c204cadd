#!/usr/bin/env bash
# benches/snapshot-stall.sh — PUT latency while Raft snapshots of a large state are built, on
# two registry binaries alternately (A, B, A, B, ... each on a fresh single server and data
# dir), so that both see the same machine.
#
#   bash benches/snapshot-stall.sh OLD_REGISTRY NEW_REGISTRY ROUNDS [-- <snapshot-stall args>]
#   e.g. bash benches/snapshot-stall.sh /tmp/old/registry target/release/registry 2 -- \
#            --fill-mib 400 --duration 30 --clients 4
#
# Each run fills the KV store (`registry-bench snapshot-stall`: 16 KiB values, 400 MiB by
# default), then measures small PUTs; the server snapshots every SNAP_THRESHOLD (1024) log
# entries and keeps SNAP_TRAILING (1024). Prints one JSON line per run, with the snapshots
# the server logged as built during the measured window (how many, their size, and their
# build time when the binary logs it), and at the end the median of a few fields per binary.
# The load generator is $BENCH (default $CARGO_TARGET_DIR/release/registry-bench, else
# target/release/registry-bench). Knobs: BENCH_PORT_BASE (27000; HTTP port is +600).
# Benchmark only: asserts nothing.
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,17p "$0" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
ROUNDS=$3
shift 3
[ $# -eq 0 ] || { [ "$1" = -- ] && shift; }
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
BENCH=${BENCH:-${CARGO_TARGET_DIR:-$PWD/target}/release/registry-bench}
BASE=${BENCH_PORT_BASE:-27000}
HTTP=$((BASE + 600))
SRV=$((BASE + 610))
WORK=$(mktemp -d /tmp/registry-stall.XXXXXX)
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

printf '{"raft_snapshot_threshold": %s, "raft_trailing_logs": %s}\n' \
    "${SNAP_THRESHOLD:-1024}" "${SNAP_TRAILING:-1024}" >"$WORK/config.json"

run_one() { # label, binary, snapshot-stall args...
    local label=$1 bin=$2 dir=$WORK/data.$1
    shift 2
    start_single "$bin" "$dir" $HTTP $SRV -log-level info -config-file "$WORK/config.json"
    sleep 0.5
    local line
    "$BENCH" snapshot-stall "$@" --addr "127.0.0.1:$HTTP" --pid "$PID" --label "$label" \
        >"$dir.json"
    line=$(tail -n 1 "$dir.json")
    # The snapshots the server logged as built during the measured window.
    python3 - "$line" "$dir.log" <<'PY' | tee -a "$OUT"
import json, re, sys
from datetime import datetime
row = json.loads(sys.argv[1])
lo, hi = row["window_start_unix_ms"], row["window_end_unix_ms"]
built = []
for l in open(sys.argv[2], errors="replace"):
    l = re.sub(r"\x1b\[[0-9;]*m", "", l)
    if "built snapshot" not in l:
        continue
    t = datetime.fromisoformat(l.split()[0].replace("Z", "+00:00")).timestamp() * 1000
    if lo <= t <= hi:
        built.append(l)
ms = [int(m.group(1)) for l in built for m in [re.search(r"\bms=(\d+)", l)] if m]
size = [int(m.group(1)) for l in built for m in [re.search(r"\bbytes=(\d+)", l)] if m]
row["snapshots_built"] = len(built)
if size:
    row["snapshot_bytes_max"] = max(size)
if ms:
    row["snapshot_build_ms_max"] = max(ms)
    row["snapshot_build_ms_median"] = sorted(ms)[len(ms) // 2]
print(json.dumps(row))
PY
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
fields = ["fill_s", "ops_per_s", "p50_us", "p99_us", "p999_us", "max_us", "over_100ms",
          "slow_ms_total", "snapshots_built", "snapshot_build_ms_median", "snapshot_build_ms_max",
          "rss_after_fill_kib", "rss_end_kib"]
for side, path in (("a", sys.argv[2]), ("b", sys.argv[3])):
    mine = [r for r in rows if r.get("label", "").startswith(side + ".")]
    med = {f: statistics.median(r[f] for r in mine) for f in fields if mine and all(f in r for r in mine)}
    print(f"median of {len(mine)} ({side}: {path}): " + ", ".join(f"{k}={v:g}" for k, v in med.items()))
PY
