//! What one connection may do, as the API's access check decided it: how
//! many streams it may hold, the only assets it may read, when its token
//! expires. The default is what the settings allow anyone.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::{Scope, UnixSeconds};

#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// Streams a v2 connection may hold; `None`: `RATES_WS_MAX_STREAMS`.
    pub max_streams: Option<usize>,
    /// The assets it may read.
    pub scope: Scope,
    /// When its token expires (Unix seconds): the connection is closed then.
    pub expires: Option<UnixSeconds>,
    /// Its key's revocation: the connection is closed when it comes.
    pub revoked: Option<CancellationToken>,
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

impl Grant {
    /// Why the connection must end, when it must: at its token's expiry
    /// (4001) or its key's revocation (4003). Pending for ever otherwise.
    pub fn ended(&self) -> impl std::future::Future<Output = (u16, &'static str)> + Send + 'static {
        use futures_util::future::Either;
        // The deadline is taken now, not when the future is first polled
        // (after a subscribe's snapshot, say).
        let deadline = self
            .time_left()
            .map(|left| tokio::time::Instant::now() + left);
        let revoked = self.revoked.clone();
        if deadline.is_none() && revoked.is_none() {
            // Nothing can end it (an anonymous or unexpiring caller): no
            // timer or token held for the connection's life.
            return Either::Right(std::future::pending());
        }
        // Boxed: the timer and the token's wait are large, and every
        // connection's task would carry them inline.
        Either::Left(Box::pin(async move {
            let expired = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let revoked = async {
                match revoked {
                    Some(token) => token.cancelled_owned().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = expired => (super::frame::close::TOKEN_EXPIRED, "token expired"),
                () = revoked => (super::frame::close::KEY_REVOKED, "key revoked"),
            }
        }))
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
