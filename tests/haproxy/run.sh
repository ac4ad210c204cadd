#!/usr/bin/env bash
# End-to-end: HAProxy (Debian package) discovers backends through the registry's DNS.
#
# Starts `registry agent -dev` on free loopback ports, three local HTTP backends, registers
# them as service `web` (with a passing check each) through the HTTP API, and runs HAProxy
# with a `resolvers` section pointing at the registry's DNS port and
#   server-template web 5 _web._tcp.service.consul resolvers registry ...
# Then checks that traffic reaches all three, that backend-2 leaves the rotation within 5 s
# after its check turns critical (the backend itself keeps running: only DNS can tell
# HAProxy), and that it comes back when the check passes again.
#
# A second service, `multi`, has three instances on ONE node (one address, three ports: containers
# on one host). HAProxy pairs each SRV answer with its own address record in the additional
# section, so all three slots fill only when, as Consul does, every SRV answer carries one.
#
# Installs haproxy with apt-get when missing; prints "SKIP: ..." and exits 0 only when it
# cannot be installed and REGISTRY_TESTS_STRICT is unset (under strict mode that is a failure). Uses REGISTRY_BIN, else target/{release,debug}/registry (built with
# cargo when neither exists). Everything stays on 127.0.0.1; processes are stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/haproxy-e2e.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$WORK"/*.log; do echo "--- $f" >&2; tail -30 "$f" >&2; done; exit 1; }

if ! command -v haproxy >/dev/null; then
  echo "installing haproxy..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy) >/dev/null 2>&1 || true
fi
if ! command -v haproxy >/dev/null; then
  [ -n "${REGISTRY_TESTS_STRICT:-}" ] && fail "haproxy is not installed and could not be installed (REGISTRY_TESTS_STRICT)"
  echo "SKIP: haproxy is not installed and could not be installed with apt-get"
  exit 0
fi
command -v curl >/dev/null || fail "curl is needed"
command -v dig >/dev/null || fail "dig is needed (dnsutils)"

BIN=${REGISTRY_BIN:-}
if [ -z "$BIN" ]; then
  for p in "$ROOT/target/release/registry" "$ROOT/target/debug/registry"; do
    if [ -x "$p" ] && { [ -z "$BIN" ] || [ "$p" -nt "$BIN" ]; }; then BIN=$p; fi
  done
fi
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build -p registry-agent >&2)
  BIN=$ROOT/target/debug/registry
fi

free_port() {
  python3 -c 'import socket
for _ in range(100):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: t.close(); u.close()'
}

HTTP=$(free_port); DNS=$(free_port); FE=$(free_port); FE2=$(free_port)
"$BIN" agent -dev -node e2e -http-port "$HTTP" -dns-port "$DNS" > "$WORK/registry.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do
  curl -fs "http://127.0.0.1:$HTTP/v1/status/leader" 2>/dev/null | grep -q ':' && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$HTTP/v1/status/leader" | grep -q ':' || fail "registry has no leader"

register() { # i port status
  curl -fs -X PUT "http://127.0.0.1:$HTTP/v1/catalog/register" -d "{
    \"Node\": \"web-node-$1\", \"Address\": \"127.0.0.1\",
    \"Service\": {\"ID\": \"web-$1\", \"Service\": \"web\", \"Port\": $2},
    \"Check\": {\"CheckID\": \"web-$1-check\", \"Name\": \"web\", \"ServiceID\": \"web-$1\", \"Status\": \"$3\"}
  }" > /dev/null || fail "register web-$1"
}

for i in 1 2 3; do
  mkdir -p "$WORK/www$i"; printf 'backend-%s' "$i" > "$WORK/www$i/index.html"
  port=$(free_port); eval "PORT_$i=$port"
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$WORK/www$i" > "$WORK/backend$i.log" 2>&1 &
  PIDS+=($!)
  register "$i" "$port" passing
done

# `multi`: three instances on one node, one address, three ports.
for i in 1 2 3; do
  mkdir -p "$WORK/multi$i"; printf 'multi-%s' "$i" > "$WORK/multi$i/index.html"
  port=$(free_port)
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$WORK/multi$i" > "$WORK/multi$i.log" 2>&1 &
  PIDS+=($!)
  curl -fs -X PUT "http://127.0.0.1:$HTTP/v1/catalog/register" -d "{
    \"Node\": \"multi-node\", \"Address\": \"127.0.0.1\",
    \"Service\": {\"ID\": \"multi-$i\", \"Service\": \"multi\", \"Port\": $port}
  }" > /dev/null || fail "register multi-$i"
done
n=$(dig +time=1 +tries=2 @127.0.0.1 -p "$DNS" _multi._tcp.service.consul SRV 2>/dev/null \
  | awk '/^;; ADDITIONAL SECTION/{a=1;next} a && $4=="A"{c++} END{print c+0}')
[ "$n" = 3 ] || fail "_multi._tcp.service.consul SRV: $n address records in the additional section, want 3 (one per SRV answer)"

for _ in $(seq 1 50); do
  n=$(dig +short +time=1 +tries=1 @127.0.0.1 -p "$DNS" _web._tcp.service.consul SRV 2>/dev/null | grep -c . || true)
  [ "$n" = 3 ] && break
  sleep 0.1
done
[ "${n:-0}" = 3 ] || fail "registry DNS on port $DNS does not answer _web._tcp.service.consul SRV with 3 records (is DNS wired into the agent?)"

cat > "$WORK/haproxy.cfg" <<EOF
global
    log stderr format raw local0 warning
defaults
    mode http
    log global
    timeout connect 1s
    timeout client 5s
    timeout server 5s
resolvers registry
    nameserver dns1 127.0.0.1:$DNS
    accepted_payload_size 8192
    resolve_retries 3
    timeout resolve 300ms
    timeout retry 300ms
    hold valid 1s
    hold obsolete 0s
    hold nx 0s
    hold other 0s
    hold refused 0s
    hold timeout 0s
frontend fe
    bind 127.0.0.1:$FE
    default_backend be
backend be
    balance roundrobin
    server-template web 5 _web._tcp.service.consul resolvers registry resolve-prefer ipv4 init-addr none
frontend fe2
    bind 127.0.0.1:$FE2
    default_backend be2
backend be2
    balance roundrobin
    server-template multi 5 _multi._tcp.service.consul resolvers registry resolve-prefer ipv4 init-addr none
EOF
haproxy -c -f "$WORK/haproxy.cfg" > "$WORK/haproxy-check.log" 2>&1 || fail "haproxy rejected the config"
haproxy -db -f "$WORK/haproxy.cfg" > "$WORK/haproxy.log" 2>&1 &
PIDS+=($!)

get() { curl -fs --max-time 2 "http://127.0.0.1:$FE/" 2>/dev/null || true; }
now_ms() { date +%s%3N; }

t0=$(now_ms); SEEN=" "
while [ "$(echo $SEEN | wc -w)" -lt 3 ]; do
  [ $(( $(now_ms) - t0 )) -lt 15000 ] || fail "haproxy reached only:$SEEN"
  b=$(get)
  if [ -n "$b" ]; then case "$SEEN" in *" $b "*) ;; *) SEEN="$SEEN$b " ;; esac; else sleep 0.1; fi
done
echo "haproxy routes to:$SEEN($(( $(now_ms) - t0 )) ms after start)"

# Three instances sharing one address: every one gets a slot.
t0=$(now_ms); SEEN=" "
while [ "$(echo $SEEN | wc -w)" -lt 3 ]; do
  [ $(( $(now_ms) - t0 )) -lt 15000 ] || fail "haproxy reached only:$SEEN of multi-1..3 (instances on one address)"
  b=$(curl -fs --max-time 2 "http://127.0.0.1:$FE2/" 2>/dev/null || true)
  if [ -n "$b" ]; then case "$SEEN" in *" $b "*) ;; *) SEEN="$SEEN$b " ;; esac; else sleep 0.1; fi
done
echo "haproxy routes to all instances on one address:$SEEN"

register 2 "$PORT_2" critical
t0=$(now_ms); clean=0
while [ "$clean" -lt 30 ]; do
  [ $(( $(now_ms) - t0 )) -lt 10000 ] || fail "haproxy still routes to backend-2 after 10 s"
  b=$(get)
  case "$b" in backend-2) clean=0 ;; "") sleep 0.05 ;; *) clean=$((clean + 1)) ;; esac
done
dropped=$(( $(now_ms) - t0 ))
echo "backend-2 out of rotation ${dropped} ms after its check turned critical"
[ "$dropped" -lt 5000 ] || fail "took ${dropped} ms (limit 5000)"

register 2 "$PORT_2" passing
t0=$(now_ms)
until [ "$(get)" = backend-2 ]; do
  [ $(( $(now_ms) - t0 )) -lt 10000 ] || fail "backend-2 never came back"
done
echo "backend-2 back in rotation after $(( $(now_ms) - t0 )) ms"
echo "2 passed, 0 failed"
