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

use crate::clock::unix_now;
use crate::domain::{Catalog, SourceStatus, is_fresh};
use crate::store::{Archive, RedisStore};

/// What the probes read.
pub struct HealthState {
    pub catalog: Arc<Catalog>,
    pub redis: RedisStore,
    pub archive: Option<Archive>,
    pub stale_after_seconds: u32,
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
    /// `ok`, `unreachable` or `off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<&'static str>,
    /// Each upstream by `priority:name`, as the worker last saw it: why an
    /// asset is stale.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, SourceStatus>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process is up", body = Health)))]
async fn live() -> Json<Health> {
    Json(Health {
        status: "ok",
        reason: None,
        stale_assets: Vec::new(),
        archive: None,
        sources: BTreeMap::new(),
    })
}

/// Ready to serve: Redis answers and at least one asset has fresh data.
///
/// 503 with the reason otherwise. Stale assets are listed either way. The
/// archive's state is reported but does not make the service unready: the
/// live path never depends on it.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready; `reason` says why", body = Health),
    ))]
#[tracing::instrument(skip_all)]
async fn ready(State(state): State<Arc<HealthState>>) -> (StatusCode, Json<Health>) {
    let archive = match &state.archive {
        None => "off",
        Some(a) => match tokio::time::timeout(std::time::Duration::from_secs(1), a.ping()).await {
            Ok(Ok(())) => "ok",
            _ => "unreachable",
        },
    };
    let quotes = match state.redis.latest_all().await {
        Ok(q) => q,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable",
                    reason: Some(format!("redis unreachable: {e}")),
                    stale_assets: Vec::new(),
                    archive: Some(archive),
                    sources: BTreeMap::new(),
                }),
            );
        }
    };
    let sources = state.redis.source_statuses().await.unwrap_or_default();
    let now = unix_now();
    let limit = state.stale_after_seconds;
    let stale: Vec<String> = state
        .catalog
        .assets()
        .iter()
        .filter(|a| {
            !quotes
                .iter()
                .any(|q| q.asset_id == a.id && is_fresh(q.quoted_at, now, limit))
        })
        .map(|a| a.name.clone())
        .collect();
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
            sources,
        }),
    )
}
