//! The v2 WebSocket's route, `/api/v2/ws`: the per-IP connection cap, then
//! the many-stream session of [`crate::stream::v2`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::WsUpgradeRefused;
use super::v1::V1State;
use super::v1::ws::accept_protocol;
use crate::stream::WsUpgrade;
use crate::stream::v2::V2;

pub fn router() -> OpenApiRouter<Arc<V1State>> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// Many streams on one WebSocket, with ids and resume.
///
/// A **stream** is `<symbol>@point` (the asset's point every second) or
/// `<symbol>@kline_<interval>` (its forming candle after every point; 1m,
/// 5m, 15m, 30m, 1h, 4h, 1d). Symbols are case-insensitive, spelt as in REST.
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
#[utoipa::path(get, path = "/api/v2/ws", tag = "websocket", operation_id = "websocket_v2",
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket session begins"),
        WsUpgradeRefused,
    ))]
async fn upgrade(
    ws: WsUpgrade,
    State(state): State<Arc<V1State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    accept_protocol(ws, &state, peer, &headers, V2::default())
}
