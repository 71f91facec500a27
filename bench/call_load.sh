#!/usr/bin/env bash
# Full-path call load (not a test): N calls through openum's SIP stack to a SIPp UAS, with
# [sip] rtp_sockets = "per-call" then "shared" at each N (one process), then the
# scheduler-vs-task-per-stream comparison at the same N (the baseline), in the same run.
# Then SRTP and SIP over TLS (via Kamailio) against plain RTP/UDP at the same N (secure_call_load).
# usage: bench/call_load.sh [seconds, default 10] [N ..., default 200 1000 2000]
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
secs=${1:-10}; shift || true
ns=("$@"); [ ${#ns[@]} -gt 0 ] || ns=(200 1000 2000)
cargo build --release -q -p openum-server --example call_load && cargo build --release -q -p openum-call-runtime --example rtp_load
cargo build --release -q -p openum-server --example secure_call_load
echo "## calls through SIP to SIPp"
target/release/examples/call_load "$secs" "${ns[@]}"
echo
echo "## media only: openum scheduler vs task-per-stream baseline"
target/release/examples/rtp_load "$secs" "${ns[@]}"
echo
echo "## SRTP and SIP over TLS, as ratios against plain RTP over SIP/UDP in the same run"
target/release/examples/secure_call_load "$secs" "${ns[@]}"
