#!/usr/bin/env bash
# Browser tests of the web UI: Debian's chromium and chromium-driver (installed with apt-get
# when missing) driven by Selenium (PyPI, in a cached venv of this stage) against a real
# `registry agent -dev` on free loopback ports (tests/ui/conftest.py), with axe-core (npm,
# tests/ui/package-lock.json) checking the pages' accessibility.
#
# Screenshots of every view at 1366x768 and 390x844 are kept in tests/ui/artifacts/ (or
# $UI_ARTIFACTS) for CI to collect. Strict: a browser that is missing or cannot start fails
# the stage, whatever REGISTRY_TESTS_STRICT says.
#
# Uses REGISTRY_BIN, else target/{release,debug}/registry under CARGO_TARGET_DIR or the
# workspace (tests/conftest.py finds it).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}
VENV=$CACHE/registry-test/ui-venv
REQ=$ROOT/tests/ui/requirements.txt
export REGISTRY_TESTS_STRICT=1
export UI_ARTIFACTS=${UI_ARTIFACTS:-$ROOT/tests/ui/artifacts}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "installing chromium and chromium-driver"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        chromium chromium-driver >/dev/null
fi
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "FAIL: /usr/bin/chromium and /usr/bin/chromedriver are required" >&2
    exit 1
fi
/usr/bin/chromium --version 2>/dev/null | head -1
/usr/bin/chromedriver --version | head -1

want=$(sha256sum "$REQ" | cut -d' ' -f1)
if ! { [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" = "$want" ] \
        && "$VENV/bin/python" -c 'import selenium, pytest' >/dev/null 2>&1; }; then
    mkdir -p "$(dirname "$VENV")"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || exit 1
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" || exit 1
    echo "$want" >"$VENV/.requirements.sha256"
fi

# axe-core (npm registry, pinned in package-lock.json) for the accessibility rules.
lock=$(sha256sum "$ROOT/tests/ui/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$ROOT/tests/ui/node_modules/.lock.sha256" 2>/dev/null)" != "$lock" ] \
        || [ ! -f "$ROOT/tests/ui/node_modules/axe-core/axe.min.js" ]; then
    command -v npm >/dev/null || { echo "FAIL: npm is required for axe-core" >&2; exit 1; }
    (cd "$ROOT/tests/ui" && npm ci --no-audit --no-fund --loglevel=error) || exit 1
    echo "$lock" >"$ROOT/tests/ui/node_modules/.lock.sha256"
fi

rm -rf "$UI_ARTIFACTS"
mkdir -p "$UI_ARTIFACTS"
cd "$ROOT/tests" || exit 1
# Selenium must use the given driver, never download one.
SE_OFFLINE=true timeout 900 "$VENV/bin/python" -m pytest -p no:cacheprovider \
    -o console_output_style=classic ui
rc=$?
echo "screenshots: $(ls "$UI_ARTIFACTS" | wc -l) in $UI_ARTIFACTS"
exit $rc
