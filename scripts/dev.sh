#!/usr/bin/env bash
# Runs a single-node dev registry (server + agent, in memory) on 127.0.0.1:
# HTTP API on 8500, DNS on 8600. Extra arguments are passed to `registry agent`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -p registry-agent -- agent -dev \
    -client 127.0.0.1 -bind 127.0.0.1 -http-port 8500 -dns-port 8600 "$@"
