#!/usr/bin/env python3
"""Issue 22's archive storm: public clients asking the worst pages of an
archive that holds a year of minutes, while the archiver writes every
second. For each ratesd binary given (interleaved rounds, same database
contents), CLIENTS threads each ask, for SECONDS, one of the worst pages in
turn (1d, 1m and 4h candles and history over from=0..9e18, limit 1000);
prints per binary the answers by status, their p50/p99 latency, and the
archiver's worst lag (now - newest archived second, sampled every 200 ms).

    python3 loadtest/archive-storm.py target/release/ratesd /tmp/old/ratesd
    CLIENTS=20 SECONDS=20 ROUNDS=2 python3 loadtest/archive-storm.py NEW OLD

It needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and psql;
each round makes a database of its own (ratesd_bench_storm_*) and drops it.
The year is written straight into the rollup tables (`minutes`, and
`hours` where the binary's migrations made it), as the archiver would.
"""
import http.client, os, statistics, subprocess, sys, threading, time

CLIENTS = int(os.environ.get("CLIENTS", "20"))
SECONDS = int(os.environ.get("SECONDS", "20"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qAt"]
FAR = "from=0&to=9000000000000000000"
PAGES = [f"/api/v1/rates/EURUSD/candles?interval=1d&{FAR}&limit=1000",
         f"/api/v1/rates/EURUSD/candles?interval=1m&{FAR}&limit=1000",
         f"/api/v1/rates/EURUSD/candles?interval=4h&{FAR}&limit=1000",
         f"/api/v1/rates/EURUSD/history?{FAR}&limit=1000"]

def psql(db, sql):
    return subprocess.run(PSQL + ["-d", db, "-c", sql], check=True, capture_output=True, text=True).stdout.strip()

def run(binary, port, db):
    psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    env = dict(os.environ, RATES_LOG="error", RATES_HTTP_ADDR=f"127.0.0.1:{port}",
               RATES_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}",
               RATES_RATE_LIMIT_PER_SECOND="0", RATES_SIMULATED_BACKFILL_SECONDS="0")
    env.pop("RATES_REDIS_URL", None)
    srv = subprocess.Popen([binary], env=env)
    try:
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health/ready"); r = c.getresponse(); r.read()
                if r.status == 200: break
            except Exception: pass
            time.sleep(0.2)
        for _ in range(100):
            try:
                psql(db, "SELECT 1 FROM minutes LIMIT 0"); break
            except subprocess.CalledProcessError:
                time.sleep(0.2)
        end = (int(time.time()) // 86400 - 2) * 86400
        psql(db, "INSERT INTO minutes SELECT 1, t, t, t + 59, 1.1 + 0.01 * sin(t / 3600.0), "
                 "1.1 + 0.01 * sin(t / 3600.0) + 0.001, 1.1 + 0.01 * sin(t / 3600.0) - 0.001, "
                 f"1.1 + 0.01 * cos(t / 3600.0), 60 FROM generate_series({end - 365 * 86400}, {end - 60}, 60) t")
        if psql(db, "SELECT to_regclass('hours') IS NOT NULL") == "t":
            psql(db, "INSERT INTO hours SELECT asset_id, open_time - open_time % 3600, min(first_ts), "
                     "max(last_ts), (array_agg(open ORDER BY open_time))[1], max(high), min(low), "
                     "(array_agg(close ORDER BY open_time DESC))[1], sum(count) FROM minutes "
                     f"WHERE open_time < {end} GROUP BY 1, 2")
        psql(db, "ANALYZE")
        stop = time.monotonic() + SECONDS
        results, lags = [], []
        def client(i):
            k = i
            while time.monotonic() < stop:
                url = PAGES[k % len(PAGES)]; k += 1
                t = time.monotonic()
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    c.request("GET", url); r = c.getresponse(); r.read(); c.close()
                    results.append((r.status, time.monotonic() - t))
                except Exception:
                    results.append(("error", time.monotonic() - t))
        def watch():
            while time.monotonic() < stop:
                newest = psql(db, "SELECT coalesce(max(ts), 0) FROM points WHERE asset_id = 1")
                if int(newest) > 0: lags.append(time.time() - int(newest))
                time.sleep(0.2)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)] + [threading.Thread(target=watch)]
        for t in threads: t.start()
        for t in threads: t.join()
        return results, lags
    finally:
        srv.terminate(); srv.wait()
        psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")

def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

print(f"| round | binary | answers by status | 200 p50 / p99 ms | 503 p50 / p99 ms | archiver's worst lag |")
print("|---|---|---|---|---|---|")
for rnd in range(1, ROUNDS + 1):
    for n, binary in enumerate(sys.argv[1:]):
        results, lags = run(binary, 18490 + n, f"ratesd_bench_storm_{os.getpid()}_{n}")
        by = {}
        for status, took in results: by.setdefault(status, []).append(took * 1000)
        counts = ", ".join(f"{k}: {len(v)}" for k, v in sorted(by.items(), key=lambda kv: str(kv[0])))
        ok = by.get(200, []); busy = by.get(503, [])
        print(f"| {rnd} | {binary} | {counts} | {pct(ok, .5):.0f} / {pct(ok, .99):.0f} | "
              f"{pct(busy, .5):.0f} / {pct(busy, .99):.0f} | {max(lags, default=float('nan')):.1f} s |", flush=True)
