//! The accounting of the v2 streams, kept free of I/O so that it is
//! unit-tested: a point stream's run of seconds (gaps and duplicates), a
//! kline stream's buckets (closed once each, well-formed), and what a
//! reconnect with `since` must continue from.

use crate::proto::Candle;

/// What one more second of a point stream was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The stream's first second.
    First,
    /// One after the last: as it should be.
    Next,
    /// Later than one after the last: this many seconds were skipped.
    Gap(u64),
    /// The last second again or an earlier one.
    Duplicate,
}

/// A point stream's seconds, each of which must be one after the last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seconds {
    /// The latest second seen.
    pub last: Option<i64>,
    /// Seconds seen (duplicates included).
    pub seen: u64,
    /// Seconds skipped.
    pub missing: u64,
    /// Seconds seen again (or out of order).
    pub duplicate: u64,
}

impl Seconds {
    /// A stream that continues from `last` (a reconnect's `since`).
    pub fn starting_at(last: i64) -> Self {
        Self {
            last: Some(last),
            ..Self::default()
        }
    }

    pub fn observe(&mut self, time: i64) -> Step {
        self.seen += 1;
        let step = match self.last {
            None => Step::First,
            Some(last) if time == last + 1 => Step::Next,
            Some(last) if time > last => Step::Gap((time - last - 1) as u64),
            Some(_) => Step::Duplicate,
        };
        match step {
            Step::Gap(n) => self.missing += n,
            Step::Duplicate => {
                self.duplicate += 1;
                return step;
            }
            _ => {}
        }
        self.last = Some(time);
        step
    }
}

/// What is wrong in a kline stream, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KlineIssue {
    /// A candle wrong on its own (alignment, closeTime, OHLC, count), or
    /// a forming candle whose open went back, count fell, high fell or
    /// low rose.
    Malformed,
    /// A bucket ended (the next one's first frame came) without its
    /// `closed:true` frame.
    MissingClose,
    /// A frame of a bucket after its `closed:true` one.
    AfterClose,
    /// A `closed:true` frame that is not the bucket's last forming
    /// candle again, or the first frame of a new bucket already closed.
    BadClose,
    /// A bucket older than the one before.
    OutOfOrder,
    /// The count grew by more than one from one frame to the next (the
    /// live data is the forming candle after each point), or a new
    /// bucket's first frame has a count above one.
    CountSkip,
}

impl KlineIssue {
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "kline_malformed",
            Self::MissingClose => "kline_missing_close",
            Self::AfterClose => "kline_after_close",
            Self::BadClose => "kline_bad_close",
            Self::OutOfOrder => "kline_out_of_order",
            Self::CountSkip => "kline_count_skip",
        }
    }
}

/// A kline stream on one connection: the last candle it got.
#[derive(Debug, Clone)]
pub struct KlineCheck {
    interval: i64,
    last: Option<Candle>,
}

impl KlineCheck {
    pub fn new(interval: i64) -> Self {
        Self {
            interval,
            last: None,
        }
    }

    /// The snapshot's candles (oldest first); the last one is where the
    /// live data goes on from.
    pub fn snapshot(&mut self, candles: &[Candle]) -> Result<(), (KlineIssue, String)> {
        for c in candles {
            if let Some(p) = c.problem(self.interval) {
                return Err((KlineIssue::Malformed, format!("snapshot: {p}")));
            }
        }
        for w in candles.windows(2) {
            if w[1].open_time <= w[0].open_time {
                return Err((
                    KlineIssue::OutOfOrder,
                    format!(
                        "snapshot: openTime {} after {}",
                        w[1].open_time, w[0].open_time
                    ),
                ));
            }
            if !w[0].closed {
                return Err((
                    KlineIssue::MissingClose,
                    format!(
                        "snapshot: bucket {} not closed before {}",
                        w[0].open_time, w[1].open_time
                    ),
                ));
            }
        }
        self.last = candles.last().cloned();
        Ok(())
    }

    /// One live frame. The candle is taken as the stream's state even
    /// when it has an issue, so that one fault is reported once.
    pub fn live(&mut self, c: Candle) -> Result<(), (KlineIssue, String)> {
        let verdict = self.judge(&c);
        self.last = Some(c);
        verdict
    }

    fn judge(&self, c: &Candle) -> Result<(), (KlineIssue, String)> {
        use KlineIssue::*;
        if let Some(p) = c.problem(self.interval) {
            return Err((Malformed, p));
        }
        let Some(p) = &self.last else {
            return Ok(());
        };
        let bucket = c.open_time;
        if bucket < p.open_time {
            return Err((
                OutOfOrder,
                format!("bucket {bucket} after bucket {}", p.open_time),
            ));
        }
        if bucket > p.open_time {
            if !p.closed {
                return Err((
                    MissingClose,
                    format!(
                        "bucket {bucket} began without bucket {} closed",
                        p.open_time
                    ),
                ));
            }
            if c.closed {
                return Err((
                    BadClose,
                    format!("bucket {bucket}'s first frame is closed:true"),
                ));
            }
            if c.count != 1 {
                return Err((
                    CountSkip,
                    format!("bucket {bucket}'s first frame has count {}", c.count),
                ));
            }
            return Ok(());
        }
        if p.closed {
            return Err((
                AfterClose,
                format!("bucket {bucket}: a frame after its closed:true"),
            ));
        }
        if c.closed {
            if !c.same_values(p) {
                return Err((
                    BadClose,
                    format!("bucket {bucket}: closed:true differs from the last forming candle"),
                ));
            }
            return Ok(());
        }
        if c.open != p.open || c.count < p.count || c.high < p.high || c.low > p.low {
            return Err((
                Malformed,
                format!(
                    "bucket {bucket}: open {}→{} count {}→{} high {}→{} low {}→{}",
                    p.open, c.open, p.count, c.count, p.high, c.high, p.low, c.low
                ),
            ));
        }
        if c.count > p.count + 1 {
            return Err((
                CountSkip,
                format!("bucket {bucket}: count {}→{}", p.count, c.count),
            ));
        }
        Ok(())
    }
}

/// A point stream across a reconnect: the last second seen before the
/// disconnect, what the snapshot after the reconnect held and its flag,
/// and the first live second after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub last_before: Option<i64>,
    pub snapshot: Option<Vec<i64>>,
    pub recovered: Option<bool>,
    pub first_live: Option<i64>,
}

/// Seconds missing and seen twice across a reconnect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Continuity {
    pub missing: u64,
    pub duplicate: u64,
}

impl Resume {
    /// Whether snapshot + first live continue exactly from `last_before`;
    /// `None` when that cannot be told (nothing seen before, or no
    /// snapshot and live point yet).
    pub fn continuity(&self) -> Option<Continuity> {
        let mut seconds = Seconds::starting_at(self.last_before?);
        for &t in self.snapshot.as_ref()? {
            seconds.observe(t);
        }
        seconds.observe(self.first_live?);
        Some(Continuity {
            missing: seconds.missing,
            duplicate: seconds.duplicate,
        })
    }

    /// One line for a report.
    pub fn describe(&self) -> String {
        let snapshot = match self.snapshot.as_deref() {
            None => "none".to_owned(),
            Some([]) => "[]".to_owned(),
            Some([one]) => format!("[{one}]"),
            Some(s) => format!("[{}..{}] ({} points)", s[0], s[s.len() - 1], s.len()),
        };
        let show = |v: Option<i64>| v.map_or("none".to_owned(), |v| v.to_string());
        format!(
            "last before {}, snapshot {snapshot} recovered {}, first live {}",
            show(self.last_before),
            self.recovered
                .map_or("absent".to_owned(), |r| r.to_string()),
            show(self.first_live)
        )
    }
}

/// The subscribe requests of a reconnect: one per distinct `since` (the
/// last second seen), each with the indexes of its streams, in the order
/// of the streams' first appearance. Streams that saw nothing subscribe
/// without `since`.
pub fn since_groups(last_seen: &[Option<i64>]) -> Vec<(Option<i64>, Vec<usize>)> {
    let mut groups: Vec<(Option<i64>, Vec<usize>)> = Vec::new();
    for (i, since) in last_seen.iter().enumerate() {
        match groups.iter_mut().find(|(s, _)| s == since) {
            Some((_, members)) => members.push(i),
            None => groups.push((*since, vec![i])),
        }
    }
    groups
}

/// Whether a point of second `time` read at `now_ns` (Unix ns) is of the
/// current second: the client has caught up with the live feed.
pub fn is_current(time: i64, now_ns: u128) -> bool {
    time >= (now_ns / 1_000_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_count_gaps_and_duplicates() {
        let mut s = Seconds::default();
        assert_eq!(s.observe(100), Step::First);
        assert_eq!(s.observe(101), Step::Next);
        assert_eq!(s.observe(104), Step::Gap(2));
        assert_eq!(s.observe(104), Step::Duplicate);
        assert_eq!(s.observe(102), Step::Duplicate);
        // A late duplicate does not move the stream back.
        assert_eq!(s.observe(105), Step::Next);
        assert_eq!(
            s,
            Seconds {
                last: Some(105),
                seen: 6,
                missing: 2,
                duplicate: 2
            }
        );
        let mut r = Seconds::starting_at(50);
        assert_eq!(r.observe(51), Step::Next);
        assert_eq!(r.observe(51), Step::Duplicate);
    }

    fn c(open_time: i64, count: u64, closed: bool) -> Candle {
        Candle {
            open_time,
            close_time: open_time + 59,
            open: 1.0,
            high: 1.0 + count as f64 / 100.0,
            low: 1.0,
            close: 1.0 + count as f64 / 100.0,
            count,
            closed,
        }
    }

    #[test]
    fn klines_close_each_bucket_once() {
        let mut k = KlineCheck::new(60);
        k.snapshot(&[c(60, 57, false)]).unwrap();
        k.live(c(60, 58, false)).unwrap();
        k.live(c(60, 59, false)).unwrap();
        k.live(c(60, 60, false)).unwrap();
        k.live(c(60, 60, true)).unwrap();
        k.live(c(120, 1, false)).unwrap();
        k.live(c(120, 2, false)).unwrap();

        // A second close of the same bucket.
        let mut k = KlineCheck::new(60);
        k.live(c(60, 60, true)).unwrap();
        assert_eq!(
            k.live(c(60, 60, true)).unwrap_err().0,
            KlineIssue::AfterClose
        );

        // The next bucket without a close of this one.
        let mut k = KlineCheck::new(60);
        k.live(c(60, 59, false)).unwrap();
        assert_eq!(
            k.live(c(120, 1, false)).unwrap_err().0,
            KlineIssue::MissingClose
        );
        // Reported once: the stream goes on from the new bucket.
        k.live(c(120, 2, false)).unwrap();

        // A close that is not the last forming candle.
        let mut k = KlineCheck::new(60);
        k.live(c(60, 30, false)).unwrap();
        assert_eq!(k.live(c(60, 31, true)).unwrap_err().0, KlineIssue::BadClose);

        // Going back, falling counts, skipped counts, bad candles.
        let mut k = KlineCheck::new(60);
        k.live(c(120, 5, false)).unwrap();
        assert_eq!(
            k.live(c(60, 5, false)).unwrap_err().0,
            KlineIssue::OutOfOrder
        );
        let mut k = KlineCheck::new(60);
        k.live(c(120, 5, false)).unwrap();
        assert_eq!(
            k.live(c(120, 4, false)).unwrap_err().0,
            KlineIssue::Malformed
        );
        assert_eq!(
            k.live(c(120, 6, false)).unwrap_err().0,
            KlineIssue::CountSkip
        );
        assert_eq!(
            k.live(c(121, 7, false)).unwrap_err().0,
            KlineIssue::Malformed
        );
        let mut k = KlineCheck::new(60);
        k.live(c(60, 60, true)).unwrap();
        assert_eq!(
            k.live(c(120, 3, false)).unwrap_err().0,
            KlineIssue::CountSkip
        );

        // Snapshots: oldest first, all but the last closed.
        let mut k = KlineCheck::new(60);
        k.snapshot(&[c(0, 60, true), c(60, 3, false)]).unwrap();
        assert_eq!(
            k.snapshot(&[c(60, 60, true), c(0, 3, false)])
                .unwrap_err()
                .0,
            KlineIssue::OutOfOrder
        );
        assert_eq!(
            k.snapshot(&[c(0, 60, false), c(60, 3, false)])
                .unwrap_err()
                .0,
            KlineIssue::MissingClose
        );
        k.snapshot(&[]).unwrap();
    }

    #[test]
    fn resume_continuity() {
        let exact = Resume {
            last_before: Some(100),
            snapshot: Some(vec![101, 102, 103]),
            recovered: Some(true),
            first_live: Some(104),
        };
        assert_eq!(exact.continuity(), Some(Continuity::default()));
        // Empty snapshot: the first live second is the one after since.
        let empty = Resume {
            snapshot: Some(vec![]),
            first_live: Some(101),
            ..exact.clone()
        };
        assert_eq!(empty.continuity(), Some(Continuity::default()));
        // The snapshot repeats the last second seen, live repeats the snapshot's last.
        let dup = Resume {
            snapshot: Some(vec![100, 101, 102]),
            first_live: Some(102),
            ..exact.clone()
        };
        assert_eq!(
            dup.continuity(),
            Some(Continuity {
                missing: 0,
                duplicate: 2
            })
        );
        // Seconds lost between the snapshot and live.
        let gap = Resume {
            first_live: Some(107),
            ..exact.clone()
        };
        assert_eq!(
            gap.continuity(),
            Some(Continuity {
                missing: 3,
                duplicate: 0
            })
        );
        // Nothing to tell yet.
        let pending = Resume {
            first_live: None,
            ..exact.clone()
        };
        assert_eq!(pending.continuity(), None);
        assert_eq!(
            exact.describe(),
            "last before 100, snapshot [101..103] (3 points) recovered true, first live 104"
        );
    }

    #[test]
    fn reconnect_requests_group_by_since() {
        assert_eq!(
            since_groups(&[Some(10), Some(10), Some(9), None, Some(10)]),
            vec![
                (Some(10), vec![0, 1, 4]),
                (Some(9), vec![2]),
                (None, vec![3])
            ]
        );
        assert!(since_groups(&[]).is_empty());
    }

    #[test]
    fn current_second() {
        let at = |s: i64, ms: u128| s as u128 * 1_000_000_000 + ms * 1_000_000;
        assert!(is_current(100, at(100, 3)));
        assert!(is_current(100, at(100, 999)));
        assert!(!is_current(100, at(101, 0)));
        assert!(is_current(101, at(100, 999)));
    }
}
