-- Measurements, their per-minute rollup, and dead letters (see docs/store.md).

-- One row per SenML record. The primary key is the idempotency key: reprocessing the log
-- re-inserts the same (owner, message_id, seq) and is skipped. WITHOUT ROWID makes the key the
-- table's own B-tree (no separate unique index), and every secondary index below carries
-- (owner, message_id, seq) for free.
CREATE TABLE measurements (
    owner      TEXT    NOT NULL,
    device     TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    name       TEXT    NOT NULL,
    unit       TEXT,
    time_ms    INTEGER NOT NULL,
    value      REAL,
    text       TEXT,
    bool       INTEGER,
    data       BLOB,
    sum        REAL,
    PRIMARY KEY (owner, message_id, seq)
) WITHOUT ROWID;

-- The main query: one owner, a time range, some names.
CREATE INDEX measurements_owner_name_time ON measurements (owner, name, time_ms);
-- Export in time order, paged by (time_ms, message_id, seq).
CREATE INDEX measurements_owner_time ON measurements (owner, time_ms, message_id, seq);

-- Numeric values per owner, name and minute (minute = start of the minute in ms since the epoch),
-- updated in the insert's transaction for new rows only. Bucketed queries whose bucket is a
-- multiple of a minute read this instead of the raw rows.
CREATE TABLE rollup_minute (
    owner  TEXT    NOT NULL,
    name   TEXT    NOT NULL,
    minute INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    sum    REAL    NOT NULL,
    min    REAL    NOT NULL,
    max    REAL    NOT NULL,
    unit   TEXT,
    PRIMARY KEY (owner, name, minute)
) WITHOUT ROWID;

-- Messages the pipeline could not decode, kept for the owner to inspect.
CREATE TABLE dead_letters (
    owner       TEXT    NOT NULL,
    device      TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    received_ms INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    PRIMARY KEY (owner, message_id)
);
CREATE INDEX dead_letters_owner_received ON dead_letters (owner, received_ms);
