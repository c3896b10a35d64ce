#!/usr/bin/env bash
# Issue 27's fan-out figures: `ws-load --clients N --seconds S` (v1, one
# thread, normal priority) against each ratesd build given, in interleaved
# rounds, each against a fresh embedded server (simulated source), with the
# server's idle RSS before the clients, its RSS with them, its CPU time a
# second over the window, and the arrival percentiles.
#
#   loadtest/fanout.sh CLIENTS [ROUNDS] [SECONDS] [ratesd binary...]
#
# Defaults: 3 rounds, 30 s, target/release/ratesd; WS_LOAD names another
# ws-load (`cargo build --release -p ratesd -p ws-load`). Each process needs
# a file limit above CLIENTS (20,000 here: at most 19,000 clients).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:?clients}
rounds=${2:-3}
seconds=${3:-30}
shift $(($# < 3 ? $# : 3))
bins=("$@")
((${#bins[@]})) || bins=(target/release/ratesd)
load=${WS_LOAD:-target/release/ws-load}
port=18310
pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap stop EXIT
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
for round in $(seq "$rounds"); do
  for bin in "${bins[@]}"; do
    env RATES_LOG=warn RATES_RATE_LIMIT_PER_SECOND=0 RATES_WS_MAX_CONNECTIONS_PER_IP=0 \
      RATES_HTTP_MAX_CONNECTIONS_PER_IP=0 RATES_DATABASE_URL=off RATES_HTTP_ADDR=127.0.0.1:$port \
      env -u RATES_REDIS_URL "$bin" >/dev/null 2>&1 &
    pid=$!
    until curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 0.2; done
    sleep 3
    idle=$(rss_kib "$pid")
    out=$("$load" --url "ws://127.0.0.1:$port/api/v1/ws" --clients "$clients" \
      --seconds "$seconds" --server-pid "$pid")
    loaded=$(rss_kib "$pid")
    summary=$(grep '^SUMMARY' <<<"$out")
    cpu=$(grep -o 'server CPU over the window: [0-9.]* s a second' <<<"$out" | grep -o '[0-9.]*' | head -1)
    per_conn=$(awk -v a="$loaded" -v b="$idle" -v n="$clients" 'BEGIN {printf "%.2f", (a - b) / n}')
    echo "round $round $bin: idle $((idle / 1024)) MiB, loaded $((loaded / 1024)) MiB, ${per_conn} KiB/conn over idle, CPU ${cpu} s/s"
    echo "  $summary"
    stop
  done
done
