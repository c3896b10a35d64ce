//! Liveness and readiness, outside the versioned API.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::v1::RatesCache;
use crate::domain::{Catalog, SourceStatus};
use crate::store::archive::Reachable;
use crate::store::{Archive, Engine};
use crate::stream::LiveHub;

/// What the probes read: state the process already holds, so that a
/// probe never waits on a database.
pub struct HealthState {
    pub catalog: Arc<Catalog>,
    pub engine: Engine,
    pub archive: Option<Archive>,
    /// The live feed: whether Redis is reachable.
    pub hub: LiveHub,
    /// The latest rates, rebuilt at most once a tick.
    pub rates: Arc<RatesCache>,
    pub stale_after_seconds: u32,
    /// The role of this process's worker, when it runs one.
    pub role: Option<WorkerRole>,
}

/// Where a worker's role is read.
pub type WorkerRole = tokio::sync::watch::Receiver<crate::worker::election::Role>;

impl HealthState {
    /// Assets whose newest quote is older than the staleness limit (or
    /// that never had one).
    fn stale(&self, rates: &[super::v1::Rate]) -> Vec<String> {
        self.catalog
            .assets()
            .iter()
            .filter(|a| !rates.iter().any(|r| r.asset_id == a.id && !r.stale))
            .map(|a| a.name.clone())
            .collect()
    }

    /// Sets the gauges that describe readiness, for a scrape:
    /// `ratesd_live_feed_connected` (0 while the engine's live feed is lost:
    /// Redis unreachable) and `ratesd_stale_assets` (every asset while the
    /// latest quotes cannot be read).
    pub async fn observe(&self) {
        let connected = self.hub.is_connected();
        metrics::gauge!("ratesd_live_feed_connected").set(if connected { 1.0 } else { 0.0 });
        let snapshot = self.rates.get().await;
        let stale = match &snapshot.value {
            Ok(rates) if connected => self.stale(&rates.list).len(),
            _ => self.catalog.assets().len(),
        };
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("ratesd_stale_assets").set(stale as f64);
    }
}

pub fn router() -> OpenApiRouter<Arc<HealthState>> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`, `ready` or `unavailable`.
    pub status: &'static str,
    /// Why the service is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Assets whose newest quote is older than the staleness limit (or that
    /// never had one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stale_assets: Vec<String>,
    /// `ok`, `unreachable`, `starting` (not reached yet) or `off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<&'static str>,
    /// `leader` or `standby`, for a process that runs a worker: of all the
    /// workers sharing an engine, exactly one leads (polls the upstreams
    /// and writes); the others stand by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<&'static str>,
    /// Each upstream by `priority:name`, as the worker last saw it: why an
    /// asset is stale.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, SourceStatus>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", operation_id = "health_live",
    responses((status = 200, description = "The process is up", body = Health)))]
async fn live() -> Json<Health> {
    Json(Health {
        status: "ok",
        reason: None,
        stale_assets: Vec::new(),
        archive: None,
        worker: None,
        sources: BTreeMap::new(),
    })
}

/// Ready to serve: Redis answers and at least one asset has fresh data.
///
/// 503 with the reason otherwise. Stale assets are listed either way. The
/// archive's state (what its last statement found) is reported but does
/// not make the service unready: the live path never depends on it. The
/// answer comes from state the process holds (the live feed's connection,
/// the rates snapshot, the archive's last outcome): no probe waits on a
/// database.
#[utoipa::path(get, path = "/health/ready", tag = "health", operation_id = "health_ready",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready; `reason` says why", body = Health),
    ))]
#[tracing::instrument(skip_all)]
async fn ready(State(state): State<Arc<HealthState>>) -> (StatusCode, Json<Health>) {
    let archive = match state.archive.as_ref().map(Archive::reachable) {
        None => "off",
        Some(Reachable::Yes) => "ok",
        Some(Reachable::No) => "unreachable",
        Some(Reachable::Unknown) => "starting",
    };
    let worker = state.role.as_ref().map(|role| role.borrow().name());
    let unavailable = |reason: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable",
                reason: Some(reason.to_owned()),
                stale_assets: Vec::new(),
                archive: Some(archive),
                worker,
                sources: BTreeMap::new(),
            }),
        )
    };
    // The live feed's subscription is down exactly when Redis is away; the
    // hub has logged why.
    if !state.hub.is_connected() {
        return unavailable("redis unreachable");
    }
    let snapshot = state.rates.get().await;
    let Ok(rates) = &snapshot.value else {
        return unavailable("redis unreachable");
    };
    let sources = state.engine.source_statuses().await.unwrap_or_default();
    let limit = state.stale_after_seconds;
    let stale = state.stale(&rates.list);
    let none_fresh = stale.len() == state.catalog.assets().len();
    (
        if none_fresh {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        },
        Json(Health {
            status: if none_fresh { "unavailable" } else { "ready" },
            reason: none_fresh.then(|| format!("no asset has a quote newer than {limit} s")),
            stale_assets: stale,
            archive: Some(archive),
            worker,
            sources,
        }),
    )
}
