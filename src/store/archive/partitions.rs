//! The archive's day partitions: `points` is range-partitioned by UTC day
//! on `ts` ([`DayPartition`]). ratesd creates each day's partition ahead
//! ([`Archive::maintain`]), an insert that finds no partition for a day
//! creates it and retries, and retention drops whole days (and their
//! rollup rows).

use std::collections::BTreeSet;

use sqlx::AssertSqlSafe;

use super::rollup::Rollup;
use super::{Archive, Result};
use crate::domain::UnixSeconds;

/// Seconds in a UTC day: the span of one partition.
pub const DAY_SECONDS: i64 = 86_400;
/// Days after today whose partitions [`Archive::maintain`] creates ahead.
const DAYS_AHEAD: i64 = 2;
/// How long partition maintenance waits for its lock on `points` (creating
/// or detaching a partition locks out every insert and read meanwhile);
/// past it the round fails and the next one tries again.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '5s'";
/// The advisory lock that makes partition maintenance one process at a
/// time, whatever number of ratesd processes share the database.
const PARTITION_LOCK: i64 = 0x7261_7465_7364_7031;

impl Archive {
    /// Creates the partitions of today and of the next [`DAYS_AHEAD`] days
    /// (by `now`) that do not exist yet, then, when `retention_days` is not
    /// 0, detaches and drops every partition whose whole day is more than
    /// `retention_days` days before today's. Does nothing while `points` is
    /// not partitioned yet (migrations not applied). Safe to run from
    /// several processes at once: they take turns on an advisory lock.
    pub async fn maintain(&self, now: UnixSeconds, retention_days: u32) -> Result<Maintenance> {
        let done = self.maintain_once(now, retention_days).await;
        self.note(done)
    }

    pub(super) async fn maintain_once(
        &self,
        now: UnixSeconds,
        retention_days: u32,
    ) -> Result<Maintenance> {
        let mut done = Maintenance::default();
        if !self.partitioned().await? {
            tracing::debug!("points is not partitioned yet: no partition maintenance");
            return Ok(done);
        }
        let today = DayPartition::of(now);
        let days = (0..=DAYS_AHEAD).filter_map(|ahead| today.after(ahead));
        done.created = self.create_partitions(days.collect()).await?;
        if retention_days > 0 {
            for partition in self.partitions().await? {
                if partition.expired(now, retention_days)
                    && self
                        .drop_partition(&partition.name, partition.from.zip(partition.to))
                        .await?
                {
                    tracing::info!(
                        partition = %partition.name,
                        retention_days,
                        "archive partition dropped: its day is past the retention"
                    );
                    metrics::counter!("ratesd_archive_partitions_dropped_total").increment(1);
                    done.dropped.push(partition.name);
                }
            }
        }
        Ok(done)
    }

    /// Whether `points` is the partitioned table.
    async fn partitioned(&self) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table \
             WHERE partrelid = to_regclass('points'))",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// The partitions of `points`, by name, with their bounds.
    pub async fn partitions(&self) -> Result<Vec<Partition>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass('points') ORDER BY c.relname",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, bound)| {
                let (from, to) = range_bounds(&bound);
                Partition { name, from, to }
            })
            .collect())
    }

    /// A transaction holding the partition lock (waiting for it no longer
    /// than the lock timeout).
    async fn partition_lock(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(LOCK_TIMEOUT).execute(&mut *tx).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Creates the partitions of `days` that do not exist yet, in one
    /// transaction under the partition lock; returns the names created.
    pub(super) async fn create_partitions(
        &self,
        days: BTreeSet<DayPartition>,
    ) -> Result<Vec<String>> {
        let mut tx = self.partition_lock().await?;
        let mut created = Vec::new();
        for day in days {
            let name = day.name();
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(quote_ident(&name))
                .fetch_one(&mut *tx)
                .await?;
            if !exists {
                // IF NOT EXISTS all the same: a table of that name made
                // outside the lock (by hand) is left as it is.
                sqlx::query(AssertSqlSafe(day.create_sql()))
                    .execute(&mut *tx)
                    .await?;
                created.push(name);
            }
        }
        tx.commit().await?;
        for name in &created {
            tracing::info!(partition = %name, "archive partition created");
        }
        Ok(created)
    }

    /// Detaches and drops one partition of `points` under the partition
    /// lock, and the rollup rows of its span; false when it is no longer
    /// there (another process dropped it).
    async fn drop_partition(
        &self,
        name: &str,
        span: Option<(UnixSeconds, UnixSeconds)>,
    ) -> Result<bool> {
        let quoted = quote_ident(name);
        let mut tx = self.partition_lock().await?;
        let attached: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits \
             WHERE inhrelid = to_regclass($1) AND inhparent = to_regclass('points'))",
        )
        .bind(&quoted)
        .fetch_one(&mut *tx)
        .await?;
        if !attached {
            return Ok(false);
        }
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE points DETACH PARTITION {quoted}"
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!("DROP TABLE {quoted}")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // Apart from the detach, which holds `points` while it runs. A day
        // is whole hours, so its rollup rows go with it.
        if let Some((from, to)) = span {
            for rollup in [Rollup::Minutes, Rollup::Hours] {
                sqlx::query(rollup.delete_sql())
                    .bind(from)
                    .bind(to)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(true)
    }
}

/// What one [`Archive::maintain`] did: the partitions it created and those
/// it dropped, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
}

/// One partition of `points` as the catalog describes it. A bound is `None`
/// when it is not a number (`MINVALUE`, `MAXVALUE`, or a `DEFAULT`
/// partition, which ratesd never makes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub from: Option<UnixSeconds>,
    pub to: Option<UnixSeconds>,
}

impl Partition {
    /// Whether every second it may hold is in a day more than
    /// `retention_days` days before the day of `now` (never with a
    /// retention of 0, nor without an upper bound).
    fn expired(&self, now: UnixSeconds, retention_days: u32) -> bool {
        if retention_days == 0 {
            return false;
        }
        let kept_from = DayPartition::of(now)
            .0
            .saturating_sub(i64::from(retention_days))
            .saturating_mul(DAY_SECONDS);
        self.to.is_some_and(|to| to <= kept_from)
    }
}

/// The partition of one UTC day (days since the Unix epoch): named
/// `points_pYYYYMMDD`, holding `[day * 86400, (day + 1) * 86400)`. The
/// migration that partitioned `points` names and bounds them the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DayPartition(i64);

impl DayPartition {
    /// The day holding `time`.
    pub fn of(time: UnixSeconds) -> Self {
        Self(time.div_euclid(DAY_SECONDS))
    }

    /// The day `days` days later, if there is one.
    fn after(self, days: i64) -> Option<Self> {
        self.0.checked_add(days).map(Self)
    }

    /// `points_pYYYYMMDD`, the day's UTC date.
    pub fn name(self) -> String {
        let (year, month, day) = civil_date(self.0);
        format!("points_p{year:04}{month:02}{day:02}")
    }

    /// Its first second (`None` below the range of `i64`).
    pub fn from(self) -> Option<UnixSeconds> {
        self.0.checked_mul(DAY_SECONDS)
    }

    /// The first second of the next day (`None` beyond the range of `i64`).
    pub fn to(self) -> Option<UnixSeconds> {
        self.0.checked_add(1)?.checked_mul(DAY_SECONDS)
    }

    fn create_sql(self) -> String {
        let bound = |b: Option<i64>, none: &str| b.map_or(none.to_owned(), |b| b.to_string());
        format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF points FOR VALUES FROM ({}) TO ({})",
            quote_ident(&self.name()),
            bound(self.from(), "MINVALUE"),
            bound(self.to(), "MAXVALUE"),
        )
    }
}

/// The proleptic Gregorian `(year, month, day)` of a day counted from
/// 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both in range by construction (1..=12, 1..=31).
    (year, month as u32, day as u32)
}

/// The bounds of a range partition from `pg_get_expr(relpartbound, ...)`,
/// `FOR VALUES FROM ('1764720000') TO ('1764806400')`; a bound that is not a
/// number (`MINVALUE`, `MAXVALUE`, `DEFAULT`) is `None`.
fn range_bounds(expr: &str) -> (Option<i64>, Option<i64>) {
    let value = |s: &str| s.trim().trim_matches('\'').parse().ok();
    let Some((from, to)) = expr
        .strip_prefix("FOR VALUES FROM (")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|rest| rest.split_once(") TO ("))
    else {
        return (None, None);
    };
    (value(from), value(to))
}

/// An identifier quoted for SQL.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether an insert failed because a row's day has no partition.
pub(super) fn no_partition_for_row(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23514") && db.message().starts_with("no partition of relation"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_named_by_their_utc_date() {
        assert_eq!(DayPartition::of(0).name(), "points_p19700101");
        assert_eq!(DayPartition::of(-1).name(), "points_p19691231");
        // 2026-12-03T00:00:00Z, and the second before it.
        assert_eq!(DayPartition::of(1_796_256_000).name(), "points_p20261203");
        assert_eq!(DayPartition::of(1_796_255_999).name(), "points_p20261202");
        // Leap days and year ends.
        assert_eq!(DayPartition::of(951_782_400).name(), "points_p20000229");
        assert_eq!(DayPartition::of(1_709_164_800).name(), "points_p20240229");
        assert_eq!(DayPartition::of(4_133_980_799).name(), "points_p21001231");
        assert_eq!(DayPartition::of(4_133_980_800).name(), "points_p21010101");
    }

    #[test]
    fn a_day_holds_its_own_seconds_only() {
        let day = DayPartition::of(1_796_256_000 + 5);
        assert_eq!(day.from(), Some(1_796_256_000));
        assert_eq!(day.to(), Some(1_796_256_000 + DAY_SECONDS));
        assert_eq!(DayPartition::of(day.to().unwrap()), day.after(1).unwrap());
        assert_eq!(DayPartition::of(-1).from(), Some(-DAY_SECONDS));
        assert_eq!(DayPartition::of(-1).to(), Some(0));
        // At the ends of i64 a bound is open rather than overflowing.
        assert_eq!(DayPartition::of(i64::MAX).to(), None);
        assert_eq!(DayPartition::of(i64::MIN).from(), None);
        assert!(
            DayPartition::of(i64::MAX)
                .create_sql()
                .ends_with("TO (MAXVALUE)")
        );
        assert_eq!(
            DayPartition::of(0).create_sql(),
            "CREATE TABLE IF NOT EXISTS \"points_p19700101\" PARTITION OF points \
             FOR VALUES FROM (0) TO (86400)"
        );
    }

    #[test]
    fn catalog_bounds_are_read_back() {
        assert_eq!(
            range_bounds("FOR VALUES FROM ('1764720000') TO ('1764806400')"),
            (Some(1_764_720_000), Some(1_764_806_400))
        );
        assert_eq!(
            range_bounds("FOR VALUES FROM (MINVALUE) TO ('-5')"),
            (None, Some(-5))
        );
        assert_eq!(range_bounds("DEFAULT"), (None, None));
        assert_eq!(range_bounds(""), (None, None));
    }

    #[test]
    fn only_days_past_the_retention_expire() {
        let today = DayPartition::of(1_796_256_000 + 3_600);
        let now = today.from().unwrap() + 3_600;
        let day = |back: i64| {
            let d = DayPartition(today.0 - back);
            Partition {
                name: d.name(),
                from: d.from(),
                to: d.to(),
            }
        };
        // Retention 3: today and the three days before it stay.
        for back in 0..=3 {
            assert!(!day(back).expired(now, 3), "{back} days back");
        }
        for back in 4..=10 {
            assert!(day(back).expired(now, 3), "{back} days back");
        }
        // The same at the day's last second.
        assert!(!day(3).expired(today.to().unwrap() - 1, 3));
        // 0 keeps everything; an open upper bound never expires.
        assert!(!day(400).expired(now, 0));
        let open = Partition {
            to: None,
            ..day(400)
        };
        assert!(!open.expired(now, 1));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("points_p20261203"), "\"points_p20261203\"");
        assert_eq!(quote_ident("a\"b"), r#""a""b""#);
    }
}
