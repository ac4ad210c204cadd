#!/usr/bin/env bash
# benches/run.sh — the registry's performance figures (issue 2, "Performance"), each next to
# its anchor measured in the same run: single-node etcd (Debian etcd-server, fsync on) for
# KV puts/reads/watches, nginx (Debian) serving the same bytes for /v1/health/service.
#
#   bash benches/run.sh            # everything, ~8 minutes on the 2-vCPU machine
#
# Knobs (environment):
#   BENCH_DURATION=10   measured seconds per throughput figure (plus 1 s warm-up)
#   BENCH_WRITES=500    paced writes per watch figure (at 100/s)
#   BENCH_INSTANCES=100000  instances registered for the memory figure
#   BENCH_ONLY="put get http watch mem"   subset of sections
#   BENCH_OUT=FILE      also copy the raw JSON lines there
#   BENCH_KEEP=1        keep the temp dir (logs, data dirs)
#   BENCH_NO_BUILD=1    use the release binaries already in the target dir
#   BENCH_QUIET_MAX=10  seconds to wait for the machine to go quiet before each figure
#   BENCH_MEM_SNAPSHOT=1024  raft_snapshot_threshold (and trailing logs) of the memory figure
#
# This is a benchmark, not a test: it asserts nothing about timing and always exits 0 once
# the figures are printed. Every server listens on 127.0.0.1 only and is stopped by PID on
# exit; every load loop is bounded in time or count.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DUR=${BENCH_DURATION:-10}
WRITES=${BENCH_WRITES:-500}
INSTANCES=${BENCH_INSTANCES:-100000}
ONLY=${BENCH_ONLY:-"put get http watch mem"}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# Ports away from the defaults that developers' own servers use (BENCH_PORT_BASE moves them).
BASE=${BENCH_PORT_BASE:-27000}
REG_HTTP=$((BASE + 500))
REG_SERVER=$((BASE + 300))
ETCD_CLIENT=$((BASE + 379))
ETCD_PEER=$((BASE + 380))
NGINX_PORT=$((BASE + 581))

WORK=$(mktemp -d /tmp/registry-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers (www-data) read the served file under it
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

# --- 1. what it needs ------------------------------------------------------------------
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# 10,000 parked watchers are 10,000 connections on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ -z "${BENCH_NO_BUILD:-}" ]; then
log "building release binaries"
# Built one package at a time: building both in one invocation unifies their features and
# rebuilds the dependency graph for nothing.
cargo build --release -p registry-agent >&2
cargo build --release -p registry-bench >&2
fi
# Snapshot the binaries: the target dir is shared, and a rebuild during the run must not
# change what is being measured half-way.
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
NGINX_VERSION=$(nginx -v 2>&1 || true)
WRK_VERSION=$( (wrk -v 2>&1 || true) | sed -n 1p | awk '{print $1, $2}')

# --- helpers ---------------------------------------------------------------------------
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

cpu_ticks() { # sum of utime+stime over pids
    local t=0 p
    for p in "$@"; do
        t=$((t + $(awk '{sub(/.*\) /,""); print $12+$13}' "/proc/$p/stat")))
    done
    echo "$t"
}

# wrk -t2 -c64 with server CPU metering, as one JSON line.
wrk_json() { # label, url, pids...
    local label=$1 url=$2
    shift 2
    quiet
    local c0 c1 hz out
    hz=$(getconf CLK_TCK)
    c0=$(cpu_ticks "$@")
    out=$(wrk -t2 -c64 -d"${DUR}s" --latency "$url")
    c1=$(cpu_ticks "$@")
    echo "$out" >&2
    python3 "$ROOT/benches/report.py" wrk "$label" "$url" "$((c1 - c0))" "$hz" "$DUR" \
        <<<"$out" | tee -a "$RESULTS"
}

start_registry() { # data dir (or "-dev" for the in-memory dev agent), extra agent args...; sets REG_PID
    port_free 127.0.0.1 $REG_HTTP || { echo "port $REG_HTTP is busy" >&2; exit 1; }
    local mode=(-server -bootstrap-expect 1 -data-dir "$1") logf="$1.log" extra=("${@:2}")
    if [ "$1" = -dev ]; then
        mode=(-dev)
        logf=$WORK/dev.log
    else
        mkdir -p "$1"
    fi
    "$REG" agent "${mode[@]}" -node n1 -bind 127.0.0.1 \
        -client 127.0.0.1 -http-port $REG_HTTP -server-port $REG_SERVER -serf-lan-port $((REG_SERVER + 1)) \
        -serf-wan-port $((REG_SERVER + 2)) -dns-port 0 -log-level warn \
        -hcl $'limits {\n  http_max_conns_per_client = 0\n  rpc_max_conns_per_client = 0\n}' \
        ${extra[@]+"${extra[@]}"} \
        >"$logf" 2>&1 &
    REG_PID=$!
    PIDS+=("$REG_PID")
    wait_http "http://127.0.0.1:$REG_HTTP/v1/status/leader" 30
    for _ in $(seq 100); do
        [ "$(curl -s "http://127.0.0.1:$REG_HTTP/v1/status/leader")" != '""' ] && break
        sleep 0.1
    done
    sleep 1
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}

start_etcd() { # sets ETCD_PID; fresh data dir each time (fsync on: etcd's default)
    port_free 127.0.0.1 $ETCD_CLIENT || { echo "port $ETCD_CLIENT is busy" >&2; exit 1; }
    rm -rf "$WORK/etcd"
    etcd --name s1 --data-dir "$WORK/etcd" \
        --listen-client-urls http://127.0.0.1:$ETCD_CLIENT \
        --advertise-client-urls http://127.0.0.1:$ETCD_CLIENT \
        --listen-peer-urls http://127.0.0.1:$ETCD_PEER \
        --initial-advertise-peer-urls http://127.0.0.1:$ETCD_PEER \
        --initial-cluster s1=http://127.0.0.1:$ETCD_PEER \
        --logger=zap --log-level=warn >"$WORK/etcd.log" 2>&1 &
    ETCD_PID=$!
    PIDS+=("$ETCD_PID")
    wait_http "http://127.0.0.1:$ETCD_CLIENT/health" 30
    sleep 1
}

R="--addr 127.0.0.1:$REG_HTTP"
E="--endpoint 127.0.0.1:$ETCD_CLIENT"
L="--duration $DUR --warmup 1"

# --- 2. KV reads (fresh processes first: etcd 3.4 reads slow down after a write burst) --
if has get; then
    log "KV GET: registry default/consistent/stale vs etcd linearizable/serializable, 64 clients"
    start_etcd
    bench etcd.get.lin.64 etcd-get $E $L --clients 64 --pid "$ETCD_PID"
    bench etcd.get.ser.64 etcd-get $E $L --clients 64 --serializable --pid "$ETCD_PID"
    stop_pid "$ETCD_PID"
    start_registry "$WORK/reg-get"
    bench reg.get.default.64 kv-get $R $L --clients 64 --pid "$REG_PID"
    bench reg.get.consistent.64 kv-get $R $L --clients 64 --consistency consistent --pid "$REG_PID"
    bench reg.get.stale.64 kv-get $R $L --clients 64 --consistency stale --pid "$REG_PID"
    stop_pid "$REG_PID"
fi

# --- 3. KV puts at 1, 64, 256 clients (and etcd's op-guide shape, 1000 clients/100 conns) --
if has put; then
    log "KV PUT: 8 B keys, 256 B values"
    start_etcd
    for c in 1 64 256; do
        bench etcd.put.$c etcd-put $E $L --clients $c --pid "$ETCD_PID"
    done
    bench etcd.put.1000 etcd-put $E $L --clients 1000 --conns 100 --pid "$ETCD_PID"
    stop_pid "$ETCD_PID"
    start_registry "$WORK/reg-put"
    for c in 1 64 256; do
        bench reg.put.$c kv-put $R $L --clients $c --pid "$REG_PID"
    done
    bench reg.put.1000 kv-put $R $L --clients 1000 --conns 100 --pid "$REG_PID"
    stop_pid "$REG_PID"
fi

# --- 4. /v1/health/service/web (100 instances) vs nginx serving the same bytes ----------
if has http; then
    log "GET /v1/health/service/web (100 instances) vs nginx, wrk -t2 -c64"
    start_registry "$WORK/reg-http"
    "$BENCH" register $R --count 100 --nodes 100 --services 1 --service web --concurrency 8 \
        --settle 0 --label setup.web >/dev/null
    mkdir -p "$WORK/nginx/www/v1/health/service" "$WORK/nginx/logs"
    curl -sf "http://127.0.0.1:$REG_HTTP/v1/health/service/web" \
        >"$WORK/nginx/www/v1/health/service/web"
    BODY_BYTES=$(stat -c %s "$WORK/nginx/www/v1/health/service/web")
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    default_type application/json;
    client_body_temp_path $WORK/nginx/tmp;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/nginx/www;
    }
}
EOF
    mkdir -p "$WORK/nginx/tmp"
    port_free 127.0.0.1 $NGINX_PORT || { echo "port $NGINX_PORT is busy" >&2; exit 1; }
    nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx/" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_http "http://127.0.0.1:$NGINX_PORT/v1/health/service/web" 10
    NGINX_PIDS=("$NGINX_PID" $(pgrep -P "$NGINX_PID" || true))
    wrk_json nginx.health.100 "http://127.0.0.1:$NGINX_PORT/v1/health/service/web" "${NGINX_PIDS[@]}"
    wrk_json reg.health.100 "http://127.0.0.1:$REG_HTTP/v1/health/service/web" "$REG_PID"
    echo "{\"mode\":\"info\",\"label\":\"health.body\",\"body_bytes\":$BODY_BYTES}" >>"$RESULTS"
    stop_pid "$NGINX_PID"
    stop_pid "$REG_PID"
fi

# --- 5. blocking queries: write -> wake of 100 and 1,000 watchers; 10,000 parked ----------
if has watch; then
    log "watch fan-out: writes paced 100/s"
    start_etcd
    bench etcd.watch.100 etcd-watch $E --watchers 100 --writes "$WRITES" --rate 100 --pid "$ETCD_PID"
    bench etcd.watch.1000 etcd-watch $E --watchers 1000 --writes "$WRITES" --rate 100 --pid "$ETCD_PID"
    stop_pid "$ETCD_PID"
    start_registry "$WORK/reg-watch"
    bench reg.watch.100 watch $R --watchers 100 --writes "$WRITES" --rate 100 --pid "$REG_PID"
    bench reg.watch.1000 watch $R --watchers 1000 --writes "$WRITES" --rate 100 --pid "$REG_PID"
    bench reg.watch.parked watch $R --watchers 100 --parked 10000 --writes "$WRITES" --rate 100 \
        --pid "$REG_PID"
    stop_pid "$REG_PID"
fi

# --- 6. resident memory with 100,000 registered instances -------------------------------
if has mem; then
    log "memory: $INSTANCES instances over 1,000 nodes and 1,000 services"
    # A server that has run for a while has snapshotted and purged its log: snapshot every
    # BENCH_MEM_SNAPSHOT entries (default 1024) so the figure is that steady state, not
    # "100k registrations and no snapshot yet".
    snap=${BENCH_MEM_SNAPSHOT:-1024}
    echo "{\"raft_snapshot_threshold\": $snap, \"raft_trailing_logs\": $snap}" >"$WORK/mem.json"
    start_registry "$WORK/reg-mem" -config-file "$WORK/mem.json"
    sleep 2
    bench reg.mem register $R --count "$INSTANCES" --nodes 1000 --services 1000 --concurrency 64 \
        --settle 5 --pid "$REG_PID"
    stop_pid "$REG_PID"
    # The same in the dev agent (state and Raft log in memory, no sled).
    start_registry -dev
    sleep 2
    bench reg.mem.dev register $R --count "$INSTANCES" --nodes 1000 --services 1000 \
        --concurrency 64 --settle 5 --pid "$REG_PID"
    stop_pid "$REG_PID"
fi

# --- 7. the table -------------------------------------------------------------------------
[ -n "${BENCH_OUT:-}" ] && cp "$RESULTS" "$BENCH_OUT"
log "results (registry $REG_REV built $REG_BUILT; $ETCD_VERSION; $NGINX_VERSION; $WRK_VERSION; $(nproc) vCPU; $(uname -r))"
python3 "$ROOT/benches/report.py" table "$RESULTS"
