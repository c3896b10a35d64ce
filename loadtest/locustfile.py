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
