#!/usr/bin/env bash
# openum vs SIPp as the caller (not a test): the same N calls to the same SIPp UAS far end, placed
# and streamed by openum (SIP stack + RTP scheduler; once with a socket pair per call, once with
# `[sip] rtp_sockets = "shared"`) and by SIPp (rtp_stream), in rotating order, in the same run;
# then where openum's memory per call goes (dhat heap profile by phase).
# usage: bench/caller_compare.sh [seconds, default 8] [rounds, default 2] [N ..., default 500 2000 5000]
#        OPENUM_BENCH_MEMORY_N=2000 (calls of the memory phases; 0 skips them)
# Needs sipp (sip-tester) and tcpdump, as root (tcpdump on lo). Ports: SIP 53060-53091, RTP 54000-54102.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
secs=${1:-8}; shift || true
rounds=${1:-2}; shift || true
ns=("$@"); [ ${#ns[@]} -gt 0 ] || ns=(500 2000 5000)
memory_n=${OPENUM_BENCH_MEMORY_N:-2000}
cargo build --release -q -p openum-server --example caller_compare --example caller_memory
echo "## openum vs SIPp as the caller (${secs} s windows, ${rounds} rounds)"
target/release/examples/caller_compare "$secs" "$rounds" "${ns[@]}"
if [ "$memory_n" -gt 0 ]; then
  for phase in ringing connected streaming; do
    echo
    target/release/examples/caller_memory "$phase" "$memory_n"
  done
  echo
  echo "### the same, streaming, with [sip] rtp_sockets = \"shared\""
  target/release/examples/caller_memory streaming "$memory_n" shared
fi
