#!/usr/bin/env bash
# benches/scale.sh — how every cost grows with the catalog (issue 18): a 3-server cluster on
# loopback is grown through batched `PUT /v1/txn` registrations (whole nodes with their
# instances, 64 operations per transaction) to BENCH_NODES nodes / BENCH_INSTANCES instances,
# and in a second run (a fresh cluster) to BENCH_KV KV keys. At each fill stage (BENCH_STAGES
# percent; the first, 1 %, is the anchor every later figure is printed next to) it measures:
#
#   watch     a change to one instance of `web` -> BENCH_WATCHERS long-polling watchers of
#             /v1/health/service/web woken, p50/p99 of "all watchers have it" per change
#             (KV run: watchers of one key, a PUT per change)
#   rss       every server's VmRSS, and per instance / per key beyond the empty cluster
#   get       GET /v1/catalog/service/web (default consistency, leader) req/s, 32 clients
#             (KV run: GET /v1/kv/<key>)
#   dns       dnsperf SRV+A web.service.consul against the leader's DNS (catalog run)
#   put       KV PUT/s, 64 clients to the leader, with the store at that size
#   snapshot  GET /v1/snapshot on the leader: time and archive size (and the Raft snapshots
#             the leader logged as built: size, ms)
#   restore   PUT /v1/snapshot of that archive on a fresh single server: time
#   catchup   a 4th server joins and has the latest write (then leaves again): time
#   restart   a follower is stopped and started on its data dir (log replay + snapshot
#             load) until it has a write made while it was down: time
#
# `web` is 17 instances on their own nodes plus the one the watch test re-registers, the
# same at every stage, so the QPS and watch figures differ only by what else the catalog
# holds. Consul's published figure (CGSB: 172,000 instances on 10,000 nodes, a change at
# every proxy in < 1 s) is printed next to the watch row.
#
#   bash benches/scale.sh                                   # full: 10,000 / 170,000 + 1M KV
#   BENCH_NODES=1000 BENCH_INSTANCES=17000 BENCH_KV=100000 bash benches/scale.sh  # small
#
# Knobs: BENCH_RUNS="catalog kv", BENCH_STAGES="1 10 50 100", BENCH_WATCHERS=1000,
# BENCH_WRITES=40, BENCH_RATE=10, BENCH_DURATION=5 (s per throughput figure),
# BENCH_REPEAT=3 (get, dns and put are measured that many times; the report takes medians),
# BENCH_CLIENTS=5 (client agents on $BENCH_NET.21.. joined to the servers; the catalog run's
# watchers are spread over them, as deployed: each holds one event stream per service to the
# servers; 0 puts every watcher on the leader),
# BENCH_ONLY="watch rss get dns put snapshot restore catchup restart", BENCH_NET=127.0.91,
# BENCH_SERVICES (distinct names in the fill, default instances/17), BENCH_OUT=FILE (copy of
# the raw JSON lines), BENCH_SVG=FILE (the plot), BENCH_NO_BUILD=1, BENCH_KEEP=1,
# REG=/path/to/registry (binary under test; default the release build).
# A benchmark, not a test: it asserts nothing about timing. Loopback only; every process it
# starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

NODES=${BENCH_NODES:-10000}
INSTANCES=${BENCH_INSTANCES:-170000}
KV=${BENCH_KV:-1000000}
RUNS=${BENCH_RUNS:-"catalog kv"}
STAGES=${BENCH_STAGES:-"1 10 50 100"}
WATCHERS=${BENCH_WATCHERS:-1000}
WRITES=${BENCH_WRITES:-40}
RATE=${BENCH_RATE:-10}
DUR=${BENCH_DURATION:-5}
REPEAT=${BENCH_REPEAT:-3}
CLIENTS=${BENCH_CLIENTS:-5}
ONLY=${BENCH_ONLY:-"watch rss get dns put snapshot restore catchup restart"}
NET=${BENCH_NET:-127.0.91}
PER_NODE=$((INSTANCES / NODES))
SERVICES=${BENCH_SERVICES:-$((INSTANCES / 17 > 0 ? INSTANCES / 17 : 1))}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

WORK=$(mktemp -d /tmp/registry-scale.XXXXXX)
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
PIDS=()
log() { printf '\n== %s\n' "$*" >&2; }
has() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

trap 'exit 130' INT TERM
ulimit -n 65536 2>/dev/null || true

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v dnsperf >/dev/null; then
    log "installing dnsperf"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dnsperf
fi

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
trap cleanup_work EXIT
if [ -z "${BENCH_NO_BUILD:-}" ]; then
    log "building release binaries"
    cargo build --release -q -p registry-agent -p registry-bench >&2
fi
# Copies: a rebuild in the target dir must not change the binaries mid-run.
mkdir -p "$WORK/bin"
cp "${REG:-$TARGET_DIR/release/registry}" "$WORK/bin/registry"
cp "${BENCH:-$TARGET_DIR/release/registry-bench}" "$WORK/bin/registry-bench"
REG=$WORK/bin/registry
BENCH=$WORK/bin/registry-bench
REG_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)

now_ms() { date +%s%3N; }
emit() { echo "$1" | tee -a "$RESULTS"; }
rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}
# Polls URL (every 20 ms, at most $2 s) until its body contains $3; returns 1 on timeout.
wait_body() {
    local end=$(($(now_ms) + $2 * 1000))
    while [ "$(now_ms)" -lt "$end" ]; do
        curl -s --max-time 2 "$1" 2>/dev/null | grep -q "$3" && return 0
        sleep 0.02
    done
    return 1
}

SERVER_ARGS=()
REG_PIDS=()
start_server() { # i, extra args...
    local i=$1 ip=$NET.$1
    shift
    port_free "$ip" 8500 || { echo "$ip:8500 is busy" >&2; exit 1; }
    mkdir -p "$WORK/reg$i"
    NO_COLOR=1 "$REG" agent -server -data-dir "$WORK/reg$i" -node "scale-$i" -bind "$ip" \
        -client "$ip" -log-level info \
        -hcl $'limits {\n  http_max_conns_per_client = 0\n  rpc_max_conns_per_client = 0\n}' \
        "$@" >>"$WORK/reg$i.log" 2>&1 &
    REG_PIDS[$i]=$!
    PIDS+=("$!")
}

start_cluster() {
    local i leader agreed
    rm -rf "$WORK"/reg[1-9] "$WORK"/reg[1-9].log
    SERVER_ARGS=(-bootstrap-expect 3 -retry-join "$NET.1" -retry-join "$NET.2" -retry-join "$NET.3")
    for i in 1 2 3; do start_server "$i" "${SERVER_ARGS[@]}"; done
    for _ in $(seq 300); do
        agreed=1
        leader=$(curl -s "http://$NET.1:8500/v1/status/leader" || true)
        for i in 2 3; do
            [ "$(curl -s "http://$NET.$i:8500/v1/status/leader" || true)" = "$leader" ] || agreed=0
        done
        if [ "$agreed" = 1 ] && [ -n "$leader" ] && [ "$leader" != '""' ]; then break; fi
        sleep 0.1
    done
    [ "$agreed" = 1 ] || { echo "cluster did not form" >&2; tail -20 "$WORK/reg1.log" >&2; exit 1; }
    find_leader
}

find_leader() {
    local leader
    for _ in $(seq 300); do
        leader=$(curl -s "http://$NET.1:8500/v1/status/leader" || true)
        [ -n "$leader" ] && [ "$leader" != '""' ] && break
        sleep 0.1
    done
    LEADER_IP=$(echo "$leader" | tr -d '"' | cut -d: -f1)
    LEADER_N=${LEADER_IP##*.}
    FOLLOWER_N=1
    [ "$LEADER_N" = 1 ] && FOLLOWER_N=2
    L=$LEADER_IP:8500
}

# Client agents that hold the catalog run's watchers (WATCH_ADDRS, comma-separated).
CLIENT_PIDS=()
WATCH_ADDRS=
start_clients() {
    local k ip addrs=()
    for k in $(seq 1 "$CLIENTS"); do
        ip=$NET.$((20 + k))
        port_free "$ip" 8500 || { echo "$ip:8500 is busy" >&2; exit 1; }
        rm -rf "$WORK/client$k"
        mkdir -p "$WORK/client$k"
        NO_COLOR=1 "$REG" agent -data-dir "$WORK/client$k" -node "scale-client-$k" -bind "$ip" \
            -client "$ip" -retry-join "$NET.1" -retry-join "$NET.2" -retry-join "$NET.3" \
            -log-level info \
            -hcl $'limits {\n  http_max_conns_per_client = 0\n  rpc_max_conns_per_client = 0\n}' \
            >>"$WORK/client$k.log" 2>&1 &
        CLIENT_PIDS+=("$!")
        PIDS+=("$!")
        addrs+=("$ip:8500")
    done
    for k in "${!addrs[@]}"; do
        wait_body "http://${addrs[$k]}/v1/status/leader" 60 ':' \
            || { echo "client agent ${addrs[$k]} found no leader" >&2; exit 1; }
    done
    WATCH_ADDRS=$(IFS=,; echo "${addrs[*]}")
}

stop_cluster() {
    local i
    for i in "${CLIENT_PIDS[@]}"; do stop_pid "$i"; done
    CLIENT_PIDS=()
    WATCH_ADDRS=
    for i in "${!REG_PIDS[@]}"; do stop_pid "${REG_PIDS[$i]}"; done
    REG_PIDS=()
}

pids_args() { local i; for i in "${!REG_PIDS[@]}"; do printf -- '--pid %s ' "${REG_PIDS[$i]}"; done; }

# `web`: 17 instances on nodes of their own, registered once per cluster.
register_web() {
    local k
    for k in $(seq 0 16); do
        curl -sf -o /dev/null -X PUT "http://$L/v1/catalog/register" -d "{\"Node\":\"web-node-$k\",\"Address\":\"127.4.0.$((k + 1))\",\"Service\":{\"ID\":\"web-$k\",\"Service\":\"web\",\"Port\":8080,\"Tags\":[\"v1\"]}}"
    done
}

printf 'web.service.consul SRV\nweb.service.consul A\n' >"$WORK/dns-queries.txt"

# One stage's figures; $1 = run (catalog|kv), $2 = percent, $3 = instances, $4 = kv keys.
measure() {
    local run=$1 pct=$2 inst=$3 keys=$4 tag="$1.$2" t0 t1 i
    local pids
    pids=$(pids_args)
    if has rss; then
        sleep 2
        local rss=() line="{\"mode\":\"rss\",\"label\":\"$tag.rss\",\"run\":\"$run\",\"pct\":$pct,\"instances\":$inst,\"kv_keys\":$keys"
        for i in 1 2 3; do rss[$i]=$(rss_kib "${REG_PIDS[$i]}"); line+=",\"rss_kib_$i\":${rss[$i]}"; done
        local grow=$(( rss[LEADER_N] - RSS0[LEADER_N] ))
        line+=",\"leader_rss_kib\":${rss[$LEADER_N]},\"leader_rss_empty_kib\":${RSS0[$LEADER_N]}"
        if [ "$inst" -gt 0 ]; then line+=",\"rss_bytes_per_instance\":$(( grow * 1024 / inst ))"; fi
        if [ "$keys" -gt 0 ]; then line+=",\"rss_bytes_per_key\":$(( grow * 1024 / keys ))"; fi
        emit "$line}"
    fi
    if has watch; then
        quiet
        if [ "$run" = catalog ]; then
            # shellcheck disable=SC2086
            "$BENCH" watch --addr "$L" ${WATCH_ADDRS:+--watch-addrs "$WATCH_ADDRS"} --service web \
                --watchers "$WATCHERS" --writes "$WRITES" --rate "$RATE" $pids \
                --label "$tag.watch" | tee -a "$RESULTS"
        else
            # shellcheck disable=SC2086
            "$BENCH" watch --addr "$L" --key w/scale --watchers "$WATCHERS" --writes "$WRITES" \
                --rate "$RATE" $pids --label "$tag.watch" | tee -a "$RESULTS"
        fi
    fi
    if has get; then
        local url="http://$L/v1/catalog/service/web"
        [ "$run" = kv ] && url="http://$L/v1/kv/kv/00000000"
        for _ in $(seq "$REPEAT"); do
            # shellcheck disable=SC2086
            bench "$tag.get" http-get "$url" --clients 32 --duration "$DUR" --warmup 1 $pids
        done
    fi
    if has dns && [ "$run" = catalog ]; then
        quiet
        for _ in $(seq "$REPEAT"); do
        dnsperf -s "$LEADER_IP" -p 8600 -d "$WORK/dns-queries.txt" -l "$DUR" -c 4 -T 1 -q 500 \
            >"$WORK/dnsperf.txt" 2>&1 || true
        local qps lost
        qps=$(awk '/Queries per second/{print $4}' "$WORK/dnsperf.txt")
        lost=$(awk '/Queries lost/{print $3}' "$WORK/dnsperf.txt")
        emit "{\"mode\":\"dns\",\"label\":\"$tag.dns\",\"qps\":${qps:-null},\"lost\":${lost:-null}}"
        done
    fi
    if has put; then
        for _ in $(seq "$REPEAT"); do
            # shellcheck disable=SC2086
            bench "$tag.put" kv-put --addr "$L" --clients 64 --duration "$DUR" --warmup 1 \
                --keyspace 10000 $pids
        done
    fi
    # A marker written last: whoever has it has everything before it.
    curl -sf -o /dev/null -X PUT -d "$tag" "http://$L/v1/kv/scale-marker"
    if has snapshot || has restore; then
        quiet
        t0=$(now_ms)
        curl -sf -o "$WORK/snap.tgz" "http://$L/v1/snapshot"
        t1=$(now_ms)
        local built_ms built_bytes
        built_ms=$(grep -o 'built snapshot.*' "$WORK/reg$LEADER_N.log" | tail -1 | grep -o '\bms=[0-9]*' | cut -d= -f2 || true)
        built_bytes=$(grep -o 'built snapshot.*' "$WORK/reg$LEADER_N.log" | tail -1 | grep -o '\bbytes=[0-9]*' | cut -d= -f2 || true)
        emit "{\"mode\":\"snapshot\",\"label\":\"$tag.snapshot\",\"save_ms\":$((t1 - t0)),\"archive_bytes\":$(stat -c %s "$WORK/snap.tgz"),\"raft_snapshots_built\":$(grep -c 'built snapshot' "$WORK/reg$LEADER_N.log" || true),\"raft_last_built_ms\":${built_ms:-null},\"raft_last_built_bytes\":${built_bytes:-null}}"
    fi
    if has restore; then
        rm -rf "$WORK/reg9" "$WORK/reg9.log"
        start_server 9 -bootstrap-expect 1
        wait_body "http://$NET.9:8500/v1/status/leader" 60 ':'
        t0=$(now_ms)
        curl -sf -o /dev/null -X PUT --data-binary @"$WORK/snap.tgz" "http://$NET.9:8500/v1/snapshot"
        t1=$(now_ms)
        local ok=false
        curl -sf "http://$NET.9:8500/v1/kv/scale-marker?raw" | grep -q "$tag" && ok=true
        emit "{\"mode\":\"restore\",\"label\":\"$tag.restore\",\"restore_ms\":$((t1 - t0)),\"rss_kib\":$(rss_kib "${REG_PIDS[9]}"),\"marker_found\":$ok}"
        stop_pid "${REG_PIDS[9]}"
        unset 'REG_PIDS[9]'
        rm -rf "$WORK/reg9"
    fi
    if has catchup; then
        quiet
        rm -rf "$WORK/reg4"
        t0=$(now_ms)
        start_server 4 -retry-join "$LEADER_IP"
        local done=null
        if wait_body "http://$NET.4:8500/v1/kv/scale-marker?stale&raw" 600 "$tag"; then
            done=$(( $(now_ms) - t0 ))
        fi
        emit "{\"mode\":\"catchup\",\"label\":\"$tag.catchup\",\"catchup_ms\":$done,\"installed_snapshot\":$(grep -c 'installed snapshot' "$WORK/reg4.log" || true)}"
        "$REG" leave -http-addr="$NET.4:8500" >/dev/null 2>&1 || true
        stop_pid "${REG_PIDS[4]}"
        unset 'REG_PIDS[4]'
        rm -rf "$WORK/reg4"
        sleep 2
        find_leader
    fi
    if has restart; then
        quiet
        local f=$FOLLOWER_N
        stop_pid "${REG_PIDS[$f]}"
        curl -sf -o /dev/null -X PUT -d "$tag.restart" "http://$L/v1/kv/scale-marker"
        t0=$(now_ms)
        start_server "$f" "${SERVER_ARGS[@]}"
        local done=null
        if wait_body "http://$NET.$f:8500/v1/kv/scale-marker?stale&raw" 600 "$tag.restart"; then
            done=$(( $(now_ms) - t0 ))
        fi
        emit "{\"mode\":\"restart\",\"label\":\"$tag.restart\",\"restart_ms\":$done,\"rss_kib\":$(rss_kib "${REG_PIDS[$f]}")}"
        find_leader
    fi
}

for run in $RUNS; do
    log "$run run: 3 servers on $NET.1-3"
    start_cluster
    [ "$run" = catalog ] && [ "$CLIENTS" -gt 0 ] && start_clients
    register_web
    sleep 2
    RSS0=()
    for i in 1 2 3; do RSS0[$i]=$(rss_kib "${REG_PIDS[$i]}"); done
    have_nodes=0
    have_keys=0
    for pct in $STAGES; do
        if [ "$run" = catalog ]; then
            want=$((NODES * pct / 100))
            log "catalog $pct %: nodes $have_nodes..$want ($PER_NODE instances each, $SERVICES services)"
            "$BENCH" fill --addr "$L" --nodes-from "$have_nodes" --nodes-to "$want" \
                --per-node "$PER_NODE" --services "$SERVICES" --label "catalog.$pct.fill" | tee -a "$RESULTS"
            have_nodes=$want
            measure catalog "$pct" $((have_nodes * PER_NODE)) 0
        else
            want=$((KV * pct / 100))
            log "kv $pct %: keys $have_keys..$want"
            "$BENCH" fill --addr "$L" --kv-from "$have_keys" --kv-to "$want" \
                --label "kv.$pct.fill" | tee -a "$RESULTS"
            have_keys=$want
            measure kv "$pct" 0 "$have_keys"
        fi
    done
    stop_cluster
done

[ -n "${BENCH_OUT:-}" ] && cp "$RESULTS" "$BENCH_OUT"
log "results (registry $REG_REV; $NODES nodes / $INSTANCES instances / $KV keys; $(nproc) vCPU)"
python3 "$ROOT/benches/scale_report.py" "$RESULTS" ${BENCH_SVG:+--svg "$BENCH_SVG"}
