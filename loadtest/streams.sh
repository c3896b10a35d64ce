#!/usr/bin/env bash
# Issue 23's stream figures, each against a fresh embedded server (simulated
# source, full windows) so that its memory is the stream's alone:
#   fanout: 5,000 SSE clients on one point stream against 5,000 v2
#           WebSocket clients, alternated twice (arrival p99, server RSS and CPU);
#   market: 1,000 clients on `!all@ticker` with 3,000 assets in the catalog
#           (`RATES_EXTRA_ASSETS`), and the same on `!all@point`.
# Needs a release build of ratesd and ws-load
# (`cargo build --release -p ratesd -p ws-load`; RATESD and WS_LOAD name others).
# Usage: loadtest/streams.sh [fanout|market|all] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:-all}
seconds=${2:-30}
bin=${RATESD:-./target/release/ratesd}
load=${WS_LOAD:-./target/release/ws-load}
port=18302
pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap stop EXIT
start() {
  env RATES_LOG=warn RATES_RATE_LIMIT_PER_SECOND=0 RATES_WS_MAX_CONNECTIONS_PER_IP=0 \
    RATES_HTTP_MAX_CONNECTIONS_PER_IP=0 RATES_HTTP_ADDR=127.0.0.1:$port "$@" "$bin" >/dev/null 2>&1 &
  pid=$!
  until curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 0.2; done
  sleep 3
  echo "  server RSS before: $(awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status")"
}
run() {
  "$load" --url "ws://127.0.0.1:$port/api/v1/ws" --seconds "$seconds" --server-pid "$pid" "$@" |
    grep -E '^(ws-load|subscribed|server|SUMMARY)'
}

if [[ $part == all || $part == fanout ]]; then
  for round in 1 2; do
    for mode in sse ws; do
      echo "== round $round: 5,000 $mode clients on EURUSD@point"
      start
      if [[ $mode == sse ]]; then run --clients 5000 --stream EURUSD@point --sse; else run --clients 5000 --stream EURUSD@point; fi
      stop
    done
  done
fi

if [[ $part == all || $part == market ]]; then
  extra=$(python3 -c "print(','.join(f'{i}:X{i:05d}:simulated=1.5' for i in range(6, 3001)))")
  for stream in '!all@ticker' '!all@point'; do
    echo "== 1,000 clients on $stream, 3,000 assets"
    start RATES_EXTRA_ASSETS="$extra"
    run --clients 1000 --stream "$stream"
    stop
  done
fi
