#!/usr/bin/env bash
# benches/multi-dc.sh — multiple datacenters (issue 15, "Performance"):
#  1. a KV read of dc2 asked of dc1's server with ?dc=dc2 (forwarded over the server port)
#     next to the same read asked of dc2's server directly (the anchor, same run);
#  2. WAN pool convergence for 5 datacenters of 3 servers: the time from the start of all 15
#     processes until every server lists 15 alive WAN members, next to the time until every
#     server lists its 3 LAN members (the anchor, same processes, same run).
#
#   bash benches/multi-dc.sh
#
# Knobs: BENCH_DURATION=10 (measured seconds per read figure), BENCH_CLIENTS=1,
# BENCH_PROFILE=release|debug (default: release if built, else debug), BENCH_NO_BUILD=1,
# BENCH_KEEP=1, BENCH_PORT_BASE=29000, BENCH_NET=127.0.4 (the 5 DCs use $BENCH_NET<d>.<i>,
# e.g. 127.0.41.1-3 for dc1), BENCH_QUIET_MAX=10.
#
# A benchmark, not a test: it asserts nothing about timing. Every process listens on
# loopback only and is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source benches/lib.sh

DUR=${BENCH_DURATION:-10}
CLIENTS=${BENCH_CLIENTS:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BASE=${BENCH_PORT_BASE:-29000}
NET=${BENCH_NET:-127.0.4}
PROFILE=${BENCH_PROFILE:-}
if [ -z "$PROFILE" ]; then
    if [ -x "$TARGET_DIR/release/registry" ]; then PROFILE=release; else PROFILE=debug; fi
fi
build_bins

WORK=$(mktemp -d /tmp/registry-mdc-bench.XXXXXX)
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
PIDS=()
cleanup() {
    stop_pids
    if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
echo "profile: $PROFILE" >&2

# --- 1. forwarded ?dc= read vs the same read in its own datacenter -----------------------
DC1_HTTP=$((BASE + 500)) DC1_SRV=$((BASE + 300))
DC2_HTTP=$((BASE + 510)) DC2_SRV=$((BASE + 310))
start_single "$BIN" "$WORK/dc1" "$DC1_HTTP" "$DC1_SRV" -datacenter dc1
PIDS+=("$PID")
DC1_PID=$PID
start_single "$BIN" "$WORK/dc2" "$DC2_HTTP" "$DC2_SRV" -datacenter dc2 \
    -retry-join-wan "127.0.0.1:$((DC1_SRV + 2))"
PIDS+=("$PID")
DC2_PID=$PID
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$DC1_HTTP/v1/catalog/datacenters" | grep -q dc2 && break
    sleep 0.1
done
curl -sf -X PUT -d "$(head -c 100 /dev/zero | tr '\0' v)" \
    "http://127.0.0.1:$DC2_HTTP/v1/kv/bench/key" >/dev/null
curl -sf "http://127.0.0.1:$DC1_HTTP/v1/kv/bench/key?dc=dc2" >/dev/null

printf '\n== KV read of dc2, %s client(s): asked of dc2 (anchor), then of dc1 with ?dc=dc2\n' \
    "$CLIENTS" >&2
bench "dc2-local" http-get "http://127.0.0.1:$DC2_HTTP/v1/kv/bench/key" \
    --clients "$CLIENTS" --duration "$DUR" --pid "$DC2_PID"
bench "dc1-forwarded" http-get "http://127.0.0.1:$DC1_HTTP/v1/kv/bench/key?dc=dc2" \
    --clients "$CLIENTS" --duration "$DUR" --pid "$DC1_PID" --pid "$DC2_PID"
stop_pids

# --- 2. WAN convergence, 5 datacenters x 3 servers ------------------------------------------
printf '\n== WAN convergence: 5 datacenters x 3 servers on %sN.1-3\n' "$NET" >&2
ADDRS=()
for d in 1 2 3 4 5; do
    for i in 1 2 3; do
        ip="$NET$d.$i"
        ADDRS+=("$ip")
        dir="$WORK/c-dc$d-$i"
        mkdir -p "$dir"
        args=(agent -server -bootstrap-expect 3 -datacenter "dc$d" -node "s$i" -data-dir "$dir"
            -bind "$ip" -client "$ip" -dns-port 0)
        for j in 1 2 3; do args+=(-retry-join "$NET$d.$j"); done
        [ "$d" != 1 ] && args+=(-retry-join-wan "${NET}1.1")
        "$BIN" "${args[@]}" >"$dir.log" 2>&1 &
        PIDS+=("$!")
    done
done
python3 - "$RESULTS" "${ADDRS[@]}" <<'EOF'
import json, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
results, addrs = sys.argv[1], sys.argv[2:]
pool = ThreadPoolExecutor(max_workers=len(addrs))
start = time.monotonic()
def get(ip, path):
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{ip}:8500{path}", timeout=2) as r:
            return json.load(r)
    except Exception:
        return None
lan_done = wan_done = dcs_done = None
while time.monotonic() - start < 180 and wan_done is None:
    lan = list(pool.map(lambda ip: get(ip, "/v1/agent/members"), addrs))
    wan = list(pool.map(lambda ip: get(ip, "/v1/agent/members?wan=1"), addrs))
    # A condition counts from the end of the poll that saw it (an upper bound).
    now = time.monotonic() - start
    alive = lambda ms: sum(1 for m in (ms or []) if m.get("Status") == 1)
    if lan_done is None and all(alive(m) == 3 for m in lan):
        lan_done = now
    if dcs_done is None:
        dcs = get(addrs[0], "/v1/catalog/datacenters") or []
        if len(dcs) == 5:
            dcs_done = now
    if all(alive(m) == 15 for m in wan):
        wan_done = now
    time.sleep(0.1)
row = {"label": "wan-convergence", "datacenters": 5, "servers": 15,
       "lan_all_members_s": lan_done, "wan_all_members_s": wan_done,
       "dc1_lists_5_dcs_s": dcs_done}
print(json.dumps(row))
open(results, "a").write(json.dumps(row) + "\n")
EOF
stop_pids

python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {r.get("label"): r for r in rows}
l, f = by.get("dc2-local"), by.get("dc1-forwarded")
if l and f:
    print(f"read p50: in dc2 {l['p50_us']} us, from dc1 with ?dc=dc2 {f['p50_us']} us, "
          f"added {f['p50_us'] - l['p50_us']} us (target < 1000 us)")
    print(f"read p99: in dc2 {l['p99_us']} us, from dc1 with ?dc=dc2 {f['p99_us']} us")
c = by.get("wan-convergence")
if c:
    print(f"5 DCs x 3 servers: every server sees its 3 LAN members after "
          f"{c['lan_all_members_s']} s (anchor), all 15 WAN members after "
          f"{c['wan_all_members_s']} s; dc1 lists 5 datacenters after {c['dc1_lists_5_dcs_s']} s")
EOF
