//! The only place that knows Redis key names.
//!
//! Under the deployment's prefix `P`:
//! - `P latest` (hash): asset id -> the latest quote (JSON [`StoredQuote`]).
//! - `P points:{id}` (sorted set): score = Unix second, member = the point's
//!   JSON as clients get it; trimmed to the live window.
//! - `P archive` (stream): one entry per tick, `points` = JSON array of the
//!   tick's points, read by the archiver and deleted once committed to
//!   PostgreSQL: the durable buffer between the live path and the archive.
//! - `P live` (pub/sub channel): the same JSON array, for live subscribers.
//! - `P sources` (hash): "priority:name" -> the upstream's breaker status
//!   (JSON), written by the worker when it changes, read by `/health/ready`.
//! - `P epoch` (string): set by every tick; its absence tells the worker
//!   that Redis lost its data and the windows need rebuilding.
//!
//! The archive buffer's commands are in [`archive_buffer`].

mod archive_buffer;

use std::time::Duration;

use super::records::{TickEntry, TickOutcome};
use crate::domain::{AssetId, Point, SourceStatus, StoredQuote, UnixSeconds};
use deadpool_redis::redis::{self, AsyncCommands, Script};
use deadpool_redis::{Pool, PoolError, Runtime};

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

/// Writes one tick atomically in one round trip. A point is written only
/// when its second is newer than the asset's newest point, so a second is
/// never written twice and time never goes backwards, even with two workers.
///
/// It also notices a Redis that lost its data (a restart without
/// persistence, a flush): the epoch marker, set by every tick, is gone.
///
/// KEYS: latest hash, archive stream, live channel, epoch marker, then one
/// points key per asset.
/// ARGV: time, trim cutoff (scores <= it are dropped), archive flag, stream
/// max length, then per asset: id, point JSON, quote JSON.
/// Returns {points written, 1 when the marker was missing}.
const TICK_SCRIPT: &str = r#"
local t = tonumber(ARGV[1])
local lost = 0
if redis.call('SET', KEYS[4], '1', 'NX') then
  lost = 1
end
local written = {}
for k = 5, #KEYS do
  local a = 5 + (k - 5) * 3
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
  redis.call('PUBLISH', KEYS[3], payload)
end
return {#written, lost}
"#;

#[derive(Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    fn latest(&self) -> String {
        format!("{}latest", self.prefix)
    }
    fn points(&self, id: AssetId) -> String {
        format!("{}points:{id}", self.prefix)
    }
    fn sources(&self) -> String {
        format!("{}sources", self.prefix)
    }
    fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }
    pub(crate) fn archive(&self) -> String {
        format!("{}archive", self.prefix)
    }
    fn live(&self) -> String {
        format!("{}live", self.prefix)
    }
}

/// The live channel: each message is one tick's new points.
pub struct LiveFeed {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>,
}

impl LiveFeed {
    /// The next tick's points; `None` when the subscription is lost.
    pub async fn next(&mut self) -> Option<Result<Vec<Point>>> {
        let msg = futures_util::StreamExt::next(&mut self.stream).await?;
        Some(match msg.get_payload::<String>() {
            Ok(payload) => from_json(msg.get_channel_name(), &payload),
            Err(e) => Err(e.into()),
        })
    }
}

#[derive(Clone)]
pub struct RedisStore {
    pool: Pool,
    client: redis::Client,
    pub(crate) keys: Keys,
    tick_script: Script,
}

impl RedisStore {
    /// Builds a lazy pool: nothing connects until the first command, so the
    /// service starts while Redis is down and `/health/ready` tells.
    pub fn new(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        // Blocking archive reads wait up to a second; the client's default
        // response timeout (500 ms) would cut them off.
        let conn_cfg = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_connection_timeout(Some(Duration::from_secs(1)));
        let manager = deadpool_redis::Manager::new_with_config(url, conn_cfg)?;
        let pool = Pool::builder(manager)
            .max_size(32)
            .wait_timeout(Some(Duration::from_secs(2)))
            .create_timeout(Some(Duration::from_secs(2)))
            .recycle_timeout(Some(Duration::from_secs(2)))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| RedisError::Config(e.to_string()))?;
        Ok(Self {
            pool,
            client,
            keys: Keys {
                prefix: prefix.to_owned(),
            },
            tick_script: Script::new(TICK_SCRIPT),
        })
    }

    /// Subscribes to the live channel on a connection of its own: the
    /// stream of every tick's new points, until the connection drops.
    pub async fn subscribe_live(&self) -> Result<LiveFeed> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(self.keys.live()).await?;
        Ok(LiveFeed {
            stream: Box::pin(pubsub.into_on_message()),
        })
    }

    pub(crate) async fn conn(&self) -> Result<deadpool_redis::Connection> {
        Ok(self.pool.get().await?)
    }

    /// Writes one tick (see [`TICK_SCRIPT`]).
    pub async fn write_tick(
        &self,
        time: UnixSeconds,
        window_seconds: u32,
        entries: &[TickEntry],
        archive: Option<u64>,
    ) -> Result<TickOutcome> {
        if entries.is_empty() {
            return Ok(TickOutcome::default());
        }
        let mut inv = self.tick_script.prepare_invoke();
        inv.key(self.keys.latest())
            .key(self.keys.archive())
            .key(self.keys.live())
            .key(self.keys.epoch())
            .arg(time)
            .arg(time - i64::from(window_seconds))
            .arg(if archive.is_some() { "1" } else { "0" })
            .arg(archive.unwrap_or(0));
        for e in entries {
            inv.key(self.keys.points(e.point.asset_id))
                .arg(e.point.asset_id)
                .arg(to_json(&e.point))
                .arg(to_json(&e.quote));
        }
        let mut conn = self.conn().await?;
        let (written, lost): (usize, u8) = inv.invoke_async(&mut conn).await?;
        Ok(TickOutcome {
            written,
            data_lost: lost == 1,
        })
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
    pub async fn oldest_points(&self, ids: &[AssetId]) -> Result<Vec<Option<UnixSeconds>>> {
        let mut pipe = redis::pipe();
        for &id in ids {
            pipe.zrange_withscores(self.keys.points(id), 0, 0);
        }
        let mut conn = self.conn().await?;
        let firsts: Vec<Vec<(String, f64)>> = pipe.query_async(&mut conn).await?;
        Ok(firsts
            .into_iter()
            .map(|f| f.first().map(|(_, s)| *s as UnixSeconds))
            .collect())
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
        let mut conn = self.conn().await?;
        for chunk in seconds.chunks(CHUNK_SECONDS) {
            let mut pipe = redis::pipe();
            let mut all = Vec::new();
            for point in chunk.iter().flatten() {
                let json = to_json(point);
                pipe.zadd(self.keys.points(point.asset_id), &json, point.time)
                    .ignore();
                all.push(json);
            }
            if let Some(maxlen) = archive {
                pipe.cmd("XADD")
                    .arg(self.keys.archive())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(maxlen)
                    .arg("*")
                    .arg("points")
                    .arg(format!("[{}]", all.join(",")))
                    .ignore();
            }
            let _: () = pipe.query_async(&mut conn).await?;
        }
        let cutoff = now - i64::from(window_seconds);
        let mut pipe = redis::pipe();
        let mut ids: Vec<AssetId> = seconds.iter().flatten().map(|p| p.asset_id).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            pipe.zrembyscore(self.keys.points(id), "-inf", cutoff)
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// The latest quote of every asset that has one.
    pub async fn latest_all(&self) -> Result<Vec<StoredQuote>> {
        let mut conn = self.conn().await?;
        let values: Vec<String> = conn.hvals(self.keys.latest()).await?;
        let mut quotes = values
            .iter()
            .map(|v| from_json(&self.keys.latest(), v))
            .collect::<Result<Vec<StoredQuote>>>()?;
        quotes.sort_by_key(|q| q.asset_id);
        Ok(quotes)
    }

    pub async fn latest(&self, id: AssetId) -> Result<Option<StoredQuote>> {
        let mut conn = self.conn().await?;
        let value: Option<String> = conn.hget(self.keys.latest(), id).await?;
        value
            .map(|v| from_json(&self.keys.latest(), &v))
            .transpose()
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

    /// Deletes every key under the prefix (for tests and `ratesd` tooling).
    pub async fn delete_all(&self) -> Result<u64> {
        let mut conn = self.conn().await?;
        let keys: Vec<String> = {
            let mut iter: redis::AsyncIter<String> =
                conn.scan_match(format!("{}*", self.keys.prefix)).await?;
            let mut keys = Vec::new();
            while let Some(k) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(k?);
            }
            keys
        };
        if keys.is_empty() {
            return Ok(0);
        }
        Ok(conn.del(keys).await?)
    }
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
