//! The Redis engine: a standalone Redis or a Redis Cluster, shared by any
//! number of API nodes and workers.
//!
//! - [`keys`]: every key name, grouped by hash tag.
//! - [`conn`]: connections of either kind and the live feed's subscription.
//! - [`archive_buffer`]: the archive buffer's commands.
//! - [`lease`]: the writer's election.

mod archive_buffer;
mod conn;
mod keys;
mod lease;

use futures_util::future::try_join_all;

use self::conn::{Backend, Conn};
pub use self::keys::CLUSTER_GROUPS;
use self::keys::Keys;
use super::records::{TickEntry, TickOutcome};
use crate::domain::{AssetId, Point, SourceStatus, StoredQuote, UnixSeconds};
use deadpool_redis::PoolError;
use deadpool_redis::redis::{self, AsyncCommands, Script};

/// A standalone Redis or a Redis Cluster (`RATES_REDIS_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RedisMode {
    /// One Redis (or one address that fails over: Sentinel, a managed Redis).
    Standalone,
    /// A Redis Cluster: `RATES_REDIS_URL` lists seed nodes.
    Cluster,
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis pool: {0}")]
    Pool(#[from] PoolError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis holds a malformed value under {key}: {message}")]
    Corrupt { key: String, message: String },
    #[error("bad redis configuration: {0}")]
    Config(String),
}

impl RedisError {
    /// The archive group is gone, as after Redis restarted empty.
    pub fn is_no_group(&self) -> bool {
        matches!(self, Self::Redis(e) if e.code() == Some("NOGROUP"))
    }
}

pub type Result<T, E = RedisError> = std::result::Result<T, E>;

/// Writes one group's share of a tick atomically in one round trip. A point
/// is written only when its second is newer than the asset's newest point,
/// so a second is never written twice and time never goes backwards.
///
/// It refuses a tick whose writer generation is older than the newest that
/// wrote (the fence): a paused old leader cannot write after its successor.
/// It also notices a Redis that lost its data (a restart without
/// persistence, a flush): the epoch marker, set by every tick, is gone.
///
/// KEYS: latest hash, archive stream, live channel, epoch marker, fence,
/// then one points key per asset (all of one group: one hash tag).
/// ARGV: time, trim cutoff (scores <= it are dropped), archive flag, stream
/// max length, generation, publish command, then per asset: id, point JSON,
/// quote JSON.
/// Returns {points written, 1 when the marker was missing}, or {-1, fence}
/// when fenced off.
const TICK_SCRIPT: &str = r#"
local fence = tonumber(redis.call('GET', KEYS[5]) or '0')
local generation = tonumber(ARGV[5])
if generation < fence then
  return {-1, fence}
end
if generation > fence then
  redis.call('SET', KEYS[5], ARGV[5])
end
local t = tonumber(ARGV[1])
local lost = 0
if redis.call('EXISTS', KEYS[4]) == 0 then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[4], now[1] .. string.format('%06d', tonumber(now[2])))
  lost = 1
end
local written = {}
for k = 6, #KEYS do
  local a = 7 + (k - 6) * 3
  local newest = redis.call('ZRANGE', KEYS[k], -1, -1, 'WITHSCORES')
  if #newest == 0 or tonumber(newest[2]) < t then
    redis.call('ZADD', KEYS[k], t, ARGV[a + 1])
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', ARGV[2])
    redis.call('HSET', KEYS[1], ARGV[a], ARGV[a + 2])
    written[#written + 1] = ARGV[a + 1]
  end
end
if #written > 0 then
  local payload = '[' .. table.concat(written, ',') .. ']'
  if ARGV[3] == '1' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'points', payload)
  end
  redis.call(ARGV[6], KEYS[3], payload)
end
return {#written, lost}
"#;

/// Moves a pre-group key to its new name. The archiver may have created the
/// new (empty) archive stream already: an empty stream gives way; any other
/// existing key is kept, and the old one left where it is.
/// KEYS: old name, new name. Returns 1 when moved, 0 when there was nothing
/// to move, -1 when the new name holds data.
const RENAME_LEGACY_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('TYPE', KEYS[2])['ok'] == 'stream' and redis.call('XLEN', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[2])
  else
    return -1
  end
end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
"#;

/// The live channels: each message is one tick's new points of one group.
pub struct LiveFeed {
    subscription: conn::Subscription,
}

impl LiveFeed {
    /// The next message's points; `None` when the subscription is lost.
    pub async fn next(&mut self) -> Option<Result<Vec<Point>>> {
        let (channel, payload) = self.subscription.next().await?;
        Some(payload.and_then(|p| from_json(&channel, &p)))
    }
}

pub struct RedisStore {
    backend: Backend,
    pub(crate) keys: Keys,
    tick_script: Script,
}

impl RedisStore {
    /// How many key groups hold some of `ids`.
    pub fn groups_holding(&self, ids: &[AssetId]) -> usize {
        let groups: std::collections::HashSet<u16> =
            ids.iter().map(|&id| self.keys.group_of(id)).collect();
        groups.len().max(1)
    }

    /// Builds lazy connections: nothing connects until the first command,
    /// so the service starts while Redis is down and `/health/ready` tells.
    /// `url` is one URL, or with [`RedisMode::Cluster`] a comma-separated
    /// list of seed nodes.
    pub fn new(url: &str, prefix: &str, mode: RedisMode) -> Result<Self> {
        if prefix.contains(['{', '}']) {
            return Err(RedisError::Config(format!(
                "the key prefix {prefix:?} may not hold braces: they would change the keys' hash tags"
            )));
        }
        let (backend, groups) = match mode {
            RedisMode::Standalone => (Backend::standalone(url)?, 1),
            RedisMode::Cluster => (Backend::cluster(url)?, CLUSTER_GROUPS),
        };
        Ok(Self {
            backend,
            keys: Keys::new(prefix, groups),
            tick_script: Script::new(TICK_SCRIPT),
        })
    }

    /// Subscribes to every group's live channel on a connection of its own:
    /// the stream of every tick's new points, until the connection drops.
    pub async fn subscribe_live(&self) -> Result<LiveFeed> {
        let channels = (0..self.keys.groups()).map(|g| self.keys.live(g)).collect();
        Ok(LiveFeed {
            subscription: self.backend.subscribe(channels).await?,
        })
    }

    pub(crate) async fn conn(&self) -> Result<Conn> {
        self.backend.conn().await
    }

    /// The asset ids grouped by key group, in group order.
    fn by_group<T>(&self, items: impl IntoIterator<Item = (AssetId, T)>) -> Vec<(u16, Vec<T>)> {
        let mut groups: std::collections::BTreeMap<u16, Vec<T>> = Default::default();
        for (id, item) in items {
            groups.entry(self.keys.group_of(id)).or_default().push(item);
        }
        groups.into_iter().collect()
    }

    /// Writes one tick (see [`TICK_SCRIPT`]), one script per group, the
    /// groups concurrently. `generation` is the writer's lease generation.
    pub async fn write_tick(
        &self,
        time: UnixSeconds,
        window_seconds: u32,
        entries: &[TickEntry],
        archive: Option<u64>,
        generation: u64,
    ) -> Result<TickOutcome> {
        if entries.is_empty() {
            return Ok(TickOutcome::default());
        }
        let publish = if self.backend.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let groups = self.by_group(entries.iter().map(|e| (e.point.asset_id, e)));
        let writes = groups.iter().map(|(group, entries)| {
            let mut inv = self.tick_script.prepare_invoke();
            inv.key(self.keys.latest(*group))
                .key(self.keys.archive(*group))
                .key(self.keys.live(*group))
                .key(self.keys.epoch(*group))
                .key(self.keys.fence(*group))
                .arg(time)
                .arg(time - i64::from(window_seconds))
                .arg(if archive.is_some() { "1" } else { "0" })
                .arg(archive.unwrap_or(0))
                .arg(generation)
                .arg(publish);
            for e in entries {
                inv.key(self.keys.points(e.point.asset_id))
                    .arg(e.point.asset_id)
                    .arg(to_json(&e.point))
                    .arg(to_json(&e.quote));
            }
            async move {
                let mut conn = self.conn().await?;
                let reply: (i64, u64) = inv.invoke_async(&mut conn).await?;
                Ok::<_, RedisError>(reply)
            }
        });
        let mut outcome = TickOutcome::default();
        for (written, other) in try_join_all(writes).await? {
            if written < 0 {
                // A group refused (others may have taken theirs).
                outcome.fenced_by = outcome.fenced_by.max(Some(other));
            } else {
                outcome.written += written as usize;
                outcome.data_lost |= other == 1;
            }
        }
        Ok(outcome)
    }

    /// Replaces the upstreams' status, by `"priority:name"`.
    pub async fn set_source_statuses(&self, statuses: &[(String, SourceStatus)]) -> Result<()> {
        let key = self.keys.sources();
        let statuses: Vec<(&str, String)> = statuses
            .iter()
            .map(|(k, status)| (k.as_str(), to_json(status)))
            .collect();
        let mut conn = self.conn().await?;
        let _: () = redis::pipe()
            .atomic()
            .del(&key)
            .ignore()
            .hset_multiple(&key, &statuses)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The upstreams' status as the worker last wrote it, by `"priority:name"`.
    pub async fn source_statuses(
        &self,
    ) -> Result<std::collections::BTreeMap<String, SourceStatus>> {
        let key = self.keys.sources();
        let mut conn = self.conn().await?;
        let all: std::collections::HashMap<String, String> = conn.hgetall(&key).await?;
        all.into_iter()
            .map(|(k, v)| Ok((k, from_json(&key, &v)?)))
            .collect()
    }

    /// The oldest second of each asset's window (`None` for an empty one).
    /// The data epoch: the epoch markers of the groups that have one (each
    /// set, to the server's clock in microseconds, by the first tick after
    /// the group's data was lost), as one value; `None` before any tick.
    /// A group that never ticks (no asset of the catalog maps to it) has
    /// no marker and takes no part; a group that loses its data changes
    /// the epoch.
    pub async fn epoch(&self) -> Result<Option<String>> {
        let reads = (0..self.keys.groups()).map(|group| async move {
            let mut conn = self.conn().await?;
            let marker: Option<String> = redis::cmd("GET")
                .arg(self.keys.epoch(group))
                .query_async(&mut conn)
                .await?;
            Ok::<_, RedisError>(marker.map(|m| format!("{group}={m}")))
        });
        let markers: Vec<String> = try_join_all(reads).await?.into_iter().flatten().collect();
        Ok(match markers.as_slice() {
            [] => None,
            [one] if self.keys.groups() == 1 => one.split_once('=').map(|(_, m)| m.to_owned()),
            all => Some(format!(
                "{:016x}",
                crate::hash::fnv1a64(all.join(",").as_bytes())
            )),
        })
    }

    pub async fn oldest_points(&self, ids: &[AssetId]) -> Result<Vec<Option<UnixSeconds>>> {
        let groups = self.by_group(ids.iter().enumerate().map(|(i, &id)| (id, (i, id))));
        let reads = groups.iter().map(|(_, members)| async move {
            let mut pipe = redis::pipe();
            for &(_, id) in members {
                pipe.zrange_withscores(self.keys.points(id), 0, 0);
            }
            let mut conn = self.conn().await?;
            let firsts: Vec<Vec<(String, f64)>> = pipe.query_async(&mut conn).await?;
            Ok::<_, RedisError>(
                members
                    .iter()
                    .map(|&(i, _)| i)
                    .zip(firsts)
                    .collect::<Vec<_>>(),
            )
        });
        let mut oldest = vec![None; ids.len()];
        for (i, first) in try_join_all(reads).await?.into_iter().flatten() {
            oldest[i] = first.first().map(|(_, s)| *s as UnixSeconds);
        }
        Ok(oldest)
    }

    /// Writes past points (oldest first, grouped by second) into the windows
    /// and, when `archive` is set, into the archive buffer. Live subscribers
    /// are not told: these seconds are history.
    pub async fn write_backfill(
        &self,
        seconds: &[Vec<Point>],
        now: UnixSeconds,
        window_seconds: u32,
        archive: Option<u64>,
    ) -> Result<()> {
        const CHUNK_SECONDS: usize = 300;
        let cutoff = now - i64::from(window_seconds);
        for chunk in seconds.chunks(CHUNK_SECONDS) {
            let groups = self.by_group(chunk.iter().flatten().map(|p| (p.asset_id, p)));
            let writes = groups.iter().map(|(group, points)| async move {
                let mut pipe = redis::pipe();
                let mut all = Vec::with_capacity(points.len());
                for point in points {
                    let json = to_json(point);
                    pipe.zadd(self.keys.points(point.asset_id), &json, point.time)
                        .ignore();
                    all.push(json);
                }
                if let Some(maxlen) = archive {
                    pipe.cmd("XADD")
                        .arg(self.keys.archive(*group))
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(maxlen)
                        .arg("*")
                        .arg("points")
                        .arg(format!("[{}]", all.join(",")))
                        .ignore();
                }
                let mut ids: Vec<AssetId> = points.iter().map(|p| p.asset_id).collect();
                ids.sort_unstable();
                ids.dedup();
                for id in ids {
                    pipe.zrembyscore(self.keys.points(id), "-inf", cutoff)
                        .ignore();
                }
                let mut conn = self.conn().await?;
                let _: () = pipe.query_async(&mut conn).await?;
                Ok::<_, RedisError>(())
            });
            try_join_all(writes).await?;
        }
        Ok(())
    }

    /// The latest quote of every asset that has one.
    pub async fn latest_all(&self) -> Result<Vec<StoredQuote>> {
        let reads = (0..self.keys.groups()).map(|group| async move {
            let key = self.keys.latest(group);
            let mut conn = self.conn().await?;
            let values: Vec<String> = conn.hvals(&key).await?;
            values
                .iter()
                .map(|v| from_json(&key, v))
                .collect::<Result<Vec<StoredQuote>>>()
        });
        let mut quotes: Vec<StoredQuote> =
            try_join_all(reads).await?.into_iter().flatten().collect();
        quotes.sort_by_key(|q| q.asset_id);
        Ok(quotes)
    }

    pub async fn latest(&self, id: AssetId) -> Result<Option<StoredQuote>> {
        let key = self.keys.latest(self.keys.group_of(id));
        let mut conn = self.conn().await?;
        let value: Option<String> = conn.hget(&key, id).await?;
        value.map(|v| from_json(&key, &v)).transpose()
    }

    /// Up to `limit` points of the window with `from <= time <= to`, oldest
    /// first, and the oldest second the window holds at all (`None` when it
    /// is empty), read in one atomic step so the two agree.
    pub async fn window(
        &self,
        id: AssetId,
        from: UnixSeconds,
        to: UnixSeconds,
        limit: usize,
    ) -> Result<(Vec<Point>, Option<UnixSeconds>)> {
        let key = self.keys.points(id);
        let mut conn = self.conn().await?;
        let (members, oldest): (Vec<String>, Vec<(String, f64)>) = redis::pipe()
            .atomic()
            .cmd("ZRANGE")
            .arg(&key)
            .arg(from)
            .arg(to)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .zrange_withscores(&key, 0, 0)
            .query_async(&mut conn)
            .await?;
        let points = parse_points(&key, &members)?;
        Ok((points, oldest.first().map(|(_, s)| *s as UnixSeconds)))
    }

    /// Every point of the window newer than `after`, oldest first.
    pub async fn window_after(&self, id: AssetId, after: UnixSeconds) -> Result<Vec<Point>> {
        let key = self.keys.points(id);
        let mut conn = self.conn().await?;
        let members: Vec<String> = conn
            .zrangebyscore(&key, format!("({after}"), "+inf")
            .await?;
        parse_points(&key, &members)
    }

    /// Renames a standalone deployment's keys from before key groups (no
    /// hash tag) to their group-0 names, so an upgrade keeps its windows,
    /// latest quotes and unarchived buffer (with its consumer group). A key
    /// whose new name already exists is left as it is, and said. Safe to
    /// run by several processes at once: a key renamed by one is gone for
    /// the others. Returns how many keys were renamed.
    pub async fn rename_legacy_keys(&self) -> Result<u64> {
        if self.backend.is_cluster() {
            return Ok(0);
        }
        let (fixed, points_pattern) = self.keys.legacy_renames();
        let mut conn = self.conn().await?;
        let mut pairs = fixed;
        let points: Vec<String> = scan(&mut conn, &points_pattern).await?;
        pairs.extend(
            points
                .into_iter()
                .filter_map(|old| Some((self.keys.legacy_points_rename(&old)?, old)))
                .map(|(new, old)| (old, new)),
        );
        let script = Script::new(RENAME_LEGACY_SCRIPT);
        let mut renamed = 0;
        for (old, new) in pairs {
            let done: i64 = script.key(&old).key(&new).invoke_async(&mut conn).await?;
            match done {
                1 => renamed += 1,
                -1 => tracing::warn!(
                    key = %old,
                    new = %new,
                    "pre-group redis key left in place: its new name holds data already"
                ),
                _ => {}
            }
        }
        Ok(renamed)
    }

    /// Deletes every key under the prefix (for tests and tooling: on a
    /// cluster it lists keys with `KEYS` on every master, which blocks each
    /// for as long as the listing takes).
    pub async fn delete_all(&self) -> Result<u64> {
        let mut conn = self.conn().await?;
        if self.backend.is_cluster() {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(self.keys.all())
                .query_async(&mut conn)
                .await?;
            let mut deleted = 0;
            // One key at a time: a cluster refuses a DEL across slots.
            for key in keys {
                let n: u64 = conn.del(&key).await?;
                deleted += n;
            }
            return Ok(deleted);
        }
        let keys = scan(&mut conn, &self.keys.all()).await?;
        if keys.is_empty() {
            return Ok(0);
        }
        Ok(conn.del(keys).await?)
    }
}

/// Every key matching `pattern` (of a standalone Redis).
async fn scan(conn: &mut Conn, pattern: &str) -> Result<Vec<String>> {
    let mut iter: redis::AsyncIter<String> = conn.scan_match(pattern).await?;
    let mut keys = Vec::new();
    while let Some(k) = futures_util::StreamExt::next(&mut iter).await {
        keys.push(k?);
    }
    Ok(keys)
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising our own plain structs cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// Points as stored in a window.
fn parse_points(key: &str, members: &[String]) -> Result<Vec<Point>> {
    members.iter().map(|m| from_json(key, m)).collect()
}

fn from_json<T: serde::de::DeserializeOwned>(key: &str, value: &str) -> Result<T> {
    serde_json::from_str(value).map_err(|e| RedisError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}
