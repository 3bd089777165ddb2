-- Per-owner data keys and the record of erasures (see docs/store.md and docs/erasure.md).

-- The data key each owner's payloads are sealed under in the log, wrapped (encrypted) by the
-- node's master key: every node sharing the store sees the same key. Erasing the owner sets
-- wrapped to NULL (the key is destroyed; the row stays so that every node learns the owner is
-- erased rather than new). key_id is the u64 id written into every sealed payload, stored as
-- its i64 bit pattern. A later account of the same id gets a new key and a new key_id, which
-- the old payloads do not name.
CREATE TABLE owner_keys (
    owner      TEXT    NOT NULL PRIMARY KEY,
    key_id     INTEGER NOT NULL,
    wrapped    BLOB,
    created_ms INTEGER NOT NULL,
    erased_ms  INTEGER
) WITHOUT ROWID;

-- One row per erasure an owner asked for: what the log still holds of it must not come back
-- (the sinks and `tributary reprocess` skip records and rows it covers). device NULL: every
-- device. [from_ms, to_ms) by measurement time (received time for dead letters).
CREATE TABLE erasures (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    owner        TEXT    NOT NULL,
    device       TEXT,
    from_ms      INTEGER NOT NULL,
    to_ms        INTEGER NOT NULL CHECK (to_ms > from_ms),
    requested_ms INTEGER NOT NULL
);
CREATE INDEX erasures_owner ON erasures (owner);
