// 1,000 ratesd-client instances (one Node process) through a reconnect
// storm: every connection is cut at once and the network stays down for a
// while (new connections are dropped too, so every client backs off and
// retries), then comes back. Measures how long each client takes to catch
// up (every stream holding the second that was current when the network
// came back) and checks every stream's seconds: consecutive, none twice,
// no `gap`.
//
//   node loadtest/sdk-storm.mjs --port 8080 [--clients 1000] [--rounds 3] [--down-ms 3000]
//
// Needs `npm ci && npm run build` in clients/js (the client and `ws` come
// from there). `loadtest/sdk-storm.sh` starts a release server and runs it.
import { createRequire } from "node:module";
import net from "node:net";
import { parseArgs } from "node:util";

const require = createRequire(new URL("../clients/js/package.json", import.meta.url));
const { WebSocket } = require("ws");
const { RatesClient } = await import(new URL("../clients/js/dist/index.js", import.meta.url));

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "8080" },
    clients: { type: "string", default: "1000" },
    rounds: { type: "string", default: "3" },
    "down-ms": { type: "string", default: "3000" },
  },
});
const target = Number(args.port);
const N = Number(args.clients);
const ROUNDS = Number(args.rounds);
const DOWN = Number(args["down-ms"]);
const STREAMS = [["EURUSD@point", "USDJPY@point"], ["GBPUSD@point", "!all@point"], ["AUDUSD@point", "USDCAD@point"]];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The network between the clients and the server.
const sockets = new Set();
let refusing = false;
const proxy = net.createServer((c) => {
  if (refusing) return c.destroy();
  const u = net.connect(target, "127.0.0.1");
  for (const [a, b] of [[c, u], [u, c]]) {
    sockets.add(a);
    a.on("close", () => { sockets.delete(a); b.destroy(); });
    a.on("error", () => b.destroy());
    a.pipe(b);
  }
});
await new Promise((ok) => proxy.listen(0, "127.0.0.1", ok));
const url = `ws://127.0.0.1:${proxy.address().port}/api/v2/ws`;

// The clock: a client straight to the server, the second now.
let now = 0;
const clock = new RatesClient(`ws://127.0.0.1:${target}/api/v2/ws`, { WebSocket });
clock.on("point", (_, p) => { now = Math.max(now, p.time); });
await clock.subscribe(["EURUSD@point"]);

const clients = [];
let gaps = 0, errors = 0;
for (let i = 0; i < N; i++) {
  const names = STREAMS[i % STREAMS.length];
  const c = new RatesClient(url, { WebSocket });
  const seen = new Map(names.map((n) => [n, []]));
  const record = (stream, time) => seen.get(stream)?.push(time);
  c.on("point", (s, p) => record(s, p.time));
  c.on("all", (s, f) => record(s, f.time));
  c.on("gap", () => gaps++);
  c.on("error", () => errors++);
  clients.push({ c, names, seen, opens: 0, openedAt: 0 });
  c.on("state", (st) => {
    if (st === "open") { clients[i].opens++; clients[i].openedAt = Date.now(); }
  });
}
const started = Date.now();
await Promise.all(clients.map(({ c, names }) => c.subscribe(names)));
console.log(`${N} clients subscribed in ${Date.now() - started} ms (${STREAMS.length} stream pairs)`);

const cursorOf = (cl) => Math.min(...cl.names.map((n) => cl.seen.get(n).at(-1) ?? 0));
const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const rows = [];
for (let round = 1; round <= ROUNDS; round++) {
  await sleep(6000); // a stable connection: the backoff starts over
  const cut = Date.now();
  refusing = true;
  for (const s of sockets) s.destroy();
  await sleep(DOWN);
  refusing = false;
  const back = Date.now();
  // Caught up: reconnected, and every stream holds the second current now.
  const goal = now;
  const caught = new Array(N).fill(0);
  const sinceOpen = new Array(N).fill(0);
  while (caught.some((t) => !t) && Date.now() - back < 60_000) {
    for (let i = 0; i < N; i++) {
      if (!caught[i] && clients[i].openedAt > cut && cursorOf(clients[i]) >= goal) {
        const t = Date.now();
        caught[i] = t - back;
        sinceOpen[i] = t - clients[i].openedAt;
      }
    }
    await sleep(10);
  }
  const missing = caught.filter((t) => !t).length;
  const times = caught.filter(Boolean);
  const opened = sinceOpen.filter(Boolean);
  const row = { round, down: back - cut, missing, p50: pct(times, 0.5), p99: pct(times, 0.99), max: Math.max(...times) };
  rows.push(row);
  console.log(`round ${round}: network down ${row.down} ms; caught up, ms after the network came back: p50 ${row.p50} p99 ${row.p99} max ${row.max}; ` +
    `ms after the client's reconnect: p50 ${pct(opened, 0.5)} p99 ${pct(opened, 0.99)} max ${Math.max(...opened)}; not caught up in 60 s: ${missing}`);
}

// Every stream of every client: consecutive seconds, none twice.
let broken = 0, seconds = 0;
for (const cl of clients) {
  for (const [name, ts] of cl.seen) {
    seconds += ts.length;
    for (let k = 1; k < ts.length; k++) {
      if (ts[k] !== ts[k - 1] + 1) {
        if (broken++ < 5) console.log(`client stream ${name}: ${ts[k]} after ${ts[k - 1]}`);
      }
    }
  }
}
const opens = clients.reduce((a, cl) => a + cl.opens, 0);
console.log(`seconds received ${seconds}; not consecutive ${broken}; gap events ${gaps}; error events ${errors}; connections opened ${opens} (${N} x ${ROUNDS + 1} = ${N * (ROUNDS + 1)} needed)`);
for (const cl of clients) cl.c.close();
clock.close();
proxy.close();
process.exit(broken || gaps || rows.some((r) => r.missing) ? 1 : 0);
