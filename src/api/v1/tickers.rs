//! 24-hour tickers: `/api/v1/tickers` and `/api/v1/rates/{symbol}/ticker`,
//! served from the per-tick snapshot of the hub's ticker builders.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::V1State;
use super::dto::{TickerData, TickerList};
use super::freshness::MAX_AGE_RATES;
use super::params::resolve;
use crate::api::caller::Caller;
use crate::api::error::{ApiError, Result};
use crate::api::http_cache::{IfNoneMatch, Prepared};
use crate::api::responses::{InvalidParameter, NoPointAt, RateLimited, Unavailable};

pub fn router() -> OpenApiRouter<Arc<V1State>> {
    OpenApiRouter::new()
        .routes(routes!(tickers))
        .routes(routes!(ticker))
}

/// Every asset's 24-hour statistics, in catalog order.
///
/// A rolling 24 hours at minute granularity, ending at each asset's newest
/// point: open, high, low, last, change, count, exactly what the `1m`
/// candles of the same range sum up to. An asset with no point yet is left
/// out. Changes once a second: `ETag` and `Cache-Control: max-age=1`.
#[utoipa::path(get, path = "/api/v1/tickers", tag = "rates", operation_id = "list_tickers",
    responses(
        (status = 200, description = "Every asset's ticker that has a point", body = TickerList,
            headers(("ETag" = String), ("Cache-Control" = String, description = "public, max-age=1"))),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        Unavailable,
        RateLimited,
    ))]
#[tracing::instrument(level = "debug", skip_all)]
async fn tickers(
    State(state): State<Arc<V1State>>,
    caller: Caller,
    if_none_match: IfNoneMatch,
) -> Result<Response> {
    let snapshot = state.rates.tickers().await;
    let tickers = snapshot
        .value
        .as_ref()
        .map_err(|e| ApiError::Unavailable(e.clone()))?;
    if caller.reads_all() {
        return Ok(tickers.all.respond(&if_none_match, MAX_AGE_RATES));
    }
    // A token that allows some assets sees those.
    let mine = TickerList {
        tickers: tickers
            .list
            .iter()
            .filter(|t| caller.identity.scope.allows(t.asset_id))
            .cloned()
            .collect(),
    };
    Ok(Prepared::json(&mine).respond(&if_none_match, MAX_AGE_RATES))
}

/// One asset's 24-hour statistics (as in `/api/v1/tickers`).
#[utoipa::path(get, path = "/api/v1/rates/{symbol}/ticker", tag = "rates", operation_id = "get_rate_ticker",
    params(("symbol" = String, Path, description = "Asset name, as for /rates/{symbol}",
        pattern = r"^[-_/]*[A-Za-z0-9][-_/A-Za-z0-9]*$", max_length = 32, example = "EURUSD")),
    responses(
        (status = 200, description = "The asset's ticker", body = TickerData,
            headers(("ETag" = String), ("Cache-Control" = String, description = "public, max-age=1"))),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        InvalidParameter,
        NoPointAt,
        Unavailable,
        RateLimited,
    ))]
#[tracing::instrument(level = "debug", skip(state, caller, if_none_match))]
async fn ticker(
    State(state): State<Arc<V1State>>,
    Path(symbol): Path<String>,
    caller: Caller,
    if_none_match: IfNoneMatch,
) -> Result<Response> {
    let asset = resolve(&state, &symbol, &caller)?;
    let snapshot = state.rates.tickers().await;
    let tickers = snapshot
        .value
        .as_ref()
        .map_err(|e| ApiError::Unavailable(e.clone()))?;
    let prepared = tickers.by_asset.get(&asset.id).ok_or_else(|| {
        ApiError::NoPoint(format!("{} has no point yet, so no ticker", asset.name))
    })?;
    Ok(prepared.respond(&if_none_match, MAX_AGE_RATES))
}
