//! The worker: once a second, fetch every source, pick each asset's quote
//! from the best source that has a fresh one, and write the tick to the engine.
//!
//! - [`election`]: one writer among many workers, elected in the engine.
//! - [`schedule`]: one tick per wall-clock second, tested on a paused clock.
//! - [`select`]: which source serves each asset.
//! - [`breaker`]: a circuit breaker per upstream.
//! - `refill`: the windows rebuilt from the archive, or backfilled.

mod breaker;
pub mod election;
mod refill;
pub mod schedule;
pub mod select;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::breaker::Breaker;
use self::election::{Election, Fenced, Role};
use self::schedule::{Tick, run_schedule};
use self::select::{Seen, Selected, select_quotes};
use crate::clock::Clock;
use crate::domain::{AssetId, Catalog, Point, SourceStatus, StoredQuote, UnixSeconds};
use crate::sources::{Source, SourceQuote};
use crate::store::records::{TickEntry, TickOutcome};
use crate::store::{Archive, Engine};

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub window_seconds: u32,
    pub stale_after_seconds: u32,
    pub fetch_timeout: Duration,
    pub backfill_seconds: u32,
    /// The archive buffer's bound, or `None` when there is no archive.
    pub archive_buffer: Option<u64>,
}

pub struct Worker {
    sources: Vec<Arc<dyn Source>>,
    catalog: Arc<Catalog>,
    store: Engine,
    settings: WorkerSettings,
    /// Per source (in priority order): the last quote of each asset.
    books: Vec<HashMap<AssetId, Seen>>,
    breakers: Vec<Breaker>,
    /// A breaker changed state: publish the sources' status.
    statuses_changed: bool,
    serving: HashMap<AssetId, Option<usize>>,
    redis_ok: bool,
    /// Set at start and after Redis failed: check the windows for loss.
    windows_unchecked: bool,
    /// False until the first windows check is done.
    started: bool,
    /// A tick has set Redis's epoch marker: its absence later means loss.
    epoch_seen: bool,
    archive: Option<Archive>,
    /// This worker's role, as the election says it.
    role: watch::Receiver<Role>,
    election: Option<Election>,
    /// The generation this worker last led with (0: not yet).
    led: u64,
    /// Tells the election when a tick was fenced off.
    fenced: Fenced,
}

impl Worker {
    pub fn new(
        sources: Vec<Arc<dyn Source>>,
        catalog: Arc<Catalog>,
        store: Engine,
        archive: Option<Archive>,
        settings: WorkerSettings,
        election: Election,
        role: watch::Receiver<Role>,
    ) -> Self {
        let n = sources.len();
        Self {
            sources,
            catalog,
            store,
            settings,
            books: vec![HashMap::new(); n],
            breakers: vec![Breaker::default(); n],
            statuses_changed: true,
            serving: HashMap::new(),
            redis_ok: true,
            windows_unchecked: true,
            started: false,
            epoch_seen: false,
            archive,
            role,
            fenced: election.fenced.clone(),
            election: Some(election),
            led: 0,
        }
    }

    /// Campaigns for the writer's role and, while it leads, ticks, until
    /// `shutdown`; then finishes the tick in progress and gives the role up,
    /// so a standby takes over at once.
    pub async fn run(
        mut self,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
        role: watch::Sender<Role>,
    ) {
        tracing::info!(
            sources = ?self.sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "worker started"
        );
        let stop_election = CancellationToken::new();
        let election = self
            .election
            .take()
            .map(|e| tokio::spawn(e.run(role, stop_election.clone())));
        {
            // Should the schedule end in a panic, the election still stops
            // (and gives the lease up) rather than renew it for nobody.
            let _stop = stop_election.clone().drop_guard();
            run_schedule(clock.as_ref(), &shutdown, &mut self).await;
        }
        if let Some(election) = election {
            let _ = election.await;
        }
        tracing::info!("worker stopped");
    }

    /// The generation to write this tick with, or `None` on a standby. A
    /// worker that has just come to lead starts afresh: it checks the
    /// windows, says the upstreams' states, and trusts no quote it saw
    /// while it stood by.
    fn leading(&mut self) -> Option<u64> {
        let generation = self.role.borrow().writes_as()?;
        if generation != self.led {
            self.led = generation;
            self.windows_unchecked = true;
            self.statuses_changed = true;
            self.epoch_seen = false;
            self.books.iter_mut().for_each(HashMap::clear);
            self.serving.clear();
        }
        Some(generation)
    }
}

impl Tick for Worker {
    /// One tick: fetch, select, write. False on a standby, which polls
    /// nothing and writes nothing.
    async fn tick(&mut self, second: UnixSeconds) -> bool {
        if self.leading().is_none() {
            return false;
        }
        if self.windows_unchecked {
            self.fill_windows(second).await;
            self.started |= !self.windows_unchecked;
        }
        self.fetch_all(second).await;
        if self.statuses_changed {
            self.publish_statuses(second).await;
        }
        let selected = select_quotes(
            &self.catalog,
            &self.books,
            second,
            self.settings.stale_after_seconds,
        );
        self.log_serving_changes(&selected);
        let entries: Vec<TickEntry> = selected
            .iter()
            .filter_map(|s| self.entry(second, s))
            .collect();
        // Fetching took time: the lease must still surely hold now.
        let Some(generation) = self.role.borrow().writes_as() else {
            tracing::warn!(second, "lease ran out during the tick; not writing it");
            return true;
        };
        let result = self
            .store
            .write_tick(
                second,
                self.settings.window_seconds,
                &entries,
                self.settings.archive_buffer,
                generation,
            )
            .await;
        match result {
            Ok(TickOutcome {
                fenced_by: Some(fence),
                written,
                ..
            }) => {
                metrics::counter!("ratesd_worker_ticks_fenced_total").increment(1);
                metrics::counter!("ratesd_points_written_total").increment(written as u64);
                tracing::warn!(
                    second,
                    generation,
                    fence,
                    "tick refused: a newer leader has written; standing by"
                );
                self.fenced.by(fence);
            }
            Ok(outcome) => {
                let written = outcome.written;
                metrics::counter!("ratesd_points_written_total").increment(written as u64);
                if outcome.data_lost && self.epoch_seen {
                    tracing::warn!("redis lost its data; rebuilding the windows from the archive");
                    self.windows_unchecked = true;
                    // The sources' states went with it: say them again.
                    self.statuses_changed = true;
                }
                self.epoch_seen |= written > 0 || outcome.data_lost;
                if !self.redis_ok {
                    tracing::info!("redis is back; ticks are written again");
                    self.redis_ok = true;
                }
                tracing::trace!(second, written, "tick written");
            }
            Err(e) if self.redis_ok => {
                metrics::counter!("ratesd_redis_errors_total", "op" => "write_tick").increment(1);
                tracing::error!(error = %e, second, "cannot write tick to redis");
                self.redis_ok = false;
                // Redis may come back empty (a restart without persistence).
                self.windows_unchecked = true;
                self.statuses_changed = true;
            }
            Err(e) => {
                metrics::counter!("ratesd_redis_errors_total", "op" => "write_tick").increment(1);
                tracing::debug!(error = %e, second, "redis still unavailable");
            }
        }
        true
    }

    /// A standby's skipped second may be written after all when this
    /// worker comes to lead within it.
    async fn ready(&mut self) {
        loop {
            if self.role.changed().await.is_err() {
                // The election has stopped: nothing will change any more.
                return std::future::pending().await;
            }
            if self.role.borrow_and_update().writes_as().is_some() {
                return;
            }
        }
    }
}

impl Worker {
    /// Tells `/health/ready` (in any API process) how each upstream fares.
    async fn publish_statuses(&mut self, second: UnixSeconds) {
        let statuses: Vec<(String, SourceStatus)> = self
            .sources
            .iter()
            .zip(&self.breakers)
            .enumerate()
            .map(|(i, (s, b))| (format!("{}:{}", i + 1, s.name()), b.status(second)))
            .collect();
        if self.store.set_source_statuses(&statuses).await.is_ok() {
            self.statuses_changed = false;
        }
    }

    fn entry(&self, second: UnixSeconds, s: &Selected) -> Option<TickEntry> {
        let asset = self.catalog.by_id(s.asset_id)?;
        let value = s.quote.mid();
        Some(TickEntry {
            point: Point::of(asset, second, value),
            quote: StoredQuote {
                asset_id: asset.id,
                bid: s.quote.bid,
                ask: s.quote.ask,
                value,
                time: second,
                quoted_at: s.quoted_at,
                source: self.sources[s.source].name().to_owned(),
            },
        })
    }

    /// Fetches every source whose breaker lets it, concurrently, each
    /// within the fetch timeout.
    async fn fetch_all(&mut self, second: UnixSeconds) {
        let timeout = self.settings.fetch_timeout;
        let breakers = &self.breakers;
        let results = join_all(self.sources.iter().enumerate().map(|(i, s)| async move {
            if !breakers[i].allows(second) {
                return None;
            }
            let started = std::time::Instant::now();
            let result = tokio::time::timeout(timeout, s.fetch()).await;
            metrics::histogram!("ratesd_upstream_fetch_duration_seconds", "source" => s.name())
                .record(started.elapsed().as_secs_f64());
            Some(result)
        }))
        .await;
        for (i, result) in results.into_iter().enumerate() {
            let Some(result) = result else { continue };
            let name = self.sources[i].name();
            let quotes: Result<Vec<SourceQuote>, String> = match result {
                Ok(Ok(q)) => Ok(q),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            match quotes {
                Ok(quotes) => {
                    if self.breakers[i].success() {
                        tracing::info!(source = name, "upstream recovered");
                        self.statuses_changed = true;
                    }
                    for q in quotes {
                        self.books[i].insert(
                            q.asset_id,
                            Seen {
                                quote: q.quote,
                                at: second,
                            },
                        );
                    }
                }
                Err(error) => {
                    metrics::counter!("ratesd_upstream_fetch_errors_total", "source" => name)
                        .increment(1);
                    let first = self.breakers[i].status(second).state == "ok";
                    let opened = self.breakers[i].failure(second, error.clone());
                    if first {
                        tracing::warn!(source = name, %error, "upstream failing");
                    } else {
                        tracing::debug!(source = name, %error, "upstream still failing");
                    }
                    if opened {
                        tracing::debug!(source = name, "circuit open; pausing this upstream");
                    }
                    self.statuses_changed |= first || opened;
                }
            }
        }
    }

    fn log_serving_changes(&mut self, selected: &[Selected]) {
        let by_asset: HashMap<AssetId, usize> =
            selected.iter().map(|s| (s.asset_id, s.source)).collect();
        for asset in self.catalog.assets() {
            let now = by_asset.get(&asset.id).copied();
            let before = self.serving.insert(asset.id, now);
            if before == Some(now) {
                continue;
            }
            match now {
                Some(i) => tracing::info!(
                    asset = %asset.name,
                    source = self.sources[i].name(),
                    "asset served by source"
                ),
                None if before.is_some() => tracing::warn!(
                    asset = %asset.name,
                    "asset stale: no source has a fresh quote"
                ),
                None => tracing::debug!(asset = %asset.name, "no quote yet"),
            }
        }
    }
}
