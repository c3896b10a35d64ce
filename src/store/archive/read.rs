//! Reading the archive. Client reads ([`Archive::reads`]) run under the
//! read cap, on the readers' pool; the process's own reads (the worker's
//! window refill, the tickers' seeds) use the archive's internal view
//! ([`Archive::internal`]): the writer pool, which clients cannot take, and
//! no cap.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::rollup::Rollup;
use super::{Archive, ArchiveError, Result, sql_id};
use crate::domain::{Asset, AssetId, Candle, Interval, Point, UnixSeconds};

/// One request's reads of the archive, holding one of the read cap's
/// permits until dropped (a request's reads count once, so a page is never
/// refused half-way); none for the process's own reads.
pub struct Reads {
    pool: PgPool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Archive {
    /// The same archive for the process's own reads: its [`Archive::reads`]
    /// are never refused and run on the writer pool.
    pub fn internal(&self) -> Self {
        Self {
            internal: true,
            ..self.clone()
        }
    }

    /// A permit to read for a client, or [`ArchiveError::Busy`] at once
    /// when as many reads as allowed are running.
    pub fn reads(&self) -> Result<Reads> {
        self.permit(&self.reads, "page")
    }

    /// A permit to stream an export (many reads, held while the client
    /// takes the answer): a cap of its own ([`super::MAX_EXPORTS`]), so that
    /// exports never hold the pages' permits.
    pub fn export_reads(&self) -> Result<Reads> {
        self.permit(&self.exports, "export")
    }

    fn permit(&self, cap: &Arc<Semaphore>, kind: &'static str) -> Result<Reads> {
        if self.internal {
            return Ok(Reads {
                pool: self.pool.clone(),
                _permit: None,
            });
        }
        match cap.clone().try_acquire_owned() {
            Ok(permit) => Ok(Reads {
                pool: self.readers.clone(),
                _permit: Some(permit),
            }),
            Err(_) => {
                metrics::counter!("ratesd_archive_reads_refused_total", "kind" => kind)
                    .increment(1);
                Err(ArchiveError::Busy)
            }
        }
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
}

impl Reads {
    /// Up to `limit` archived points of an asset with `from <= time <= to`,
    /// oldest first.
    pub async fn range(
        &self,
        asset: &Asset,
        from: UnixSeconds,
        to: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<Point>> {
        points(&self.pool, asset, (from, to), limit).await
    }

    /// Up to `limit` archived `(second, value)` pairs of an asset with
    /// `from <= second <= to`, oldest first (an export's chunk).
    pub async fn values(
        &self,
        asset_id: AssetId,
        (from, to): (UnixSeconds, UnixSeconds),
        limit: usize,
    ) -> Result<Vec<(UnixSeconds, f64)>> {
        values(&self.pool, asset_id, (from, to), limit).await
    }

    /// Up to `limit` candles of `asset`'s archived points with
    /// `from <= ts <= to`, oldest first, aggregated in PostgreSQL from the
    /// rollups: the whole hours of a range of hour-long or longer buckets
    /// from `hours`, the rest from `minutes`. A page's work is bounded by
    /// what it holds, whatever the range: a page of 1,000 daily candles
    /// reads 24,000 hour rows, and an empty stretch costs one index probe.
    /// `from` must start a bucket and `to + 1` be a whole minute (bucket
    /// bounds are). All are `closed`.
    pub async fn candles(
        &self,
        asset: &Asset,
        interval: Interval,
        from: UnixSeconds,
        to: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<Candle>> {
        let rollup = Rollup::for_buckets(interval.seconds());
        let step = rollup.seconds();
        let coarse_end = (to + 1) - (to + 1).rem_euclid(step) - 1;
        let mut candles = if from <= coarse_end {
            self.rollup_candles(rollup, asset, interval, (from, coarse_end), limit)
                .await?
        } else {
            Vec::new()
        };
        // The minutes of an hour the range ends in (at most 59 rows); they
        // may belong to the last bucket read above.
        let rest = from.max(coarse_end + 1);
        if rest <= to {
            let minutes = self
                .rollup_candles(Rollup::Minutes, asset, interval, (rest, to), limit)
                .await?;
            candles = crate::domain::candle::join(candles, minutes);
        }
        candles.truncate(limit);
        Ok(candles)
    }

    async fn rollup_candles(
        &self,
        rollup: Rollup,
        asset: &Asset,
        interval: Interval,
        (from, to): (UnixSeconds, UnixSeconds),
        limit: usize,
    ) -> Result<Vec<Candle>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Buckets of the rollup's own period are its rows.
        let query = if interval.seconds() == rollup.seconds() {
            sqlx::query_as(rollup.rows_sql()).bind(sql_id(asset.id)?)
        } else {
            sqlx::query_as(rollup.candles_sql())
                .bind(sql_id(asset.id)?)
                .bind(interval.seconds())
        };
        let rows: Vec<(i64, f64, f64, f64, f64, i64)> = query
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(open_time, open, high, low, close, n)| Candle {
                open_time,
                close_time: open_time + interval.seconds() - 1,
                open,
                high,
                low,
                close,
                count: u32::try_from(n).unwrap_or(u32::MAX),
                closed: true,
            })
            .collect())
    }
}

/// Up to `limit` archived points of an asset with `from <= time <= to`,
/// oldest first, on `pool`.
async fn points(
    pool: &PgPool,
    asset: &Asset,
    span: (UnixSeconds, UnixSeconds),
    limit: usize,
) -> Result<Vec<Point>> {
    Ok(values(pool, asset.id, span, limit)
        .await?
        .into_iter()
        .map(|(time, value)| Point::of(asset, time, value))
        .collect())
}

/// Up to `limit` archived `(second, value)` pairs of an asset with
/// `from <= second <= to`, oldest first, on `pool`.
async fn values(
    pool: &PgPool,
    asset_id: AssetId,
    (from, to): (UnixSeconds, UnixSeconds),
    limit: usize,
) -> Result<Vec<(UnixSeconds, f64)>> {
    Ok(sqlx::query_as(
        "SELECT ts, value FROM points \
         WHERE asset_id = $1 AND ts BETWEEN $2 AND $3 \
         ORDER BY ts LIMIT $4",
    )
    .bind(sql_id(asset_id)?)
    .bind(from)
    .bind(to)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?)
}
