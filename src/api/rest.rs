//! REST v1: the catalog, latest rates, paginated history.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tower_http::timeout::TimeoutLayer;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::cache::Prepared;
use super::error::{ApiError, Problem, RateLimited, Result};
use crate::domain::{Asset, AssetId, Point, StoredQuote, Symbol, UnixSeconds};
use crate::history::{self, Cursor, HistoryError};
use crate::worker::unix_now;

pub fn router() -> OpenApiRouter<AppState> {
    // History may wait on Redis and PostgreSQL: it gets a deadline. The
    // other routes answer from memory (at most one Redis call a tick, under
    // the Redis client's own timeout) and are spared the timer.
    let history =
        OpenApiRouter::new()
            .routes(routes!(rate_history))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                HISTORY_DEADLINE,
            ));
    OpenApiRouter::new()
        .routes(routes!(assets))
        .routes(routes!(rates))
        .routes(routes!(rate))
        .merge(history)
}

/// An asset of the catalog.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 1, "name": "EURUSD"}))]
pub struct AssetInfo {
    pub id: AssetId,
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssetList {
    pub assets: Vec<AssetInfo>,
}

impl AssetList {
    pub fn from_catalog(catalog: &crate::domain::Catalog) -> Self {
        Self {
            assets: catalog
                .assets()
                .iter()
                .map(|a| AssetInfo {
                    id: a.id,
                    name: a.name.clone(),
                })
                .collect(),
        }
    }
}

/// The latest quote of an asset.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"symbol": "EURUSD", "assetId": 1, "value": 1.110481, "bid": 1.11047,
    "ask": 1.110492, "time": 1455883484, "source": "fxcm", "stale": false}))]
pub struct Rate {
    pub symbol: String,
    pub asset_id: AssetId,
    /// Mid price `(bid + ask) / 2`, rounded to 6 decimals.
    pub value: f64,
    pub bid: f64,
    pub ask: f64,
    /// Unix second of the newest point.
    pub time: UnixSeconds,
    /// The upstream that produced it: `fxcm`, `binance`, `file` or `simulated`.
    pub source: String,
    /// True when the newest upstream quote is older than the staleness limit.
    pub stale: bool,
}

impl Rate {
    pub(crate) fn new(asset: &Asset, q: StoredQuote, now: UnixSeconds, stale_after: u32) -> Self {
        Self {
            symbol: asset.name.clone(),
            asset_id: asset.id,
            value: q.value,
            bid: q.bid,
            ask: q.ask,
            time: q.time,
            stale: now - q.quoted_at > i64::from(stale_after),
            source: q.source,
        }
    }
}

/// The latest quote of every asset that has one, in catalog order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RateList {
    pub rates: Vec<Rate>,
}

/// A page of history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// Points oldest first, at most `limit`.
    pub points: Vec<Point>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// How long a history request may take.
const HISTORY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long clients may cache each answer, in seconds.
pub const MAX_AGE_RATES: u32 = 1;
pub const MAX_AGE_CATALOG: u32 = 300;
/// A history page whose range ended more than [`SETTLED_AFTER`] seconds ago
/// no longer changes.
pub const MAX_AGE_SETTLED_HISTORY: u32 = 60;
const SETTLED_AFTER: UnixSeconds = 2;

/// The catalog: every asset with its stable id.
///
/// Cacheable for 5 minutes (`ETag`, `If-None-Match` gives 304).
#[utoipa::path(get, path = "/api/v1/assets", tag = "rates",
    responses(
        (status = 200, description = "The catalog, by id", body = AssetList,
            headers(("ETag" = String), ("Cache-Control" = String, description = "public, max-age=300"))),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        RateLimited,
    ))]
#[tracing::instrument(level = "debug", skip_all)]
async fn assets(State(state): State<AppState>, headers: HeaderMap) -> Response {
    state.catalog_json.respond(&headers, MAX_AGE_CATALOG)
}

/// The latest quote of every asset.
///
/// Assets that have never had a quote are left out; an asset whose newest
/// upstream quote is older than the staleness limit is listed with
/// `stale: true`. Rates change once a second: the answer carries an `ETag`
/// and `Cache-Control: max-age=1`, and `If-None-Match` gets 304.
#[utoipa::path(get, path = "/api/v1/rates", tag = "rates",
    responses(
        (status = 200, description = "Latest quotes, in catalog order", body = RateList,
            headers(("ETag" = String), ("Cache-Control" = String, description = "public, max-age=1"))),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        (status = 503, description = "The rates store is unavailable",
            body = Problem, content_type = "application/problem+json"),
        RateLimited,
    ))]
#[tracing::instrument(level = "debug", skip_all)]
async fn rates(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    let snapshot = state.rates.get().await;
    let rates = snapshot
        .rates
        .as_ref()
        .map_err(|e| ApiError::Unavailable(e.clone()))?;
    Ok(rates.all.respond(&headers, MAX_AGE_RATES))
}

/// The latest quote of one asset.
#[utoipa::path(get, path = "/api/v1/rates/{symbol}", tag = "rates",
    params(("symbol" = String, Path,
        description = "Asset name, case-insensitive: EURUSD, eurusd, EUR-USD, EUR_USD or EUR%2FUSD",
        pattern = r"^[-_/]*[A-Za-z0-9][-_/A-Za-z0-9]*$", max_length = 32,
        example = "EURUSD")),
    responses(
        (status = 200, description = "The latest quote", body = Rate,
            headers(("ETag" = String), ("Cache-Control" = String, description = "public, max-age=1"))),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        (status = 400, description = "The symbol is malformed",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No asset has this symbol",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No quote yet for this asset, or the store is unavailable; see Retry-After",
            body = Problem, content_type = "application/problem+json"),
        RateLimited,
    ))]
#[tracing::instrument(level = "debug", skip(state, headers))]
async fn rate(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let asset = resolve(&state, &symbol)?;
    let snapshot = state.rates.get().await;
    let rates = snapshot
        .rates
        .as_ref()
        .map_err(|e| ApiError::Unavailable(e.clone()))?;
    let prepared = rates
        .by_asset
        .get(&asset.id)
        .ok_or_else(|| ApiError::NoData(format!("no quote for {} yet", asset.name)))?;
    Ok(prepared.respond(&headers, MAX_AGE_RATES))
}

/// History query. Every field is read as text so that a bad value gets a
/// problem body naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// First second of the range (Unix seconds, inclusive). Default: the
    /// start of the live window before `to`.
    #[param(value_type = Option<i64>, minimum = 0, example = 1455883484)]
    from: Option<String>,
    /// Last second of the range (Unix seconds, inclusive). Default: now.
    #[param(value_type = Option<i64>, minimum = 0, example = 1455885284)]
    to: Option<String>,
    /// Points per page, 1 to 1000. Default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000, example = 100)]
    limit: Option<String>,
    /// Opaque: the `next_cursor` of the previous page.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// A page of an asset's points, oldest first.
///
/// The live window (the last 30 minutes by default) is read from Redis,
/// older seconds from the PostgreSQL archive; a range spanning both reads
/// as one sequence. When there is a next page, the answer has its cursor in
/// `next_cursor` and a `Link: <...>; rel="next"` header with the full URL.
#[utoipa::path(get, path = "/api/v1/rates/{symbol}/history", tag = "rates",
    params(
        ("symbol" = String, Path, description = "Asset name, as for /rates/{symbol}",
            pattern = r"^[-_/]*[A-Za-z0-9][-_/A-Za-z0-9]*$", max_length = 32, example = "EURUSD"),
        HistoryQuery,
    ),
    responses(
        (status = 200, description = "A page of points", body = HistoryPage,
            headers(("Link" = String, description = "`<url>; rel=\"next\"` when there is a next page"),
                ("ETag" = String),
                ("Cache-Control" = String, description = "public, max-age=60 for a range that ended over 2 s ago, else max-age=1"))),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        (status = 400, description = "A parameter is invalid; `parameter` names it",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No asset has this symbol",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis, or the archive for an old range, is unavailable",
            body = Problem, content_type = "application/problem+json"),
        RateLimited,
    ))]
#[tracing::instrument(level = "debug", skip(state, request))]
async fn rate_history(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    query: std::result::Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
    request: HeaderMap,
) -> Result<Response> {
    let asset = resolve(&state, &symbol)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => n as usize,
            Ok(n) => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("limit must be between 1 and 1000, got {n}"),
                ));
            }
            Err(_) => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("limit must be an integer between 1 and 1000, got '{raw}'"),
                ));
            }
        },
    };
    let from = seconds_param("from", query.from.as_deref())?;
    let to = seconds_param("to", query.to.as_deref())?;
    let cursor = query
        .cursor
        .as_deref()
        .map(|raw| Cursor::decode(raw).map_err(|e| ApiError::invalid("cursor", e.to_string())))
        .transpose()?;
    let (from, to) = match cursor {
        Some(c) => {
            if from.is_some_and(|f| f != c.from) || to.is_some_and(|t| t != c.to) {
                return Err(ApiError::invalid(
                    "cursor",
                    "cursor belongs to another range; repeat its from and to, or leave them out",
                ));
            }
            (c.from, c.to)
        }
        None => {
            let to = to.unwrap_or_else(unix_now);
            let from = from.unwrap_or(to - i64::from(state.window_seconds) + 1);
            (from, to)
        }
    };
    if from > to {
        return Err(ApiError::invalid(
            "from",
            format!("from ({from}) must not be after to ({to})"),
        ));
    }
    let start = cursor.map_or(from, |c| c.after + 1);
    let live_start = unix_now() - i64::from(state.window_seconds) + 1;
    let mut points = history::page(
        &state.redis,
        state.archive.as_ref(),
        asset,
        (start, to),
        live_start,
        limit + 1,
    )
    .await
    .map_err(|e| match e {
        HistoryError::Redis(e) => ApiError::Redis(e),
        HistoryError::Archive(e) => ApiError::Archive(e),
    })?;
    let next_cursor = (points.len() > limit).then(|| {
        points.truncate(limit);
        Cursor {
            after: points.last().map_or(start, |p| p.time),
            from,
            to,
        }
        .encode()
    });
    let link = next_cursor.as_ref().and_then(|c| {
        HeaderValue::from_str(&format!(
            "</api/v1/rates/{}/history?from={from}&to={to}&limit={limit}&cursor={c}>; rel=\"next\"",
            asset.name
        ))
        .ok()
    });
    let max_age = if to < unix_now() - SETTLED_AFTER {
        MAX_AGE_SETTLED_HISTORY
    } else {
        MAX_AGE_RATES
    };
    let page = Prepared::json(&HistoryPage {
        points,
        next_cursor,
    });
    let mut resp = page.respond(&request, max_age);
    if let Some(link) = link {
        resp.headers_mut().insert(header::LINK, link);
    }
    Ok(resp)
}

fn seconds_param(name: &'static str, raw: Option<&str>) -> Result<Option<UnixSeconds>> {
    let Some(raw) = raw else { return Ok(None) };
    match raw.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Some(n)),
        _ => Err(ApiError::invalid(
            name,
            format!("{name} must be Unix seconds (a non-negative integer), got '{raw}'"),
        )),
    }
}

/// The catalog asset a path's symbol names.
fn resolve<'a>(state: &'a AppState, raw: &str) -> Result<&'a Asset> {
    // Most clients write the catalog's own spelling.
    if let Some(asset) = state.catalog.by_name(raw) {
        return Ok(asset);
    }
    let symbol = Symbol::parse(raw).map_err(|e| ApiError::invalid("symbol", e.to_string()))?;
    state
        .catalog
        .by_symbol(&symbol)
        .ok_or_else(|| ApiError::UnknownSymbol(symbol.to_string()))
}
