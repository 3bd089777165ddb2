//! The store's one error type.

/// Everything that can go wrong in the store, grouped by who is at fault: the caller's input,
/// the database's contents, the engine (storage, connection), the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- the caller ----
    /// The store URL is neither SQLite nor PostgreSQL, or does not parse.
    #[error("invalid store url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A row that cannot be stored alike on both engines; nothing of the batch was written.
    #[error("insert measurements: invalid row (owner {owner:?}, message {message_id}, seq {seq}): {reason}")]
    InvalidRow {
        owner: String,
        message_id: String,
        seq: u32,
        reason: String,
    },
    /// A dead letter that cannot be stored alike on both engines.
    #[error("store dead letter: invalid letter (owner {owner:?}, message {message_id}): {reason}")]
    InvalidDeadLetter {
        owner: String,
        message_id: String,
        reason: String,
    },
    /// An activity segment, or an owner name for the activity settings, that cannot be stored
    /// alike on both engines; nothing of the call was written.
    #[error("store activity: invalid {what} (owner {owner:?}): {reason}")]
    InvalidActivity {
        owner: String,
        /// Which segment (device and start) or "setting".
        what: String,
        reason: String,
    },
    /// A login session that cannot be stored alike on both engines.
    #[error("store login session: {reason}")]
    InvalidSession { reason: String },
    /// A consent, receipt or audit entry that cannot be stored alike on both engines.
    #[error("store consent: {reason}")]
    InvalidConsent { reason: String },
    /// A pack, participation, release or ledger entry that cannot be stored alike on both engines.
    #[error("store pack: {reason}")]
    InvalidPack { reason: String },
    /// An erasure that cannot be done: an empty or inverted range, a bad owner or device.
    #[error("erase: {reason}")]
    InvalidErasure { reason: String },
    /// The owner has [`crate::erasure::MAX_ERASURES_PER_OWNER`] erasures already.
    #[error("erase: owner {owner:?} has {max} erasures already (erase the whole account instead)")]
    TooManyErasures { owner: String, max: u64 },
    /// A query that cannot be answered.
    #[error("query measurements: {reason}")]
    InvalidQuery { reason: String },

    // ---- the database's contents ----
    /// The database was migrated by a newer Tributary than this one.
    #[error(
        "{engine}: open store: schema version {found} is newer than this build knows ({known})"
    )]
    SchemaTooNew {
        engine: &'static str,
        found: i64,
        known: i64,
    },
    /// A stored value this build cannot read back (written by something else).
    #[error("{engine}: {op}: unexpected stored value: {what}")]
    Corrupt {
        engine: &'static str,
        op: &'static str,
        what: String,
    },

    // ---- the engine ----
    /// SQLite failed.
    #[error("sqlite: {op}: {source}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL failed (or the connection to it).
    #[error("postgres: {op}: {source}")]
    Postgres {
        op: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// No PostgreSQL connection could be had from the pool.
    #[error("postgres: {op}: get a connection: {source}")]
    Pool {
        op: &'static str,
        #[source]
        source: deadpool_postgres::PoolError,
    },
    /// The data directory for SQLite could not be created.
    #[error("sqlite: open store: create directory {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    // ---- the runtime ----
    /// The blocking task running an SQLite call panicked or was cancelled.
    #[error("sqlite: {op}: blocking task failed: {source}")]
    Task {
        op: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
