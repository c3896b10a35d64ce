//! Rate limiting in front of the API: a GCRA bucket (`governor`) per
//! client of each tier (an IP for `anonymous`, a key, a token's subject),
//! and a cap on connections per client.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::problem::{Kind, Problem};
use super::shared_limit::{Asked, SharedLimits};
use crate::access::tiers::{Tier, Tiers};
use crate::access::{Client, Identity};

/// Paths outside the limit: the probes (below `/health/`) and `/metrics`
/// itself, not a path that merely begins like it (a 404 is limited). (The
/// API docs pass the front door by and never reach it:
/// [`super::front_door::RouteLabels`].)
fn exempt(path: &str) -> bool {
    path.starts_with("/health/") || path == "/metrics"
}

/// A tier's bucket per client.
struct TierLimiter {
    tier: Arc<Tier>,
    limiter: Option<DefaultKeyedRateLimiter<Client, StateInformationMiddleware>>,
    /// `RateLimit-Policy`, made once.
    policy: HeaderValue,
    /// `ratesd_http_requests_by_tier_total{tier}`, looked up once.
    requests: metrics::Counter,
}

/// The request limit of every tier: a GCRA bucket per client, counted by
/// each tier's own rate and burst (a tier of rate 0 has none); with Redis,
/// one bucket for every node ([`SharedLimits`]), this node's own buckets
/// standing in while Redis is away.
pub struct HttpLimiter {
    tiers: Vec<TierLimiter>,
    clock: DefaultClock,
    shared: Option<SharedLimits>,
}

/// Let through with these headers, or refused with this answer.
pub type Decision = Result<Option<Quota3>, Box<Response>>;

/// A request's admission: decided at once, or once Redis has answered.
pub enum Admission {
    Now(Decision),
    Later(Pin<Box<dyn Future<Output = Decision> + Send>>),
}

impl HttpLimiter {
    /// With `shared`, the buckets live in Redis.
    pub fn new(tiers: &Tiers, shared: Option<SharedLimits>) -> Self {
        let tiers = tiers
            .iter()
            .map(|tier| {
                let limiter = NonZeroU32::new(tier.per_second).and_then(|rate| {
                    let quota = Quota::per_second(rate).allow_burst(NonZeroU32::new(tier.burst)?);
                    Some(RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>())
                });
                TierLimiter {
                    tier: tier.clone(),
                    limiter,
                    policy: HeaderValue::from_str(&tier.policy())
                        .unwrap_or(HeaderValue::from_static("0")),
                    requests: metrics::counter!(
                        "ratesd_http_requests_by_tier_total",
                        "tier" => tier.name.clone()
                    ),
                }
            })
            .collect();
        Self {
            tiers,
            clock: DefaultClock::default(),
            shared,
        }
    }

    /// Forgets idle clients; run now and then so memory follows live ones.
    pub fn forget_idle(&self) {
        if let Some(shared) = &self.shared {
            shared.forget_idle();
        }
        for t in &self.tiers {
            if let Some(limiter) = &t.limiter {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }

    /// Where `tier`'s limiter is in [`Self::tiers`].
    fn position(&self, tier: &Arc<Tier>) -> Option<usize> {
        self.tiers
            .iter()
            .position(|t| Arc::ptr_eq(&t.tier, tier))
            .or_else(|| self.tiers.iter().position(|t| t.tier.name == tier.name))
    }

    /// Whether a request of `who` to `path` may pass: `Ok` with the headers
    /// to add to its answer, or `Err` with the 429 answer; with shared
    /// limits, at once while this node holds a lease for the client, else
    /// once Redis has answered.
    pub fn admit(self: &Arc<Self>, path: &str, who: &Identity) -> Admission {
        if exempt(path) {
            return Admission::Now(Ok(None));
        }
        let Some(i) = self.position(&who.tier) else {
            return Admission::Now(Ok(None));
        };
        let t = &self.tiers[i];
        t.requests.increment(1);
        if t.limiter.is_none() {
            return Admission::Now(Ok(None));
        }
        let Some(shared) = &self.shared else {
            return Admission::Now(self.admit_here(t, who));
        };
        if let Some(remaining) = shared.spend_leased(&t.tier, &who.client) {
            return Admission::Now(Ok(Some(self.quota(t, remaining))));
        }
        if shared.is_down() {
            return Admission::Now(self.admit_here(t, who));
        }
        let this = self.clone();
        let who = who.clone();
        Admission::Later(Box::pin(async move {
            let t = &this.tiers[i];
            let Some(shared) = &this.shared else {
                return this.admit_here(t, &who);
            };
            match shared.ask(&t.tier, &who.client).await {
                Asked::Granted { remaining } => Ok(Some(this.quota(t, remaining))),
                Asked::Refused { wait } => Err(this.refuse(t, &who, wait)),
                Asked::Unavailable => this.admit_here(t, &who),
            }
        }))
    }

    fn quota(&self, t: &TierLimiter, remaining: u32) -> Quota3 {
        Quota3 {
            limit: t.tier.burst,
            remaining,
            reset: reset_after(&t.tier, remaining),
            policy: t.policy.clone(),
        }
    }

    /// The decision of this node's own bucket for the client.
    fn admit_here(&self, t: &TierLimiter, who: &Identity) -> Result<Option<Quota3>, Box<Response>> {
        let Some(limiter) = &t.limiter else {
            return Ok(None);
        };
        match limiter.check_key(&who.client) {
            Ok(snapshot) => Ok(Some(self.quota(t, snapshot.remaining_burst_capacity()))),
            Err(not_until) => Err(self.refuse(t, who, not_until.wait_time_from(self.clock.now()))),
        }
    }

    /// The 429 of a client who may pass again after `wait`.
    fn refuse(&self, t: &TierLimiter, who: &Identity, wait: Duration) -> Box<Response> {
        let tier = &t.tier;
        let retry = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        metrics::counter!("ratesd_http_rate_limited_total").increment(1);
        tracing::debug!(tier = %tier.name, kind = who.kind(), ?wait, "rate limited");
        let mut resp = Problem::new(
            Kind::RateLimited,
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "at most {} requests a second (bursts of {}) per client of the {} tier; \
                 retry in {retry} s",
                tier.per_second, tier.burst, tier.name
            ),
        )
        .respond();
        // One figure for both headers: the seconds until the next request is
        // let through (RateLimit-Reset on a 429 says when there is quota
        // again, as Retry-After does).
        let headers = resp.headers_mut();
        headers.insert(header::RETRY_AFTER, count_value(retry));
        Quota3 {
            limit: tier.burst,
            remaining: 0,
            reset: retry,
            policy: t.policy.clone(),
        }
        .set(headers);
        Box::new(resp)
    }
}

/// Seconds until a tier's bucket with `remaining` tokens is full again.
fn reset_after(tier: &Tier, remaining: u32) -> u64 {
    let missing = u64::from(tier.burst.saturating_sub(remaining));
    missing.div_ceil(u64::from(tier.per_second.max(1)))
}

// The limit headers' names, made once: a `&str` name not in `http`'s table
// is copied into a new allocation at each insert.
pub const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
pub const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The `RateLimit-Limit`, `-Remaining`, `-Reset` and `-Policy` of an
/// answer.
#[derive(Debug, Clone)]
pub struct Quota3 {
    limit: u32,
    remaining: u32,
    reset: u64,
    policy: HeaderValue,
}

impl Quota3 {
    pub fn set(self, headers: &mut HeaderMap) {
        headers.insert(LIMIT, count_value(self.limit.into()));
        headers.insert(REMAINING, count_value(self.remaining.into()));
        headers.insert(RESET, count_value(self.reset));
        headers.insert(POLICY, self.policy);
    }
}

/// A count as a header value: the usual ones (up to [`SMALL_COUNTS`]) made
/// once, so that an answer's limit headers allocate nothing.
fn count_value(n: u64) -> HeaderValue {
    static SMALL: std::sync::LazyLock<Vec<HeaderValue>> = std::sync::LazyLock::new(|| {
        (0..=SMALL_COUNTS)
            .map(|n| HeaderValue::from_static(Box::leak(n.to_string().into_boxed_str())))
            .collect()
    });
    usize::try_from(n)
        .ok()
        .and_then(|i| SMALL.get(i))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(n))
}

/// Counts up to this are prepared header values ([`count_value`]).
const SMALL_COUNTS: u64 = 1024;

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

/// Counts open connections per client (an IP, or a caller's [`Client`]).
pub struct ConnectionLimiter<K: Hash + Eq + Clone = IpAddr> {
    open: Mutex<HashMap<K, u32>>,
}

/// Holds one connection's place; gives it back when dropped.
pub struct ConnectionSlot<K: Hash + Eq + Clone = IpAddr> {
    limiter: Arc<ConnectionLimiter<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> ConnectionLimiter<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection of `key`, if it holds fewer than
    /// `max` (0: no cap).
    pub fn try_acquire(self: &Arc<Self>, key: K, max: u32) -> Option<ConnectionSlot<K>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key.clone()).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            limiter: self.clone(),
            key,
        })
    }
}

impl<K: Hash + Eq + Clone> Drop for ConnectionSlot<K> {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::tiers::ANONYMOUS;

    fn tiers(rate: u32, burst: u32) -> Tiers {
        let anonymous = Tier {
            name: ANONYMOUS.into(),
            per_second: rate,
            burst,
            connections: 2,
            streams: 4,
        };
        Tiers::parse("pro:1000/2000/8/64", anonymous).unwrap()
    }

    fn anon(tiers: &Tiers, ip: &str) -> Identity {
        Identity {
            client: Client::Ip(ip.parse().unwrap()),
            tier: tiers.anonymous().clone(),
            scope: crate::domain::Scope::All,
            expires: None,
            key: None,
        }
    }

    #[test]
    fn connection_slots_are_counted_and_returned() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let limiter = ConnectionLimiter::new();
        let a = limiter.try_acquire(ip, 2).unwrap();
        let _b = limiter.try_acquire(ip, 2).unwrap();
        assert!(limiter.try_acquire(ip, 2).is_none());
        assert!(
            limiter
                .try_acquire("127.0.0.2".parse().unwrap(), 2)
                .is_some()
        );
        drop(a);
        assert!(limiter.try_acquire(ip, 2).is_some());
        assert!(ConnectionLimiter::new().try_acquire(ip, 0).is_some());
    }

    #[test]
    fn a_429_says_the_same_wait_in_both_headers() {
        // Two tokens a second, a burst of 4: the fifth request is refused.
        let t = tiers(2, 4);
        let l = Arc::new(HttpLimiter::new(&t, None));
        let now = |a: Admission| match a {
            Admission::Now(decided) => decided,
            Admission::Later(_) => panic!("no Redis here"),
        };
        let who = anon(&t, "127.0.0.1");
        for _ in 0..4 {
            assert!(now(l.admit("/api/v1/rates", &who)).is_ok());
        }
        let refused = now(l.admit("/api/v1/rates", &who)).unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = refused.headers();
        assert_eq!(h[header::RETRY_AFTER], "1");
        assert_eq!(h["ratelimit-reset"], h[header::RETRY_AFTER]);
        assert_eq!(h["ratelimit-remaining"], "0");
        assert_eq!(h["ratelimit-policy"], "4;w=2;tier=\"anonymous\"");
        // Another client, and another tier, have buckets of their own.
        assert!(now(l.admit("/api/v1/rates", &anon(&t, "127.0.0.2"))).is_ok());
        let pro = Identity {
            client: Client::Key("acme".into()),
            tier: t.get("pro").unwrap().clone(),
            scope: crate::domain::Scope::All,
            expires: None,
            key: None,
        };
        let mut h = HeaderMap::new();
        now(l.admit("/api/v1/rates", &pro))
            .unwrap()
            .unwrap()
            .set(&mut h);
        assert_eq!(h["ratelimit-limit"], "2000");
        assert_eq!(h["ratelimit-policy"], "2000;w=2;tier=\"pro\"");
    }

    #[test]
    fn reset_counts_seconds_to_a_full_bucket() {
        let t = tiers(50, 100);
        let a = t.anonymous();
        assert_eq!(reset_after(a, 100), 0);
        assert_eq!(reset_after(a, 0), 2);
        assert_eq!(reset_after(a, 99), 1);
    }
}
