//! 24-hour tickers: an asset's statistics over a rolling day at minute
//! granularity, kept incrementally as points arrive ([`Rolling`]), never
//! recomputed from the day's minutes.
//!
//! The named choices:
//! - The range ends at the newest point's second (`close_time`) and starts
//!   at the UTC minute 1,439 minutes before the minute that holds it, so it
//!   moves on a minute at a time; where the data reaches back less far (a
//!   new deployment), at the first minute that has data (`open_time`); with
//!   only a live window of `window` seconds (no archive), never before the
//!   first whole minute of it.
//! - `open` is the first point's value from `open_time` on, `last` the
//!   newest, `high`/`low` the extremes, `count` the points: exactly what the
//!   `1m` candles of the same range sum up to.
//! - `change = last - open` rounded to 6 decimals, `change_percent =
//!   100 * (last - open) / open` rounded to 4.
//!
//! How: a ring of the range's minutes (first second, open, count) for the
//! open and the count, and two monotonic queues of candidates for the high
//! and the low (each value is dropped once a later one beats it), so a
//! point costs O(1) amortised and a minute that leaves the range is one pop.

use std::collections::VecDeque;

use super::candle::Candle;
use super::{UnixSeconds, round6};

/// Minutes in a ticker's range.
pub const MINUTES: i64 = 1_440;

/// One asset's statistics over its rolling day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ticker {
    pub open_time: UnixSeconds,
    pub close_time: UnixSeconds,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub last: f64,
    pub change: f64,
    pub change_percent: f64,
    pub count: u64,
}

/// The start of the minute holding `t`.
fn minute_of(t: UnixSeconds) -> UnixSeconds {
    t - t.rem_euclid(60)
}

/// Where the range of a ticker whose newest point is at `close` starts,
/// when its data reaches back `window` seconds only (a live window without
/// an archive), or without such a bound.
pub fn range_start(close: UnixSeconds, window: Option<i64>) -> UnixSeconds {
    let start = minute_of(close) - (MINUTES - 1) * 60;
    // A partly covered minute is left out: the range starts at whole minutes.
    window.map_or(start, |w| start.max(minute_of(close - w + 60)))
}

/// A ticker kept as points arrive.
#[derive(Debug, Clone, Default)]
pub struct Rolling {
    /// How far back the data reaches (`None`: as far as the range).
    window: Option<i64>,
    /// The range's minutes that have data, oldest first: first second, the
    /// value of its first point, its points.
    minutes: VecDeque<(UnixSeconds, f64, u32)>,
    /// Candidates for the high: `(minute, value)`, values decreasing.
    highs: VecDeque<(UnixSeconds, f64)>,
    /// Candidates for the low: `(minute, value)`, values increasing.
    lows: VecDeque<(UnixSeconds, f64)>,
    count: u64,
    last: Option<(UnixSeconds, f64)>,
    /// A minute before the range's start had data (so the range starts at
    /// its full length, not at its first minute).
    reaches_back: bool,
}

impl Rolling {
    /// An empty ticker whose data reaches back `window` seconds (a live
    /// window with no archive behind it), or as far as its range (`None`).
    pub fn new(window: Option<i64>) -> Self {
        Self {
            window,
            ..Self::default()
        }
    }

    /// The newest second it holds every point up to, if any.
    pub fn last_second(&self) -> Option<UnixSeconds> {
        self.last.map(|(t, _)| t)
    }

    /// Notes that data exists before what was seeded (the range has its
    /// full length once it starts after that).
    pub fn reaches_back(&mut self) {
        self.reaches_back = true;
    }

    /// Adds a whole `1m` candle (a seed, read from the store), after every
    /// minute it holds and with `last` its newest second.
    pub fn seed_minute(&mut self, candle: &Candle, last: UnixSeconds) {
        if self.last.is_some_and(|(t, _)| t >= candle.open_time) {
            return;
        }
        self.minutes
            .push_back((candle.open_time, candle.open, candle.count));
        push_candidate(&mut self.highs, candle.open_time, candle.high, |a, b| {
            a <= b
        });
        push_candidate(&mut self.lows, candle.open_time, candle.low, |a, b| a >= b);
        self.count += u64::from(candle.count);
        self.last = Some((last.max(candle.open_time), candle.close));
        self.evict();
    }

    /// Adds the point of second `time`; false when it holds that second
    /// already (a seed read it).
    pub fn push(&mut self, time: UnixSeconds, value: f64) -> bool {
        if self.last.is_some_and(|(t, _)| time <= t) {
            return false;
        }
        let minute = minute_of(time);
        match self.minutes.back_mut() {
            Some((m, _, n)) if *m == minute => *n += 1,
            _ => self.minutes.push_back((minute, value, 1)),
        }
        push_candidate(&mut self.highs, minute, value, |a, b| a <= b);
        push_candidate(&mut self.lows, minute, value, |a, b| a >= b);
        self.count += 1;
        self.last = Some((time, value));
        self.evict();
        true
    }

    /// Drops what the range no longer holds.
    fn evict(&mut self) {
        let Some((close, _)) = self.last else { return };
        let start = range_start(close, self.window);
        while let Some(&(m, _, n)) = self.minutes.front() {
            if m >= start {
                break;
            }
            self.minutes.pop_front();
            self.count -= u64::from(n);
            self.reaches_back = true;
        }
        while self.highs.front().is_some_and(|&(m, _)| m < start) {
            self.highs.pop_front();
        }
        while self.lows.front().is_some_and(|&(m, _)| m < start) {
            self.lows.pop_front();
        }
    }

    /// The ticker now, `None` before any point (or once every point left
    /// the range).
    pub fn ticker(&self) -> Option<Ticker> {
        let (close_time, last) = self.last?;
        let &(first_minute, open, _) = self.minutes.front()?;
        let open_time = if self.reaches_back {
            range_start(close_time, self.window)
        } else {
            first_minute
        };
        let change = last - open;
        Some(Ticker {
            open_time,
            close_time,
            open,
            high: self.highs.front()?.1,
            low: self.lows.front()?.1,
            last,
            change: round6(change),
            change_percent: if open == 0.0 {
                0.0
            } else {
                (100.0 * change / open * 1e4).round() / 1e4
            },
            count: self.count,
        })
    }
}

/// Adds `(minute, value)` to a queue of candidates, dropping those it
/// beats (`beaten(old, new)`): the front is the extreme of the range.
fn push_candidate(
    queue: &mut VecDeque<(UnixSeconds, f64)>,
    minute: UnixSeconds,
    value: f64,
    beaten: impl Fn(f64, f64) -> bool,
) {
    while queue.back().is_some_and(|&(_, v)| beaten(v, value)) {
        queue.pop_back();
    }
    queue.push_back((minute, value));
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::Interval;
    use crate::domain::candle;

    /// The ticker the `1m` candles of `points` give over the range that
    /// ends at the newest point, computed the slow way.
    fn by_candles(points: &[(UnixSeconds, f64)], window: Option<i64>) -> Option<Ticker> {
        let &(close, last) = points.last()?;
        let start = range_start(close, window);
        let candles: Vec<Candle> = candle::build(
            points.iter().copied().filter(|&(t, _)| t >= start),
            Interval::M1,
        );
        let first = candles.first()?;
        let open = first.open;
        let before = points.iter().any(|&(t, _)| t < start);
        Some(Ticker {
            open_time: if before { start } else { first.open_time },
            close_time: close,
            open,
            high: candles.iter().map(|c| c.high).fold(f64::MIN, f64::max),
            low: candles.iter().map(|c| c.low).fold(f64::MAX, f64::min),
            last,
            change: round6(last - open),
            change_percent: (100.0 * (last - open) / open * 1e4).round() / 1e4,
            count: candles.iter().map(|c| u64::from(c.count)).sum(),
        })
    }

    #[test]
    fn a_day_rolls_a_minute_at_a_time() {
        let mut r = Rolling::new(None);
        let day0 = 1_000_000 * 60;
        assert!(r.push(day0 + 5, 2.0));
        assert!(r.push(day0 + 70, 1.0));
        assert!(!r.push(day0 + 70, 9.0), "a second once");
        let t = r.ticker().unwrap();
        assert_eq!((t.open_time, t.close_time), (day0, day0 + 70));
        assert_eq!(
            (t.open, t.high, t.low, t.last, t.count),
            (2.0, 2.0, 1.0, 1.0, 2)
        );
        assert_eq!((t.change, t.change_percent), (-1.0, -50.0));
        // A day and a minute later the first minute has left the range.
        assert!(r.push(day0 + 86_400 + 3, 1.5));
        let t = r.ticker().unwrap();
        assert_eq!(
            t.open_time,
            day0 + 60,
            "the range's start: 1,439 minutes back"
        );
        assert_eq!((t.open, t.high, t.count), (1.0, 1.5, 2));
    }

    #[test]
    fn a_live_window_keeps_the_range_to_its_whole_minutes() {
        // A 100-second window: at 10,000 min + 199 s it reaches back to
        // 10,000 min + 100 s, so the range starts at 10,002 min.
        let mut r = Rolling::new(Some(100));
        for t in 10_000 * 60 + 30..10_000 * 60 + 200 {
            r.push(t, t as f64);
        }
        let t = r.ticker().unwrap();
        assert_eq!(t.open_time, 10_002 * 60, "the partly covered minute is out");
        assert_eq!(t.open, (10_002 * 60) as f64);
        assert_eq!(t.count, 200 - 120);
    }

    proptest! {
        #[test]
        fn the_ticker_is_what_the_candles_of_its_range_give(
            steps in proptest::collection::vec((1i64..400, 0.5f64..2.0), 1..600),
            window in proptest::option::of(60i64..200_000),
        ) {
            let mut r = Rolling::new(window);
            let mut points = Vec::new();
            let mut t = 1_796_000_000;
            for (dt, v) in steps {
                t += dt * 60 + dt % 60;
                let v = round6(v);
                prop_assert!(r.push(t, v));
                points.push((t, v));
                prop_assert_eq!(r.ticker(), by_candles(&points, window));
            }
        }

        #[test]
        fn a_seed_of_minutes_then_points_is_the_same_as_points(
            steps in proptest::collection::vec((1i64..90, 0.5f64..2.0), 2..400),
            split in 0usize..400,
        ) {
            let mut points = Vec::new();
            let mut t = 1_796_000_000;
            for (dt, v) in steps {
                t += dt * 7;
                points.push((t, round6(v)));
            }
            let mut whole = Rolling::new(None);
            for &(t, v) in &points {
                whole.push(t, v);
            }
            // A seed of whole minutes (as read from the store), then the rest.
            let split = split.min(points.len());
            let cut = minute_of(points[split.saturating_sub(1)].0);
            let (seeded, rest): (Vec<(UnixSeconds, f64)>, Vec<_>) =
                points.iter().partition(|p| p.0 < cut);
            let mut r = Rolling::new(None);
            let last = seeded.last().map(|p| p.0);
            for c in candle::build(seeded.iter().copied(), Interval::M1) {
                r.seed_minute(&c, last.unwrap().min(c.close_time));
            }
            for &(t, v) in &rest {
                r.push(t, v);
            }
            prop_assert_eq!(r.ticker(), whole.ticker());
        }
    }
}
