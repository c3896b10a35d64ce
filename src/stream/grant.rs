//! What one connection may do, as the API's access check decided it: how
//! many streams it may hold, the only assets it may read, when its token
//! expires. The default is what the settings allow anyone.

use std::time::Duration;

use crate::clock::unix_now;
use crate::domain::{Scope, UnixSeconds};

#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// Streams a v2 connection may hold; `None`: `RATES_WS_MAX_STREAMS`.
    pub max_streams: Option<usize>,
    /// The assets it may read.
    pub scope: Scope,
    /// When its token expires (Unix seconds): the connection is closed then.
    pub expires: Option<UnixSeconds>,
}

impl Grant {
    /// The time left until `expires`, if it has one (zero once past).
    pub fn time_left(&self) -> Option<Duration> {
        self.expires.map(|at| {
            Duration::from_secs(u64::try_from(at.saturating_sub(unix_now())).unwrap_or(0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_is_zero_once_past() {
        let open = Grant::default();
        let past = Grant {
            expires: Some(unix_now() - 5),
            ..Grant::default()
        };
        assert_eq!(past.time_left(), Some(Duration::ZERO));
        assert_eq!(open.time_left(), None);
    }
}
