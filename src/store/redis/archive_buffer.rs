//! The archive buffer: a Redis stream per key group that the tick script
//! appends to and the archiver reads through a consumer group,
//! acknowledging and deleting an entry only after PostgreSQL committed its
//! points. Every archiver reads as one consumer, so one that starts again
//! re-reads what another left unacknowledged (inserts are idempotent).

use std::collections::BTreeMap;
use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands, Value};
use futures_util::future::try_join_all;

use super::{RedisError, RedisStore, Result};
use crate::domain::ArchivedPoint;
use crate::store::records::ArchiveBatch;

const ARCHIVE_GROUP: &str = "archiver";
const ARCHIVE_CONSUMER: &str = "archiver";

/// On a cluster, how often an empty buffer is read again while the
/// archiver waits for entries: a blocking read would hold up every other
/// command on the shared connection to that node.
const CLUSTER_POLL: Duration = Duration::from_millis(200);

impl RedisStore {
    /// Creates every group's archive consumer group (and stream) if missing.
    pub async fn ensure_archive_group(&self) -> Result<()> {
        let creates = (0..self.keys.groups()).map(|group| async move {
            let mut conn = self.conn().await?;
            let res: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.keys.archive(group))
                .arg(ARCHIVE_GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match res {
                Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                other => Ok::<_, RedisError>(other?),
            }
        });
        try_join_all(creates).await?;
        Ok(())
    }

    /// Reads up to about `count` entries of the archive buffers: those
    /// delivered before but never acknowledged when `pending`, else new
    /// ones, waiting up to `block` for them when given. An entry's id is
    /// `group/stream-id`.
    pub async fn read_archive(
        &self,
        count: usize,
        block: Option<Duration>,
        pending: bool,
    ) -> Result<ArchiveBatch> {
        let groups = self.keys.groups();
        let per_group = count.div_ceil(usize::from(groups)).max(1);
        if groups == 1 {
            return self.read_group(0, per_group, block, pending).await;
        }
        let read_all = || async {
            let reads = (0..groups).map(|g| self.read_group(g, per_group, None, pending));
            let mut batch = ArchiveBatch::default();
            for part in try_join_all(reads).await? {
                batch.ids.extend(part.ids);
                batch.points.extend(part.points);
            }
            Ok::<_, RedisError>(batch)
        };
        let batch = read_all().await?;
        match block {
            Some(block) if batch.ids.is_empty() && !pending => {
                tokio::time::sleep(block.min(CLUSTER_POLL)).await;
                read_all().await
            }
            _ => Ok(batch),
        }
    }

    async fn read_group(
        &self,
        group: u16,
        count: usize,
        block: Option<Duration>,
        pending: bool,
    ) -> Result<ArchiveBatch> {
        let key = self.keys.archive(group);
        let mut conn = self.conn().await?;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(ARCHIVE_GROUP)
            .arg(ARCHIVE_CONSUMER)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block.filter(|_| !pending) {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS")
            .arg(&key)
            .arg(if pending { "0" } else { ">" });
        let reply: Option<redis::streams::StreamReadReply> = cmd.query_async(&mut conn).await?;
        let mut batch = ArchiveBatch::default();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            match entry.map.get("points") {
                Some(Value::BulkString(bytes)) => {
                    let points: Vec<ArchivedPoint> =
                        serde_json::from_slice(bytes).map_err(|e| RedisError::Corrupt {
                            key: format!("{key} {}", entry.id),
                            message: e.to_string(),
                        })?;
                    batch.points.extend(points);
                }
                // An entry without points (trimmed or foreign) is acknowledged and dropped.
                _ => tracing::warn!(id = %entry.id, "archive buffer entry without points"),
            }
            batch.ids.push(format!("{group}/{}", entry.id));
        }
        Ok(batch)
    }

    /// Acknowledges and deletes archived entries (ids as
    /// [`RedisStore::read_archive`] gave them): the buffer keeps only what
    /// has not reached PostgreSQL.
    pub async fn ack_archive(&self, ids: &[String]) -> Result<()> {
        let mut by_group: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
        for id in ids {
            let parsed = id
                .split_once('/')
                .and_then(|(g, id)| Some((g.parse::<u16>().ok()?, id)));
            match parsed {
                Some((group, id)) if group < self.keys.groups() => {
                    by_group.entry(group).or_default().push(id);
                }
                _ => tracing::warn!(%id, "not an archive buffer id; ignored"),
            }
        }
        let acks = by_group.into_iter().map(|(group, ids)| async move {
            let key = self.keys.archive(group);
            let mut conn = self.conn().await?;
            let _: () = redis::pipe()
                .atomic()
                .xack(&key, ARCHIVE_GROUP, &ids)
                .ignore()
                .xdel(&key, &ids)
                .ignore()
                .query_async(&mut conn)
                .await?;
            Ok::<_, RedisError>(())
        });
        try_join_all(acks).await?;
        Ok(())
    }

    /// Ticks waiting in the archive buffer (on a cluster: group shares of
    /// ticks, summed over the groups).
    pub async fn archive_backlog(&self) -> Result<u64> {
        let lens = (0..self.keys.groups()).map(|group| async move {
            let mut conn = self.conn().await?;
            let len: u64 = conn.xlen(self.keys.archive(group)).await?;
            Ok::<_, RedisError>(len)
        });
        Ok(try_join_all(lens).await?.into_iter().sum())
    }
}
