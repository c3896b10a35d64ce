#!/usr/bin/env python3
"""Issue 11's crowd: 1,000 idle or slow-header connections from 127.0.0.1
(half send nothing, half stop in the middle of a header) against a ratesd
run under `ulimit -n 256`, while a client on 127.0.0.2 asks the rate route
every 50 ms for 8 s. Prints how many of the crowd the server has closed by
then, the client's latencies, and how long SIGTERM takes with the crowd
still connected.

    python3 loadtest/idle-crowd.py target/release/ratesd
    IDLE=30 python3 loadtest/idle-crowd.py target/release/ratesd

IDLE is RATES_HTTP_IDLE_TIMEOUT_SECONDS (default 5: every held connection
is cut before the 8 s are over; 30: they are all still open at SIGTERM).
The per-IP cap is 100, so 900 of the crowd are refused at once.
"""
import os, signal, socket, subprocess, sys, time, http.client, statistics
port = 18391
env = dict(os.environ, RATES_LOG="warn", RATES_HTTP_ADDR=f"0.0.0.0:{port}", RATES_DATABASE_URL="off",
           RATES_HTTP_MAX_CONNECTIONS_PER_IP="100", RATES_HTTP_IDLE_TIMEOUT_SECONDS=os.environ.get("IDLE", "5"))
env.pop("RATES_REDIS_URL", None)
srv = subprocess.Popen(["bash", "-c", f"ulimit -n 256 && exec {sys.argv[1]}"], env=env)
def get():
    c = http.client.HTTPConnection("127.0.0.2", port, timeout=5, source_address=("127.0.0.2", 0))
    t = time.monotonic(); c.request("GET", "/api/v1/rates/EURUSD"); r = c.getresponse(); r.read(); c.close()
    return r.status, time.monotonic() - t
for _ in range(100):
    try:
        if get()[0] == 200: break
    except Exception: pass
    time.sleep(0.2)
crowd = []
lat = []; codes = {}
start = time.monotonic(); opened_at = None
while time.monotonic() - start < 8:
    while len(crowd) < 1000 and time.monotonic() - start < 4:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            if len(crowd) % 2: s.send(b"GET / HTTP/1.1\r\nHo")
            crowd.append(s)
        except Exception:
            break
        if len(crowd) % 50 == 0: break
    try:
        code, dt = get(); lat.append(dt * 1000); codes[code] = codes.get(code, 0) + 1
    except Exception as e:
        codes[str(e)] = codes.get(str(e), 0) + 1
    time.sleep(0.05)
# how many of the crowd the server has closed (EOF or reset) by now
closed = 0
for s in crowd:
    s.setblocking(False)
    try:
        d = s.recv(4096)
        if d == b"" or d: closed += 1   # EOF, or a 429/503 answer then close
    except BlockingIOError: pass
    except Exception: closed += 1
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"crowd {len(crowd)} connections, closed by the server after 8 s: {closed}")
print(f"client: {len(lat)} answers {codes}; p50 {q(0.5):.2f} ms p99 {q(0.99):.2f} ms max {lat[-1]:.2f} ms")
t = time.monotonic(); srv.send_signal(signal.SIGTERM); srv.wait(timeout=20)
print(f"SIGTERM with the crowd open: exit {srv.returncode} in {time.monotonic() - t:.2f} s")
