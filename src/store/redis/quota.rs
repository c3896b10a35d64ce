//! Request limits shared by every API node: a GCRA bucket per client in
//! Redis, from which a node takes a few requests' allowance at a time (a
//! lease), so that its hot path asks Redis once per lease, not once per
//! request.

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
