//! The archive buffer: a Redis stream the tick script appends to and the
//! archiver reads through a consumer group, acknowledging and deleting an
//! entry only after PostgreSQL committed its points.

use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands, Value};

use super::{RedisError, RedisStore, Result};
use crate::domain::ArchivedPoint;
use crate::store::records::ArchiveBatch;

const ARCHIVE_GROUP: &str = "archiver";
const ARCHIVE_CONSUMER: &str = "archiver";

impl RedisStore {
    /// Creates the archive consumer group (and the stream) if missing.
    pub async fn ensure_archive_group(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        let res: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.archive())
            .arg(ARCHIVE_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match res {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    /// Reads up to `count` entries of the archive buffer: those delivered
    /// before but never acknowledged when `pending`, else new ones, waiting
    /// up to `block` for them when given.
    pub async fn read_archive(
        &self,
        count: usize,
        block: Option<Duration>,
        pending: bool,
    ) -> Result<ArchiveBatch> {
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
            .arg(self.keys.archive())
            .arg(if pending { "0" } else { ">" });
        let reply: Option<redis::streams::StreamReadReply> = cmd.query_async(&mut conn).await?;
        let mut batch = ArchiveBatch::default();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            match entry.map.get("points") {
                Some(Value::BulkString(bytes)) => {
                    let points: Vec<ArchivedPoint> =
                        serde_json::from_slice(bytes).map_err(|e| RedisError::Corrupt {
                            key: format!("{} {}", self.keys.archive(), entry.id),
                            message: e.to_string(),
                        })?;
                    batch.points.extend(points);
                }
                // An entry without points (trimmed or foreign) is acknowledged and dropped.
                _ => tracing::warn!(id = %entry.id, "archive buffer entry without points"),
            }
            batch.ids.push(entry.id);
        }
        Ok(batch)
    }

    /// Acknowledges and deletes archived entries: the buffer keeps only
    /// what has not reached PostgreSQL.
    pub async fn ack_archive(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let key = self.keys.archive();
        let mut conn = self.conn().await?;
        let _: () = redis::pipe()
            .atomic()
            .xack(&key, ARCHIVE_GROUP, ids)
            .ignore()
            .xdel(&key, ids)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Ticks waiting in the archive buffer.
    pub async fn archive_backlog(&self) -> Result<u64> {
        let mut conn = self.conn().await?;
        Ok(conn.xlen(self.keys.archive()).await?)
    }
}
