//! The embedded engine: the latest quotes, the live windows, the live feed,
//! the archive buffer and the upstreams' states, all in this process.
//!
//! One process only, and nothing survives a restart (the worker rebuilds
//! the windows from the archive at start, as after a Redis loss). Every
//! operation is a short critical section on plain data: no lock is held
//! across an await.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};

use super::records::{ArchiveBatch, TickEntry, TickOutcome};
use crate::clock::{Clock, SystemClock};
use crate::domain::{
    ArchivedPoint, AssetId, Catalog, Point, SourceStatus, StoredQuote, UnixSeconds,
};

/// Ticks the live feed holds for a subscriber that fell behind; past it the
/// subscriber skips ahead and fills the gap from the window.
const LIVE_CAPACITY: usize = 64;
/// Seconds of backfill per archive buffer entry, as in Redis.
const BACKFILL_ENTRY_SECONDS: usize = 300;

pub struct Embedded {
    catalog: Arc<Catalog>,
    latest: RwLock<BTreeMap<AssetId, StoredQuote>>,
    /// Per asset: `(second, value)`, oldest first, one entry per second.
    windows: HashMap<AssetId, Mutex<VecDeque<(UnixSeconds, f64)>>>,
    live: broadcast::Sender<Arc<[Point]>>,
    sources: RwLock<BTreeMap<String, SourceStatus>>,
    archive: Mutex<ArchiveQueue>,
    /// Woken when the archive buffer gets an entry.
    archived: Notify,
    /// Set by the first tick: until then the windows are "lost" (empty).
    ticked: AtomicBool,
    /// The newest writer generation that wrote a tick.
    fence: AtomicU64,
    /// The data epoch: this process's data, gone when it stops.
    epoch: String,
}

/// The archive buffer: entries in order, each a tick (or a stretch of
/// backfill), kept until the archiver acknowledges them.
#[derive(Default)]
struct ArchiveQueue {
    entries: VecDeque<(u64, Vec<ArchivedPoint>)>,
    next_id: u64,
    /// Entries with a smaller id were handed to the archiver already.
    delivered: u64,
    /// The bound was hit: warned once until the buffer drains.
    overflowing: bool,
}

impl ArchiveQueue {
    fn push(&mut self, points: Vec<ArchivedPoint>, bound: u64) {
        let bound = usize::try_from(bound).unwrap_or(usize::MAX).max(1);
        while self.entries.len() >= bound {
            self.entries.pop_front();
            if !self.overflowing {
                tracing::warn!(bound, "archive buffer full: dropping its oldest ticks");
                self.overflowing = true;
            }
        }
        if self.entries.len() * 2 < bound {
            self.overflowing = false;
        }
        self.entries.push_back((self.next_id, points));
        self.next_id += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these plain collections half-written
    // in a way that matters more than stopping would.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Embedded {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        let windows = catalog
            .assets()
            .iter()
            .map(|a| (a.id, Mutex::default()))
            .collect();
        Self {
            catalog,
            latest: RwLock::default(),
            windows,
            live: broadcast::channel(LIVE_CAPACITY).0,
            sources: RwLock::default(),
            archive: Mutex::default(),
            archived: Notify::new(),
            ticked: AtomicBool::new(false),
            fence: AtomicU64::new(0),
            epoch: format!("{:x}", SystemClock.now().as_micros()),
        }
    }

    /// The data epoch: when this process started, in microseconds.
    pub fn epoch(&self) -> String {
        self.epoch.clone()
    }

    pub fn write_tick(
        &self,
        time: UnixSeconds,
        window_seconds: u32,
        entries: &[TickEntry],
        archive: Option<u64>,
        generation: u64,
    ) -> TickOutcome {
        // The fence, as in Redis: a writer older than the newest that wrote
        // is refused.
        let fence = self.fence.fetch_max(generation, Ordering::AcqRel);
        if fence > generation {
            return TickOutcome {
                fenced_by: Some(fence),
                ..TickOutcome::default()
            };
        }
        let cutoff = time - i64::from(window_seconds);
        let mut written = Vec::with_capacity(entries.len());
        for e in entries {
            let Some(window) = self.windows.get(&e.point.asset_id) else {
                continue;
            };
            let mut window = lock(window);
            if window.back().is_some_and(|&(newest, _)| newest >= time) {
                continue;
            }
            window.push_back((time, e.point.value));
            while window.front().is_some_and(|&(t, _)| t <= cutoff) {
                window.pop_front();
            }
            drop(window);
            self.latest
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(e.point.asset_id, e.quote.clone());
            written.push(e.point.clone());
        }
        if !written.is_empty() {
            if let Some(bound) = archive {
                lock(&self.archive).push(written.iter().map(archived).collect(), bound);
                self.archived.notify_one();
            }
            // No subscriber (no API in this process yet) is not an error.
            let _ = self.live.send(written.clone().into());
        }
        TickOutcome {
            written: written.len(),
            data_lost: !self.ticked.swap(true, Ordering::AcqRel),
            fenced_by: None,
        }
    }

    pub fn write_backfill(
        &self,
        seconds: &[Vec<Point>],
        now: UnixSeconds,
        window_seconds: u32,
        archive: Option<u64>,
    ) {
        let cutoff = now - i64::from(window_seconds);
        let mut by_asset: HashMap<AssetId, Vec<(UnixSeconds, f64)>> = HashMap::new();
        for p in seconds.iter().flatten() {
            by_asset
                .entry(p.asset_id)
                .or_default()
                .push((p.time, p.value));
        }
        for (id, mut new) in by_asset {
            let Some(window) = self.windows.get(&id) else {
                continue;
            };
            let mut window = lock(window);
            // What the window holds wins over what is filled in for a second.
            new.extend(window.drain(..));
            new.sort_by_key(|&(t, _)| t);
            let mut merged: VecDeque<(UnixSeconds, f64)> = VecDeque::with_capacity(new.len());
            for (t, v) in new.into_iter().rev() {
                if t > cutoff && merged.front().is_none_or(|&(next, _)| next != t) {
                    merged.push_front((t, v));
                }
            }
            *window = merged;
        }
        if let Some(bound) = archive {
            let mut queue = lock(&self.archive);
            for chunk in seconds.chunks(BACKFILL_ENTRY_SECONDS) {
                queue.push(chunk.iter().flatten().map(archived).collect(), bound);
            }
            drop(queue);
            self.archived.notify_one();
        }
    }

    pub fn subscribe_live(&self) -> broadcast::Receiver<Arc<[Point]>> {
        self.live.subscribe()
    }

    pub fn set_source_statuses(&self, statuses: &[(String, SourceStatus)]) {
        *self.sources.write().unwrap_or_else(|e| e.into_inner()) =
            statuses.iter().cloned().collect();
    }

    pub fn source_statuses(&self) -> BTreeMap<String, SourceStatus> {
        self.sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn oldest_points(&self, ids: &[AssetId]) -> Vec<Option<UnixSeconds>> {
        ids.iter()
            .map(|id| {
                let window = self.windows.get(id)?;
                lock(window).front().map(|&(t, _)| t)
            })
            .collect()
    }

    pub fn latest_all(&self) -> Vec<StoredQuote> {
        let latest = self.latest.read().unwrap_or_else(|e| e.into_inner());
        latest.values().cloned().collect()
    }

    pub fn latest(&self, id: AssetId) -> Option<StoredQuote> {
        let latest = self.latest.read().unwrap_or_else(|e| e.into_inner());
        latest.get(&id).cloned()
    }

    /// Up to `limit` points with `from <= time <= to`, oldest first, and
    /// the oldest second the window holds.
    pub fn window(
        &self,
        id: AssetId,
        from: UnixSeconds,
        to: UnixSeconds,
        limit: usize,
    ) -> (Vec<Point>, Option<UnixSeconds>) {
        let (Some(window), Some(asset)) = (self.windows.get(&id), self.catalog.by_id(id)) else {
            return (Vec::new(), None);
        };
        let window = lock(window);
        let start = window.partition_point(|&(t, _)| t < from);
        let points = window
            .range(start..)
            .take_while(|&&(t, _)| t <= to)
            .take(limit)
            .map(|&(t, v)| Point::of(asset, t, v))
            .collect();
        (points, window.front().map(|&(t, _)| t))
    }

    /// Every point of the window newer than `after`, oldest first.
    pub fn window_after(&self, id: AssetId, after: UnixSeconds) -> Vec<Point> {
        self.window(id, after.saturating_add(1), UnixSeconds::MAX, usize::MAX)
            .0
    }

    /// Up to `count` entries: handed out before but unacknowledged when
    /// `pending`, else new ones, waiting up to `block` for one.
    pub async fn read_archive(
        &self,
        count: usize,
        block: Option<Duration>,
        pending: bool,
    ) -> ArchiveBatch {
        let batch = self.take_archive(count, pending);
        match block {
            Some(block) if !pending && batch.ids.is_empty() => {
                let woken = self.archived.notified();
                tokio::pin!(woken);
                // Registered before looking again: an entry pushed in
                // between is not missed.
                woken.as_mut().enable();
                let batch = self.take_archive(count, pending);
                if !batch.ids.is_empty() {
                    return batch;
                }
                let _ = tokio::time::timeout(block, woken).await;
                self.take_archive(count, pending)
            }
            _ => batch,
        }
    }

    fn take_archive(&self, count: usize, pending: bool) -> ArchiveBatch {
        let mut queue = lock(&self.archive);
        let delivered = queue.delivered;
        let mut batch = ArchiveBatch::default();
        let mut last = None;
        for (id, points) in queue
            .entries
            .iter()
            .filter(|(id, _)| (*id < delivered) == pending)
            .take(count)
        {
            batch.ids.push(id.to_string());
            batch.points.extend_from_slice(points);
            last = Some(*id);
        }
        if !pending && let Some(last) = last {
            queue.delivered = last + 1;
        }
        batch
    }

    /// Drops archived entries: the buffer keeps only what has not reached
    /// PostgreSQL.
    pub fn ack_archive(&self, ids: &[String]) {
        let mut ids: Vec<u64> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        ids.sort_unstable();
        lock(&self.archive)
            .entries
            .retain(|(id, _)| ids.binary_search(id).is_err());
    }

    pub fn archive_backlog(&self) -> u64 {
        lock(&self.archive).entries.len() as u64
    }
}

fn archived(p: &Point) -> ArchivedPoint {
    ArchivedPoint {
        asset_id: p.asset_id,
        time: p.time,
        value: p.value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Embedded {
        Embedded::new(Arc::new(Catalog::with_extra("").unwrap()))
    }

    fn entry(asset: &crate::domain::Asset, time: UnixSeconds, value: f64) -> TickEntry {
        TickEntry {
            point: Point::of(asset, time, value),
            quote: StoredQuote {
                asset_id: asset.id,
                bid: value,
                ask: value,
                value,
                time,
                quoted_at: time,
                source: "simulated".into(),
            },
        }
    }

    fn times(points: &[Point]) -> Vec<UnixSeconds> {
        points.iter().map(|p| p.time).collect()
    }

    #[test]
    fn ticks_only_move_forward_and_the_window_is_trimmed() {
        let e = engine();
        let eur = e.catalog.by_id(1).unwrap().clone();
        let first = e.write_tick(100, 3, &[entry(&eur, 100, 1.0)], None, 1);
        assert_eq!((first.written, first.data_lost), (1, true));
        let again = e.write_tick(100, 3, &[entry(&eur, 100, 2.0)], None, 1);
        assert_eq!((again.written, again.data_lost), (0, false));
        assert_eq!(
            e.write_tick(99, 3, &[entry(&eur, 99, 2.0)], None, 1)
                .written,
            0
        );
        for t in 101..=105 {
            e.write_tick(t, 3, &[entry(&eur, t, t as f64)], None, 1);
        }
        let (points, oldest) = e.window(1, 0, UnixSeconds::MAX, 100);
        assert_eq!(times(&points), [103, 104, 105], "the last 3 seconds");
        assert_eq!(oldest, Some(103));
        assert_eq!(points[0].asset_name, "EURUSD");
        assert_eq!(e.latest(1).unwrap().value, 105.0);
        assert_eq!(times(&e.window(1, 104, 104, 10).0), [104]);
        assert_eq!(
            times(&e.window(1, 0, 200, 1).0),
            [103],
            "limit, oldest first"
        );
        assert_eq!(times(&e.window_after(1, 103)), [104, 105]);
        assert!(e.window(99, 0, 200, 10).0.is_empty(), "unknown asset");
    }

    #[test]
    fn backfill_fills_what_the_window_lacks_and_keeps_what_it_has() {
        let e = engine();
        let eur = e.catalog.by_id(1).unwrap().clone();
        e.write_tick(110, 10, &[entry(&eur, 110, 9.0)], None, 1);
        let past: Vec<Vec<Point>> = (95..=110).map(|t| vec![Point::of(&eur, t, 1.0)]).collect();
        e.write_backfill(&past, 110, 10, Some(100));
        let (points, _) = e.window(1, 0, UnixSeconds::MAX, 100);
        assert_eq!(times(&points), (101..=110).collect::<Vec<_>>());
        assert_eq!(
            points.last().unwrap().value,
            9.0,
            "the tick's own value stays"
        );
        assert_eq!(e.oldest_points(&[1, 2]), [Some(101), None]);
        // Backfill goes to the archive buffer in stretches, not to the feed.
        assert_eq!(e.archive_backlog(), 1);
    }

    #[test]
    fn the_archive_buffer_hands_out_acknowledges_and_is_bounded() {
        let e = engine();
        let eur = e.catalog.by_id(1).unwrap().clone();
        for t in 1..=5 {
            e.write_tick(t, 1800, &[entry(&eur, t, 1.0)], Some(4), 1);
        }
        assert_eq!(
            e.archive_backlog(),
            4,
            "the oldest tick dropped at the bound"
        );
        let first = e.take_archive(2, false);
        assert_eq!(
            first.points.iter().map(|p| p.time).collect::<Vec<_>>(),
            [2, 3]
        );
        // Handed out, not acknowledged: pending until it is.
        let pending = e.take_archive(10, true);
        assert_eq!(pending.ids, first.ids);
        let rest = e.take_archive(10, false);
        assert_eq!(
            rest.points.iter().map(|p| p.time).collect::<Vec<_>>(),
            [4, 5]
        );
        e.ack_archive(&first.ids);
        assert_eq!(e.archive_backlog(), 2);
        assert_eq!(e.take_archive(10, true).ids, rest.ids, "still pending");
        e.ack_archive(&rest.ids);
        assert_eq!(e.archive_backlog(), 0);
    }

    #[tokio::test]
    async fn a_blocked_archive_read_wakes_on_the_next_tick() {
        let e = Arc::new(engine());
        let eur = e.catalog.by_id(1).unwrap().clone();
        let reader = {
            let e = e.clone();
            tokio::spawn(async move {
                e.read_archive(10, Some(Duration::from_secs(30)), false)
                    .await
            })
        };
        tokio::task::yield_now().await;
        e.write_tick(7, 1800, &[entry(&eur, 7, 1.0)], Some(100), 1);
        let batch = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("woken long before its 30 s")
            .unwrap();
        assert_eq!(batch.points.len(), 1);
    }

    #[tokio::test]
    async fn a_lagging_live_subscriber_skips_ahead() {
        let e = engine();
        let eur = e.catalog.by_id(1).unwrap().clone();
        let mut feed = super::super::engine::LiveFeed::Embedded(e.subscribe_live());
        let ticks = LIVE_CAPACITY as UnixSeconds + 10;
        for t in 1..=ticks {
            e.write_tick(t, 1800, &[entry(&eur, t, 1.0)], None, 1);
        }
        let next = feed.next().await.unwrap().unwrap();
        assert_eq!(next[0].time, 11, "the oldest tick still held");
    }
}
