#!/usr/bin/env bash
# PlayOnPhone answer-time benchmark (not a test): an imported item vs an item in the caller's
# Exchange mailbox (mailbox double of openum-testkit), fetched cold and from the audio cache, same
# run, in process on loopback. Prints markdown tables; ratios are against the imported item.
# usage: bench/play_latency.sh [--mp3] [N_local [N_cold [N_cached]]]   (default 200 100 200)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p openum-server --example play_latency
exec target/release/examples/play_latency "$@"
