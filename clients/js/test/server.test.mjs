// ratesd-client against the real `ratesd` binary.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";

import { RatesClient, RatesError } from "../dist/index.js";
import { binaryOrSkip, eventually, pointsOf, sameAsServer, startProxy, startServer } from "./helpers.mjs";

/** A client whose `close()` runs when the test ends, whatever happens. */
function client(t, url, options = {}) {
  const c = new RatesClient(url, { WebSocket, ...options });
  t.after(() => c.close());
  return c;
}

test("subscribe and unsubscribe are answered by id; an error by id rejects with the server's code", async (t) => {
  if (!binaryOrSkip(t)) return;
  const server = await startServer();
  t.after(() => server.kill());
  const c = client(t, server.ws);
  const snapshots = [];
  c.on("snapshot", (stream, snap) => snapshots.push([stream, snap]));
  const points = pointsOf(c);

  // Several requests in flight at once, each answered by its own id.
  const [sub, assets, list] = await Promise.all([
    c.subscribe(["eurusd@point", "USDJPY@kline_1m"], { history: 30 }),
    c.assets(),
    c.list(),
  ]);
  assert.deepEqual(sub.streams.slice().sort(), ["EURUSD@point", "USDJPY@kline_1m"]);
  assert.match(sub.epoch, /^[0-9a-f]+$/);
  assert.equal(c.currentEpoch, sub.epoch);
  assert.ok(assets.some((a) => a.name === "EURUSD" && Number.isInteger(a.id)), JSON.stringify(assets));
  assert.ok(Array.isArray(list.streams));

  // Each stream's snapshot, in the catalog's spelling, then live points.
  await eventually("both snapshots and 2 live points", 10_000, () =>
    snapshots.length === 2 && points("EURUSD@point").length >= 2 ? true : undefined,
  );
  const pointSnap = snapshots.find(([s]) => s === "EURUSD@point")[1];
  assert.ok(pointSnap.points.length >= 29, `30 s of history: ${pointSnap.points.length}`);
  const lastHistory = pointSnap.points.at(-1).time;
  assert.ok(points("EURUSD@point")[0] > lastHistory, "the first live point follows the history");
  assert.equal(await sameAsServer(server, "EURUSD", [lastHistory, ...points("EURUSD@point")]), null);
  assert.ok(c.candles("usdjpy@kline_1m").length >= 1, "the kline series holds the snapshot");

  // An unknown symbol: rejected by id with the server's code and message;
  // nothing was subscribed and the connection stays up.
  await assert.rejects(c.subscribe(["EURUSD@ticker", "XXXYYY@point"]), (e) => {
    assert.ok(e instanceof RatesError);
    assert.equal(e.code, "NotFound");
    assert.match(e.message, /XXXYYY/);
    return true;
  });
  await assert.rejects(c.subscribe(["EURUSD@point"], { history: 99999 }), { code: "ValidationError" });
  assert.deepEqual((await c.list()).streams.slice().sort(), ["EURUSD@point", "USDJPY@kline_1m"]);

  // Unsubscribe: answered with what remains; the stream's frames stop.
  const left = await c.unsubscribe(["EURUSD@point"]);
  assert.deepEqual(left.streams, ["USDJPY@kline_1m"]);
  const seen = points("EURUSD@point").length;
  const klines = [];
  c.on("kline", (s) => klines.push(s));
  await eventually("two more kline updates", 10_000, () => (klines.length >= 2 ? true : undefined));
  assert.equal(points("EURUSD@point").length, seen, "no point after the unsubscribe's answer");
  assert.equal(c.state, "open");
});

test("a cut connection is resumed: every second once, in order, through a network outage", async (t) => {
  if (!binaryOrSkip(t)) return;
  const server = await startServer();
  t.after(() => server.kill());
  const proxy = await startProxy(server.port);
  t.after(() => proxy.close());
  const c = client(t, proxy.ws, { backoff: { minMs: 100, maxMs: 400 } });
  const states = [];
  c.on("state", (s) => states.push(s));
  const gaps = [];
  c.on("gap", (s, info) => gaps.push([s, info]));
  const points = pointsOf(c);
  const all = [];
  c.on("all", (s, frame) => all.push(frame.time));
  await c.subscribe(["EURUSD@point", "USDJPY@point", "!all@point"]);
  await eventually("3 live seconds", 10_000, () => (points("EURUSD@point").length >= 3 ? true : undefined));

  // Twice: the network goes away for 2.5 s (new connections are dropped
  // too, so the client backs off and retries), then comes back.
  for (let round = 0; round < 2; round++) {
    const before = points("EURUSD@point").length;
    proxy.refuse(true);
    proxy.cut();
    await new Promise((r) => setTimeout(r, 2500));
    proxy.refuse(false);
    await eventually("the streams resumed and live again", 15_000, () =>
      points("EURUSD@point").length >= before + 5 && points("USDJPY@point").length >= before + 5 ? true : undefined,
    );
  }
  for (const s of ["EURUSD@point", "USDJPY@point"]) {
    assert.equal(await sameAsServer(server, s.split("@")[0], points(s)), null, s);
  }
  // A whole-market frame each second the server had points.
  assert.equal(await sameAsServer(server, "EURUSD", all), null, "!all@point");
  assert.deepEqual(gaps, [], "every resume was recovered");
  const reconnects = states.filter((s) => s === "open").length;
  assert.ok(reconnects >= 3, `reconnected after each cut: ${states.join(" ")}`);
  assert.ok(states.filter((s) => s === "connecting").length > reconnects, "some attempts failed while the network was away");
});

test("after a server restart (a new epoch) a stream's resume is reported as a gap, then goes on", async (t) => {
  if (!binaryOrSkip(t)) return;
  const first = await startServer();
  t.after(() => first.kill());
  const proxy = await startProxy(first.port);
  t.after(() => proxy.close());
  const c = client(t, proxy.ws, { backoff: { minMs: 100, maxMs: 500 } });
  const gaps = [];
  c.on("gap", (s, info) => gaps.push([s, info]));
  const snapshots = [];
  c.on("snapshot", (s, snap) => snapshots.push([s, snap]));
  const points = pointsOf(c);
  const { epoch } = await c.subscribe(["EURUSD@point"]);
  await eventually("2 live seconds", 10_000, () => (points("EURUSD@point").length >= 2 ? true : undefined));

  // The embedded engine loses everything with its process.
  await first.kill();
  const lastBefore = points("EURUSD@point").at(-1);
  const second = await startServer();
  t.after(() => second.kill());
  proxy.retarget(second.port);
  proxy.cut();
  const [stream, info] = await eventually("a gap", 20_000, () => gaps[0]);
  assert.equal(stream, "EURUSD@point");
  assert.equal(info.reason, "not-recovered");
  assert.equal(info.epoch, epoch);
  assert.notEqual(info.currentEpoch, epoch, "the new server's epoch");
  assert.equal(info.since, lastBefore, "the gap starts after the last second seen");
  assert.equal(c.currentEpoch, info.currentEpoch);
  // The snapshot after the gap, then live points again.
  const after = points("EURUSD@point").length;
  await eventually("live again", 10_000, () => (points("EURUSD@point").length >= after + 2 ? true : undefined));
  assert.equal(snapshots.length, 2, "the first subscribe's snapshot and the one after the gap");
  assert.equal(gaps.length, 1);
});

test("kline updates are merged into the series the candles route gives", async (t) => {
  if (!binaryOrSkip(t)) return;
  const server = await startServer({ RATES_SIMULATED_BACKFILL_SECONDS: "900" });
  t.after(() => server.kill());
  const c = client(t, server.ws);
  const updates = [];
  c.on("kline", (stream, candle) => updates.push(candle));
  let snapshot = [];
  c.on("snapshot", (stream, snap) => (snapshot = snap.candles));
  await c.subscribe(["EURUSD@kline_1m"], { history: 600 });
  // A minute boundary: the closing update of one bucket, then the next's.
  await eventually("a bucket closed and the next begun", 75_000, () => {
    const i = updates.findIndex((k) => k.closed);
    return i >= 0 && updates.length > i + 1 ? true : undefined;
  });
  const series = c.candles("EURUSD@kline_1m");
  for (let i = 1; i < series.length; i++) {
    assert.ok(series[i].openTime > series[i - 1].openTime, "each bucket once, in order");
  }
  assert.equal(series.at(-1).closed, false, "the last candle is forming");
  assert.ok(series.length >= 10, `10 minutes of candles: ${series.length}`);
  // Every closed candle as the candles route has it.
  const r = await fetch(`${server.http}/api/v1/rates/EURUSD/candles?interval=1m&limit=1000`);
  assert.equal(r.status, 200);
  const rest = new Map((await r.json()).candles.map((k) => [k.openTime, k]));
  const closed = series.filter((k) => k.closed || k !== series.at(-1));
  assert.ok(closed.length >= 9);
  for (const k of closed) {
    const from = {
      snapshot: snapshot.filter((x) => x.openTime === k.openTime),
      updates: updates.filter((x) => x.openTime === k.openTime).map((x) => [x.count, x.closed]),
    };
    assert.deepEqual({ ...k, closed: true }, rest.get(k.openTime), `the candle of ${k.openTime}: ${JSON.stringify(from)}`);
  }
  // The forming candle's bucket is the route's (or, a minute boundary
  // crossed meanwhile, the one before its newest).
  assert.ok(rest.has(series.at(-1).openTime) && Math.max(...rest.keys()) - series.at(-1).openTime <= 60);
});

function hs256(secret, claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" }) + "." + b64(claims);
  return head + "." + createHmac("sha256", secret).update(head).digest("base64url");
}

test("a socket closed with 4001 (token expired) asks for a fresh token and reconnects at once, resuming", async (t) => {
  if (!binaryOrSkip(t)) return;
  const secret = "a-test-secret-of-at-least-32-bytes!!";
  const server = await startServer({ RATES_AUTH: "required", RATES_JWT_KEY: secret });
  t.after(() => server.kill());
  // Without a token the upgrade is refused.
  const refused = await fetch(`${server.http}/api/v1/rates/EURUSD`);
  assert.equal(refused.status, 401);

  const asked = [];
  const closes = [];
  let opened = [];
  const c = client(t, server.ws, {
    // Tokens that expire within 2 s; a backoff that would wait 5 s.
    getToken: async () => {
      asked.push(Date.now());
      return hs256(secret, { sub: "sdk-test", exp: Math.floor(Date.now() / 1000) + 2 });
    },
    backoff: { minMs: 5000, maxMs: 5000 },
    random: () => 1,
  });
  c.on("state", (s) => {
    if (s === "closed") closes.push(Date.now());
    if (s === "open") opened.push(Date.now());
  });
  const points = pointsOf(c);
  await c.subscribe(["EURUSD@point"]);
  await eventually("three tokens asked for", 20_000, () => (asked.length >= 3 && opened.length >= 3 ? true : undefined));
  const live = points("EURUSD@point").length;
  await eventually("live after the last reconnect", 5_000, () => (points("EURUSD@point").length > live ? true : undefined));
  // Each expiry closed the socket, and the next token was asked for at
  // once rather than after the 5 s backoff.
  for (let i = 1; i < asked.length; i++) {
    const closedAt = closes.filter((x) => x <= asked[i]).at(-1);
    assert.ok(closedAt !== undefined, "a close before each new token");
    assert.ok(asked[i] - closedAt < 1000, `token ${i} asked ${asked[i] - closedAt} ms after the close`);
  }
  const bearer = { Authorization: "Bearer " + hs256(secret, { sub: "sdk-test", exp: Math.floor(Date.now() / 1000) + 60 }) };
  assert.equal(await sameAsServer(server, "EURUSD", points("EURUSD@point"), bearer), null);
});

test("the README's example runs as written and exits by itself", async (t) => {
  if (!binaryOrSkip(t)) return;
  const server = await startServer();
  t.after(() => server.kill());
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const code = readme.split("## Example")[1].split("```js\n")[1].split("```")[0];
  // Inside the package, so that `ratesd-client` resolves to it by name.
  const file = new URL(`../example-${process.pid}.mjs`, import.meta.url);
  writeFileSync(file, code);
  t.after(() => rmSync(file, { force: true }));
  const run = spawnSync(process.execPath, [fileURLToPath(file)], {
    env: { PATH: process.env.PATH, RATESD_URL: server.ws },
    encoding: "utf8",
    timeout: 30_000,
  });
  assert.equal(run.status, 0, `exit ${run.status} ${run.signal ?? ""}: ${run.stderr}`);
  const lines = run.stdout.trim().split("\n");
  assert.ok(lines.some((l) => /^subscribed to EURUSD@point, EURUSD@kline_1m epoch [0-9a-f]+$/.test(l)), run.stdout);
  assert.ok(lines.some((l) => /^refused: NotFound .*NOSUCH/.test(l)), run.stdout);
  assert.equal(lines.filter((l) => /^EURUSD@point \d{4}-\d\d-\d\dT.* \d+\.\d+$/.test(l)).length, 3, run.stdout);
  assert.ok(lines.some((l) => /^candle \d+: o [\d.]+ h [\d.]+ l [\d.]+ c [\d.]+$/.test(l)), run.stdout);
  assert.equal(lines.at(-1), "connection: closed", run.stdout);
});
