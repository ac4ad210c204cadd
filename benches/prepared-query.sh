#!/usr/bin/env bash
# benches/prepared-query.sh — prepared query execution rate next to a plain
# `/v1/health/service` read of the same service, in the same run (issue 15).
#
# One persistent server (fresh data dir), 20 instances of `web` on 20 nodes with a passing
# check each, a prepared query `web` (`OnlyPassing`, one tag filter) and `registry-bench
# http-get` against `GET /v1/query/web/execute` and `GET /v1/health/service/web?passing`,
# alternated over BENCH_ROUNDS pairs so drift on a shared machine hits both sides.
#
#   bash benches/prepared-query.sh
#
# Knobs: BENCH_ROUNDS=3, BENCH_DURATION=5 (s per round), BENCH_CLIENTS=32,
# BENCH_PROFILE=release|debug (the build measured; default release), BENCH_NO_BUILD=1,
# BENCH_OUT=FILE (JSON lines). A benchmark: prints figures, asserts nothing. The server
# listens on 127.0.0.1 only and is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. benches/lib.sh

ROUNDS=${BENCH_ROUNDS:-3}
DUR=${BENCH_DURATION:-5}
CLIENTS=${BENCH_CLIENTS:-32}
PROFILE=${BENCH_PROFILE:-release}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/prepared-query-bench.XXXXXX)
RESULTS=${BENCH_OUT:-$WORK/results.jsonl}
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

build_bins
HTTP=18750
SRV=18760
URL=http://127.0.0.1:$HTTP

start_single "$BIN" "$WORK/data" "$HTTP" "$SRV"
for i in $(seq 1 20); do
    tag=$([ $((i % 2)) = 0 ] && echo even || echo odd)
    curl -sf -X PUT "$URL/v1/catalog/register" -d "{\"Node\":\"n$i\",\"Address\":\"127.0.1.$i\",
        \"Service\":{\"ID\":\"web-$i\",\"Service\":\"web\",\"Tags\":[\"$tag\",\"v1\"],\"Port\":80},
        \"Check\":{\"CheckID\":\"c-$i\",\"Name\":\"c\",\"Status\":\"passing\",\"ServiceID\":\"web-$i\"}}" >/dev/null
done
curl -sf -X POST "$URL/v1/query" \
    -d '{"Name":"web","Service":{"Service":"web","OnlyPassing":true,"Tags":["v1","!canary"]}}' >/dev/null

for r in $(seq 1 "$ROUNDS"); do
    bench "health-service" http-get "$URL/v1/health/service/web?passing" \
        --clients "$CLIENTS" --duration "$DUR" --pid "$PID" >/dev/null
    bench "query-execute" http-get "$URL/v1/query/web/execute" \
        --clients "$CLIENTS" --duration "$DUR" --pid "$PID" >/dev/null
done

python3 - "$RESULTS" "$PROFILE" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(label, key):
    v = [r[key] for r in rows if r.get("label") == label and key in r]
    return statistics.median(v) if v else float("nan")
h, q = med("health-service", "ops_per_s"), med("query-execute", "ops_per_s")
print(f"profile={sys.argv[2]} rounds={len([r for r in rows if r.get('label') == 'health-service'])}")
print(f"health/service?passing (anchor): {h:.0f} req/s")
print(f"query execute:                   {q:.0f} req/s  ({q / h * 100:.0f}% of the anchor)")
for label in ("health-service", "query-execute"):
    for key in ("p50_us", "p99_us"):
        print(f"  {label} {key}: {med(label, key)}")
PY
