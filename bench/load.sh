#!/usr/bin/env bash
# Load benchmark (not a test): GetPhoneCallInformation requests/s through openum, reported as a
# ratio against a bare hyper server returning a fixed body, both measured in this run on this
# machine. Loopback only; each wrk run is bounded in time.
#
# usage: bench/load.sh [seconds per run, default 10] [connections, default 32]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)"; exit 1; }

cargo build --release -q -p openum
cargo build --release -q -p openum-server --example bare_hyper
bin=target/release/openum
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo 'bench-password' | "$bin" --data-dir "$work" user add bench --password-stdin
# The call belongs to this node (node_name = "bench"), as a call placed through it would.
printf '[server]\nnode_name = "bench"\nlisten = "127.0.0.1:18180"\n' >"$work/openum.toml"
"$bin" --config "$work/openum.toml" --data-dir "$work" serve 2>"$work/openum.log" & pids+=($!)
target/release/examples/bare_hyper 127.0.0.1:18181 2>/dev/null & pids+=($!)
for port in 18180 18181; do
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
done

# A live call of this node, recorded after start-up (one recorded before start-up would be an
# orphan of a previous run, which openum rightly closes as Disconnected/Other).
call_id=benchcall
python3 - "$work/openum.db" "$call_id" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO calls (id, owner, node, state, cause, sip_code, sip_text, dialled, item_id, created_at, ended_at) VALUES (?, 'bench', 'bench', 'Connected', 'None', 200, 'OK', '5551212', 'x', ?, NULL)", (sys.argv[2], int(time.time())))
db.commit()
PY

export OPENUM_BENCH_AUTH="Basic $(printf 'bench:bench-password' | base64)"
export OPENUM_BENCH_CALL=$call_id
check=$(curl -s -H "Authorization: $OPENUM_BENCH_AUTH" --data-binary @<(printf '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:GetPhoneCallInformation xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><m:PhoneCallId Id="%s"/></m:GetPhoneCallInformation></s:Body></s:Envelope>' "$call_id") http://127.0.0.1:18180/EWS/Exchange.asmx)
grep -q '<ResponseCode>NoError</ResponseCode>' <<<"$check" || { echo "openum did not answer the benchmark request with NoError:"; echo "$check"; exit 1; }

run() { wrk -t2 -c"$conns" -d"${secs}s" -s bench/getinfo.lua "$1" | grep '^rps'; }
echo "warm-up"; wrk -t2 -c"$conns" -d2s -s bench/getinfo.lua http://127.0.0.1:18180/EWS/Exchange.asmx >/dev/null
base=$(run http://127.0.0.1:18181/EWS/Exchange.asmx)
if [ -n "${OPENUM_BENCH_PERF:-}" ]; then
  perf record -g -o "$OPENUM_BENCH_PERF" -p "${pids[0]}" -- sleep "$secs" >/dev/null 2>&1 &
  perf_pid=$!
fi
# CPU time of the openum process over the measured run (user + system, kernel TCP included): a
# per-request cost that other load on the machine disturbs far less than req/s.
cpu_before=$(awk '{print $14 + $15}' "/proc/${pids[0]}/stat")
ours=$(run http://127.0.0.1:18180/EWS/Exchange.asmx)
cpu_after=$(awk '{print $14 + $15}' "/proc/${pids[0]}/stat")
[ -n "${perf_pid:-}" ] && wait "$perf_pid"
echo "bare hyper: $base"
echo "openum:     $ours"
b=$(awk '{print $2}' <<<"$base"); o=$(awk '{print $2}' <<<"$ours")
awk -v o="$o" -v b="$b" 'BEGIN { printf "ratio openum/bare = %.2f (target >= 0.60)\n", o / b }'
awk -v t="$((cpu_after - cpu_before))" -v o="$o" -v s="$secs" -v hz="$(getconf CLK_TCK)" \
  'BEGIN { printf "openum CPU per request = %.1f us\n", t * 1e6 / hz / (o * s) }'
