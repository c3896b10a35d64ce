//! The 24-hour tickers: one [`Rolling`] per asset per process, kept by the
//! hub as it publishes points, read by the REST ticker routes and the
//! ticker streams. Never recomputed from the day's minutes per request or
//! per subscriber.
//!
//! Each asset's ticker is seeded once (at start, and again after the live
//! feed was interrupted, when points may have been missed) by [`seed_all`]:
//! it attaches to the asset's live channel, reads the day's `1m` candles
//! from the store (the window and the archive's rollups), and hands the
//! seed over under the lock the hub's pushes take, in the same critical
//! section as it drains the channel, as the kline builders are seeded: each
//! point is in the seed or pushed after it, never both and never neither.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::hub::{LiveEvent, LiveHub};
use super::state::Streams;
use crate::clock::unix_now;
use crate::domain::candle::Interval;
use crate::domain::ticker::{Rolling, range_start};
use crate::domain::{AssetId, Catalog, Ticker, UnixSeconds};
use crate::store::history::{HistoryError, candles};
use crate::store::{Archive, Engine};

/// An asset's statistics over its rolling 24 hours (minute granularity).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"symbol": "EURUSD", "assetId": 1, "openTime": 1455797100,
    "closeTime": 1455883484, "open": 1.109101, "high": 1.112312, "low": 1.107954,
    "last": 1.110481, "change": 0.00138, "changePercent": 0.1244, "count": 86385, "stale": false}))]
pub struct TickerData {
    pub symbol: String,
    pub asset_id: AssetId,
    /// The start of the UTC minute 1,439 minutes before the minute holding
    /// `closeTime`; where the data reaches back less far, the first minute
    /// it covers.
    pub open_time: UnixSeconds,
    /// The newest point's second.
    pub close_time: UnixSeconds,
    /// The first point's value from `openTime` on.
    pub open: f64,
    pub high: f64,
    pub low: f64,
    /// The newest point's value.
    pub last: f64,
    /// `last - open`, rounded to 6 decimals.
    pub change: f64,
    /// `100 * change / open`, rounded to 4 decimals.
    pub change_percent: f64,
    /// Points from `openTime` through `closeTime`.
    pub count: u64,
    /// As for the latest quote: the newest upstream quote is older than the
    /// staleness limit.
    pub stale: bool,
}

impl TickerData {
    pub fn new(name: &str, asset_id: AssetId, t: &Ticker, stale: bool) -> Self {
        Self {
            symbol: name.to_owned(),
            asset_id,
            open_time: t.open_time,
            close_time: t.close_time,
            open: t.open,
            high: t.high,
            low: t.low,
            last: t.last,
            change: t.change,
            change_percent: t.change_percent,
            count: t.count,
            stale,
        }
    }
}

/// Every asset's ticker in the process.
pub struct Tickers {
    /// How far the data reaches back without an archive: the live window.
    window: Option<i64>,
    rolling: Mutex<HashMap<AssetId, Rolling>>,
}

impl Tickers {
    /// Tickers whose data reaches back `window` seconds (no archive), or a
    /// whole day (`None`: an archive behind the window).
    pub fn new(window: Option<i64>) -> Self {
        Self {
            window,
            rolling: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AssetId, Rolling>> {
        // A push is a few field writes: a panic elsewhere leaves them whole.
        self.rolling.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pushes a published point into its asset's ticker, if it is seeded;
    /// the new ticker, or `None` (not seeded, or a second it holds).
    pub fn push(&self, asset: AssetId, time: UnixSeconds, value: f64) -> Option<Ticker> {
        let mut rolling = self.lock();
        let r = rolling.get_mut(&asset)?;
        r.push(time, value).then(|| r.ticker()).flatten()
    }

    /// An asset's ticker now, if it is seeded and has a point in its range.
    pub fn current(&self, asset: AssetId) -> Option<Ticker> {
        self.lock().get(&asset).and_then(Rolling::ticker)
    }

    /// Every seeded asset's ticker, by asset.
    pub fn all(&self) -> HashMap<AssetId, Option<Ticker>> {
        self.lock()
            .iter()
            .map(|(&id, r)| (id, r.ticker()))
            .collect()
    }

    /// Forgets every ticker (the live feed was interrupted: points may have
    /// been missed); [`seed_all`] seeds them anew.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Installs `seed` as the asset's ticker after `drain` has brought it
    /// up to date, both under the lock the hub's pushes take; a ticker
    /// already there is kept, and a seed `drain` finds incomplete dropped.
    fn seed(
        &self,
        asset: AssetId,
        mut seed: Rolling,
        drain: impl FnOnce(&mut Rolling) -> Result<(), Missed>,
    ) -> Result<(), Missed> {
        let mut rolling = self.lock();
        drain(&mut seed)?;
        rolling.entry(asset).or_insert(seed);
        Ok(())
    }

    /// Whether it has the asset's ticker.
    fn has(&self, asset: AssetId) -> bool {
        self.lock().contains_key(&asset)
    }
}

/// Whether the tickers answer for every asset: the hub has published a tick,
/// and every asset it has published a point of has its ticker (an asset
/// with no point yet has none to give). Seeds wait for an asset's first
/// published point: by then the worker has filled the windows (a backfill,
/// a rebuild from the archive), which a seed must not read before.
pub fn ready(hub: &LiveHub, catalog: &Catalog) -> bool {
    hub.latest_tick() != UnixSeconds::MIN
        && catalog
            .assets()
            .iter()
            .all(|a| hub.latest_of(a.id) == UnixSeconds::MIN || hub.tickers().has(a.id))
}

/// A ticker asked for before it was seeded (the process started a moment
/// ago, or the live feed came back a moment ago).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the 24-hour statistics are being prepared; retry in a moment")]
pub struct NotSeeded;

/// Seeds every asset's ticker that has none and has a published point, one
/// asset after the other. Returns how many it seeded; an asset whose read
/// failed is left for the next round.
pub async fn seed_all(
    hub: &LiveHub,
    catalog: &Catalog,
    engine: &Engine,
    archive: Option<&Archive>,
    window_seconds: u32,
) -> usize {
    let tickers = hub.tickers();
    let mut seeded = 0;
    for asset in catalog.assets() {
        if tickers.has(asset.id) || hub.latest_of(asset.id) == UnixSeconds::MIN {
            continue;
        }
        let Some(mut receiver) = hub.subscribe(asset.id) else {
            continue;
        };
        let newest = hub.latest_of(asset.id);
        match read_seed(
            engine,
            archive,
            asset,
            newest,
            tickers.window,
            window_seconds,
        )
        .await
        {
            Ok(seed) => match tickers.seed(asset.id, seed, |seed| drain(&mut receiver, seed)) {
                Ok(()) => seeded += 1,
                Err(Missed) => {
                    tracing::debug!(asset = %asset.name, "points missed while a ticker was read; reading again");
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, asset = %asset.name, "cannot read a ticker's day; retrying later");
            }
        }
    }
    seeded
}

/// The day's `1m` candles of `asset` up to `newest` (the newest second the
/// hub has published for it), as a seed.
async fn read_seed(
    engine: &Engine,
    archive: Option<&Archive>,
    asset: &crate::domain::Asset,
    newest: UnixSeconds,
    window: Option<i64>,
    window_seconds: u32,
) -> Result<Rolling, HistoryError> {
    // Before the hub has published a point: what the store has by now.
    let to = match newest {
        UnixSeconds::MIN => unix_now() - 1,
        t => t,
    };
    // One minute more than the range: a point there means the data
    // reaches back over the whole range.
    let from = range_start(to, window) - 60;
    let now = unix_now();
    let read = candles(
        engine,
        archive.map(Archive::internal).as_ref(),
        asset,
        Interval::M1,
        (from, to),
        (
            now - i64::from(window_seconds) + 1,
            window_seconds as usize + 1,
        ),
        crate::domain::ticker::MINUTES as usize + 2,
    )
    .await?;
    let mut seed = Rolling::new(window);
    if read.first().is_some_and(|c| c.open_time < from + 60) {
        seed.reaches_back();
    }
    for candle in &read {
        seed.seed_minute(candle, to.min(candle.close_time));
    }
    Ok(seed)
}

/// The live channel lost points (it lagged, or the feed was interrupted)
/// while a seed was read: the seed cannot be brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Missed;

/// Brings a seed up to date with the points its channel took meanwhile.
fn drain(receiver: &mut broadcast::Receiver<LiveEvent>, seed: &mut Rolling) -> Result<(), Missed> {
    loop {
        match receiver.try_recv() {
            Ok(LiveEvent::Point(p)) => {
                seed.push(p.time, p.value);
            }
            Ok(LiveEvent::Interrupted | LiveEvent::ShuttingDown)
            | Err(
                broadcast::error::TryRecvError::Lagged(_) | broadcast::error::TryRecvError::Closed,
            ) => {
                return Err(Missed);
            }
            Err(broadcast::error::TryRecvError::Empty) => return Ok(()),
        }
    }
}

/// Keeps every asset's ticker seeded: at start, and again whenever the
/// hub dropped them (the live feed was interrupted and is back), checking
/// once a second.
pub async fn keep_seeded(streams: Arc<Streams>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let hub = &streams.hub;
        if hub.is_connected() && !ready(hub, &streams.catalog) {
            let seeded = seed_all(
                hub,
                &streams.catalog,
                &streams.engine,
                streams.archive.as_ref(),
                streams.window_seconds,
            )
            .await;
            tracing::debug!(seeded, "tickers seeded");
        }
    }
}
