-- Per-device activity: messages and the latest measurement time per owner, device and minute
-- (see docs/store.md), for "when did each device last send, and how much in the last hour".

-- Updated in the insert's transaction for new rows only, as rollup_minute is: messages adds the
-- number of distinct message ids among an insert's new rows of that device and minute, and
-- last_ms keeps the greatest time_ms (the measurement's time, not when it was received). minute
-- is the start of the minute holding time_ms, so minute <= last_ms < minute + 60000: the row
-- with the greatest minute has the device's greatest last_ms. WITHOUT ROWID: the key is the
-- table's B-tree, and every read is a range of it.
CREATE TABLE device_minute (
    owner    TEXT    NOT NULL,
    device   TEXT    NOT NULL,
    minute   INTEGER NOT NULL,
    messages INTEGER NOT NULL CHECK (messages >= 0),
    last_ms  INTEGER NOT NULL,
    PRIMARY KEY (owner, device, minute)
) WITHOUT ROWID;

-- Backfill from the rows stored before this migration, so that existing devices show up: one
-- pass over measurements. minute floors (SQLite's % truncates toward zero), as in the code.
INSERT INTO device_minute (owner, device, minute, messages, last_ms)
SELECT owner, device, minute, COUNT(DISTINCT message_id), MAX(time_ms)
FROM (SELECT owner, device, message_id, time_ms,
             time_ms - ((time_ms % 60000) + 60000) % 60000 AS minute
      FROM measurements)
GROUP BY owner, device, minute;
