//! Candles: an asset's points summed up per UTC-aligned bucket (open, high,
//! low, close, count). One builder, used by the REST candles route and the
//! kline streams; the archive computes the same in SQL for old ranges, and
//! [`Candle::merge`] joins a bucket that spans the archive and the window.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::UnixSeconds;

/// A candle's length, aligned to the Unix epoch in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interval {
    M1,
    M5,
    M15,
    M30,
    H1,
    H4,
    D1,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown interval '{0}'; expected one of: 1m, 5m, 15m, 30m, 1h, 4h, 1d")]
pub struct UnknownInterval(pub String);

impl Interval {
    pub const ALL: [Self; 7] = [
        Self::M1,
        Self::M5,
        Self::M15,
        Self::M30,
        Self::H1,
        Self::H4,
        Self::D1,
    ];

    pub fn seconds(self) -> i64 {
        match self {
            Self::M1 => 60,
            Self::M5 => 300,
            Self::M15 => 900,
            Self::M30 => 1_800,
            Self::H1 => 3_600,
            Self::H4 => 14_400,
            Self::D1 => 86_400,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::M1 => "1m",
            Self::M5 => "5m",
            Self::M15 => "15m",
            Self::M30 => "30m",
            Self::H1 => "1h",
            Self::H4 => "4h",
            Self::D1 => "1d",
        }
    }

    /// The first second of the bucket holding `time`.
    pub fn open_of(self, time: UnixSeconds) -> UnixSeconds {
        time - time.rem_euclid(self.seconds())
    }
}

impl std::str::FromStr for Interval {
    type Err = UnknownInterval;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| UnknownInterval(s.to_owned()))
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One bucket of an asset's points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"openTime": 1455883440, "closeTime": 1455883499, "open": 1.110481,
    "high": 1.111122, "low": 1.110402, "close": 1.110948, "count": 60, "closed": true}))]
pub struct Candle {
    /// The bucket's first second (Unix seconds, UTC).
    pub open_time: UnixSeconds,
    /// The bucket's last second: `openTime + interval - 1`.
    pub close_time: UnixSeconds,
    /// The value of the bucket's first point.
    pub open: f64,
    pub high: f64,
    pub low: f64,
    /// The value of the bucket's last point.
    pub close: f64,
    /// Points in the bucket.
    pub count: u32,
    /// False only for the bucket that holds the current second.
    pub closed: bool,
}

impl Candle {
    /// The candle of one point.
    pub fn of(interval: Interval, time: UnixSeconds, value: f64) -> Self {
        let open_time = interval.open_of(time);
        Self {
            open_time,
            close_time: open_time + interval.seconds() - 1,
            open: value,
            high: value,
            low: value,
            close: value,
            count: 1,
            closed: true,
        }
    }

    /// Adds a later point of the same bucket.
    pub fn push(&mut self, value: f64) {
        self.high = self.high.max(value);
        self.low = self.low.min(value);
        self.close = value;
        self.count += 1;
    }

    /// The same bucket's candle from `self`'s points and `later`'s, every
    /// one of which is later than all of `self`'s (an archive part, then the
    /// window's).
    pub fn merge(self, later: Self) -> Self {
        Self {
            high: self.high.max(later.high),
            low: self.low.min(later.low),
            close: later.close,
            count: self.count + later.count,
            closed: self.closed && later.closed,
            ..self
        }
    }

    /// Marks the candle forming at `now` (the one holding it) as not closed.
    pub fn mark_forming(&mut self, now: UnixSeconds) {
        self.closed = now > self.close_time;
    }
}

/// The candles of `points` (oldest first, at most one per second), one per
/// bucket that has a point, oldest first; all `closed` (see
/// [`Candle::mark_forming`]).
pub fn build(
    points: impl IntoIterator<Item = (UnixSeconds, f64)>,
    interval: Interval,
) -> Vec<Candle> {
    let mut candles: Vec<Candle> = Vec::new();
    for (time, value) in points {
        match candles.last_mut() {
            Some(c) if c.open_time == interval.open_of(time) => c.push(value),
            _ => candles.push(Candle::of(interval, time, value)),
        }
    }
    candles
}

/// Joins candles of one range read in two parts, `older` (e.g. from the
/// archive) then `newer` (from the window): a bucket both have is merged.
pub fn join(mut older: Vec<Candle>, newer: Vec<Candle>) -> Vec<Candle> {
    let mut newer = newer.into_iter();
    if let (Some(last), Some(first)) = (older.last_mut(), newer.as_slice().first())
        && last.open_time == first.open_time
    {
        *last = last.merge(*first);
        newer.next();
    }
    older.extend(newer);
    older
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn intervals_parse_and_align_in_utc() {
        assert_eq!("5m".parse::<Interval>(), Ok(Interval::M5));
        assert!("2m".parse::<Interval>().is_err());
        assert!("1M".parse::<Interval>().is_err(), "1M would be a month");
        // 2016-02-19 12:11:24 UTC.
        let t = 1_455_883_884;
        assert_eq!(Interval::M1.open_of(t), 1_455_883_860);
        assert_eq!(Interval::H1.open_of(t), 1_455_883_200);
        assert_eq!(Interval::D1.open_of(t), 1_455_840_000, "00:00 UTC");
        assert_eq!(Interval::H4.open_of(t) % 14_400, 0);
        assert_eq!(Interval::M1.open_of(-1), -60, "before the epoch too");
    }

    #[test]
    fn a_bucket_summarises_its_points() {
        let points = [(120, 1.0), (121, 3.0), (150, 0.5), (179, 2.0), (180, 9.0)];
        let c = build(points, Interval::M1);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0],
            Candle {
                open_time: 120,
                close_time: 179,
                open: 1.0,
                high: 3.0,
                low: 0.5,
                close: 2.0,
                count: 4,
                closed: true
            }
        );
        assert_eq!((c[1].open_time, c[1].count, c[1].open), (180, 1, 9.0));
        let mut forming = c[1];
        forming.mark_forming(200);
        assert!(!forming.closed);
        forming.mark_forming(240);
        assert!(forming.closed);
    }

    #[test]
    fn a_bucket_split_over_two_sources_joins_to_the_whole() {
        let points: Vec<(i64, f64)> = (100..400).map(|t| (t, (t % 17) as f64)).collect();
        let whole = build(points.iter().copied(), Interval::M1);
        for split in [100, 130, 179, 180, 181, 399] {
            let (old, new) = points.split_at(split - 100);
            let joined = join(
                build(old.iter().copied(), Interval::M1),
                build(new.iter().copied(), Interval::M1),
            );
            assert_eq!(joined, whole, "split at {split}");
        }
    }

    proptest! {
        #[test]
        fn candles_keep_the_ohlc_invariants(
            start in -1_000_000i64..2_000_000_000,
            steps in proptest::collection::vec((1i64..400, -1e6f64..1e6), 1..300),
            interval in proptest::sample::select(Interval::ALL.to_vec()),
        ) {
            let mut t = start;
            let points: Vec<(i64, f64)> = steps.iter().map(|&(dt, v)| { t += dt; (t, v) }).collect();
            let candles = build(points.iter().copied(), interval);
            prop_assert_eq!(candles.iter().map(|c| c.count as usize).sum::<usize>(), points.len());
            for w in candles.windows(2) {
                prop_assert!(w[0].close_time < w[1].open_time);
            }
            for c in &candles {
                prop_assert_eq!(c.open_time.rem_euclid(interval.seconds()), 0);
                prop_assert_eq!(c.close_time, c.open_time + interval.seconds() - 1);
                prop_assert!(c.low <= c.open && c.open <= c.high);
                prop_assert!(c.low <= c.close && c.close <= c.high);
                let inside: Vec<f64> = points
                    .iter()
                    .filter(|p| (c.open_time..=c.close_time).contains(&p.0))
                    .map(|p| p.1)
                    .collect();
                prop_assert_eq!(inside.len(), c.count as usize);
                prop_assert_eq!(inside[0], c.open);
                prop_assert_eq!(*inside.last().unwrap(), c.close);
                prop_assert_eq!(inside.iter().copied().fold(f64::MIN, f64::max), c.high);
                prop_assert_eq!(inside.iter().copied().fold(f64::MAX, f64::min), c.low);
            }
        }
    }
}
