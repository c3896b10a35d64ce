#!/usr/bin/env bash
# REST routes side by side, in one run: wrk -t2 -c64 -d10s on
# examples/hello.rs `/hello` (the ceiling: axum with nothing in it) and on
# ratesd's latest rate, conversion, candles and ticker routes (embedded engine,
# the simulated source with its 30-minute backfill), three interleaved
# rounds. Needs release builds (`cargo build --release --bin ratesd
# --example hello`) and wrk; RATESD names another ratesd binary.
# Usage: loadtest/routes.sh [seconds per run]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
./target/release/examples/hello 127.0.0.1:18199 >/dev/null 2>&1 &
pids+=($!)
RATES_LOG=warn RATES_RATE_LIMIT_PER_SECOND=0 RATES_HTTP_MAX_CONNECTIONS_PER_IP=0 \
  RATES_HTTP_ADDR=127.0.0.1:18191 "${RATESD:-./target/release/ratesd}" >/dev/null 2>&1 &
pids+=($!)
t0=$SECONDS
until curl -fs http://127.0.0.1:18191/health/ready >/dev/null; do
  sleep 0.2
  if ((SECONDS - t0 > 60)); then echo "ratesd never ready" >&2; exit 1; fi
done
sleep 2
for round in 1 2 3; do
  for target in "hello 18199 /hello" \
    "rate 18191 /api/v1/rates/EURUSD" \
    "convert 18191 /api/v1/convert?from=EUR&to=JPY" \
    "candles 18191 /api/v1/rates/EURUSD/candles?interval=1m" \
    "tickers 18191 /api/v1/tickers" \
    "ticker 18191 /api/v1/rates/EURUSD/ticker"; do
    read -r name port path <<<"$target"
    out=$(wrk -t2 -c64 -d"${secs}s" --latency "http://127.0.0.1:$port$path")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    echo "round $round $name: $rps req/s, p99 $p99${non2xx:+, non-2xx $non2xx}"
  done
done
