//! The engine: where the latest quotes, the live windows, the live feed,
//! the archive buffer and the upstreams' states live. Everything the
//! worker, the archiver, the REST routes and the WebSocket side need of
//! it is here, with one implementation per engine:
//!
//! - [`Embedded`]: in the process (no `RATES_REDIS_URL`): one process,
//!   nothing survives a restart.
//! - [`RedisStore`]: Redis (standalone or a cluster), shared by any number
//!   of API nodes and workers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::embedded::Embedded;
use super::records::{ArchiveBatch, TickEntry, TickOutcome};
use super::redis::{RedisError, RedisStore};
use crate::domain::{AssetId, Point, SourceStatus, StoredQuote, UnixSeconds};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Redis(#[from] RedisError),
}

impl EngineError {
    /// The archive group is gone, as after Redis restarted empty.
    pub fn is_no_group(&self) -> bool {
        match self {
            Self::Redis(e) => e.is_no_group(),
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Which engine, and its handle.
#[derive(Clone)]
pub enum Engine {
    Embedded(Arc<Embedded>),
    Redis(Arc<RedisStore>),
}

/// The live feed: each item is one tick's new points.
pub enum LiveFeed {
    Embedded(broadcast::Receiver<Arc<[Point]>>),
    Redis(super::redis::LiveFeed),
}

impl LiveFeed {
    /// The next tick's points; `None` when the feed is lost. A subscriber
    /// that fell behind skips ahead: the hub fills the gap from the window.
    pub async fn next(&mut self) -> Option<Result<Vec<Point>>> {
        match self {
            Self::Redis(feed) => Some(feed.next().await?.map_err(EngineError::from)),
            Self::Embedded(rx) => loop {
                match rx.recv().await {
                    Ok(points) => return Some(Ok(points.to_vec())),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(ticks = n, "live feed lagged; filling from the window");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
        }
    }
}

impl Engine {
    /// How many live-feed messages a second of `ids`' points comes in: one
    /// (the embedded engine, one Redis), or one per key group holding some
    /// of them (a cluster, where each group writes and publishes alone).
    pub fn live_messages(&self, ids: &[AssetId]) -> usize {
        match self {
            Self::Embedded(_) => 1,
            Self::Redis(r) => r.groups_holding(ids),
        }
    }

    /// Writes one tick: each asset's point when its second is newer than
    /// the asset's newest, the latest quotes, the archive buffer (bounded
    /// by `archive` ticks, when set) and the live feed, atomically (on a
    /// cluster: per key group). Refused when a writer of a newer
    /// `generation` has written (the outcome says which: `fenced_by`).
    pub async fn write_tick(
        &self,
        time: UnixSeconds,
        window_seconds: u32,
        entries: &[TickEntry],
        archive: Option<u64>,
        generation: u64,
    ) -> Result<TickOutcome> {
        match self {
            Self::Embedded(e) => {
                Ok(e.write_tick(time, window_seconds, entries, archive, generation))
            }
            Self::Redis(r) => Ok(r
                .write_tick(time, window_seconds, entries, archive, generation)
                .await?),
        }
    }

    /// Takes the writer's lease for `ttl` when nobody holds it: its
    /// generation, or `None`. The embedded engine has one process: it
    /// always leads.
    /// The generation is above `at_least` (a fence a tick ran into).
    pub async fn campaign(&self, node: &str, ttl: Duration, at_least: u64) -> Result<Option<u64>> {
        match self {
            Self::Embedded(_) => Ok(Some(at_least + 1)),
            Self::Redis(r) => Ok(r.campaign(node, ttl, at_least).await?),
        }
    }

    /// Extends the lease by `ttl` if `node` still holds it.
    pub async fn renew(&self, node: &str, generation: u64, ttl: Duration) -> Result<bool> {
        match self {
            Self::Embedded(_) => Ok(true),
            Self::Redis(r) => Ok(r.renew(node, generation, ttl).await?),
        }
    }

    /// Gives the lease up if `node` holds it.
    pub async fn resign(&self, node: &str, generation: u64) -> Result<()> {
        match self {
            Self::Embedded(_) => Ok(()),
            Self::Redis(r) => Ok(r.resign(node, generation).await?),
        }
    }

    /// Before the first tick of a new leader: carries a standalone Redis's
    /// keys from before key groups over to their new names.
    pub async fn upgrade_keys(&self) -> Result<u64> {
        match self {
            Self::Embedded(_) => Ok(0),
            Self::Redis(r) => Ok(r.rename_legacy_keys().await?),
        }
    }

    /// Writes past points (oldest first, grouped by second) into the
    /// windows and, when `archive` is set, into the archive buffer. Live
    /// subscribers are not told: these seconds are history.
    pub async fn write_backfill(
        &self,
        seconds: &[Vec<Point>],
        now: UnixSeconds,
        window_seconds: u32,
        archive: Option<u64>,
    ) -> Result<()> {
        match self {
            Self::Embedded(e) => {
                e.write_backfill(seconds, now, window_seconds, archive);
                Ok(())
            }
            Self::Redis(r) => Ok(r
                .write_backfill(seconds, now, window_seconds, archive)
                .await?),
        }
    }

    /// The stream of every tick's new points, until it is lost.
    pub async fn subscribe_live(&self) -> Result<LiveFeed> {
        match self {
            Self::Embedded(e) => Ok(LiveFeed::Embedded(e.subscribe_live())),
            Self::Redis(r) => Ok(LiveFeed::Redis(r.subscribe_live().await?)),
        }
    }

    /// Replaces the upstreams' states, by `"priority:name"`.
    pub async fn set_source_statuses(&self, statuses: &[(String, SourceStatus)]) -> Result<()> {
        match self {
            Self::Embedded(e) => {
                e.set_source_statuses(statuses);
                Ok(())
            }
            Self::Redis(r) => Ok(r.set_source_statuses(statuses).await?),
        }
    }

    /// The upstreams' states as the worker last wrote them.
    pub async fn source_statuses(&self) -> Result<BTreeMap<String, SourceStatus>> {
        match self {
            Self::Embedded(e) => Ok(e.source_statuses()),
            Self::Redis(r) => Ok(r.source_statuses().await?),
        }
    }

    /// The oldest second of each asset's window (`None` for an empty one).
    pub async fn oldest_points(&self, ids: &[AssetId]) -> Result<Vec<Option<UnixSeconds>>> {
        match self {
            Self::Embedded(e) => Ok(e.oldest_points(ids)),
            Self::Redis(r) => Ok(r.oldest_points(ids).await?),
        }
    }

    /// The data epoch: it changes when the engine's data was lost (Redis
    /// restarted empty, the embedded engine's process restarted), so that
    /// a client resuming a series knows whether it may have a hole.
    /// `None` before the first tick.
    pub async fn epoch(&self) -> Result<Option<String>> {
        match self {
            Self::Embedded(e) => Ok(Some(e.epoch())),
            Self::Redis(r) => Ok(r.epoch().await?),
        }
    }

    /// The latest quote of every asset that has one, by asset id.
    pub async fn latest_all(&self) -> Result<Vec<StoredQuote>> {
        match self {
            Self::Embedded(e) => Ok(e.latest_all()),
            Self::Redis(r) => Ok(r.latest_all().await?),
        }
    }

    pub async fn latest(&self, id: AssetId) -> Result<Option<StoredQuote>> {
        match self {
            Self::Embedded(e) => Ok(e.latest(id)),
            Self::Redis(r) => Ok(r.latest(id).await?),
        }
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
        match self {
            Self::Embedded(e) => Ok(e.window(id, from, to, limit)),
            Self::Redis(r) => Ok(r.window(id, from, to, limit).await?),
        }
    }

    /// Every point of the window newer than `after`, oldest first.
    pub async fn window_after(&self, id: AssetId, after: UnixSeconds) -> Result<Vec<Point>> {
        match self {
            Self::Embedded(e) => Ok(e.window_after(id, after)),
            Self::Redis(r) => Ok(r.window_after(id, after).await?),
        }
    }

    /// Makes the archive buffer readable (Redis: its consumer group).
    pub async fn ensure_archive_group(&self) -> Result<()> {
        match self {
            Self::Embedded(_) => Ok(()),
            Self::Redis(r) => Ok(r.ensure_archive_group().await?),
        }
    }

    /// Up to `count` entries of the archive buffer: those handed out before
    /// but never acknowledged when `pending`, else new ones, waiting up to
    /// `block` for them when given.
    pub async fn read_archive(
        &self,
        count: usize,
        block: Option<Duration>,
        pending: bool,
    ) -> Result<ArchiveBatch> {
        match self {
            Self::Embedded(e) => Ok(e.read_archive(count, block, pending).await),
            Self::Redis(r) => Ok(r.read_archive(count, block, pending).await?),
        }
    }

    /// Acknowledges and drops archived entries: the buffer keeps only what
    /// has not reached PostgreSQL.
    pub async fn ack_archive(&self, ids: &[String]) -> Result<()> {
        match self {
            Self::Embedded(e) => {
                e.ack_archive(ids);
                Ok(())
            }
            Self::Redis(r) => Ok(r.ack_archive(ids).await?),
        }
    }

    /// Ticks waiting in the archive buffer.
    pub async fn archive_backlog(&self) -> Result<u64> {
        match self {
            Self::Embedded(e) => Ok(e.archive_backlog()),
            Self::Redis(r) => Ok(r.archive_backlog().await?),
        }
    }
}
