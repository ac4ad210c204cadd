#!/usr/bin/env bash
# benches/gossip-steady.sh — false positives of the LAN failure detector in steady state
# (issue 10: "no false positive over 10 minutes of steady state").
#
#   bash benches/gossip-steady.sh [seconds]        (default 600)
#
# Starts 3 servers and BENCH_CLIENTS (default 5) client agents as real processes, each on
# its own loopback address 127.200.1.x with the default ports, waits until every agent lists
# every member alive, then for the whole window keeps a KV write load on the servers
# (registry-bench kv-put through a client agent, BENCH_WRITERS concurrent writers) and polls
# every agent's /v1/agent/members and the catalog's serfHealth checks once a second. It
# prints how many polls saw a member that is not alive (false failures: nothing is killed)
# and how many saw a serfHealth check not passing, with the load average.
#
# A benchmark, not a test: it prints figures and asserts nothing. Every process it starts
# is stopped by PID on exit. Knobs: BENCH_CLIENTS=5, BENCH_WRITERS=16, BENCH_NO_BUILD=1,
# BENCH_KEEP=1 (keep logs), BENCH_NET=127.200.1, BENCH_PROFILE=release (debug: use the debug
# binaries; without a registry-bench binary the load is a curl write loop).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source benches/lib.sh

WINDOW=${1:-600}
CLIENTS=${BENCH_CLIENTS:-5}
WRITERS=${BENCH_WRITERS:-16}
NET=${BENCH_NET:-127.200.1}
TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/registry-target}
export CARGO_TARGET_DIR=$TARGET_DIR

WORK=$(mktemp -d /tmp/registry-gossip-steady.XXXXXX)
PIDS=()
trap cleanup_work EXIT

PROFILE=${BENCH_PROFILE:-release}
build_bins

AGENTS=()
for i in 1 2 3; do
    ip=$NET.$i
    mkdir -p "$WORK/s$i"
    "$BIN" agent -server -bootstrap-expect 3 -node "s$i" -data-dir "$WORK/s$i" \
        -bind "$ip" -client "$ip" -retry-join "$NET.1" -retry-join "$NET.2" -retry-join "$NET.3" \
        >"$WORK/s$i.log" 2>&1 &
    PIDS+=("$!")
    AGENTS+=("$ip")
done
for i in 1 2 3; do wait_http "http://$NET.$i:8500/v1/status/leader" 60; done
for k in $(seq 1 "$CLIENTS"); do
    ip=$NET.$((10 + k))
    mkdir -p "$WORK/c$k"
    "$BIN" agent -node "c$k" -data-dir "$WORK/c$k" -bind "$ip" -client "$ip" \
        -retry-join "$NET.1" -retry-join "$NET.2" -retry-join "$NET.3" \
        >"$WORK/c$k.log" 2>&1 &
    PIDS+=("$!")
    AGENTS+=("$ip")
done
TOTAL=${#AGENTS[@]}

# Every agent lists every member alive.
deadline=$((SECONDS + 60))
for ip in "${AGENTS[@]}"; do
    until [ "$(curl -sf "http://$ip:8500/v1/agent/members" 2>/dev/null |
        python3 -c 'import json,sys; print(sum(1 for m in json.load(sys.stdin) if m["Status"]==1))' 2>/dev/null)" = "$TOTAL" ]; do
        if [ $SECONDS -gt $deadline ]; then echo "agent $ip never listed $TOTAL members alive" >&2; exit 1; fi
        sleep 0.5
    done
done
echo "nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg); $TOTAL agents converged; window ${WINDOW}s, $WRITERS writers" >&2

# Write load through the first client agent for the whole window.
if [ -x "$BENCH" ]; then
    "$BENCH" kv-put --addr "$NET.11:8500" --clients "$WRITERS" --duration "$WINDOW" --warmup 0 \
        --label steady >"$WORK/load.jsonl" 2>"$WORK/load.err" &
    LOAD_PID=$!
else
    ( end=$((SECONDS + ${WINDOW%.*})); n=0
      while [ $SECONDS -lt $end ]; do
          curl -sf -X PUT -d "v$n" "http://$NET.11:8500/v1/kv/steady/$((n % 100))" >/dev/null || true
          n=$((n + 1))
      done
      echo "{\"writes\": $n}" >"$WORK/load.jsonl" ) &
    LOAD_PID=$!
fi
PIDS+=("$LOAD_PID")

python3 - "$WINDOW" "$NET.1" "${AGENTS[@]}" <<'EOF'
import json, sys, time, urllib.request

window, server, agents = float(sys.argv[1]), sys.argv[2], sys.argv[3:]

def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)

polls = bad_member_polls = bad_serf_polls = errors = 0
seen = {}
loads = []
end = time.time() + window
while time.time() < end:
    t0 = time.time()
    for ip in agents:
        try:
            members = get(f"http://{ip}:8500/v1/agent/members")
        except Exception:
            errors += 1
            continue
        polls += 1
        down = [m["Name"] for m in members if m["Status"] != 1]
        if down or len(members) != len(agents):
            bad_member_polls += 1
            for n in down:
                seen.setdefault(f"{n} (seen by {ip})", time.strftime("%H:%M:%S"))
    try:
        checks = get(f"http://{server}:8500/v1/health/state/any")
        serf = [c for c in checks if c["CheckID"] == "serfHealth"]
        if len(serf) != len(agents) or any(c["Status"] != "passing" for c in serf):
            bad_serf_polls += 1
            for c in serf:
                if c["Status"] != "passing":
                    seen.setdefault(f"serfHealth {c['Node']} {c['Status']}", time.strftime("%H:%M:%S"))
    except Exception:
        errors += 1
    loads.append(float(open("/proc/loadavg").read().split()[0]))
    time.sleep(max(0.0, 1.0 - (time.time() - t0)))
result = {
    "bench": "gossip-steady",
    "agents": len(agents),
    "window_s": window,
    "member_polls": polls,
    "polls_with_a_member_not_alive": bad_member_polls,
    "polls_with_serfhealth_not_passing": bad_serf_polls,
    "poll_errors": errors,
    "first_seen": seen,
    "load_avg_min": min(loads) if loads else None,
    "load_avg_max": max(loads) if loads else None,
}
print(json.dumps(result))
print(f"{len(agents)} agents, {window:.0f} s under write load: {bad_member_polls} of {polls} member-list polls "
      f"saw a member not alive, {bad_serf_polls} serfHealth polls not all passing "
      f"(load average {result['load_avg_min']}..{result['load_avg_max']})", file=sys.stderr)
EOF
wait "$LOAD_PID" || true
echo "write load: $(tail -1 "$WORK/load.jsonl" 2>/dev/null)" >&2
