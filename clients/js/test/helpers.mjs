// What the tests share: the real `ratesd` binary on a free loopback port, a
// TCP proxy a test can cut, polling with a deadline.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** The binary: $RATESD_BIN, or the workspace's debug build (`cargo build`). */
export const BIN = process.env.RATESD_BIN ?? resolve(here, "../../../target/debug/ratesd");

/**
 * Whether the server tests can run: without the binary they are skipped
 * with a line, except under CI=true, where they fail.
 */
export function binaryOrSkip(t) {
  if (existsSync(BIN)) return true;
  if (process.env.CI === "true") throw new Error(`ratesd binary missing at ${BIN} (run cargo build first)`);
  t.skip(`ratesd binary missing at ${BIN}: run \`cargo build\` (or set RATESD_BIN)`);
  return false;
}

export function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/**
 * `ratesd` (worker and API in one process: the embedded engine, the
 * simulated source) with `env` over quiet test defaults; ready when it
 * answers `/health/ready`.
 */
export async function startServer(env = {}, port) {
  port ??= await freePort();
  const child = spawn(BIN, [], {
    env: {
      PATH: process.env.PATH,
      RATES_HTTP_ADDR: `127.0.0.1:${port}`,
      RATES_LOG: "warn",
      RATES_RATE_LIMIT_PER_SECOND: "0",
      RATES_SIMULATED_BACKFILL_SECONDS: "600",
      ...env,
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise((ok) => child.once("exit", ok));
  const server = {
    port,
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}/api/v2/ws`,
    child,
    /** SIGKILL, and waits for the exit. */
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
  try {
    await eventually("ratesd ready", 30_000, async () => {
      if (child.exitCode !== null) throw new Error(`ratesd exited with ${child.exitCode}`);
      const r = await fetch(`${server.http}/health/ready`).catch(() => null);
      return r?.status === 200 ? true : undefined;
    });
  } catch (e) {
    await server.kill();
    throw e;
  }
  return server;
}

/** Polls `probe` until it returns something other than undefined/false, or fails after `ms`. */
export async function eventually(what, ms, probe) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A TCP proxy on loopback to `target` (a port): `cut()` drops every
 * connection, `refuse(true)` drops new ones at once (the network is down),
 * `retarget(port)` sends new connections elsewhere.
 */
export async function startProxy(target) {
  const sockets = new Set();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target, "127.0.0.1");
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ]) {
      sockets.add(a);
      a.on("close", () => {
        sockets.delete(a);
        b.destroy();
      });
      a.on("error", () => b.destroy());
      a.pipe(b);
    }
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const port = server.address().port;
  return {
    port,
    ws: `ws://127.0.0.1:${port}/api/v2/ws`,
    connections: () => sockets.size / 2,
    cut() {
      for (const s of sockets) s.destroy();
    },
    refuse(on) {
      refusing = on;
    },
    retarget(port) {
      target = port;
    },
    close() {
      this.cut();
      return new Promise((ok) => server.close(ok));
    },
  };
}

/** Collects `point` events by stream. */
export function pointsOf(client) {
  const by = new Map();
  client.on("point", (stream, p) => {
    if (!by.has(stream)) by.set(stream, []);
    by.get(stream).push(p.time);
  });
  return (stream) => by.get(stream) ?? [];
}

/**
 * Whether `seconds` (what a client received of `symbol`'s point stream) are
 * exactly the server's own seconds over the same range, each once, in
 * order: null when so, else what differs. (The server may skip a second
 * when a tick overruns on a loaded machine; the client must not add or
 * lose any.)
 */
export async function sameAsServer(server, symbol, seconds, headers = {}) {
  if (!seconds.length) return "no second received";
  const from = seconds[0];
  const to = seconds.at(-1);
  const r = await fetch(`${server.http}/api/v1/rates/${symbol}/history?from=${from}&to=${to}&limit=1000`, { headers });
  if (r.status !== 200) return `history: ${r.status}`;
  const have = (await r.json()).points.map((p) => p.time);
  if (have.length === seconds.length && have.every((t, i) => t === seconds[i])) return null;
  return `client ${seconds.join(",")} vs server ${have.join(",")}`;
}
