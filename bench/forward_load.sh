#!/usr/bin/env bash
# Forwarding benchmark (not a test): forwarded EWS requests/s through openum (One EWS URL) as a
# ratio to the same requests sent directly to the same mailbox double, both measured in this run
# on this machine. The request is a GetFolder of the Inbox (Basic auth), which openum forwards
# unchanged and whose answer it streams back. Loopback only; each wrk run is bounded in time.
#
# usage: bench/forward_load.sh [seconds per run, default 10] [connections, default 32]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)"; exit 1; }

cargo build --release -q -p openum
cargo build --release -q -p openum-server --example mailbox_double
bin=target/release/openum
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

target/release/examples/mailbox_double >"$work/double.url" & pids+=($!)
for _ in $(seq 50); do [ -s "$work/double.url" ] && break; sleep 0.1; done
direct=$(head -n 1 "$work/double.url")
port=18190
printf '[server]\nlisten = "127.0.0.1:%s"\n[mailbox]\news_url = "%s"\n' "$port" "$direct" >"$work/openum.toml"
"$bin" --config "$work/openum.toml" --data-dir "$work" serve 2>"$work/openum.log" & pids+=($!)
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
forwarded="http://127.0.0.1:$port/EWS/Exchange.asmx"

export OPENUM_BENCH_AUTH="Basic $(printf 'bench@example.com:bench-password' | base64)"
body='<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body><m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder></s:Body></s:Envelope>'
for url in "$direct" "$forwarded"; do
  check=$(curl -s -H "Authorization: $OPENUM_BENCH_AUTH" --data-binary "$body" "$url")
  grep -q '<m:ResponseCode>NoError</m:ResponseCode>' <<<"$check" ||
    { echo "$url did not answer the benchmark request with NoError:"; echo "$check"; exit 1; }
done

run() { wrk -t2 -c"$conns" -d"${secs}s" -s bench/forward_getfolder.lua "$1" | grep '^rps'; }
echo "warm-up"; wrk -t2 -c"$conns" -d2s -s bench/forward_getfolder.lua "$forwarded" >/dev/null
base=$(run "$direct")
ours=$(run "$forwarded")
echo "direct to the double: $base"
echo "through openum:       $ours"
b=$(awk '{print $2}' <<<"$base"); o=$(awk '{print $2}' <<<"$ours")
awk -v o="$o" -v b="$b" 'BEGIN { printf "ratio forwarded/direct = %.2f\n", o / b }'
