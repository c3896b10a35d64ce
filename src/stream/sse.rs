//! Server-sent events: the v2 streams over plain HTTP
//! (`/api/v2/events`), for clients that cannot or would rather not hold a
//! WebSocket (`curl -N`, a browser's `EventSource`, proxies that block
//! upgrades).
//!
//! One more transport of the same hub and outbox, not a second streaming
//! stack: the outbox writes into one end of an in-memory pipe whose other
//! end is the HTTP answer's body, in the event-stream encoding (each frame
//! an `event:`/`data:` pair, the last of each second with
//! `id: <second>@<epoch>`); the v2 protocol opens the streams the URL
//! names exactly as it does on a WebSocket. A session task per connection
//! writes the keep-alive comments and acts on what the outbox reports, as
//! a WebSocket's session does.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio::time::Instant;

use super::frame::{ErrorType, Event, close};
use super::grant::Grant;
use super::outbox::{Outbox, Transport, event};
use super::session::{End, Protocol, Writer};
use super::stall::{Sends, SocketFd, WriteStall};
use super::state::Streams;
use super::v2::V2;
use super::v2::request::Subscribe;

/// Room in the pipe between the outbox and the answer's body; beyond it
/// the outbox queues, as behind a full socket.
const PIPE: usize = 64 * 1024;

/// Starts an event stream of `request` (checked already): the answer's
/// body, while a task of its own runs the stream until the client goes,
/// the server shuts down or the stream ends. `guard` (its place under the
/// connection cap) is held as long as the stream.
pub fn start(
    streams: Arc<Streams>,
    request: Subscribe,
    epoch: String,
    fd: Option<SocketFd>,
    guard: impl Send + 'static,
    grant: Grant,
) -> Body {
    let (server, client) = tokio::io::duplex(PIPE);
    let outbox = Outbox::with_transport(server, Transport::event_stream(epoch));
    // A client that reconnects waits a second, not EventSource's default 3.
    outbox.write_frame(Bytes::from_static(b"retry: 1000\n\n"));
    tokio::spawn(async move {
        let _guard = guard;
        metrics::gauge!("ratesd_sse_connections").increment(1.0);
        run(&streams, &outbox, request, fd, grant).await;
        metrics::gauge!("ratesd_sse_connections").decrement(1.0);
    });
    Body::from_stream(tokio_util::io::ReaderStream::new(client))
}

async fn run(
    streams: &Streams,
    outbox: &Arc<Outbox>,
    request: Subscribe,
    fd: Option<SocketFd>,
    grant: Grant,
) {
    let sent = metrics::counter!("ratesd_ws_messages_sent_total");
    let mut w = Writer {
        streams,
        outbox,
        sent: &sent,
    };
    let ended = grant.ended();
    let mut v2 = V2::default().granted(grant);
    let end = match v2.open_url(request, &mut w).await {
        // Refused (the store unavailable): the error event is the answer.
        Ok(()) if !v2.is_live() => End::Gone,
        Ok(()) => live(streams, outbox, &mut w, fd, v2.is_live(), ended).await,
        Err(end) => end,
    };
    if let End::Close(code, reason) = &end
        && matches!(*code, close::TOKEN_EXPIRED | close::KEY_REVOKED)
    {
        // No close code on an event stream: its last event says why.
        let _ = w
            .send(
                Event::Error,
                super::v2::error_event(ErrorType::Unauthorized, reason),
            )
            .await;
    }
    if let End::Close(_, reason) = end {
        tracing::debug!(%reason, "ending an event stream");
    }
    outbox.leave();
    // What is queued goes out (it may be the error event) before the body
    // ends.
    let _ = tokio::time::timeout(Duration::from_secs(1), w.flush()).await;
    outbox.close();
}

/// The stream's life once it is live: keep-alive comments, what the outbox
/// reports, the shutdown.
async fn live(
    streams: &Streams,
    outbox: &Arc<Outbox>,
    w: &mut Writer<'_>,
    fd: Option<SocketFd>,
    is_live: bool,
    ended: impl std::future::Future<Output = (u16, &'static str)>,
) -> End {
    tokio::pin!(ended);
    // At least every 15 s; as often as WebSocket pings where those are set
    // more often, and within half the HTTP idle deadline.
    let every = streams.settings.keep_alive_every;
    let mut keep_alive = tokio::time::interval_at(Instant::now() + every, every);
    let mut stall = WriteStall::new(streams.settings.write_timeout);
    let shutdown = streams.shutdown.clone();
    loop {
        let step = tokio::select! {
            biased;
            () = shutdown.cancelled() => Err(End::going_away()),
            (code, reason) = &mut ended => Err(End::Close(code, reason.into())),
            events = std::future::poll_fn(|cx| outbox.poll_events(cx)) => {
                if events & event::BROKEN != 0 {
                    Err(End::Gone)
                } else if events & event::LAGGED != 0 {
                    metrics::counter!("ratesd_ws_messages_dropped_total", "reason" => "lagged")
                        .increment(1);
                    Err(End::Gone)
                } else if events & event::INTERRUPTED != 0 && is_live {
                    Err(End::interrupted())
                } else if events & event::DRAIN != 0 {
                    w.flush().await
                } else {
                    Ok(())
                }
            }
            _ = keep_alive.tick() => {
                if fd.and_then(Sends::of).is_some_and(|s| stall.stalled(s, Instant::now())) {
                    metrics::counter!("ratesd_ws_messages_dropped_total", "reason" => "write_timeout")
                        .increment(1);
                    Err(End::Gone)
                } else {
                    outbox.write_frame(Bytes::from_static(b": keep-alive\n\n"));
                    Ok(())
                }
            }
        };
        if let Err(end) = step {
            return end;
        }
    }
}
