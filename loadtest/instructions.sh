#!/usr/bin/env bash
# Instructions a request (issue 27): each server under callgrind, which
# counts instructions rather than time, so that the figure is the same from
# run to run whatever else the machine does. `wrk -t1 -c8` warms up for 3 s;
# then the counters are zeroed, `wrk -t1 -c8 -d10s` runs, they are dumped,
# and the program's total is divided by the requests wrk counted.
#
#   loadtest/instructions.sh [ratesd binary...]
#
# Default: target/release/ratesd. The bare route (examples/hello.rs, or
# `HELLO=`) is counted first, answering the first build's bytes. Each
# ratesd runs as in rest-ratio.sh: the embedded engine, no archive, the
# simulated source, rate limit and per-IP cap off. Needs valgrind and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=("$@")
((${#bins[@]})) || bins=(target/release/ratesd)
# `KEEP=DIR` keeps the dumps there, for `callgrind_annotate`.
out=${KEEP:-$(mktemp -d)}
mkdir -p "$out"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; [[ -n ${KEEP:-} ]] || rm -rf "$out"' EXIT

# count NAME PORT PATH COMMAND...: instructions a request of COMMAND.
count() {
  local name=$1 port=$2 path=$3
  shift 3
  valgrind --tool=callgrind --callgrind-out-file="$out/$name" "$@" >/dev/null 2>&1 &
  local pid=$!
  pids+=("$pid")
  local t0=$SECONDS
  until curl -fs "http://127.0.0.1:$port$path" >/dev/null; do
    sleep 1
    if ((SECONDS - t0 > 120)); then echo "$name never answered" >&2; exit 1; fi
  done
  wrk -t1 -c8 -d3s "http://127.0.0.1:$port$path" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  local requests
  requests=$(wrk -t1 -c8 -d10s "http://127.0.0.1:$port$path" | awk '/requests in/ {print $1}')
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  local total
  total=$(callgrind_annotate "$out/$name.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$name: $((total / requests)) instructions a request ($requests requests)"
}

export RATES_LOG=warn RATES_RATE_LIMIT_PER_SECOND=0 RATES_HTTP_MAX_CONNECTIONS_PER_IP=0 \
  RATES_DATABASE_URL=off
unset RATES_REDIS_URL

# The bare route answers what the first build answers, byte for byte.
RATES_HTTP_ADDR=127.0.0.1:18399 "${bins[0]}" >/dev/null 2>&1 &
pids+=($!)
until body=$(curl -fs "http://127.0.0.1:18399/api/v1/rates/EURUSD"); do sleep 0.2; done
kill "${pids[-1]}"
count hello 18398 /hello "${HELLO:-target/release/examples/hello}" 127.0.0.1:18398 "$body"
port=18400
for bin in "${bins[@]}"; do
  RATES_HTTP_ADDR=127.0.0.1:$port count "$(basename "$bin")" $port /api/v1/rates/EURUSD "$bin"
  port=$((port + 1))
done
