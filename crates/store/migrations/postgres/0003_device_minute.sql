-- Per-device activity: messages and the latest measurement time per owner, device and minute
-- (see docs/store.md), for "when did each device last send, and how much in the last hour".
-- Text columns use the "C" collation, as in 0001: byte order, as SQLite's.

-- Updated in the insert's transaction for new rows only, as rollup_minute is: messages adds the
-- number of distinct message ids among an insert's new rows of that device and minute, and
-- last_ms keeps the greatest time_ms (the measurement's time, not when it was received). minute
-- is the start of the minute holding time_ms, so minute <= last_ms < minute + 60000: the row
-- with the greatest minute has the device's greatest last_ms.
CREATE TABLE device_minute (
    owner    TEXT COLLATE "C" NOT NULL,
    device   TEXT COLLATE "C" NOT NULL,
    minute   BIGINT           NOT NULL,
    messages BIGINT           NOT NULL CHECK (messages >= 0),
    last_ms  BIGINT           NOT NULL,
    PRIMARY KEY (owner, device, minute)
);

-- Backfill from the rows stored before this migration, so that existing devices show up: one
-- pass over measurements. minute floors (% truncates toward zero), as in the code.
INSERT INTO device_minute (owner, device, minute, messages, last_ms)
SELECT owner, device, minute, COUNT(DISTINCT message_id), MAX(time_ms)
FROM (SELECT owner, device, message_id, time_ms,
             time_ms - ((time_ms % 60000) + 60000) % 60000 AS minute
      FROM measurements) AS m
GROUP BY owner, device, minute;
