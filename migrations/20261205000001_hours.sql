-- An hourly rollup beside the minute one, kept by the same insert: candles
-- of an hour or longer are aggregated from it, so that a page of 1,000 daily
-- candles reads 24,000 rows, not 1.4 million minutes (a page's work is
-- bounded by what it holds, whatever range a client asks for).
CREATE TABLE IF NOT EXISTS hours (
    asset_id  integer          NOT NULL,
    open_time bigint           NOT NULL,  -- the hour's first second (Unix seconds, UTC)
    first_ts  bigint           NOT NULL,  -- its first point's second
    last_ts   bigint           NOT NULL,  -- its last point's second
    open      double precision NOT NULL,
    high      double precision NOT NULL,
    low       double precision NOT NULL,
    close     double precision NOT NULL,
    count     integer          NOT NULL,
    PRIMARY KEY (asset_id, open_time)
);

-- An archive from before: its hours, from its minutes.
INSERT INTO hours (asset_id, open_time, first_ts, last_ts, open, high, low, close, count)
SELECT asset_id, open_time - ((open_time % 3600) + 3600) % 3600, min(first_ts), max(last_ts),
       (array_agg(open ORDER BY open_time))[1], max(high), min(low),
       (array_agg(close ORDER BY open_time DESC))[1], sum(count)
FROM minutes
GROUP BY asset_id, open_time - ((open_time % 3600) + 3600) % 3600
ON CONFLICT (asset_id, open_time) DO NOTHING;
