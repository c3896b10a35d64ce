#!/usr/bin/env bash
# Two API nodes on one Redis (issue 13): one `ratesd worker` (simulated
# source) and two `ratesd serve`, and one ws-load against EACH serve node at
# the same time, N subscribers each, for S seconds. Reports per node the
# arrival p50/p99 and the server's RSS (from ws-load's SUMMARY line), and
# the CPU each process took a second during the measurement.
#
# File descriptors: every process here is limited to 20,000; each serve node
# and each ws-load holds about N sockets, so N=10,000 per node (20,000 in
# all) fits.
#
# Needs release builds (`cargo build --release -p ratesd -p ws-load`), Redis
# on 127.0.0.1:6379, chrt.
# Usage: loadtest/scale-out.sh [clients per node (10000)] [seconds (30)]
#   WS_LOAD_PRIORITY=normal  run the generators at normal priority (default:
#                            `chrt --idle 0`, out of the servers' way)
#   SCALE_OUT_ARCHIVE=postgres://...  the worker archives to PostgreSQL
#                            (default: off)
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-10000}
seconds=${2:-30}
ulimit -n 20000 2>/dev/null || true
bin=./target/release/ratesd
wsload=./target/release/ws-load
ports=(18201 18202)
prefix="measure:scaleout:$$:"
logs=$(mktemp -d /tmp/scale-out.XXXXXX)
common=(RATES_REDIS_URL=redis://127.0.0.1:6379 RATES_REDIS_PREFIX="$prefix"
  RATES_DATABASE_URL="${SCALE_OUT_ARCHIVE:-off}" RATES_LOG=warn
  RATES_RATE_LIMIT_PER_SECOND=0 RATES_WS_MAX_CONNECTIONS_PER_IP=0
  RATES_HTTP_MAX_CONNECTIONS_PER_IP=0 RATES_WS_FRAMES_PER_SECOND=0)
prio=(chrt --idle 0)
[ "${WS_LOAD_PRIORITY:-idle}" = normal ] && prio=()

pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  redis-cli --scan --pattern "${prefix}*" | xargs -r redis-cli del >/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# cpu_ticks PID: user + system clock ticks so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# busy_ticks: the machine's non-idle clock ticks so far (all cores).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

echo "logs in $logs, prefix $prefix, $clients subscribers per node, ${seconds} s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
env "${common[@]}" RATES_LOG=info "$bin" worker >"$logs/worker.log" 2>&1 &
worker=$!
pids+=("$worker")
serves=()
for port in "${ports[@]}"; do
  env "${common[@]}" RATES_HTTP_ADDR="127.0.0.1:$port" "$bin" serve >"$logs/serve-$port.log" 2>&1 &
  serves+=("$!")
  pids+=("$!")
done
t0=$SECONDS
until grep -q "leading: this worker writes" "$logs/worker.log"; do
  sleep 0.2
  if ((SECONDS - t0 > 60)); then echo "the worker never leads" >&2; exit 1; fi
done
for port in "${ports[@]}"; do
  until curl -fs "http://127.0.0.1:$port/api/v1/rates/EURUSD" >/dev/null 2>&1; do
    sleep 0.2
    if ((SECONDS - t0 > 120)); then echo "serve on $port has no EURUSD" >&2; exit 1; fi
  done
done
sleep 2

loads=()
for k in 0 1; do
  "${prio[@]}" "$wsload" --url "ws://127.0.0.1:${ports[$k]}/api/v1/ws" \
    --clients "$clients" --seconds "$seconds" --server-pid "${serves[$k]}" \
    >"$logs/ws-load-${ports[$k]}.txt" 2>&1 &
  loads+=("$!")
  pids+=("$!")
done

# CPU a second while both generators measure: each measures for $seconds
# from the moment all its subscribers have their history, and the two get
# there at different times, so the window is where both measure, less a
# second at each end.
declare -a subscribed_at
t0=$(date +%s.%N)
while [ -z "${subscribed_at[0]:-}" ] || [ -z "${subscribed_at[1]:-}" ]; do
  for k in 0 1; do
    if [ -z "${subscribed_at[k]:-}" ] && grep -q "^subscribed:" "$logs/ws-load-${ports[$k]}.txt"; then
      subscribed_at[k]=$(date +%s.%N)
    fi
  done
  sleep 0.1
  if (($(date +%s) - ${t0%.*} > 300)); then echo "ws-load never subscribed" >&2; exit 1; fi
done
redis_pid=$(redis-cli info server | awk -F: '/^process_id:/ {print $2+0}')
watch=("${serves[@]}" "$worker" "$redis_pid" "${loads[@]}")
names=("serve:${ports[0]}" "serve:${ports[1]}" worker redis-server "ws-load:${ports[0]}" "ws-load:${ports[1]}")
read -r lag window < <(awk -v a="${subscribed_at[0]}" -v b="${subscribed_at[1]}" -v s="$seconds" \
  'BEGIN { d = a > b ? a - b : b - a; w = s - d - 2; printf "%.1f %d\n", d, w < 1 ? 1 : w }')
echo "the generators' windows start ${lag} s apart; CPU over ${window} s where both measure"
sleep 1
declare -a before
for j in "${!watch[@]}"; do before[j]=$(cpu_ticks "${watch[$j]}"); done
busy_before=$(busy_ticks)
sleep "$window"
busy_after=$(busy_ticks)
hz=$(getconf CLK_TCK)
cpu_line="CPU ms/s over ${window} s:"
ours=0
for j in "${!watch[@]}"; do
  after=$(cpu_ticks "${watch[$j]}")
  ours=$((ours + after - before[j]))
  cpu_line+=" ${names[$j]}=$(((after - before[j]) * 1000 / hz / window))"
done
# Anything else on the machine (another build, the kernel's own threads):
# a figure far above a few tens of ms/s means the run was disturbed.
cpu_line+=" everything-else=$(((busy_after - busy_before - ours) * 1000 / hz / window))"
fds=""
for j in 0 1 4 5; do
  fds+=" ${names[$j]}=$(ls "/proc/${watch[$j]}/fd" 2>/dev/null | wc -l)"
done

status=0
for k in 0 1; do wait "${loads[$k]}" || status=$?; done
echo
for k in 0 1; do
  f="$logs/ws-load-${ports[$k]}.txt"
  echo "== serve node 127.0.0.1:${ports[$k]} (pid ${serves[$k]})"
  grep -E "^(subscribed|server RSS)" "$f" || true
  grep "^SUMMARY" "$f" || { echo "no SUMMARY; last lines:"; tail -5 "$f"; }
done
echo
echo "$cpu_line"
echo "open files during the measurement:$fds"
echo
for k in 0 1; do
  awk -v node="${ports[$k]}" '/^SUMMARY/ {
    for (i = 1; i <= NF; i++) {
      if ($i == "arrival_ms") { p50 = $(i + 1); p99 = $(i + 3) }
      if ($i ~ /^clients=|^missing=|^server_rss_mib=|^server_peak_mib=/) extra = extra " " $i
    }
    print "NODE " node ": arrival " p50 " " p99 extra
  }' "$logs/ws-load-${ports[$k]}.txt"
done
exit "$status"
