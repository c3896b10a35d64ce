#!/usr/bin/env bash
# Issue 24's figures, on one release binary, in one run:
#
# 1. `GET /api/v1/rates/EURUSD` (wrk -t2 -c64) on three servers side by
#    side, interleaved rounds: RATES_AUTH=off (anonymous, the per-IP limit
#    on but above what wrk reaches, the embedded engine); RATES_AUTH=required with an API key in X-API-Key
#    (embedded engine, the key's tier limit on but above what wrk reaches);
#    the same on the Redis engine, where the key's limit is shared by the
#    nodes (a bucket in Redis, leased a tenth of a second's rate at a time).
# 2. The overshoot of one key hammered on two `serve` nodes of one Redis
#    for 30 s (tier 100 a second, bursts of 100): the answers it got
#    against the contract's bound rate x T + burst + a tenth of a second's
#    rate per node.
#
#   loadtest/access.sh [seconds] [rounds] [ratesd binary]
#
# Defaults: 10 s, 3 rounds, target/release/ratesd. Needs wrk and Redis on
# 127.0.0.1:6379.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
bin=${3:-target/release/ratesd}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
made=$(RATES_TIERS=pro:1/1/1/1 "$bin" keys new --tier pro --name load)
key=$(awk '/^ *rk_/ {print $1}' <<<"$made")
awk '/ pro load$/ {print $1, $2, $3}' <<<"$made" >"$work/keys"
prefix="loadtest:access:$$:"

start() { # name port env...
  local name=$1 port=$2
  shift 2
  env -u RATES_REDIS_URL RATES_LOG=warn RATES_DATABASE_URL=off RATES_HTTP_MAX_CONNECTIONS_PER_IP=0 \
    RATES_HTTP_ADDR=127.0.0.1:$port "$@" "$bin" >"$work/$name.log" 2>&1 &
  pids+=($!)
  echo "$name $! $port"
}
wait_up() { # port header
  local t0=$SECONDS
  until curl -fs -H "$2" "http://127.0.0.1:$1/api/v1/rates/EURUSD" >/dev/null; do
    sleep 0.2
    if ((SECONDS - t0 > 60)); then echo "port $1 never answered:" >&2; curl -s -H "$2" "http://127.0.0.1:$1/api/v1/rates/EURUSD" >&2; cat "$work"/*.log >&2; exit 1; fi
  done
}
targets=()
# off: the default, the per-IP limit on (above what wrk reaches, as the
# key's tier below).
targets+=("$(start off 18400 RATES_RATE_LIMIT_PER_SECOND=1000000 RATES_RATE_LIMIT_BURST=1000000)|X-Ignored: 1")
targets+=("$(start required 18401 RATES_AUTH=required RATES_KEYS_FILE="$work/keys" \
  RATES_TIERS=pro:1000000/1000000/256/64 RATES_RATE_LIMIT_PER_SECOND=0)|X-API-Key: $key")
targets+=("$(start required-redis 18402 RATES_AUTH=required RATES_KEYS_FILE="$work/keys" \
  RATES_TIERS=pro:1000000/1000000/256/64 RATES_RATE_LIMIT_PER_SECOND=0 \
  RATES_REDIS_URL=redis://127.0.0.1:6379 RATES_REDIS_PREFIX="${prefix}a:")|X-API-Key: $key")
for t in "${targets[@]}"; do
  read -r _ _ port <<<"${t%%|*}"
  wait_up "$port" "${t#*|}"
done
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
out="$work/rates"
echo "## GET /api/v1/rates/EURUSD, wrk -t2 -c64 -d${secs}s, $rounds interleaved rounds"
for round in $(seq "$rounds"); do
  for t in "${targets[@]}"; do
    read -r name pid port <<<"${t%%|*}"
    before=$(cpu "$pid")
    result=$(wrk -t2 -c64 -d"${secs}s" -H "${t#*|}" "http://127.0.0.1:$port/api/v1/rates/EURUSD")
    after=$(cpu "$pid")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$result")
    requests=$(awk '/requests in/ {print $1}' <<<"$result")
    bad=$(awk '/Non-2xx/ {print $NF}' <<<"$result")
    us=$(awk -v c=$((after - before)) -v t="$ticks" -v n="$requests" 'BEGIN {printf "%.1f", c / t * 1e6 / n}')
    echo "round $round $name: $rps req/s (non-2xx: ${bad:-0}), server CPU $us us/request"
    echo "$name $rps" >>"$out"
  done
done
echo "means (ratio to off):"
awk '{s[$1] += $2; n[$1]++} END {for (k in s) printf "  %s: %.0f req/s, %.3f\n", k, s[k]/n[k], (s[k]/n[k]) / (s["off"]/n["off"])}' "$out" | sort
kill "${pids[@]}" 2>/dev/null || true
pids=()

echo "## one key, tier 100/s bursts of 100, on two serve nodes of one Redis, 30 s"
export RATES_REDIS_URL=redis://127.0.0.1:6379
shared=(RATES_AUTH=required RATES_KEYS_FILE="$work/keys" RATES_TIERS=pro:100/100/256/64
  RATES_REDIS_PREFIX="${prefix}b:")
RATES_LOG=warn RATES_DATABASE_URL=off RATES_HTTP_ADDR=127.0.0.1:18410 env "${shared[@]}" "$bin" >"$work/w.log" 2>&1 &
pids+=($!)
for port in 18411 18412; do
  RATES_LOG=warn RATES_DATABASE_URL=off RATES_HTTP_MAX_CONNECTIONS_PER_IP=0 RATES_HTTP_ADDR=127.0.0.1:$port \
    env "${shared[@]}" "$bin" serve >"$work/s$port.log" 2>&1 &
  pids+=($!)
done
for port in 18410 18411 18412; do wait_up "$port" "X-API-Key: $key"; done
sleep 3 # the waits above spent some of the bucket; let it fill
loads=()
for port in 18411 18412; do
  wrk -t1 -c16 -d30s -H "X-API-Key: $key" "http://127.0.0.1:$port/api/v1/assets" >"$work/wrk$port" &
  loads+=($!)
done
wait "${loads[@]}"
total=0
ok=0
for port in 18411 18412; do
  n=$(awk '/requests in/ {print $1}' "$work/wrk$port")
  bad=$(awk '/Non-2xx/ {print $NF}' "$work/wrk$port")
  took=$(awk '/requests in/ {sub(/s,$/, "", $4); print $4}' "$work/wrk$port")
  echo "  node $port: $n answers in $took s, $((n - ${bad:-0})) of them 200"
  total=$((total + n))
  ok=$((ok + n - ${bad:-0}))
done
awk -v ok="$ok" -v total="$total" 'BEGIN {
  allowed = 100 * 30 + 100; bound = allowed + 2 * 10
  printf "  both: %d answers, %d of them 200; rate x T + burst = %d, bound with 2 nodes = %d; overshoot %d (%.2f%% of rate x T + burst)\n", total, ok, allowed, bound, ok - allowed, (ok - allowed) * 100 / allowed
}'
