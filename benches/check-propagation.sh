#!/usr/bin/env bash
# benches/check-propagation.sh — a check turns critical on one client agent -> its instance
# is gone from a `?passing` blocking query on another client agent (issue 10, "Performance":
# p99 under 1 s, excluding the check's own interval).
#
#   bash benches/check-propagation.sh
#
# Three servers and two client agents, each on its own loopback address (127.202.1.x, default
# ports). Client A registers service `prop` with a TTL check; client B holds a blocking
# `GET /v1/health/service/prop?passing` (the streaming backend, as deployed). Each round
# passes the TTL check on A and waits until B lists the instance, then fails it on A
# (`PUT /v1/agent/check/fail/...`: the check's state changes at once, so no check interval is
# in the figure) and times until B's blocking query returns without it. The same is measured
# with the blocking query on a server (the anchor: no client hop on the reading side).
# Knobs: BENCH_ROUNDS=100, BENCH_NO_BUILD=1, BENCH_PROFILE=release|debug, REG=binary,
# BENCH_KEEP=1. A benchmark: it prints figures and asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

ROUNDS=${BENCH_ROUNDS:-100}
NET=${BENCH_NET:-127.202.1}
TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/registry-target}
export CARGO_TARGET_DIR=$TARGET_DIR
PROFILE=${BENCH_PROFILE:-release}
build_bins

WORK=$(mktemp -d /tmp/registry-check-prop.XXXXXX)
PIDS=()
trap cleanup_work EXIT

JOIN=(-retry-join "$NET.1" -retry-join "$NET.2" -retry-join "$NET.3")
for i in 1 2 3; do
    port_free "$NET.$i" 8500 || { echo "$NET.$i:8500 is busy" >&2; exit 1; }
    mkdir -p "$WORK/s$i"
    "$BIN" agent -server -bootstrap-expect 3 -node "s$i" -data-dir "$WORK/s$i" -bind "$NET.$i" \
        -client "$NET.$i" "${JOIN[@]}" >"$WORK/s$i.log" 2>&1 &
    PIDS+=("$!")
done
for i in 11 12; do
    port_free "$NET.$i" 8500 || { echo "$NET.$i:8500 is busy" >&2; exit 1; }
    mkdir -p "$WORK/c$i"
    "$BIN" agent -node "c$i" -data-dir "$WORK/c$i" -bind "$NET.$i" -client "$NET.$i" \
        "${JOIN[@]}" >"$WORK/c$i.log" 2>&1 &
    PIDS+=("$!")
done
for i in 1 2 3 11 12; do
    for _ in $(seq 600); do
        curl -sf "http://$NET.$i:8500/v1/status/leader" 2>/dev/null | grep -q ':' && break
        sleep 0.1
    done
done
echo "nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS rounds" >&2

mkdir -p benches/results
out=benches/results/check-propagation-$(date -u +%Y%m%dT%H%M%SZ).jsonl
python3 - "$NET" "$ROUNDS" "$out" <<'PY'
import json, sys, threading, time, urllib.request

net, rounds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
writer = f"http://{net}.11:8500"


def req(method, url, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(r, timeout=timeout) as resp:
        return resp.status, resp.headers, resp.read()


req("PUT", f"{writer}/v1/agent/service/register", {
    "Name": "prop", "ID": "prop-1", "Port": 9000,
    "Check": {"CheckID": "prop-ttl", "Name": "ttl", "TTL": "600s"},
})


def run(reader, label):
    """Rounds of pass -> visible, fail -> gone, timed on the reader's blocking query."""
    url = f"{reader}/v1/health/service/prop?passing"
    index = [0]
    seen = []  # (time, count) of every answer
    cond = threading.Condition()
    stop = [False]

    def watch():
        while not stop[0]:
            try:
                _, h, body = req("GET", f"{url}&index={index[0]}&wait=5s", timeout=15)
            except Exception:
                time.sleep(0.05)
                continue
            now = time.monotonic()
            index[0] = int(h.get("X-Consul-Index", "0") or 0)
            with cond:
                seen.append((now, len(json.loads(body))))
                cond.notify_all()

    t = threading.Thread(target=watch, daemon=True)
    t.start()

    def wait_for(count, since, limit=30.0):
        deadline = time.monotonic() + limit
        with cond:
            while True:
                for at, c in seen:
                    if at >= since and c == count:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                cond.wait(left)

    lat = []
    for _ in range(rounds):
        t0 = time.monotonic()
        req("PUT", f"{writer}/v1/agent/check/pass/prop-ttl")
        if wait_for(1, t0) is None:
            raise SystemExit(f"{label}: the instance never came back to ?passing")
        time.sleep(0.05)
        t0 = time.monotonic()
        req("PUT", f"{writer}/v1/agent/check/fail/prop-ttl")
        at = wait_for(0, t0)
        if at is None:
            raise SystemExit(f"{label}: the instance never left ?passing")
        lat.append((at - t0) * 1e3)
    stop[0] = True
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    row = {"bench": "check-propagation", "label": label, "rounds": rounds,
           "p50_ms": round(pick(0.50), 2), "p99_ms": round(pick(0.99), 2),
           "max_ms": round(lat[-1], 2), "mean_ms": round(sum(lat) / len(lat), 2)}
    print(json.dumps(row))
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{label:>44}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, max {row['max_ms']} ms",
          file=sys.stderr)


run(f"http://{net}.12:8500", "client A critical -> gone on client B")
run(f"http://{net}.1:8500", "client A critical -> gone on a server (anchor)")
print(f"results in {out}", file=sys.stderr)
PY
