//! A circuit breaker per upstream: after a few failures in a row the
//! worker stops asking it for a while, doubling the pause at each failed
//! retry (capped), and closes the breaker at the first success. Time is the
//! worker's tick second, so the behaviour is exact and testable.

use std::time::Duration;

use crate::backoff::Doubling;
use crate::domain::{SourceStatus, UnixSeconds};

/// Failures in a row that open the breaker.
const TRIP_AFTER: u32 = 3;
/// The pause after the breaker opens, doubled at each failed retry.
const PAUSES: Doubling = Doubling {
    first: Duration::from_secs(1),
    max: Duration::from_secs(MAX_PAUSE as u64),
};
const MAX_PAUSE: i64 = 30;

#[derive(Debug, Default, Clone)]
pub struct Breaker {
    failures: u32,
    trips: u32,
    open_until: Option<UnixSeconds>,
    last_error: Option<String>,
}

impl Breaker {
    /// Whether to fetch from this upstream at `second`.
    pub fn allows(&self, second: UnixSeconds) -> bool {
        self.open_until.is_none_or(|until| second >= until)
    }

    /// Records a success; true when the upstream had been failing.
    pub fn success(&mut self) -> bool {
        let recovered = self.failures > 0;
        *self = Self::default();
        recovered
    }

    /// Records a failure at `second`; true when it opened the breaker.
    pub fn failure(&mut self, second: UnixSeconds, error: String) -> bool {
        self.failures += 1;
        self.last_error = Some(error);
        if self.failures < TRIP_AFTER {
            return false;
        }
        let pause = i64::try_from(PAUSES.nth(self.trips).as_secs()).unwrap_or(MAX_PAUSE);
        self.open_until = Some(second + pause);
        self.trips += 1;
        true
    }

    pub fn status(&self, second: UnixSeconds) -> SourceStatus {
        let state = match self.open_until {
            Some(until) if second < until => "open",
            _ if self.failures > 0 => "failing",
            _ => "ok",
        };
        SourceStatus {
            state: state.to_owned(),
            failures: self.failures,
            last_error: self.last_error.clone(),
            retry_at: self.open_until.filter(|&u| second < u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_three_failures_and_backs_off_doubling() {
        let mut b = Breaker::default();
        assert!(b.allows(0));
        assert!(!b.failure(0, "HTTP 500".into()));
        assert!(!b.failure(1, "HTTP 500".into()));
        assert_eq!(b.status(2).state, "failing");
        assert!(b.failure(2, "HTTP 500".into()), "third failure opens");
        assert!(!b.allows(2));
        assert_eq!(b.status(2).state, "open");
        assert_eq!(b.status(2).retry_at, Some(3));
        // Half-open at 3: one try; failing again doubles the pause.
        assert!(b.allows(3));
        assert!(b.failure(3, "timeout".into()));
        assert!(!b.allows(4));
        assert!(b.allows(5));
        assert!(b.failure(5, "timeout".into()));
        assert!(!b.allows(8) && b.allows(9));
        assert_eq!(b.status(6).last_error.as_deref(), Some("timeout"));
    }

    #[test]
    fn pause_is_capped_and_success_resets() {
        let mut b = Breaker::default();
        let mut t = 0;
        let mut last = 0;
        for _ in 0..40 {
            last = t;
            b.failure(t, "down".into());
            t = b.open_until.unwrap_or(t + 1);
        }
        assert_eq!(b.open_until, Some(last + MAX_PAUSE), "capped pause");
        assert!(b.success());
        assert_eq!(b.status(t).state, "ok");
        assert!(b.allows(t));
        assert!(!b.success(), "nothing to recover from");
    }
}
