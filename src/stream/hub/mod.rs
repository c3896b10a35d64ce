//! Live fan-out: one Redis subscription per process, fanned out in memory to
//! every WebSocket of an asset.
//!
//! Each point's WebSocket frame is encoded once, here. A connection takes
//! points in two ways, one after the other:
//! - while it subscribes (reads and sends the history), from a `broadcast`
//!   channel of the asset, attached before the history is read, so that
//!   every point is in one or the other;
//! - once it has its history, the fan-out writes each point straight into
//!   its socket ([`super::outbox`]), from a few shard tasks that share the
//!   connections out between the cores: no task is woken per point and per
//!   connection. A connection whose socket is full queues behind it; past
//!   [`super::outbox::QUEUE_FRAMES`] it is closed; it never slows the others.
//!
//! The broadcast channel also tells subscribing connections that the feed
//! was interrupted or that the process is shutting down; connections in the
//! fan-out are told of an interruption through their outbox (and of a
//! shutdown by the cancellation their session waits on).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

use tokio::sync::broadcast;

pub mod all;
mod relay;
mod shard;

use self::all::{Market, MarketSecond};
use self::shard::{Entry, Frames, Marks, Shard};
use super::frame::{Encoded, point_wire, stream_name, stream_wire, ticker_name};
use super::klines::Klines;
use super::outbox::{Feed, Outbox};
use super::tickers::TickerData;
use super::tickers::Tickers;
use crate::domain::{AssetId, Catalog, Point, UnixSeconds};

/// How many points a subscribing connection may fall behind (while it
/// sends its history) before it is closed.
pub const QUEUE_POINTS: usize = 64;

/// What the subscribers of an asset are told.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Point(LivePoint),
    /// The live feed was lost (Redis unreachable): points may stop.
    Interrupted,
    /// The process is shutting down.
    ShuttingDown,
}

/// A point, ready to send.
#[derive(Debug, Clone)]
pub struct LivePoint {
    pub time: UnixSeconds,
    pub value: f64,
    /// `{"action":"point","message":{...}}` (v1).
    pub wire: Encoded,
    /// `{"stream":"<symbol>@point","data":{...}}` (v2).
    pub stream: Encoded,
}

impl LivePoint {
    pub fn new(point: &Point) -> Self {
        Self {
            time: point.time,
            value: point.value,
            wire: point_wire(point),
            stream: stream_wire(&stream_name(&point.asset_name, None), point),
        }
    }
}

#[derive(Clone)]
pub struct LiveHub {
    channels: Arc<HashMap<AssetId, broadcast::Sender<LiveEvent>>>,
    shards: Arc<[Arc<Shard>]>,
    next_shard: Arc<AtomicUsize>,
    /// The newest second a tick announced (for caches to notice new data).
    latest_tick: Arc<AtomicI64>,
    /// The newest second published for each asset: every point of the
    /// asset up to it is in the engine (a tick writes before it publishes).
    latest_of: Arc<HashMap<AssetId, AtomicI64>>,
    /// True while the Redis subscription is up.
    connected: Arc<AtomicBool>,
    /// The kline streams' candles, one builder per asset and interval.
    klines: Arc<Klines>,
    /// The 24-hour tickers, one per asset.
    tickers: Arc<Tickers>,
    /// The whole market's streams.
    market: Arc<Market>,
}

impl LiveHub {
    /// The hub of `catalog`'s assets; `ticker_window` is how far back the
    /// tickers' data reaches without an archive (the live window), `None`
    /// with one; a second's points come in `messages` messages of the live
    /// feed (one per key group holding assets); a ticker whose newest point
    /// is over `stale_after` seconds old is stale in the whole-market frames.
    pub fn new(
        catalog: &Catalog,
        ticker_window: Option<i64>,
        messages: usize,
        stale_after: u32,
    ) -> Self {
        let channels = catalog
            .assets()
            .iter()
            .map(|a| (a.id, broadcast::channel(QUEUE_POINTS).0))
            .collect();
        // One shard per core: a tick's writes are spread over all of them.
        let shards = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
        Self {
            channels: Arc::new(channels),
            shards: (0..shards).map(|_| Arc::new(Shard::default())).collect(),
            next_shard: Arc::new(AtomicUsize::new(0)),
            latest_tick: Arc::new(AtomicI64::new(UnixSeconds::MIN)),
            latest_of: Arc::new(
                catalog
                    .assets()
                    .iter()
                    .map(|a| (a.id, AtomicI64::new(UnixSeconds::MIN)))
                    .collect(),
            ),
            connected: Arc::new(AtomicBool::new(false)),
            klines: Arc::default(),
            tickers: Arc::new(Tickers::new(ticker_window)),
            market: Arc::new(Market::new(catalog, messages, stale_after)),
        }
    }

    /// The whole market's streams.
    pub fn market(&self) -> &Market {
        &self.market
    }

    /// The 24-hour tickers.
    pub fn tickers(&self) -> &Tickers {
        &self.tickers
    }

    /// The kline streams' builders.
    pub fn klines(&self) -> &Klines {
        &self.klines
    }

    /// True while the live feed's subscription to Redis is up: the state
    /// readiness answers from.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The newest second the live feed has announced.
    pub fn latest_tick(&self) -> UnixSeconds {
        self.latest_tick.load(Ordering::Acquire)
    }

    /// The newest second published for `asset` (`UnixSeconds::MIN` before
    /// any): on a cluster each key group publishes on its own, so the
    /// newest tick of one asset may be ahead of another's.
    pub fn latest_of(&self, asset: AssetId) -> UnixSeconds {
        self.latest_of
            .get(&asset)
            .map_or(UnixSeconds::MIN, |t| t.load(Ordering::Acquire))
    }

    /// Attaches to an asset's live points; `None` for an asset not in the catalog.
    pub fn subscribe(&self, asset: AssetId) -> Option<broadcast::Receiver<LiveEvent>> {
        self.channels.get(&asset).map(broadcast::Sender::subscribe)
    }

    /// Puts a connection that has its snapshot into the fan-out of `feed`.
    /// Call it inside [`Outbox::go_live`], before draining the connection's
    /// broadcast receiver: a point published after the drain then finds it
    /// here, and one offered before `go_live` ends waits for its lock.
    pub fn join(&self, feed: Feed, outbox: Arc<Outbox>, generation: u64) {
        let n = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.shards[n]
            .joining
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Entry {
                feed,
                event_stream: outbox.is_event_stream(),
                outbox,
                generation,
            });
    }

    /// Publishes a tick's points: to the broadcast channels, into the
    /// kline builders, then to the fan-out, each shard on its own task.
    async fn publish(&self, points: &[Point]) {
        if let Some(newest) = points.iter().map(|p| p.time).max() {
            self.latest_tick.fetch_max(newest, Ordering::AcqRel);
        }
        let mut batch: Vec<Frames> = Vec::with_capacity(2 * points.len());
        for point in points {
            if let Some(tx) = self.channels.get(&point.asset_id) {
                let (asset, time) = (point.asset_id, point.time);
                if let Some(latest) = self.latest_of.get(&asset) {
                    latest.fetch_max(time, Ordering::AcqRel);
                }
                let live = LivePoint::new(point);
                // No receivers is fine: nobody is subscribing to this asset now.
                // Sent before the ticker's push: a seed being installed meanwhile
                // then has the point in its channel or gets the push after it
                // (a second pushed twice is counted once), never neither.
                let _ = tx.send(LiveEvent::Point(live.clone()));
                // A ticker is kept whether or not anyone streams it.
                if let Some(ticker) = self.tickers.push(asset, time, point.value) {
                    let data = TickerData::new(&point.asset_name, asset, &ticker, false);
                    let frame = stream_wire(&ticker_name(&point.asset_name), data);
                    batch.push((Feed::Ticker(asset), time, vec![frame]));
                }
                batch.push((Feed::V1(asset), time, vec![live.wire]));
                batch.push((Feed::Point(asset), time, vec![live.stream]));
                self.klines
                    .push(asset, time, point.value, |interval, update| {
                        let name = stream_name(&point.asset_name, Some(interval));
                        let frames = update
                            .closed
                            .iter()
                            .chain([&update.forming])
                            .map(|candle| stream_wire(&name, candle))
                            .collect();
                        batch.push((Feed::Kline(asset, interval), time, frames));
                    });
            }
        }
        for second in self.market.add(points, &self.tickers) {
            Self::push_market(&mut batch, &second);
        }
        self.write(batch).await;
    }

    /// A whole-market second's frames, for the fan-out.
    fn push_market(batch: &mut Vec<Frames>, second: &MarketSecond) {
        batch.push((Feed::AllPoints, second.time, vec![second.points.clone()]));
        batch.push((Feed::AllTickers, second.time, vec![second.tickers.clone()]));
    }

    /// Sends the whole market's second being gathered once it is due (a
    /// key group sent nothing that second).
    async fn publish_due(&self) {
        if let Some(second) = self.market.due(&self.tickers) {
            let mut batch = Vec::with_capacity(2);
            Self::push_market(&mut batch, &second);
            self.write(batch).await;
        }
    }

    /// Writes a batch of frames to the fan-out, each shard on its own task.
    async fn write(&self, batch: Vec<Frames>) {
        let batch: Arc<[Frames]> = batch.into();
        let mut writers = tokio::task::JoinSet::new();
        for shard in self.shards.iter() {
            let (shard, batch) = (shard.clone(), batch.clone());
            // Outside tokio's cooperative budget: past 128 writes in one
            // poll it would fail every socket write as not ready, queueing
            // the point and waking the connection's task to write it.
            writers.spawn(tokio::task::unconstrained(async move {
                shard.write(&batch).await
            }));
        }
        let mut marks = Marks::new();
        while let Some(done) = writers.join_next().await {
            match done {
                Ok(written) => {
                    for (key, (outbox, time)) in written {
                        let mark = marks.entry(key).or_insert((outbox, time));
                        mark.1 = mark.1.max(time);
                    }
                }
                Err(e) => tracing::error!(error = %e, "live fan-out task failed"),
            }
        }
        // Every shard has written the batch: each event stream's resume point.
        for (outbox, time) in marks.into_values() {
            outbox.mark(time);
        }
    }
}
