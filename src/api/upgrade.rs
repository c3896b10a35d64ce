//! The WebSocket upgrade, done here rather than by axum's extractor so that
//! a session owns the tokio-tungstenite stream itself: it can then send the
//! large history message as a run of small frames (see `ws::send_history`),
//! which keeps each connection's write buffer small at 10,000 connections.

use std::future::Future;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::error::{Problem, problem_response};
use crate::outbox::{Outbox, SharedIo};

/// The session's WebSocket, over the connection's [`Outbox`] (which the
/// live fan-out writes to as well).
pub type Socket = WebSocketStream<SharedIo>;

/// A valid HTTP/1.1 WebSocket upgrade request.
pub struct WsUpgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

#[derive(Debug, thiserror::Error)]
pub enum UpgradeRejection {
    #[error(
        "a WebSocket upgrade needs HTTP/1.1 GET with `Connection: upgrade` and `Upgrade: websocket`"
    )]
    NotAnUpgrade,
    #[error("only WebSocket version 13 is supported")]
    Version,
    #[error("the Sec-WebSocket-Key header is missing")]
    NoKey,
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

impl IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        let status = match self {
            Self::NotAnUpgrade => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut resp = problem_response(
            status,
            &Problem {
                kind: "/problems/websocket-upgrade".into(),
                title: "WebSocket upgrade required".into(),
                status: status.as_u16(),
                detail: self.to_string(),
                parameter: None,
            },
        );
        if status == StatusCode::UPGRADE_REQUIRED {
            resp.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        resp
    }
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = UpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if parts.method != Method::GET
            || parts.version != Version::HTTP_11
            || !header_has(&parts.headers, header::CONNECTION, "upgrade")
            || !header_has(&parts.headers, header::UPGRADE, "websocket")
        {
            return Err(UpgradeRejection::NotAnUpgrade);
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(UpgradeRejection::Version);
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or(UpgradeRejection::NoKey)?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(UpgradeRejection::NotUpgradable)?;
        Ok(Self { key, on_upgrade })
    }
}

impl WsUpgrade {
    /// Answers 101 and runs `session` on the upgraded connection.
    pub fn on_upgrade<F, Fut>(self, config: WebSocketConfig, session: F) -> Response
    where
        F: FnOnce(Socket, Arc<Outbox>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let outbox = Outbox::new(TokioIo::new(upgraded));
                    let socket = WebSocketStream::from_raw_socket(
                        SharedIo(outbox.clone()),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    session(socket, outbox).await;
                }
                Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
            }
        });
        let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        resp
    }
}
