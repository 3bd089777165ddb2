-- Activity segments the behaviour model writes, and each owner's switch for the model
-- (see docs/store.md).

-- One stretch of time with one activity of one device. The model extends a segment while
-- windows keep the same label, so the key is its start: the same (owner, device, start_ms)
-- comes again with a later end_ms and replaces the row.
CREATE TABLE activity_segments (
    owner         TEXT    NOT NULL,
    device        TEXT    NOT NULL,
    start_ms      INTEGER NOT NULL,
    end_ms        INTEGER NOT NULL CHECK (end_ms > start_ms),
    activity      TEXT    NOT NULL,
    confidence    REAL    NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    windows       INTEGER NOT NULL CHECK (windows >= 0),
    model_version TEXT    NOT NULL,
    PRIMARY KEY (owner, device, start_ms)
) WITHOUT ROWID;

-- The timeline: one owner's segments overlapping [from, to), i.e. start_ms < to AND
-- end_ms > from. A B-tree range can bound only one of the two. Bounding end_ms reads the
-- segments that end after `from`: for the usual question (the last hours, days or weeks, up
-- to now) that is the answer and little more, since hardly anything ends after `to`.
-- Bounding start_ms instead would read the owner's whole history before `to` on every query,
-- because a segment's length has no limit to narrow it with. The index entries carry the
-- primary key, so start_ms < to is checked without reading the row.
CREATE INDEX activity_segments_owner_end ON activity_segments (owner, end_ms);

-- Owners who switched the behaviour model off (or on again). No row: on, the default.
CREATE TABLE activity_settings (
    owner      TEXT    NOT NULL PRIMARY KEY,
    enabled    INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
