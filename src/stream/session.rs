//! A WebSocket connection's life, whatever its protocol: the client's
//! frames in (size and rate limits, pings, closes), what the outbox reports
//! (a full socket to drain, a client too far behind, the feed interrupted),
//! pings out, the close at the end. The protocol ([`Protocol`]) acts on the
//! client's text frames.
//!
//! A session is written against one `Sink + Stream` of WebSocket messages,
//! so it runs as well over an in-memory stream in tests. Once a protocol
//! has handed the connection to the live fan-out ([`Link::go_live`]), live
//! points do not wake the session: the hub writes them into the socket.
//! Nothing a client sends can panic it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, Stream, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::frame::{ErrorType, close, close_wire};
use super::grant::Grant;
use super::outbox::{Outbox, QUEUE_FRAMES, event};
use super::stall::{Sends, SocketFd, WriteStall};
use super::state::Streams;

/// How long a closing connection waits for its close frame to go out and
/// for the client to close too.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Bytes a closing connection reads and drops while it waits (the rest of
/// a frame over the limit, up to the largest allowed).
const CLOSE_DISCARD: usize = 32 << 20;

/// Rate-limited frames in a row after which the connection is closed.
const MAX_RATE_VIOLATIONS: u32 = 10;

/// The WebSocket messages a session reads and writes.
pub trait Socket:
    Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin + Send
{
}
impl<S> Socket for S where
    S: Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin + Send
{
}

/// What a protocol does with a client's frames.
pub trait Protocol: Send {
    /// Acts on a text frame.
    fn on_text<S: Socket>(
        &mut self,
        text: &str,
        link: &mut Link<'_, S>,
    ) -> impl Future<Output = Result<(), End>> + Send;

    /// The protocol's error frame, for frames the session refuses itself
    /// (binary, over the rate limit).
    fn error_frame(&self, kind: ErrorType, text: &str) -> Utf8Bytes;

    /// True while the connection takes live points: an interrupted feed
    /// then ends it (1012), so that the client reconnects.
    fn is_live(&self) -> bool;

    /// What the protocol does as the session begins (a subscribe the URL
    /// named).
    fn start<S: Socket>(
        &mut self,
        link: &mut Link<'_, S>,
    ) -> impl Future<Output = Result<(), End>> + Send {
        let _ = link;
        async { Ok(()) }
    }
}

/// Why a session ends.
#[derive(Debug)]
pub enum End {
    /// The client closed or vanished: nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
}

impl End {
    /// The server is shutting down (1001).
    pub fn going_away() -> Self {
        Self::Close(close::GOING_AWAY, "server shutting down".into())
    }

    /// The live feed was lost (1012): points would stop with no word.
    pub fn interrupted() -> Self {
        Self::Close(
            close::SERVICE_RESTART,
            "live feed interrupted (rates store unavailable); reconnect".into(),
        )
    }
}

pub struct Session<P> {
    /// The socket's descriptor, for the stall check; `None` in tests.
    fd: Option<SocketFd>,
    streams: Arc<Streams>,
    /// The connection's write side, shared with the live fan-out.
    outbox: Arc<Outbox>,
    protocol: P,
    inbound: Option<governor::DefaultDirectRateLimiter>,
    violations: u32,
    sent: metrics::Counter,
    /// What the connection's credential allows: closed at its token's
    /// expiry (4001) or its key's revocation (4003).
    grant: Grant,
}

impl<P: Protocol> Session<P> {
    pub fn new(streams: Arc<Streams>, outbox: Arc<Outbox>, protocol: P) -> Self {
        let inbound = std::num::NonZeroU32::new(streams.settings.frames_per_second).map(|rate| {
            let burst = rate.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1));
            governor::RateLimiter::direct(governor::Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            fd: None,
            streams,
            outbox,
            protocol,
            inbound,
            violations: 0,
            sent: metrics::counter!("ratesd_ws_messages_sent_total"),
            grant: Grant::default(),
        }
    }

    /// Closes the connection when `grant` ends: at its token's expiry, or
    /// its key's revocation.
    pub fn granted(mut self, grant: Grant) -> Self {
        self.grant = grant;
        self
    }

    /// Checks the client's socket for a stall ([`super::stall`]).
    pub fn watching(mut self, fd: Option<SocketFd>) -> Self {
        self.fd = fd;
        self
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
    ///
    /// A block rather than an `async fn`: an `async fn` keeps its arguments
    /// twice in its state (as passed, and as moved into its body), which
    /// every connection's task would carry for its whole life.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub fn run<S: Socket>(mut self, mut socket: S) -> impl Future<Output = ()> {
        async move {
            self.run_on(&mut socket).await;
            // The socket closes here, after the closing handshake.
            drop(socket);
        }
    }

    async fn run_on<S: Socket>(&mut self, socket: &mut S) {
        let settings = self.streams.settings.clone();
        let shutdown = self.streams.shutdown.clone();
        let mut ping =
            tokio::time::interval_at(Instant::now() + settings.ping_every, settings.ping_every);
        let mut last_heard = Instant::now();
        let mut stall = WriteStall::new(settings.write_timeout);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let ended = self.grant.ended();
        tokio::pin!(ended);
        let outbox = self.outbox.clone();
        let mut link = Link {
            sink: &mut *socket,
            streams: &self.streams,
            outbox: &self.outbox,
            sent: &self.sent,
        };
        let started = Box::pin(self.protocol.start(&mut link)).await;
        let end = if let Err(end) = started {
            end
        } else {
            loop {
                // Live points do not wake this task: the fan-out writes them.
                // It wakes for what the outbox reports, for the client, for pings.
                let step = tokio::select! {
                    biased;
                    () = &mut cancelled => Err(End::going_away()),
                    (code, reason) = &mut ended => Err(End::Close(code, reason.into())),
                    events = std::future::poll_fn(|cx| outbox.poll_events(cx)) => {
                        self.on_events(events, socket).await
                    }
                    inbound = socket.next() => {
                        last_heard = Instant::now();
                        self.on_inbound(inbound, socket).await
                    }
                    _ = ping.tick() => {
                        if last_heard.elapsed() > settings.idle_timeout {
                            Err(End::Close(close::POLICY, "no answer to pings".into()))
                        } else if self
                            .fd
                            .and_then(Sends::of)
                            .is_some_and(|sends| stall.stalled(sends, Instant::now()))
                        {
                            // It reads nothing: a close frame could not pass either.
                            metrics::counter!("ratesd_ws_messages_dropped_total", "reason" => "write_timeout")
                                .increment(1);
                            tracing::debug!("closing a websocket whose client reads nothing");
                            Err(End::Gone)
                        } else {
                            self.link(socket).send(Message::Ping(Default::default())).await
                        }
                    }
                };
                if let Err(end) = step {
                    break end;
                }
            }
        };
        self.outbox.leave();
        if let End::Close(code, reason) = end {
            tracing::debug!(code, %reason, "closing websocket");
            // The closing handshake, below tungstenite (which cannot read
            // on after a frame over the limit): our close frame goes out
            // behind what is queued (a history the client has not read
            // yet), then the write side is shut, while what the client
            // still sends (the rest of a flood, its own close) is read and
            // dropped until it closes too.
            self.outbox.write_frame(close_wire(code, &reason));
            self.outbox.linger(CLOSE_LINGER, CLOSE_DISCARD).await;
        }
    }

    fn link<'a, S>(&'a self, sink: &'a mut S) -> Link<'a, S> {
        Link {
            sink,
            streams: &self.streams,
            outbox: &self.outbox,
            sent: &self.sent,
        }
    }

    async fn on_inbound<S: Socket>(
        &mut self,
        inbound: Option<Result<Message, WsError>>,
        sink: &mut S,
    ) -> Result<(), End> {
        let text = match inbound {
            None => return Err(End::Gone),
            Some(Ok(Message::Close(_))) => {
                // tungstenite has queued the answering close frame: send it.
                let _ = self.link(sink).flush().await;
                return Err(End::Gone);
            }
            Some(Err(e)) => return Err(read_error(e)),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return Ok(()),
            Some(Ok(Message::Text(_) | Message::Binary(_))) if !self.admit()? => {
                let text = format!(
                    "too many frames: at most {} a second; this one was ignored",
                    self.streams.settings.frames_per_second
                );
                let frame = self.protocol.error_frame(ErrorType::RateLimited, &text);
                return self.link(sink).send_text(frame).await;
            }
            Some(Ok(Message::Binary(_))) => {
                let text = "binary frames are not supported; send JSON text frames";
                let frame = self.protocol.error_frame(ErrorType::ValidationError, text);
                return self.link(sink).send_text(frame).await;
            }
            Some(Ok(Message::Text(text))) => text,
        };
        let mut link = Link {
            sink,
            streams: &self.streams,
            outbox: &self.outbox,
            sent: &self.sent,
        };
        // Boxed: a subscribe's state (a history read, its sends) is large
        // and short-lived; inline, every connection's task would carry its
        // size for the connection's whole life.
        Box::pin(self.protocol.on_text(text.as_str(), &mut link)).await
    }

    /// Acts on what the outbox reports.
    async fn on_events<S: Socket>(&mut self, events: u8, sink: &mut S) -> Result<(), End> {
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
        if events & event::INTERRUPTED != 0 && self.protocol.is_live() {
            return Err(End::interrupted());
        }
        if events & event::DRAIN != 0 {
            return self.link(sink).flush().await;
        }
        Ok(())
    }
}

/// A read error: a frame over the size limit gets 1009, a protocol
/// violation (a reserved opcode or bit, an unmasked frame, a stray
/// continuation, an oversized control frame) 1002, text that is not UTF-8
/// 1007; anything else means the connection is gone.
fn read_error(e: WsError) -> End {
    match e {
        WsError::Capacity(e) => End::Close(close::TOO_BIG, format!("frame too large: {e}")),
        WsError::Protocol(e) => End::Close(close::PROTOCOL, format!("protocol error: {e}")),
        WsError::Utf8(_) => End::Close(close::INVALID_DATA, "text frame is not valid UTF-8".into()),
        _ => End::Gone,
    }
}

mod link;

pub use self::link::{Link, Writer, catch_up, catch_up_market};

#[cfg(test)]
mod tests;
