//! Answers built once per tick per process: the latest rates and the
//! 24-hour tickers.
//!
//! Rates and tickers change once a second, so `/api/v1/rates`,
//! `/api/v1/rates/{symbol}`, `/api/v1/tickers` and the ticker route are
//! served from snapshots ([`PerTick`]): the first request after a tick
//! reached this process (through the live feed) or after the second turned
//! rebuilds one (the rates with one Redis round trip, the tickers from the
//! hub's builders); everyone else gets the prepared bytes. A snapshot is
//! never older than the newest second in the engine by more than one tick.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

use super::dto::{Rate, RateList, TickerData, TickerList};
use crate::api::http_cache::Prepared;
use crate::clock::unix_now;
use crate::domain::{AssetId, Catalog, UnixSeconds};
use crate::store::{Engine, EngineError};
use crate::stream::LiveHub;

/// Something built once per tick.
#[derive(Debug)]
pub struct Snapshot<T> {
    /// The wall-clock second it was built in.
    pub built: UnixSeconds,
    /// The newest tick the live feed had announced when it was built.
    pub tick: UnixSeconds,
    pub value: T,
}

/// The current snapshot of one kind of answer.
pub struct PerTick<T> {
    hub: LiveHub,
    current: RwLock<Option<Arc<Snapshot<T>>>>,
    rebuild: tokio::sync::Mutex<()>,
}

impl<T> PerTick<T> {
    pub fn new(hub: LiveHub) -> Self {
        Self {
            hub,
            current: RwLock::new(None),
            rebuild: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self, now: UnixSeconds) -> Option<Arc<Snapshot<T>>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|s| s.built >= now && s.tick >= self.hub.latest_tick())
            .cloned()
    }

    /// The current snapshot, built first (by `build`, given the second)
    /// when a tick arrived or the second turned since the last one. One
    /// request builds; the others wait for it rather than all building.
    pub async fn get<F, Fut>(&self, build: F) -> Arc<Snapshot<T>>
    where
        F: FnOnce(UnixSeconds) -> Fut,
        Fut: Future<Output = T>,
    {
        let now = unix_now();
        if let Some(snap) = self.fresh(now) {
            return snap;
        }
        // Boxed: the rebuild (once a tick) reads the engine, a large future
        // that every answer's own would otherwise carry and move.
        Box::pin(self.rebuild(now, build)).await
    }

    async fn rebuild<F, Fut>(&self, now: UnixSeconds, build: F) -> Arc<Snapshot<T>>
    where
        F: FnOnce(UnixSeconds) -> Fut,
        Fut: Future<Output = T>,
    {
        let _one = self.rebuild.lock().await;
        if let Some(snap) = self.fresh(now) {
            return snap;
        }
        // Read before the build: a tick landing during it marks it old.
        let tick = self.hub.latest_tick();
        let snap = Arc::new(Snapshot {
            built: now,
            tick,
            value: build(now).await,
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(snap.clone());
        snap
    }
}

/// Every asset's rate, prepared (or why there are none).
pub type RatesSnapshot = Snapshot<Result<Rates, String>>;

#[derive(Debug)]
pub struct Rates {
    /// Every asset's rate, in catalog order (for `?symbols=` subsets).
    pub list: Vec<Rate>,
    pub all: Prepared,
    pub by_asset: FxHashMap<AssetId, Prepared>,
}

pub struct RatesCache {
    catalog: Arc<Catalog>,
    engine: Engine,
    stale_after: u32,
    rates: PerTick<Result<Rates, String>>,
    tickers: PerTick<Result<Tickers, String>>,
    hub: LiveHub,
}

/// Every asset's ticker that has a point, prepared.
#[derive(Debug)]
pub struct Tickers {
    pub all: Prepared,
    pub by_asset: FxHashMap<AssetId, Prepared>,
    /// The tickers themselves, for a caller who may read only some.
    pub list: Vec<TickerData>,
}

impl RatesCache {
    pub fn new(catalog: Arc<Catalog>, engine: Engine, stale_after: u32, hub: LiveHub) -> Self {
        Self {
            catalog,
            engine,
            stale_after,
            rates: PerTick::new(hub.clone()),
            tickers: PerTick::new(hub.clone()),
            hub,
        }
    }

    /// The latest rates.
    pub async fn get(&self) -> Arc<RatesSnapshot> {
        self.rates
            .get(|now| async move { self.build(now).await.map_err(|e| e.to_string()) })
            .await
    }

    /// The latest rates when this tick's are built (no rebuild is due).
    pub fn current(&self) -> Option<Arc<RatesSnapshot>> {
        self.rates.fresh(unix_now())
    }

    /// The tickers: `Err` while they are being seeded (at start, or after
    /// the live feed came back) or when the rates cannot be read.
    pub async fn tickers(&self) -> Arc<Snapshot<Result<Tickers, String>>> {
        self.tickers
            .get(|_| async move { self.build_tickers().await })
            .await
    }

    async fn build(&self, now: UnixSeconds) -> Result<Rates, EngineError> {
        let quotes = self.engine.latest_all().await?;
        let rates: Vec<Rate> = quotes
            .into_iter()
            .filter_map(|q| {
                let asset = self.catalog.by_id(q.asset_id)?;
                Some(Rate::new(asset, q, now, self.stale_after))
            })
            .collect();
        let by_asset = rates
            .iter()
            .map(|r| (r.asset_id, Prepared::json(r)))
            .collect();
        Ok(Rates {
            all: Prepared::json(&RateList {
                rates: rates.clone(),
            }),
            list: rates,
            by_asset,
        })
    }

    async fn build_tickers(&self) -> Result<Tickers, String> {
        let builders = self.hub.tickers();
        if !crate::stream::ticker_seeding::ready(&self.hub, &self.catalog) {
            return Err(crate::stream::ticker_seeding::NotSeeded.to_string());
        }
        let rates = self.get().await;
        let rates = rates.value.as_ref().map_err(Clone::clone)?;
        let stale: HashMap<AssetId, bool> =
            rates.list.iter().map(|r| (r.asset_id, r.stale)).collect();
        let all = builders.all();
        let list: Vec<TickerData> = self
            .catalog
            .assets()
            .iter()
            .filter_map(|asset| {
                let ticker = all.get(&asset.id).copied().flatten()?;
                let stale = stale.get(&asset.id).copied().unwrap_or(true);
                Some(TickerData::new(&asset.name, asset.id, &ticker, stale))
            })
            .collect();
        let by_asset = list
            .iter()
            .map(|t| (t.asset_id, Prepared::json(t)))
            .collect();
        Ok(Tickers {
            all: Prepared::json(&TickerList {
                tickers: list.clone(),
            }),
            by_asset,
            list,
        })
    }
}
