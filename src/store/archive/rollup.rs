//! The rollup tables beside `points`: `minutes` and `hours`, one row per
//! asset and period with its first and last second, open, high, low, close
//! and count. The insert keeps both (only new points count, so a replay
//! changes nothing); candles read the coarsest one whose periods divide
//! their buckets, so that a page's work is bounded by the candles it holds.

/// A period's first second: `t` floored to a multiple of `p` (also below 0).
macro_rules! floor_sql {
    ($t:literal, $p:literal) => {
        concat!($t, " - ((", $t, " % ", $p, ") + ", $p, ") % ", $p)
    };
}

/// The upsert of one rollup from the new points of the CTE `ins`: a row
/// already there takes a new open or close only from an earlier or later
/// second than its own.
macro_rules! upsert_sql {
    ($table:literal, $p:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " AS r ",
            "(asset_id, open_time, first_ts, last_ts, open, high, low, close, count) ",
            "SELECT asset_id, ",
            floor_sql!("ts", $p),
            ", min(ts), max(ts), ",
            "(array_agg(value ORDER BY ts))[1], max(value), min(value), ",
            "(array_agg(value ORDER BY ts DESC))[1], count(*) ",
            "FROM ins GROUP BY asset_id, ",
            floor_sql!("ts", $p),
            " ",
            "ON CONFLICT (asset_id, open_time) DO UPDATE SET ",
            "open = CASE WHEN excluded.first_ts < r.first_ts THEN excluded.open ELSE r.open END, ",
            "first_ts = LEAST(r.first_ts, excluded.first_ts), ",
            "close = CASE WHEN excluded.last_ts > r.last_ts THEN excluded.close ELSE r.close END, ",
            "last_ts = GREATEST(r.last_ts, excluded.last_ts), ",
            "high = GREATEST(r.high, excluded.high), ",
            "low = LEAST(r.low, excluded.low), ",
            "count = r.count + excluded.count ",
            "RETURNING 1"
        )
    };
}

/// Up to `$5` candles of asset `$1` with buckets of `$2` seconds, from the
/// rollup rows with `$3 <= open_time <= $4`, oldest first. The work is
/// bounded by the page, not by the range: the first bucket starts at the
/// first row that has data (one index probe), each next one at the next row
/// after the bucket (one probe each, so empty stretches cost nothing), and
/// each bucket reads only its own rows and its open and close by key.
macro_rules! candles_sql {
    ($table:literal) => {
        concat!(
            "WITH RECURSIVE starts(b, n) AS ( ",
            "SELECT f.t - ((f.t % $2) + $2) % $2, 1::int8 FROM (SELECT open_time AS t FROM ",
            $table,
            " WHERE asset_id = $1 AND open_time BETWEEN $3 AND $4 ORDER BY open_time LIMIT 1) f ",
            "UNION ALL ",
            "SELECT (SELECT m.open_time - ((m.open_time % $2) + $2) % $2 FROM ",
            $table,
            " m ",
            "WHERE m.asset_id = $1 AND m.open_time >= s.b + $2 AND m.open_time <= $4 ",
            "ORDER BY m.open_time LIMIT 1), s.n + 1 ",
            "FROM starts s WHERE s.b IS NOT NULL AND s.n < $5::int8) ",
            "SELECT s.b, o.open, a.high, a.low, c.close, a.n FROM starts s ",
            "CROSS JOIN LATERAL (SELECT max(high) AS high, min(low) AS low, sum(count)::int8 AS n ",
            "FROM ",
            $table,
            " WHERE asset_id = $1 AND open_time >= GREATEST(s.b, $3) ",
            "AND open_time <= LEAST(s.b + $2 - 1, $4)) a ",
            "CROSS JOIN LATERAL (SELECT open FROM ",
            $table,
            " WHERE asset_id = $1 ",
            "AND open_time >= GREATEST(s.b, $3) AND open_time <= LEAST(s.b + $2 - 1, $4) ",
            "ORDER BY open_time LIMIT 1) o ",
            "CROSS JOIN LATERAL (SELECT close FROM ",
            $table,
            " WHERE asset_id = $1 ",
            "AND open_time >= GREATEST(s.b, $3) AND open_time <= LEAST(s.b + $2 - 1, $4) ",
            "ORDER BY open_time DESC LIMIT 1) c ",
            "WHERE s.b IS NOT NULL ORDER BY s.b"
        )
    };
}

/// The insert of a batch of points (`$1` ids, `$2` seconds, `$3` values)
/// and of the rollup rows they fall in, in one statement; answers how many
/// points were new.
pub(super) const INSERT_SQL: &str = concat!(
    "WITH ins AS ( ",
    "INSERT INTO points (asset_id, ts, value) ",
    "SELECT * FROM UNNEST($1::int4[], $2::int8[], $3::float8[]) ",
    "ON CONFLICT (asset_id, ts) DO NOTHING ",
    "RETURNING asset_id, ts, value), ",
    "up_minutes AS (",
    upsert_sql!("minutes", "60"),
    "), ",
    "up_hours AS (",
    upsert_sql!("hours", "3600"),
    ") ",
    "SELECT count(*) FROM ins"
);

/// One rollup table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rollup {
    Minutes,
    Hours,
}

impl Rollup {
    /// Seconds in one of its periods.
    pub(super) fn seconds(self) -> i64 {
        match self {
            Self::Minutes => 60,
            Self::Hours => 3_600,
        }
    }

    /// The coarsest rollup whose periods make up buckets of `seconds`.
    pub(super) fn for_buckets(seconds: i64) -> Self {
        if seconds % Self::Hours.seconds() == 0 {
            Self::Hours
        } else {
            Self::Minutes
        }
    }

    /// Its candles ([`candles_sql`]).
    pub(super) fn candles_sql(self) -> &'static str {
        match self {
            Self::Minutes => candles_sql!("minutes"),
            Self::Hours => candles_sql!("hours"),
        }
    }

    /// Up to `$4` of its rows of asset `$1` with `$2 <= open_time <= $3`,
    /// oldest first, as candles of its own period.
    pub(super) fn rows_sql(self) -> &'static str {
        match self {
            Self::Minutes => {
                "SELECT open_time, open, high, low, close, count::int8 FROM minutes \
                 WHERE asset_id = $1 AND open_time BETWEEN $2 AND $3 ORDER BY open_time LIMIT $4"
            }
            Self::Hours => {
                "SELECT open_time, open, high, low, close, count::int8 FROM hours \
                 WHERE asset_id = $1 AND open_time BETWEEN $2 AND $3 ORDER BY open_time LIMIT $4"
            }
        }
    }

    /// Deletes its rows with `$1 <= open_time < $2`.
    pub(super) fn delete_sql(self) -> &'static str {
        match self {
            Self::Minutes => "DELETE FROM minutes WHERE open_time >= $1 AND open_time < $2",
            Self::Hours => "DELETE FROM hours WHERE open_time >= $1 AND open_time < $2",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_read_the_coarsest_rollup_that_divides_them() {
        assert_eq!(Rollup::for_buckets(60), Rollup::Minutes);
        assert_eq!(Rollup::for_buckets(30 * 60), Rollup::Minutes);
        assert_eq!(Rollup::for_buckets(3_600), Rollup::Hours);
        assert_eq!(Rollup::for_buckets(4 * 3_600), Rollup::Hours);
        assert_eq!(Rollup::for_buckets(86_400), Rollup::Hours);
    }

    #[test]
    fn the_statements_name_their_own_table_only() {
        assert!(INSERT_SQL.contains("INSERT INTO minutes AS r"));
        assert!(INSERT_SQL.contains("INSERT INTO hours AS r"));
        assert!(INSERT_SQL.contains("ts - ((ts % 3600) + 3600) % 3600"));
        assert!(!Rollup::Hours.candles_sql().contains("minutes"));
        assert!(!Rollup::Minutes.candles_sql().contains("hours"));
        assert!(!Rollup::Hours.rows_sql().contains("minutes"));
        assert!(!Rollup::Minutes.rows_sql().contains("hours"));
    }
}
