//! OHLC candles: `/api/v1/rates/{symbol}/candles`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tower_http::timeout::TimeoutLayer;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::V1State;
use super::cursor::Cursor;
use super::dto::CandlePage;
use super::freshness::{MAX_AGE_RATES, MAX_AGE_SETTLED_CANDLES, SETTLED_AFTER};
use super::history::{DEADLINE, PagedRange, paged_range};
use super::params::{limit_param, resolve, seconds_param};
use crate::api::caller::Caller;
use crate::api::error::{ApiError, Result};
use crate::api::http_cache::{IfNoneMatch, Prepared};
use crate::api::query::Params;
use crate::api::responses::{InvalidParameter, RateLimited, Unavailable, UnknownSymbol};
use crate::clock::unix_now;
use crate::domain::{Interval, UnixSeconds};
use crate::store::history;

pub fn router() -> OpenApiRouter<Arc<V1State>> {
    OpenApiRouter::new()
        .routes(routes!(rate_candles))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            DEADLINE,
        ))
}

/// Candle pages answered within the current tick, by query: the pages of
/// the window change once a tick, and clients of a chart ask the same few
/// (the default page of each interval) again and again. Emptied when the
/// second turns or a tick arrives; bounded, beyond which it stops adding.
#[derive(Default)]
pub struct CandlePages {
    inner: std::sync::Mutex<PagesOf>,
}

#[derive(Default)]
struct PagesOf {
    /// The `(second, latest tick)` the pages were made in.
    at: (UnixSeconds, UnixSeconds),
    pages: std::collections::HashMap<PageKey, (Prepared, Option<HeaderValue>, u32)>,
}

/// What a page depends on besides the tick.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PageKey {
    asset: crate::domain::AssetId,
    interval: Interval,
    from: Option<UnixSeconds>,
    to: Option<UnixSeconds>,
    limit: usize,
    cursor: Option<String>,
}

const MAX_CACHED_PAGES: usize = 1_024;

impl CandlePages {
    fn get(
        &self,
        at: (UnixSeconds, UnixSeconds),
        key: &PageKey,
    ) -> Option<(Prepared, Option<HeaderValue>, u32)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.at == at)
            .then(|| inner.pages.get(key).cloned())
            .flatten()
    }

    fn put(
        &self,
        at: (UnixSeconds, UnixSeconds),
        key: PageKey,
        page: (Prepared, Option<HeaderValue>, u32),
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.at != at {
            inner.at = at;
            inner.pages.clear();
        }
        if inner.pages.len() < MAX_CACHED_PAGES {
            inner.pages.insert(key, page);
        }
    }
}

/// Candles query. Every field is read as text so that a bad value gets a
/// problem body naming it.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CandlesQuery {
    /// Candle length: `1m`, `5m`, `15m`, `30m`, `1h`, `4h` or `1d`. Default `1m`.
    #[param(value_type = Option<String>, pattern = "^(1m|5m|15m|30m|1h|4h|1d)$", example = "1m")]
    interval: Option<String>,
    /// Earliest `openTime` (Unix seconds, inclusive). Default: `limit`
    /// intervals before `to`.
    #[param(value_type = Option<i64>, minimum = 0, example = 1455883440)]
    from: Option<String>,
    /// Latest `openTime` (Unix seconds, inclusive). Default: now.
    #[param(value_type = Option<i64>, minimum = 0, example = 1455887040)]
    to: Option<String>,
    /// Candles per page, 1 to 1000. Default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000, example = 100)]
    limit: Option<String>,
    /// Opaque: the `next_cursor` of the previous page.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

impl TryFrom<Params> for CandlesQuery {
    type Error = ApiError;

    fn try_from(mut p: Params) -> Result<Self> {
        Ok(Self {
            interval: p.take("interval")?,
            from: p.take("from")?,
            to: p.take("to")?,
            limit: p.take("limit")?,
            cursor: p.take("cursor")?,
        })
    }
}

/// OHLC candles of an asset's points, oldest first.
///
/// Buckets are aligned to the interval in UTC from the Unix epoch. A candle
/// is a bucket's first (`open`) and last (`close`) point, the largest and
/// smallest, and how many points it has; a bucket with no point gives no
/// candle. `closed` is false only for the bucket holding the current
/// second. Points come from the live window and, before it, from the
/// archive (aggregated there). Paged like history: `next_cursor` and a
/// `Link: <...>; rel="next"` header.
#[utoipa::path(get, path = "/api/v1/rates/{symbol}/candles", tag = "rates", operation_id = "get_rate_candles",
    params(
        ("symbol" = String, Path, description = "Asset name, as for /rates/{symbol}",
            pattern = r"^[-_/]*[A-Za-z0-9][-_/A-Za-z0-9]*$", max_length = 32, example = "EURUSD"),
        CandlesQuery,
    ),
    responses(
        (status = 200, description = "A page of candles", body = CandlePage,
            headers(("Link" = String, description = "`<url>; rel=\"next\"` when there is a next page"),
                ("ETag" = String),
                ("Cache-Control" = String, description = "public, max-age=600 when every candle of the page is closed, else max-age=1"))),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        InvalidParameter,
        UnknownSymbol,
        Unavailable,
        RateLimited,
    ))]
#[tracing::instrument(level = "debug", skip(state, caller, params, if_none_match))]
async fn rate_candles(
    State(state): State<Arc<V1State>>,
    Path(symbol): Path<String>,
    caller: Caller,
    params: Params,
    if_none_match: IfNoneMatch,
) -> Result<Response> {
    let asset = resolve(&state, &symbol, &caller)?;
    let query = CandlesQuery::try_from(params)?;
    let interval: Interval = match query.interval.as_deref() {
        None => Interval::M1,
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e: crate::domain::candle::UnknownInterval| {
                ApiError::invalid("interval", e.to_string())
            })?,
    };
    let secs = interval.seconds();
    let limit = limit_param(query.limit.as_deref())?;
    let from = seconds_param("from", query.from.as_deref())?;
    let to = seconds_param("to", query.to.as_deref())?;
    // Read the tick before the data: a tick landing meanwhile makes the
    // page count for the old tick, which the next request does not use.
    let now = unix_now();
    let at = (now, state.streams.hub.latest_tick());
    let page_key = PageKey {
        asset: asset.id,
        interval,
        from,
        to,
        limit,
        cursor: query.cursor.clone(),
    };
    if let Some((page, link, max_age)) = state.candle_pages.get(at, &page_key) {
        return Ok(respond(&page, link, &if_none_match, max_age));
    }
    let key = state.cursor_key.scoped(&format!("candles:{interval}"));
    let back = secs * (limit as i64 - 1);
    let PagedRange { from, to, start } = paged_range(
        &key,
        asset.id,
        (from, to),
        query.cursor.as_deref(),
        now,
        |to| (interval.open_of(to.min(now)) - back).max(0),
    )?;
    // Candles open at whole intervals: the first one at or after the start,
    // the last one holding `to` or now, whichever is earlier (no candle
    // opens in the future; this also keeps the arithmetic far from i64's
    // end whatever `to` a client sends).
    let first_open = interval.open_of(start.saturating_add(secs - 1));
    let last_open = interval.open_of(to.min(now));
    let mut candles = if first_open > last_open {
        Vec::new()
    } else {
        history::candles(
            &state.engine,
            state.archive.as_ref(),
            asset,
            interval,
            (first_open, last_open + secs - 1),
            (
                now - i64::from(state.window_seconds) + 1,
                state.window_seconds as usize + 1,
            ),
            limit + 1,
        )
        .await?
    };
    let next_cursor = (candles.len() > limit).then(|| {
        candles.truncate(limit);
        Cursor {
            asset: asset.id,
            after: candles.last().map_or(start, |c| c.open_time),
            from,
            to,
        }
        .encode(&key)
    });
    for c in &mut candles {
        c.mark_forming(now);
    }
    let link = next_cursor.as_ref().and_then(|c| {
        HeaderValue::from_str(&format!(
            "</api/v1/rates/{}/candles?interval={interval}&from={from}&to={to}&limit={limit}&cursor={c}>; rel=\"next\"",
            asset.name
        ))
        .ok()
    });
    // Long-lived only when the page cannot change any more: every candle
    // of it has closed, and either the client fixed the range (a `to`, or
    // a cursor that carries one) or a next page follows it (later candles
    // exist, so these are the first `limit` from its start for good). A
    // page whose range ends "now" moves on with every tick.
    let page_end = candles.last().map_or(last_open, |c| c.open_time) + secs - 1;
    let fixed = query.to.is_some() || query.cursor.is_some() || next_cursor.is_some();
    let max_age = if fixed && page_end < now - SETTLED_AFTER {
        MAX_AGE_SETTLED_CANDLES
    } else {
        MAX_AGE_RATES
    };
    let page = Prepared::json(&CandlePage {
        symbol: asset.name.clone(),
        interval: interval.name(),
        candles,
        next_cursor,
    });
    let resp = respond(&page, link.clone(), &if_none_match, max_age);
    state.candle_pages.put(at, page_key, (page, link, max_age));
    Ok(resp)
}

fn respond(
    page: &Prepared,
    link: Option<HeaderValue>,
    if_none_match: &IfNoneMatch,
    max_age: u32,
) -> Response {
    let mut resp = page.respond(if_none_match, max_age);
    if let Some(link) = link {
        resp.headers_mut().insert(header::LINK, link);
    }
    resp
}
