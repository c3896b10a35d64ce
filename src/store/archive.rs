//! The only place that knows SQL: the PostgreSQL archive of every point.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::domain::{ArchivedPoint, Asset, AssetId, Point, UnixSeconds};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("postgres: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("asset id {0} does not fit the archive's int4 column")]
    AssetIdRange(AssetId),
}

/// An asset id as the archive's `int4` column holds it (the catalog only
/// gives ids that fit; this refuses, rather than wraps, any other).
fn sql_id(id: AssetId) -> Result<i32> {
    i32::try_from(id).map_err(|_| ArchiveError::AssetIdRange(id))
}

pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Handle on the archive. The pool is lazy: the service starts while
/// PostgreSQL is down; queries then fail fast and the archiver retries.
/// Every clone shares what the last statement found ([`Archive::reachable`]),
/// so readiness answers from it without asking the database.
#[derive(Clone)]
pub struct Archive {
    pool: PgPool,
    url: String,
    outcome: Arc<AtomicU8>,
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
    pub fn new(url: &str) -> Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            url: url.to_owned(),
            outcome: Arc::new(AtomicU8::new(Reachable::Unknown as u8)),
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

    /// Inserts points in one statement; a point already archived (same
    /// asset and second) is left as it is, so replays are harmless.
    /// Returns how many rows were new.
    pub async fn insert(&self, points: &[ArchivedPoint]) -> Result<u64> {
        if points.is_empty() {
            return Ok(0);
        }
        let ids = points
            .iter()
            .map(|p| sql_id(p.asset_id))
            .collect::<Result<Vec<i32>>>()?;
        let times: Vec<i64> = points.iter().map(|p| p.time).collect();
        let values: Vec<f64> = points.iter().map(|p| p.value).collect();
        let done = sqlx::query(
            "INSERT INTO points (asset_id, ts, value) \
             SELECT * FROM UNNEST($1::int4[], $2::int8[], $3::float8[]) \
             ON CONFLICT (asset_id, ts) DO NOTHING",
        )
        .bind(ids)
        .bind(times)
        .bind(values)
        .execute(&self.pool)
        .await;
        self.note(done.map(|d| d.rows_affected()).map_err(ArchiveError::from))
    }

    /// Up to `limit` archived points of an asset with `from <= time <= to`,
    /// oldest first.
    pub async fn range(
        &self,
        asset: &Asset,
        from: UnixSeconds,
        to: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<Point>> {
        let rows: Vec<(i64, f64)> = sqlx::query_as(
            "SELECT ts, value FROM points \
             WHERE asset_id = $1 AND ts BETWEEN $2 AND $3 \
             ORDER BY ts LIMIT $4",
        )
        .bind(sql_id(asset.id)?)
        .bind(from)
        .bind(to)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(time, value)| Point::of(asset, time, value))
            .collect())
    }

    /// Every archived second of an asset in a range (for tests and audits).
    pub async fn seconds(
        &self,
        asset_id: AssetId,
        from: UnixSeconds,
        to: UnixSeconds,
    ) -> Result<Vec<UnixSeconds>> {
        Ok(sqlx::query_scalar(
            "SELECT ts FROM points WHERE asset_id = $1 AND ts BETWEEN $2 AND $3 ORDER BY ts",
        )
        .bind(sql_id(asset_id)?)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
