//! Request limits that hold across every API node on one Redis: each
//! client's GCRA bucket lives in Redis ([`RedisStore::take_quota`]), and a
//! node takes a tenth of a second's allowance at a time (a lease), spent
//! locally, so that the hot path asks Redis once per lease rather than per
//! request. What a node has leased and not spent is at most that tenth of
//! a second: the contract's bound on the overshoot per node.
//!
//! Redis unreachable (or slower than [`ASK_TIMEOUT`]): the node falls back
//! to its own per-node limits for [`DOWN_FOR`] at a time, with a warning
//! and `ratesd_rate_limit_shared_fallbacks_total`; never a 5xx.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::access::Client;
use crate::access::tiers::Tier;
use crate::store::RedisStore;

/// How long a leased allowance may be spent: what is left is dropped.
const LEASE_TTL: Duration = Duration::from_secs(1);

/// A take that takes longer counts as Redis down.
const ASK_TIMEOUT: Duration = Duration::from_millis(250);

/// Once Redis failed, how long the node counts alone before asking again.
const DOWN_FOR: Duration = Duration::from_secs(1);

/// A client's allowance leased by this node.
#[derive(Debug)]
struct Lease {
    tokens: u32,
    /// What the bucket held after the take.
    remaining: u32,
    expires: Instant,
    /// A take of a whole lease is under way: others take one at a time.
    asking: bool,
}

impl Lease {
    /// Spends one request of it, if it has one left and has not expired:
    /// about how many are left in the bucket.
    fn spend(&mut self) -> Option<u32> {
        if self.tokens == 0 || self.expires <= Instant::now() {
            return None;
        }
        self.tokens -= 1;
        Some(self.remaining.saturating_add(self.tokens))
    }
}

/// Marks a client's whole-lease take as over when dropped.
struct Asking<'a> {
    leases: &'a Mutex<HashMap<(usize, Client), Lease>>,
    key: (usize, Client),
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lease) = leases.get_mut(&self.key) {
            lease.asking = false;
        }
    }
}

/// What Redis said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// Let through; about this many requests are left in the bucket.
    Granted { remaining: u32 },
    /// Over the limit: one request will pass after `wait`.
    Refused { wait: Duration },
    /// Redis did not answer: count on this node alone.
    Unavailable,
}

pub struct SharedLimits {
    store: Arc<RedisStore>,
    /// By tier (its address: tiers live as long as the process) and client.
    leases: Mutex<HashMap<(usize, Client), Lease>>,
    down_until: Mutex<Option<Instant>>,
    fallbacks: metrics::Counter,
}

impl SharedLimits {
    pub fn new(store: Arc<RedisStore>) -> Self {
        Self {
            store,
            leases: Mutex::new(HashMap::new()),
            down_until: Mutex::new(None),
            fallbacks: metrics::counter!("ratesd_rate_limit_shared_fallbacks_total"),
        }
    }

    /// Spends one request of a lease this node holds for `client`, if it
    /// holds one: about how many are left in the bucket.
    pub fn spend_leased(&self, tier: &Arc<Tier>, client: &Client) -> Option<u32> {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.get_mut(&(tier_id(tier), client.clone()))?.spend()
    }

    /// Whether Redis failed lately (the node counts alone meanwhile).
    pub fn is_down(&self) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        down.is_some_and(|until| Instant::now() < until)
    }

    /// Takes a lease from Redis and spends one request of it.
    pub async fn ask(&self, tier: &Arc<Tier>, client: &Client) -> Asked {
        let key = (tier_id(tier), client.clone());
        // A tenth of a second's rate, or one when another take is under way
        // (what this node leases and leaves unspent stays within one lease).
        let batch = tier.per_second.div_ceil(10).max(1);
        let want = {
            let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            let lease = leases.entry(key.clone()).or_insert(Lease {
                tokens: 0,
                remaining: 0,
                expires: Instant::now(),
                asking: false,
            });
            // A lease came back since this request looked: spend from it
            // (a node holds one lease at a time).
            if let Some(remaining) = lease.spend() {
                return Asked::Granted { remaining };
            }
            if lease.asking {
                1
            } else {
                lease.asking = batch > 1;
                batch
            }
        };
        // Whatever becomes of this take (an answer, or the request dropped
        // mid-way by a client that went), the next may be a whole lease.
        let _asking = (want > 1).then(|| Asking {
            leases: &self.leases,
            key: key.clone(),
        });
        let name = client_name(client);
        let taken = tokio::time::timeout(
            ASK_TIMEOUT,
            self.store
                .take_quota(&tier.name, &name, tier.per_second, tier.burst, want),
        )
        .await;
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        match taken {
            Ok(Ok(taken)) if taken.granted > 0 => {
                // One of the grant is this request's; the rest joins what the
                // lease holds (a one-request take, answered after a whole
                // lease's, must not wipe it).
                if let Some(lease) = leases.get_mut(&key)
                    && taken.granted > 1
                {
                    let now = Instant::now();
                    if lease.expires <= now {
                        lease.tokens = 0;
                    }
                    lease.tokens += taken.granted - 1;
                    lease.remaining = taken.remaining;
                    lease.expires = now + LEASE_TTL;
                }
                self.up();
                Asked::Granted {
                    remaining: taken.remaining.saturating_add(taken.granted - 1),
                }
            }
            Ok(Ok(taken)) => {
                self.up();
                Asked::Refused {
                    wait: Duration::from_micros(taken.wait_us),
                }
            }
            Ok(Err(e)) => {
                drop(leases);
                self.down(&e.to_string());
                Asked::Unavailable
            }
            Err(_) => {
                drop(leases);
                self.down("no answer within 250 ms");
                Asked::Unavailable
            }
        }
    }

    fn up(&self) {
        let mut down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        if down.take().is_some() {
            metrics::gauge!("ratesd_rate_limit_shared_up").set(1.0);
            tracing::info!("redis answers again: request limits are shared across nodes again");
        }
    }

    fn down(&self, why: &str) {
        self.fallbacks.increment(1);
        let mut down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        if down.is_none() {
            metrics::gauge!("ratesd_rate_limit_shared_up").set(0.0);
            tracing::warn!(
                error = why,
                "redis unavailable: request limits counted on this node alone"
            );
        }
        *down = Some(Instant::now() + DOWN_FOR);
    }

    /// Drops leases that expired.
    pub fn forget_idle(&self) {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.retain(|_, l| l.asking || l.expires > now);
        leases.shrink_to_fit();
    }
}

/// How long a node vouches for a connection it holds; it renews every
/// third of it. A node that dies stops renewing: its connections leave the
/// count within this.
const CONNECTION_TTL: Duration = Duration::from_secs(30);

/// A tier and a client, as named in Redis.
type Holder = (Arc<str>, String);

/// Each client's open WebSockets and event streams counted on every node.
pub struct SharedConnections {
    store: Arc<RedisStore>,
    /// This process, in the members it adds.
    node: String,
    next: std::sync::atomic::AtomicU64,
    /// What this node holds: per tier and client, its members.
    held: Mutex<HashMap<Holder, Vec<String>>>,
}

/// A connection counted on every node; counted out when dropped.
pub struct SharedSlot {
    shared: Arc<SharedConnections>,
    tier: Arc<str>,
    client: String,
    member: String,
}

impl SharedConnections {
    /// Starts the renewals too, for as long as it lives.
    pub fn new(store: Arc<RedisStore>) -> Arc<Self> {
        use rand::Rng;
        let shared = Arc::new(Self {
            store,
            node: format!("{:016x}", rand::rng().random::<u64>()),
            next: std::sync::atomic::AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(CONNECTION_TTL / 3);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                shared.renew().await;
            }
        });
        shared
    }

    /// Counts a connection of `client` in when it holds fewer than the
    /// tier's cap on every node: `Ok(None)` when it holds as many, `Err`
    /// when Redis cannot say (the caller counts on this node alone).
    pub async fn open(
        self: &Arc<Self>,
        tier: &Tier,
        client: &Client,
    ) -> Result<Option<SharedSlot>, ()> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let member = format!("{}:{n}", self.node);
        let name = client_name(client);
        let tier_name: Arc<str> = Arc::from(tier.name.as_str());
        // Held (and renewed) from before Redis is asked: a request dropped
        // while Redis counts it in still counts it out (the slot's drop).
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((tier_name.clone(), name.clone()))
            .or_default()
            .push(member.clone());
        let slot = SharedSlot {
            shared: self.clone(),
            tier: tier_name,
            client: name,
            member,
        };
        let asked = tokio::time::timeout(
            ASK_TIMEOUT,
            self.store.open_connection(
                &tier.name,
                &slot.client,
                &slot.member,
                tier.connections,
                CONNECTION_TTL,
            ),
        )
        .await;
        match asked {
            Ok(Ok(true)) => Ok(Some(slot)),
            Ok(Ok(false)) => Ok(None),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis unavailable: connections counted on this node alone");
                Err(())
            }
            Err(_) => {
                tracing::warn!("redis did not answer: connections counted on this node alone");
                Err(())
            }
        }
    }

    async fn renew(&self) {
        let held: Vec<(Holder, Vec<String>)> = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ((tier, client), members) in held {
            if let Err(e) = self
                .store
                .renew_connections(&tier, &client, &members, CONNECTION_TTL)
                .await
            {
                tracing::warn!(error = %e, "cannot renew this node's connections in redis");
                return;
            }
        }
    }
}

impl Drop for SharedSlot {
    fn drop(&mut self) {
        let (tier, client, member) = (
            self.tier.clone(),
            std::mem::take(&mut self.client),
            std::mem::take(&mut self.member),
        );
        let key = (tier, client);
        {
            let mut held = self.shared.held.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(members) = held.get_mut(&key) {
                members.retain(|m| *m != member);
                if members.is_empty() {
                    held.remove(&key);
                }
            }
        }
        let (shared, (tier, client)) = (self.shared.clone(), key);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = shared.store.close_connection(&tier, &client, &member).await {
                    tracing::debug!(error = %e, "cannot count a closed connection out (it expires)");
                }
            });
        }
    }
}

/// A tier's identity in this process.
fn tier_id(tier: &Arc<Tier>) -> usize {
    Arc::as_ptr(tier) as usize
}

/// How a client is named in Redis (hashed there): never a credential.
fn client_name(client: &Client) -> String {
    match client {
        Client::Ip(ip) => format!("ip:{ip}"),
        Client::Key(name) => format!("key:{name}"),
        Client::Subject(sub) => format!("sub:{sub}"),
    }
}
