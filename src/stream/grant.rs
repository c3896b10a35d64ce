//! What one connection may do, as the API's access check decided it: how
//! many streams it may hold, the only assets it may read, when its token
//! expires. The default is what the settings allow anyone.

use std::time::Duration;

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
    /// The time left until `expires`, if it has one (zero once past), to
    /// the millisecond.
    pub fn time_left(&self) -> Option<Duration> {
        self.expires.map(|at| {
            let at = Duration::from_secs(u64::try_from(at).unwrap_or(0));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            at.saturating_sub(now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_is_zero_once_past() {
        use crate::clock::unix_now;
        let open = Grant::default();
        let past = Grant {
            expires: Some(unix_now() - 5),
            ..Grant::default()
        };
        assert_eq!(past.time_left(), Some(Duration::ZERO));
        assert_eq!(open.time_left(), None);
    }
}
