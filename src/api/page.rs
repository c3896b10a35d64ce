//! `GET /`: the test page, or the WebSocket for clients of the original
//! service, which connect to `ws://host:8080/`.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::caller::Caller;
use super::error::ApiError;
use super::v1::V1State;
use super::v1::ws::accept;
use crate::stream::{UpgradeRejection, WsUpgrade};

/// One self-contained page, no external assets: `page.html` with the
/// JavaScript client (`clients/js`, built by `npm run embed` into
/// `ratesd-client.js`, which `.ci/run` checks against a fresh build) put
/// in its script, so that serving it needs no Node.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("page.html").replacen("/*@ratesd-client@*/", include_str!("ratesd-client.js"), 1)
});

/// Where the test page is served.
pub const PATH: &str = "/";

/// `/`: the test page, or the v1 WebSocket.
pub fn router() -> Router<Arc<V1State>> {
    Router::new().route(PATH, get(root))
}

async fn root(
    State(state): State<Arc<V1State>>,
    caller: Caller,
    ws: Result<WsUpgrade, UpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => accept(ws, &state, &caller).await,
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
            PAGE.as_str(),
        )
            .into_response(),
        Err(_) => ApiError::NotFound("the test page is disabled (RATES_ENABLE_UI=false)".into())
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_holds_the_client() {
        let page = super::PAGE.as_str();
        assert!(!page.contains("/*@ratesd-client@*/"));
        assert!(page.contains("export class RatesClient"));
        assert!(page.contains("new RatesClient("));
    }
}
