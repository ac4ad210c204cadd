#!/usr/bin/env bash
# benches/metrics-instructions.sh — the cost of metrics per KV PUT in server CPU (steadier than
# PUT/s on a shared machine). Alternates the same `registry` binary with metrics on (the
# default) and off (REGISTRY_METRICS=off), a fresh one-server registry each round, and counts
# the server's user-space instructions (perf stat; where the machine has no hardware counters,
# as in most VMs, its CPU time instead: task-clock) over N sequential PUTs on one keep-alive
# connection (curl URL globbing). Prints the cost per PUT for each round and the median
# overhead.
#
#   bash benches/metrics-instructions.sh            # BIN defaults to the debug build
#   BIN=target/release/registry bash benches/metrics-instructions.sh
#
# Knobs: BENCH_ROUNDS=3 (pairs), BENCH_PUTS=3000. A benchmark: prints figures, asserts
# nothing. Servers listen on 127.0.0.1 only and are stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. benches/lib.sh

ROUNDS=${BENCH_ROUNDS:-3}
PUTS=${BENCH_PUTS:-3000}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/registry}
WORK=$(mktemp -d /tmp/metrics-instr.XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
command -v perf >/dev/null || { echo "perf is required" >&2; exit 1; }
HTTP=18750
SRV=18760

round() { # on|off, round -> instructions per PUT
    local mode=$1 n=$2 dir=$WORK/$1-$2
    if [ "$mode" = off ]; then
        REGISTRY_METRICS=off start_single "$BIN" "$dir" "$HTTP" "$SRV"
    else
        start_single "$BIN" "$dir" "$HTTP" "$SRV"
    fi
    # Warm up (connections, allocator, first-use handles).
    curl -s -o /dev/null -X PUT --data v "http://127.0.0.1:$HTTP/v1/kv/warm[1-200]"
    perf stat -x, -e "$EVENT" -p "$PID" -o "$dir.perf" -- \
        curl -s -o /dev/null -X PUT --data v "http://127.0.0.1:$HTTP/v1/kv/bench/k[1-$PUTS]"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    # instructions: per PUT; task-clock (ms): microseconds per PUT.
    awk -F, -v n="$PUTS" -v ev="$EVENT" '$3 ~ ev {printf "%.0f\n", (ev == "task-clock" ? $1 * 1000 : $1) / n}' "$dir.perf"
}

EVENT=instructions:u
if ! perf stat -x, -e instructions:u -- true 2>&1 | grep -q '^[0-9]'; then
    EVENT=task-clock
fi
UNIT=$([ "$EVENT" = task-clock ] && echo "us CPU" || echo "instructions")

on=()
off=()
for r in $(seq "$ROUNDS"); do
    # Alternate which side goes first, so a drift of the machine favours neither.
    if [ $((r % 2)) -eq 1 ]; then
        a=$(round on "$r")
        b=$(round off "$r")
    else
        b=$(round off "$r")
        a=$(round on "$r")
    fi
    on+=("$a")
    off+=("$b")
    echo "round $r: metrics on $a $UNIT/PUT, off $b"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
mon=$(median "${on[@]}")
moff=$(median "${off[@]}")
pairs=()
for i in "${!on[@]}"; do
    pairs+=("$(awk -v a="${on[$i]}" -v b="${off[$i]}" 'BEGIN {printf "%.2f", (a-b)*100/b}')")
done
echo "per pair: ${pairs[*]} %; median of pairs $(printf '%s\n' "${pairs[@]}" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')%"
echo "median: on $mon, off $moff $UNIT/PUT; overhead $(awk -v a="$mon" -v b="$moff" 'BEGIN {printf "%.2f", (a-b)*100/b}')% (binary $BIN)"
