//! `GET /`: the test page, or the WebSocket for clients of the original
//! service, which connect to `ws://host:8080/`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::caller::Caller;
use super::error::ApiError;
use super::v1::V1State;
use super::v1::ws::accept;
use crate::stream::{UpgradeRejection, WsUpgrade};

/// One self-contained page: no build step, no external assets.
const PAGE: &str = include_str!("page.html");

/// `/`: the test page, or the v1 WebSocket.
pub fn router() -> Router<Arc<V1State>> {
    Router::new().route("/", get(root))
}

async fn root(
    State(state): State<Arc<V1State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    ws: Result<WsUpgrade, UpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => accept(ws, &state, peer, &caller).await,
        // An upgrade that is wrong gets its problem, as on /api/v1/ws; any
        // other request, the page.
        Err(rejection) if !matches!(rejection, UpgradeRejection::NotAnUpgrade) => {
            rejection.into_response()
        }
        Err(_) if state.enable_ui => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            PAGE,
        )
            .into_response(),
        Err(_) => ApiError::NotFound("the test page is disabled (RATES_ENABLE_UI=false)".into())
            .into_response(),
    }
}
