/**
 * ratesd-client: the client of ratesd's v2 WebSocket protocol
 * (`/api/v2/ws`) for browsers and Node.js 20 or later.
 *
 * - `subscribe` / `unsubscribe` / `list` / `assets` return promises answered
 *   by the request's id (rejected with a {@link RatesError} carrying the
 *   server's code and message);
 * - every point stream (`<symbol>@point`, `!all@point`) keeps the last
 *   second it saw; after a drop the client reconnects with exponential
 *   backoff and full jitter and resumes each of them with `since` + `epoch`,
 *   so the application sees every second once, none twice; a stream the
 *   server could not recover is reported as a `gap`;
 * - kline updates are merged into a candle series (the forming candle
 *   replaced, a new bucket's appended);
 * - `getToken` is asked on every (re)connect; a close with 4001 (token
 *   expired) asks it again and reconnects at once;
 * - `close()` stops everything: no socket, no timer is left behind.
 *
 * No runtime dependency: pass a WebSocket implementation (such as the `ws`
 * package) where there is no global one (Node 20).
 */

/** The connection's state, as the `state` event tells it. */
export type State = "connecting" | "open" | "closed";

/** An asset's point of one second. */
export interface Point {
  assetName: string;
  assetId: number;
  /** Unix second. */
  time: number;
  value: number;
}

/** An OHLC candle of one bucket; `closed` on its final update. */
export interface Candle {
  openTime: number;
  closeTime: number;
  open: number;
  high: number;
  low: number;
  close: number;
  count: number;
  closed: boolean;
}

/** A 24-hour ticker, as `GET /api/v1/rates/{symbol}/ticker` answers it. */
export interface Ticker {
  symbol: string;
  [field: string]: unknown;
}

/** `!all@point`'s frame of one second: every asset's point. */
export interface MarketPoints {
  time: number;
  points: Point[];
}

/** `!all@ticker`'s frame of one second: every asset's ticker. */
export interface MarketTickers {
  time: number;
  tickers: Ticker[];
}

/** A stream's first frame after a subscribe: the fields its kind has. */
export interface Snapshot {
  /** `<symbol>@point`: the points of the history asked for, or after `since`. */
  points?: Point[];
  /** `<symbol>@kline_<interval>`: the candles of the history, or the forming one. */
  candles?: Candle[];
  /** `<symbol>@ticker`: the ticker now (null before the asset has a point). */
  ticker?: Ticker | null;
  /** `!all@point`: one frame per second. */
  frames?: MarketPoints[];
  /** `!all@ticker`: every asset's ticker now. */
  tickers?: Ticker[];
  time?: number;
  /** Point streams: false when the server could not resume without a hole. */
  recovered?: boolean;
}

/** Why a stream's series has a hole the client could not fill. */
export interface GapInfo {
  /** The last second the client had seen. */
  since: number;
  /** The epoch the client resumed with (null when it had none). */
  epoch: string | null;
  /** The server's epoch now: different from `epoch` when its data were lost and rebuilt. */
  currentEpoch: string | null;
  /**
   * `not-recovered`: the server answered `recovered: false` (it lost its
   * data, or the client was away longer than its live window); the
   * snapshot that follows holds what it has. `refused`: the server refused
   * the resume; the stream was subscribed afresh with its history.
   */
  reason: "not-recovered" | "refused";
}

export interface SubscribeResult {
  /** Every stream of the connection, in the catalog's spelling. */
  streams: string[];
  /** The server's data epoch. */
  epoch: string;
}

export interface StreamsResult {
  streams: string[];
}

export interface Asset {
  id: number;
  name: string;
}

export interface SubscribeOptions {
  /** Seconds of history in each new stream's snapshot (0..=1800, default 0). */
  history?: number;
}

export interface BackoffOptions {
  /** The first retry's ceiling, doubled on each failure (default 250). */
  minMs?: number;
  /** The cap of every retry's delay (default 10000). */
  maxMs?: number;
  /** A connection open this long resets the backoff (default 5000). */
  stableMs?: number;
}

/** The least of a WebSocket this client uses (the browser's, `ws`'s, Node's). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket class: `new WebSocket(url)`. */
export type WebSocketConstructor = new (url: string) => any;

export interface ClientOptions {
  /**
   * An API key or a client token, asked on every (re)connect and sent as
   * `?token=`. Return null for none.
   */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** The WebSocket class; the global one by default (browsers, Node 22+). */
  WebSocket?: WebSocketConstructor;
  backoff?: BackoffOptions;
  /**
   * A connection not open after this long (`getToken` included) is given
   * up and retried (default 10000).
   */
  connectTimeoutMs?: number;
  /**
   * Frames the client sends a second at most, in bursts of twice that: the
   * server's `RATES_WS_FRAMES_PER_SECOND` (default 10). 0: unpaced.
   */
  framesPerSecond?: number;
  /** Candles kept in each kline stream's series (default 1500). */
  maxCandles?: number;
  /** Random numbers in [0, 1) for the jitter (tests pass their own). */
  random?: () => number;
}

/** The events and their listeners' arguments. */
export interface ClientEvents {
  /** A live point of `<symbol>@point` (resumed points included, in order). */
  point: (stream: string, point: Point) => void;
  /** A kline update, merged into `series` (the stream's candles, oldest first). */
  kline: (stream: string, candle: Candle, series: readonly Candle[]) => void;
  /** A `<symbol>@ticker` update. */
  ticker: (stream: string, ticker: Ticker) => void;
  /** A whole-market frame of `!all@point` or `!all@ticker`. */
  all: (stream: string, data: MarketPoints | MarketTickers) => void;
  /** A stream's snapshot after its subscribe (not after a recovered resume). */
  snapshot: (stream: string, snapshot: Snapshot) => void;
  /** A resume that was not recovered: the series has a hole. */
  gap: (stream: string, info: GapInfo) => void;
  state: (state: State) => void;
  /** What no promise answers: an error frame with no id, a refused resubscribe, a token that could not be had. */
  error: (error: RatesError) => void;
}

/** An error answer (`code` is the server's), or the client's own (`Closed`, `Token`). */
export class RatesError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "RatesError";
    this.code = code;
  }
}

type Kind = "point" | "kline" | "ticker" | "allPoint" | "allTicker";

interface StreamState {
  /** As the server spells it once answered. */
  name: string;
  kind: Kind;
  history: number;
  /** The last second seen (point streams). */
  cursor: number | null;
  /** Set while a resume's snapshot is awaited: the second resumed after. */
  resumeSince: number | null;
  /** The epoch that resume was asked with. */
  resumeEpoch: string | null;
  candles: Candle[];
}

interface Pending {
  frame: { id: string; method: string; params?: Record<string, unknown> };
  resolve: (result: any) => void;
  reject: (error: RatesError) => void;
  /**
   * Run as the answer is read, before the next frame is: a subscribe's
   * streams must be known when their snapshots follow in the same read.
   */
  onAnswer?: (result: any, error: RatesError | null) => void;
  /** A request of the client's own (a resume), dropped with its socket. */
  internal: boolean;
}

const OPEN = 1;
const TOKEN_EXPIRED = 4001;
/** The longest history a subscribe may ask for. */
const MAX_HISTORY = 1800;
/** Error codes that refuse a stream itself; any other is of the moment. */
const STREAM_REFUSED = new Set(["NotFound", "Forbidden", "ValidationError"]);

/** The key a stream is known by: its symbol in any spelling, case-insensitive. */
function streamKey(name: string): string {
  const at = name.lastIndexOf("@");
  if (at < 0) return name.toLowerCase();
  const symbol = name.slice(0, at).toLowerCase();
  const kind = name.slice(at).toLowerCase();
  return (symbol.startsWith("!") ? symbol : symbol.replace(/[\s/_-]/g, "")) + kind;
}

function kindOf(name: string): Kind {
  const key = streamKey(name);
  if (key === "!all@point") return "allPoint";
  if (key === "!all@ticker") return "allTicker";
  if (key.endsWith("@ticker")) return "ticker";
  if (key.includes("@kline_")) return "kline";
  return "point";
}

/** `url` with `?token=` (or `&token=`) added. */
function withToken(url: string, token: string): string {
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

/**
 * A full-jitter exponential backoff: the `attempt`-th retry (from 0) waits
 * a uniformly random time in [0, min(maxMs, minMs * 2^attempt)].
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, minMs * Math.pow(2, Math.min(attempt, 30)));
  return Math.floor(random() * ceiling);
}

/**
 * Merges a kline update into `series` (oldest first): the candle of the
 * last bucket is replaced, a later bucket's appended, an earlier one
 * ignored. Returns whether the series changed.
 */
export function mergeCandle(series: Candle[], candle: Candle, max = Infinity): boolean {
  const last = series[series.length - 1];
  if (last && candle.openTime === last.openTime) {
    series[series.length - 1] = candle;
  } else if (!last || candle.openTime > last.openTime) {
    series.push(candle);
    if (series.length > max) series.splice(0, series.length - max);
  } else {
    return false;
  }
  return true;
}

/** A v2 connection that keeps its streams through drops. */
export class RatesClient {
  private readonly url: string;
  private readonly options: ClientOptions;
  private readonly WS: WebSocketConstructor;
  private readonly listeners = new Map<keyof ClientEvents, Set<(...args: any[]) => void>>();
  /** The streams the server has confirmed, by key. */
  private readonly streams = new Map<string, StreamState>();
  private readonly pending = new Map<string, Pending>();
  /** The request counter when each stream was last unsubscribed. */
  private readonly unsubscribed = new Map<string, number>();
  /** Frames waiting for the pace (see `framesPerSecond`). */
  private outbox: string[] = [];
  private tokens = 0;
  private refilledAt = 0;
  private paceTimer: ReturnType<typeof setTimeout> | null = null;
  private socket: WebSocketLike | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Gives up on a socket that does not open (a network that drops packets). */
  private openTimer: ReturnType<typeof setTimeout> | null = null;
  private nextId = 1;
  private attempt = 0;
  private openedAt = 0;
  private epoch: string | null = null;
  private closed = false;
  private current: State = "closed";

  constructor(url: string, options: ClientOptions = {}) {
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new TypeError(
        "ratesd-client: no WebSocket here; pass one (e.g. `import { WebSocket } from \"ws\"`) as options.WebSocket",
      );
    }
    this.url = url;
    this.options = options;
    this.WS = WS;
    // After this tick, so that listeners added right after `new` hear the
    // first `connecting`.
    this.schedule(0);
  }

  /** The connection's state now. */
  get state(): State {
    return this.current;
  }

  /** The server's data epoch, from the last subscribe's answer (null before one). */
  get currentEpoch(): string | null {
    return this.epoch;
  }

  /** Adds a listener; returns a function that removes it. */
  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => this.off(event, listener);
  }

  off<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): void {
    this.listeners.get(event)?.delete(listener);
  }

  /**
   * Subscribes to `streams`; answered with every stream of the connection
   * and the epoch. Each new stream's snapshot follows (`snapshot`), then its
   * live data. Refused as a whole (none subscribed) when any is bad.
   */
  subscribe(streams: string[], options: SubscribeOptions = {}): Promise<SubscribeResult> {
    const history = options.history ?? 0;
    const params: Record<string, unknown> = { streams };
    if (history) params.history = history;
    const asked = this.nextId;
    return this.request<SubscribeResult>("subscribe", params, false, (result, error) => {
      // A stream unsubscribed after this was asked stays unsubscribed.
      const kept = streams.filter((n) => (this.unsubscribed.get(streamKey(n)) ?? -1) < asked);
      if (!error) this.confirm(kept, result, history);
    });
  }

  /** Unsubscribes; answered with the streams that remain. */
  unsubscribe(streams: string[]): Promise<StreamsResult> {
    for (const name of streams) {
      this.streams.delete(streamKey(name));
      this.unsubscribed.set(streamKey(name), this.nextId);
    }
    return this.request<StreamsResult>("unsubscribe", { streams });
  }

  /** The connection's streams, as the server has them. */
  list(): Promise<StreamsResult> {
    return this.request<StreamsResult>("list");
  }

  /** The catalog. */
  assets(): Promise<Asset[]> {
    return this.request<{ assets: Asset[] }>("assets").then((r) => r.assets);
  }

  /** A kline stream's candles, oldest first (empty for another stream). */
  candles(stream: string): readonly Candle[] {
    return this.streams.get(streamKey(stream))?.candles ?? [];
  }

  /** The last second a point stream has seen (null before its first point). */
  cursor(stream: string): number | null {
    return this.streams.get(streamKey(stream))?.cursor ?? null;
  }

  /**
   * Stops for good: the socket is closed, no reconnect is scheduled, every
   * unanswered request is rejected with code `Closed`.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.stopOpenTimer();
    this.stopPace();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      detach(socket);
      try {
        socket.close(1000, "client closed");
      } catch {
        // Closing a socket that never opened may throw; it is gone either way.
      }
    }
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(new RatesError("Closed", "the client was closed"));
    this.setState("closed");
  }

  // ---- requests

  private request<T>(
    method: string,
    params?: Record<string, unknown>,
    internal = false,
    onAnswer?: Pending["onAnswer"],
  ): Promise<T> {
    if (this.closed) return Promise.reject(new RatesError("Closed", "the client was closed"));
    const id = "c" + this.nextId++;
    const frame: Pending["frame"] = params ? { id, method, params } : { id, method };
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { frame, resolve, reject, internal, onAnswer });
      this.send(frame);
    });
  }

  /**
   * Sends `frame` on the open socket, no faster than the server reads
   * (beyond its frame rate it answers `RateLimited` with no id, which
   * would leave a promise unanswered): a token bucket of twice the rate.
   */
  private send(frame: object): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return;
    this.outbox.push(JSON.stringify(frame));
    this.flush();
  }

  private flush(): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return;
    const rate = this.options.framesPerSecond ?? 10;
    if (rate <= 0) {
      for (const text of this.outbox.splice(0)) socket.send(text);
      return;
    }
    const now = Date.now();
    this.tokens = Math.min(2 * rate, this.tokens + ((now - this.refilledAt) * rate) / 1000);
    this.refilledAt = now;
    while (this.outbox.length && this.tokens >= 1) {
      this.tokens -= 1;
      socket.send(this.outbox.shift() as string);
    }
    if (this.outbox.length && this.paceTimer === null) {
      this.paceTimer = setTimeout(() => {
        this.paceTimer = null;
        this.flush();
      }, Math.ceil(1000 / rate));
    }
  }

  private stopPace(): void {
    if (this.paceTimer !== null) clearTimeout(this.paceTimer);
    this.paceTimer = null;
    this.outbox = [];
  }

  /** A subscribe was answered: its streams are the connection's now. */
  private confirm(asked: string[], result: SubscribeResult, history: number): void {
    if (result.epoch) this.epoch = result.epoch;
    const spelled = new Map<string, string>();
    for (const name of result.streams ?? []) spelled.set(streamKey(name), name);
    for (const name of asked) {
      const key = streamKey(name);
      const have = this.streams.get(key);
      if (have) {
        have.history = history || have.history;
        continue;
      }
      this.streams.set(key, {
        name: spelled.get(key) ?? name,
        kind: kindOf(name),
        history,
        cursor: null,
        resumeSince: null,
        resumeEpoch: null,
        candles: [],
      });
    }
  }

  // ---- the connection

  private schedule(delay: number): void {
    if (this.closed) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delay);
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    this.setState("connecting");
    let url = this.url;
    if (this.options.getToken) {
      let token: string | null | undefined;
      try {
        token = await withTimeout(this.options.getToken(), this.options.connectTimeoutMs ?? 10000);
      } catch (e) {
        if (this.closed) return;
        this.emit("error", new RatesError("Token", "getToken failed: " + String(e)));
        this.retry(false);
        return;
      }
      if (this.closed) return;
      if (token) url = withToken(url, token);
    }
    let socket: WebSocketLike;
    try {
      socket = new this.WS(url) as WebSocketLike;
    } catch (e) {
      this.emit("error", new RatesError("Connect", String(e)));
      this.retry(false);
      return;
    }
    this.socket = socket;
    this.openTimer = setTimeout(() => {
      this.openTimer = null;
      if (this.socket !== socket) return;
      this.socket = null;
      detach(socket);
      try {
        socket.close();
      } catch {
        // A socket still connecting may refuse to close; it is dropped.
      }
      this.dropped(1006);
    }, this.options.connectTimeoutMs ?? 10000);
    socket.onopen = () => this.opened();
    socket.onmessage = (event: { data: unknown }) => this.received(event.data);
    socket.onerror = () => {
      // A close follows; it decides what happens next.
    };
    socket.onclose = (event: { code?: number }) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.stopOpenTimer();
      this.dropped(event?.code ?? 1006);
    };
  }

  private stopOpenTimer(): void {
    if (this.openTimer !== null) clearTimeout(this.openTimer);
    this.openTimer = null;
  }

  private opened(): void {
    this.stopOpenTimer();
    this.openedAt = Date.now();
    this.tokens = 2 * (this.options.framesPerSecond ?? 10);
    this.refilledAt = this.openedAt;
    this.setState("open");
    this.resume();
    // Requests the application made meanwhile (or whose answer the drop
    // took): each method is idempotent, so sending one again is safe.
    for (const p of this.pending.values()) if (!p.internal) this.send(p.frame);
  }

  private dropped(code: number): void {
    this.stopPace();
    // A token refused at once again (one already expired) must not spin:
    // at once only after a connection that lived.
    const lived = this.openedAt > 0 && Date.now() - this.openedAt >= 1000;
    // A resume's answer will not come on another socket.
    for (const [id, p] of this.pending) {
      if (p.internal) {
        this.pending.delete(id);
        p.reject(new RatesError("Closed", "the connection dropped"));
      }
    }
    this.setState("closed");
    if (this.closed) return;
    this.retry(code === TOKEN_EXPIRED && lived);
  }

  private retry(now: boolean): void {
    if (this.closed) return;
    if (now) {
      // An expired token: a fresh one now, not a backoff.
      this.schedule(0);
      return;
    }
    const backoff = this.options.backoff ?? {};
    const stable = backoff.stableMs ?? 5000;
    if (this.openedAt && Date.now() - this.openedAt >= stable) this.attempt = 0;
    this.openedAt = 0;
    const delay = backoffDelay(this.attempt, backoff.minMs ?? 250, backoff.maxMs ?? 10000, this.options.random ?? Math.random);
    this.attempt++;
    this.schedule(delay);
  }

  /**
   * Subscribes every confirmed stream again: a point stream that has seen a
   * second resumes after it (with the epoch), the rest afresh with their
   * history.
   */
  private resume(): void {
    const since = new Map<number, StreamState[]>();
    const fresh: StreamState[] = [];
    for (const st of this.streams.values()) {
      st.resumeSince = null;
      if (st.cursor === null) {
        fresh.push(st);
        continue;
      }
      const list = since.get(st.cursor) ?? [];
      list.push(st);
      since.set(st.cursor, list);
    }
    for (const [second, list] of since) this.resumeAfter(second, list);
    this.resubscribe(fresh);
  }

  /** Whether `st` is still one of the client's streams (not unsubscribed since). */
  private isCurrent(st: StreamState): boolean {
    return this.streams.get(streamKey(st.name)) === st;
  }

  /**
   * Resumes `list` after `second`. A refusal of the moment (the store
   * unreadable, a rate limit) makes the connection again after the
   * backoff, every cursor kept; a refusal of a stream itself is found by
   * asking for each stream alone, and that one starts afresh, with a gap.
   */
  private resumeAfter(second: number, list: StreamState[]): void {
    const epoch = this.epoch;
    for (const st of list) {
      st.resumeSince = second;
      st.resumeEpoch = epoch;
    }
    const params: Record<string, unknown> = { streams: list.map((s) => s.name), since: second };
    if (epoch) params.epoch = epoch;
    this.own(
      params,
      list,
      (st) => this.resumeAfter(second, [st]),
      (still) => {
        for (const st of still) {
          st.resumeSince = null;
          this.emit("gap", st.name, { since: second, epoch, currentEpoch: this.epoch, reason: "refused" });
          st.cursor = null;
        }
        this.resubscribe(still);
      },
    );
  }

  /**
   * Subscribes `list` afresh, with each stream's history (a kline stream's
   * reaching back to its last candle, so that a bucket that closed while
   * the client was away is had whole). Refusals as for `resumeAfter`; a
   * stream refused alone is dropped, told as an `error`.
   */
  private resubscribe(list: StreamState[]): void {
    const byHistory = new Map<number, StreamState[]>();
    for (const st of list) {
      const history = this.historyOf(st);
      byHistory.set(history, (byHistory.get(history) ?? []).concat(st));
    }
    for (const [history, group] of byHistory) {
      const params: Record<string, unknown> = { streams: group.map((s) => s.name) };
      if (history) params.history = history;
      this.own(
        params,
        group,
        (st) => this.resubscribe([st]),
        (still, e) => {
          // Gone from the server (a symbol removed, a scope narrowed).
          for (const st of still) this.streams.delete(streamKey(st.name));
          this.emit("error", e);
        },
      );
    }
  }

  private historyOf(st: StreamState): number {
    const last = st.candles[st.candles.length - 1];
    if (st.kind !== "kline" || !last) return st.history;
    const back = Math.ceil(Date.now() / 1000) - last.openTime + 1;
    return Math.max(st.history, Math.min(MAX_HISTORY, back));
  }

  /** Drops the connection to make it again after the backoff. */
  private reconnectLater(): void {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    detach(socket);
    try {
      socket.close(1000, "resubscribing later");
    } catch {
      // Gone either way.
    }
    this.stopOpenTimer();
    this.dropped(1000);
  }

  /**
   * A subscribe of the client's own for `list`. Its answer's epoch is
   * kept. Refused for the moment (any code but a stream's own refusal):
   * the connection is made again after the backoff. Refused for a stream:
   * with several still wanted, `each` asks for each alone; with one,
   * `alone` decides its fate.
   */
  private own(
    params: Record<string, unknown>,
    list: StreamState[],
    each: (st: StreamState) => void,
    alone: (still: StreamState[], error: RatesError) => void,
  ): void {
    this.internal(params, (r, e) => {
      if (!e) {
        if (r.epoch) this.epoch = r.epoch;
        return;
      }
      const still = list.filter((st) => this.isCurrent(st));
      if (!STREAM_REFUSED.has(e.code)) {
        this.emit("error", e);
        this.reconnectLater();
      } else if (still.length > 1) {
        for (const st of still) each(st);
      } else {
        alone(still, e);
      }
    });
  }

  /** A subscribe of the client's own: answered through `onAnswer` alone. */
  private internal(params: Record<string, unknown>, onAnswer: NonNullable<Pending["onAnswer"]>): void {
    this.request<SubscribeResult>("subscribe", params, true, onAnswer).catch(() => {
      // Dropped with its socket (or the client closed): resumed again on
      // the next connection.
    });
  }

  // ---- frames

  private received(data: unknown): void {
    let frame: any;
    try {
      frame = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      return;
    }
    if (frame === null || typeof frame !== "object") return;
    if ("id" in frame) {
      this.answered(frame);
      return;
    }
    if (typeof frame.stream !== "string") return;
    const st = this.streams.get(streamKey(frame.stream));
    if (!st) return;
    if (frame.snapshot !== undefined) this.snapshot(st, frame.snapshot);
    else if (frame.data !== undefined) this.data(st, frame.data);
  }

  private answered(frame: any): void {
    const p = frame.id === null ? undefined : this.pending.get(String(frame.id));
    if (!p) {
      if (frame.error) this.emit("error", new RatesError(String(frame.error.code), String(frame.error.message)));
      return;
    }
    this.pending.delete(String(frame.id));
    const result = frame.result ?? {};
    const error = frame.error ? new RatesError(String(frame.error.code), String(frame.error.message)) : null;
    p.onAnswer?.(result, error);
    if (error) p.reject(error);
    else p.resolve(result);
  }

  private snapshot(st: StreamState, snap: Snapshot): void {
    const since = st.resumeSince;
    st.resumeSince = null;
    switch (st.kind) {
      case "point":
      case "allPoint": {
        const seconds: { time: number }[] = st.kind === "point" ? snap.points ?? [] : snap.frames ?? [];
        if (since !== null && snap.recovered !== false) {
          // Resumed: the missed seconds arrive as live data, in order.
          for (const item of seconds) {
            if (this.closed) return;
            this.data(st, item);
          }
          return;
        }
        if (since !== null) {
          this.emit("gap", st.name, { since, epoch: st.resumeEpoch, currentEpoch: this.epoch, reason: "not-recovered" });
        }
        const last = seconds[seconds.length - 1];
        if (last) st.cursor = last.time;
        this.emit("snapshot", st.name, snap);
        return;
      }
      case "kline": {
        // After a reconnect the snapshot replaces the candles from its first
        // bucket on; the older ones stay.
        const candles = snap.candles ?? [];
        const first = candles[0];
        const kept = first ? st.candles.filter((c) => c.openTime < first.openTime) : st.candles;
        st.candles = kept.concat(candles).slice(-(this.options.maxCandles ?? 1500));
        this.emit("snapshot", st.name, snap);
        return;
      }
      default:
        this.emit("snapshot", st.name, snap);
    }
  }

  private data(st: StreamState, data: any): void {
    switch (st.kind) {
      case "point":
      case "allPoint": {
        const time = Number(data?.time);
        if (!Number.isFinite(time)) return;
        // A second seen already (a resume's overlap) is not told twice.
        if (st.cursor !== null && time <= st.cursor) return;
        st.cursor = time;
        if (st.kind === "point") this.emit("point", st.name, data as Point);
        else this.emit("all", st.name, data as MarketPoints);
        return;
      }
      case "kline":
        if (mergeCandle(st.candles, data as Candle, this.options.maxCandles ?? 1500)) {
          this.emit("kline", st.name, data as Candle, st.candles);
        }
        return;
      case "ticker":
        this.emit("ticker", st.name, data as Ticker);
        return;
      case "allTicker":
        this.emit("all", st.name, data as MarketTickers);
    }
  }

  // ---- events

  private setState(state: State): void {
    if (state === this.current) return;
    this.current = state;
    this.emit("state", state);
  }

  private emit<E extends keyof ClientEvents>(event: E, ...args: Parameters<ClientEvents[E]>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (e) {
        // A listener's exception must not break the client's own state.
        setTimeout(() => {
          throw e;
        }, 0);
      }
    }
  }
}

/** `promise`, or a rejection after `ms`. */
function withTimeout<T>(promise: T | Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

function detach(socket: WebSocketLike): void {
  socket.onopen = socket.onmessage = socket.onclose = null;
  socket.onerror = () => {};
}
