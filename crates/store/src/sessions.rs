//! The HTTP API's login sessions: what [`Store::create_session`] and its neighbours keep in the
//! `api_sessions` table (docs/store.md), so that a session survives a restart and holds on every
//! node sharing the store.
//!
//! The store never sees a token: only its SHA-256 ([`TokenHash`]), which the API computes.
//! Times are milliseconds since the Unix epoch, passed in by the caller (tests move the clock).
//!
//! Invariants:
//! - A session whose `expires_ms <= now_ms` is never answered as live; a lookup that finds one
//!   deletes it.
//! - After [`Store::create_session`] returns [`NewSession::Created`], the owner holds at most
//!   `per_owner` sessions, counted in the store: on PostgreSQL, concurrent logins of one owner
//!   (on any node) are serialised by an advisory lock, on SQLite by the one writer.
//! - Every call does bounded work: expired rows are purged at most [`PURGE_BATCH`] per login
//!   (and all of them only when the table holds `total` rows, which a login then refuses).

use crate::{Error, Result, Store};

/// The SHA-256 of a session token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    /// The first bytes only: enough to tell two apart in a log, and a log line is no place for
    /// even the hash of a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenHash({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

impl TokenHash {
    /// From a stored value, which must be 32 bytes.
    pub(crate) fn stored(engine: &'static str, op: &'static str, bytes: Vec<u8>) -> Result<Self> {
        let len = bytes.len();
        bytes.try_into().map(TokenHash).map_err(|_| Error::Corrupt {
            engine,
            op,
            what: format!("token hash of {len} bytes"),
        })
    }
}

/// One login session of the HTTP API, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSession {
    /// The key: the SHA-256 of the token the client holds.
    pub token_hash: TokenHash,
    /// Whose session it is: every data request it authenticates is scoped to this owner.
    pub owner: String,
    /// When it was made (the login); the per-owner bound ends the oldest first.
    pub created_ms: i64,
    /// When a request last used it, refreshed at most every [`SESSION_TOUCH_MS`] (a write per
    /// request would cost more than the lookup): for operators, not for expiry.
    pub last_used_ms: i64,
    /// When it stops working, fixed at login.
    pub expires_ms: i64,
}

/// [`Store::session`] refreshes `last_used_ms` when it is older than this.
pub const SESSION_TOUCH_MS: i64 = 60_000;

/// Expired sessions a login purges, at most: logins outnumber the sessions that expire (each
/// was made by one), so this keeps the table to the live sessions and a few.
pub const PURGE_BATCH: usize = 100;

/// The bounds a new session is made under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionBounds {
    /// Sessions one owner may hold: a login beyond it ends the owner's oldest.
    pub per_owner: usize,
    /// Sessions in all (expired ones purged first): a login beyond it is refused. Across nodes
    /// it may be passed by as many logins as run at the same moment.
    pub total: usize,
}

/// What [`Store::create_session`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum NewSession {
    /// Stored; `ended` are the owner's sessions it pushed out (the per-owner bound), so that the
    /// node can end what waits on them.
    Created { ended: Vec<TokenHash> },
    /// Not stored: the store holds `total` live sessions.
    Full,
}

impl Store {
    /// Stores a new session, in one transaction: purges up to [`PURGE_BATCH`] expired sessions,
    /// refuses ([`NewSession::Full`]) when `bounds.total` live sessions remain, ends the owner's
    /// expired sessions and then its oldest until it holds fewer than `bounds.per_owner`, and
    /// inserts. `session.created_ms` is "now".
    pub async fn create_session(
        &self,
        session: &ApiSession,
        bounds: SessionBounds,
    ) -> Result<NewSession> {
        if session.owner.contains('\0') {
            return Err(Error::InvalidSession {
                reason: "owner contains a NUL character".to_owned(),
            });
        }
        let bounds = SessionBounds {
            per_owner: bounds.per_owner.max(1),
            total: bounds.total.max(1),
        };
        match self {
            Store::Sqlite(s) => s.create_session(session.clone(), bounds).await,
            Store::Postgres(p) => p.create_session(session, bounds).await,
        }
    }

    /// The live session of `token_hash`, if any. An expired one is deleted and answered as
    /// absent; a live one whose `last_used_ms` is [`SESSION_TOUCH_MS`] old gets `now_ms` (the
    /// answer carries the stored value from before).
    pub async fn session(&self, token_hash: TokenHash, now_ms: i64) -> Result<Option<ApiSession>> {
        let found = match self {
            Store::Sqlite(s) => s.session(token_hash).await?,
            Store::Postgres(p) => p.session(token_hash).await?,
        };
        let Some(session) = found else {
            return Ok(None);
        };
        if session.expires_ms <= now_ms {
            self.end_session(token_hash, now_ms).await?;
            return Ok(None);
        }
        if now_ms - session.last_used_ms >= SESSION_TOUCH_MS {
            match self {
                Store::Sqlite(s) => s.touch_session(token_hash, now_ms).await?,
                Store::Postgres(p) => p.touch_session(token_hash, now_ms).await?,
            }
        }
        Ok(Some(session))
    }

    /// Deletes a session (logout); whether it was there and live.
    pub async fn end_session(&self, token_hash: TokenHash, now_ms: i64) -> Result<bool> {
        let expires_ms = match self {
            Store::Sqlite(s) => s.end_session(token_hash).await?,
            Store::Postgres(p) => p.end_session(token_hash).await?,
        };
        Ok(expires_ms.is_some_and(|expires_ms| expires_ms > now_ms))
    }

    /// How many live sessions `owner` holds.
    pub async fn session_count(&self, owner: &str, now_ms: i64) -> Result<u64> {
        match self {
            Store::Sqlite(s) => s.session_count(owner.to_owned(), now_ms).await,
            Store::Postgres(p) => p.session_count(owner, now_ms).await,
        }
    }

    /// Deletes up to `limit` expired sessions, the longest expired first; how many.
    pub async fn purge_sessions(&self, now_ms: i64, limit: usize) -> Result<u64> {
        match self {
            Store::Sqlite(s) => s.purge_sessions(now_ms, limit).await,
            Store::Postgres(p) => p.purge_sessions(now_ms, limit).await,
        }
    }
}
