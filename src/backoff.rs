//! Doubling delays between retries, capped: the one schedule every retry
//! loop in the service follows (the archiver, the live feed's resubscribe,
//! an upstream's circuit breaker).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// `first`, then twice that at each further attempt, never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doubling {
    pub first: Duration,
    pub max: Duration,
}

impl Doubling {
    /// The delay before retry `n` (0 is the first).
    pub fn nth(&self, n: u32) -> Duration {
        self.first
            .checked_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// A retry loop's state: the next delay, reset on success.
#[derive(Debug, Clone)]
pub struct Backoff {
    schedule: Doubling,
    attempt: u32,
}

impl Backoff {
    pub fn new(schedule: Doubling) -> Self {
        Self {
            schedule,
            attempt: 0,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay to wait now; the next one doubles.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.schedule.nth(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Sleeps for the next delay; false when `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Doubling {
            first: 100 * MS,
            max: 1_000 * MS,
        });
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(
            delays,
            [
                100 * MS,
                200 * MS,
                400 * MS,
                800 * MS,
                1_000 * MS,
                1_000 * MS
            ]
        );
        b.reset();
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn far_attempts_stay_at_the_cap() {
        let d = Doubling {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        assert_eq!(d.nth(0), Duration::from_secs(1));
        assert_eq!(d.nth(4), Duration::from_secs(16));
        for n in [5, 31, 32, 64, u32::MAX] {
            assert_eq!(d.nth(n), Duration::from_secs(30), "{n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wait_ends_early_on_shutdown() {
        let mut b = Backoff::new(Doubling {
            first: Duration::from_secs(60),
            max: Duration::from_secs(60),
        });
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert!(!b.wait(&shutdown).await);
        assert!(b.wait(&CancellationToken::new()).await, "sleeps otherwise");
    }
}
