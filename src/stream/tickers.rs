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
use std::sync::Mutex;

use tokio::sync::broadcast;

use super::hub::{LiveEvent, LiveHub};
use crate::clock::unix_now;
use crate::domain::candle::Interval;
use crate::domain::ticker::{Rolling, range_start};
use crate::domain::{AssetId, Catalog, Ticker, UnixSeconds};
use crate::store::history::{HistoryError, candles};
use crate::store::{Archive, Engine};

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

    /// An asset's ticker now: `Err` when it is not seeded yet (or again),
    /// `Ok(None)` when the asset has no point in its range.
    pub fn get(&self, asset: AssetId) -> Result<Option<Ticker>, NotSeeded> {
        self.lock().get(&asset).map(Rolling::ticker).ok_or(NotSeeded)
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
    /// already there is kept.
    fn seed(&self, asset: AssetId, mut seed: Rolling, drain: impl FnOnce(&mut Rolling)) {
        let mut rolling = self.lock();
        drain(&mut seed);
        rolling.entry(asset).or_insert(seed);
    }

    /// Whether every asset of `catalog` has its ticker.
    pub fn seeded(&self, catalog: &Catalog) -> bool {
        let rolling = self.lock();
        catalog.assets().iter().all(|a| rolling.contains_key(&a.id))
    }
}

/// A ticker asked for before it was seeded (the process started a moment
/// ago, or the live feed came back a moment ago).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the 24-hour statistics are being prepared; retry in a moment")]
pub struct NotSeeded;

/// Seeds every asset's ticker that has none, one asset after the other.
/// Returns how many it seeded; an asset whose read failed is left for the
/// next round.
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
        if tickers.get(asset.id).is_ok() {
            continue;
        }
        let Some(mut receiver) = hub.subscribe(asset.id) else {
            continue;
        };
        let newest = hub.latest_of(asset.id);
        match read_seed(engine, archive, asset, newest, tickers.window, window_seconds).await {
            Ok(seed) => {
                tickers.seed(asset.id, seed, |seed| drain(&mut receiver, seed));
                seeded += 1;
            }
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
        archive.map(Archive::internal),
        asset,
        Interval::M1,
        (from, to),
        (now - i64::from(window_seconds) + 1, window_seconds as usize + 1),
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

/// Brings a seed up to date with the points its channel took meanwhile.
fn drain(receiver: &mut broadcast::Receiver<LiveEvent>, seed: &mut Rolling) {
    loop {
        match receiver.try_recv() {
            Ok(LiveEvent::Point(p)) => {
                seed.push(p.time, p.value);
            }
            Ok(_) => {}
            Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return,
        }
    }
}
