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
/** An error answer (`code` is the server's), or the client's own (`Closed`, `Token`). */
export class RatesError extends Error {
    constructor(code, message) {
        super(message);
        this.name = "RatesError";
        this.code = code;
    }
}
const OPEN = 1;
const TOKEN_EXPIRED = 4001;
/** The longest history a subscribe may ask for. */
const MAX_HISTORY = 1800;
/** Error codes that refuse a stream itself; any other is of the moment. */
const STREAM_REFUSED = new Set(["NotFound", "Forbidden", "ValidationError"]);
/** The key a stream is known by: its symbol in any spelling, case-insensitive. */
function streamKey(name) {
    const at = name.lastIndexOf("@");
    if (at < 0)
        return name.toLowerCase();
    const symbol = name.slice(0, at).toLowerCase();
    const kind = name.slice(at).toLowerCase();
    return (symbol.startsWith("!") ? symbol : symbol.replace(/[\s/_-]/g, "")) + kind;
}
function kindOf(name) {
    const key = streamKey(name);
    if (key === "!all@point")
        return "allPoint";
    if (key === "!all@ticker")
        return "allTicker";
    if (key.endsWith("@ticker"))
        return "ticker";
    if (key.includes("@kline_"))
        return "kline";
    return "point";
}
/** `url` with `?token=` (or `&token=`) added. */
function withToken(url, token) {
    return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}
/**
 * A full-jitter exponential backoff: the `attempt`-th retry (from 0) waits
 * a uniformly random time in [0, min(maxMs, minMs * 2^attempt)].
 */
export function backoffDelay(attempt, minMs, maxMs, random) {
    const ceiling = Math.min(maxMs, minMs * Math.pow(2, Math.min(attempt, 30)));
    return Math.floor(random() * ceiling);
}
/**
 * Merges a kline update into `series` (oldest first): the candle of the
 * last bucket is replaced, a later bucket's appended, an earlier one
 * ignored. Returns whether the series changed.
 */
export function mergeCandle(series, candle, max = Infinity) {
    const last = series[series.length - 1];
    if (last && candle.openTime === last.openTime) {
        series[series.length - 1] = candle;
    }
    else if (!last || candle.openTime > last.openTime) {
        series.push(candle);
        if (series.length > max)
            series.splice(0, series.length - max);
    }
    else {
        return false;
    }
    return true;
}
/** A v2 connection that keeps its streams through drops. */
export class RatesClient {
    constructor(url, options = {}) {
        this.listeners = new Map();
        /** The streams the server has confirmed, by key. */
        this.streams = new Map();
        this.pending = new Map();
        /** The request counter when each stream was last unsubscribed. */
        this.unsubscribed = new Map();
        /** Frames waiting for the pace (see `framesPerSecond`). */
        this.outbox = [];
        this.tokens = 0;
        this.refilledAt = 0;
        this.paceTimer = null;
        this.socket = null;
        this.timer = null;
        /** Gives up on a socket that does not open (a network that drops packets). */
        this.openTimer = null;
        this.nextId = 1;
        this.attempt = 0;
        this.openedAt = 0;
        this.epoch = null;
        this.closed = false;
        this.current = "closed";
        const WS = options.WebSocket ?? globalThis.WebSocket;
        if (!WS) {
            throw new TypeError("ratesd-client: no WebSocket here; pass one (e.g. `import { WebSocket } from \"ws\"`) as options.WebSocket");
        }
        this.url = url;
        this.options = options;
        this.WS = WS;
        // After this tick, so that listeners added right after `new` hear the
        // first `connecting`.
        this.schedule(0);
    }
    /** The connection's state now. */
    get state() {
        return this.current;
    }
    /** The server's data epoch, from the last subscribe's answer (null before one). */
    get currentEpoch() {
        return this.epoch;
    }
    /** Adds a listener; returns a function that removes it. */
    on(event, listener) {
        let set = this.listeners.get(event);
        if (!set)
            this.listeners.set(event, (set = new Set()));
        set.add(listener);
        return () => this.off(event, listener);
    }
    off(event, listener) {
        this.listeners.get(event)?.delete(listener);
    }
    /**
     * Subscribes to `streams`; answered with every stream of the connection
     * and the epoch. Each new stream's snapshot follows (`snapshot`), then its
     * live data. Refused as a whole (none subscribed) when any is bad.
     */
    subscribe(streams, options = {}) {
        const history = options.history ?? 0;
        const params = { streams };
        if (history)
            params.history = history;
        const asked = this.nextId;
        return this.request("subscribe", params, false, (result, error) => {
            // A stream unsubscribed after this was asked stays unsubscribed.
            const kept = streams.filter((n) => (this.unsubscribed.get(streamKey(n)) ?? -1) < asked);
            if (!error)
                this.confirm(kept, result, history);
        });
    }
    /** Unsubscribes; answered with the streams that remain. */
    unsubscribe(streams) {
        for (const name of streams) {
            this.streams.delete(streamKey(name));
            this.unsubscribed.set(streamKey(name), this.nextId);
        }
        return this.request("unsubscribe", { streams });
    }
    /** The connection's streams, as the server has them. */
    list() {
        return this.request("list");
    }
    /** The catalog. */
    assets() {
        return this.request("assets").then((r) => r.assets);
    }
    /** A kline stream's candles, oldest first (empty for another stream). */
    candles(stream) {
        return this.streams.get(streamKey(stream))?.candles ?? [];
    }
    /** The last second a point stream has seen (null before its first point). */
    cursor(stream) {
        return this.streams.get(streamKey(stream))?.cursor ?? null;
    }
    /**
     * Stops for good: the socket is closed, no reconnect is scheduled, every
     * unanswered request is rejected with code `Closed`.
     */
    close() {
        if (this.closed)
            return;
        this.closed = true;
        if (this.timer !== null)
            clearTimeout(this.timer);
        this.timer = null;
        this.stopOpenTimer();
        this.stopPace();
        const socket = this.socket;
        this.socket = null;
        if (socket) {
            detach(socket);
            try {
                socket.close(1000, "client closed");
            }
            catch {
                // Closing a socket that never opened may throw; it is gone either way.
            }
        }
        const pending = [...this.pending.values()];
        this.pending.clear();
        for (const p of pending)
            p.reject(new RatesError("Closed", "the client was closed"));
        this.setState("closed");
    }
    // ---- requests
    request(method, params, internal = false, onAnswer) {
        if (this.closed)
            return Promise.reject(new RatesError("Closed", "the client was closed"));
        const id = "c" + this.nextId++;
        const frame = params ? { id, method, params } : { id, method };
        return new Promise((resolve, reject) => {
            this.pending.set(id, { frame, resolve, reject, internal, onAnswer });
            this.send(frame);
        });
    }
    /**
     * Sends `frame` on the open socket, no faster than the server reads
     * (beyond its frame rate it answers `RateLimited` with no id, which
     * would leave a promise unanswered): a token bucket of twice the rate.
     */
    send(frame) {
        const socket = this.socket;
        if (!socket || socket.readyState !== OPEN)
            return;
        this.outbox.push(JSON.stringify(frame));
        this.flush();
    }
    flush() {
        const socket = this.socket;
        if (!socket || socket.readyState !== OPEN)
            return;
        const rate = this.options.framesPerSecond ?? 10;
        if (rate <= 0) {
            for (const text of this.outbox.splice(0))
                socket.send(text);
            return;
        }
        const now = Date.now();
        this.tokens = Math.min(2 * rate, this.tokens + ((now - this.refilledAt) * rate) / 1000);
        this.refilledAt = now;
        while (this.outbox.length && this.tokens >= 1) {
            this.tokens -= 1;
            socket.send(this.outbox.shift());
        }
        if (this.outbox.length && this.paceTimer === null) {
            this.paceTimer = setTimeout(() => {
                this.paceTimer = null;
                this.flush();
            }, Math.ceil(1000 / rate));
        }
    }
    stopPace() {
        if (this.paceTimer !== null)
            clearTimeout(this.paceTimer);
        this.paceTimer = null;
        this.outbox = [];
    }
    /** A subscribe was answered: its streams are the connection's now. */
    confirm(asked, result, history) {
        if (result.epoch)
            this.epoch = result.epoch;
        const spelled = new Map();
        for (const name of result.streams ?? [])
            spelled.set(streamKey(name), name);
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
    schedule(delay) {
        if (this.closed)
            return;
        if (this.timer !== null)
            clearTimeout(this.timer);
        this.timer = setTimeout(() => {
            this.timer = null;
            void this.connect();
        }, delay);
    }
    async connect() {
        if (this.closed)
            return;
        this.setState("connecting");
        let url = this.url;
        if (this.options.getToken) {
            let token;
            try {
                token = await withTimeout(this.options.getToken(), this.options.connectTimeoutMs ?? 10000);
            }
            catch (e) {
                if (this.closed)
                    return;
                this.emit("error", new RatesError("Token", "getToken failed: " + String(e)));
                this.retry(false);
                return;
            }
            if (this.closed)
                return;
            if (token)
                url = withToken(url, token);
        }
        let socket;
        try {
            socket = new this.WS(url);
        }
        catch (e) {
            this.emit("error", new RatesError("Connect", String(e)));
            this.retry(false);
            return;
        }
        this.socket = socket;
        this.openTimer = setTimeout(() => {
            this.openTimer = null;
            if (this.socket !== socket)
                return;
            this.socket = null;
            detach(socket);
            try {
                socket.close();
            }
            catch {
                // A socket still connecting may refuse to close; it is dropped.
            }
            this.dropped(1006);
        }, this.options.connectTimeoutMs ?? 10000);
        socket.onopen = () => this.opened();
        socket.onmessage = (event) => this.received(event.data);
        socket.onerror = () => {
            // A close follows; it decides what happens next.
        };
        socket.onclose = (event) => {
            if (this.socket !== socket)
                return;
            this.socket = null;
            this.stopOpenTimer();
            this.dropped(event?.code ?? 1006);
        };
    }
    stopOpenTimer() {
        if (this.openTimer !== null)
            clearTimeout(this.openTimer);
        this.openTimer = null;
    }
    opened() {
        this.stopOpenTimer();
        this.openedAt = Date.now();
        this.tokens = 2 * (this.options.framesPerSecond ?? 10);
        this.refilledAt = this.openedAt;
        this.setState("open");
        this.resume();
        // Requests the application made meanwhile (or whose answer the drop
        // took): each method is idempotent, so sending one again is safe.
        for (const p of this.pending.values())
            if (!p.internal)
                this.send(p.frame);
    }
    dropped(code) {
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
        if (this.closed)
            return;
        this.retry(code === TOKEN_EXPIRED && lived);
    }
    retry(now) {
        if (this.closed)
            return;
        if (now) {
            // An expired token: a fresh one now, not a backoff.
            this.schedule(0);
            return;
        }
        const backoff = this.options.backoff ?? {};
        const stable = backoff.stableMs ?? 5000;
        if (this.openedAt && Date.now() - this.openedAt >= stable)
            this.attempt = 0;
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
    resume() {
        const since = new Map();
        const fresh = [];
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
        for (const [second, list] of since)
            this.resumeAfter(second, list);
        this.resubscribe(fresh);
    }
    /** Whether `st` is still one of the client's streams (not unsubscribed since). */
    isCurrent(st) {
        return this.streams.get(streamKey(st.name)) === st;
    }
    /**
     * Resumes `list` after `second`. A refusal of the moment (the store
     * unreadable, a rate limit) makes the connection again after the
     * backoff, every cursor kept; a refusal of a stream itself is found by
     * asking for each stream alone, and that one starts afresh, with a gap.
     */
    resumeAfter(second, list) {
        const epoch = this.epoch;
        for (const st of list) {
            st.resumeSince = second;
            st.resumeEpoch = epoch;
        }
        const params = { streams: list.map((s) => s.name), since: second };
        if (epoch)
            params.epoch = epoch;
        this.own(params, list, (st) => this.resumeAfter(second, [st]), (still) => {
            for (const st of still) {
                st.resumeSince = null;
                this.emit("gap", st.name, { since: second, epoch, currentEpoch: this.epoch, reason: "refused" });
                st.cursor = null;
            }
            this.resubscribe(still);
        });
    }
    /**
     * Subscribes `list` afresh, with each stream's history (a kline stream's
     * reaching back to its last candle, so that a bucket that closed while
     * the client was away is had whole). Refusals as for `resumeAfter`; a
     * stream refused alone is dropped, told as an `error`.
     */
    resubscribe(list) {
        const byHistory = new Map();
        for (const st of list) {
            const history = this.historyOf(st);
            byHistory.set(history, (byHistory.get(history) ?? []).concat(st));
        }
        for (const [history, group] of byHistory) {
            const params = { streams: group.map((s) => s.name) };
            if (history)
                params.history = history;
            this.own(params, group, (st) => this.resubscribe([st]), (still, e) => {
                // Gone from the server (a symbol removed, a scope narrowed).
                for (const st of still)
                    this.streams.delete(streamKey(st.name));
                this.emit("error", e);
            });
        }
    }
    historyOf(st) {
        const last = st.candles[st.candles.length - 1];
        if (st.kind !== "kline" || !last)
            return st.history;
        const back = Math.ceil(Date.now() / 1000) - last.openTime + 1;
        return Math.max(st.history, Math.min(MAX_HISTORY, back));
    }
    /** Drops the connection to make it again after the backoff. */
    reconnectLater() {
        const socket = this.socket;
        if (!socket)
            return;
        this.socket = null;
        detach(socket);
        try {
            socket.close(1000, "resubscribing later");
        }
        catch {
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
    own(params, list, each, alone) {
        this.internal(params, (r, e) => {
            if (!e) {
                if (r.epoch)
                    this.epoch = r.epoch;
                return;
            }
            const still = list.filter((st) => this.isCurrent(st));
            if (!STREAM_REFUSED.has(e.code)) {
                this.emit("error", e);
                this.reconnectLater();
            }
            else if (still.length > 1) {
                for (const st of still)
                    each(st);
            }
            else {
                alone(still, e);
            }
        });
    }
    /** A subscribe of the client's own: answered through `onAnswer` alone. */
    internal(params, onAnswer) {
        this.request("subscribe", params, true, onAnswer).catch(() => {
            // Dropped with its socket (or the client closed): resumed again on
            // the next connection.
        });
    }
    // ---- frames
    received(data) {
        let frame;
        try {
            frame = JSON.parse(typeof data === "string" ? data : String(data));
        }
        catch {
            return;
        }
        if (frame === null || typeof frame !== "object")
            return;
        if ("id" in frame) {
            this.answered(frame);
            return;
        }
        if (typeof frame.stream !== "string")
            return;
        const st = this.streams.get(streamKey(frame.stream));
        if (!st)
            return;
        if (frame.snapshot !== undefined)
            this.snapshot(st, frame.snapshot);
        else if (frame.data !== undefined)
            this.data(st, frame.data);
    }
    answered(frame) {
        const p = frame.id === null ? undefined : this.pending.get(String(frame.id));
        if (!p) {
            if (frame.error)
                this.emit("error", new RatesError(String(frame.error.code), String(frame.error.message)));
            return;
        }
        this.pending.delete(String(frame.id));
        const result = frame.result ?? {};
        const error = frame.error ? new RatesError(String(frame.error.code), String(frame.error.message)) : null;
        p.onAnswer?.(result, error);
        if (error)
            p.reject(error);
        else
            p.resolve(result);
    }
    snapshot(st, snap) {
        const since = st.resumeSince;
        st.resumeSince = null;
        switch (st.kind) {
            case "point":
            case "allPoint": {
                const seconds = st.kind === "point" ? snap.points ?? [] : snap.frames ?? [];
                if (since !== null && snap.recovered !== false) {
                    // Resumed: the missed seconds arrive as live data, in order.
                    for (const item of seconds) {
                        if (this.closed)
                            return;
                        this.data(st, item);
                    }
                    return;
                }
                if (since !== null) {
                    this.emit("gap", st.name, { since, epoch: st.resumeEpoch, currentEpoch: this.epoch, reason: "not-recovered" });
                }
                const last = seconds[seconds.length - 1];
                if (last)
                    st.cursor = last.time;
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
    data(st, data) {
        switch (st.kind) {
            case "point":
            case "allPoint": {
                const time = Number(data?.time);
                if (!Number.isFinite(time))
                    return;
                // A second seen already (a resume's overlap) is not told twice.
                if (st.cursor !== null && time <= st.cursor)
                    return;
                st.cursor = time;
                if (st.kind === "point")
                    this.emit("point", st.name, data);
                else
                    this.emit("all", st.name, data);
                return;
            }
            case "kline":
                if (mergeCandle(st.candles, data, this.options.maxCandles ?? 1500)) {
                    this.emit("kline", st.name, data, st.candles);
                }
                return;
            case "ticker":
                this.emit("ticker", st.name, data);
                return;
            case "allTicker":
                this.emit("all", st.name, data);
        }
    }
    // ---- events
    setState(state) {
        if (state === this.current)
            return;
        this.current = state;
        this.emit("state", state);
    }
    emit(event, ...args) {
        const set = this.listeners.get(event);
        if (!set)
            return;
        for (const listener of [...set]) {
            try {
                listener(...args);
            }
            catch (e) {
                // A listener's exception must not break the client's own state.
                setTimeout(() => {
                    throw e;
                }, 0);
            }
        }
    }
}
/** `promise`, or a rejection after `ms`. */
function withTimeout(promise, ms) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    });
    return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}
function detach(socket) {
    socket.onopen = socket.onmessage = socket.onclose = null;
    socket.onerror = () => { };
}
