//! The 24-hour tickers: one [`Rolling`] per asset per process, kept by the
//! hub as it publishes points, read by the REST ticker routes and the
//! ticker streams. Never recomputed from the day's minutes per request or
//! per subscriber.
//!
//! Seeding them (at start, and after the live feed was interrupted) is
//! [`super::ticker_seeding`]'s.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::ticker::Rolling;
use crate::domain::{AssetId, Ticker, UnixSeconds};

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
    /// been missed); [`super::ticker_seeding`] seeds them anew.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Installs `seed` as the asset's ticker after `drain` has brought it
    /// up to date, both under the lock the hub's pushes take; a ticker
    /// already there is kept, and a seed `drain` finds incomplete dropped.
    pub fn seed(
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

    /// How far the data reaches back without an archive (the live
    /// window), or `None`: a whole day.
    pub fn window(&self) -> Option<i64> {
        self.window
    }

    /// Whether it has the asset's ticker.
    pub fn has(&self, asset: AssetId) -> bool {
        self.lock().contains_key(&asset)
    }
}

/// The live channel lost points (it lagged, or the feed was interrupted)
/// while a seed was read: the seed cannot be brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed;
