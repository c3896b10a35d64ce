//! Reading history: the engine's window for recent seconds, the PostgreSQL
//! archive for older ones, joined so that a range spanning both reads as
//! one sequence.

use futures_util::Stream;

use super::archive::{Reachable, Reads};
use super::{Archive, ArchiveError, Engine, EngineError};
use crate::domain::candle::{self, Candle, Interval};
use crate::domain::{Asset, AssetId, Point, UnixSeconds};

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Engine(#[from] EngineError),
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
    engine: &Engine,
    archive: Option<&Archive>,
    asset: &Asset,
    (from, to): (UnixSeconds, UnixSeconds),
    live_start: UnixSeconds,
    limit: usize,
) -> Result<Vec<Point>, HistoryError> {
    let (mut recent, oldest) = engine.window(asset.id, from, to, limit).await?;
    let mut points = Vec::with_capacity(limit.min(recent.len() + 64));
    if let Some(archive) = archive {
        let archive_to = to.min(oldest.unwrap_or(live_start) - 1);
        if from <= archive_to {
            points.extend(
                archive
                    .reads()?
                    .range(asset, from, archive_to, limit)
                    .await?,
            );
        }
    }
    if points.len() < limit {
        recent.truncate(limit - points.len());
        points.extend(recent);
    }
    Ok(points)
}

/// Every point of `asset` after `after`, oldest first, as a subscriber's
/// history: the window, and before its oldest second the archive, even
/// when the window is empty or nearly so (right after a start or an engine
/// that lost its data, before the worker rebuilt it). `limit` bounds the
/// archive's part. When the archive cannot be read, the window alone.
pub async fn recent(
    engine: &Engine,
    archive: Option<&Archive>,
    asset: &Asset,
    after: UnixSeconds,
    limit: usize,
) -> Result<Vec<Point>, HistoryError> {
    let span = (after.saturating_add(1), UnixSeconds::MAX);
    // Known away: not waited on (the archiver and the API's watch notice
    // when it is back).
    let archive = archive.filter(|a| a.reachable() != Reachable::No);
    match page(engine, archive, asset, span, UnixSeconds::MAX, limit).await {
        Err(HistoryError::Archive(e)) => {
            if e.is_overload() {
                tracing::debug!(error = %e, asset = %asset.name, "archive busy; history is the window alone");
            } else {
                tracing::warn!(error = %e, asset = %asset.name, "archive unreadable; history is the window alone");
            }
            page(engine, None, asset, span, UnixSeconds::MAX, limit).await
        }
        done => done,
    }
}

/// Up to `limit` candles of `asset`'s points with `from <= time <= to`,
/// oldest first, read as [`page`] reads points: buckets before the window's
/// oldest second from the archive (aggregated there), the rest built from
/// the window, and a bucket that spans the window's oldest second made once
/// from both parts. `window` is where the live window starts (as for
/// [`page`]) and how many points it holds at most. All are `closed`: the
/// caller marks the forming one.
pub async fn candles(
    engine: &Engine,
    archive: Option<&Archive>,
    asset: &Asset,
    interval: Interval,
    (from, to): (UnixSeconds, UnixSeconds),
    (live_start, window_points): (UnixSeconds, usize),
    limit: usize,
) -> Result<Vec<Candle>, HistoryError> {
    let (recent, oldest) = engine.window(asset.id, from, to, window_points).await?;
    let mut older = Vec::new();
    if let Some(archive) = archive {
        // The archive's part ends before the window's oldest second. Its
        // whole minutes come from the archive's minute rollup; the seconds
        // of a minute the window starts in, from its points.
        let split = to.min(oldest.unwrap_or(live_start) - 1);
        if from <= split {
            let reads = archive.reads()?;
            let whole_end = split + 1 - (split + 1).rem_euclid(60) - 1;
            if from <= whole_end {
                older = reads
                    .candles(asset, interval, from, whole_end, limit)
                    .await?;
            }
            let rest = from.max(whole_end + 1);
            if rest <= split {
                let points = reads.range(asset, rest, split, 60).await?;
                older = candle::join(
                    older,
                    candle::build(points.iter().map(|p| (p.time, p.value)), interval),
                );
            }
        }
    }
    let mut all = candle::join(
        older,
        candle::build(recent.iter().map(|p| (p.time, p.value)), interval),
    );
    all.truncate(limit);
    Ok(all)
}

/// How many archived seconds an export reads at a time.
const EXPORT_CHUNK: usize = 10_000;

/// Every `(second, value)` of `asset` with `from <= second <= to`, oldest
/// first, in chunks, as [`page`] joins the window and the archive: the
/// window is read now (its oldest second splits the range), the archive's
/// part a chunk at a time as the stream is polled, so that memory does not
/// grow with the range. `reads` is the archive's export permit, held until
/// the stream ends; without it, the window's part alone.
pub async fn export(
    engine: &Engine,
    reads: Option<Reads>,
    asset_id: AssetId,
    (from, to): (UnixSeconds, UnixSeconds),
    (live_start, window_points): (UnixSeconds, usize),
) -> Result<impl Stream<Item = Result<Vec<(UnixSeconds, f64)>, HistoryError>> + use<>, HistoryError>
{
    let (recent, oldest) = engine.window(asset_id, from, to, window_points).await?;
    let archive_to = to.min(oldest.unwrap_or(live_start) - 1);
    let recent: Vec<(UnixSeconds, f64)> = recent.into_iter().map(|p| (p.time, p.value)).collect();
    struct State {
        reads: Option<Reads>,
        next: UnixSeconds,
        archive_to: UnixSeconds,
        recent: Option<Vec<(UnixSeconds, f64)>>,
    }
    let state = State {
        reads,
        next: from,
        archive_to,
        recent: Some(recent),
    };
    Ok(futures_util::stream::unfold(
        state,
        move |mut s| async move {
            if let Some(reads) = s.reads.as_ref().filter(|_| s.next <= s.archive_to) {
                match reads
                    .values(asset_id, (s.next, s.archive_to), EXPORT_CHUNK)
                    .await
                {
                    Ok(chunk) => {
                        s.next = match chunk.last() {
                            Some(&(last, _)) if chunk.len() == EXPORT_CHUNK => last + 1,
                            _ => s.archive_to + 1,
                        };
                        if !chunk.is_empty() {
                            return Some((Ok(chunk), s));
                        }
                    }
                    Err(e) => {
                        s.reads = None;
                        s.recent = None;
                        return Some((Err(e.into()), s));
                    }
                }
            }
            // The archive's part is done (or was empty): the permit goes back.
            s.reads = None;
            let recent = s.recent.take()?;
            Some((Ok(recent), s))
        },
    ))
}
