//! The per-second tick: fetch every source, pick each asset's quote from the
//! best source that has a fresh one, and write the tick to Redis.
//!
//! The schedule ([`run_schedule`]) is separate from the tick so that it can
//! be tested on a controllable clock: it runs one tick per wall-clock second,
//! as early in the second as it can, never two for one second, never one for
//! a second that has not begun; a tick that overruns skips the seconds it
//! missed instead of bursting to catch up.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::breaker::Breaker;
use crate::domain::{AssetId, BidAsk, Catalog, Point, StoredQuote, UnixSeconds};
use crate::sources::{Source, SourceQuote};
use crate::store::redis::TickEntry;
use crate::store::{Archive, RedisStore};

/// Wall-clock time, injectable so the schedule can be tested.
pub trait Clock: Send + Sync + 'static {
    /// Time since the Unix epoch.
    fn now(&self) -> Duration;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// The current Unix second by the system clock.
pub fn unix_now() -> UnixSeconds {
    SystemClock.now().as_secs() as UnixSeconds
}

/// Work done once a second.
pub trait Tick {
    fn tick(&mut self, second: UnixSeconds) -> impl Future<Output = ()>;
}

/// Calls `tick(second)` once for each wall-clock second until `shutdown`,
/// starting each tick as soon as its second begins. A tick in progress is
/// finished before shutdown is honoured.
pub async fn run_schedule<C, T>(clock: &C, shutdown: &CancellationToken, ticker: &mut T)
where
    C: Clock + ?Sized,
    T: Tick,
{
    let mut last: Option<UnixSeconds> = None;
    while !shutdown.is_cancelled() {
        let now = clock.now();
        let second = now.as_secs() as UnixSeconds;
        if last.is_none_or(|l| second > l) {
            if let Some(l) = last.filter(|&l| second > l + 1) {
                let skipped = second - l - 1;
                tracing::warn!(skipped, "tick overran; skipped seconds");
                metrics::counter!("ratesd_worker_ticks_skipped_total").increment(skipped as u64);
            }
            let lateness = now - Duration::from_secs(second as u64);
            metrics::histogram!("ratesd_worker_tick_lateness_seconds")
                .record(lateness.as_secs_f64());
            if lateness > Duration::from_millis(250) {
                tracing::debug!(second, ?lateness, "tick started late");
            }
            let started = std::time::Instant::now();
            ticker.tick(second).await;
            metrics::histogram!("ratesd_worker_tick_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            last = Some(second);
            continue;
        }
        // Sleep to just past the next second boundary.
        let wait = Duration::from_secs(1) - Duration::from_nanos(u64::from(now.subsec_nanos()))
            + Duration::from_millis(1);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub window_seconds: u32,
    pub stale_after_seconds: u32,
    pub fetch_timeout: Duration,
    pub backfill_seconds: u32,
    /// The archive buffer's bound, or `None` when there is no archive.
    pub archive_buffer: Option<u64>,
}

/// What a source last told us about an asset.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub quote: BidAsk,
    /// The tick second of the fetch that returned it.
    pub at: UnixSeconds,
}

/// An asset's quote for one tick and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selected {
    pub asset_id: AssetId,
    pub source: usize,
    pub quote: BidAsk,
    pub quoted_at: UnixSeconds,
}

pub struct Worker {
    sources: Vec<Arc<dyn Source>>,
    catalog: Arc<Catalog>,
    store: RedisStore,
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
}

impl Worker {
    pub fn new(
        sources: Vec<Arc<dyn Source>>,
        catalog: Arc<Catalog>,
        store: RedisStore,
        archive: Option<Archive>,
        settings: WorkerSettings,
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
        }
    }

    pub async fn run(mut self, clock: Arc<dyn Clock>, shutdown: CancellationToken) {
        tracing::info!(
            sources = ?self.sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "worker started"
        );
        run_schedule(clock.as_ref(), &shutdown, &mut self).await;
        tracing::info!("worker stopped");
    }
}

impl Tick for Worker {
    /// One tick: fetch, select, write.
    async fn tick(&mut self, second: UnixSeconds) {
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
        let result = self
            .store
            .write_tick(
                second,
                self.settings.window_seconds,
                &entries,
                self.settings.archive_buffer,
            )
            .await;
        match result {
            Ok(outcome) => {
                let written = outcome.written;
                metrics::counter!("ratesd_points_written_total").increment(written as u64);
                if outcome.data_lost && self.epoch_seen {
                    tracing::warn!("redis lost its data; rebuilding the windows from the archive");
                    self.windows_unchecked = true;
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
            }
            Err(e) => {
                metrics::counter!("ratesd_redis_errors_total", "op" => "write_tick").increment(1);
                tracing::debug!(error = %e, second, "redis still unavailable");
            }
        }
    }
}

impl Worker {
    /// Tells `/health/ready` (in any API process) how each upstream fares.
    async fn publish_statuses(&mut self, second: UnixSeconds) {
        let statuses: Vec<(String, String)> = self
            .sources
            .iter()
            .zip(&self.breakers)
            .enumerate()
            .map(|(i, (s, b))| {
                let status = serde_json::to_string(&b.status(second)).unwrap_or_default();
                (format!("{}:{}", i + 1, s.name()), status)
            })
            .collect();
        if self.store.set_source_statuses(&statuses).await.is_ok() {
            self.statuses_changed = false;
        }
    }

    fn entry(&self, second: UnixSeconds, s: &Selected) -> Option<TickEntry> {
        let asset = self.catalog.by_id(s.asset_id)?;
        let value = s.quote.mid();
        Some(TickEntry {
            point: Point {
                asset_name: asset.name.clone(),
                time: second,
                asset_id: asset.id,
                value,
            },
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

    /// Fills what the windows miss of the last `window_seconds`, as at a
    /// first start or after Redis lost its data: from the archive where it
    /// has those seconds, then, at a first start with the simulated source
    /// leading, with its made-up past for windows still empty.
    async fn fill_windows(&mut self, first_tick: UnixSeconds) {
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
                let end = oldest.unwrap_or(first_tick) - 1;
                let Some(asset) = self.catalog.by_id(id).filter(|_| start <= end) else {
                    continue;
                };
                match archive.range(id, start, end, window as usize).await {
                    Ok(rows) if !rows.is_empty() => restored.push(
                        rows.into_iter()
                            .map(|(time, value)| Point {
                                asset_name: asset.name.clone(),
                                time,
                                asset_id: id,
                                value,
                            })
                            .collect(),
                    ),
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
        let seconds: Vec<Vec<Point>> = history
            .iter()
            .enumerate()
            .map(|(i, quotes)| {
                let time = first_tick - n as UnixSeconds + i as UnixSeconds;
                quotes
                    .iter()
                    .filter(|q| empty.contains(&q.asset_id))
                    .filter_map(|q| {
                        let asset = self.catalog.by_id(q.asset_id)?;
                        Some(Point {
                            asset_name: asset.name.clone(),
                            time,
                            asset_id: asset.id,
                            value: q.quote.mid(),
                        })
                    })
                    .collect()
            })
            .collect();
        match self
            .store
            .write_backfill(
                &seconds,
                first_tick,
                self.settings.window_seconds,
                self.settings.archive_buffer,
            )
            .await
        {
            Ok(()) => tracing::info!(
                seconds = n,
                assets = empty.len(),
                "backfilled simulated history"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "backfill failed; will retry");
                self.windows_unchecked = true;
            }
        }
    }
}

/// For every catalog asset, the quote of the highest-priority source whose
/// last quote is no older than `stale_after` seconds at `second`. Assets
/// with no fresh quote anywhere get nothing: no invented points.
pub fn select_quotes(
    catalog: &Catalog,
    books: &[HashMap<AssetId, Seen>],
    second: UnixSeconds,
    stale_after: u32,
) -> Vec<Selected> {
    catalog
        .assets()
        .iter()
        .filter_map(|asset| {
            books.iter().enumerate().find_map(|(source, book)| {
                let seen = book.get(&asset.id)?;
                (second - seen.at <= i64::from(stale_after)).then_some(Selected {
                    asset_id: asset.id,
                    source,
                    quote: seen.quote,
                    quoted_at: seen.at,
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wall time that moves with tokio's (pausable) clock.
    struct TokioClock {
        origin: Duration,
        start: tokio::time::Instant,
    }

    impl Clock for TokioClock {
        fn now(&self) -> Duration {
            self.origin + self.start.elapsed()
        }
    }

    fn clock_at(secs: u64, millis: u64) -> TokioClock {
        TokioClock {
            origin: Duration::from_secs(secs) + Duration::from_millis(millis),
            start: tokio::time::Instant::now(),
        }
    }

    async fn ticks_with(
        clock: TokioClock,
        run_for: Duration,
        tick_cost: impl Fn(UnixSeconds) -> Duration,
    ) -> Vec<(UnixSeconds, Duration)> {
        struct Recorder<'a, F> {
            clock: &'a TokioClock,
            cost: F,
            seen: Vec<(UnixSeconds, Duration)>,
        }
        impl<F: Fn(UnixSeconds) -> Duration> Tick for Recorder<'_, F> {
            async fn tick(&mut self, second: UnixSeconds) {
                self.seen.push((second, self.clock.now()));
                tokio::time::sleep((self.cost)(second)).await;
            }
        }
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(run_for).await;
            stop.cancel();
        });
        let mut recorder = Recorder {
            clock: &clock,
            cost: tick_cost,
            seen: Vec::new(),
        };
        run_schedule(&clock, &shutdown, &mut recorder).await;
        recorder.seen
    }

    #[tokio::test(start_paused = true)]
    async fn one_tick_per_second_aligned_to_the_second() {
        let ticks = ticks_with(clock_at(1_000, 400), Duration::from_secs(60), |_| {
            Duration::from_millis(30)
        })
        .await;
        let seconds: Vec<_> = ticks.iter().map(|t| t.0).collect();
        assert_eq!(seconds, (1_000..=1_060).collect::<Vec<_>>());
        for (second, started) in &ticks[1..] {
            assert_eq!(started.as_secs() as i64, *second, "never before its second");
            assert!(started.subsec_millis() < 10, "aligned: {started:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn overrunning_ticks_skip_without_burst_or_duplicates() {
        // Second 1003's tick takes 2.5 s, to 1005.5: 1004 is skipped, 1005 runs
        // at once (late), and the schedule is back on the second from 1006.
        let ticks = ticks_with(clock_at(1_000, 0), Duration::from_secs(10), |s| {
            if s == 1_003 {
                Duration::from_millis(2_500)
            } else {
                Duration::from_millis(10)
            }
        })
        .await;
        let seconds: Vec<_> = ticks.iter().map(|t| t.0).collect();
        assert_eq!(
            seconds,
            [
                1_000, 1_001, 1_002, 1_003, 1_005, 1_006, 1_007, 1_008, 1_009
            ]
        );
        for (second, started) in &ticks {
            assert!(
                started.as_secs() as i64 >= *second,
                "no tick ahead of its second"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_schedule() {
        let ticks = ticks_with(clock_at(50, 999), Duration::from_millis(2_500), |_| {
            Duration::ZERO
        })
        .await;
        assert_eq!(
            ticks.iter().map(|t| t.0).collect::<Vec<_>>(),
            [50, 51, 52, 53]
        );
    }

    fn seen(bid: f64, at: UnixSeconds) -> Seen {
        Seen {
            quote: BidAsk::new(bid, bid + 0.0002).unwrap(),
            at,
        }
    }

    #[test]
    fn selection_prefers_the_best_fresh_source() {
        let catalog = Catalog::with_extra("").unwrap();
        let primary: HashMap<_, _> = [(1, seen(1.1, 100)), (2, seen(150.0, 85))].into();
        let fallback: HashMap<_, _> = [(1, seen(1.2, 100)), (2, seen(151.0, 100))].into();
        let books = [primary, fallback];
        let s = select_quotes(&catalog, &books, 100, 10);
        assert_eq!(s.len(), 2, "assets 3-5 have no quote: nothing invented");
        assert_eq!((s[0].asset_id, s[0].source), (1, 0));
        // Primary's USDJPY is 15 s old: the fallback serves it.
        assert_eq!((s[1].asset_id, s[1].source, s[1].quoted_at), (2, 1, 100));
        // At the limit a quote is still fresh; one second beyond, it is not.
        assert_eq!(select_quotes(&catalog, &books, 110, 10).len(), 2);
        assert_eq!(select_quotes(&catalog, &books, 111, 10).len(), 0);
    }
}
