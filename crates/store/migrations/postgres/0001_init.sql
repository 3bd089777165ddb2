-- Measurements, their per-minute rollup, and dead letters (see docs/store.md).
-- Text columns use the "C" collation: byte order, the same as SQLite's, so both engines sort
-- names and pick units alike, and B-tree comparisons skip the locale.

-- One row per SenML record. The primary key is the idempotency key: reprocessing the log
-- re-inserts the same (owner, message_id, seq) and is skipped (ON CONFLICT DO NOTHING).
CREATE TABLE measurements (
    owner      TEXT COLLATE "C" NOT NULL,
    device     TEXT COLLATE "C" NOT NULL,
    message_id TEXT COLLATE "C" NOT NULL,
    seq        BIGINT           NOT NULL CHECK (seq >= 0 AND seq <= 4294967295),
    name       TEXT COLLATE "C" NOT NULL,
    unit       TEXT COLLATE "C",
    time_ms    BIGINT           NOT NULL,
    value      DOUBLE PRECISION,
    text       TEXT,
    bool       BOOLEAN,
    data       BYTEA,
    sum        DOUBLE PRECISION,
    PRIMARY KEY (owner, message_id, seq)
);

-- The main query: one owner, a time range, some names.
CREATE INDEX measurements_owner_name_time ON measurements (owner, name, time_ms);
-- Export in time order, paged by (time_ms, message_id, seq).
CREATE INDEX measurements_owner_time ON measurements (owner, time_ms, message_id, seq);

-- Numeric values per owner, name and minute (minute = start of the minute in ms since the epoch),
-- updated in the insert's transaction for new rows only. Bucketed queries whose bucket is a
-- multiple of a minute read this instead of the raw rows.
CREATE TABLE rollup_minute (
    owner  TEXT COLLATE "C" NOT NULL,
    name   TEXT COLLATE "C" NOT NULL,
    minute BIGINT           NOT NULL,
    count  BIGINT           NOT NULL,
    sum    DOUBLE PRECISION NOT NULL,
    min    DOUBLE PRECISION NOT NULL,
    max    DOUBLE PRECISION NOT NULL,
    unit   TEXT COLLATE "C",
    PRIMARY KEY (owner, name, minute)
);

-- Messages the pipeline could not decode, kept for the owner to inspect.
CREATE TABLE dead_letters (
    owner       TEXT COLLATE "C" NOT NULL,
    device      TEXT COLLATE "C" NOT NULL,
    message_id  TEXT COLLATE "C" NOT NULL,
    topic       TEXT             NOT NULL,
    received_ms BIGINT           NOT NULL,
    reason      TEXT             NOT NULL,
    payload     BYTEA            NOT NULL,
    PRIMARY KEY (owner, message_id)
);
CREATE INDEX dead_letters_owner_received ON dead_letters (owner, received_ms);
