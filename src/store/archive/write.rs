//! The archiver's insert: a batch of points and the rollup rows they fall
//! in, in one statement.

use super::partitions::{DayPartition, no_partition_for_row};
use super::rollup::INSERT_SQL;
use super::{Archive, Result, sql_id};
use crate::domain::ArchivedPoint;

impl Archive {
    /// Inserts points in one statement; a point already archived (same
    /// asset and second) is left as it is, so replays are harmless.
    /// Returns how many rows were new. When a point's day has no partition
    /// yet (a backfill of old days, a clock that jumped), the partitions of
    /// the batch's days are created and the statement runs again.
    pub async fn insert(&self, points: &[ArchivedPoint]) -> Result<u64> {
        if points.is_empty() {
            return Ok(0);
        }
        let done = self.insert_once(points).await;
        self.note(done)
    }

    async fn insert_once(&self, points: &[ArchivedPoint]) -> Result<u64> {
        let ids = points
            .iter()
            .map(|p| sql_id(p.asset_id))
            .collect::<Result<Vec<i32>>>()?;
        let times: Vec<i64> = points.iter().map(|p| p.time).collect();
        let values: Vec<f64> = points.iter().map(|p| p.value).collect();
        match self.insert_rows(&ids, &times, &values).await {
            Err(e) if no_partition_for_row(&e) => {
                tracing::debug!("a point's day has no archive partition yet; creating it");
                let days = times.iter().map(|&t| DayPartition::of(t)).collect();
                self.create_partitions(days).await?;
                Ok(self.insert_rows(&ids, &times, &values).await?)
            }
            done => Ok(done?),
        }
    }

    /// One statement: the points, and the rollup rows they fall in (only
    /// the points that were new count, so a replay changes nothing).
    async fn insert_rows(&self, ids: &[i32], times: &[i64], values: &[f64]) -> sqlx::Result<u64> {
        let inserted: i64 = sqlx::query_scalar(INSERT_SQL)
            .bind(ids)
            .bind(times)
            .bind(values)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(inserted).unwrap_or(0))
    }
}
