//! Filling the live windows: at a first start or after Redis lost its
//! data, from the archive where it has the seconds; at a first start with
//! the simulated source leading, with its made-up past.

use crate::domain::{AssetId, Point, UnixSeconds};

use super::Worker;

impl Worker {
    /// Fills what the windows miss of the last `window_seconds`, as at a
    /// first start or after Redis lost its data: from the archive where it
    /// has those seconds, then, at a first start with the simulated source
    /// leading, with its made-up past for windows still empty.
    pub(super) async fn fill_windows(&mut self, first_tick: UnixSeconds) {
        if !self.started {
            // An upgrade from before key groups keeps its windows and buffer.
            match self.store.upgrade_keys().await {
                Ok(0) => {}
                Ok(renamed) => tracing::info!(renamed, "redis keys renamed to their grouped names"),
                Err(e) => tracing::warn!(error = %e, "cannot rename pre-group redis keys"),
            }
        }
        let ids: Vec<AssetId> = self.catalog.assets().iter().map(|a| a.id).collect();
        let oldest = match self.store.oldest_points(&ids).await {
            Ok(oldest) => oldest,
            Err(e) => {
                tracing::debug!(error = %e, "cannot check the windows; will retry");
                return;
            }
        };
        self.windows_unchecked = false;
        let window = i64::from(self.settings.window_seconds);
        let start = first_tick - window;
        let mut restored: Vec<Vec<Point>> = Vec::new();
        if let Some(archive) = &self.archive {
            for (&id, oldest) in ids.iter().zip(&oldest) {
                // An empty window takes the archive up to this very second:
                // a process restarted within the second its predecessor
                // last wrote (and archived) must not write that second again.
                let end = oldest.map_or(first_tick, |o| o - 1);
                let Some(asset) = self.catalog.by_id(id).filter(|_| start <= end) else {
                    continue;
                };
                let read = async {
                    let reads = archive.internal().reads()?;
                    reads.range(asset, start, end, window as usize + 1).await
                };
                match read.await {
                    Ok(points) if !points.is_empty() => restored.push(points),
                    Ok(_) => {}
                    Err(e) => {
                        // At a first start the archive may not exist yet: nothing to restore.
                        if self.started {
                            tracing::warn!(error = %e, "cannot read the archive to rebuild the windows");
                        } else {
                            tracing::debug!(error = %e, "archive not readable at start");
                        }
                        break;
                    }
                }
            }
        }
        if !restored.is_empty() {
            // Already archived: not appended to the archive buffer again.
            let result = self
                .store
                .write_backfill(&restored, first_tick, self.settings.window_seconds, None)
                .await;
            match result {
                Ok(()) => tracing::info!(
                    assets = restored.len(),
                    points = restored.iter().map(Vec::len).sum::<usize>(),
                    "rebuilt the live windows from the archive"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot rebuild the windows; will retry");
                    self.windows_unchecked = true;
                    return;
                }
            }
        }
        let empty: Vec<AssetId> = ids
            .iter()
            .zip(&oldest)
            .filter(|(id, o)| o.is_none() && !restored.iter().any(|r| r[0].asset_id == **id))
            .map(|(id, _)| *id)
            .collect();
        if !empty.is_empty() && !self.started {
            self.simulated_backfill(first_tick, &empty).await;
        }
    }

    /// The simulated source's made-up past for `empty` assets, for the
    /// seconds before `first_tick` (demos start with a full chart).
    async fn simulated_backfill(&mut self, first_tick: UnixSeconds, empty: &[AssetId]) {
        if self.settings.backfill_seconds == 0 {
            return;
        }
        let Some(sim) = self.sources.first().and_then(|s| s.as_simulated()) else {
            return;
        };
        let n = self.settings.backfill_seconds as usize;
        let history = sim.backfill(n);
        let empty: std::collections::HashSet<AssetId> = empty.iter().copied().collect();
        // Written a stretch at a time, oldest first: with thousands of
        // assets the points of the whole span at once would take hundreds
        // of megabytes for a moment, and the process keeps its peak.
        const STRETCH: usize = 300;
        for (k, stretch) in history.chunks(STRETCH).enumerate() {
            let seconds: Vec<Vec<Point>> = stretch
                .iter()
                .enumerate()
                .map(|(i, quotes)| {
                    let time = first_tick - n as UnixSeconds + (k * STRETCH + i) as UnixSeconds;
                    quotes
                        .iter()
                        .filter(|q| empty.contains(&q.asset_id))
                        .filter_map(|q| {
                            let asset = self.catalog.by_id(q.asset_id)?;
                            Some(Point::of(asset, time, q.quote.mid()))
                        })
                        .collect()
                })
                .collect();
            let written = self
                .store
                .write_backfill(
                    &seconds,
                    first_tick,
                    self.settings.window_seconds,
                    self.settings.archive_buffer,
                )
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "backfill failed; will retry");
                self.windows_unchecked = true;
                return;
            }
        }
        tracing::info!(
            seconds = n,
            assets = empty.len(),
            "backfilled simulated history"
        );
    }
}
