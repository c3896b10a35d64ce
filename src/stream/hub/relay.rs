//! The relay: the live channel read until shutdown, resubscribed with
//! backoff when it drops, each tick published with the seconds it skipped
//! filled from the window, and an outage or a shutdown told to every
//! subscriber.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::all::MarketEvent;
use super::{LiveEvent, LiveHub};
use crate::backoff::{Backoff, Doubling};
use crate::domain::{AssetId, Point, UnixSeconds};
use crate::store::Engine;
use crate::stream::outbox::event;

/// Retries of the live subscription after it dropped.
const RESUBSCRIBE: Doubling = Doubling {
    first: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

/// How often the fan-out forgets closed connections of assets that had no
/// point (each point does it for its asset's connections).
const PRUNE_EVERY: Duration = Duration::from_secs(30);

impl LiveHub {
    /// Publishes a tick, first filling from the window any seconds the
    /// feed skipped since an asset's last published point (a message lost
    /// with a dropped subscription), so that subscribers see no hole.
    async fn publish_filled(
        &self,
        engine: &Engine,
        published: &mut HashMap<AssetId, UnixSeconds>,
        points: &[Point],
    ) {
        let mut missed = Vec::new();
        for p in points {
            let Some(&prev) = published.get(&p.asset_id) else {
                continue;
            };
            if p.time > prev + 1
                && let Ok(members) = engine.window_after(p.asset_id, prev).await
            {
                missed.extend(members.into_iter().filter(|m| m.time < p.time));
            }
        }
        missed.sort_by_key(|p| p.time);
        for second in missed.chunk_by(|a, b| a.time == b.time) {
            self.publish(second).await;
        }
        for p in points {
            let newest = published.entry(p.asset_id).or_insert(p.time);
            *newest = (*newest).max(p.time);
        }
        self.publish(points).await;
    }

    /// Tells every subscriber of every asset.
    async fn announce(&self, event: &LiveEvent) {
        for tx in self.channels.values() {
            let _ = tx.send(event.clone());
        }
        match event {
            LiveEvent::Interrupted => self.market.announce(MarketEvent::Interrupted),
            LiveEvent::ShuttingDown => self.market.announce(MarketEvent::ShuttingDown),
            LiveEvent::Point(_) => {}
        }
        // Connections in the fan-out learn of a shutdown from the
        // cancellation their sessions wait on; of an outage, from here.
        if let LiveEvent::Interrupted = event {
            // Points may be missed while the feed is away (a fill from the
            // window can fail): the next kline subscriber reads afresh.
            self.klines.clear();
            self.tickers.clear();
            for shard in self.shards.iter() {
                shard.raise(event::INTERRUPTED).await;
            }
        }
    }

    /// Relays the Redis live channel until shutdown, resubscribing with
    /// backoff when the connection drops. Points missed while it was away
    /// are not lost to clients: a connection that sees a gap in times reads
    /// the missing seconds from the window.
    ///
    /// Subscribers are told when the feed is lost (they reconnect) and,
    /// when this ends, that the process is shutting down.
    pub async fn run(self, engine: Engine, shutdown: CancellationToken) {
        self.relay(&engine, &shutdown).await;
        self.announce(&LiveEvent::ShuttingDown).await;
    }

    async fn relay(&self, engine: &Engine, shutdown: &CancellationToken) {
        let mut backoff = Backoff::new(RESUBSCRIBE);
        let mut failing = false;
        // The newest second published for each asset.
        let mut published: HashMap<AssetId, UnixSeconds> = HashMap::new();
        while !shutdown.is_cancelled() {
            let mut feed = match engine.subscribe_live().await {
                Ok(feed) => {
                    if published.is_empty() {
                        seed_published(engine, &mut published).await;
                    }
                    self.connected.store(true, Ordering::Release);
                    if failing {
                        tracing::info!("live feed resubscribed");
                    }
                    backoff.reset();
                    feed
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot subscribe to the live feed; retrying");
                        failing = true;
                    }
                    if !backoff.wait(shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            let mut prune = tokio::time::interval(PRUNE_EVERY);
            loop {
                let due = self.market.deadline();
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = feed.next() => next,
                    // A whole-market second still missing a key group's message.
                    () = sleep_until_some(due) => {
                        self.publish_due().await;
                        continue;
                    }
                    _ = prune.tick() => {
                        for shard in self.shards.iter() {
                            shard.prune().await;
                        }
                        continue;
                    }
                };
                match next {
                    Some(Ok(points)) => self.publish_filled(engine, &mut published, &points).await,
                    Some(Err(e)) => tracing::warn!(error = %e, "malformed live message skipped"),
                    None => {
                        // Stays set through failed retries: one warning per outage.
                        tracing::warn!("live feed connection lost; resubscribing");
                        self.connected.store(false, Ordering::Release);
                        failing = true;
                        self.announce(&LiveEvent::Interrupted).await;
                        break;
                    }
                }
            }
        }
    }
}

/// Before the first subscription each asset counts as published up to
/// the second before its newest in the store: a tick written just before
/// the feed was subscribed (the worker may start first) was sent to no
/// one, and the next tick fills it from the window, so that a client who
/// subscribed meanwhile, reading up to the second before, gets no hole. A
/// second filled that a client has already is dropped by its connection.
async fn seed_published(engine: &Engine, published: &mut HashMap<AssetId, UnixSeconds>) {
    match engine.latest_all().await {
        Ok(quotes) => {
            for q in quotes {
                published.insert(q.asset_id, q.time - 1);
            }
        }
        Err(e) => tracing::debug!(error = %e, "no latest quotes to start the live feed from"),
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::domain::{Catalog, StoredQuote};
    use crate::store::Embedded;
    use crate::store::records::TickEntry;

    fn entry(asset: &crate::domain::Asset, time: UnixSeconds) -> TickEntry {
        TickEntry {
            point: Point::of(asset, time, 1.0),
            quote: StoredQuote {
                asset_id: asset.id,
                bid: 1.0,
                ask: 1.0,
                value: 1.0,
                time,
                quoted_at: time,
                source: "simulated".into(),
            },
        }
    }

    async fn next_point(rx: &mut tokio::sync::broadcast::Receiver<LiveEvent>) -> UnixSeconds {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("a live event within 10 s")
                .expect("the channel is open");
            if let LiveEvent::Point(p) = event {
                return p.time;
            }
        }
    }

    /// The worker may write a tick before the hub has subscribed to the
    /// live feed: that second is published with the next one, not lost to
    /// the clients who subscribed in between.
    #[tokio::test]
    async fn a_tick_written_before_the_feed_was_subscribed_is_published_with_the_next() {
        let catalog = Arc::new(Catalog::with_extra("").unwrap());
        let embedded = Arc::new(Embedded::new(catalog.clone()));
        let eur = catalog.by_id(1).unwrap().clone();
        embedded.write_tick(100, 1800, &[entry(&eur, 100)], None, 1);

        let hub = LiveHub::new(&catalog, None, 1, 10);
        let mut rx = hub.subscribe(eur.id).unwrap();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(
            hub.clone()
                .run(Engine::Embedded(embedded.clone()), shutdown.clone()),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !hub.is_connected() {
            assert!(tokio::time::Instant::now() < deadline, "the hub subscribes");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        embedded.write_tick(101, 1800, &[entry(&eur, 101)], None, 1);
        assert_eq!(next_point(&mut rx).await, 100, "the unsent second first");
        assert_eq!(next_point(&mut rx).await, 101);
        embedded.write_tick(102, 1800, &[entry(&eur, 102)], None, 1);
        assert_eq!(next_point(&mut rx).await, 102, "then one a tick");
        shutdown.cancel();
        run.await.unwrap();
    }
}
