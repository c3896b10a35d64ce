// The clients of loadtest/soak.sh, in one Node process: v1 WebSocket
// subscribers, v2 subscribers on ratesd-client (with reconnect churn),
// Server-Sent Events readers, and a REST loop, spread over the serve
// nodes. Writes one JSON line a minute to --out: the arrival p99 of live
// points (from the start of their second to their arrival here), the REST
// p99, counts of deliveries, REST answers and errors, reconnects, and
// seconds a client got twice (must stay 0).
//
//   node loadtest/soak-clients.mjs --ports 8081,8082 --minutes 60 --out FILE
import { appendFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

const require = createRequire(new URL("../clients/js/package.json", import.meta.url));
const { WebSocket } = require("ws");
const { RatesClient } = await import(new URL("../clients/js/dist/index.js", import.meta.url));

const { values: args } = parseArgs({
  options: {
    ports: { type: "string" },
    minutes: { type: "string", default: "60" },
    out: { type: "string" },
    v1: { type: "string", default: "200" },
    v2: { type: "string", default: "200" },
    sse: { type: "string", default: "50" },
    "rest-rps": { type: "string", default: "100" },
  },
});
const ports = args.ports.split(",").map(Number);
const SYMBOLS = ["EURUSD", "USDJPY", "GBPUSD", "AUDUSD", "USDCAD"];
const end = Date.now() + Number(args.minutes) * 60_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// This minute's observations.
let minute = { arrivals: [], rest: [], restErrors: 0, deliveries: 0, reconnects: 0, twice: 0 };
const arrived = (time) => {
  const delay = Date.now() - time * 1000;
  // Live deliveries only: a resume's catch-up is not an arrival.
  if (delay < 5000) minute.arrivals.push(delay);
  minute.deliveries++;
};
const seen = new Map(); // client key -> last second
const once = (key, time) => {
  const last = seen.get(key);
  if (last !== undefined && time <= last) minute.twice++;
  else seen.set(key, time);
};

// v1: raw WebSockets, one asset each; reconnect a second after a close.
function v1(i) {
  const port = ports[i % ports.length];
  const id = (i % SYMBOLS.length) + 1;
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/v1/ws`);
  ws.on("open", () => ws.send(JSON.stringify({ action: "subscribe", message: { assetId: id } })));
  ws.on("message", (data) => {
    const f = JSON.parse(data.toString());
    if (f.action === "point") {
      arrived(f.message.time);
      once(`v1:${i}`, f.message.time);
    }
  });
  ws.on("error", () => {});
  ws.on("close", () => {
    minute.reconnects++;
    seen.delete(`v1:${i}`);
    if (Date.now() < end) setTimeout(() => v1(i), 1000);
  });
}

// v2: ratesd-client, a point and a kline stream each; its socket kept for churn.
const v2sockets = [];
const v2clients = [];
function v2(i) {
  const port = ports[i % ports.length];
  const sym = SYMBOLS[i % SYMBOLS.length];
  class Tracked extends WebSocket {
    constructor(url) {
      super(url);
      v2sockets[i] = this;
    }
  }
  const c = new RatesClient(`ws://127.0.0.1:${port}/api/v2/ws`, { WebSocket: Tracked });
  c.on("point", (s, p) => {
    arrived(p.time);
    once(`v2:${i}`, p.time);
  });
  c.on("state", (s) => {
    if (s === "open") minute.reconnects++;
  });
  c.subscribe([`${sym}@point`, `${sym}@kline_1m`]).catch(() => {});
  v2clients.push(c);
}

// SSE: fetch's body read as text; resumed with Last-Event-ID after an end.
async function sse(i) {
  const port = ports[i % ports.length];
  const sym = SYMBOLS[i % SYMBOLS.length];
  let lastId = null;
  while (Date.now() < end) {
    try {
      const headers = lastId ? { "Last-Event-ID": lastId } : {};
      const r = await fetch(`http://127.0.0.1:${port}/api/v2/events?streams=${sym}@point`, { headers });
      const decoder = new TextDecoder();
      let buffer = "";
      for await (const chunk of r.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let at;
        while ((at = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          for (const line of event.split("\n")) {
            if (line.startsWith("id: ")) lastId = line.slice(4);
            if (line.startsWith("data: ") && event.includes("event: data")) {
              const f = JSON.parse(line.slice(6));
              arrived(f.data.time);
              once(`sse:${i}`, f.data.time);
            }
          }
        }
        if (Date.now() >= end) break;
      }
    } catch {
      // The node restarted or the stream ended: again.
    }
    minute.reconnects++;
    await sleep(1000);
  }
}

// REST: --rest-rps requests a second over the nodes and symbols.
async function rest() {
  const rps = Number(args["rest-rps"]);
  let n = 0;
  while (Date.now() < end) {
    const started = Date.now();
    for (let k = 0; k < rps / 10; k++) {
      const port = ports[n % ports.length];
      const sym = SYMBOLS[n++ % SYMBOLS.length];
      const t0 = performance.now();
      fetch(`http://127.0.0.1:${port}/api/v1/rates/${sym}`)
        .then(async (r) => {
          await r.arrayBuffer();
          if (r.status === 200) minute.rest.push(performance.now() - t0);
          else minute.restErrors++;
        })
        .catch(() => minute.restErrors++);
    }
    await sleep(Math.max(0, 100 - (Date.now() - started)));
  }
}

const p99 = (xs) => {
  if (!xs.length) return null;
  const s = xs.slice().sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] * 10) / 10;
};

for (let i = 0; i < Number(args.v1); i++) v1(i);
for (let i = 0; i < Number(args.v2); i++) v2(i);
for (let i = 0; i < Number(args.sse); i++) sse(i);
rest();
// Churn: every 10 s, one v2 client in twenty loses its socket and resumes.
const churn = setInterval(() => {
  for (let i = 0; i < v2sockets.length; i += 20) {
    const k = (i + Math.floor(Math.random() * 20)) % v2sockets.length;
    v2sockets[k]?.terminate();
  }
}, 10_000);
let m = 0;
const report = setInterval(() => {
  const line = {
    minute: ++m,
    arrival_p99_ms: p99(minute.arrivals),
    rest_p99_ms: p99(minute.rest),
    deliveries: minute.deliveries,
    rest: minute.rest.length,
    rest_errors: minute.restErrors,
    reconnects: minute.reconnects,
    twice: minute.twice,
  };
  appendFileSync(args.out, JSON.stringify(line) + "\n");
  minute = { arrivals: [], rest: [], restErrors: 0, deliveries: 0, reconnects: 0, twice: 0 };
}, 60_000);
await sleep(end - Date.now() + 1000);
clearInterval(churn);
clearInterval(report);
for (const c of v2clients) c.close();
process.exit(0);
