#!/usr/bin/env bash
# Writer takeover between two `ratesd worker`s on one Redis (issue 13).
#
# One `ratesd serve` and two `ratesd worker`s, each replaying a different
# recorded feed (EURUSD 1.129575 and 0.9924), so the serve node's value says
# who wrote. Each trial: wait until the leader is writing (the serve node's
# EURUSD is the leader's value and fresh), stop the leader (kill -9, or
# SIGTERM in the graceful trials), then measure
#   - lead:  from the signal to the standby's "leading: this worker writes"
#            (its JSON log timestamp);
#   - tick:  from the signal to the new leader's first tick (its "asset
#            served by source" lines; a worker ticks at the start of a
#            wall-clock second);
#   - pub:   from the signal to the first EURUSD point of the new value on
#            the engine's live channel (a Redis subscriber of this script);
#   - serve: from the signal to the serve node answering the standby's value
#            (polled every 10 ms);
#   - the EURUSD series around the handover (history endpoint): seconds
#     missing, seconds present twice, and the last old / first new second.
# Then the stopped worker is started again (it stands by) and the roles swap
# for the next trial.
#
# Needs a release build (`cargo build --release -p ratesd`), Redis on
# 127.0.0.1:6379, python3, curl.
# Usage: loadtest/takeover.sh [kill-9 trials (10)] [SIGTERM trials (5)]
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-10}
graceful=${2:-5}
bin=./target/release/ratesd
port=${TAKEOVER_PORT:-18190}
prefix="measure:takeover:$$:"
logs=$(mktemp -d /tmp/takeover.XXXXXX)
feed_a=tests/fixtures/fxcm-datadisplayer-2021-strings.txt
feed_b=tests/fixtures/fxcm-datadisplayer-2022-numeric.txt
value_a=1.129575
value_b=0.9924
api="http://127.0.0.1:$port"
common=(RATES_REDIS_URL=redis://127.0.0.1:6379 RATES_REDIS_PREFIX="$prefix"
  RATES_DATABASE_URL=off RATES_LOG=info RATES_LOG_FORMAT=json
  RATES_RATE_LIMIT_PER_SECOND=0)

pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  redis-cli --scan --pattern "${prefix}*" | xargs -r redis-cli del >/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the interpreter itself: a version manager's shim takes a quarter second
py=$(python3 -c 'import sys; print(sys.executable)')

# start_worker NAME: a worker on NAME's feed; its pid in worker_pid[NAME],
# its log in worker_log[NAME] (a new file each start).
declare -A worker_pid worker_log worker_value worker_feed starts
worker_feed[a]=$feed_a worker_value[a]=$value_a
worker_feed[b]=$feed_b worker_value[b]=$value_b
starts[a]=0 starts[b]=0
start_worker() {
  local name=$1
  starts[$name]=$((starts[$name] + 1))
  worker_log[$name]="$logs/worker-$name-${starts[$name]}.log"
  env "${common[@]}" RATES_SOURCES="file:$PWD/${worker_feed[$name]}" \
    "$bin" worker >"${worker_log[$name]}" 2>&1 &
  worker_pid[$name]=$!
  pids+=("$!")
}

# wait_log FILE TEXT [seconds]: until FILE has a line containing TEXT.
wait_log() {
  local t0=$SECONDS
  until grep -q "$2" "$1" 2>/dev/null; do
    sleep 0.05
    if ((SECONDS - t0 > ${3:-30})); then echo "no '$2' in $1" >&2; exit 1; fi
  done
}

# wait_writing VALUE: until the serve node answers VALUE for the current
# second or the one before (the leader is writing).
wait_writing() {
  "$py" - "$api" "$1" <<'PY'
import json, sys, time, urllib.request
api, want = sys.argv[1], float(sys.argv[2])
deadline = time.time() + 30
while time.time() < deadline:
    try:
        q = json.load(urllib.request.urlopen(api + "/api/v1/rates/EURUSD", timeout=2))
        if abs(q["value"] - want) < 1e-9 and q["time"] >= int(time.time()) - 1:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit("the leader is not writing EURUSD=%s" % want)
PY
}

# signal_and_poll PID SIGNAL VALUE: sends SIGNAL to PID, then polls the
# serve node every 10 ms until it answers VALUE; prints the signal's Unix
# time, the seconds from it to that answer and the answer's time. (One
# process does both, started before the signal: an interpreter started
# after it would add its own start-up to the figure.)
signal_and_poll() {
  "$py" - "$api" "$@" <<'PY'
import http.client, json, os, signal, sys, time
api, pid, sig, want = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
conn = http.client.HTTPConnection(api.split("//")[1], timeout=2)
conn.request("GET", "/api/v1/rates/EURUSD")
conn.getresponse().read()
t0 = time.time()
os.kill(pid, getattr(signal, "SIG" + sig))
while time.time() < t0 + 20:
    try:
        conn.request("GET", "/api/v1/rates/EURUSD")
        q = json.loads(conn.getresponse().read())
        if abs(q["value"] - want) < 1e-9:
            print("%.6f %.3f %d" % (t0, time.time() - t0, q["time"]))
            sys.exit(0)
    except Exception:
        conn.close()
        conn = http.client.HTTPConnection(api.split("//")[1], timeout=2)
    time.sleep(0.01)
print("%.6f nan 0" % t0)
PY
}

# log_time FILE TEXT T0: seconds from T0 to the first line of FILE with TEXT
# stamped after T0 (JSON log, "timestamp" in RFC 3339).
log_time() {
  "$py" - "$@" <<'PY'
import json, sys
from datetime import datetime
path, text, t0 = sys.argv[1], sys.argv[2], float(sys.argv[3])
for line in open(path):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if text in e.get("fields", {}).get("message", ""):
        ts = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
        if ts >= t0 - 0.001:
            print("%.3f" % (ts - t0))
            sys.exit(0)
print("nan")
PY
}

# published T0 VALUE: seconds from T0 to the first live message carrying
# VALUE for EURUSD (the new leader's first tick reaching Redis subscribers).
published() {
  awk -v t0="$1" -v v="$2" '$1 >= t0 && $3 + 0 == v + 0 { printf "%.3f\n", $1 - t0; found = 1; exit }
    END { if (!found) print "nan" }' "$logs/live.txt"
}

# series T0 OLD NEW: the EURUSD points from 10 s before to 10 s after T0:
# "missing=N [list] dup=N last_old=S first_new=S flips=N".
series() {
  "$py" - "$api" "$@" <<'PY'
import collections, json, sys, urllib.request
api, t0, old, new = sys.argv[1], int(float(sys.argv[2])), float(sys.argv[3]), float(sys.argv[4])
frm, to = t0 - 10, t0 + 10
pts = json.load(urllib.request.urlopen(
    "%s/api/v1/rates/EURUSD/history?from=%d&to=%d&limit=1000" % (api, frm, to)))["points"]
times = [p["time"] for p in pts]
count = collections.Counter(times)
dups = sorted(t for t, n in count.items() if n > 1)
missing = [t for t in range(min(times), max(times) + 1) if t not in count] if times else []
olds = [p["time"] for p in pts if abs(p["value"] - old) < 1e-9]
news = [p["time"] for p in pts if abs(p["value"] - new) < 1e-9]
others = [p for p in pts if p["time"] not in olds and p["time"] not in news]
# an old value after a new one: the writers alternated
flips = sum(1 for a, b in zip(pts, pts[1:])
            if abs(a["value"] - new) < 1e-9 and abs(b["value"] - old) < 1e-9)
print("missing=%d %s dup=%d %s last_old=%s first_new=%s flips=%d span=%s-%s others=%d" % (
    len(missing), ",".join(str(t - t0) for t in missing) or "-",
    len(dups), ",".join(str(t - t0) for t in dups) or "-",
    max(olds) - t0 if olds else "none", min(news) - t0 if news else "none",
    flips, frm - t0, to - t0, len(others)))
PY
}

# The live channel of the standalone engine's one key group, every message
# stamped on arrival: when each writer's ticks reached Redis's subscribers.
listen_live() {
  "$py" - "${prefix}{0}:live" "$logs/live.txt" <<'PY'
import json, socket, sys, time
channel, out = sys.argv[1], open(sys.argv[2], "w", buffering=1)
s = socket.create_connection(("127.0.0.1", 6379))
s.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel.encode()))
f = s.makefile("rb")
def read():
    line = f.readline()
    if not line:
        sys.exit(0)
    kind, rest = line[:1], line[1:-2]
    if kind == b"*":
        return [read() for _ in range(int(rest))]
    if kind == b"$":
        n = int(rest)
        data = f.read(n + 2)[:-2]
        return data
    return rest
while True:
    msg = read()
    at = time.time()
    if isinstance(msg, list) and msg[0] == b"message":
        for p in json.loads(msg[2]):
            if p.get("assetName") == "EURUSD":
                out.write("%.6f %d %s\n" % (at, p["time"], p["value"]))
PY
}

echo "logs in $logs, prefix $prefix"
listen_live &
pids+=("$!")
env "${common[@]}" RATES_HTTP_ADDR="127.0.0.1:$port" "$bin" serve >"$logs/serve.log" 2>&1 &
serve=$!
pids+=("$serve")
t0=$SECONDS
until curl -fs "$api/health/live" >/dev/null 2>&1 || curl -fs "$api/health/ready" >/dev/null 2>&1; do
  sleep 0.2
  if ((SECONDS - t0 > 60)); then echo "serve never up" >&2; exit 1; fi
done

start_worker a
wait_log "${worker_log[a]}" "leading: this worker writes"
start_worker b
wait_log "${worker_log[b]}" "worker started"
leader=a standby=b

results="$logs/results.txt"
: >"$results"
total=$((trials + graceful))
printf '%-5s %-7s %-7s %-8s %-7s %-7s %-7s %-7s %s\n' trial signal stopped at_frac lead_s tick_s pub_s serve_s "series (seconds relative to the signal's second)"
for ((i = 1; i <= total; i++)); do
  if ((i <= trials)); then sig=KILL; else sig=TERM; fi
  wait_writing "${worker_value[$leader]}"
  # a few seconds of steady writing, then a random phase within the second
  sleep "$("$py" -c 'import random; print(2 + random.random())')"
  {
    # (stderr off: bash would report the killed job)
    read -r t_sig serve_s _ < <(signal_and_poll "${worker_pid[$leader]}" "$sig" "${worker_value[$standby]}")
    wait "${worker_pid[$leader]}" || true
  } 2>/dev/null
  sleep 0.5
  took_log=$(log_time "${worker_log[$standby]}" "leading: this worker writes" "$t_sig")
  # its first tick as leader logs which source serves each asset
  first_tick=$(log_time "${worker_log[$standby]}" "asset served by source" "$t_sig")
  pub=$(published "$t_sig" "${worker_value[$standby]}")
  resigned="-"
  if [ "$sig" = TERM ]; then
    resigned=$(log_time "${worker_log[$leader]}" "lease given up" "$t_sig")
  fi
  # wait until 10 s after the signal are in the series
  while (($(date +%s) <= ${t_sig%.*} + 11)); do sleep 0.2; done
  ser=$(series "$t_sig" "${worker_value[$leader]}" "${worker_value[$standby]}")
  frac=$("$py" -c "print('%.3f' % ($t_sig % 1))")
  line=$(printf '%-5s %-7s %-7s %-8s %-7s %-7s %-7s %-7s %s' "$i" "$sig" "$leader" "$frac" "$took_log" "$first_tick" "$pub" "$serve_s" "$ser")
  [ "$sig" = TERM ] && line="$line resign_log=$resigned"
  echo "$line"
  echo "$line" >>"$results"
  # the stopped worker comes back as the standby
  start_worker "$leader"
  wait_log "${worker_log[$leader]}" "worker started"
  sleep 1
  tmp=$leader leader=$standby standby=$tmp
done

echo
"$py" - "$results" <<'PY'
import re, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for sig in ("KILL", "TERM"):
    sel = [r for r in rows if r[1] == sig]
    if not sel:
        continue
    def stats(xs):
        xs = sorted(x for x in xs if x == x)
        if not xs:
            return "n/a"
        return "min %.3f median %.3f max %.3f" % (xs[0], statistics.median(xs), xs[-1])
    log_s = [float(r[4]) for r in sel]
    tick_s = [float(r[5]) for r in sel]
    pub_s = [float(r[6]) for r in sel]
    serve_s = [float(r[7]) for r in sel]
    missing = [int(re.search(r"missing=(\d+)", " ".join(r)).group(1)) for r in sel]
    dups = sum(int(re.search(r"dup=(\d+)", " ".join(r)).group(1)) for r in sel)
    flips = sum(int(re.search(r"flips=(\d+)", " ".join(r)).group(1)) for r in sel)
    print("SUMMARY %s (%d trials): standby leads (log) %s s; its first tick (log) %s s; "
          "its first tick on the live channel %s s; serve node answers its value %s s; missing seconds per trial %s (total %d); "
          "duplicate seconds %d; old-after-new %d" % (
        sig, len(sel), stats(log_s), stats(tick_s), stats(pub_s), stats(serve_s),
        ",".join(map(str, missing)), sum(missing), dups, flips))
PY
# The whole run as the live channel saw it: every second published once?
"$py" - "$logs/live.txt" <<'PY'
import collections, sys
times = [int(l.split()[1]) for l in open(sys.argv[1])]
count = collections.Counter(times)
twice = sorted(t for t, n in count.items() if n > 1)
gaps = [b - a - 1 for a, b in zip(sorted(count), sorted(count)[1:]) if b - a > 1]
print("LIVE CHANNEL: %d EURUSD points over %d s; seconds published twice: %d; "
      "gaps: %d (%s seconds)" % (len(times), max(times) - min(times) + 1, len(twice),
                                 len(gaps), ",".join(map(str, gaps)) or "-"))
PY
