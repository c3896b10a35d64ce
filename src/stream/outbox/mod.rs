//! The write side of a WebSocket connection, shared by its session and the
//! live fan-out.
//!
//! Once a subscriber has its history, the fan-out ([`super::hub`]) writes
//! each point's frame, encoded once, straight into its socket: no task is
//! woken per point and per connection. Its session task is woken only when
//! it has something to do: a full socket to drain, a client too far behind,
//! the feed interrupted, the server shutting down.
//!
//! Every byte bound for the socket, the session's (through tungstenite, via
//! [`SharedIo`]) and the fan-out's, passes one mutex and one queue, and
//! each write hands over whole frames: frames never interleave. A write
//! the socket cannot take whole leaves its rest queued, and everything
//! after it queues behind it until the session drains the queue.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::{ArcWake, AtomicWaker, waker_ref};
use tokio::io::{AsyncRead, AsyncWrite};

use super::deflate::{Inflater, Negotiated};
use super::frame::Encoded;
use crate::domain::{AssetId, Interval, UnixSeconds};

/// The connection's byte stream (an upgraded HTTP connection, or any
/// stream in tests).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Frames per feed the fan-out may queue for a connection whose socket is
/// full before the connection is closed as too slow (a v1 connection has
/// one feed; a v2 connection one per stream).
pub const QUEUE_FRAMES: usize = 64;

/// Bytes the session's own writes may add to a queue that is waiting on a
/// full socket; past them its writes wait (the fan-out's are bounded by
/// [`QUEUE_FRAMES`]).
const MAX_QUEUED_BYTES: usize = 64 * 1024;

/// What the session is woken for (bits of [`Outbox::poll_events`]).
pub mod event {
    /// Bytes are queued: flush them.
    pub const DRAIN: u8 = 1;
    /// The client fell more than [`super::QUEUE_FRAMES`] frames behind.
    pub const LAGGED: u8 = 2;
    /// The live feed was interrupted.
    pub const INTERRUPTED: u8 = 4;
    /// A write failed: the client is gone.
    pub const BROKEN: u8 = 8;
}

/// What the fan-out writes, one frame set per tick and asset, encoded once
/// for every connection that takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feed {
    /// v1: `{"action":"point","message":{...}}`.
    V1(AssetId),
    /// v2: `{"stream":"<symbol>@point","data":{...}}`.
    Point(AssetId),
    /// v2: `{"stream":"<symbol>@kline_<interval>","data":{...}}`, the
    /// forming candle (after the closed one when a bucket ended).
    Kline(AssetId, Interval),
    /// v2: `{"stream":"<symbol>@ticker","data":{...}}` after each point.
    Ticker(AssetId),
    /// v2: `{"stream":"!all@point","data":{"time":..,"points":[...]}}`.
    AllPoints,
    /// v2: `{"stream":"!all@ticker","data":{"time":..,"tickers":[...]}}`.
    AllTickers,
}

/// A feed the fan-out writes to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub feed: Feed,
    /// Which subscribe of the session this is: a fan-out entry left from
    /// an earlier subscribe to the same feed writes nothing.
    pub generation: u64,
    /// The newest second written to the client.
    pub last: UnixSeconds,
}

/// What [`Outbox::offer`] did with a point.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    Written,
    /// Not newer than what the client has.
    Skipped,
    /// This connection no longer takes this feed: drop the entry.
    Gone,
}

pub struct Outbox {
    inner: Mutex<Inner>,
    events: AtomicU8,
    session: AtomicWaker,
    /// Its transport is an event stream (read without the lock: the hub
    /// asks while the lock is held, in [`Outbox::go_live`]).
    event_stream: bool,
    /// A WebSocket that agreed to `permessage-deflate`: large frames go
    /// compressed.
    deflate: bool,
}

struct Inner {
    /// `None` once the session has ended: the socket is closed then, even
    /// while the fan-out still holds the outbox.
    io: Option<Pin<Box<dyn Io>>>,
    /// How frames are written: WebSocket frames, or (with the epoch its
    /// event ids carry) an event stream's events.
    transport: Transport,
    queue: Queue,
    /// The client's compressed frames inflated on the way in, where agreed.
    inflater: Option<Box<Inflater>>,
    /// The feeds the fan-out writes here (a few; a linear scan is fastest).
    live: Vec<Live>,
    broken: bool,
}

impl Inner {
    /// The live mode of fan-out entry (`feed`, `generation`), if the
    /// connection is still open and live under it.
    fn live_for(&mut self, feed: Feed, generation: u64) -> Option<&mut Live> {
        if self.io.is_none() || self.broken {
            return None;
        }
        self.live
            .iter_mut()
            .find(|l| l.feed == feed && l.generation == generation)
    }

    /// Frames queued behind a full socket past which the client is too slow.
    fn lag_limit(&self) -> usize {
        QUEUE_FRAMES * self.live.len().max(1)
    }
}

/// Bytes the socket has not taken yet, whole frames (the first may be the
/// rest of a partly written one).
#[derive(Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    bytes: usize,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    /// Writes the queue out; pending while the socket is full.
    fn drain(
        &mut self,
        mut socket: Pin<&mut dyn Io>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while let Some(front) = self.frames.front_mut() {
            let n = match std::task::ready!(socket.as_mut().poll_write(cx, front)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => n,
                Err(e) => return Poll::Ready(Err(e)),
            };
            self.bytes -= n;
            if n == front.len() {
                self.frames.pop_front();
            } else {
                *front = front.slice(n..);
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The fan-out's writes register this waker with the socket: when a full
/// socket has room again, the session is woken to drain the queue.
impl ArcWake for Outbox {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.raise(event::DRAIN);
    }
}

impl Outbox {
    /// A WebSocket connection's outbox.
    pub fn new(io: impl Io) -> Arc<Self> {
        Self::with_transport(io, Transport::WebSocket)
    }

    /// A WebSocket's outbox that agreed to `permessage-deflate`: large
    /// frames out compressed, the client's compressed ones inflated (each
    /// at most `max` bytes).
    pub fn deflating(io: impl Io, agreed: Negotiated, max: usize) -> Arc<Self> {
        Self::build(io, Transport::WebSocket, Some(Inflater::new(agreed, max)))
    }

    pub fn with_transport(io: impl Io, transport: Transport) -> Arc<Self> {
        Self::build(io, transport, None)
    }

    fn build(io: impl Io, transport: Transport, inflater: Option<Inflater>) -> Arc<Self> {
        let event_stream = matches!(transport, Transport::EventStream { .. });
        Arc::new(Self {
            event_stream,
            deflate: inflater.is_some(),
            inner: Mutex::new(Inner {
                io: Some(Box::pin(io)),
                transport,
                inflater: inflater.map(Box::new),
                queue: Queue::default(),
                live: Vec::new(),
                broken: false,
            }),
            events: AtomicU8::new(0),
            session: AtomicWaker::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a frame half queued
        // (pushes are single operations): the data is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the session for `event`.
    pub fn raise(&self, event: u8) {
        self.events.fetch_or(event, Ordering::AcqRel);
        self.session.wake();
    }

    /// The events raised since the last call, or pending until one is.
    pub fn poll_events(&self, cx: &mut Context<'_>) -> Poll<u8> {
        self.session.register(cx.waker());
        match self.events.swap(0, Ordering::AcqRel) {
            0 => Poll::Pending,
            events => Poll::Ready(events),
        }
    }

    /// The fan-out: writes `frames` (those of second `time`, in order) if
    /// this connection is live on `feed` under `generation` and the second
    /// is newer than what it has.
    pub fn offer(
        self: &Arc<Self>,
        feed: Feed,
        generation: u64,
        time: UnixSeconds,
        frames: &[Encoded],
    ) -> Offer {
        let mut inner = self.lock();
        let Some(live) = inner.live_for(feed, generation) else {
            return Offer::Gone;
        };
        if time <= live.last {
            return Offer::Skipped;
        }
        live.last = time;
        self.push_frames(&mut inner, frames);
        Offer::Written
    }

    /// Writes out the queue; pending while the socket is full.
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(io) = inner.io.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        match std::task::ready!(inner.queue.drain(io.as_mut(), cx)) {
            Ok(()) => io.as_mut().poll_flush(cx),
            Err(e) => {
                inner.broken = true;
                Poll::Ready(Err(e))
            }
        }
    }

    /// Writes a whole frame the session prepared (a large message, past
    /// tungstenite's buffer). True when it waits in the queue behind a full
    /// socket: flush before writing more.
    pub fn write_frame(self: &Arc<Self>, frame: Bytes) -> bool {
        let mut inner = self.lock();
        self.push(&mut inner, frame);
        !inner.queue.is_empty()
    }

    /// Stops the fan-out writing to this connection (a new v1 subscribe,
    /// or the end).
    pub fn leave(&self) {
        self.lock().live.clear();
    }

    /// Stops the fan-out writing `feed` here (a v2 unsubscribe).
    pub fn leave_feed(&self, feed: Feed) {
        self.lock().live.retain(|l| l.feed != feed);
    }

    /// Closes the socket (the session ended).
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.live.clear();
        inner.queue.clear();
        inner.io = None;
    }

    /// Whether the fan-out entry (`feed`, `generation`) still writes here.
    pub fn serves(&self, feed: Feed, generation: u64) -> bool {
        self.lock().live_for(feed, generation).is_some()
    }

    /// Puts `live.feed` in live mode: `catch_up` writes the frames the
    /// session holds, oldest second first (seconds not newer than
    /// `live.last` are dropped), under the same lock as the fan-out's
    /// writes, so that none of the fan-out's can come between or before
    /// them. Returns how many frames it wrote.
    pub fn go_live<E>(
        self: &Arc<Self>,
        mut live: Live,
        catch_up: impl FnOnce(&mut dyn FnMut(UnixSeconds, &[Encoded])) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut inner = self.lock();
        let mut written = 0;
        let mut write = |time: UnixSeconds, frames: &[Encoded]| {
            if time > live.last {
                live.last = time;
                written += frames.len() as u64;
                self.push_frames(&mut inner, frames);
            }
        };
        // No resume point here: the connection's other streams may not
        // have this second yet (the hub marks once a batch is written).
        catch_up(&mut write)?;
        inner.live.retain(|l| l.feed != live.feed);
        inner.live.push(live);
        Ok(written)
    }

    /// Queues `frame` behind what is queued, or writes it now if nothing is.
    fn push(self: &Arc<Self>, inner: &mut Inner, frame: Bytes) {
        if !inner.queue.is_empty() {
            inner.queue.push(frame);
            if inner.queue.frames.len() > inner.lag_limit() {
                self.raise(event::LAGGED);
            }
            return;
        }
        let Some(io) = inner.io.as_mut() else {
            return;
        };
        let waker = waker_ref(self);
        let mut cx = Context::from_waker(&waker);
        match io.as_mut().poll_write(&mut cx, &frame) {
            Poll::Ready(Ok(n)) if n == frame.len() => {}
            Poll::Ready(Ok(n)) => {
                inner.queue.push(frame.slice(n..));
                self.raise(event::DRAIN);
            }
            // The socket wakes this outbox (and so the session) when it has room.
            Poll::Pending => inner.queue.push(frame),
            Poll::Ready(Err(_)) => {
                inner.broken = true;
                self.raise(event::BROKEN);
            }
        }
    }
}

mod closing;
mod encoding;
mod shared_io;

pub use self::encoding::Transport;
pub use self::shared_io::SharedIo;

#[cfg(test)]
mod tests;
