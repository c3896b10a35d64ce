//! The WebSocket protocol of API.md: `assets`, `subscribe`, history, then a
//! live point each second.
//!
//! A session is written against one `Sink + Stream`. While it subscribes
//! it holds a `broadcast` receiver of the asset; once the history is sent
//! it hands the connection to the live fan-out, which writes the points
//! into the socket itself (see [`crate::live`] and [`crate::outbox`]), and
//! the session wakes only for the client, pings and what its outbox
//! reports. Nothing a client sends can panic it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WireFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::Problem;
use super::upgrade::WsUpgrade;
use crate::domain::{Asset, AssetId, UnixSeconds};
use crate::live::{Frame, LiveEvent};
use crate::outbox::{Live, Outbox, QUEUE_FRAMES, event};

/// Close codes (RFC 6455 section 7.4.1).
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const SERVICE_RESTART: u16 = 1012;
}

#[derive(Debug, Clone)]
pub struct WsSettings {
    pub max_frame_bytes: usize,
    pub ping_every: Duration,
    /// A connection that sends nothing (not even a pong) this long is closed.
    pub idle_timeout: Duration,
    /// A send that cannot complete this long means the client stopped reading.
    pub send_timeout: Duration,
    /// Data frames a client may send a second (bursts of twice that); 0: no limit.
    pub frames_per_second: u32,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            ping_every: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(10),
            frames_per_second: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum ErrorType {
    ValidationError,
    NotFound,
    RateLimited,
    Internal,
}

#[derive(Serialize)]
struct ErrorMessage<'a> {
    error_type: ErrorType,
    error_text: &'a str,
}

pub fn error_frame(error_type: ErrorType, text: &str) -> Utf8Bytes {
    Frame {
        action: "error",
        message: ErrorMessage {
            error_type,
            error_text: text,
        },
    }
    .to_text()
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// Live rates over a WebSocket.
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
#[utoipa::path(get, path = "/api/v1/ws", tag = "websocket",
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket session begins"),
        (status = 400, description = "A WebSocket upgrade with a bad version or no key",
            body = Problem, content_type = "application/problem+json"),
        (status = 426, description = "Not a WebSocket upgrade request (Upgrade: websocket)",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many connections from this address, or over the per-IP rate limit",
            body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn upgrade(
    ws: WsUpgrade,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    accept(ws, state, peer, &headers)
}

/// Starts a session on an accepted upgrade, within the per-IP cap.
pub fn accept(
    ws: WsUpgrade,
    state: AppState,
    peer: std::net::SocketAddr,
    headers: &axum::http::HeaderMap,
) -> Response {
    let ip = super::limit::client_ip(&state.trusted_proxies, peer.ip(), headers);
    let Some(slot) = state.ws_connections.try_acquire(ip) else {
        metrics::counter!("ratesd_ws_connections_refused_total").increment(1);
        return super::error::ApiError::TooManyConnections(state.ws_connections.max())
            .into_response();
    };
    let max = state.ws.max_frame_bytes;
    // Small buffers: clients send little, and the server's largest message
    // (the history) goes out in HISTORY_FRAGMENT-sized frames. A client that
    // lets more than a MiB pile up is dropped.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    ws.on_upgrade(config, move |socket, outbox| async move {
        let _slot = slot;
        tracing::debug!(%peer, "websocket connected");
        metrics::gauge!("ratesd_ws_connections").increment(1.0);
        Session::new(state, outbox).run(socket).await;
        metrics::gauge!("ratesd_ws_connections").decrement(1.0);
        tracing::debug!(%peer, "websocket closed");
    })
}

/// The history message is sent as frames of at most this many bytes.
const HISTORY_FRAGMENT: usize = 4096;

/// What a client asked for, or why it cannot be done.
#[derive(Debug, PartialEq)]
pub enum Request {
    Assets,
    Subscribe(AssetId),
}

#[derive(Debug, PartialEq)]
pub struct Refusal(pub ErrorType, pub String);

const ACTIONS: &str = "expected one of: assets, subscribe";

/// Decodes a client's text frame: never panics, whatever the text.
pub fn parse_request(text: &str) -> Result<Request, Refusal> {
    let invalid = |t: String| Refusal(ErrorType::ValidationError, t);
    let value: Value = serde_json::from_str(text)
        .map_err(|e| invalid(format!("message is not valid JSON: {e}")))?;
    let Value::Object(frame) = value else {
        return Err(invalid(
            "message must be a JSON object {\"action\": ..., \"message\": {...}}".into(),
        ));
    };
    let action = match frame.get("action") {
        None => return Err(invalid(format!("missing 'action'; {ACTIONS}"))),
        Some(Value::String(a)) => a.as_str(),
        Some(other) => {
            return Err(invalid(format!(
                "'action' must be a string, got {other}; {ACTIONS}"
            )));
        }
    };
    match action {
        "assets" => Ok(Request::Assets),
        "subscribe" => {
            let asset_id = frame.get("message").and_then(|m| m.get("assetId"));
            match asset_id {
                None => Err(invalid(
                    "subscribe needs message.assetId, an integer asset id".into(),
                )),
                Some(v) => v
                    .as_u64()
                    .and_then(|id| AssetId::try_from(id).ok())
                    .map(Request::Subscribe)
                    .ok_or_else(|| {
                        invalid(format!(
                            "assetId must be a non-negative integer, got {}",
                            truncate(&v.to_string(), 40)
                        ))
                    }),
            }
        }
        other => Err(invalid(format!(
            "unknown action '{}'; {ACTIONS}",
            truncate(other, 40)
        ))),
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Why a session ends.
enum End {
    /// The client closed or vanished: nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
}

impl End {
    /// The server is shutting down (1001).
    fn going_away() -> Self {
        Self::Close(close::GOING_AWAY, "server shutting down".into())
    }
}

/// Rate-limited frames in a row after which the connection is closed.
const MAX_RATE_VIOLATIONS: u32 = 10;

pub struct Session {
    state: AppState,
    /// The connection's write side, shared with the live fan-out.
    outbox: Arc<Outbox>,
    /// In the live fan-out (it has its history).
    subscribed: bool,
    /// Counts subscribes, so that the fan-out can tell this one from an earlier.
    generation: u64,
    inbound: Option<governor::DefaultDirectRateLimiter>,
    violations: u32,
    /// `ratesd_ws_messages_sent_total`, looked up once, not per message.
    sent: metrics::Counter,
}

impl Session {
    pub fn new(state: AppState, outbox: Arc<Outbox>) -> Self {
        let inbound = std::num::NonZeroU32::new(state.ws.frames_per_second).map(|rate| {
            let burst = rate.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1));
            governor::RateLimiter::direct(governor::Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            state,
            outbox,
            subscribed: false,
            generation: 0,
            inbound,
            violations: 0,
            sent: metrics::counter!("ratesd_ws_messages_sent_total"),
        }
    }

    /// Counts a data frame against the per-connection limit.
    fn admit(&mut self) -> Result<bool, End> {
        let Some(limiter) = &self.inbound else {
            return Ok(true);
        };
        if limiter.check().is_ok() {
            self.violations = 0;
            return Ok(true);
        }
        self.violations += 1;
        metrics::counter!("ratesd_ws_frames_rate_limited_total").increment(1);
        if self.violations > MAX_RATE_VIOLATIONS {
            return Err(End::Close(
                close::POLICY,
                "rate limit exceeded: too many frames".into(),
            ));
        }
        Ok(false)
    }

    /// Runs the session on a socket, whole rather than split in two halves:
    /// a split would put a lock in front of every read and write.
    pub async fn run<S>(mut self, mut socket: S)
    where
        S: Sink<Message> + Stream<Item = Result<Message, WsError>> + Unpin,
    {
        let settings = self.state.ws.clone();
        let shutdown = self.state.shutdown.clone();
        let mut ping =
            tokio::time::interval_at(Instant::now() + settings.ping_every, settings.ping_every);
        let mut last_heard = Instant::now();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let outbox = self.outbox.clone();
        let end = loop {
            // Live points do not wake this task: the fan-out writes them.
            // It wakes for what the outbox reports, for the client, for pings.
            let step = tokio::select! {
                biased;
                () = &mut cancelled => Err(End::going_away()),
                events = std::future::poll_fn(|cx| outbox.poll_events(cx)) => {
                    self.on_events(events, &mut socket).await
                }
                inbound = socket.next() => {
                    last_heard = Instant::now();
                    self.on_inbound(inbound, &mut socket).await
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > settings.idle_timeout {
                        Err(End::Close(close::POLICY, "no answer to pings".into()))
                    } else {
                        self.send(&mut socket, Message::Ping(Default::default())).await
                    }
                }
            };
            if let Err(end) = step {
                break end;
            }
        };
        self.outbox.leave();
        if let End::Close(code, reason) = end {
            tracing::debug!(code, %reason, "closing websocket");
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                socket.send(Message::Close(Some(frame))),
            )
            .await;
        }
    }

    async fn send<S: Sink<Message> + Unpin>(&self, sink: &mut S, msg: Message) -> Result<(), End> {
        self.in_time(sink.send(msg)).await?;
        self.sent.increment(1);
        Ok(())
    }

    /// Runs a write (a send, a flush) to the client within the send timeout.
    async fn in_time<E>(&self, write: impl Future<Output = Result<(), E>>) -> Result<(), End> {
        let mut write = std::pin::pin!(write);
        // Nearly every write completes at once; only one that waits on a
        // full socket pays for a timer.
        let done = match futures_util::poll!(&mut write) {
            std::task::Poll::Ready(done) => done,
            std::task::Poll::Pending => {
                match tokio::time::timeout(self.state.ws.send_timeout, write).await {
                    Ok(done) => done,
                    // The client stopped reading: its socket is full, a close frame cannot pass.
                    Err(_) => {
                        metrics::counter!("ratesd_ws_messages_dropped_total", "reason" => "send_timeout")
                            .increment(1);
                        return Err(End::Gone);
                    }
                }
            }
        };
        done.map_err(|_| End::Gone)
    }

    async fn on_inbound<S: Sink<Message> + Unpin>(
        &mut self,
        inbound: Option<Result<Message, WsError>>,
        sink: &mut S,
    ) -> Result<(), End> {
        let text = match inbound {
            None => return Err(End::Gone),
            Some(Ok(Message::Close(_))) => {
                // tungstenite has queued the answering close frame: send it.
                let _ = self.flush(sink).await;
                return Err(End::Gone);
            }
            Some(Err(e)) => return Err(read_error(e)),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return Ok(()),
            Some(Ok(Message::Text(_) | Message::Binary(_))) if !self.admit()? => {
                let text = format!(
                    "too many frames: at most {} a second; this one was ignored",
                    self.state.ws.frames_per_second
                );
                return self.send_error(sink, ErrorType::RateLimited, &text).await;
            }
            Some(Ok(Message::Binary(_))) => {
                let text = "binary frames are not supported; send JSON text frames";
                return self
                    .send_error(sink, ErrorType::ValidationError, text)
                    .await;
            }
            Some(Ok(Message::Text(text))) => text,
        };
        match parse_request(text.as_str()) {
            Ok(Request::Assets) => {
                let list = super::rest::AssetList::from_catalog(&self.state.catalog);
                let frame = Frame {
                    action: "assets",
                    message: list,
                };
                self.send(sink, Message::Text(frame.to_text())).await
            }
            Ok(Request::Subscribe(id)) => match self.state.catalog.by_id(id) {
                Some(asset) => self.subscribe(asset.clone(), sink).await,
                None => {
                    let text = format!("unknown assetId {id}; the assets action lists them");
                    self.send_error(sink, ErrorType::NotFound, &text).await
                }
            },
            Err(Refusal(kind, text)) => self.send_error(sink, kind, &text).await,
        }
    }

    async fn send_error<S: Sink<Message> + Unpin>(
        &self,
        sink: &mut S,
        kind: ErrorType,
        text: &str,
    ) -> Result<(), End> {
        self.send(sink, Message::Text(error_frame(kind, text)))
            .await
    }

    /// Attaches to the live feed first, then reads the history: every point
    /// is in one or the other (or both, and then dropped from the live side).
    async fn subscribe<S: Sink<Message> + Unpin>(
        &mut self,
        asset: Asset,
        sink: &mut S,
    ) -> Result<(), End> {
        // Replace any earlier subscription before anything else is sent.
        self.outbox.leave();
        self.subscribed = false;
        let Some(mut live) = self.state.hub.subscribe(asset.id) else {
            return self
                .send_error(sink, ErrorType::NotFound, "asset has no live feed")
                .await;
        };
        // Read after attaching: every point after this second is on `live`.
        let newest = self.state.hub.latest_tick();
        let history = self
            .state
            .history
            .get(
                &self.state.redis,
                asset.id,
                self.state.window_seconds,
                newest,
            )
            .await;
        let history = match history {
            Ok(h) => h,
            Err(e) => {
                return self
                    .send_error(sink, ErrorType::Internal, &e.to_string())
                    .await;
            }
        };
        self.send_history(sink, history.frame.clone()).await?;
        // Under the outbox's lock: into the fan-out first, then write what
        // the channel holds. A point the fan-out offers meanwhile waits for
        // the lock and is then skipped if the channel had it; a point
        // published after the drain finds the connection in the fan-out.
        self.generation += 1;
        let (hub, generation) = (&self.state.hub, self.generation);
        let live_mode = Live {
            asset: asset.id,
            generation,
            last: history.last.unwrap_or(UnixSeconds::MIN),
        };
        let caught_up = self.outbox.go_live(live_mode, |write| {
            hub.join(asset.id, self.outbox.clone(), generation);
            catch_up(&mut live, write)
        })?;
        self.sent.increment(caught_up);
        self.subscribed = true;
        Ok(())
    }

    /// Acts on what the outbox reports.
    async fn on_events<S: Sink<Message> + Unpin>(
        &mut self,
        events: u8,
        sink: &mut S,
    ) -> Result<(), End> {
        if events & event::BROKEN != 0 {
            return Err(End::Gone);
        }
        if events & event::LAGGED != 0 {
            metrics::counter!("ratesd_ws_messages_dropped_total", "reason" => "lagged")
                .increment(1);
            return Err(End::Close(
                close::POLICY,
                format!("client too slow: more than {QUEUE_FRAMES} frames waiting; reconnect"),
            ));
        }
        if events & event::INTERRUPTED != 0 && self.subscribed {
            // Points would stop with no word: let the client reconnect.
            return Err(interrupted());
        }
        if events & event::DRAIN != 0 {
            return self.flush(sink).await;
        }
        Ok(())
    }

    /// Writes out what is queued (the socket had no room for it).
    async fn flush<S: Sink<Message> + Unpin>(&self, sink: &mut S) -> Result<(), End> {
        self.in_time(sink.flush()).await
    }
}

fn interrupted() -> End {
    End::Close(
        close::SERVICE_RESTART,
        "live feed interrupted (rates store unavailable); reconnect".into(),
    )
}

/// Writes, oldest first, the points a subscribing connection's channel
/// took while it read and sent the history; ends the session on what else
/// the channel says.
fn catch_up(
    live: &mut broadcast::Receiver<LiveEvent>,
    write: &mut dyn FnMut(UnixSeconds, &Bytes),
) -> Result<(), End> {
    loop {
        match live.try_recv() {
            Ok(LiveEvent::Point(p)) => write(p.time, &p.wire),
            Ok(LiveEvent::Interrupted) => return Err(interrupted()),
            Ok(LiveEvent::ShuttingDown) => return Err(End::going_away()),
            Err(TryRecvError::Empty) => return Ok(()),
            Err(TryRecvError::Lagged(n)) => {
                metrics::counter!("ratesd_ws_messages_dropped_total", "reason" => "lagged")
                    .increment(n);
                return Err(End::Close(
                    close::POLICY,
                    format!("client too slow: fell {n} points behind; reconnect"),
                ));
            }
            Err(TryRecvError::Closed) => {
                return Err(End::Close(close::INTERNAL, "live feed ended".into()));
            }
        }
    }
}

impl Session {
    /// Sends a message as a run of small frames (one text frame, then
    /// continuations), so that no connection's write buffer grows to the
    /// size of the whole history.
    async fn send_history<S: Sink<Message> + Unpin>(
        &self,
        sink: &mut S,
        bytes: Bytes,
    ) -> Result<(), End> {
        if bytes.len() <= HISTORY_FRAGMENT {
            let text = Utf8Bytes::try_from(bytes).map_err(|_| End::Gone)?;
            return self.send(sink, Message::Text(text)).await;
        }
        let mut start = 0;
        while start < bytes.len() {
            let end = (start + HISTORY_FRAGMENT).min(bytes.len());
            let opcode = if start == 0 {
                Data::Text
            } else {
                Data::Continue
            };
            let frame = WireFrame::message(
                bytes.slice(start..end),
                OpCode::Data(opcode),
                end == bytes.len(),
            );
            self.send(sink, Message::Frame(frame)).await?;
            start = end;
        }
        Ok(())
    }
}

/// A read error: a frame over the size limit gets 1009, anything else
/// means the connection is gone.
fn read_error(e: WsError) -> End {
    match e {
        WsError::Capacity(e) => End::Close(close::TOO_BIG, format!("frame too large: {e}")),
        _ => End::Gone,
    }
}

/// Documentation of the frames, for the OpenAPI document.
pub mod frames {
    use serde::Serialize;
    use utoipa::ToSchema;

    use super::ErrorType;
    use crate::api::rest::AssetList;
    use crate::domain::{AssetId, Point};

    /// A frame from the client: `assets` or `subscribe`.
    #[derive(Serialize, ToSchema)]
    #[schema(example = json!({"action": "subscribe", "message": {"assetId": 1}}))]
    pub struct WsRequest {
        /// `assets` or `subscribe`.
        pub action: String,
        pub message: WsRequestMessage,
    }

    /// `{}` for `assets`; `{"assetId": 1}` for `subscribe`.
    #[derive(Serialize, ToSchema)]
    pub struct WsRequestMessage {
        #[serde(rename = "assetId")]
        pub asset_id: Option<AssetId>,
    }

    /// The answer to `assets`.
    #[derive(Serialize, ToSchema)]
    #[schema(example = json!({"action": "assets", "message": {"assets": [{"id": 1, "name": "EURUSD"}, {"id": 2, "name": "USDJPY"}]}}))]
    pub struct WsAssetsFrame {
        /// `assets`
        pub action: String,
        pub message: AssetList,
    }

    /// The first answer to `subscribe`: the last 30 minutes, oldest first.
    #[derive(Serialize, ToSchema)]
    #[schema(example = json!({"action": "asset_history", "message": {"points": [
        {"assetName": "EURUSD", "time": 1455883484, "assetId": 1, "value": 1.110481}]}}))]
    pub struct WsHistoryFrame {
        /// `asset_history`
        pub action: String,
        pub message: WsHistoryMessage,
    }

    #[derive(Serialize, ToSchema)]
    pub struct WsHistoryMessage {
        pub points: Vec<Point>,
    }

    /// A live point, one per second after the history.
    #[derive(Serialize, ToSchema)]
    #[schema(example = json!({"action": "point", "message":
        {"assetName": "EURUSD", "time": 1455883485, "assetId": 1, "value": 1.110948}}))]
    pub struct WsPointFrame {
        /// `point`
        pub action: String,
        pub message: Point,
    }

    /// Anything the server cannot act on; the connection stays open.
    #[derive(Serialize, ToSchema)]
    #[schema(example = json!({"action": "error", "message": {"error_type": "ValidationError",
        "error_text": "unknown action 'foo'; expected one of: assets, subscribe"}}))]
    pub struct WsErrorFrame {
        /// `error`
        pub action: String,
        pub message: WsErrorMessage,
    }

    #[derive(Serialize, ToSchema)]
    pub struct WsErrorMessage {
        pub error_type: ErrorType,
        pub error_text: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> String {
        match parse_request(text) {
            Err(Refusal(ErrorType::ValidationError, t)) => t,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_request(r#"{"action":"assets","message":{}}"#),
            Ok(Request::Assets)
        );
        assert_eq!(parse_request(r#"{"action":"assets"}"#), Ok(Request::Assets));
        assert_eq!(
            parse_request(r#"{"action":"subscribe","message":{"assetId":3}}"#),
            Ok(Request::Subscribe(3))
        );
    }

    #[test]
    fn every_bad_frame_is_refused_clearly() {
        assert!(refusal("hello").starts_with("message is not valid JSON"));
        assert!(refusal("[1,2]").contains("JSON object"));
        assert!(refusal("{}").contains("missing 'action'"));
        assert!(refusal(r#"{"action":5}"#).contains("must be a string"));
        assert_eq!(
            refusal(r#"{"action":"foo","message":{}}"#),
            "unknown action 'foo'; expected one of: assets, subscribe"
        );
        assert!(refusal(r#"{"action":"subscribe"}"#).contains("message.assetId"));
        assert!(refusal(r#"{"action":"subscribe","message":{}}"#).contains("message.assetId"));
        for bad in [r#""1""#, "1.5", "-1", "null", "99999999999", "[1]"] {
            let frame = format!(r#"{{"action":"subscribe","message":{{"assetId":{bad}}}}}"#);
            assert!(refusal(&frame).contains("assetId must be"), "{bad}");
        }
        let long = format!(r#"{{"action":"{}"}}"#, "x".repeat(10_000));
        assert!(refusal(&long).len() < 200, "echoes are truncated");
    }

    #[test]
    fn error_frames_follow_the_contract() {
        let f = error_frame(ErrorType::NotFound, "unknown assetId 9");
        let v: Value = serde_json::from_str(f.as_str()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"action":"error","message":{"error_type":"NotFound","error_text":"unknown assetId 9"}})
        );
    }
}
