//! What one connection may do, as the API's access check decided it: how
//! many streams it may hold, the only assets it may read, when its token
//! expires. The default is what the settings allow anyone.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::unix_now;
use crate::domain::{AssetId, UnixSeconds};

#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// Streams a v2 connection may hold; `None`: `RATES_WS_MAX_STREAMS`.
    pub max_streams: Option<usize>,
    /// The only assets it may read (sorted); `None`: every asset.
    pub symbols: Option<Arc<[AssetId]>>,
    /// When its token expires (Unix seconds): the connection is closed then.
    pub expires: Option<UnixSeconds>,
}

impl Grant {
    pub fn may_read(&self, id: AssetId) -> bool {
        self.symbols
            .as_ref()
            .is_none_or(|ids| ids.binary_search(&id).is_ok())
    }

    /// Whether it may read every asset (`!all@...` streams).
    pub fn may_read_all(&self) -> bool {
        self.symbols.is_none()
    }

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
    fn symbols_restrict_and_none_allows_all() {
        let open = Grant::default();
        assert!(open.may_read(7) && open.may_read_all());
        let some = Grant {
            symbols: Some(vec![1, 4].into()),
            ..Grant::default()
        };
        assert!(some.may_read(1) && some.may_read(4) && !some.may_read(2));
        assert!(!some.may_read_all());
        let past = Grant {
            expires: Some(unix_now() - 5),
            ..Grant::default()
        };
        assert_eq!(past.time_left(), Some(Duration::ZERO));
        assert_eq!(open.time_left(), None);
    }
}
