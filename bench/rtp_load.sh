#!/usr/bin/env bash
# RTP load benchmark (not a test): openum's media scheduler with shared sockets (sendmmsg) and
# with a socket per stream, vs a task-per-stream baseline, same run, N = 500, 2000, 5000
# concurrent streams by default. Loopback only; bounded in time.
# RTP_LOAD_ONLY=shared|per-call runs one scheduler mode alone (for perf).
# usage: bench/rtp_load.sh [seconds per phase, default 10] [N ...]
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -q -p openum-call-runtime --example rtp_load
exec target/release/examples/rtp_load "$@"
