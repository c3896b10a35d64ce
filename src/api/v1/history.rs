//! Paginated history: `/api/v1/rates/{symbol}/history`.

use std::time::Duration;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tower_http::timeout::TimeoutLayer;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::V1State;
use super::cursor::{Cursor, CursorKey};
use super::dto::HistoryPage;
use super::export;
use super::freshness::{MAX_AGE_RATES, MAX_AGE_SETTLED_HISTORY, SETTLED_AFTER};
use super::params::{limit_param, resolve, seconds_param};
use crate::api::caller::Caller;
use crate::api::error::{ApiError, Result};
use crate::api::http_cache::{IfNoneMatch, Prepared};
use crate::api::query::Params;
use crate::api::responses::{InvalidParameter, RateLimited, Unavailable, UnknownSymbol};
use crate::clock::unix_now;
use crate::domain::{AssetId, UnixSeconds};
use crate::store::history;

pub fn router() -> OpenApiRouter<Arc<V1State>> {
    // History may wait on Redis and PostgreSQL: it gets a deadline. The
    // other routes answer from memory (at most one Redis call a tick, under
    // the Redis client's own timeout) and are spared the timer.
    OpenApiRouter::new()
        .routes(routes!(rate_history))
        // A page of 1000 points is ~70 KB of JSON and gzips to ~6 KB.
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            HISTORY_DEADLINE,
        ))
}

/// How long a history request may take.
const HISTORY_DEADLINE: Duration = Duration::from_secs(10);
/// How long history and candles may take.
pub(super) const DEADLINE: Duration = HISTORY_DEADLINE;

/// History query. Every field is read as text so that a bad value gets a
/// problem body naming it.
#[derive(Debug, IntoParams)]
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
    /// `csv` or `ndjson`: every point of `from`..`to` (at most 31 days) in
    /// one streamed answer, with no `limit` and no `cursor` (as does an
    /// `Accept: text/csv` or `application/x-ndjson`); `json` (default): pages.
    #[param(value_type = Option<String>, pattern = "^(csv|ndjson|json)$", example = "csv")]
    format: Option<String>,
}

impl TryFrom<Params> for HistoryQuery {
    type Error = ApiError;

    fn try_from(mut p: Params) -> Result<Self> {
        Ok(Self {
            from: p.take("from")?,
            to: p.take("to")?,
            limit: p.take("limit")?,
            cursor: p.take("cursor")?,
            format: p.take("format")?,
        })
    }
}

/// A page of an asset's points, oldest first, or a whole range exported.
///
/// The live window (the last 30 minutes by default) is read from Redis,
/// older seconds from the PostgreSQL archive; a range spanning both reads
/// as one sequence. When there is a next page, the answer has its cursor in
/// `next_cursor` and a `Link: <...>; rel="next"` header with the full URL.
///
/// With `Accept: text/csv` or `Accept: application/x-ndjson` (or
/// `format=csv|ndjson`) and a `from` (and `to`, default now) at most 31 days
/// apart, every point of the range comes in one streamed answer: CSV with
/// the header `time,value`, or NDJSON with one point a line.
#[utoipa::path(get, path = "/api/v1/rates/{symbol}/history", tag = "rates", operation_id = "get_rate_history",
    params(
        ("symbol" = String, Path, description = "Asset name, as for /rates/{symbol}",
            pattern = r"^[-_/]*[A-Za-z0-9][-_/A-Za-z0-9]*$", max_length = 32, example = "EURUSD"),
        HistoryQuery,
    ),
    responses(
        (status = 200, description = "A page of points, or (csv, ndjson) every point of the range",
            content((HistoryPage = "application/json"), (String = "text/csv"), (String = "application/x-ndjson")),
            headers(("Link" = String, description = "`<url>; rel=\"next\"` when there is a next page"),
                ("ETag" = String),
                ("Cache-Control" = String, description = "public, max-age=60 for a range that ended over 2 s ago, else max-age=1"))),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        InvalidParameter,
        UnknownSymbol,
        Unavailable,
        RateLimited,
    ))]
#[tracing::instrument(level = "debug", skip(state, caller, params, if_none_match, accept))]
async fn rate_history(
    State(state): State<Arc<V1State>>,
    Path(symbol): Path<String>,
    caller: Caller,
    params: Params,
    if_none_match: IfNoneMatch,
    accept: export::Accept,
) -> Result<Response> {
    let asset = resolve(&state, &symbol, &caller)?;
    let query = HistoryQuery::try_from(params)?;
    let from = seconds_param("from", query.from.as_deref())?;
    let to = seconds_param("to", query.to.as_deref())?;
    if let Some(format) = export::requested(query.format.as_deref(), &accept)? {
        let paged = match (&query.limit, &query.cursor) {
            (Some(_), _) => Some("limit"),
            (None, Some(_)) => Some("cursor"),
            (None, None) => None,
        };
        return export::respond(state.clone(), asset, format, (from, to), paged).await;
    }
    let limit = limit_param(query.limit.as_deref())?;
    let window = i64::from(state.window_seconds);
    let PagedRange { from, to, start } = paged_range(
        &state.cursor_key,
        asset.id,
        (from, to),
        query.cursor.as_deref(),
        unix_now(),
        |to| to - window + 1,
    )?;
    let live_start = unix_now() - i64::from(state.window_seconds) + 1;
    let mut points = history::page(
        &state.engine,
        state.archive.as_ref(),
        asset,
        (start, to),
        live_start,
        limit + 1,
    )
    .await?;
    let next_cursor = (points.len() > limit).then(|| {
        points.truncate(limit);
        Cursor {
            asset: asset.id,
            after: points.last().map_or(start, |p| p.time),
            from,
            to,
        }
        .encode(&state.cursor_key)
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
    let mut resp = page.respond(&if_none_match, max_age);
    if let Some(link) = link {
        resp.headers_mut().insert(header::LINK, link);
    }
    Ok(resp)
}

/// The range a paged query (history, candles) asks for, and where its page
/// starts.
pub(super) struct PagedRange {
    pub from: UnixSeconds,
    pub to: UnixSeconds,
    /// After the cursor's last item, else `from`.
    pub start: UnixSeconds,
}

/// A paged query's range: a cursor's own (signed with `key` for `asset`;
/// the query may repeat its `from` and `to`, not change them), or the
/// query's `to` (default `now`) and `from` (default `default_from(to)`).
/// `from` after `to` is refused.
pub(super) fn paged_range(
    key: &CursorKey,
    asset: AssetId,
    (from, to): (Option<UnixSeconds>, Option<UnixSeconds>),
    cursor: Option<&str>,
    now: UnixSeconds,
    default_from: impl FnOnce(UnixSeconds) -> UnixSeconds,
) -> Result<PagedRange> {
    let cursor = cursor
        .map(|raw| {
            Cursor::decode(raw, key, asset).map_err(|e| ApiError::invalid("cursor", e.to_string()))
        })
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
            let to = to.unwrap_or(now);
            (from.unwrap_or_else(|| default_from(to)), to)
        }
    };
    if from > to {
        return Err(ApiError::invalid(
            "from",
            format!("from ({from}) must not be after to ({to})"),
        ));
    }
    // `after < to` (checked when decoding): no overflow.
    let start = cursor.map_or(from, |c| c.after + 1);
    Ok(PagedRange { from, to, start })
}
