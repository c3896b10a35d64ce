// ratesd-client's own logic, on a scripted socket: the backoff, candle
// merging, the frames of a resume, `close()`.
import assert from "node:assert/strict";
import { test } from "node:test";

import { RatesClient, backoffDelay, mergeCandle } from "../dist/index.js";

/** A WebSocket the test plays the server of. */
class ScriptedSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.onopen = this.onclose = this.onmessage = this.onerror = null;
    ScriptedSocket.all.push(this);
  }
  static last() {
    return ScriptedSocket.all.at(-1);
  }
  send(text) {
    assert.equal(this.readyState, 1, "sent on an open socket only");
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.drop(1000);
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  frame(f) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
  drop(code = 1006) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
}

const tick = () => new Promise((r) => setTimeout(r, 0));

async function until(what, probe) {
  for (let i = 0; i < 200; i++) {
    const v = probe();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("never: " + what);
}

test("backoff: full jitter under a ceiling that doubles up to the cap", () => {
  const ceilings = [0, 1, 2, 3, 4, 5, 6, 40].map((n) => backoffDelay(n, 250, 10_000, () => 0.999999));
  assert.deepEqual(ceilings, [249, 499, 999, 1999, 3999, 7999, 9999, 9999]);
  for (let n = 0; n < 10; n++) assert.equal(backoffDelay(n, 250, 10_000, () => 0), 0);
  const spread = new Set(Array.from({ length: 100 }, () => backoffDelay(5, 250, 10_000, Math.random)));
  assert.ok(spread.size > 50, "random within the ceiling");
  for (const d of spread) assert.ok(d >= 0 && d < 8000);
});

test("candles: the forming one replaced, a new bucket appended once, an older one ignored", () => {
  const k = (openTime, close, closed = false) => ({ openTime, closeTime: openTime + 59, open: 1, high: 2, low: 0, close, count: 1, closed });
  const series = [k(0, 1, true), k(60, 1)];
  assert.ok(mergeCandle(series, k(60, 2)));
  assert.deepEqual(series.map((c) => [c.openTime, c.close]), [[0, 1], [60, 2]]);
  assert.ok(mergeCandle(series, k(60, 3, true)));
  assert.ok(mergeCandle(series, k(60, 3, true)), "the closed candle again replaces, it does not add");
  assert.ok(mergeCandle(series, k(120, 4)));
  assert.deepEqual(series.map((c) => [c.openTime, c.close, c.closed]), [[0, 1, true], [60, 3, true], [120, 4, false]]);
  assert.equal(mergeCandle(series, k(60, 9)), false);
  assert.equal(series.length, 3);
  for (let t = 180; t < 600; t += 60) mergeCandle(series, k(t, 5), 4);
  assert.equal(series.length, 4, "kept to the maximum");
  assert.equal(series[0].openTime, 360);
});

test("a resume subscribes each point stream after its last second with the epoch; the rest afresh", async (t) => {
  ScriptedSocket.all = [];
  const c = new RatesClient("ws://x/api/v2/ws", { WebSocket: ScriptedSocket, backoff: { minMs: 1, maxMs: 2 } });
  t.after(() => c.close());
  const points = [];
  c.on("point", (s, p) => points.push(p.time));
  // A subscribe made before the socket opens is sent once it does.
  const answered = c.subscribe(["eur/usd@point", "EURUSD@kline_1m", "USDJPY@ticker"], { history: 60 });
  await until("a socket", () => ScriptedSocket.last());
  const first = ScriptedSocket.last();
  first.open();
  const [sub] = first.sent;
  assert.deepEqual(sub.params, { streams: ["eur/usd@point", "EURUSD@kline_1m", "USDJPY@ticker"], history: 60 });
  first.frame({ id: sub.id, result: { streams: ["EURUSD@point", "EURUSD@kline_1m", "USDJPY@ticker"], epoch: "77" } });
  assert.equal((await answered).epoch, "77");
  first.frame({ stream: "EURUSD@point", snapshot: { points: [{ time: 10 }, { time: 11 }], recovered: true } });
  first.frame({ stream: "EURUSD@point", data: { time: 12 } });
  first.drop();

  await until("a second socket", () => ScriptedSocket.all.length === 2);
  const second = ScriptedSocket.last();
  second.open();
  const bySince = second.sent.find((f) => f.params.since !== undefined);
  assert.deepEqual(bySince.params, { streams: ["EURUSD@point"], since: 12, epoch: "77" });
  const fresh = second.sent.find((f) => f.params.since === undefined);
  assert.deepEqual(fresh.params, { streams: ["EURUSD@kline_1m", "USDJPY@ticker"], history: 60 });
  second.frame({ id: bySince.id, result: { streams: ["EURUSD@point"], epoch: "77" } });
  // The resume's snapshot overlaps (12) and goes on (13, 14); then live.
  second.frame({ stream: "EURUSD@point", snapshot: { points: [{ time: 12 }, { time: 13 }, { time: 14 }], recovered: true } });
  second.frame({ stream: "EURUSD@point", data: { time: 14 } });
  second.frame({ stream: "EURUSD@point", data: { time: 15 } });
  assert.deepEqual(points, [12, 13, 14, 15], "each second once");
  assert.equal(c.cursor("EURUSD@point"), 15);
});

test("an unanswered request is sent again after a drop; close() rejects what is left and leaves no timer", async () => {
  ScriptedSocket.all = [];
  const before = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
  const c = new RatesClient("ws://x/api/v2/ws", { WebSocket: ScriptedSocket, backoff: { minMs: 1, maxMs: 2 } });
  await until("a socket", () => ScriptedSocket.last());
  ScriptedSocket.last().open();
  const listed = c.list();
  const asked = ScriptedSocket.last().sent[0];
  ScriptedSocket.last().drop();
  await until("a second socket", () => ScriptedSocket.all.length === 2);
  ScriptedSocket.last().open();
  assert.deepEqual(ScriptedSocket.last().sent, [asked], "the same request, same id");
  ScriptedSocket.last().frame({ id: asked.id, result: { streams: [] } });
  assert.deepEqual(await listed, { streams: [] });

  // A drop schedules a reconnect; close() cancels it and rejects the rest.
  const pending = c.assets();
  ScriptedSocket.last().drop();
  c.close();
  await assert.rejects(pending, { code: "Closed" });
  await assert.rejects(c.subscribe(["EURUSD@point"]), { code: "Closed" });
  await tick();
  const after = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
  assert.equal(after, before, "no timer left behind");
  assert.equal(ScriptedSocket.all.length, 2, "no reconnect after close()");
  assert.equal(c.state, "closed");
});

test("the backoff grows while connects fail and starts over after a stable connection", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
  ScriptedSocket.all = [];
  const c = new RatesClient("ws://x", {
    WebSocket: ScriptedSocket,
    backoff: { minMs: 100, maxMs: 1000, stableMs: 5000 },
    random: () => 0.999,
  });
  t.after(() => c.close());
  // Advances the clock until the next socket is made; the time it took.
  const next = async () => {
    const n = ScriptedSocket.all.length;
    for (let waited = 0; waited <= 2000; waited++) {
      if (ScriptedSocket.all.length > n) return waited;
      t.mock.timers.tick(1);
      await Promise.resolve();
      await Promise.resolve();
    }
    throw new Error("no reconnect");
  };
  await next();
  const delays = [];
  for (let i = 0; i < 5; i++) {
    ScriptedSocket.last().drop();
    delays.push(await next());
  }
  assert.deepEqual(delays, [99, 199, 399, 799, 999]);
  // Open for 5 s: the next drop starts from the smallest delay again.
  ScriptedSocket.last().open();
  t.mock.timers.tick(5000);
  ScriptedSocket.last().drop();
  assert.equal(await next(), 99);
  // Open but not for long: the backoff goes on growing.
  ScriptedSocket.last().open();
  t.mock.timers.tick(100);
  ScriptedSocket.last().drop();
  assert.equal(await next(), 199);
});

test("a socket that does not open within connectTimeoutMs is given up and retried", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
  ScriptedSocket.all = [];
  const c = new RatesClient("ws://x", {
    WebSocket: ScriptedSocket,
    connectTimeoutMs: 3000,
    backoff: { minMs: 100, maxMs: 100 },
    random: () => 0,
  });
  t.after(() => c.close());
  const states = [];
  c.on("state", (s) => states.push(s));
  const flush = async () => { for (let i = 0; i < 5; i++) await Promise.resolve(); };
  t.mock.timers.tick(0);
  await flush();
  assert.equal(ScriptedSocket.all.length, 1);
  t.mock.timers.tick(2999);
  await flush();
  assert.equal(ScriptedSocket.all.length, 1, "still waiting");
  t.mock.timers.tick(1);
  await flush();
  assert.equal(ScriptedSocket.all[0].readyState, 3, "the first socket closed");
  t.mock.timers.tick(0);
  await flush();
  assert.equal(ScriptedSocket.all.length, 2, "retried");
  // One that opens in time stays.
  ScriptedSocket.last().open();
  t.mock.timers.tick(10_000);
  await flush();
  assert.equal(ScriptedSocket.all.length, 2);
  assert.deepEqual(states, ["connecting", "closed", "connecting", "open"]);
});
