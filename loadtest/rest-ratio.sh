#!/usr/bin/env bash
# The REST ratio (issues 11 and 27): `wrk -t1 -c64` on `/api/v1/rates/EURUSD`
# of one or more ratesd builds against examples/hello.rs's `/hello` answering
# the same bytes (the first build's answer), in interleaved rounds on one
# machine, with each server's CPU time per request (user + system, from
# /proc/PID/stat) beside its throughput; the ratio is of the medians.
#
#   loadtest/rest-ratio.sh [seconds] [rounds] [ratesd binary...]
#
# Defaults: 5 s, 3 rounds, target/release/ratesd. Give an older build's
# binary as well to compare builds in the same run. Each ratesd runs with
# the embedded engine, no archive, the simulated source, rate limit and
# per-IP cap off (wrk is one address). Needs release builds (`cargo build
# --release --bin ratesd --example hello`; `HELLO=` names another path of
# the example) and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
shift $(($# < 2 ? $# : 2))
bins=("$@")
((${#bins[@]})) || bins=(target/release/ratesd)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
targets=()
port=18300
for bin in "${bins[@]}"; do
  RATES_LOG=warn RATES_RATE_LIMIT_PER_SECOND=0 RATES_HTTP_MAX_CONNECTIONS_PER_IP=0 \
    RATES_DATABASE_URL=off RATES_HTTP_ADDR=127.0.0.1:$port env -u RATES_REDIS_URL "$bin" >/dev/null 2>&1 &
  pids+=($!)
  targets+=("$bin $! $port /api/v1/rates/EURUSD")
  t0=$SECONDS
  until curl -fs "http://127.0.0.1:$port/api/v1/rates/EURUSD" >/dev/null; do
    sleep 0.2
    if ((SECONDS - t0 > 60)); then echo "$bin never answered" >&2; exit 1; fi
  done
  port=$((port + 1))
done
# The bare route answers what the first build answers, byte for byte.
body=$(curl -fs "http://127.0.0.1:18300/api/v1/rates/EURUSD")
"${HELLO:-target/release/examples/hello}" 127.0.0.1:18299 "$body" >/dev/null 2>&1 &
pids+=($!)
targets=("hello $! 18299 /hello" "${targets[@]}")
until curl -fs "http://127.0.0.1:18299/hello" >/dev/null; do sleep 0.1; done
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
out=$(mktemp)
for round in $(seq "$rounds"); do
  for target in "${targets[@]}"; do
    read -r name pid port path <<<"$target"
    before=$(cpu "$pid")
    result=$(wrk -t1 -c64 -d"${secs}s" "http://127.0.0.1:$port$path")
    after=$(cpu "$pid")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$result")
    requests=$(awk '/requests in/ {print $1}' <<<"$result")
    us=$(awk -v c=$((after - before)) -v t="$ticks" -v n="$requests" 'BEGIN {printf "%.1f", c / t * 1e6 / n}')
    echo "round $round $name: $rps req/s, server CPU $us us/request"
    echo "$name $rps" >>"$out"
  done
done
echo "medians:"
median() { grep "^$1 " "$out" | awk '{print $2}' | sort -g | awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
hello=$(median hello)
for bin in "${bins[@]}"; do
  m=$(median "$bin")
  awk -v k="$bin" -v m="$m" -v h="$hello" 'BEGIN {printf "  %s: %.0f req/s, ratio %.3f (hello %.0f req/s)\n", k, m, m / h, h}'
done
rm -f "$out"
