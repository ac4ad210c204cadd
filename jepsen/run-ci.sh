#!/usr/bin/env bash
# CI stage for jepsen/: a short run of every workload under every nemesis available here, then
# the deliberately broken modes, which must be caught. Needs root (network namespaces),
# iptables, and libfaketime for the clock nemesis (apt: faketime); under
# REGISTRY_TESTS_STRICT=1 a missing tool is a failure, never a skip.
#
# Environment:
#   CARGO_TARGET_DIR, REGISTRY_PROFILE  where the jepsen and registry binaries were built
#                                       (scripts/test.sh builds both with the workspace)
#   JEPSEN_TIME_LIMIT                   seconds per run (default 10)
#   JEPSEN_NEMESES                      space-separated nemeses (default: partition kill pause
#                                       clock clock-rate lose-unsynced slow-disk; the disk ones
#                                       mount FUSE)
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}
TARGET=${CARGO_TARGET_DIR:-$CACHE/registry-target}
PROFILE=${REGISTRY_PROFILE:-debug}
JEPSEN=$TARGET/$PROFILE/jepsen
export REGISTRY_BIN=${REGISTRY_BIN:-$TARGET/$PROFILE/registry}
LIMIT=${JEPSEN_TIME_LIMIT:-10}
NEMESES=${JEPSEN_NEMESES:-partition kill pause clock clock-rate lose-unsynced slow-disk}
# A slow disk and a clock running fast or slow change timing, not durability: the workloads
# whose promises rest on timing and a set are enough for them. (Lock-delay is a timer on the
# leader: a leader whose clock runs 2x fast halves it, as it would in Consul.)
SLOW_DISK_WORKLOADS="register set lock"
CLOCK_RATE_WORKLOADS="register-default set"
WORKLOADS="register register-default set lock catalog watch bank"
STRICT=${REGISTRY_TESTS_STRICT:-0}
passed=0
failed=0
failures=()

fail() {
    failed=$((failed + 1))
    failures+=("$1")
    echo ">>> FAILED: $1"
}

for tool in ip iptables; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "missing $tool"
        exit 1
    fi
done
if [ ! -x "$JEPSEN" ] || [ ! -x "$REGISTRY_BIN" ]; then
    echo "missing $JEPSEN or $REGISTRY_BIN: build with cargo build --workspace first"
    exit 1
fi
if [[ " $NEMESES " == *" clock "* ]] && [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
    if [ "$STRICT" = 1 ]; then
        fail "clock nemesis: libfaketime missing (apt-get install faketime)"
    fi
    NEMESES=${NEMESES//clock-rate/}
    NEMESES=${NEMESES//clock/}
fi

if [[ " $NEMESES " == *" lose-unsynced "* || " $NEMESES " == *" slow-disk "* ]] && [ ! -e /dev/fuse ]; then
    if [ "$STRICT" = 1 ]; then
        fail "disk nemeses: /dev/fuse missing"
    fi
    NEMESES=${NEMESES//lose-unsynced/}
    NEMESES=${NEMESES//slow-disk/}
fi

verdict() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["valid"])' \
        "$ROOT/jepsen/store/latest/results.json" 2>/dev/null || echo missing
}

mkdir -p "$ROOT/jepsen/store"
START=$(date +%s)
for w in $WORKLOADS; do
    for n in $NEMESES; do
        if [ "$n" = slow-disk ] && [[ " $SLOW_DISK_WORKLOADS " != *" $w "* ]]; then
            continue
        fi
        if [ "$n" = clock-rate ] && [[ " $CLOCK_RATE_WORKLOADS " != *" $w "* ]]; then
            continue
        fi
        t0=$(date +%s)
        "$JEPSEN" test --workload "$w" --nemesis "$n" --time-limit "$LIMIT" --fault-interval 3 \
            >"$ROOT/jepsen/store/ci-last.log" 2>&1
        rc=$?
        v=$(verdict)
        echo "jepsen $w / $n: exit $rc, valid=$v, $(( $(date +%s) - t0 ))s"
        if [ $rc -eq 0 ] && [ "$v" = True ]; then
            passed=$((passed + 1))
        else
            tail -20 "$ROOT/jepsen/store/ci-last.log"
            fail "$w / $n (exit $rc, valid=$v, $(readlink "$ROOT/jepsen/store/latest"))"
        fi
    done
done

# The same checks with every request going through client agents (each on a machine of its
# own), which forward to the servers and fail over between them.
for wn in "register kill" "set partition" "lock pause"; do
    set -- $wn
    t0=$(date +%s)
    "$JEPSEN" test --workload "$1" --nemesis "$2" --time-limit "$LIMIT" --fault-interval 3 \
        --agents 3 >"$ROOT/jepsen/store/ci-last.log" 2>&1
    rc=$?
    v=$(verdict)
    echo "jepsen $1 / $2 through 3 client agents: exit $rc, valid=$v, $(( $(date +%s) - t0 ))s"
    if [ $rc -eq 0 ] && [ "$v" = True ]; then
        passed=$((passed + 1))
    else
        tail -20 "$ROOT/jepsen/store/ci-last.log"
        fail "$1 / $2 through client agents (exit $rc, valid=$v, $(readlink "$ROOT/jepsen/store/latest"))"
    fi
done

# The checker must catch the broken modes: exit 1 and valid=false. Faults hit at random
# moments, so a broken mode gets up to three runs to show itself.
expect_invalid() {
    local name=$1
    shift
    local attempt rc v
    for attempt in 1 2 3; do
        t0=$(date +%s)
        "$JEPSEN" test "$@" >"$ROOT/jepsen/store/ci-last.log" 2>&1
        rc=$?
        v=$(verdict)
        echo "jepsen broken mode $name (run $attempt): exit $rc, valid=$v, $(( $(date +%s) - t0 ))s"
        if [ $rc -eq 1 ] && [ "$v" = False ]; then
            passed=$((passed + 1))
            return
        fi
    done
    tail -20 "$ROOT/jepsen/store/ci-last.log"
    fail "broken mode $name was not caught (exit $rc, valid=$v)"
}
expect_invalid "stale read injected into the history" \
    --workload register --nemesis none --time-limit "$LIMIT" --broken-inject-stale-read
expect_invalid "default reads without the leader lease" \
    --workload register-default --nemesis partition-leader --time-limit 24 --fault-interval 8 \
    --concurrency 15 --request-timeout 1 --broken-unsafe-reads-without-lease

if [[ " $NEMESES " == *" lose-unsynced "* ]]; then
    expect_invalid "log appends acknowledged before they are synced" \
        --workload set --nemesis lose-unsynced-all --time-limit "$LIMIT" --fault-interval 3 \
        --recovery-timeout 15 --request-timeout 2 --broken-skip-log-sync
fi

echo "jepsen stage: $(( $(date +%s) - START ))s"
if [ $failed -ne 0 ]; then
    printf '  - %s\n' "${failures[@]}"
fi
echo "jepsen: $passed passed, $failed failed"
[ $failed -eq 0 ]
