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

/** Lets pending promise callbacks run (under mocked timers). */
async function flush() {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

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

/** A client on scripted sockets, its first socket open. */
async function opened(t, options = {}) {
  ScriptedSocket.all = [];
  const c = new RatesClient("ws://x", { WebSocket: ScriptedSocket, backoff: { minMs: 1, maxMs: 2 }, ...options });
  t.after(() => c.close());
  await until("a socket", () => ScriptedSocket.last());
  ScriptedSocket.last().open();
  return c;
}

/** Answers a subscribe frame as the server would (every stream it names). */
function accept(socket, frame, epoch = "e1") {
  socket.frame({ id: frame.id, result: { streams: frame.params.streams, epoch } });
}

test("a stream unsubscribed before its subscribe was answered is not brought back", async (t) => {
  const c = await opened(t);
  const first = ScriptedSocket.last();
  const subscribed = c.subscribe(["EURUSD@point"]);
  const unsubscribed = c.unsubscribe(["EURUSD@point"]);
  accept(first, first.sent[0]);
  first.frame({ id: first.sent[1].id, result: { streams: [] } });
  await Promise.all([subscribed, unsubscribed]);
  first.drop();
  await until("a second socket", () => ScriptedSocket.all.length === 2);
  ScriptedSocket.last().open();
  assert.deepEqual(ScriptedSocket.last().sent, [], "nothing to resume");
});

test("a resume refused for the moment keeps every cursor and is tried again on a new connection", async (t) => {
  const c = await opened(t);
  const errors = [];
  c.on("error", (e) => errors.push(e.code));
  const gaps = [];
  c.on("gap", (s) => gaps.push(s));
  let socket = ScriptedSocket.last();
  const done = c.subscribe(["EURUSD@point", "USDJPY@point"]);
  accept(socket, socket.sent[0]);
  await done;
  for (const s of ["EURUSD@point", "USDJPY@point"]) socket.frame({ stream: s, data: { time: 50 } });
  socket.drop();
  await until("a second socket", () => ScriptedSocket.all.length === 2);
  socket = ScriptedSocket.last();
  socket.open();
  const resume = socket.sent[0];
  assert.deepEqual(resume.params, { streams: ["EURUSD@point", "USDJPY@point"], since: 50, epoch: "e1" });
  socket.frame({ id: resume.id, error: { code: "Internal", message: "the rates store is unavailable right now" } });
  await until("a third socket", () => ScriptedSocket.all.length === 3);
  socket = ScriptedSocket.last();
  socket.open();
  assert.deepEqual(socket.sent[0].params, resume.params, "the same resume");
  assert.deepEqual(errors, ["Internal"]);
  assert.deepEqual(gaps, [], "no hole: nothing was given up");
});

test("a resume refused for one stream is asked stream by stream; only that one starts afresh", async (t) => {
  const c = await opened(t);
  const gaps = [];
  c.on("gap", (s, info) => gaps.push([s, info.reason]));
  let socket = ScriptedSocket.last();
  const done = c.subscribe(["EURUSD@point", "OLDONE@point"], { history: 30 });
  accept(socket, socket.sent[0]);
  await done;
  for (const s of ["EURUSD@point", "OLDONE@point"]) socket.frame({ stream: s, data: { time: 50 } });
  socket.drop();
  await until("a second socket", () => ScriptedSocket.all.length === 2);
  socket = ScriptedSocket.last();
  socket.open();
  socket.frame({ id: socket.sent[0].id, error: { code: "NotFound", message: "unknown symbol 'OLDONE'" } });
  const alone = socket.sent.slice(1);
  assert.deepEqual(alone.map((f) => f.params), [
    { streams: ["EURUSD@point"], since: 50, epoch: "e1" },
    { streams: ["OLDONE@point"], since: 50, epoch: "e1" },
  ]);
  accept(socket, alone[0]);
  socket.frame({ id: alone[1].id, error: { code: "NotFound", message: "unknown symbol 'OLDONE'" } });
  assert.deepEqual(gaps, [["OLDONE@point", "refused"]]);
  const fresh = socket.sent.at(-1);
  assert.deepEqual(fresh.params, { streams: ["OLDONE@point"], history: 30 });
  assert.equal(c.cursor("EURUSD@point"), 50, "the other stream kept its place");
});

test("frames are paced at the server's rate: a burst of twice it, then one a tick", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
  ScriptedSocket.all = [];
  const c = new RatesClient("ws://x", { WebSocket: ScriptedSocket, framesPerSecond: 10 });
  t.after(() => c.close());
  t.mock.timers.tick(0);
  for (let i = 0; i < 5; i++) await Promise.resolve();
  ScriptedSocket.last().open();
  for (let i = 0; i < 25; i++) c.list().catch(() => {});
  assert.equal(ScriptedSocket.last().sent.length, 20, "the burst");
  t.mock.timers.tick(100);
  assert.equal(ScriptedSocket.last().sent.length, 21);
  t.mock.timers.tick(400);
  assert.equal(ScriptedSocket.last().sent.length, 25, "the rest at 10 a second");
});

test("a 4001 right after the upgrade backs off instead of spinning; after a connection that lived it is at once", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
  ScriptedSocket.all = [];
  const c = new RatesClient("ws://x", {
    WebSocket: ScriptedSocket,
    getToken: () => "t",
    backoff: { minMs: 5000, maxMs: 5000 },
    random: () => 0.5,
  });
  t.after(() => c.close());
  t.mock.timers.tick(0);
  await flush();
  ScriptedSocket.last().open();
  t.mock.timers.tick(3000);
  ScriptedSocket.last().drop(4001);
  t.mock.timers.tick(0);
  await flush();
  assert.equal(ScriptedSocket.all.length, 2, "at once after a connection of 3 s");
  ScriptedSocket.last().open();
  ScriptedSocket.last().drop(4001);
  t.mock.timers.tick(0);
  await flush();
  assert.equal(ScriptedSocket.all.length, 2, "not at once after an instant 4001");
  t.mock.timers.tick(2500);
  await flush();
  assert.equal(ScriptedSocket.all.length, 3, "after the backoff");
});

test("a getToken that never answers is given up after connectTimeoutMs and asked again", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
  ScriptedSocket.all = [];
  let asked = 0;
  const c = new RatesClient("ws://x", {
    WebSocket: ScriptedSocket,
    getToken: () => { asked++; return asked === 1 ? new Promise(() => {}) : "t2"; },
    connectTimeoutMs: 1000,
    backoff: { minMs: 10, maxMs: 10 },
    random: () => 0,
  });
  t.after(() => c.close());
  const errors = [];
  c.on("error", (e) => errors.push(e.code));
  t.mock.timers.tick(0);
  await flush();
  assert.equal(asked, 1);
  t.mock.timers.tick(1000);
  await flush();
  t.mock.timers.tick(0);
  await flush();
  assert.equal(asked, 2);
  assert.deepEqual(errors, ["Token"]);
  assert.equal(ScriptedSocket.last().url, "ws://x?token=t2");
});
