#!/usr/bin/env bash
# benches/cluster.sh — the registry as a 3-server cluster on loopback (separate data dirs,
# fsync on) next to a 3-member etcd cluster (Debian etcd-server, fsync on: its default), same
# load generator, same client counts, same run. Each figure is printed next to its anchor.
#
#   bash benches/cluster.sh          # everything, ~17 minutes on the 2-vCPU machine
#
# Figures: KV PUT/s at 64 and 256 clients (to each cluster's leader) with server CPU-µs per
# replicated PUT summed over the three servers; PUT latency p50/p99 with 1 client; default
# GET/s vs etcd linearizable reads; ?consistent GET/s; ?stale GET/s from a follower vs etcd
# serializable reads from a follower; the time a new server takes to install a snapshot of
# BENCH_SNAP_MB of state in 16 kB values (registry: `registry join` of a 4th server; etcd:
# `member add` of a 4th member).
#
# Knobs (environment):
#   BENCH_DURATION=10     measured seconds per throughput figure (plus 1 s warm-up)
#   BENCH_ONLY="put get snap"   subset of sections
#   BENCH_SNAP_MB=1000    state size for the snapshot figure (values of 16,000 bytes)
#   BENCH_SNAP_WRITE_SECS seconds of writing that state (default: keys / 300 + 10)
#   BENCH_NET=127.0.90    the registry servers listen on $BENCH_NET.1-4 (default ports)
#   BENCH_OUT=FILE        also copy the raw JSON lines there
#   BENCH_KEEP=1          keep the temp dir (logs, data dirs)
#   BENCH_NO_BUILD=1      use the release binaries already in the target dir
#   BENCH_QUIET_MAX=10    seconds to wait for the machine to go quiet before each figure
#
# A benchmark, not a test: it asserts nothing about timing and exits 0 once the figures are
# printed. Everything listens on loopback only; every process is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DUR=${BENCH_DURATION:-10}
ONLY=${BENCH_ONLY:-"put get snap"}
SNAP_MB=${BENCH_SNAP_MB:-1000}
NET=${BENCH_NET:-127.0.90}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

WORK=$(mktemp -d /tmp/registry-cluster-bench.XXXXXX)
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
PIDS=()

log() { printf '\n== %s\n' "$*" >&2; }

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    if [ -n "${BENCH_KEEP:-}" ]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

has() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# --- what it needs ----------------------------------------------------------------------
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
ulimit -n 65536 2>/dev/null || true

if [ -z "${BENCH_NO_BUILD:-}" ]; then
    log "building release binaries"
    cargo build --release -p registry-agent >&2
    cargo build --release -p registry-bench >&2
fi
# Snapshot the binaries: a rebuild in the shared target dir must not change them mid-run.
mkdir -p "$WORK/bin"
cp "$TARGET_DIR/release/registry" "$TARGET_DIR/release/registry-bench" "$WORK/bin/"
REG=$WORK/bin/registry
BENCH=$WORK/bin/registry-bench
REG_BUILT=$(date -u -r "$TARGET_DIR/release/registry" +%Y-%m-%dT%H:%M:%SZ)
REG_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git -C "$ROOT" diff --quiet -- registry-server registry-agent registry-proto 2>/dev/null; then
    REG_REV="$REG_REV+uncommitted"
fi
ETCD_VERSION=$(etcd --version 2>&1 | sed -n 1p || true)

# --- helpers ------------------------------------------------------------------------------
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}

now_ms() { date +%s%3N; }

# registry servers: $NET.i, HTTP 8500, server port 8300, DNS off.
REG_PIDS=()
start_registry_server() { # i, extra args...
    local i=$1
    shift
    local ip=$NET.$i
    port_free "$ip" 8500 || { echo "$ip:8500 is busy" >&2; exit 1; }
    mkdir -p "$WORK/reg$i"
    NO_COLOR=1 "$REG" agent -server -data-dir "$WORK/reg$i" -node "bench-$i" -bind "$ip" -client "$ip" \
        -dns-port 0 -log-level info \
        -hcl $'limits {\n  http_max_conns_per_client = 0\n  rpc_max_conns_per_client = 0\n}' \
        "$@" >"$WORK/reg$i.log" 2>&1 &
    REG_PIDS[$i]=$!
    PIDS+=("$!")
}

start_registry_cluster() { # extra args for every server...
    local i
    rm -rf "$WORK"/reg[1-4] "$WORK"/reg[1-4].log
    for i in 1 2 3; do
        start_registry_server "$i" -bootstrap-expect 3 -retry-join "$NET.1" -retry-join "$NET.2" \
            -retry-join "$NET.3" "$@"
    done
    local leader="" agreed
    for _ in $(seq 300); do
        agreed=1
        leader=$(curl -s "http://$NET.1:8500/v1/status/leader" || true)
        for i in 2 3; do
            [ "$(curl -s "http://$NET.$i:8500/v1/status/leader" || true)" = "$leader" ] || agreed=0
        done
        if [ "$agreed" = 1 ] && [ -n "$leader" ] && [ "$leader" != '""' ]; then break; fi
        sleep 0.1
    done
    [ "$agreed" = 1 ] || { echo "registry cluster did not form" >&2; tail -20 "$WORK/reg1.log" >&2; exit 1; }
    REG_LEADER_IP=$(echo "$leader" | tr -d '"' | cut -d: -f1)
    REG_FOLLOWER_IP=$NET.1
    [ "$REG_LEADER_IP" = "$NET.1" ] && REG_FOLLOWER_IP=$NET.2
    echo "registry leader $REG_LEADER_IP, follower used for stale reads $REG_FOLLOWER_IP" >&2
    sleep 1
}

stop_registry_cluster() {
    local i
    for i in "${!REG_PIDS[@]}"; do stop_pid "${REG_PIDS[$i]}"; done
    REG_PIDS=()
}

ETCD_PIDS=()
start_etcd_cluster() { # extra args for every member...
    rm -rf "$WORK"/etcd3-*
    etcd3_start "$WORK" "$@"
    local i
    for i in 1 2 3; do PIDS+=("${ETCD_PIDS[$i]}"); done
    # The leader's client endpoint, and a follower's.
    ETCD_LEADER=$(etcd3_endpoint leader)
    ETCD_FOLLOWER=$(etcd3_endpoint follower)
    echo "etcd leader $ETCD_LEADER, follower $ETCD_FOLLOWER" >&2
    sleep 1
}

stop_etcd_cluster() {
    local i
    for i in "${!ETCD_PIDS[@]}"; do stop_pid "${ETCD_PIDS[$i]}"; done
    ETCD_PIDS=()
}

L="--duration $DUR --warmup 1"

# --- 1. reads (fresh processes first: etcd 3.4 reads slow down after a write burst) --------
if has get; then
    log "KV GET, 64 clients: registry default/consistent (leader), stale (follower) vs etcd"
    start_etcd_cluster
    EP=(--pid "${ETCD_PIDS[1]}" --pid "${ETCD_PIDS[2]}" --pid "${ETCD_PIDS[3]}")
    bench etcd3.get.lin.64 etcd-get --endpoint "$ETCD_LEADER" $L --clients 64 "${EP[@]}"
    bench etcd3.get.ser.follower.64 etcd-get --endpoint "$ETCD_FOLLOWER" $L --clients 64 \
        --serializable "${EP[@]}"
    stop_etcd_cluster
    start_registry_cluster
    RP=(--pid "${REG_PIDS[1]}" --pid "${REG_PIDS[2]}" --pid "${REG_PIDS[3]}")
    bench reg3.get.default.64 kv-get --addr "$REG_LEADER_IP:8500" $L --clients 64 "${RP[@]}"
    bench reg3.get.consistent.64 kv-get --addr "$REG_LEADER_IP:8500" $L --clients 64 \
        --consistency consistent "${RP[@]}"
    bench reg3.get.stale.follower.64 kv-get --addr "$REG_FOLLOWER_IP:8500" $L --clients 64 \
        --consistency stale "${RP[@]}"
    bench reg3.get.default.follower.64 kv-get --addr "$REG_FOLLOWER_IP:8500" $L --clients 64 \
        "${RP[@]}"
    stop_registry_cluster
fi

# --- 2. puts: 1, 64, 256 clients to the leader ---------------------------------------------
if has put; then
    log "KV PUT to the leader: 8 B keys, 256 B values; CPU summed over the three servers"
    start_etcd_cluster
    EP=(--pid "${ETCD_PIDS[1]}" --pid "${ETCD_PIDS[2]}" --pid "${ETCD_PIDS[3]}")
    for c in 1 64 256; do
        bench etcd3.put.$c etcd-put --endpoint "$ETCD_LEADER" $L --clients $c "${EP[@]}"
    done
    stop_etcd_cluster
    start_registry_cluster
    RP=(--pid "${REG_PIDS[1]}" --pid "${REG_PIDS[2]}" --pid "${REG_PIDS[3]}")
    for c in 1 64 256; do
        bench reg3.put.$c kv-put --addr "$REG_LEADER_IP:8500" $L --clients $c "${RP[@]}"
    done
    bench reg3.put.follower.64 kv-put --addr "$REG_FOLLOWER_IP:8500" $L --clients 64 "${RP[@]}"
    stop_registry_cluster
fi

# --- 3. a new server installs a snapshot of SNAP_MB of state ---------------------------------
if has snap; then
    # 16 kB values written by 2 clients: log entries stay small enough for AppendEntries
    # (openraft gives one 150 ms, whatever it carries; see docs/performance.md).
    VAL=16000
    KEYS=$(( SNAP_MB * 1000000 / VAL ))
    SNAP_SECS=${BENCH_SNAP_WRITE_SECS:-$(( KEYS / 300 + 10 ))}
    log "snapshot install on a new server: $KEYS keys x $VAL B = ~$SNAP_MB MB of state"
    free -m >&2
    # Snapshots every 8,192 entries keeping 1,024 before them: the new server cannot be sent
    # the whole log and must install a snapshot (as after a long outage).
    start_registry_cluster -hcl "raft_snapshot_threshold = 8192" -hcl "raft_trailing_logs = 1024"
    RP=(--pid "${REG_PIDS[1]}" --pid "${REG_PIDS[2]}" --pid "${REG_PIDS[3]}")
    LEADER_N=${REG_LEADER_IP##*.}
    # Keys are written in order; the run is long enough to write each at least once.
    "$BENCH" kv-put --addr "$REG_LEADER_IP:8500" --clients 2 --duration "$SNAP_SECS" --warmup 0 \
        --value-size $VAL --keyspace "$KEYS" "${RP[@]}" --label setup.snap \
        >"$WORK/setup.snap.json" 2>/dev/null
    echo "   registry: $(cat "$WORK/setup.snap.json")" >&2
    LAST_KEY=$(printf %08d $((KEYS - 1)))
    curl -sf -o /dev/null "http://$REG_LEADER_IP:8500/v1/kv/$LAST_KEY" \
        || echo "   (not every key was written: raise BENCH_SNAP_WRITE_SECS)" >&2
    curl -sf -o /dev/null -X PUT -d done "http://$REG_LEADER_IP:8500/v1/kv/snap-marker"
    for _ in $(seq 120); do
        grep -q "built snapshot" "$WORK/reg$LEADER_N.log" && break
        sleep 0.5
    done
    sleep 2
    SNAP_BYTES=$(grep -o 'built snapshot bytes=[0-9]*' "$WORK/reg$LEADER_N.log" | tail -1 | cut -d= -f2 || true)
    WANT_INDEX=$(curl -s -o /dev/null -D - "http://$REG_LEADER_IP:8500/v1/kv/snap-marker" \
        | tr -d '\r' | awk -F': ' 'tolower($1)=="x-consul-index"{print $2}')
    RSS_LEADER=$(awk '/VmRSS/{print $2}' "/proc/${REG_PIDS[$LEADER_N]}/status")
    start_registry_server 4
    wait_http "http://$NET.4:8500/v1/status/leader" 30
    quiet
    T0=$(now_ms)
    "$REG" join -http-addr="$NET.4:8500" "$REG_LEADER_IP" >&2
    T_DONE=""
    for _ in $(seq 3000); do
        idx=$(curl -s -o /dev/null -D - "http://$NET.4:8500/v1/kv/snap-marker?stale" \
            | tr -d '\r' | awk -F': ' 'tolower($1)=="x-consul-index"{print $2}')
        if [ -n "$idx" ] && [ "$idx" -ge "${WANT_INDEX:-0}" ] 2>/dev/null \
            && curl -sf "http://$NET.4:8500/v1/kv/$LAST_KEY?stale" | grep -q Value; then
            T_DONE=$(now_ms)
            break
        fi
        sleep 0.1
    done
    INSTALL_MS=null
    [ -n "$T_DONE" ] && INSTALL_MS=$((T_DONE - T0))
    INSTALLED=$(grep -c "installed snapshot" "$WORK/reg4.log" || true)
    echo "{\"mode\":\"snapshot-install\",\"label\":\"reg3.snap.install\",\"keys\":$KEYS,\"value_size\":$VAL,\"snapshot_bytes\":${SNAP_BYTES:-null},\"leader_rss_kib\":${RSS_LEADER:-null},\"install_ms\":$INSTALL_MS,\"installed_snapshot_lines\":$INSTALLED}" \
        | tee -a "$RESULTS"
    stop_registry_cluster

    # etcd: the same state, then `member add` of a 4th member. etcd keeps the last 5,000
    # entries for slow followers and snapshots every --snapshot-count (8,192 here, as above).
    log "etcd: the same state, then a 4th member"
    start_etcd_cluster --snapshot-count 8192 --quota-backend-bytes 8589934592
    EP=(--pid "${ETCD_PIDS[1]}" --pid "${ETCD_PIDS[2]}" --pid "${ETCD_PIDS[3]}")
    "$BENCH" etcd-put --endpoint "$ETCD_LEADER" --clients 2 --duration "$SNAP_SECS" --warmup 0 \
        --value-size $VAL --keyspace "$KEYS" "${EP[@]}" --label setup.etcd.snap \
        >"$WORK/setup.etcd.snap.json" 2>/dev/null
    echo "   etcd: $(cat "$WORK/setup.etcd.snap.json")" >&2
    ETCD_REV=$(ETCDCTL_API=3 etcdctl --endpoints="$ETCD_LEADER" endpoint status -w json \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
    ETCD_DB=$(ETCDCTL_API=3 etcdctl --endpoints="$ETCD_LEADER" endpoint status -w json \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])')
    quiet
    T0=$(now_ms)
    ETCDCTL_API=3 etcdctl --endpoints="$ETCD_LEADER" member add n4 \
        --peer-urls="http://127.0.0.1:23804" >"$WORK/etcd-member-add.txt"
    etcd_member 4 "$ETCD3_CLUSTER,n4=http://127.0.0.1:23804" existing "$WORK" \
        --snapshot-count 8192 --quota-backend-bytes 8589934592
    PIDS+=("${ETCD_PIDS[4]}")
    T_DONE=""
    for _ in $(seq 3000); do
        rev=$(ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:23794" \
            --command-timeout=2s endpoint status -w json 2>/dev/null \
            | python3 -c 'import json,sys
try: print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])
except Exception: print(0)' || echo 0)
        if [ "${rev:-0}" -ge "$ETCD_REV" ]; then T_DONE=$(now_ms); break; fi
        sleep 0.1
    done
    INSTALL_MS=null
    [ -n "$T_DONE" ] && INSTALL_MS=$((T_DONE - T0))
    echo "{\"mode\":\"snapshot-install\",\"label\":\"etcd3.snap.install\",\"keys\":$KEYS,\"value_size\":$VAL,\"db_bytes\":${ETCD_DB:-null},\"install_ms\":$INSTALL_MS}" \
        | tee -a "$RESULTS"
    stop_etcd_cluster
fi

# --- the table -----------------------------------------------------------------------------------
[ -n "${BENCH_OUT:-}" ] && cp "$RESULTS" "$BENCH_OUT"
log "results (registry $REG_REV built $REG_BUILT; $ETCD_VERSION; $(nproc) vCPU; $(uname -r))"
python3 - "$RESULTS" <<'EOF'
import json, sys
res = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        r = json.loads(line)
        res[r.get("label", "")] = r

def g(label, field):
    return (res.get(label) or {}).get(field)

def f(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, float) and not v.is_integer():
        return (f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}") + unit
    return f"{int(v):,}{unit}"

def ratio(a, b):
    return "—" if a in (None, 0) or b in (None, 0) else f"{a / b:.2f}x"

rows = []
def row(name, reg, anchor, target):
    rows.append((name, reg, anchor, target))

for c in (64, 256):
    r, e = g(f"reg3.put.{c}", "ops_per_s"), g(f"etcd3.put.{c}", "ops_per_s")
    row(f"PUT/s, {c} clients (to the leader)", f(r), f(e) + f"  ({ratio(r, e)})", "≥ 1.5x etcd")
for c in (64, 256):
    r, e = g(f"reg3.put.{c}", "server_cpu_us_per_op"), g(f"etcd3.put.{c}", "server_cpu_us_per_op")
    row(f"server CPU-µs per PUT, 3 servers, {c} clients", f(r), f(e) + f"  ({ratio(r, e)})", "≤ 0.65x etcd")
r50, e50 = g("reg3.put.1", "p50_us"), g("etcd3.put.1", "p50_us")
r99, e99 = g("reg3.put.1", "p99_us"), g("etcd3.put.1", "p99_us")
row("PUT latency, 1 client, p50", f(r50, " µs"), f(e50, " µs") + f"  ({ratio(r50, e50)})", "≤ 0.8x etcd")
row("PUT latency, 1 client, p99", f(r99, " µs"), f(e99, " µs") + f"  ({ratio(r99, e99)})", "≤ 1,500 µs")
row("PUT/s, 1 client", f(g("reg3.put.1", "ops_per_s")), f(g("etcd3.put.1", "ops_per_s")), "")
row("PUT/s, 64 clients via a follower", f(g("reg3.put.follower.64", "ops_per_s")), "", "")
el = g("etcd3.get.lin.64", "ops_per_s")
for lab, name, tgt in (("reg3.get.default.64", "GET/s default (leader) vs etcd linearizable", "≥ 3x"),
                       ("reg3.get.consistent.64", "GET/s ?consistent (leader) vs etcd linearizable", "≥ 1.5x"),
                       ("reg3.get.default.follower.64", "GET/s default via a follower vs etcd linearizable", "")):
    r = g(lab, "ops_per_s")
    row(name + ", 64 clients", f(r), f(el) + f"  ({ratio(r, el)})", tgt)
r, e = g("reg3.get.stale.follower.64", "ops_per_s"), g("etcd3.get.ser.follower.64", "ops_per_s")
row("GET/s ?stale on a follower vs etcd serializable on a follower, 64 clients", f(r), f(e) + f"  ({ratio(r, e)})", "")
for lab in ("reg3.get.default.64", "reg3.get.consistent.64", "reg3.get.stale.follower.64"):
    r = g(lab, "server_cpu_us_per_op")
    row(f"server CPU-µs per GET ({lab.split('.')[2]})", f(r), f(g("etcd3.get.lin.64", "server_cpu_us_per_op")) + " (etcd lin.)", "")
ri, ei = g("reg3.snap.install", "install_ms"), g("etcd3.snap.install", "install_ms")
sb = g("reg3.snap.install", "snapshot_bytes")
db = g("etcd3.snap.install", "db_bytes")
row(f"new server caught up by snapshot ({f(sb)} B snapshot; etcd db {f(db)} B)",
    f(ri, " ms"), f(ei, " ms") + f"  ({ratio(ri, ei)})", "")

w = [max(len(str(x[i])) for x in rows + [("figure", "registry", "etcd (ratio)", "target")]) for i in range(4)]
hdr = ("figure", "registry", "etcd (ratio)", "target")
print(" | ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
print("-+-".join("-" * x for x in w))
for r in rows:
    print(" | ".join(str(v).ljust(w[i]) for i, v in enumerate(r)))
errs = {k: v.get("errors") for k, v in res.items() if v.get("errors")}
if errs:
    print("requests that failed:", errs)
EOF
