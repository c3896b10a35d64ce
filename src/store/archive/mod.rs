//! The only place that knows SQL: the PostgreSQL archive of every point.
//!
//! - [`partitions`]: `points` is range-partitioned by UTC day; partitions
//!   are made ahead and dropped past the retention.
//! - [`rollup`]: the `minutes` and `hours` rollups kept by every insert,
//!   from which candles are aggregated.
//! - [`write`]: the archiver's insert.
//! - [`read`]: ranges of points and candles for clients, and the worker's
//!   window refill.
//!
//! Clients cannot starve the archiver: the archive has two pools. The
//! archiver, partition maintenance and the process's own reads (the
//! worker's refill, the tickers' seeds: [`Archive::internal`]) use the
//! writer pool, which client reads never touch; client reads use a pool of their
//! own, with a statement timeout, and at most [`DEFAULT_MAX_READS`] (or
//! `RATES_ARCHIVE_MAX_READS`) run at once in a process: a read beyond that
//! is refused at once ([`ArchiveError::Busy`], a 503 with `Retry-After`)
//! rather than queued behind the others.

mod partitions;
mod read;
mod rollup;
mod write;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use tokio::sync::Semaphore;

pub use self::partitions::{DAY_SECONDS, DayPartition, Maintenance, Partition};
pub use self::read::Reads;
use crate::clock::unix_now;
use crate::domain::AssetId;

/// Client reads of the archive one process runs at once, by default.
pub const DEFAULT_MAX_READS: u32 = 4;
/// Exports (a range streamed in one answer) one process streams at once,
/// beside [`DEFAULT_MAX_READS`] pages.
pub const MAX_EXPORTS: u32 = 2;
/// Connections of the writer pool: the archiver's insert, partition
/// maintenance, the refill, the readiness ping.
const WRITER_CONNECTIONS: u32 = 4;
/// How long one client read may run in PostgreSQL (a page is bounded by
/// what it holds and takes milliseconds; this is the backstop), set on
/// every connection of the readers' pool.
const READ_STATEMENT_TIMEOUT: &str = "2s";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("postgres: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("asset id {0} does not fit the archive's int4 column")]
    AssetIdRange(AssetId),
    /// As many client reads as allowed are running; this one was not
    /// started.
    #[error("the archive is serving as many reads as it may")]
    Busy,
}

impl ArchiveError {
    /// A client read refused or cut short for the archive's sake: over the
    /// read cap, or past the read statement timeout. Not an outage.
    pub fn is_overload(&self) -> bool {
        match self {
            Self::Busy => true,
            // query_canceled: the statement timeout.
            Self::Sql(sqlx::Error::Database(db)) => db.code().as_deref() == Some("57014"),
            _ => false,
        }
    }
}

/// An asset id as the archive's `int4` column holds it (the catalog only
/// gives ids that fit; this refuses, rather than wraps, any other).
fn sql_id(id: AssetId) -> Result<i32> {
    i32::try_from(id).map_err(|_| ArchiveError::AssetIdRange(id))
}

pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Handle on the archive. The pools are lazy: the service starts while
/// PostgreSQL is down; queries then fail fast and the archiver retries.
/// Every clone shares what the last statement found ([`Archive::reachable`]),
/// so readiness answers from it without asking the database, and the
/// read cap.
#[derive(Clone)]
pub struct Archive {
    /// The archiver's, maintenance's and the worker's.
    pool: PgPool,
    /// Client reads', with the read statement timeout.
    readers: PgPool,
    /// One permit per client read running.
    reads: Arc<Semaphore>,
    /// One permit per export streaming.
    exports: Arc<Semaphore>,
    url: String,
    outcome: Arc<AtomicU8>,
    /// The process's own view ([`Archive::internal`]).
    internal: bool,
}

/// What the archive's last statement found (held in an `AtomicU8` as its
/// discriminant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reachable {
    /// Nothing asked yet.
    Unknown = 0,
    Yes = 1,
    No = 2,
}

impl Archive {
    /// The archive at `url` with [`DEFAULT_MAX_READS`].
    pub fn new(url: &str) -> Result<Self> {
        Self::with_max_reads(url, DEFAULT_MAX_READS)
    }

    /// The archive at `url`, running at most `max_reads` client reads at
    /// once (at least one).
    pub fn with_max_reads(url: &str, max_reads: u32) -> Result<Self> {
        let max_reads = max_reads.max(1);
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(WRITER_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options.clone());
        // A permit is taken before a connection: the pool never makes a
        // reader wait for another reader, only for a connection to open.
        let readers = PgPoolOptions::new()
            .max_connections(max_reads + MAX_EXPORTS)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(options.options([("statement_timeout", READ_STATEMENT_TIMEOUT)]));
        Ok(Self {
            pool,
            readers,
            reads: Arc::new(Semaphore::new(max_reads as usize)),
            exports: Arc::new(Semaphore::new(MAX_EXPORTS as usize)),
            url: url.to_owned(),
            outcome: Arc::new(AtomicU8::new(Reachable::Unknown as u8)),
            internal: false,
        })
    }

    /// What the last statement on any clone of this handle found.
    pub fn reachable(&self) -> Reachable {
        match self.outcome.load(Ordering::Relaxed) {
            x if x == Reachable::Yes as u8 => Reachable::Yes,
            x if x == Reachable::No as u8 => Reachable::No,
            _ => Reachable::Unknown,
        }
    }

    /// Records a statement's outcome for [`Archive::reachable`].
    fn note<T>(&self, result: Result<T>) -> Result<T> {
        let reached = match &result {
            Ok(_) => true,
            // A read not started says nothing of the database.
            Err(ArchiveError::Busy) => return result,
            // A statement the database refused still reached it.
            Err(ArchiveError::Sql(sqlx::Error::Database(_)))
            | Err(ArchiveError::AssetIdRange(_)) => true,
            Err(_) => false,
        };
        self.set_reachable(if reached {
            Reachable::Yes
        } else {
            Reachable::No
        });
        result
    }

    fn set_reachable(&self, now: Reachable) {
        self.outcome.store(now as u8, Ordering::Relaxed);
    }

    /// Pings the archive every `every` while nothing else does (an API
    /// process without an archiver), so that readiness stays current.
    pub async fn watch(self, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if tokio::time::timeout(every, self.ping()).await.is_err() {
                        self.set_reachable(Reachable::No);
                    }
                }
            }
        }
    }

    /// Creates the database if it does not exist yet, then applies the
    /// migrations. Safe to run from several processes at once.
    pub async fn prepare(&self, migrate: bool) -> Result<()> {
        let prepared = self.prepare_once(migrate).await;
        self.note(prepared)
    }

    async fn prepare_once(&self, migrate: bool) -> Result<()> {
        if !Postgres::database_exists(&self.url).await? {
            if let Err(e) = Postgres::create_database(&self.url).await {
                // Another process may have created it in between.
                if !Postgres::database_exists(&self.url).await? {
                    return Err(e.into());
                }
            }
            tracing::info!("created the archive database");
        }
        if migrate {
            self.migrate().await?;
        }
        self.maintain_once(unix_now(), 0).await?;
        Ok(())
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<()> {
        let pinged = sqlx::query("SELECT 1").execute(&self.pool).await;
        self.note(pinged.map(drop).map_err(ArchiveError::from))
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.readers.close().await;
    }
}
