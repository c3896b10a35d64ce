//! The writer's election: a lease in Redis, `"generation:node"` with a TTL,
//! taken only when free, renewed and released only by its holder (scripts
//! that check the holder's token). Its generation grows with every lease
//! and fences the tick script (see `TICK_SCRIPT`).

use std::sync::LazyLock;
use std::time::Duration;

use deadpool_redis::redis::Script;

use super::{RedisStore, Result};

/// Takes the lease when nobody holds it. The generation is one more than
/// the last, never less than the Redis server's clock in milliseconds (so
/// it still grows when the counter was lost, a restarted node, while fences
/// elsewhere survived), and above a fence the caller ran into (so a counter
/// behind the fences, a clock set back, is caught up at once).
///
/// KEYS: lease, generation counter. ARGV: node, TTL in ms, a generation the
/// new one must exceed.
/// Returns the generation, or 0 when the lease is held.
const CAMPAIGN_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local g = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
if now > g then
  g = now
end
local floor = tonumber(ARGV[3]) + 1
if floor > g then
  g = floor
end
local gs = string.format('%.0f', g)
redis.call('SET', KEYS[2], gs)
redis.call('SET', KEYS[1], gs .. ':' .. ARGV[1], 'PX', ARGV[2])
return g
"#;

/// KEYS: lease. ARGV: token, TTL in ms. 1 when renewed.
const RENEW_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// KEYS: lease. ARGV: token. 1 when released.
const RESIGN_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

static CAMPAIGN: LazyLock<Script> = LazyLock::new(|| Script::new(CAMPAIGN_SCRIPT));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW_SCRIPT));
static RESIGN: LazyLock<Script> = LazyLock::new(|| Script::new(RESIGN_SCRIPT));

fn token(generation: u64, node: &str) -> String {
    format!("{generation}:{node}")
}

fn millis(ttl: Duration) -> u64 {
    ttl.as_millis().max(1) as u64
}

impl RedisStore {
    /// Takes the lease for `ttl` when it is free: its generation, or `None`
    /// when another node holds it.
    pub async fn campaign(&self, node: &str, ttl: Duration, at_least: u64) -> Result<Option<u64>> {
        let mut conn = self.conn().await?;
        let generation: u64 = CAMPAIGN
            .key(self.keys.leader())
            .key(self.keys.generation())
            .arg(node)
            .arg(millis(ttl))
            .arg(at_least)
            .invoke_async(&mut conn)
            .await?;
        Ok((generation > 0).then_some(generation))
    }

    /// Extends the lease by `ttl` if this node still holds it.
    pub async fn renew(&self, node: &str, generation: u64, ttl: Duration) -> Result<bool> {
        let mut conn = self.conn().await?;
        let renewed: u8 = RENEW
            .key(self.keys.leader())
            .arg(token(generation, node))
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(renewed == 1)
    }

    /// Gives the lease up if this node holds it, so a standby takes over at
    /// once.
    pub async fn resign(&self, node: &str, generation: u64) -> Result<()> {
        let mut conn = self.conn().await?;
        let _: u8 = RESIGN
            .key(self.keys.leader())
            .arg(token(generation, node))
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Who holds the lease: `"generation:node"`, or `None`.
    pub async fn leader(&self) -> Result<Option<String>> {
        let mut conn = self.conn().await?;
        Ok(deadpool_redis::redis::AsyncCommands::get(&mut conn, self.keys.leader()).await?)
    }
}
