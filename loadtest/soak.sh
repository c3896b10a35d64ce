#!/usr/bin/env bash
# The whole stack for MINUTES (default 60): Redis (127.0.0.1:6379, a key
# prefix of its own), PostgreSQL (a database of its own), two `ratesd
# worker`, two `ratesd serve`, and loadtest/soak-clients.mjs (v1, v2 with
# reconnect churn, SSE and REST clients over both serve nodes). Every
# KILL_EVERY minutes (default 5) the leading worker is killed with SIGKILL
# and started again. Once a minute it samples each process's RSS and open
# files, the archive backlog, Redis's memory and the archive's rows, and
# joins the clients' arrival and REST p99 of that minute.
#
# At the end it checks that every second the engine held for EURUSD (read
# from the live window every minute) is in the archive, and writes:
#   loadtest/soak/soak.tsv   the per-minute table
#   loadtest/soak/soak.md    the same as a Markdown table, and the checks
#   loadtest/soak/soak.png   the plot (matplotlib: python3 -m pip install matplotlib)
#
# Needs a release build (cargo build --release -p ratesd; or BIN=...), Node
# with clients/js built (npm ci && npm run build), psql, redis-cli.
# Usage: loadtest/soak.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-60}
kill_every=${KILL_EVERY:-5}
bin=${BIN:-./target/release/ratesd}
[ -x "$bin" ] || { echo "no binary at $bin" >&2; exit 1; }
[ -f clients/js/dist/index.js ] || (cd clients/js && npm ci --no-audit --no-fund && npm run build)
out=loadtest/soak
mkdir -p "$out"
run=$(date +%s)
prefix="soak:$run:"
db="ratesd_soak_$run"
dburl="postgres://postgres@127.0.0.1:5432/$db"
logs=$(mktemp -d /tmp/soak.XXXXXX)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
common=(RATES_REDIS_URL=redis://127.0.0.1:6379 RATES_REDIS_PREFIX="$prefix"
  RATES_DATABASE_URL="$dburl" RATES_LOG=warn RATES_TIERS=anonymous:0/0/0/64
  RATES_HTTP_MAX_CONNECTIONS_PER_IP=0 RATES_WS_FRAMES_PER_SECOND=0
  RATES_SIMULATED_BACKFILL_SECONDS=0)

declare -A pid port
start() { # name role
  local name=$1 role=$2
  [ -n "${port[$name]:-}" ] || port[$name]=$(free_port)
  env "${common[@]}" RATES_HTTP_ADDR="127.0.0.1:${port[$name]}" "$bin" "$role" >>"$logs/$name.log" 2>&1 &
  pid[$name]=$!
}
ready() { # name
  for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:${port[$1]}/health/ready" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "$1 did not become ready; log: $logs/$1.log" >&2
  return 1
}
cleanup() {
  local p
  for p in "${pid[@]}" ${clients:-}; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  redis-cli --scan --pattern "${prefix}*" | xargs -r redis-cli DEL >/dev/null || true
  psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

start worker1 worker
ready worker1
start worker2 worker
start serve1 serve
start serve2 serve
for n in worker2 serve1 serve2; do ready "$n"; done
echo "stack up: workers ${pid[worker1]} ${pid[worker2]}, serve ${pid[serve1]} ${pid[serve2]}; logs in $logs"

node loadtest/soak-clients.mjs --ports "${port[serve1]},${port[serve2]}" --minutes "$minutes" \
  --out "$logs/clients.jsonl" >"$logs/clients.log" 2>&1 &
clients=$!

metric() { # port name: the sum of the metric's samples
  { curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}
leader() {
  local n body
  for n in worker1 worker2; do
    body=$(curl -fsS "http://127.0.0.1:${port[$n]}/health/ready" 2>/dev/null || true)
    case "$body" in *'"worker":"leader"'*) echo "$n"; return 0 ;; esac
  done
  return 0
}
window_key=
for _ in $(seq 1 60); do
  window_key=$(redis-cli --scan --pattern "${prefix}*points:1" 2>/dev/null | sed -n 1p || true)
  [ -n "$window_key" ] && break
  sleep 1
done
[ -n "$window_key" ] || { echo "no window for EURUSD under $prefix" >&2; exit 1; }
: >"$logs/written"
printf 'minute\tworker1_rss_kib\tworker2_rss_kib\tserve1_rss_kib\tserve2_rss_kib\tworker1_fds\tworker2_fds\tserve1_fds\tserve2_fds\tarchive_backlog\tredis_used_kib\tpg_rows\tkills\n' >"$logs/samples.tsv"
kills=0
for m in $(seq 1 "$minutes"); do
  sleep 60
  if [ $((m % kill_every)) -eq 0 ] && [ "$m" -lt "$minutes" ]; then
    l=$(leader)
    if [ -n "$l" ]; then
      kill -9 "${pid[$l]}"; wait "${pid[$l]}" 2>/dev/null || true
      start "$l" worker
      kills=$((kills + 1))
    fi
  fi
  row=("$m")
  for n in worker1 worker2 serve1 serve2; do row+=("$(ps -o rss= -p "${pid[$n]}" | tr -d ' ' || echo 0)"); done
  for n in worker1 worker2 serve1 serve2; do row+=("$(ls "/proc/${pid[$n]}/fd" 2>/dev/null | wc -l)"); done
  l=$(leader); backlog=0
  [ -n "$l" ] && backlog=$(metric "${port[$l]}" ratesd_archive_backlog_ticks)
  row+=("$backlog")
  row+=("$(( $(redis-cli info memory | awk -F: '/^used_memory:/ { print $2 }' | tr -d '\r') / 1024 ))")
  row+=("$(psql -h 127.0.0.1 -U postgres -d "$db" -Atc 'SELECT count(*) FROM points' 2>/dev/null || echo 0)")
  row+=("$kills")
  (IFS=$'\t'; echo "${row[*]}") >>"$logs/samples.tsv"
  # Every second EURUSD's window holds now (the last two minutes of it).
  now=$(date +%s)
  redis-cli ZRANGEBYSCORE "$window_key" $((now - 120)) "$now" WITHSCORES | awk 'NR % 2 == 0' >>"$logs/written"
  echo "minute $m: $(tail -n1 "$logs/samples.tsv" | tr '\t' ' ')"
done
wait "$clients" || true

# Every second the engine held is archived, once (the archive's primary key
# is (asset_id, ts): a second twice cannot be stored; count what is there).
sleep 5
sort -un "$logs/written" >"$logs/written.sorted"
psql -h 127.0.0.1 -U postgres -d "$db" -Atc 'SELECT ts FROM points WHERE asset_id = 1 ORDER BY ts' >"$logs/archived"
written=$(wc -l <"$logs/written.sorted")
missing=$(comm -23 "$logs/written.sorted" "$logs/archived" | wc -l)
dups=$(psql -h 127.0.0.1 -U postgres -d "$db" -Atc 'SELECT count(*) - count(DISTINCT (asset_id, ts)) FROM points')
first=$(head -n1 "$logs/archived"); last=$(tail -n1 "$logs/archived")
archived=$(wc -l <"$logs/archived")
span=$((last - first + 1))
python3 - "$logs/samples.tsv" "$logs/clients.jsonl" "$out" <<'PY'
import json, sys
samples, clients, out = sys.argv[1:4]
rows = [l.rstrip("\n").split("\t") for l in open(samples)]
head, rows = rows[0], rows[1:]
per = {}
for line in open(clients):
    d = json.loads(line)
    per[d["minute"]] = d
cols = head + ["arrival_p99_ms", "rest_p99_ms", "deliveries", "rest_answers", "rest_errors", "reconnects", "twice"]
table = []
for r in rows:
    c = per.get(int(r[0]), {})
    table.append(r + [str(c.get(k, "")) for k in ["arrival_p99_ms", "rest_p99_ms", "deliveries", "rest", "rest_errors", "reconnects", "twice"]])
with open(f"{out}/soak.tsv", "w") as f:
    f.write("\t".join(cols) + "\n")
    for r in table:
        f.write("\t".join(r) + "\n")
with open(f"{out}/soak.md", "w") as f:
    f.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
    for r in table:
        f.write("| " + " | ".join(r) + " |\n")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("no matplotlib: no plot (python3 -m pip install matplotlib)")
    sys.exit(0)
x = [int(r[0]) for r in table]
num = lambda i: [float(r[i]) if r[i] not in ("", "None") else float("nan") for r in table]
fig, ax = plt.subplots(2, 2, figsize=(13, 8))
for i, name in enumerate(["worker1", "worker2", "serve1", "serve2"]):
    ax[0][0].plot(x, [v / 1024 for v in num(1 + i)], label=name)
    ax[0][1].plot(x, num(5 + i), label=name)
ax[0][0].set_title("RSS (MiB)"); ax[0][1].set_title("open files")
ax[1][0].plot(x, num(cols.index("arrival_p99_ms")), label="arrival p99 (live points)")
ax[1][0].plot(x, num(cols.index("rest_p99_ms")), label="REST p99")
ax[1][0].set_title("latency (ms)")
ax[1][1].plot(x, [v / 1024 for v in num(cols.index("redis_used_kib"))], label="Redis used memory (MiB)")
ax[1][1].plot(x, num(cols.index("archive_backlog")), label="archive backlog (ticks)")
ax[1][1].set_title("Redis and the archive")
for a in ax.flat:
    a.set_xlabel("minute"); a.legend(fontsize=8); a.grid(alpha=.3)
fig.suptitle("ratesd soak: two workers (the leader killed every few minutes), two serve nodes, v1/v2/SSE/REST clients")
fig.tight_layout()
fig.savefig(f"{out}/soak.png", dpi=80)
print(f"plot: {out}/soak.png")
PY
{
  echo
  echo "Archive: $archived seconds of EURUSD archived over a span of $span; every one of the $written seconds the live window held (sampled each minute) is archived except $missing; rows stored twice: $dups; leaders killed: $kills."
} | tee -a "$out/soak.md"
