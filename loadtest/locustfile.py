"""Locust load test of ratesd: REST users and WebSocket subscribers.

    pip install locust websocket-client
    locust -f loadtest/locustfile.py --headless -u 40 -r 20 -t 30s \
        --host http://127.0.0.1:8080 --only-summary

`--host` (or LOCUST_HOST) names the server; `-t` bounds the run. Start the
server with RATES_RATE_LIMIT_PER_SECOND=0 (or a limit above the load) and a
RATES_WS_MAX_CONNECTIONS_PER_IP above the number of WebSocket users, or
requests beyond the per-IP limits are refused (429) by design.

WebSocket users report each live point as a request of type WS named
"point", whose response time is the delay from the start of the point's
second to its arrival: tick, Redis, fan-out and socket.

WebSocket v2 users (/api/v2/ws) hold a few point streams and one kline
stream on one connection and report as type WSv2: "subscribe" (the answer,
matched by id), "snapshot" (each stream's first frame, timed from the
subscribe), "point" (as above; a second that does not follow the last one
seen fails), "kline" (timed from the start of the current second; a bucket
not closed exactly once fails) and "connection" (a dropped connection,
which the user resumes with since + epoch; a snapshot with recovered:false
fails).
"""

import json
import random
import time

import websocket
from locust import HttpUser, User, between, events, task

SYMBOLS = ["EURUSD", "usdjpy", "GBP-USD", "AUD_USD", "USDCAD"]


class RestUser(HttpUser):
    weight = 3
    wait_time = between(0.05, 0.2)

    @task(3)
    def all_rates(self):
        self.client.get("/api/v1/rates")

    @task(5)
    def one_rate(self):
        symbol = random.choice(SYMBOLS)
        self.client.get(f"/api/v1/rates/{symbol}", name="/api/v1/rates/{symbol}")

    @task(2)
    def history_pages(self):
        symbol = random.choice(SYMBOLS)
        name = "/api/v1/rates/{symbol}/history"
        with self.client.get(
            f"/api/v1/rates/{symbol}/history?limit=100", name=name, catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
                return
            cursor = resp.json().get("next_cursor")
        if cursor:
            self.client.get(
                f"/api/v1/rates/{symbol}/history?limit=100&cursor={cursor}",
                name=name + "?cursor",
            )

    @task(2)
    def candles(self):
        symbol = random.choice(SYMBOLS)
        interval = random.choice(["1m", "5m", "1h", "1d"])
        self.client.get(
            f"/api/v1/rates/{symbol}/candles?interval={interval}&limit=60",
            name="/api/v1/rates/{symbol}/candles",
        )

    @task(2)
    def convert(self):
        source, target = random.choice([("EUR", "JPY"), ("JPY", "USD"), ("GBP", "CAD"), ("USD", "EUR")])
        self.client.get(
            f"/api/v1/convert?from={source}&to={target}&amount=100", name="/api/v1/convert"
        )

    @task(2)
    def tickers(self):
        """A watchlist: every asset's 24-hour ticker, then one asset's."""
        self.client.get("/api/v1/tickers", name="/api/v1/tickers")
        symbol = random.choice(SYMBOLS)
        self.client.get(f"/api/v1/rates/{symbol}/ticker", name="/api/v1/rates/{symbol}/ticker")

    @task(1)
    def conditional_rates(self):
        """A client that revalidates with If-None-Match (304 when unchanged)."""
        first = self.client.get("/api/v1/rates", name="/api/v1/rates (etag)")
        etag = first.headers.get("ETag")
        if etag:
            with self.client.get(
                "/api/v1/rates",
                headers={"If-None-Match": etag},
                name="/api/v1/rates (If-None-Match)",
                catch_response=True,
            ) as resp:
                if resp.status_code in (200, 304):
                    resp.success()


class WebSocketUser(User):
    """Subscribes to one asset and reads live points until the run ends."""

    weight = 1
    wait_time = between(0, 0)

    def on_start(self):
        url = self.host.replace("http://", "ws://").replace("https://", "wss://") + "/api/v1/ws"
        started = time.time()
        try:
            self.ws = websocket.create_connection(url, timeout=10)
            self.ws.send(json.dumps({"action": "subscribe", "message": {"assetId": random.randint(1, 5)}}))
            history = json.loads(self.ws.recv())
            ok = history.get("action") == "asset_history"
            events.request.fire(
                request_type="WS",
                name="subscribe (history)",
                response_time=(time.time() - started) * 1000,
                response_length=len(json.dumps(history)),
                exception=None if ok else Exception(f"unexpected {history.get('action')}"),
            )
        except Exception as e:  # noqa: BLE001 - reported to locust as a failure
            self.ws = None
            events.request.fire(
                request_type="WS", name="subscribe (history)", response_time=0,
                response_length=0, exception=e,
            )

    @task
    def read_point(self):
        if self.ws is None:
            time.sleep(1)
            return
        try:
            raw = self.ws.recv()
        except Exception as e:  # noqa: BLE001
            events.request.fire(request_type="WS", name="point", response_time=0, response_length=0, exception=e)
            self.ws = None
            return
        frame = json.loads(raw)
        if frame.get("action") != "point":
            return
        delay_ms = (time.time() - frame["message"]["time"]) * 1000
        events.request.fire(
            request_type="WS", name="point", response_time=delay_ms,
            response_length=len(raw), exception=None,
        )

    def on_stop(self):
        if getattr(self, "ws", None) is not None:
            self.ws.close()


class WebSocketV2User(User):
    """Protocol v2: three point streams and one kline stream on one
    connection, subscribed in one request whose answer is checked by id;
    after a drop, resumes with since (the last second seen) and the epoch."""

    weight = 1
    wait_time = between(0, 0)
    point_streams = ["EURUSD@point", "USDJPY@point", "GBPUSD@point"]
    kline_streams = ["EURUSD@kline_1m"]

    def on_start(self):
        self.ws = None
        self.epoch = None
        self.last = {}  # point stream -> the last second seen, across reconnects
        self.buckets = {}  # kline stream -> (openTime, closed) of its last candle
        self.next_id = 0
        self.subscribe()

    def fire(self, name, response_time, length, exception=None):
        events.request.fire(
            request_type="WSv2", name=name, response_time=response_time,
            response_length=length, exception=exception,
        )

    def subscribe(self):
        """Connects and subscribes: one request, or after a drop one per
        distinct since (streams may have stopped at different seconds)."""
        url = self.host.replace("http://", "ws://").replace("https://", "wss://") + "/api/v2/ws"
        self.started = time.time()
        self.buckets = {}
        try:
            self.ws = websocket.create_connection(url, timeout=10)
            groups = {}
            for stream in self.point_streams:
                groups.setdefault(self.last.get(stream), []).append(stream)
            pending = {}
            for n, (since, streams) in enumerate(groups.items()):
                self.next_id += 1
                params = {"streams": streams + (self.kline_streams if n == 0 else [])}
                if since is None:
                    params["history"] = 0
                else:
                    params["since"] = since
                    if self.epoch:
                        params["epoch"] = self.epoch
                pending[self.next_id] = params["streams"]
                self.ws.send(json.dumps({"id": self.next_id, "method": "subscribe", "params": params}))
            length = 0
            while pending:
                raw = self.ws.recv()
                frame = json.loads(raw)
                if "stream" in frame:  # a snapshot of an earlier request's streams
                    self.handle(frame, raw)
                    continue
                asked = pending.pop(frame.get("id"), None)
                if asked is None:
                    raise Exception(f"an answer to no request of ours: {raw[:200]}")
                if "error" in frame:
                    raise Exception(f"{frame['error'].get('code')}: {frame['error'].get('message')}")
                got = {s.lower() for s in frame["result"].get("streams", [])}
                missing = [s for s in asked if s.lower() not in got]
                if missing:
                    raise Exception(f"the answer lacks {missing}: {raw[:200]}")
                self.epoch = frame["result"].get("epoch", self.epoch)
                length += len(raw)
            self.fire("subscribe", (time.time() - self.started) * 1000, length)
        except Exception as e:  # noqa: BLE001 - reported to locust as a failure
            self.fire("subscribe", (time.time() - self.started) * 1000, 0, e)
            self.close()

    def advance(self, stream, times):
        """Takes a point stream's seconds; the first that does not follow
        the last one seen is the failure returned."""
        error = None
        for t in times:
            last = self.last.get(stream)
            if last is not None and t != last + 1 and error is None:
                kind = "gap" if t > last else "duplicate"
                error = Exception(f"{stream}: {kind}, second {t} after {last}")
            if last is None or t > last:
                self.last[stream] = t
        return error

    def check_kline(self, stream, candle):
        previous = self.buckets.get(stream)
        self.buckets[stream] = (candle["openTime"], candle["closed"])
        if previous is None:
            return None
        bucket, closed = previous
        if candle["openTime"] < bucket:
            return Exception(f"{stream}: bucket {candle['openTime']} after bucket {bucket}")
        if candle["openTime"] == bucket and closed:
            return Exception(f"{stream}: a frame of bucket {bucket} after its closed:true")
        if candle["openTime"] > bucket and not closed:
            return Exception(f"{stream}: bucket {candle['openTime']} began before bucket {bucket} closed")
        return None

    def handle(self, frame, raw):
        stream = frame.get("stream", "")
        now = time.time()
        if "snapshot" in frame:
            snapshot = frame["snapshot"]
            error = None
            if stream.endswith("@point"):
                last = self.last.get(stream)
                error = self.advance(stream, [p["time"] for p in snapshot.get("points", [])])
                if snapshot.get("recovered") is False:
                    error = Exception(f"{stream}: recovered false after second {last}")
            else:
                candles = snapshot.get("candles", [])
                if candles:
                    self.buckets[stream] = (candles[-1]["openTime"], candles[-1]["closed"])
            self.fire("snapshot", (now - self.started) * 1000, len(raw), error)
        elif "data" in frame and stream.endswith("@point"):
            second = frame["data"]["time"]
            self.fire("point", (now - second) * 1000, len(raw), self.advance(stream, [second]))
        elif "data" in frame:
            self.fire("kline", (now % 1) * 1000, len(raw), self.check_kline(stream, frame["data"]))
        else:
            self.fire("unexpected frame", 0, len(raw), Exception(raw[:200]))

    @task
    def read_frame(self):
        if self.ws is None:
            time.sleep(1)
            self.subscribe()
            return
        try:
            raw = self.ws.recv()
        except Exception as e:  # noqa: BLE001 - a drop: resumed on the next call
            self.fire("connection", 0, 0, e)
            self.close()
            return
        try:
            frame = json.loads(raw)
            self.handle(frame, raw)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            self.fire("unexpected frame", 0, len(raw), Exception(f"{e!r}: {raw[:200]}"))

    def close(self):
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:  # noqa: BLE001
                pass
        self.ws = None

    def on_stop(self):
        self.close()
