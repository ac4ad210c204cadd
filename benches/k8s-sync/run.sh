#!/usr/bin/env bash
# benches/k8s-sync/run.sh — k8s-sync with SERVICES Services × ENDPOINTS ready endpoints in the
# fake Kubernetes API server, against `registry agent -dev` (issue 12). Prints, next to anchors
# measured in the same run on the same registry build:
#   - time to the first full sync, and registry writes/transactions issued;
#   - anchor: the same instances written straight to /v1/txn (64-op transactions, one client);
#   - k8s-sync's steady-state CPU and RSS;
#   - endpoint change → /v1/health/service (blocking query) latency p50/p99;
#   - anchor: a check flip written straight to the catalog, seen the same way.
# Usage: benches/k8s-sync/run.sh [SERVICES] [ENDPOINTS]
# Env: CARGO_TARGET_DIR, PROFILE (release|debug, default release), CHANGES (default 200),
# PACE (seconds between changes, default 0.25);
# OLD_K8S_SYNC=<binary> alternates it with this build (NEW_K8S_SYNC, default the target dir's)
# in ROUNDS (default 2) rounds on the same registry and fake, and prints both.
set -euo pipefail
cd "$(dirname "$0")"
exec python3 bench.py "$@"
