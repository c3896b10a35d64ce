//! The Redis engine: a standalone Redis or a Redis Cluster, shared by any
//! number of API nodes and workers.
//!
//! - [`keys`]: every key name, grouped by hash tag.
//! - [`conn`]: connections of either kind and the live feed's subscription.
//! - [`archive_buffer`]: the archive buffer's commands.
//! - [`lease`]: the writer's election.
//! - [`tick`]: a tick's and a backfill's writes.
//! - [`keyspace`]: the whole prefix at once (pre-group keys renamed, every key deleted).

mod archive_buffer;
mod conn;
mod keys;
mod keyspace;
mod lease;
mod quota;
mod tick;

use futures_util::future::try_join_all;

use self::conn::{Backend, Conn};
pub use self::keys::CLUSTER_GROUPS;
use self::keys::Keys;
pub use self::quota::Taken;
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
            RedisMode::Standalone if conn::is_sentinel_url(url) => (Backend::sentinel(url)?, 1),
            RedisMode::Standalone => (Backend::standalone(url)?, 1),
            RedisMode::Cluster if conn::is_sentinel_url(url) => {
                return Err(RedisError::Config(
                    "RATES_REDIS_MODE=cluster takes the cluster's nodes, not sentinels".into(),
                ));
            }
            RedisMode::Cluster => (Backend::cluster(url)?, CLUSTER_GROUPS),
        };
        Ok(Self {
            backend,
            keys: Keys::new(prefix, groups),
            tick_script: Script::new(tick::TICK_SCRIPT),
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
