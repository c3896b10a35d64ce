//! Seeding the 24-hour tickers ([`super::tickers`]).
//!
//! Each asset's ticker is seeded once (at start, and again after the live
//! feed was interrupted, when points may have been missed) by [`seed_all`]:
//! it attaches to the asset's live channel, reads the day's `1m` candles
//! from the store (the window and the archive's rollups), and hands the
//! seed over under the lock the hub's pushes take, in the same critical
//! section as it drains the channel, as the kline builders are seeded: each
//! point is in the seed or pushed after it, never both and never neither.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::hub::{LiveEvent, LiveHub};
use super::state::Streams;
use super::tickers::Missed;
use crate::clock::unix_now;
use crate::domain::candle::Interval;
use crate::domain::ticker::{Rolling, range_start};
use crate::domain::{Catalog, UnixSeconds};
use crate::store::history::{HistoryError, candles};
use crate::store::{Archive, Engine};

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
            tickers.window(),
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
