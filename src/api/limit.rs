//! Rate limiting in front of the API: a GCRA bucket per client IP
//! (`governor`), the client IP taken from `X-Forwarded-For` only when the
//! peer is a configured trusted proxy; and a cap on WebSocket connections
//! per IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::problem::{Kind, Problem};

/// Paths outside the limit: probes, metrics, and the API docs' assets.
const EXEMPT: [&str; 4] = ["/health/", "/metrics", "/docs", "/api-docs/"];

pub struct HttpLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr, StateInformationMiddleware>,
    clock: DefaultClock,
    per_second: u32,
    burst: u32,
    trusted_proxies: Vec<IpAddr>,
}

impl HttpLimiter {
    /// `None` when `per_second` is 0: no limit.
    pub fn new(per_second: u32, burst: u32, trusted_proxies: Vec<IpAddr>) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = burst.max(1);
        let quota = Quota::per_second(rate).allow_burst(NonZeroU32::new(burst)?);
        Some(Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            clock: DefaultClock::default(),
            per_second,
            burst,
            trusted_proxies,
        })
    }

    pub fn trusted(&self) -> &[IpAddr] {
        &self.trusted_proxies
    }

    /// Forgets idle clients; run now and then so memory follows live IPs.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Seconds until a bucket with `remaining` tokens is full again.
    fn reset_after(&self, remaining: u32) -> u64 {
        let missing = u64::from(self.burst.saturating_sub(remaining));
        missing.div_ceil(u64::from(self.per_second))
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the right-most `X-Forwarded-For` entry that is not itself one.
pub fn client_ip(trusted: &[IpAddr], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

impl HttpLimiter {
    /// Whether a request to `path` from `ip` may pass: `Ok` with the headers
    /// to add to its answer, or `Err` with the 429 answer.
    pub fn admit(&self, path: &str, ip: IpAddr) -> Result<Option<Quota3>, Box<Response>> {
        if EXEMPT.iter().any(|p| path.starts_with(p)) {
            return Ok(None);
        }
        match self.limiter.check_key(&ip) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Ok(Some(Quota3 {
                    limit: self.burst,
                    remaining,
                    reset: self.reset_after(remaining),
                }))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let retry = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                metrics::counter!("ratesd_http_rate_limited_total").increment(1);
                tracing::debug!(%ip, ?wait, "rate limited");
                let mut resp = Problem::new(
                    Kind::RateLimited,
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "at most {} requests a second (bursts of {}) per client; retry in {retry} s",
                        self.per_second, self.burst
                    ),
                )
                .respond();
                // One figure for both headers: the seconds until the next
                // request is let through (RateLimit-Reset on a 429 says when
                // there is quota again, as Retry-After does).
                let headers = resp.headers_mut();
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry));
                Quota3 {
                    limit: self.burst,
                    remaining: 0,
                    reset: retry,
                }
                .set(headers);
                Err(Box::new(resp))
            }
        }
    }
}

/// The `RateLimit-Limit`, `-Remaining` and `-Reset` of an answer.
#[derive(Debug, Clone, Copy)]
pub struct Quota3 {
    limit: u32,
    remaining: u32,
    reset: u64,
}

impl Quota3 {
    pub fn set(self, headers: &mut HeaderMap) {
        headers.insert("ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("ratelimit-reset", HeaderValue::from(self.reset));
    }
}

/// Keeps the limiter's memory to the clients seen lately.
pub async fn forget_idle_clients(
    limiter: Arc<HttpLimiter>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => limiter.forget_idle(),
        }
    }
}

/// Counts WebSocket connections per client IP.
pub struct ConnectionLimiter {
    max: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// Holds one connection's place; gives it back when dropped.
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl ConnectionLimiter {
    /// `max` 0 means no cap.
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            limiter: self.clone(),
            ip,
        })
    }

    pub fn max(&self) -> u32 {
        self.max
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        // Untrusted peer: the header is ignored.
        assert_eq!(client_ip(&[], other, &xff("203.0.113.9")), other);
        // Trusted peer: the right-most untrusted entry (a client can forge the left ones).
        assert_eq!(
            client_ip(&[proxy], proxy, &xff("1.2.3.4, 203.0.113.9")),
            client
        );
        assert_eq!(
            client_ip(&[proxy], proxy, &xff("203.0.113.9, 10.0.0.1")),
            client
        );
        assert_eq!(client_ip(&[proxy], proxy, &xff("garbage")), proxy);
        assert_eq!(client_ip(&[proxy], proxy, &HeaderMap::new()), proxy);
    }

    #[test]
    fn connection_slots_are_counted_and_returned() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let limiter = ConnectionLimiter::new(2);
        let a = limiter.try_acquire(ip).unwrap();
        let _b = limiter.try_acquire(ip).unwrap();
        assert!(limiter.try_acquire(ip).is_none());
        assert!(limiter.try_acquire("127.0.0.2".parse().unwrap()).is_some());
        drop(a);
        assert!(limiter.try_acquire(ip).is_some());
        assert!(ConnectionLimiter::new(0).try_acquire(ip).is_some());
    }

    #[test]
    fn a_429_says_the_same_wait_in_both_headers() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Two tokens a second, a burst of 4: the fifth request is refused.
        let l = HttpLimiter::new(2, 4, vec![]).unwrap();
        for _ in 0..4 {
            assert!(l.admit("/api/v1/rates", ip).is_ok());
        }
        let refused = l.admit("/api/v1/rates", ip).unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = refused.headers();
        assert_eq!(h[header::RETRY_AFTER], "1");
        assert_eq!(h["ratelimit-reset"], h[header::RETRY_AFTER]);
        assert_eq!(h["ratelimit-remaining"], "0");
    }

    #[test]
    fn reset_counts_seconds_to_a_full_bucket() {
        let l = HttpLimiter::new(50, 100, vec![]).unwrap();
        assert_eq!(l.reset_after(100), 0);
        assert_eq!(l.reset_after(0), 2);
        assert_eq!(l.reset_after(99), 1);
        assert!(HttpLimiter::new(0, 100, vec![]).is_none());
    }
}
