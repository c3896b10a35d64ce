//! The rate at a moment: `GET /api/v1/rates/{symbol}?at=<unix second>`,
//! the point of that second or the latest one before it within the
//! staleness limit, from the window or the archive.

use axum::response::Response;

use super::V1State;
use super::freshness::{MAX_AGE_RATES, MAX_AGE_SETTLED_CANDLES, SETTLED_AFTER};
use super::params::seconds_param;
use crate::api::error::{ApiError, Result};
use crate::api::http_cache::{IfNoneMatch, Prepared};
use crate::clock::unix_now;
use crate::domain::Asset;
use crate::store::history;

/// Answers `asset`'s point at `at` (raw, as the query gave it).
pub async fn respond(
    state: &V1State,
    asset: &Asset,
    at: &str,
    if_none_match: &IfNoneMatch,
) -> Result<Response> {
    let now = unix_now();
    let Some(at) = seconds_param("at", Some(at))? else {
        return Err(ApiError::invalid("at", "at must be Unix seconds"));
    };
    if at > now {
        return Err(ApiError::invalid(
            "at",
            format!("at ({at}) is in the future; the latest rate is without at"),
        ));
    }
    let stale = i64::from(state.stale_after_seconds);
    let window = i64::from(state.window_seconds);
    let points = history::page(
        &state.engine,
        state.archive.as_ref(),
        asset,
        (at.saturating_sub(stale), at),
        now - window + 1,
        usize::try_from(stale + 1).unwrap_or(usize::MAX),
    )
    .await?;
    let point = points.into_iter().last().ok_or_else(|| {
        ApiError::NoPoint(format!(
            "{} has no point at {at} nor in the {stale} seconds before it",
            asset.name
        ))
    })?;
    // A moment that has passed keeps its point.
    let max_age = if at < now - SETTLED_AFTER {
        MAX_AGE_SETTLED_CANDLES
    } else {
        MAX_AGE_RATES
    };
    Ok(Prepared::json(&point).respond(if_none_match, max_age))
}

/// What `/rates/{symbol}` answers: the latest quote, or with `at` a point
/// (for the OpenAPI document).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "a schema of the OpenAPI document, never built")]
pub enum RateOrPoint {
    Rate(super::dto::Rate),
    Point(crate::domain::Point),
}
