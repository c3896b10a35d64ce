//! Wall-clock time, behind a trait so that the worker's schedule can be
//! tested on a controllable clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::domain::UnixSeconds;

/// Wall-clock time, injectable so the schedule can be tested.
pub trait Clock: Send + Sync + 'static {
    /// Time since the Unix epoch.
    fn now(&self) -> Duration;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// The current Unix second by the system clock.
pub fn unix_now() -> UnixSeconds {
    UnixSeconds::try_from(SystemClock.now().as_secs()).unwrap_or(UnixSeconds::MAX)
}
