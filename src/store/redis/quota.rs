//! Limits shared by every API node: a GCRA bucket per client in Redis,
//! from which a node takes a few requests' allowance at a time (a lease),
//! so that its hot path asks Redis once per lease, not once per request;
//! and each client's open connections on every node, each vouched for by
//! its node until a deadline it renews (a node that dies stops renewing,
//! and its connections drop out of the count).

use std::sync::LazyLock;

use deadpool_redis::redis::Script;

use super::{RedisStore, Result};

/// Takes up to `want` requests' allowance from a client's bucket (GCRA,
/// times in microseconds on Redis's clock, so that the nodes' clocks do not
/// matter).
///
/// KEYS: the bucket. ARGV: the interval between requests (µs), the burst,
/// want. Returns `{granted, remaining, wait_us}`: what was taken, what is
/// left after it, and (when nothing was) the wait until one request is.
const TAKE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local room = math.floor((now + burst * interval - tat) / interval)
local n = want
if room < n then
  n = room
end
if n <= 0 then
  return {0, 0, tat - (burst - 1) * interval - now}
end
tat = tat + n * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return {n, room - n, 0}
"#;

static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(TAKE_SCRIPT));

/// Counts a connection in when the client has fewer than `max` (0: no cap).
///
/// KEYS: the client's connections. ARGV: member, max, TTL in ms. 1 when
/// counted in.
const OPEN_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local max = tonumber(ARGV[2])
if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// Vouches again for connections still open: only members still there
/// (`XX`), so that a renewal racing a close cannot count it back in.
///
/// KEYS: the client's connections. ARGV: TTL in ms, members.
const RENEW_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"#;

static OPEN: LazyLock<Script> = LazyLock::new(|| Script::new(OPEN_SCRIPT));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW_SCRIPT));

/// What a take got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub granted: u32,
    /// Requests left in the bucket after this take.
    pub remaining: u32,
    /// When nothing was granted, microseconds until one request is.
    pub wait_us: u64,
}

impl RedisStore {
    /// Takes up to `want` requests from `client`'s bucket of `tier` (a rate
    /// of `per_second`, bursts of `burst`).
    pub async fn take_quota(
        &self,
        tier: &str,
        client: &str,
        per_second: u32,
        burst: u32,
        want: u32,
    ) -> Result<Taken> {
        let interval = 1_000_000 / u64::from(per_second.max(1));
        let mut conn = self.conn().await?;
        let (granted, remaining, wait): (i64, i64, i64) = TAKE
            .key(self.keys.quota(tier, client))
            .arg(interval.max(1))
            .arg(burst.max(1))
            .arg(want.max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(Taken {
            granted: u32::try_from(granted).unwrap_or(0),
            remaining: u32::try_from(remaining).unwrap_or(0),
            wait_us: u64::try_from(wait).unwrap_or(0),
        })
    }
}

impl RedisStore {
    /// Counts connection `member` of `client` in `tier` when the client
    /// has fewer than `max` open on every node: false when it has.
    pub async fn open_connection(
        &self,
        tier: &str,
        client: &str,
        member: &str,
        max: u32,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let mut conn = self.conn().await?;
        let counted: i64 = OPEN
            .key(self.keys.conns(tier, client))
            .arg(member)
            .arg(max)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(counted == 1)
    }

    /// Vouches for `members` of `client` for another `ttl`.
    pub async fn renew_connections(
        &self,
        tier: &str,
        client: &str,
        members: &[String],
        ttl: std::time::Duration,
    ) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let mut call = RENEW.key(self.keys.conns(tier, client));
        call.arg(ttl.as_millis().max(1) as u64);
        for m in members {
            call.arg(m);
        }
        let _: i64 = call.invoke_async(&mut conn).await?;
        Ok(())
    }

    /// Counts a closed connection out.
    pub async fn close_connection(&self, tier: &str, client: &str, member: &str) -> Result<()> {
        let mut conn = self.conn().await?;
        let _: i64 = deadpool_redis::redis::cmd("ZREM")
            .arg(self.keys.conns(tier, client))
            .arg(member)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
