-- The HTTP API's login sessions (see docs/store.md), kept here so that they survive a restart and
-- hold on every node that shares the store.

-- token_hash is the SHA-256 of the session token (32 bytes): the token itself, a bearer secret,
-- is never stored, so a copy of the database logs nobody in. Tokens are 32 random bytes, so an
-- unsalted fast hash is enough: there is nothing to guess. expires_ms is fixed at login (no
-- sliding expiry); last_used_ms is refreshed at most once a minute, for operators. WITHOUT ROWID:
-- the key is the table's B-tree and every lookup is by it.
CREATE TABLE api_sessions (
    token_hash   BLOB    NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
    owner        TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_used_ms INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL
) WITHOUT ROWID;

-- A login counts and ends the owner's oldest sessions (tokens per owner bound).
CREATE INDEX api_sessions_owner_created ON api_sessions (owner, created_ms);
-- Expired sessions are purged a bounded batch at a time, oldest first.
CREATE INDEX api_sessions_expires ON api_sessions (expires_ms);
