//! The v1 WebSocket's route, `/api/v1/ws` (and `/`, see `api::page`):
//! the caller's connection cap, then the session of [`crate::stream`].

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::V1State;
use crate::access::Client;
use crate::api::caller::Caller;
use crate::api::error::ApiError;
use crate::api::limit::ConnectionSlot;
use crate::api::responses::WsUpgradeRefused;
use crate::api::shared_limit::SharedSlot;
use crate::stream::session::Protocol;
use crate::stream::v1::V1;
use crate::stream::{self, WsUpgrade};

pub fn router() -> OpenApiRouter<Arc<V1State>> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// Live rates over a WebSocket.
///
/// The same protocol is served on `/` (a WebSocket upgrade there; a plain
/// GET gets the test page), for clients of the original service.
///
/// Every frame, both ways, is a JSON text frame `{"action": ..., "message": {...}}`;
/// the server sends nothing until the client asks. `GET /` with upgrade
/// headers is the same endpoint (for clients of the original service).
///
/// **Client frames** (`WsRequest`):
/// - `{"action":"assets","message":{}}` → `{"action":"assets","message":{"assets":[{"id":1,"name":"EURUSD"},...]}}` (`WsAssetsFrame`)
/// - `{"action":"subscribe","message":{"assetId":1}}` → first the history, every point
///   of the last 30 minutes (at most 1800), oldest first (`WsHistoryFrame`):
///   `{"action":"asset_history","message":{"points":[{"assetName":"EURUSD","time":1455883484,"assetId":1,"value":1.110481}]}}`;
///   then one `{"action":"point","message":{...}}` per new second (`WsPointFrame`).
///   The first live point is exactly one second after the last history
///   point: no gap, no duplicate. A second `subscribe` replaces the first.
///
/// **Errors** (`WsErrorFrame`), the connection stays open:
/// `{"action":"error","message":{"error_type":"ValidationError","error_text":"unknown action 'foo'; expected one of: assets, subscribe"}}`.
/// `error_type` is `ValidationError` (not JSON, a binary frame, a missing or
/// unknown action, a missing or non-integer assetId), `NotFound` (unknown
/// assetId), `RateLimited` or `Internal` (history unavailable; retry).
///
/// **Closes**: 1009 for a frame over the size limit (64 KiB); 1008 for a
/// client that falls more than 64 points behind or stops answering pings
/// (the server pings every 20 s, and closes after 60 s of silence), or sends
/// more than 10 frames a second for long (after `RateLimited` errors); 1012
/// when the live feed is interrupted (Redis unavailable); 1001 at server
/// shutdown. Reconnect and subscribe again after any of them. More than 256
/// connections from one address are refused with 429.
#[utoipa::path(get, path = "/api/v1/ws", tag = "websocket", operation_id = "websocket_v1",
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket session begins"),
        WsUpgradeRefused,
    ))]
async fn upgrade(ws: WsUpgrade, State(state): State<Arc<V1State>>, caller: Caller) -> Response {
    accept(ws, &state, &caller).await
}

/// Starts a v1 session on an accepted upgrade, within the caller's
/// connection cap.
pub async fn accept(ws: WsUpgrade, state: &Arc<V1State>, caller: &Caller) -> Response {
    accept_protocol(ws, state, caller, V1::granted(caller.grant())).await
}

/// Starts a session of `protocol` on an accepted upgrade, within the
/// caller's connection cap (one cap for v1, v2 and event streams
/// together).
pub async fn accept_protocol<P: Protocol + 'static>(
    ws: WsUpgrade,
    state: &Arc<V1State>,
    caller: &Caller,
    protocol: P,
) -> Response {
    match connection_slot(state, caller).await {
        Ok(slot) => stream::accept(
            ws.watching(caller.fd),
            state.streams.clone(),
            protocol,
            caller.addr,
            slot,
            &caller.grant(),
        ),
        Err(refused) => refused.into_response(),
    }
}

/// A connection's places under its caller's cap.
pub type Slots = (ConnectionSlot<Client>, Option<SharedSlot>);

/// A place under the caller's tier's connection cap (WebSockets and event
/// streams together), counted per client: on every node with Redis, on
/// this node alone without it (or while Redis cannot say).
pub async fn connection_slot(state: &V1State, caller: &Caller) -> Result<Slots, ApiError> {
    let max = caller.identity.tier.connections;
    let client = &caller.identity.client;
    let refused = || {
        metrics::counter!("ratesd_ws_connections_refused_total").increment(1);
        ApiError::TooManyConnections(max)
    };
    // No cap (0): nothing to count across nodes.
    if let Some(shared) = state.shared_connections.as_ref().filter(|_| max > 0) {
        match shared.open(&caller.identity.tier, client).await {
            // This node keeps its own count too, for when Redis is away.
            Ok(Some(slot)) => {
                let here = state.ws_connections.try_acquire(client.clone(), 0);
                return here.map(|here| (here, Some(slot))).ok_or_else(refused);
            }
            Ok(None) => return Err(refused()),
            Err(()) => {}
        }
    }
    let here = state.ws_connections.try_acquire(client.clone(), max);
    here.map(|here| (here, None)).ok_or_else(refused)
}
