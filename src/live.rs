//! Live fan-out: one Redis subscription per process, fanned out in memory to
//! every WebSocket of an asset through a `broadcast` channel per asset.
//!
//! Each point's frame is serialised once, here, and shared by every
//! connection. A connection that falls more than the channel's capacity
//! behind is told so by `broadcast` (it lagged) and is closed; it never
//! slows the others, and the memory held for it is the channel's, bounded.
//!
//! The same channel tells subscribers that the feed was interrupted or that
//! the process is shutting down, so that a subscribed connection waits on
//! one thing only: at 10,000 connections, every extra future a connection
//! polls on each point (a `Notify`, a cancellation) is 10,000 passes through
//! a lock all of them share, in each second's burst.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::domain::{AssetId, Catalog, Point, UnixSeconds};
use crate::store::RedisStore;

/// How many points a connection may fall behind before it is closed.
pub const QUEUE_POINTS: usize = 64;

/// What the subscribers of an asset are told.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Point(LivePoint),
    /// The live feed was lost (Redis unreachable): points may stop.
    Interrupted,
    /// The process is shutting down.
    ShuttingDown,
}

/// A point, ready to send.
#[derive(Debug, Clone)]
pub struct LivePoint {
    pub time: UnixSeconds,
    /// `{"action":"point","message":{...}}`
    pub frame: Utf8Bytes,
}

/// `{"action": ..., "message": ...}`, the frame of every WebSocket message.
#[derive(Serialize)]
pub struct Frame<'a, T: Serialize> {
    pub action: &'a str,
    pub message: T,
}

impl<T: Serialize> Frame<'_, T> {
    pub fn to_text(&self) -> Utf8Bytes {
        serde_json::to_string(self).unwrap_or_default().into()
    }
}

impl LivePoint {
    pub fn new(point: &Point) -> Self {
        Self {
            time: point.time,
            frame: Frame {
                action: "point",
                message: point,
            }
            .to_text(),
        }
    }
}

#[derive(Clone)]
pub struct LiveHub {
    channels: Arc<HashMap<AssetId, broadcast::Sender<LiveEvent>>>,
    /// The newest second a tick announced (for caches to notice new data).
    latest_tick: Arc<AtomicI64>,
}

impl LiveHub {
    pub fn new(catalog: &Catalog) -> Self {
        let channels = catalog
            .assets()
            .iter()
            .map(|a| (a.id, broadcast::channel(QUEUE_POINTS).0))
            .collect();
        Self {
            channels: Arc::new(channels),
            latest_tick: Arc::new(AtomicI64::new(UnixSeconds::MIN)),
        }
    }

    /// The newest second the live feed has announced.
    pub fn latest_tick(&self) -> UnixSeconds {
        self.latest_tick.load(Ordering::Acquire)
    }

    /// Attaches to an asset's live points; `None` for an asset not in the catalog.
    pub fn subscribe(&self, asset: AssetId) -> Option<broadcast::Receiver<LiveEvent>> {
        self.channels.get(&asset).map(broadcast::Sender::subscribe)
    }

    fn publish(&self, points: &[Point]) {
        if let Some(newest) = points.iter().map(|p| p.time).max() {
            self.latest_tick.fetch_max(newest, Ordering::AcqRel);
        }
        for point in points {
            if let Some(tx) = self.channels.get(&point.asset_id) {
                // No receivers is fine: nobody watches this asset now.
                let _ = tx.send(LiveEvent::Point(LivePoint::new(point)));
            }
        }
    }

    /// Tells every subscriber of every asset.
    fn announce(&self, event: &LiveEvent) {
        for tx in self.channels.values() {
            let _ = tx.send(event.clone());
        }
    }

    /// Relays the Redis live channel until shutdown, resubscribing with
    /// backoff when the connection drops. Points missed while it was away
    /// are not lost to clients: a connection that sees a gap in times reads
    /// the missing seconds from the window.
    ///
    /// Subscribers are told when the feed is lost (they reconnect) and,
    /// when this ends, that the process is shutting down.
    pub async fn run(self, redis: RedisStore, shutdown: CancellationToken) {
        self.relay(&redis, &shutdown).await;
        self.announce(&LiveEvent::ShuttingDown);
    }

    async fn relay(&self, redis: &RedisStore, shutdown: &CancellationToken) {
        let mut delay = Duration::from_millis(100);
        let mut failing = false;
        while !shutdown.is_cancelled() {
            let mut feed = match redis.subscribe_live().await {
                Ok(feed) => {
                    if failing {
                        tracing::info!("live feed resubscribed");
                    }
                    delay = Duration::from_millis(100);
                    feed
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot subscribe to the live feed; retrying");
                        failing = true;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = feed.next() => next,
                };
                match next {
                    Some(Ok(points)) => self.publish(&points),
                    Some(Err(e)) => tracing::warn!(error = %e, "malformed live message skipped"),
                    None => {
                        // Stays set through failed retries: one warning per outage.
                        tracing::warn!("live feed connection lost; resubscribing");
                        failing = true;
                        self.announce(&LiveEvent::Interrupted);
                        break;
                    }
                }
            }
        }
    }
}
