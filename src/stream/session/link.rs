//! What a protocol writes through ([`Link`]): the socket, the outbox it
//! shares with the live fan-out, the handoff to the fan-out; and the
//! catch-up of a subscribing connection's channel.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{End, Socket};
use crate::domain::UnixSeconds;
use crate::stream::frame::{Encoded, Event, close, wire_with};
use crate::stream::hub::all::{MarketEvent, MarketSecond};
use crate::stream::hub::{LiveEvent, LivePoint};
use crate::stream::outbox::{Live, Outbox};
use crate::stream::state::Streams;

/// A large message goes out as frames of at most this many bytes.
const FRAGMENT: usize = 4096;

/// What a protocol writes through: the socket, the outbox it shares with
/// the live fan-out, and what every connection shares.
pub struct Link<'a, S> {
    pub sink: &'a mut S,
    pub streams: &'a Streams,
    pub outbox: &'a Arc<Outbox>,
    /// `ratesd_ws_messages_sent_total`, looked up once, not per message.
    pub(super) sent: &'a metrics::Counter,
}

impl<S: Socket> Link<'_, S> {
    pub async fn send(&mut self, msg: Message) -> Result<(), End> {
        let timeout = self.streams.settings.send_timeout;
        in_time(timeout, self.sink.send(msg)).await?;
        self.sent.increment(1);
        Ok(())
    }

    pub async fn send_text(&mut self, text: Utf8Bytes) -> Result<(), End> {
        self.send(Message::Text(text)).await
    }

    /// Sends a text message as a run of small frames (one text frame, then
    /// continuations), so that no connection's buffers grow to the size of
    /// a whole history. Only while no feed of the connection is live: the
    /// fan-out's frames must not come between the fragments.
    /// `compressed`: `bytes` are a deflated message's payload
    /// (`permessage-deflate`): its first frame says so.
    pub async fn send_fragmented(&mut self, bytes: Bytes, compressed: bool) -> Result<(), End> {
        let mut start = 0;
        loop {
            let end = (start + FRAGMENT).min(bytes.len());
            let opcode = if start == 0 {
                Data::Text
            } else {
                Data::Continue
            };
            let fin = end == bytes.len();
            let first = start == 0 && compressed;
            self.write_direct(wire_with(bytes.slice(start..end), opcode, fin, first))
                .await?;
            if fin {
                return Ok(());
            }
            start = end;
        }
    }

    /// Writes a prepared frame straight into the outbox, past tungstenite
    /// (whose write buffer keeps the capacity of the largest message it
    /// ever wrote); waits, within the send timeout, when the socket is full.
    async fn write_direct(&mut self, frame: Bytes) -> Result<(), End> {
        let queued = self.outbox.write_frame(frame);
        self.sent.increment(1);
        if queued {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes out what is queued (the socket had no room for it).
    pub async fn flush(&mut self) -> Result<(), End> {
        let timeout = self.streams.settings.send_timeout;
        in_time(timeout, self.sink.flush()).await
    }

    /// What the connection's protocol writes through, past tungstenite.
    pub fn writer(&mut self) -> Writer<'_> {
        Writer {
            streams: self.streams,
            outbox: self.outbox,
            sent: self.sent,
        }
    }

    /// [`Writer::go_live`].
    pub fn go_live(
        &mut self,
        live: Live,
        catch_up: impl FnOnce(&mut dyn FnMut(UnixSeconds, &[Encoded])) -> Result<(), End>,
    ) -> Result<(), End> {
        self.writer().go_live(live, catch_up)
    }
}

/// What a protocol's messages go through, whatever the transport: the
/// connection's outbox, which writes them as WebSocket frames or as
/// event-stream events.
pub struct Writer<'a> {
    pub streams: &'a Streams,
    pub outbox: &'a Arc<Outbox>,
    /// `ratesd_ws_messages_sent_total`.
    pub sent: &'a metrics::Counter,
}

impl Writer<'_> {
    /// Writes one whole message (not fragmented: the fan-out's frames of
    /// the connection's other streams may come before or after it); waits,
    /// within the send timeout, when the socket is full.
    pub async fn send(&mut self, event: Event, json: Bytes) -> Result<(), End> {
        let queued = self.outbox.write_event(event, json);
        self.sent.increment(1);
        if queued {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes out what is queued (the socket had no room for it).
    pub async fn flush(&mut self) -> Result<(), End> {
        let timeout = self.streams.settings.send_timeout;
        let outbox = self.outbox;
        in_time(timeout, std::future::poll_fn(|cx| outbox.poll_flush(cx))).await
    }

    /// Hands the connection to the live fan-out of `live.feed`, gaplessly:
    /// under the outbox's lock it joins the fan-out first, then `catch_up`
    /// writes what the receiver (attached before the snapshot was read)
    /// holds newer than `live.last` (see [`catch_up`]). A point the fan-out
    /// offers meanwhile waits for the lock and is then skipped if the
    /// receiver had it; a point published after the drain finds the
    /// connection in the fan-out.
    pub fn go_live(
        &mut self,
        live: Live,
        catch_up: impl FnOnce(&mut dyn FnMut(UnixSeconds, &[Encoded])) -> Result<(), End>,
    ) -> Result<(), End> {
        let (hub, outbox) = (&self.streams.hub, self.outbox);
        let caught_up = outbox.go_live(live, |write| {
            hub.join(live.feed, outbox.clone(), live.generation);
            catch_up(write)
        })?;
        self.sent.increment(caught_up);
        Ok(())
    }
}

/// Runs a write (a send, a flush) to the client within `timeout`.
async fn in_time<E>(
    timeout: Duration,
    write: impl Future<Output = Result<(), E>>,
) -> Result<(), End> {
    let mut write = std::pin::pin!(write);
    // Nearly every write completes at once; only one that waits on a
    // full socket pays for a timer.
    let done = match futures_util::poll!(&mut write) {
        std::task::Poll::Ready(done) => done,
        std::task::Poll::Pending => match tokio::time::timeout(timeout, write).await {
            Ok(done) => done,
            // The client stopped reading: its socket is full, a close frame cannot pass.
            Err(_) => {
                metrics::counter!("ratesd_ws_messages_dropped_total", "reason" => "send_timeout")
                    .increment(1);
                return Err(End::Gone);
            }
        },
    };
    done.map_err(|_| End::Gone)
}

/// Hands, oldest first, the points a subscribing connection's channel
/// took while it read and sent the snapshot to `each`; ends the session on
/// what else the channel says.
pub fn catch_up(
    live: &mut broadcast::Receiver<LiveEvent>,
    mut each: impl FnMut(&LivePoint),
) -> Result<(), End> {
    drain(live, "points", |event| match event {
        LiveEvent::Point(p) => {
            each(&p);
            Ok(())
        }
        LiveEvent::Interrupted => Err(End::interrupted()),
        LiveEvent::ShuttingDown => Err(End::going_away()),
    })
}

/// As [`catch_up`], for a whole-market stream's channel: each second it
/// took while the stream opened goes to `each`, oldest first.
pub fn catch_up_market(
    live: &mut broadcast::Receiver<MarketEvent>,
    mut each: impl FnMut(&MarketSecond),
) -> Result<(), End> {
    drain(live, "seconds", |event| match event {
        MarketEvent::Second(s) => {
            each(&s);
            Ok(())
        }
        MarketEvent::Interrupted => Err(End::interrupted()),
        MarketEvent::ShuttingDown => Err(End::going_away()),
    })
}

/// Takes what a channel holds, each to `take`, until it is empty or
/// `take` ends the session; a channel that lagged (it fell more `unit`s
/// behind than it keeps) or closed ends it too.
fn drain<T: Clone>(
    live: &mut broadcast::Receiver<T>,
    unit: &str,
    mut take: impl FnMut(T) -> Result<(), End>,
) -> Result<(), End> {
    loop {
        match live.try_recv() {
            Ok(event) => take(event)?,
            Err(TryRecvError::Empty) => return Ok(()),
            Err(TryRecvError::Lagged(n)) => {
                metrics::counter!("ratesd_ws_messages_dropped_total", "reason" => "lagged")
                    .increment(n);
                return Err(End::Close(
                    close::POLICY,
                    format!("client too slow: fell {n} {unit} behind; reconnect"),
                ));
            }
            Err(TryRecvError::Closed) => {
                return Err(End::Close(close::INTERNAL, "live feed ended".into()));
            }
        }
    }
}
