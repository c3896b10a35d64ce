-- One row per asset and minute that has points: the minute's candle, kept
-- in step with `points` by the same statement that inserts them (see
-- `store::archive::Archive::insert`), so that candles of any interval (all
-- whole minutes) are read from at most 1/60th of the rows. `first_ts` and
-- `last_ts` let a late point of a minute update its open or close.
CREATE TABLE IF NOT EXISTS minutes (
    asset_id  integer          NOT NULL,
    open_time bigint           NOT NULL,  -- the minute's first second (Unix seconds, UTC)
    first_ts  bigint           NOT NULL,  -- its first point's second
    last_ts   bigint           NOT NULL,  -- its last point's second
    open      double precision NOT NULL,
    high      double precision NOT NULL,
    low       double precision NOT NULL,
    close     double precision NOT NULL,
    count     integer          NOT NULL,
    PRIMARY KEY (asset_id, open_time)
);

-- An archive from before: its minutes, from its points.
INSERT INTO minutes (asset_id, open_time, first_ts, last_ts, open, high, low, close, count)
SELECT asset_id, ts - ((ts % 60) + 60) % 60, min(ts), max(ts),
       (array_agg(value ORDER BY ts))[1], max(value), min(value),
       (array_agg(value ORDER BY ts DESC))[1], count(*)
FROM points
GROUP BY asset_id, ts - ((ts % 60) + 60) % 60
ON CONFLICT (asset_id, open_time) DO NOTHING;
