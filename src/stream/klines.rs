//! The kline streams' candles: one builder per asset and interval per
//! process, not per connection. The hub pushes every published point into
//! the builders of its asset and fans out the frames they give, encoded
//! once per tick.
//!
//! A builder exists from the first subscribe to its stream on: the
//! subscriber reads the bucket so far from the store (the snapshot), adds
//! the points its live channel took meanwhile, and seeds the builder with
//! that, under the builders' lock and in the same critical section as it
//! drains its channel. A point the hub publishes is pushed under the same
//! lock, so each point is in the seed or pushed after it, never both and
//! never neither (the hub skips a point the seed already holds).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::{AssetId, Candle, Interval, UnixSeconds};

/// A forming candle and the newest second it holds every point up to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KlineState {
    pub interval: Interval,
    /// The bucket of the newest point, `closed: false`; `None` before any.
    pub candle: Option<Candle>,
    /// Every point up to this second is in `candle` (or in an earlier bucket).
    pub last: UnixSeconds,
    /// A bucket whose beginning the read did not reach (no archive, a
    /// bucket older than the window): no candle of it is sent; the next
    /// bucket is built whole.
    pub unknown: Option<UnixSeconds>,
}

/// What one point does to a stream: the candle that closed (its bucket
/// ended), then the forming one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KlineUpdate {
    pub closed: Option<Candle>,
    pub forming: Candle,
}

impl KlineState {
    /// A builder holding `candle` (the forming candle as read, or `None`),
    /// complete up to `last`.
    pub fn new(interval: Interval, candle: Option<Candle>, last: UnixSeconds) -> Self {
        Self {
            interval,
            candle: candle.map(|c| Candle { closed: false, ..c }),
            last,
            unknown: None,
        }
    }

    /// A builder that cannot know the candle of the bucket holding `last`
    /// (its start is before what was read): it sends nothing of that
    /// bucket, and builds the next one whole.
    pub fn unknown(interval: Interval, last: UnixSeconds) -> Self {
        Self {
            interval,
            candle: None,
            last,
            unknown: Some(interval.open_of(last)),
        }
    }

    /// Adds the point of second `time`; `None` when the state holds it already.
    pub fn push(&mut self, time: UnixSeconds, value: f64) -> Option<KlineUpdate> {
        if time <= self.last {
            return None;
        }
        self.last = time;
        let open = self.interval.open_of(time);
        if self.unknown == Some(open) {
            return None;
        }
        self.unknown = None;
        let mut closed = None;
        match &mut self.candle {
            Some(c) if c.open_time == open => c.push(value),
            current => {
                closed = current.map(|c| Candle { closed: true, ..c });
                *current = Some(Candle {
                    closed: false,
                    ..Candle::of(self.interval, time, value)
                });
            }
        }
        let forming = self.candle?;
        Some(KlineUpdate { closed, forming })
    }
}

/// Every kline stream's builder in the process.
#[derive(Default)]
pub struct Klines {
    builders: Mutex<HashMap<AssetId, Vec<KlineState>>>,
}

impl Klines {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AssetId, Vec<KlineState>>> {
        // A push is a few field writes: a panic elsewhere leaves them whole.
        self.builders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pushes a published point into its asset's builders; `each` gets
    /// every builder's update.
    pub fn push(
        &self,
        asset: AssetId,
        time: UnixSeconds,
        value: f64,
        mut each: impl FnMut(Interval, KlineUpdate),
    ) {
        let mut builders = self.lock();
        let Some(list) = builders.get_mut(&asset) else {
            return;
        };
        for state in list {
            if let Some(update) = state.push(time, value) {
                each(state.interval, update);
            }
        }
    }

    /// Forgets every builder (the live feed was interrupted: points may
    /// have been missed); the next subscriber of each stream seeds it anew.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Seeds the builder of (`asset`, `seed.interval`) unless it has one,
    /// after `drain` has brought `seed` up to date, both under the lock the
    /// hub's pushes take.
    pub fn seed<E>(
        &self,
        asset: AssetId,
        seed: &mut KlineState,
        drain: impl FnOnce(&mut KlineState) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut builders = self.lock();
        drain(seed)?;
        let list = builders.entry(asset).or_default();
        if !list.iter().any(|s| s.interval == seed.interval) {
            list.push(*seed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_closes_once_before_the_next_forms() {
        let mut s = KlineState::new(Interval::M1, None, 59);
        assert_eq!(s.push(59, 1.0), None, "held already");
        let first = s.push(60, 1.0).unwrap();
        assert_eq!(first.closed, None);
        assert_eq!((first.forming.open_time, first.forming.count), (60, 1));
        assert!(!first.forming.closed);
        let second = s.push(61, 3.0).unwrap();
        assert_eq!((second.forming.high, second.forming.count), (3.0, 2));
        let next = s.push(120, 2.0).unwrap();
        let closed = next.closed.expect("the 60 bucket closes");
        assert!(closed.closed);
        assert_eq!(
            (
                closed.open_time,
                closed.close_time,
                closed.open,
                closed.close
            ),
            (60, 119, 1.0, 3.0)
        );
        assert_eq!((next.forming.open_time, next.forming.count), (120, 1));
        assert_eq!(s.push(121, 2.5).unwrap().closed, None);
    }

    #[test]
    fn an_unknown_bucket_sends_nothing_and_the_next_is_built_whole() {
        let mut s = KlineState::unknown(Interval::H1, 3_600 + 2_700);
        assert_eq!(
            s.push(3_600 + 2_701, 5.0),
            None,
            "the 1h bucket began before the read"
        );
        assert_eq!(s.push(7_199, 5.0), None);
        let next = s.push(7_200, 1.0).unwrap();
        assert_eq!(
            next.closed, None,
            "nothing of the unknown bucket, even closed"
        );
        assert_eq!((next.forming.open_time, next.forming.count), (7_200, 1));
    }

    #[test]
    fn a_seed_continues_the_bucket_it_read() {
        let read = Candle::of(Interval::M5, 300, 1.0);
        let mut s = KlineState::new(Interval::M5, Some(read), 310);
        let u = s.push(311, 0.5).unwrap();
        assert_eq!(u.closed, None);
        assert_eq!(
            (u.forming.open, u.forming.low, u.forming.count),
            (1.0, 0.5, 2)
        );
    }

    #[test]
    fn the_first_seed_wins_and_pushes_skip_what_it_holds() {
        let klines = Klines::default();
        let mut seed = KlineState::new(Interval::M1, None, 100);
        klines
            .seed(1, &mut seed, |s| {
                s.push(101, 1.0);
                Ok::<(), ()>(())
            })
            .unwrap();
        let mut other = KlineState::new(Interval::M1, None, 50);
        klines.seed(1, &mut other, |_| Ok::<(), ()>(())).unwrap();
        let mut updates = Vec::new();
        klines.push(1, 101, 9.0, |i, u| updates.push((i, u)));
        assert!(updates.is_empty(), "101 is in the seed");
        klines.push(1, 102, 2.0, |i, u| updates.push((i, u)));
        assert_eq!(updates.len(), 1, "one builder");
        assert_eq!(updates[0].1.forming.count, 2, "the first seed's candle");
        klines.push(2, 102, 2.0, |_, _| panic!("no builder for asset 2"));
    }
}
