//! The latest-rates answers, built once per tick per process.
//!
//! Rates change once a second, so `/api/v1/rates` and `/api/v1/rates/{symbol}`
//! are served from a snapshot: the first request after a tick reached this
//! process (through the live feed) or after the second turned rebuilds it
//! with one Redis round trip; everyone else gets the prepared bytes. A
//! snapshot is never older than the newest second in Redis by more than one
//! tick.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::dto::{Rate, RateList};
use crate::api::http_cache::Prepared;
use crate::clock::unix_now;
use crate::domain::{AssetId, Catalog, UnixSeconds};
use crate::store::{Engine, EngineError};
use crate::stream::LiveHub;

/// The latest rates of every asset, prepared.
#[derive(Debug)]
pub struct Snapshot {
    /// The wall-clock second it was built in.
    pub built: UnixSeconds,
    /// The newest tick the live feed had announced when it was built.
    pub tick: UnixSeconds,
    pub rates: Result<Rates, String>,
}

#[derive(Debug)]
pub struct Rates {
    /// Every asset's rate, in catalog order (for `?symbols=` subsets).
    pub list: Vec<Rate>,
    pub all: Prepared,
    pub by_asset: HashMap<AssetId, Prepared>,
}

pub struct RatesCache {
    catalog: Arc<Catalog>,
    engine: Engine,
    stale_after: u32,
    hub: LiveHub,
    current: RwLock<Arc<Snapshot>>,
    rebuild: tokio::sync::Mutex<()>,
}

impl RatesCache {
    pub fn new(catalog: Arc<Catalog>, engine: Engine, stale_after: u32, hub: LiveHub) -> Self {
        Self {
            catalog,
            engine,
            stale_after,
            hub,
            current: RwLock::new(Arc::new(Snapshot {
                built: UnixSeconds::MIN,
                tick: UnixSeconds::MIN,
                rates: Err("not built yet".into()),
            })),
            rebuild: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self, now: UnixSeconds) -> Option<Arc<Snapshot>> {
        let snap = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (snap.built >= now && snap.tick >= self.hub.latest_tick()).then_some(snap)
    }

    /// The current snapshot, rebuilt first when a tick arrived or the second
    /// turned since it was built. One request rebuilds; the others wait for
    /// it rather than all asking Redis.
    pub async fn get(&self) -> Arc<Snapshot> {
        let now = unix_now();
        if let Some(snap) = self.fresh(now) {
            return snap;
        }
        let _one = self.rebuild.lock().await;
        if let Some(snap) = self.fresh(now) {
            return snap;
        }
        // Read before Redis: a tick landing during the build marks it old.
        let tick = self.hub.latest_tick();
        let snap = Arc::new(Snapshot {
            built: now,
            tick,
            rates: self.build(now).await.map_err(|e| e.to_string()),
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = snap.clone();
        snap
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
}
