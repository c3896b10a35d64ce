//! The WebSocket upgrade, done here rather than by axum's extractor so that
//! a session owns the tokio-tungstenite stream itself: it can then send the
//! large history message as a run of small frames
//! ([`super::session::Link::send_fragmented`]), which keeps each
//! connection's write buffer small at 10,000 connections.

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

use super::deflate::{Negotiated, negotiate};
use super::outbox::{Outbox, SharedIo};
use super::session::{Protocol, Session};
use super::stall::SocketFd;
use super::state::Streams;
use futures_util::FutureExt;

/// The session's WebSocket, over the connection's [`Outbox`] (which the
/// live fan-out writes to as well).
pub type Socket = WebSocketStream<SharedIo>;

/// A valid HTTP/1.1 WebSocket upgrade request.
pub struct WsUpgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    /// The socket's descriptor, when the server gave it ([`Self::watching`]).
    fd: Option<SocketFd>,
    /// The compression the client offered and the server can take.
    deflate: Option<Negotiated>,
}

/// Why a request cannot be upgraded (the API answers it as a problem).
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
    #[error("the Sec-WebSocket-Key header must be 16 bytes in base64")]
    BadKey,
    #[error("the Sec-WebSocket-Key header must appear once")]
    RepeatedKey,
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

/// Whether a request asks for a WebSocket (`websocket` among its
/// `Upgrade` tokens, in any of its `Upgrade` headers): as the upgrade
/// itself reads it, so that nothing upgrades that the gate took for a plain
/// request.
pub fn asks_for_websocket(headers: &HeaderMap) -> bool {
    header_has(headers, header::UPGRADE, "websocket")
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
            || !asks_for_websocket(&parts.headers)
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
        let mut keys = parts.headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
        let key = keys.next().cloned().ok_or(UpgradeRejection::NoKey)?;
        // RFC 6455 4.2.1: the header must not appear more than once.
        if keys.next().is_some() {
            return Err(UpgradeRejection::RepeatedKey);
        }
        if !valid_key(&key) {
            return Err(UpgradeRejection::BadKey);
        }
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(UpgradeRejection::NotUpgradable)?;
        Ok(Self {
            key,
            on_upgrade,
            fd: None,
            deflate: negotiate(&parts.headers),
        })
    }
}

/// RFC 6455 4.2.1: the key is 16 random bytes, base64-encoded (24 characters).
fn valid_key(key: &HeaderValue) -> bool {
    use base64::Engine;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key.as_bytes())
            .is_ok_and(|k| k.len() == 16)
}

impl WsUpgrade {
    /// The upgraded socket's descriptor, for the session's stall check.
    pub fn watching(mut self, fd: Option<SocketFd>) -> Self {
        self.fd = fd;
        self
    }

    /// Answers 101 and runs `session` on the upgraded connection; with
    /// `deflate`, `permessage-deflate` as the client offered it (frames of
    /// at most `max` bytes).
    pub fn on_upgrade<F, Fut>(
        self,
        config: WebSocketConfig,
        deflate: bool,
        max: usize,
        session: F,
    ) -> Response
    where
        F: FnOnce(Socket, Arc<Outbox>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        let agreed = self.deflate.filter(|_| deflate);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    let outbox = match agreed {
                        Some(agreed) => Outbox::deflating(io, agreed, max),
                        None => Outbox::new(io),
                    };
                    let socket = WebSocketStream::from_raw_socket(
                        SharedIo(outbox.clone()),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    // A task of its own: this one's state (the upgrade,
                    // the session's makings) is not carried for the
                    // connection's life.
                    tokio::spawn(session(socket, outbox));
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
        if let Some(agreed) = agreed {
            h.insert(header::SEC_WEBSOCKET_EXTENSIONS, agreed.header());
        }
        resp
    }
}

/// Accepts an upgrade: answers 101 and runs `protocol`'s session on the
/// connection. `guard` (the connection's slot under the connection cap) is
/// held as long as the connection; at `expires` (a token's) it is closed.
pub fn accept<P: Protocol + 'static>(
    ws: WsUpgrade,
    streams: Arc<Streams>,
    protocol: P,
    peer: std::net::SocketAddr,
    guard: impl Send + 'static,
    grant: &super::Grant,
) -> Response {
    let grant = grant.clone();
    let max = streams.settings.max_frame_bytes;
    let fd = ws.fd;
    // Small buffers: clients send little (a larger frame grows the read
    // buffer as it arrives), and the server's large messages (histories,
    // snapshots) go past tungstenite's write buffer, straight to the
    // outbox. A client that lets more than a MiB pile up is dropped.
    let config = WebSocketConfig::default()
        .read_buffer_size(512)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let deflate = streams.settings.deflate;
    ws.on_upgrade(config, deflate, max, move |socket, outbox| {
        let connected = Connected::open(peer, guard);
        // A combinator rather than a block awaiting it: a block would hold
        // the session twice (as captured, and as awaited).
        Session::new(streams, outbox, protocol)
            .watching(fd)
            .granted(grant)
            .run(socket)
            .map(move |()| drop(connected))
    })
}

/// An open WebSocket: counted in `ratesd_ws_connections` and holding its
/// place under the connection cap until dropped.
struct Connected<G> {
    peer: std::net::SocketAddr,
    _guard: G,
}

impl<G> Connected<G> {
    fn open(peer: std::net::SocketAddr, guard: G) -> Self {
        tracing::debug!(%peer, "websocket connected");
        metrics::gauge!("ratesd_ws_connections").increment(1.0);
        Self {
            peer,
            _guard: guard,
        }
    }
}

impl<G> Drop for Connected<G> {
    fn drop(&mut self) {
        metrics::gauge!("ratesd_ws_connections").decrement(1.0);
        tracing::debug!(peer = %self.peer, "websocket closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sixteen_bytes_of_base64() {
        let key = |k: &'static str| valid_key(&HeaderValue::from_static(k));
        assert!(key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!key("short"));
        assert!(!key("not base64 at all!!!!!!!"));
        assert!(!key("dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!key("dGhlIHNhbXBsZSBub25jZXg="));
    }
}
