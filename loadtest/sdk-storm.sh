#!/usr/bin/env bash
# 1,000 ratesd-client instances through a reconnect storm (see
# sdk-storm.mjs) against a release build on the embedded engine.
#   loadtest/sdk-storm.sh [BINARY] [CLIENTS] [ROUNDS] [DOWN_MS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/ratesd}
clients=${2:-1000}
rounds=${3:-3}
down_ms=${4:-3000}
[ -x "$bin" ] || { echo "no binary at $bin (cargo build --release)" >&2; exit 1; }
[ -f clients/js/dist/index.js ] || (cd clients/js && npm ci --no-audit --no-fund && npm run build)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# No request limit and no connection cap: every client is on 127.0.0.1.
RATES_HTTP_ADDR="127.0.0.1:$port" RATES_LOG=warn RATES_TIERS=anonymous:0/0/0/64 \
  RATES_HTTP_MAX_CONNECTIONS_PER_IP=0 RATES_SIMULATED_BACKFILL_SECONDS=120 "$bin" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break; sleep 0.5; done
node loadtest/sdk-storm.mjs --port "$port" --clients "$clients" --rounds "$rounds" --down-ms "$down_ms"
echo "server RSS: $(ps -o rss= -p $server) KiB, CPU: $(ps -o time= -p $server)"
