//! The whole market in one frame a second (`!all@point`, `!all@ticker`).
//!
//! The live feed brings a second's points in one message (the embedded
//! engine, one Redis) or one per key group (a Redis Cluster, each group on
//! its own). A second's frame is made once every group that holds assets
//! has sent its message, or once a later second begins, or after
//! [`WAIT`] (a group whose assets were all stale that second sends none).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::QUEUE_POINTS;
use crate::clock::unix_now;
use crate::domain::{AssetId, Catalog, Point, UnixSeconds, is_fresh};
use crate::stream::frame::{ALL_POINTS, ALL_TICKERS, Encoded, stream_wire};
use crate::stream::tickers::{TickerData, Tickers};

/// What the subscribers of the whole market's streams are told while they
/// open (the fan-out writes to them once they are live).
#[derive(Debug, Clone)]
pub enum MarketEvent {
    Second(Arc<MarketSecond>),
    /// The live feed was lost: seconds may stop.
    Interrupted,
    /// The process is shutting down.
    ShuttingDown,
}

/// One second of the whole market, encoded once for every subscriber.
#[derive(Debug)]
pub struct MarketSecond {
    pub time: UnixSeconds,
    /// `{"stream":"!all@point","data":{"time":..,"points":[...]}}`
    pub points: Encoded,
    /// `{"stream":"!all@ticker","data":{"time":..,"tickers":[...]}}`
    pub tickers: Encoded,
}

/// `{"time": .., "tickers": [...]}`: every asset's ticker, in catalog order
/// (an asset with no ticker left out).
#[derive(Debug, Clone, Serialize)]
pub struct AllTickers {
    pub time: UnixSeconds,
    pub tickers: Vec<TickerData>,
}

/// The whole market's streams in the hub: the seconds being gathered, the
/// latest one, and the channel of subscribers being opened.
pub struct Market {
    gathering: Mutex<Gathering>,
    latest: RwLock<Option<Arc<AllPoints>>>,
    tx: broadcast::Sender<MarketEvent>,
    /// Every asset, in catalog order.
    assets: Vec<(AssetId, String)>,
    /// A ticker whose newest point is older than this is stale.
    stale_after: u32,
}

impl Market {
    /// The market of `catalog`, whose seconds come in `expected` messages;
    /// a ticker whose newest point is over `stale_after` seconds old is stale.
    pub fn new(catalog: &Catalog, expected: usize, stale_after: u32) -> Self {
        let order = catalog
            .assets()
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id, i))
            .collect();
        Self {
            gathering: Mutex::new(Gathering::new(expected, Arc::new(order))),
            latest: RwLock::default(),
            tx: broadcast::channel(QUEUE_POINTS).0,
            assets: catalog
                .assets()
                .iter()
                .map(|a| (a.id, a.name.clone()))
                .collect(),
            stale_after,
        }
    }

    fn gathering(&self) -> std::sync::MutexGuard<'_, Gathering> {
        self.gathering.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a message's points; the seconds they completed, encoded.
    pub fn add(&self, points: &[Point], tickers: &Tickers) -> Vec<Arc<MarketSecond>> {
        let done = self.gathering().add(points, Instant::now());
        done.into_iter().map(|s| self.send(s, tickers)).collect()
    }

    /// The second being gathered, once it has waited long enough.
    pub fn due(&self, tickers: &Tickers) -> Option<Arc<MarketSecond>> {
        let done = self.gathering().due(Instant::now())?;
        Some(self.send(done, tickers))
    }

    /// When the second being gathered is due.
    pub fn deadline(&self) -> Option<Instant> {
        self.gathering().deadline()
    }

    /// Encodes a second, keeps it as the latest and tells the subscribers
    /// being opened.
    fn send(&self, points: AllPoints, tickers: &Tickers) -> Arc<MarketSecond> {
        let time = points.time;
        let second = Arc::new(MarketSecond {
            time,
            points: stream_wire(ALL_POINTS, &points),
            tickers: stream_wire(ALL_TICKERS, self.tickers(time, tickers)),
        });
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(points));
        // No receivers is fine: nobody is opening a market stream now.
        let _ = self.tx.send(MarketEvent::Second(second.clone()));
        second
    }

    /// Every asset's ticker now, as of second `time`; `stale` as for the
    /// latest quote (its newest point over the staleness limit old now).
    pub fn tickers(&self, time: UnixSeconds, tickers: &Tickers) -> AllTickers {
        let all = tickers.all();
        let now = unix_now();
        AllTickers {
            time,
            tickers: self
                .assets
                .iter()
                .filter_map(|(id, name)| {
                    let t = all.get(id).copied().flatten()?;
                    let stale = !is_fresh(t.close_time, now, self.stale_after);
                    Some(TickerData::new(name, *id, &t, stale))
                })
                .collect(),
        }
    }

    /// The latest second's points, if one was sent.
    pub fn latest(&self) -> Option<Arc<AllPoints>> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Attaches to the seconds as they are sent (see [`super::LiveHub::subscribe`]).
    pub fn subscribe(&self) -> broadcast::Receiver<MarketEvent> {
        self.tx.subscribe()
    }

    /// Tells the subscribers being opened.
    pub fn announce(&self, event: MarketEvent) {
        let _ = self.tx.send(event);
    }
}

/// How long a second's frame waits for the rest of its groups' messages.
pub const WAIT: Duration = Duration::from_millis(500);

/// `{"time": .., "points": [...]}`: every asset's point of one second, in
/// catalog order.
#[derive(Debug, Clone, Serialize)]
pub struct AllPoints {
    pub time: UnixSeconds,
    pub points: Vec<Point>,
}

/// A second's points as the feed brings them in.
struct Pending {
    time: UnixSeconds,
    points: Vec<Point>,
    messages: usize,
    since: Instant,
}

/// The seconds being gathered.
pub struct Gathering {
    /// Messages a second comes in (key groups holding assets).
    expected: usize,
    /// Each asset's place in the catalog.
    order: Arc<HashMap<AssetId, usize>>,
    pending: Option<Pending>,
    /// The newest second whose frame is out.
    sent: UnixSeconds,
}

impl Gathering {
    pub fn new(expected: usize, order: Arc<HashMap<AssetId, usize>>) -> Self {
        Self {
            expected: expected.max(1),
            order,
            pending: None,
            sent: UnixSeconds::MIN,
        }
    }

    /// Adds one message's points (of one second); returns the seconds it
    /// completed, oldest first: the one gathered so far when a later one
    /// begins, and this one when its last group's message is in.
    pub fn add(&mut self, points: &[Point], now: Instant) -> Vec<AllPoints> {
        let mut done = Vec::new();
        let Some(time) = points.iter().map(|p| p.time).max() else {
            return done;
        };
        // A straggler of a second already out: it is in the point streams;
        // the whole market's frame of its second is gone.
        if time <= self.sent {
            return done;
        }
        match &mut self.pending {
            Some(p) if p.time == time => {
                p.points.extend_from_slice(points);
                p.messages += 1;
            }
            Some(p) if p.time > time => return done,
            _ => {
                if let Some(p) = self.pending.take() {
                    done.push(self.finish(p));
                }
                self.pending = Some(Pending {
                    time,
                    points: points.to_vec(),
                    messages: 1,
                    since: now,
                });
            }
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.messages >= self.expected)
            && let Some(p) = self.pending.take()
        {
            done.push(self.finish(p));
        }
        done
    }

    /// When the second being gathered is due even if groups are missing.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.since + WAIT)
    }

    /// The second being gathered, once it has waited [`WAIT`].
    pub fn due(&mut self, now: Instant) -> Option<AllPoints> {
        if self.deadline().is_some_and(|d| d <= now) {
            let p = self.pending.take()?;
            return Some(self.finish(p));
        }
        None
    }

    fn finish(&mut self, mut p: Pending) -> AllPoints {
        self.sent = p.time;
        p.points.sort_by_key(|point| {
            self.order
                .get(&point.asset_id)
                .copied()
                .unwrap_or(usize::MAX)
        });
        p.points.dedup_by_key(|point| point.asset_id);
        AllPoints {
            time: p.time,
            points: p.points,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(asset_id: AssetId, time: UnixSeconds) -> Point {
        Point {
            asset_name: format!("A{asset_id}"),
            time,
            asset_id,
            value: 1.0,
        }
    }

    fn gathering(expected: usize) -> Gathering {
        let order = (1..=5).map(|id| (id, 5 - id as usize)).collect();
        Gathering::new(expected, Arc::new(order))
    }

    /// `stale` in the whole-market tickers is the latest quote's: true once
    /// an asset's newest point is over the staleness limit old.
    #[test]
    fn whole_market_tickers_say_which_are_stale() {
        let catalog = Catalog::with_extra("").unwrap();
        let market = Market::new(&catalog, 1, 10);
        let tickers = Tickers::new(None);
        let now = unix_now();
        for (asset, newest) in [(1, now), (2, now - 60)] {
            let mut seed = crate::domain::ticker::Rolling::new(None);
            assert!(seed.push(newest, 1.1));
            assert!(tickers.seed(asset, seed, |_| Ok(())).is_ok());
        }
        let all = market.tickers(now, &tickers);
        let stale: Vec<_> = all.tickers.iter().map(|t| (t.asset_id, t.stale)).collect();
        assert_eq!(stale, vec![(1, false), (2, true)]);
    }

    #[test]
    fn one_message_a_second_is_a_frame_at_once_in_catalog_order() {
        let mut g = gathering(1);
        let t0 = Instant::now();
        let done = g.add(&[point(1, 10), point(5, 10)], t0);
        assert_eq!(done.len(), 1);
        let ids: Vec<_> = done[0].points.iter().map(|p| p.asset_id).collect();
        assert_eq!((done[0].time, ids), (10, vec![5, 1]));
        assert!(g.deadline().is_none());
    }

    #[test]
    fn groups_are_gathered_until_all_are_in_or_a_later_second_begins() {
        let t0 = Instant::now();
        let mut g = gathering(3);
        assert!(g.add(&[point(1, 10)], t0).is_empty());
        assert!(g.add(&[point(2, 10)], t0).is_empty());
        let done = g.add(&[point(3, 10)], t0);
        assert_eq!(done[0].points.len(), 3, "the third group completes it");
        // A group that sends nothing: the next second ends the wait.
        assert!(g.add(&[point(1, 11)], t0).is_empty());
        assert!(g.add(&[point(2, 11)], t0).is_empty());
        let done = g.add(&[point(1, 12)], t0);
        assert_eq!((done.len(), done[0].time, done[0].points.len()), (1, 11, 2));
        // Or the wait runs out.
        assert!(g.due(t0 + WAIT / 2).is_none());
        let due = g.due(t0 + WAIT).expect("due after the wait");
        assert_eq!((due.time, due.points.len()), (12, 1));
        // A straggler of a second already out is not sent again.
        assert!(g.add(&[point(3, 11)], t0).is_empty());
        assert!(g.deadline().is_none());
    }
}
