//! The catalog and the latest rates.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::V1State;
use super::dto::RateList;
use super::freshness::{MAX_AGE_CATALOG, MAX_AGE_RATES};
use super::moment::{self, RateOrPoint};
use super::params::resolve;
use super::snapshot::RatesSnapshot;
use crate::access::Identity;
use crate::api::caller::Caller;
use crate::api::error::{ApiError, Result};
use crate::api::http_cache::{IfNoneMatch, Prepared, Shortcut};
use crate::api::query::Params;
use crate::api::responses::{InvalidParameter, NoPointAt, RateLimited, Unavailable, UnknownSymbol};
use crate::domain::{Asset, AssetId, AssetList};

pub fn router() -> OpenApiRouter<Arc<V1State>> {
    OpenApiRouter::new()
        .routes(routes!(assets))
        .routes(routes!(rates))
        .routes(routes!(rate))
}

/// The catalog: every asset with its stable id.
///
/// Cacheable for 5 minutes (`ETag`, `If-None-Match` gives 304).
#[utoipa::path(get, path = "/api/v1/assets", tag = "rates", operation_id = "list_assets",
    responses(
        (status = 200, description = "The catalog, by id", body = AssetList,
            headers(("ETag" = String), ("Cache-Control" = String, description = "public, max-age=300"))),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        RateLimited,
    ))]
#[tracing::instrument(level = "debug", skip_all)]
async fn assets(State(state): State<Arc<V1State>>, if_none_match: IfNoneMatch) -> Response {
    state.catalog_json.respond(&if_none_match, MAX_AGE_CATALOG)
}

/// The latest quote of every asset.
///
/// Assets that have never had a quote are left out; an asset whose newest
/// upstream quote is older than the staleness limit is listed with
/// `stale: true`. Rates change once a second: the answer carries an `ETag`
/// and `Cache-Control: max-age=1`, and `If-None-Match` gets 304.
#[utoipa::path(get, path = "/api/v1/rates", tag = "rates", operation_id = "list_rates",
    params(RatesQuery),
    responses(
        (status = 200, description = "Latest quotes, in catalog order", body = RateList,
            headers(("ETag" = String), ("Cache-Control" = String, description = "public, max-age=1"))),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        InvalidParameter,
        UnknownSymbol,
        Unavailable,
        RateLimited,
    ))]
#[tracing::instrument(level = "debug", skip_all)]
async fn rates(
    State(state): State<Arc<V1State>>,
    caller: Caller,
    params: Params,
    if_none_match: IfNoneMatch,
) -> Result<Response> {
    let wanted = RatesQuery::try_from(params)?
        .symbols
        .map(|raw| wanted_assets(&state, &raw, &caller))
        .transpose()?;
    let snapshot = state.rates.get().await;
    let rates = snapshot
        .value
        .as_ref()
        .map_err(|e| ApiError::Unavailable(e.clone()))?;
    let wanted = match wanted {
        Some(wanted) => wanted,
        None if caller.reads_all() => {
            return Ok(rates.all.respond(&if_none_match, MAX_AGE_RATES));
        }
        // A token that allows some assets sees those.
        None => caller.identity.scope.ids().unwrap_or_default().to_vec(),
    };
    let subset = RateList {
        rates: rates
            .list
            .iter()
            .filter(|r| wanted.contains(&r.asset_id))
            .cloned()
            .collect(),
    };
    Ok(Prepared::json(&subset).respond(&if_none_match, MAX_AGE_RATES))
}

/// Most assets one `symbols` list may name.
const MAX_SYMBOLS: usize = 100;

/// The `symbols` query of `/api/v1/rates`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RatesQuery {
    /// Only these assets, comma-separated, in any spelling `/rates/{symbol}`
    /// takes (`EURUSD,usd-jpy`); at most 100. Default: every asset.
    #[param(example = "EURUSD,USDJPY", min_length = 1)]
    symbols: Option<String>,
}

impl TryFrom<Params> for RatesQuery {
    type Error = ApiError;

    fn try_from(mut p: Params) -> Result<Self> {
        Ok(Self {
            symbols: p.take("symbols")?,
        })
    }
}

/// The asset ids a `symbols` list names: 400 for a malformed list, 404
/// naming the first symbol that is no asset.
fn wanted_assets(state: &V1State, raw: &str, caller: &Caller) -> Result<Vec<AssetId>> {
    let names: Vec<&str> = raw.split(',').map(str::trim).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(ApiError::invalid(
            "symbols",
            "symbols must be a comma-separated list of asset names, with no empty entry",
        ));
    }
    if names.len() > MAX_SYMBOLS {
        return Err(ApiError::invalid(
            "symbols",
            format!("at most {MAX_SYMBOLS} symbols, got {}", names.len()),
        ));
    }
    names
        .into_iter()
        .map(|name| match resolve(state, name, caller) {
            Err(ApiError::InvalidParameter { detail, .. }) => {
                Err(ApiError::invalid("symbols", detail))
            }
            other => other.map(|a| a.id),
        })
        .collect()
}

/// The latest quote of one asset, or its rate at a moment.
///
/// With `at` (Unix seconds), the point of that second, or the latest one
/// before it within the staleness limit (`RATES_STALE_AFTER_SECONDS`), from
/// the live window or the archive; 404 when there is none.
#[utoipa::path(get, path = "/api/v1/rates/{symbol}", tag = "rates", operation_id = "get_rate",
    params(("symbol" = String, Path,
        description = "Asset name, case-insensitive: EURUSD, eurusd, EUR-USD, EUR_USD or EUR%2FUSD",
        pattern = r"^[-_/]*[A-Za-z0-9][-_/A-Za-z0-9]*$", max_length = 32,
        example = "EURUSD"),
        RateQuery),
    responses(
        (status = 200, description = "The latest quote; with `at`, the point at that moment", body = RateOrPoint,
            headers(("ETag" = String), ("Cache-Control" = String, description = "public, max-age=1; for a past `at`, max-age=600"))),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        InvalidParameter,
        NoPointAt,
        Unavailable,
        RateLimited,
    ))]
#[tracing::instrument(level = "debug", skip(state, caller, params, if_none_match))]
async fn rate(
    State(state): State<Arc<V1State>>,
    Path(symbol): Path<String>,
    caller: Caller,
    params: Params,
    if_none_match: IfNoneMatch,
) -> Result<Response> {
    let asset = resolve(&state, &symbol, &caller)?;
    if let Some(at) = RateQuery::try_from(params)?.at {
        // Boxed: the archive's lookup is a large future the cached answer
        // does without.
        return Box::pin(moment::respond(&state, asset, &at, &if_none_match)).await;
    }
    latest(&*state.rates.get().await, asset, &if_none_match)
}

/// The answer of `/api/v1/rates/{symbol}` for the latest quote of `asset`.
fn latest(
    snapshot: &RatesSnapshot,
    asset: &Asset,
    if_none_match: &IfNoneMatch,
) -> Result<Response> {
    let rates = snapshot
        .value
        .as_ref()
        .map_err(|e| ApiError::Unavailable(e.clone()))?;
    let prepared = rates
        .by_asset
        .get(&asset.id)
        .ok_or_else(|| ApiError::NoData(format!("no quote for {} yet", asset.name)))?;
    Ok(prepared.respond(if_none_match, MAX_AGE_RATES))
}

/// The latest quote of one asset from the front door ([`Shortcut`]): a
/// symbol in the catalog's spelling or another, an asset the caller may
/// read, and this tick's snapshot built. Anything else (an error, `at`, a
/// rebuild due) is left to [`rate`].
pub struct LatestRate(Arc<V1State>);

impl LatestRate {
    const ROUTE: &str = "/api/v1/rates/{symbol}";

    /// The shortcut, but none while the route's own DEBUG span is logged:
    /// then every request goes through the route, and has it.
    pub fn new(state: Arc<V1State>) -> Option<Self> {
        (!tracing::enabled!(tracing::Level::DEBUG)).then_some(Self(state))
    }
}

impl Shortcut for LatestRate {
    fn route(&self) -> &'static str {
        Self::ROUTE
    }

    fn answer(&self, symbol: &str, headers: &HeaderMap, who: &Identity) -> Option<Response> {
        let state = &self.0;
        // A percent-encoded symbol is refused here (`%` is no symbol's
        // character): the route decodes it.
        let asset = state.catalog.find(symbol).ok()?;
        if !who.scope.allows(asset.id) {
            return None;
        }
        let snapshot = state.rates.current()?;
        latest(&snapshot, asset, &IfNoneMatch::from_headers(headers)).ok()
    }
}

/// The query of `/api/v1/rates/{symbol}`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RateQuery {
    /// A moment (Unix seconds, not in the future): the point of that
    /// second, or the latest before it within the staleness limit.
    #[param(value_type = Option<i64>, minimum = 0, example = 1455883484)]
    at: Option<String>,
}

impl TryFrom<Params> for RateQuery {
    type Error = ApiError;

    fn try_from(mut p: Params) -> Result<Self> {
        Ok(Self { at: p.take("at")? })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shortcut_is_for_the_rate_route() {
        let (_, openapi) = super::router().split_for_parts();
        assert!(openapi.paths.paths.contains_key(super::LatestRate::ROUTE));
    }
}
