#!/usr/bin/env bash
# benches/scale-ab.sh — benches/scale.sh on two registry binaries alternately (A, B, A, B,
# ... each on a fresh 3-server cluster), so that both see the same machine in the same
# minutes: the before/after figure of a scale fix.
#
#   bash benches/scale-ab.sh OLD_REGISTRY NEW_REGISTRY ROUNDS
#   e.g. BENCH_ONLY="rss get" BENCH_NODES=4000 BENCH_INSTANCES=68000 \
#            bash benches/scale-ab.sh /tmp/old/registry target/release/registry 2
#
# Every BENCH_* knob of scale.sh applies (default here: catalog run only, BENCH_ONLY=rss,
# i.e. the fill rate at each stage plus memory). Prints each run's table, then the median
# per binary and stage of the fill rate. Benchmark only: asserts nothing.
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,12p "$0" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
ROUNDS=$3
cd "$(dirname "$0")/.."
export BENCH_RUNS=${BENCH_RUNS:-catalog} BENCH_ONLY=${BENCH_ONLY:-rss}
OUT=$(mktemp -d /tmp/registry-scale-ab.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
for r in $(seq "$ROUNDS"); do
    for side in a b; do
        bin=$A
        [ "$side" = b ] && bin=$B
        echo "== round $r, $side: $bin" >&2
        REG=$bin BENCH_OUT="$OUT/$side.$r.jsonl" BENCH_NO_BUILD=1 bash benches/scale.sh >&2
    done
done
python3 - "$OUT" "$A" "$B" <<'PY'
import glob, json, os, statistics, sys
out, paths = sys.argv[1], {"a": sys.argv[2], "b": sys.argv[3]}
fields = [("fill", "instances_per_s"), ("fill", "kv_keys_per_s"), ("rss", "leader_rss_kib"),
          ("get", "ops_per_s"), ("watch", "all_p99_us"), ("put", "ops_per_s")]
for side in ("a", "b"):
    rows = {}
    for f in glob.glob(os.path.join(out, f"{side}.*.jsonl")):
        for line in open(f):
            if line.startswith("{"):
                r = json.loads(line)
                rows.setdefault(r.get("label", ""), []).append(r)
    print(f"median per stage ({side}: {paths[side]})")
    for label in sorted(rows, key=lambda l: (l.split(".")[0], float(l.split(".")[1]) if l.count(".") == 2 else 0, l)):
        run, _, mode = label.partition(".")[0], None, label.rsplit(".", 1)[-1]
        for m, field in fields:
            vals = [r[field] for r in rows[label] if r.get(field) is not None]
            if mode == m and vals:
                print(f"  {label:24} {field:18} {statistics.median(vals):>12,.0f}   (runs: {', '.join(f'{v:,.0f}' for v in vals)})")
PY
