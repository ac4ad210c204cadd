#!/usr/bin/env bash
# benches/acl.sh — what ACL enforcement costs on the hot paths: KV PUT/s and default GET/s on a
# one-server registry with ACLs off (the anchor) and on (default_policy "deny", every request
# carrying a token linked to four policies and a role), alternating off/on rounds in the same
# run so that both see the same machine.
#
#   bash benches/acl.sh            # ROUNDS=3 DURATION=5 CLIENTS=8
#
# Prints one JSON line per measurement (label "<off|on>.<put|get>.<round>") and the medians,
# with the on/off ratio. Binaries: REGISTRY_BIN (default $CARGO_TARGET_DIR/release/registry)
# and BENCH (default $CARGO_TARGET_DIR/release/registry-bench). Benchmark only: asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
REG=${REGISTRY_BIN:-$TARGET/release/registry}
BENCH=${BENCH:-$TARGET/release/registry-bench}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CLIENTS=${CLIENTS:-8}
BASE=${BENCH_PORT_BASE:-27100}
HTTP=$((BASE + 600))
SRV=$((BASE + 610))
WORK=$(mktemp -d /tmp/registry-acl-bench.XXXXXX)
RESULTS=$WORK/results.jsonl
PID=
for b in "$REG" "$BENCH"; do
    [ -x "$b" ] || { echo "missing $b (cargo build --release -p registry-agent -p registry-bench)" >&2; exit 2; }
done
cleanup() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ACL_HCL='acl {
  enabled = true
  default_policy = "deny"
  tokens { initial_management = "bench-root" }
}'
URL=http://127.0.0.1:$HTTP

put_root() { # path, json body -> response body
    curl -sf -X PUT -H 'X-Consul-Token: bench-root' --data "$2" "$URL$1"
}

# The token the "on" rounds send: four policies (one grants the KV prefix the load uses, the
# others other prefixes, services and nodes, so the authorizer has rules to search) and a role.
make_token() {
    local i
    for _ in $(seq 100); do
        curl -sf -o /dev/null -H 'X-Consul-Token: bench-root' "$URL/v1/acl/token/self" && break
        sleep 0.1
    done
    put_root /v1/acl/policy '{"Name":"bench-kv","Rules":"key_prefix \"\" { policy = \"write\" }"}' >/dev/null
    for i in 1 2 3; do
        put_root /v1/acl/policy "{\"Name\":\"bench-p$i\",\"Rules\":\"key_prefix \\\"app$i/\\\" { policy = \\\"read\\\" }\\nservice_prefix \\\"svc$i\\\" { policy = \\\"write\\\" }\\nnode_prefix \\\"\\\" { policy = \\\"read\\\" }\"}" >/dev/null
    done
    put_root /v1/acl/role '{"Name":"bench-role","ServiceIdentities":[{"ServiceName":"web"}]}' >/dev/null
    put_root /v1/acl/token '{"Policies":[{"Name":"bench-kv"},{"Name":"bench-p1"},{"Name":"bench-p2"},{"Name":"bench-p3"}],"Roles":[{"Name":"bench-role"}]}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["SecretID"])'
}

round() { # mode (off|on), round
    local mode=$1 r=$2 dir=$WORK/data.$1.$2 token=
    if [ "$mode" = on ]; then
        start_single "$REG" "$dir" "$HTTP" "$SRV" -log-level warn -hcl "$ACL_HCL"
        token=$(make_token)
    else
        start_single "$REG" "$dir" "$HTTP" "$SRV" -log-level warn
    fi
    curl -sf -o /dev/null -X PUT -H "X-Consul-Token: $token" --data hello "$URL/v1/kv/foo"
    CONSUL_HTTP_TOKEN=$token bench "$mode.put.$r" kv-put --clients "$CLIENTS" \
        --duration "$DURATION" --warmup 1 --addr "127.0.0.1:$HTTP" --pid "$PID"
    CONSUL_HTTP_TOKEN=$token bench "$mode.get.$r" kv-get --clients "$CLIENTS" \
        --duration "$DURATION" --warmup 1 --addr "127.0.0.1:$HTTP" --pid "$PID"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    rm -rf "$dir" "$dir.log"
}

for r in $(seq "$ROUNDS"); do
    round off "$r"
    round on "$r"
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(mode, op, field):
    xs = [r[field] for r in rows if r.get("label", "").startswith(f"{mode}.{op}.") and field in r]
    return statistics.median(xs) if xs else float("nan")
for op, name in (("put", "KV PUT"), ("get", "KV GET (default)")):
    off, on = med("off", op, "ops_per_s"), med("on", op, "ops_per_s")
    print(f"{name}: ACLs off {off:.0f} ops/s (p99 {med('off', op, 'p99_us'):.0f} us), "
          f"on {on:.0f} ops/s (p99 {med('on', op, 'p99_us'):.0f} us): on/off = {on / off:.3f}")
PY
