//! The v2 routes: the WebSocket, `/api/v2/ws` (streams named in the URL
//! checked before the upgrade), and the same streams as server-sent events,
//! `/api/v2/events`; one per-IP connection cap for both (and v1), then the
//! many-stream session of [`crate::stream::v2`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::caller::Caller;
use super::error::{ApiError, Result};
use super::query::Params;
use super::responses::{
    InvalidParameter, TooManyConnectionsRefused, Unavailable, WsUpgradeRefused,
};
use super::v1::V1State;
use super::v1::ws::{accept_protocol, connection_slot};
use crate::stream::frame::ErrorType;
use crate::stream::v2::V2;
use crate::stream::v2::query::{last_event_id, url_subscribe};
use crate::stream::v2::request::Subscribe;
use crate::stream::{UpgradeRejection, WsUpgrade, sse};

pub fn router() -> OpenApiRouter<Arc<V1State>> {
    OpenApiRouter::new()
        .routes(routes!(upgrade))
        .routes(routes!(events))
}

/// One event of `/api/v2/events`, as the event-stream format has it: its
/// `data` a v2 frame's JSON (`subscribed`, `snapshot`, `data`, `error`), or
/// only an `id` (`<second>@<epoch>`: the resume point).
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "a schema of the OpenAPI document, never built")]
pub struct SseEvent {
    /// `subscribed`, `snapshot`, `data` or `error`.
    event: Option<String>,
    data: Option<String>,
    /// `<second>@<epoch>`
    id: Option<String>,
    /// Milliseconds a client waits before it reconnects (the first event).
    retry: Option<u64>,
}

/// Streams named in the URL (`/api/v2/ws?streams=...`, `/api/v2/events`).
/// Every field is read as text so that a bad value gets a problem naming
/// it.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UrlStreams {
    /// Streams, comma-separated (or `/`): `EURUSD@point,USDJPY@kline_1m`,
    /// `GBPUSD@ticker`, `!all@point`, `!all@ticker`.
    #[param(min_length = 1, example = "EURUSD@point,USDJPY@kline_1m")]
    streams: Option<String>,
    /// Seconds of past data in each stream's snapshot, 0 to 1800.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 1800)]
    history: Option<String>,
    /// Resume after this second (with `epoch`), as a v2 subscribe's `since`.
    #[param(value_type = Option<i64>, minimum = 0)]
    since: Option<String>,
    /// The epoch the client's data came from.
    #[param(max_length = 64)]
    epoch: Option<String>,
}

impl UrlStreams {
    /// The subscribe the URL names (checked against the catalog and what
    /// the caller may read), if any.
    fn subscribe(mut p: Params, state: &V1State, caller: &Caller) -> Result<Option<Subscribe>> {
        let q = Self {
            streams: p.take("streams")?,
            history: p.take("history")?,
            since: p.take("since")?,
            epoch: p.take("epoch")?,
        };
        let request = url_subscribe(
            q.streams.as_deref(),
            q.history.as_deref(),
            q.since.as_deref(),
            q.epoch.as_deref(),
        )
        .map_err(|(parameter, detail)| ApiError::invalid(parameter, detail))?;
        if let Some(request) = &request {
            V2::check(&state.streams, request, &caller.grant()).map_err(
                |(kind, parameter, detail)| match kind {
                    ErrorType::Forbidden => ApiError::Forbidden(detail),
                    _ => ApiError::invalid(parameter, detail),
                },
            )?;
        }
        Ok(request)
    }
}

/// Many streams on one WebSocket, with ids and resume.
///
/// A **stream** is `<symbol>@point` (the asset's point every second),
/// `<symbol>@kline_<interval>` (its forming candle after every point; 1m,
/// 5m, 15m, 30m, 1h, 4h, 1d), `<symbol>@ticker` (its 24-hour ticker after
/// every point: `WsV2TickerSnapshot`, `WsV2TickerData`), `!all@point`
/// (every asset's point of each second in one frame: `WsV2AllPointsSnapshot`,
/// `WsV2AllPointsData`) or `!all@ticker` (every asset's ticker each second:
/// `WsV2AllTickersData`). Symbols are case-insensitive, spelt as in REST.
/// A client that offers `permessage-deflate` gets histories, snapshots and
/// large frames compressed.
///
/// **Requests** (`WsV2Request`) `{"id": 1, "method": ..., "params": {...}}`,
/// each answered once under its id, by `{"id":..,"result":{...}}` or
/// `{"id":..,"error":{"code":..,"message":..}}` (`WsV2ErrorAnswer`):
/// - `subscribe` with `streams`, optional `history` (seconds, 0..=1800,
///   default 0), optional `since` (a Unix second) and `epoch` →
///   `{"streams":[...every stream of the connection...],"epoch":"..."}`
///   (`WsV2StreamsAnswer`). All or nothing: one bad stream subscribes none.
///   A stream the connection has is left as it is.
/// - `unsubscribe` with `streams` → `{"streams":[...what remains...]}`.
/// - `list` → `{"streams":[...]}`; `assets` → `{"assets":[...]}` (`WsV2AssetsAnswer`).
///
/// **Streams**: after the answer, each new stream gets one snapshot, then
/// live data. A point stream's snapshot (`WsV2PointSnapshot`) holds the
/// last `history` seconds, or with `since` every point after it, and
/// `recovered` (false when `since` is older than the live window or
/// `epoch` is not the current one); its first live point (`WsV2PointData`)
/// is exactly one second after the snapshot's last (after `since` when the
/// snapshot is empty). A kline stream's snapshot (`WsV2KlineSnapshot`)
/// holds the candles of the last `history` seconds, or the forming candle
/// alone; its live data (`WsV2KlineData`) is the forming candle after each
/// point, and a bucket's candle once more with `"closed":true` when it ends.
///
/// **Errors** keep the connection open: not JSON, a binary frame, a
/// missing or bad id (`id` null), an unknown method or param, a malformed
/// param, an unknown interval (`ValidationError`); an unknown symbol
/// (`NotFound`); more than `RATES_WS_MAX_STREAMS` streams (default 64;
/// `ValidationError`); too many frames (`RateLimited`); the store
/// unavailable (`Internal`). Pings, frame limits, rate limits and close
/// codes are v1's; v1 and v2 connections share the per-IP cap.
///
/// **Streams named in the URL** (`?streams=EURUSD@point,USDJPY@kline_1m`,
/// optional `history`, `since`, `epoch`) are subscribed at once, as if the
/// first request were a subscribe with id `"url"`, answered like one; a bad
/// list, an unknown stream or too many refuse the upgrade with a 400 problem
/// naming the parameter.
#[utoipa::path(get, path = "/api/v2/ws", tag = "websocket", operation_id = "websocket_v2",
    params(UrlStreams),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket session begins"),
        WsUpgradeRefused,
    ))]
async fn upgrade(
    ws: Result<WsUpgrade, UpgradeRejection>,
    State(state): State<Arc<V1State>>,
    caller: Caller,
    params: Params,
) -> Result<Response> {
    // The URL's streams first: a bad list is refused whatever the upgrade.
    let protocol = match UrlStreams::subscribe(params, &state, &caller)? {
        Some(request) => V2::from_url(request),
        None => V2::default(),
    }
    .granted(caller.grant());
    Ok(match ws {
        Ok(ws) => accept_protocol(ws, &state, &caller, protocol).await,
        Err(rejection) => rejection.into_response(),
    })
}

/// The v2 streams over plain HTTP: server-sent events.
///
/// The streams the URL names (as for `/api/v2/ws?streams=...`), with the
/// same frames: `event: subscribed` with the subscribe's answer, then each
/// stream's `event: snapshot` and `event: data`. The last event of each
/// second carries `id: <second>@<epoch>`; a client that reconnects with
/// `Last-Event-ID` (as `EventSource` does by itself) is resumed as a v2
/// subscribe with that `since` and `epoch`: no gap, no duplicate,
/// `recovered` false where v2 says so. A comment line (`: keep-alive`) at
/// least every 15 seconds. Bad parameters get a 400 problem before any
/// event. Counts against the same per-IP connection cap as WebSockets.
#[utoipa::path(get, path = "/api/v2/events", tag = "websocket", operation_id = "events_v2",
    params(UrlStreams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event: `<second>@<epoch>`")),
    responses(
        (status = 200, description = "An event stream: each event one v2 frame", content_type = "text/event-stream", body = SseEvent),
        InvalidParameter,
        TooManyConnectionsRefused,
        Unavailable,
    ))]
async fn events(
    State(state): State<Arc<V1State>>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
) -> Result<Response> {
    let mut request = UrlStreams::subscribe(params, &state, &caller)?.ok_or_else(|| {
        ApiError::invalid("streams", "name at least one stream: ?streams=EURUSD@point")
    })?;
    if let Some(id) = headers.get("last-event-id") {
        let (since, epoch) = id
            .to_str()
            .map_err(|_| "not text".to_owned())
            .and_then(last_event_id)
            .map_err(|detail| ApiError::invalid("Last-Event-ID", detail))?;
        request.since = Some(since);
        request.epoch = Some(epoch);
        // A resume point ahead of the clock is refused before any event (a
        // 400 stops EventSource's reconnecting), as a `since` would be.
        V2::check_since("since", request.since)
            .map_err(|detail| ApiError::invalid("Last-Event-ID", detail))?;
    }
    let slot = connection_slot(&state, &caller).await?;
    let epoch = state.streams.epoch().await.map_err(|e| {
        tracing::warn!(error = %e, "cannot read the data epoch for an event stream");
        ApiError::Unavailable("the data epoch could not be read".into())
    })?;
    let body = sse::start(
        state.streams.clone(),
        request,
        epoch,
        caller.fd,
        slot,
        caller.grant(),
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response())
}
