#!/usr/bin/env bash
# benches/tls.sh — the cost of TLS on the HTTP API (issue 14): GET/s of one KV key over HTTPS
# next to the same over plain HTTP, from one server serving both ports in the same run, and
# TLS handshakes/s (a new connection per request, next to new plain connections per request).
# Certificates come from `registry tls ca create` / `tls cert create -server`.
#
#   bash benches/tls.sh
#
# Knobs: BENCH_PROFILE=release|debug (release; debug uses the debug build as it is),
# BENCH_DURATION=10, BENCH_CLIENTS=16, BENCH_NO_BUILD=1, BENCH_OUT=FILE (JSON lines).
# A benchmark: prints figures, asserts nothing. Listens on 127.0.0.1 only; stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. benches/lib.sh

PROFILE=${BENCH_PROFILE:-release}
DUR=${BENCH_DURATION:-10}
CLIENTS=${BENCH_CLIENTS:-16}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/registry-tls-bench.XXXXXX)
RESULTS=${BENCH_OUT:-$WORK/results.jsonl}
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

build_bins
HTTP=18750
HTTPS=18751
SRV=18760

(cd "$WORK" && "$BIN" tls ca create >/dev/null && "$BIN" tls cert create -server >/dev/null)
cat >"$WORK/tls.hcl" <<HCL
ports {
  https = $HTTPS
}
tls {
  https {
    cert_file = "$WORK/dc1-server-consul-0.pem"
    key_file = "$WORK/dc1-server-consul-0-key.pem"
  }
}
limits {
  http_max_conns_per_client = 0
}
HCL
start_single "$BIN" "$WORK/data" "$HTTP" "$SRV" -config-file "$WORK/tls.hcl"
curl -sf -X PUT -d "$(head -c 100 /dev/zero | tr '\0' v)" "http://127.0.0.1:$HTTP/v1/kv/bench/key" >/dev/null
CA=$WORK/consul-agent-ca.pem
curl -sf --cacert "$CA" "https://127.0.0.1:$HTTPS/v1/kv/bench/key" >/dev/null \
    || { echo "HTTPS does not answer" >&2; exit 1; }

echo "== profile $PROFILE, $CLIENTS clients, ${DUR}s per figure" >&2
for round in 1 2; do
    bench "http.get.$round" tls-get --url "http://127.0.0.1:$HTTP/v1/kv/bench/key" \
        --clients "$CLIENTS" --duration "$DUR" >/dev/null
    bench "https.get.$round" tls-get --url "https://127.0.0.1:$HTTPS/v1/kv/bench/key" --ca "$CA" \
        --clients "$CLIENTS" --duration "$DUR" >/dev/null
    bench "http.connect.$round" tls-get --url "http://127.0.0.1:$HTTP/v1/kv/bench/key" \
        --clients "$CLIENTS" --duration "$DUR" --reconnect >/dev/null
    bench "https.handshake.$round" tls-get --url "https://127.0.0.1:$HTTPS/v1/kv/bench/key" \
        --ca "$CA" --clients "$CLIENTS" --duration "$DUR" --reconnect >/dev/null
done
python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
best = {}
for r in rows:
    k = r["label"].rsplit(".", 1)[0]
    best.setdefault(k, []).append(r["ops_per_s"])
med = {k: sorted(v)[len(v) // 2] for k, v in best.items()}
for k in ("http.get", "https.get", "http.connect", "https.handshake"):
    print(f"{k:18} {med.get(k, 0):>8.0f} /s")
if med.get("http.get"):
    print(f"HTTPS GET/s is {100 * med['https.get'] / med['http.get']:.0f}% of HTTP GET/s")
PY
