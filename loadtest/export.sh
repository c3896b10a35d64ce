#!/usr/bin/env bash
# Issue 23's export figure: a month of one asset's seconds (31 days, about
# 2.68 million points) streamed as NDJSON (and CSV) from the archive in one
# answer; prints points per second and the server's RSS before and during.
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust), psql, curl and
# a release build (`cargo build --release --bin ratesd`; RATESD names
# another binary).
# Usage: loadtest/export.sh [days]
set -euo pipefail
cd "$(dirname "$0")/.."
days=${1:-31}
bin=${RATESD:-./target/release/ratesd}
db="ratesd_bench_export_$$"
url="postgres://postgres@127.0.0.1:5432/$db"
psql_db() { psql -h 127.0.0.1 -U postgres -qAt -d "$db" -c "$1"; }
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -qAt -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT
RATES_DATABASE_URL="$url" RATES_LOG=warn "$bin" migrate
now=$(date +%s)
end=$(( (now / 86400 - 1) * 86400 ))
start=$(( end - days * 86400 ))
# The days' partitions, as the archiver makes them, then the points and
# their rollups straight in SQL (the archiver's insert would take hours).
for ((d = start / 86400; d < end / 86400; d++)); do
  name=$(date -u -d "@$((d * 86400))" +points_p%Y%m%d)
  psql_db "CREATE TABLE IF NOT EXISTS $name PARTITION OF points FOR VALUES FROM ($((d * 86400))) TO ($(((d + 1) * 86400)))"
done
t0=$(date +%s.%N)
psql_db "INSERT INTO points (asset_id, ts, value) SELECT 1, t, round((1.08 + 0.01 * sin(t / 3600.0))::numeric, 6) FROM generate_series($start, $((end - 1))) t"
psql_db "INSERT INTO minutes SELECT asset_id, ts - ts % 60, min(ts), max(ts), (array_agg(value ORDER BY ts))[1], max(value), min(value), (array_agg(value ORDER BY ts DESC))[1], count(*) FROM points GROUP BY 1, 2"
psql_db "ANALYZE"
echo "filled $((end - start)) points in $(echo "$(date +%s.%N) - $t0" | bc) s"
RATES_DATABASE_URL="$url" RATES_LOG=warn RATES_RATE_LIMIT_PER_SECOND=0 RATES_HTTP_ADDR=127.0.0.1:18291 \
  RATES_SIMULATED_BACKFILL_SECONDS=0 "$bin" >/dev/null 2>&1 &
pid=$!
until curl -fs http://127.0.0.1:18291/health/ready >/dev/null; do sleep 0.2; done
sleep 2
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
echo "server RSS before: $(rss) KiB"
for format in ndjson csv; do
  peak=0
  ( while kill -0 "$pid" 2>/dev/null; do echo "$(rss)"; sleep 0.2; done ) > /tmp/export-rss.$$ &
  sampler=$!
  t0=$(date +%s.%N)
  lines=$(curl -fsS "http://127.0.0.1:18291/api/v1/rates/EURUSD/history?format=$format&from=$start&to=$((end - 1))" | wc -l)
  secs=$(echo "$(date +%s.%N) - $t0" | bc)
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  peak=$(sort -n /tmp/export-rss.$$ | tail -1)
  rm -f /tmp/export-rss.$$
  echo "$format: $lines lines in $secs s, $(echo "$lines / $secs" | bc) lines/s, server RSS during: at most $peak KiB"
done
echo "server RSS after: $(rss) KiB"
