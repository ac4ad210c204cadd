# benches/lib.sh — helpers shared by the benchmark scripts (sourced, not run).
#
#   build_bins               builds registry and registry-bench for $PROFILE (not when
#                            BENCH_NO_BUILD is set to anything but 0), sets BIN and BENCH
#   port_free HOST PORT      whether nothing listens there
#   wait_http URL SECONDS    waits for URL to answer 2xx
#   quiet                    waits (at most BENCH_QUIET_MAX s) for the machine to go quiet
#   bench LABEL ARGS...      quiet, then "$BENCH" ARGS --label LABEL, appended to "$RESULTS"
#   stop_pids                stops every PID in PIDS (TERM, then KILL after 5 s)
#   cleanup_work             EXIT trap: stop_pids, then remove WORK unless BENCH_KEEP
#   start_single BIN DIR HTTP SRV ARGS...
#                            a one-server registry in DIR (HTTP port HTTP, server port SRV and
#                            the two after it), its PID in $PID, once it has a leader
#   etcd_member I CLUSTER STATE DIR ARGS...
#                            etcd member I (clients on 127.0.0.1:2379I), its PID in ETCD_PIDS[I]
#   etcd3_start DIR ARGS...  members 1-3 as a new cluster, once all three are healthy
#   etcd3_endpoint leader|follower   that member's client endpoint

build_bins() {
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    if [ -z "${BENCH_NO_BUILD:-}" ] || [ "${BENCH_NO_BUILD}" = 0 ]; then
        if [ "${PROFILE:-release}" = release ]; then
            cargo build --release -q -p registry-agent -p registry-bench >&2
        else
            cargo build -q -p registry-agent -p registry-bench >&2
        fi
    fi
    BIN=${REG:-$target/${PROFILE:-release}/registry}
    BENCH=$target/${PROFILE:-release}/registry-bench
}

# Stops every process in PIDS (TERM, then KILL after 5 s) and empties the list.
stop_pids() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    PIDS=()
}

# The EXIT trap of a benchmark: stop_pids, then remove WORK unless BENCH_KEEP is set.
cleanup_work() {
    stop_pids
    if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}

port_free() { ! (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_http() { # url, seconds
    local i
    for i in $(seq $(($2 * 10))); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "timed out waiting for $1" >&2
    return 1
}

# Waits (at most BENCH_QUIET_MAX s) for the machine to be below 20 % busy, as the anchors
# did; other processes' CPU during each window is reported as foreign_cpu_s either way.
quiet() {
    local i a b
    for i in $(seq "${BENCH_QUIET_MAX:-10}"); do
        a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
        sleep 1
        b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
        if awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," ");split(b,y," ");
              exit !((y[1]-x[1]) < 0.2*(y[2]-x[2]))}'; then return 0; fi
    done
    echo "   (machine still busy; measuring anyway, see foreign_cpu_s)" >&2
}

bench() { # label, registry-bench args...
    local label=$1
    shift
    quiet
    "$BENCH" "$@" --label "$label" | tee -a "$RESULTS"
}

start_single() { # binary, data dir, http port, server port, extra agent args...
    local bin=$1 dir=$2 http=$3 srv=$4
    shift 4
    mkdir -p "$dir"
    "$bin" agent -server -bootstrap-expect 1 -data-dir "$dir" -node n1 -bind 127.0.0.1 \
        -client 127.0.0.1 -http-port "$http" -server-port "$srv" -serf-lan-port $((srv + 1)) \
        -serf-wan-port $((srv + 2)) -dns-port 0 \
        -hcl $'limits {\n  http_max_conns_per_client = 0\n  rpc_max_conns_per_client = 0\n}' \
        "$@" >"$dir.log" 2>&1 &
    PID=$!
    local leader=
    for _ in $(seq 100); do
        leader=$(curl -s "http://127.0.0.1:$http/v1/status/leader" || true)
        [ -n "$leader" ] && [ "$leader" != '""' ] && break
        sleep 0.1
    done
}

# The 3-member etcd cluster of the benchmarks: clients on 127.0.0.1:23791-23793, peers on
# 23801-23803 (a fourth member, if added, on 23794/23804).
ETCD3_CLUSTER="n1=http://127.0.0.1:23801,n2=http://127.0.0.1:23802,n3=http://127.0.0.1:23803"
ETCD3_ENDPOINTS=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793

etcd_member() { # i, initial-cluster, state (new|existing), data dir, extra etcd args...
    local i=$1 cluster=$2 state=$3 dir=$4
    shift 4
    port_free 127.0.0.1 "2379$i" || { echo "etcd port 2379$i is busy" >&2; exit 1; }
    etcd --name "n$i" --data-dir "$dir/etcd3-$i" \
        --listen-client-urls "http://127.0.0.1:2379$i" \
        --advertise-client-urls "http://127.0.0.1:2379$i" \
        --listen-peer-urls "http://127.0.0.1:2380$i" \
        --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
        --initial-cluster "$cluster" --initial-cluster-state "$state" \
        --initial-cluster-token perf3 --logger=zap --log-level=warn "$@" \
        >"$dir/etcd$i.log" 2>&1 &
    ETCD_PIDS[$i]=$!
}

etcd3_start() { # data dir, extra etcd args...
    local dir=$1 i
    shift
    for i in 1 2 3; do etcd_member "$i" "$ETCD3_CLUSTER" new "$dir" "$@"; done
    for i in 1 2 3; do wait_http "http://127.0.0.1:2379$i/health" 30; done
}

etcd3_endpoint() { # leader | follower: that member's client endpoint
    ETCDCTL_API=3 etcdctl --endpoints="$ETCD3_ENDPOINTS" endpoint status -w json \
        | python3 -c '
import json, sys
s = json.load(sys.stdin)
leader = sys.argv[1] == "leader"
print([e["Endpoint"] for e in s
       if (e["Status"]["header"]["member_id"] == e["Status"]["leader"]) == leader][0])' "$1"
}
