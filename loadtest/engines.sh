#!/usr/bin/env bash
# Both engines side by side, in one run on one machine:
#   1. REST: wrk on /api/v1/rates/EURUSD against examples/hello.rs, the
#      embedded engine and the Redis engine, interleaved, three rounds;
#   2. ws-load at 10,000 subscribers on each engine (arrival p99, RSS);
#   3. memory: the embedded engine's process with 5 and with 2,000 assets,
#      and the Redis engine's process (plus what Redis holds) with 2,000,
#      every window full (the simulated backfill fills 1,800 s at start).
# Needs release builds (`cargo build --release --bin ratesd --example hello
# && cargo build --release -p ws-load`), wrk, Redis on 127.0.0.1:6379.
# Usage: loadtest/engines.sh [clients] [parts: rest ws memory]
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-10000}
parts=${2:-rest ws memory}
ulimit -n 20000
bin=./target/release/ratesd
redis=redis://127.0.0.1:6379
common=(RATES_LOG=warn RATES_RATE_LIMIT_PER_SECOND=0 RATES_WS_MAX_CONNECTIONS_PER_IP=0
  RATES_WS_FRAMES_PER_SECOND=0 RATES_HTTP_MAX_CONNECTIONS_PER_IP=0)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

# start PORT ENV... : a ratesd on PORT, ready; its pid in $pid.
start() {
  local port=$1
  shift
  env "${common[@]}" RATES_HTTP_ADDR="127.0.0.1:$port" "$@" "$bin" >/dev/null 2>&1 &
  pid=$!
  pids+=("$pid")
  local t0=$SECONDS
  until curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null; do
    sleep 0.2
    if ((SECONDS - t0 > 120)); then echo "port $port never ready" >&2; exit 1; fi
  done
}
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
redis_used_mb() { redis-cli info memory | awk -F: '/^used_memory:/ {printf "%.1f", $2 / 1048576}'; }
clear_prefix() { redis-cli --scan --pattern "$1*" | xargs -r redis-cli del >/dev/null; }

if [[ $parts == *rest* ]]; then
echo "== REST: wrk -t2 -c64 -d10s, three interleaved rounds"
./target/release/examples/hello 127.0.0.1:18099 >/dev/null 2>&1 &
hello=$!
pids+=("$hello")
start 18091
embedded=$pid
clear_prefix load:engines:
start 18092 RATES_REDIS_URL=$redis RATES_REDIS_PREFIX=load:engines:
redis_pid=$pid
for round in 1 2 3; do
  for target in hello:18099:/hello embedded:18091:/api/v1/rates/EURUSD redis:18092:/api/v1/rates/EURUSD; do
    IFS=: read -r name port path <<<"$target"
    out=$(wrk -t2 -c64 -d10s --latency "http://127.0.0.1:$port$path")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    echo "round $round $name: $rps req/s, p99 $p99"
  done
done
kill "$hello" "$embedded" "$redis_pid"
wait "$hello" "$embedded" "$redis_pid" 2>/dev/null || true

fi

if [[ $parts == *ws* ]]; then
echo "== WebSocket: ws-load --clients $clients --seconds 30"
for engine in embedded redis; do
  if [ "$engine" = redis ]; then
    clear_prefix load:engines:
    start 18093 RATES_REDIS_URL=$redis RATES_REDIS_PREFIX=load:engines:
  else
    start 18093
  fi
  echo "-- $engine"
  chrt --idle 0 ./target/release/ws-load --url ws://127.0.0.1:18093/api/v1/ws \
    --clients "$clients" --seconds 30 --server-pid "$pid" 2>&1 | tail -8
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done

fi

if [[ $parts == *memory* ]]; then
echo "== Memory with every window full (1,800 s)"
extra=$(python3 -c "print(','.join(f'{i}:X{i:05d}:simulated=1.5' for i in range(6, 2006)))")
start 18094
sleep 5
echo "embedded, 5 assets: process RSS $(rss_mb "$pid") MB"
kill "$pid"
wait "$pid" 2>/dev/null || true
t0=$SECONDS
start 18094 RATES_EXTRA_ASSETS="$extra"
echo "embedded, 2,005 assets: ready in $((SECONDS - t0)) s"
sleep 5
echo "embedded, 2,005 assets: process RSS $(rss_mb "$pid") MB"
kill "$pid"
wait "$pid" 2>/dev/null || true
clear_prefix load:engines:
before=$(redis_used_mb)
t0=$SECONDS
start 18094 RATES_REDIS_URL=$redis RATES_REDIS_PREFIX=load:engines: RATES_EXTRA_ASSETS="$extra"
echo "redis, 2,005 assets: ready in $((SECONDS - t0)) s"
sleep 5
echo "redis, 2,005 assets: process RSS $(rss_mb "$pid") MB; redis used_memory $before -> $(redis_used_mb) MB"
kill "$pid"
wait "$pid" 2>/dev/null || true
clear_prefix load:engines:
fi
