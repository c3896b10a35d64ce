-- `points` becomes range-partitioned by UTC day on `ts`, one partition a
-- day, `points_pYYYYMMDD` holding [day * 86400, (day + 1) * 86400), so that
-- retention drops whole days instead of deleting rows. Same columns, same
-- primary key (it includes the partition key, as it must).
--
-- There is no DEFAULT partition: a day partition could not be created while
-- a default one held rows of that day. ratesd creates each day's partition
-- ahead (`Archive::maintain`), and an insert that finds none creates it and
-- retries. The names and bounds here are those of `store::archive::DayPartition`.
--
-- Works on a fresh database (no rows: no partitions made here) and on one
-- holding rows (each day they cover gets its partition, then the rows move).
-- Runs in one transaction: on failure the old table is left as it was.

ALTER TABLE points RENAME TO points_unpartitioned;
-- The new table's primary key index takes the name `points_pkey`.
ALTER INDEX points_pkey RENAME TO points_unpartitioned_pkey;

CREATE TABLE points (
    asset_id integer          NOT NULL,
    ts       bigint           NOT NULL,  -- Unix seconds, UTC
    value    double precision NOT NULL,  -- (bid + ask) / 2, rounded to 6 decimals
    PRIMARY KEY (asset_id, ts)
) PARTITION BY RANGE (ts);

DO $$
DECLARE
    day bigint;
BEGIN
    FOR day IN
        SELECT DISTINCT floor(ts / 86400.0)::bigint FROM points_unpartitioned ORDER BY 1
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF points FOR VALUES FROM (%s) TO (%s)',
            'points_p' || to_char(to_timestamp(day * 86400) AT TIME ZONE 'UTC', 'YYYYMMDD'),
            day * 86400,
            (day + 1) * 86400
        );
    END LOOP;
END
$$;

INSERT INTO points (asset_id, ts, value)
SELECT asset_id, ts, value FROM points_unpartitioned;

DROP TABLE points_unpartitioned;
