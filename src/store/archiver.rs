//! Moves points from the engine's archive buffer (which every tick appends
//! to) into PostgreSQL. An entry is acknowledged and deleted only after its
//! points are committed, so a PostgreSQL outage delays the archive and loses
//! nothing; inserts are idempotent, so a replay after a crash is harmless.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::records::ArchiveBatch;
use super::{Archive, Engine};
use crate::backoff::{Backoff, Doubling};
use crate::clock::unix_now;

/// Stream entries read at once: a tick each, or a few minutes of backfill.
const BATCH_ENTRIES: usize = 200;
/// How long a shutdown may spend flushing the buffer.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

pub struct Archiver {
    pub engine: Engine,
    pub archive: Archive,
    pub migrate: bool,
    /// The buffer's bound in ticks (`RATES_ARCHIVE_BUFFER_TICKS`): beyond
    /// it the oldest ticks are dropped, so filling it is worth a warning.
    pub buffer_ticks: u64,
    /// Days of archive kept (`RATES_ARCHIVE_RETENTION_DAYS`; 0: all).
    pub retention_days: u32,
}

/// Retries of PostgreSQL and of the buffer's reads.
const RETRIES: Doubling = Doubling {
    first: Duration::from_millis(250),
    max: Duration::from_secs(10),
};

/// How often the buffer's length is read for its gauge and warning.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// How often the archive's day partitions are created ahead and the
/// retention applied (also once as soon as the archive is prepared).
const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);

impl Archiver {
    /// Archives until `shutdown`, then flushes. The buffer's gauge is kept
    /// by a watch of its own, so it moves while PostgreSQL is away too.
    pub async fn run(self, shutdown: CancellationToken) {
        tokio::join!(
            self.archive(&shutdown),
            self.watch_backlog(&shutdown),
            self.keep_partitions(&shutdown)
        );
        self.flush().await;
        tracing::info!("archiver stopped");
    }

    /// Reads the buffer's length every second: `ratesd_archive_backlog_ticks`,
    /// and a warning as it nears its bound (again only after it drained).
    async fn watch_backlog(&self, shutdown: &CancellationToken) {
        let mut every = tokio::time::interval(BACKLOG_EVERY);
        let mut warned = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let Ok(backlog) = self.engine.archive_backlog().await else {
                continue;
            };
            metrics::gauge!("ratesd_archive_backlog_ticks").set(backlog as f64);
            if !warned && backlog * 5 >= self.buffer_ticks * 4 {
                tracing::warn!(
                    backlog,
                    bound = self.buffer_ticks,
                    "archive buffer over 80% full: ticks beyond the bound will be lost"
                );
                warned = true;
            } else if warned && backlog * 2 < self.buffer_ticks {
                warned = false;
            }
        }
    }

    /// Every [`MAINTAIN_EVERY`] after the first round (which `archive` runs
    /// once the archive is prepared): partitions ahead, and the retention.
    async fn keep_partitions(&self, shutdown: &CancellationToken) {
        let start = tokio::time::Instant::now() + MAINTAIN_EVERY;
        let mut every = tokio::time::interval_at(start, MAINTAIN_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => self.maintain().await,
            }
        }
    }

    /// One round of partition maintenance; a failure is logged, and the
    /// next round tries again (meanwhile an insert creates a missing day's
    /// partition itself).
    async fn maintain(&self) {
        if let Err(e) = self.archive.maintain(unix_now(), self.retention_days).await {
            metrics::counter!("ratesd_postgres_errors_total", "op" => "maintain").increment(1);
            tracing::warn!(error = %e, "archive partition maintenance failed; retried within the hour");
        }
    }

    async fn archive(&self, shutdown: &CancellationToken) {
        let mut backoff = Backoff::new(RETRIES);
        let mut warned = false;
        // The database may not exist or be reachable yet: keep trying.
        loop {
            match self.archive.prepare(self.migrate).await {
                Ok(()) => break,
                Err(e) => {
                    metrics::counter!("ratesd_postgres_errors_total", "op" => "prepare")
                        .increment(1);
                    if !warned {
                        tracing::warn!(error = %e, "archive not ready; points wait in the buffer");
                        warned = true;
                    }
                    if !backoff.wait(shutdown).await {
                        return;
                    }
                }
            }
        }
        tracing::info!(retention_days = self.retention_days, "archiver started");
        self.maintain().await;
        backoff.reset();
        let mut need_group = true;
        // After a start or a lost group, first re-read what was delivered
        // but never acknowledged.
        let mut pending = true;
        while !shutdown.is_cancelled() {
            if need_group {
                match self.engine.ensure_archive_group().await {
                    Ok(()) => need_group = false,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot create the archive group");
                        if !backoff.wait(shutdown).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            let block = (!pending).then_some(Duration::from_secs(1));
            let batch = match self
                .engine
                .read_archive(BATCH_ENTRIES, block, pending)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    metrics::counter!("ratesd_redis_errors_total", "op" => "archive_read")
                        .increment(1);
                    if e.is_no_group() {
                        tracing::warn!("archive group lost (redis restarted?); recreating");
                        need_group = true;
                        pending = true;
                    } else {
                        tracing::debug!(error = %e, "cannot read the archive buffer");
                        if !backoff.wait(shutdown).await {
                            break;
                        }
                    }
                    continue;
                }
            };
            backoff.reset();
            if batch.ids.is_empty() {
                if !pending {
                    metrics::gauge!("ratesd_archive_lag_seconds").set(0.0);
                }
                pending = false;
                continue;
            }
            if !self.commit(batch, shutdown).await {
                break;
            }
        }
    }

    /// Inserts a batch, retrying until PostgreSQL takes it, then
    /// acknowledges it. False when shutdown interrupted the retries (the
    /// entries stay pending and are re-read at the next start).
    async fn commit(&self, batch: ArchiveBatch, shutdown: &CancellationToken) -> bool {
        let mut backoff = Backoff::new(RETRIES);
        let mut failing = false;
        loop {
            match self.archive.insert(&batch.points).await {
                Ok(inserted) => {
                    if failing {
                        tracing::info!("archive reachable again; draining the buffer");
                    }
                    tracing::debug!(points = batch.points.len(), inserted, "archived");
                    metrics::counter!("ratesd_archive_points_total").increment(inserted);
                    if let Some(newest) = batch.points.iter().map(|p| p.time).max() {
                        let lag = unix_now() - newest;
                        metrics::gauge!("ratesd_archive_lag_seconds").set(lag.max(0) as f64);
                    }
                    break;
                }
                Err(e) => {
                    metrics::counter!("ratesd_postgres_errors_total", "op" => "insert")
                        .increment(1);
                    if !failing {
                        tracing::warn!(error = %e, "archive insert failed; points wait in the buffer");
                        failing = true;
                    }
                    if !backoff.wait(shutdown).await {
                        return false;
                    }
                }
            }
        }
        loop {
            match self.engine.ack_archive(&batch.ids).await {
                Ok(()) => return true,
                Err(e) => {
                    // Unacknowledged entries are re-read and re-inserted: harmless.
                    tracing::debug!(error = %e, "cannot acknowledge archived entries");
                    if !backoff.wait(shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    /// At shutdown: archive what the buffer holds, within a deadline.
    async fn flush(&self) {
        let drain = async {
            // A shutdown right after start may come before the group exists.
            if self.engine.ensure_archive_group().await.is_err() {
                return;
            }
            for pending in [true, false] {
                loop {
                    let batch = match self.engine.read_archive(BATCH_ENTRIES, None, pending).await {
                        Ok(b) if !b.ids.is_empty() => b,
                        _ => break,
                    };
                    let ids = batch.ids.clone();
                    if self.archive.insert(&batch.points).await.is_err()
                        || self.engine.ack_archive(&ids).await.is_err()
                    {
                        return;
                    }
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_FLUSH, drain).await.is_err() {
            match self.engine {
                Engine::Redis(_) => tracing::warn!(
                    "archive buffer not fully flushed at shutdown; the rest waits in redis"
                ),
                Engine::Embedded(_) => tracing::warn!(
                    "archive buffer not fully flushed at shutdown; the rest is lost with the embedded engine"
                ),
            }
        }
    }
}
