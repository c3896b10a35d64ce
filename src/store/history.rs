//! Reading history: the Redis window for recent seconds, the PostgreSQL
//! archive for older ones, joined so that a range spanning both reads as
//! one sequence.

use super::{Archive, ArchiveError, RedisError, RedisStore};
use crate::domain::{Asset, Point, UnixSeconds};

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

/// Up to `limit` points of `asset` with `from <= time <= to`, oldest first.
///
/// The window and its oldest second are read in one atomic step; every
/// second before that oldest one comes from the archive, every second from
/// it on from the window, so the two parts neither overlap nor leave a gap.
/// When the window is empty, seconds from `live_start` on (the span the
/// window covers) are not asked of the archive: recent history never
/// depends on PostgreSQL.
pub async fn page(
    redis: &RedisStore,
    archive: Option<&Archive>,
    asset: &Asset,
    (from, to): (UnixSeconds, UnixSeconds),
    live_start: UnixSeconds,
    limit: usize,
) -> Result<Vec<Point>, HistoryError> {
    let (members, oldest) = redis.window(asset.id, from, to, limit).await?;
    let mut points = Vec::with_capacity(limit.min(members.len() + 64));
    if let Some(archive) = archive {
        let archive_to = to.min(oldest.unwrap_or(live_start) - 1);
        if from <= archive_to {
            points.extend(archive.range(asset, from, archive_to, limit).await?);
        }
    }
    if points.len() < limit {
        let mut recent = redis.parse_points(asset.id, &members)?;
        recent.truncate(limit - points.len());
        points.extend(recent);
    }
    Ok(points)
}
