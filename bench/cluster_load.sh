#!/usr/bin/env bash
# Cluster load (not a test): 3 `openum serve` nodes on one private PostgreSQL, N calls through SIP
# to SIPp spread over them, GetPhoneCallInformation on random nodes at a fixed total rate, every
# answer checked; then the same with one node, in the same run.
# usage: bench/cluster_load.sh [calls, default 300] [req/s, default 1000] [seconds, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -q -p openum --bin openum --example cluster_load
target/release/examples/cluster_load target/release/openum "${1:-300}" "${2:-1000}" "${3:-10}"
