//! The fan-out's shards: each a share of the connections of every feed,
//! written by one task per tick.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::domain::UnixSeconds;
use crate::stream::frame::Encoded;
use crate::stream::outbox::{Feed, Offer, Outbox};

/// A connection in the fan-out of one feed, for the subscribe `generation`
/// of its session.
pub(super) struct Entry {
    pub(super) feed: Feed,
    pub(super) outbox: Arc<Outbox>,
    pub(super) generation: u64,
    /// The connection is an event stream (its resume points are written
    /// after each batch).
    pub(super) event_stream: bool,
}

/// Event streams written to, by outbox, with the newest second each got.
pub(super) type Marks = HashMap<usize, (Arc<Outbox>, UnixSeconds)>;

/// One feed's frames of one second, in order.
pub(super) type Frames = (Feed, UnixSeconds, Vec<Encoded>);

/// A share of the fan-out's connections, written by one task per tick.
#[derive(Default)]
pub(super) struct Shard {
    /// Connections that joined since the last tick; taken in before it is
    /// written, so joining never waits for a tick's writes.
    pub(super) joining: std::sync::Mutex<Vec<Entry>>,
    members: tokio::sync::Mutex<HashMap<Feed, Vec<Entry>>>,
}

impl Shard {
    /// The shard's connections, those that joined since last time included.
    async fn members(&self) -> tokio::sync::MutexGuard<'_, HashMap<Feed, Vec<Entry>>> {
        let mut members = self.members.lock().await;
        let joining = std::mem::take(&mut *self.joining.lock().unwrap_or_else(|e| e.into_inner()));
        for e in joining {
            members.entry(e.feed).or_default().push(e);
        }
        members
    }

    /// Writes a tick's frames (in order) to this shard's connections;
    /// returns the event streams it wrote to, with the newest second each
    /// got (their resume points, written once every shard is done: a
    /// connection's streams may be in several shards).
    pub(super) async fn write(&self, batch: &[Frames]) -> Marks {
        let mut members = self.members().await;
        let sent = metrics::counter!("ratesd_ws_messages_sent_total");
        let delay = metrics::histogram!("ratesd_ws_point_delay_seconds");
        let mut written = 0u64;
        let mut marks = Marks::new();
        for (feed, time, frames) in batch {
            let Some(list) = members.get_mut(feed) else {
                continue;
            };
            let start = Duration::from_secs(u64::try_from(*time).unwrap_or(0));
            list.retain(
                |e| match e.outbox.offer(*feed, e.generation, *time, frames) {
                    Offer::Written => {
                        written += frames.len() as u64;
                        delay.record(SystemClock.now().saturating_sub(start).as_secs_f64());
                        if e.event_stream {
                            let mark = marks
                                .entry(Arc::as_ptr(&e.outbox) as usize)
                                .or_insert_with(|| (e.outbox.clone(), *time));
                            mark.1 = mark.1.max(*time);
                        }
                        true
                    }
                    Offer::Skipped => true,
                    Offer::Gone => false,
                },
            );
        }
        sent.increment(written);
        marks
    }

    /// Drops the entries of connections that have gone or moved on (a tick
    /// does this too, for the assets it writes; this covers the quiet ones).
    pub(super) async fn prune(&self) {
        let mut members = self.members().await;
        for list in members.values_mut() {
            list.retain(|e| e.outbox.serves(e.feed, e.generation));
        }
    }

    /// Raises `event` on every connection of this shard.
    pub(super) async fn raise(&self, event: u8) {
        let members = self.members().await;
        for e in members.values().flatten() {
            e.outbox.raise(event);
        }
    }
}
