-- Every point the worker wrote: one asset's mid price at one whole second.
-- The primary key makes archiving idempotent: a point replayed from the
-- archive buffer after a crash is a no-op.
CREATE TABLE IF NOT EXISTS points (
    asset_id integer          NOT NULL,
    ts       bigint           NOT NULL,  -- Unix seconds, UTC
    value    double precision NOT NULL,  -- (bid + ask) / 2, rounded to 6 decimals
    PRIMARY KEY (asset_id, ts)
);
