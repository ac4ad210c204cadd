#!/usr/bin/env bash
# The one test command: installs what the tests need (idempotently), then runs formatting and
# lint checks, builds the `registry` binary, runs the Rust test suite and the Python suites
# (py-consul client, VictoriaMetrics service discovery). Exits non-zero if anything fails.
#
# Environment:
#   CARGO_TARGET_DIR   build directory (default: ${XDG_CACHE_HOME:-$HOME/.cache}/registry-target)
#   REGISTRY_PROFILE   debug (default) or release: profile of the binary under test
#   TEST_THREADS       parallel tests for the Rust suite (default: 6)
#   SKIP_LINT=1        skip cargo fmt / clippy (local iteration only)
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/registry-target}
PROFILE=${REGISTRY_PROFILE:-debug}
TEST_THREADS=${TEST_THREADS:-6}
VENV=$CACHE/registry-test/venv
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export REGISTRY_TESTS_STRICT=1
# Test errors (anyhow) without backtraces; panics keep RUST_BACKTRACE's setting.
export RUST_LIB_BACKTRACE=${RUST_LIB_BACKTRACE:-0}

FAILED=()
START=$(date +%s)

section() {
    printf '\n==================== %s ====================\n' "$*"
}

# run NAME CMD...: runs a stage, records a failure, never exits.
run() {
    local name=$1
    shift
    local t0=$(date +%s)
    "$@"
    local rc=$?
    if [ $rc -ne 0 ]; then
        FAILED+=("$name (exit $rc)")
        echo ">>> $name FAILED (exit $rc) after $(( $(date +%s) - t0 ))s"
    else
        echo ">>> $name ok in $(( $(date +%s) - t0 ))s"
    fi
    return $rc
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root to run: $*" >&2
        return 1
    fi
}

install_system_packages() {
    local missing=()
    command -v dig >/dev/null 2>&1 || missing+=(dnsutils)
    command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v ss >/dev/null 2>&1 || missing+=(iproute2)
    command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
    # Network partitions in the cluster tests (iptables rules on loopback).
    command -v iptables >/dev/null 2>&1 || missing+=(iptables)
    # Test certificates for the TLS gRPC and HTTP/2 ping check tests.
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    for p in npm buildah podman runc; do command -v $p >/dev/null 2>&1 || missing+=($p); done  # helm/test/run.sh
    [ -x /usr/bin/chromedriver ] || missing+=(chromium chromium-driver)
    command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client) # k8s-sync e2e tests drive the fake API server with kubectl
    command -v faketime >/dev/null 2>&1 || missing+=(faketime)  # jepsen/ clock nemesis
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        echo "system packages present"
        return 0
    fi
    echo "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" || return 1
}

setup_venv() {
    local req=$ROOT/tests/python/requirements.txt
    local stamp=$VENV/.requirements.sha256
    local want
    want=$(sha256sum "$req" | cut -d' ' -f1)
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$VENV/bin/python" -c 'import consul, pytest' >/dev/null 2>&1; then
        echo "venv up to date: $VENV"
        return 0
    fi
    mkdir -p "$(dirname "$VENV")"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" || return 1
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$req" || return 1
    echo "$want" >"$stamp"
    "$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null | grep -iE '^(py-consul|pytest) '
}

cargo_tests() {
    if cargo nextest --version >/dev/null 2>&1; then
        timeout 1500 cargo nextest run --workspace --no-fail-fast \
            --tool-config-file "registry-tests:$ROOT/scripts/nextest.toml" \
            --test-threads "$TEST_THREADS" --failure-output final \
            --cargo-profile "$( [ "$PROFILE" = release ] && echo release || echo dev )"
        local rc=$?
        # nextest does not run doc tests.
        timeout 600 cargo test --workspace --doc $( [ "$PROFILE" = release ] && echo --release )
        local rc2=$?
        [ $rc -eq 0 ] && [ $rc2 -eq 0 ]
    else
        timeout 1500 cargo test --workspace --no-fail-fast \
            $( [ "$PROFILE" = release ] && echo --release ) -- --test-threads "$TEST_THREADS"
    fi
}

pytest_suites() {
    # Exit code 5 (no tests collected) is a failure here: the suites must exist.
    (cd "$ROOT/tests" && timeout 900 "$VENV/bin/python" -m pytest -p no:cacheprovider \
        -o console_output_style=classic python vm)
}

section "environment"
echo "root: $ROOT"
echo "CARGO_TARGET_DIR: $CARGO_TARGET_DIR"
echo "profile: $PROFILE, test threads: $TEST_THREADS, CI=${CI:-}"
cargo --version
rustc --version
python3 --version

section "install test dependencies"
run "system packages" install_system_packages
run "python venv" setup_venv

if [ "${SKIP_LINT:-0}" != 1 ]; then
    section "cargo fmt --check"
    run "cargo fmt" cargo fmt --all -- --check

    section "cargo clippy"
    run "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
fi

section "build ($PROFILE): workspace with all targets, including the registry binary"
BUILD_FLAGS=()
[ "$PROFILE" = release ] && BUILD_FLAGS+=(--release)
# Tests use exactly this binary (never a stale one from an earlier build).
export REGISTRY_BIN=$CARGO_TARGET_DIR/$PROFILE/registry
# One build of every target with the workspace's unified features: the test run below then
# compiles nothing more. If some test target does not compile, still build the binary alone so
# the black-box suites can run.
if ! run "cargo build --workspace --all-targets" cargo build "${BUILD_FLAGS[@]}" --workspace --all-targets; then
    if ! run "cargo build -p registry-agent" cargo build "${BUILD_FLAGS[@]}" -p registry-agent; then
        rm -f "$REGISTRY_BIN"
    fi
fi
if [ -x "$REGISTRY_BIN" ]; then
    echo "REGISTRY_BIN=$REGISTRY_BIN"
else
    echo "expected binary $REGISTRY_BIN is missing"
    FAILED+=("registry binary missing")
fi

section "cargo tests"
run "cargo tests" cargo_tests

section "pytest: py-consul client and VictoriaMetrics discovery"
if [ -x "$VENV/bin/python" ]; then
    run "pytest" pytest_suites
else
    FAILED+=("pytest (no venv)")
fi

section "HAProxy discovers backends through the registry's DNS"
run "haproxy e2e" bash "$ROOT/tests/haproxy/run.sh"

section "Helm chart and container image"
run "helm chart" bash "$ROOT/helm/test/run.sh"
section "py-consul's own upstream test suite (1.8.0 sdist) against the registry"
run "py-consul upstream" bash "$ROOT/tests/pyconsul-upstream/run.sh"
section "web UI in headless Chromium (screenshots in tests/ui/artifacts)"
run "ui browser tests" bash "$ROOT/tests/ui/run.sh"
section "jepsen: every workload under faults; the broken modes must be caught"
run "jepsen" bash "$ROOT/jepsen/run-ci.sh"

section "summary"
echo "total time: $(( $(date +%s) - START ))s"
if [ ${#FAILED[@]} -ne 0 ]; then
    echo "FAILED stages:"
    printf '  - %s\n' "${FAILED[@]}"
    exit 1
fi
echo "all stages passed"
