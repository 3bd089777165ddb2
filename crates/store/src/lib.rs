//! The measurements store: every decoded SenML record, per owner, in SQLite (the embedded
//! default) or PostgreSQL (to scale out), behind one interface.
//!
//! # Overview
//!
//! - [`Store`]: opened from a URL ([`Store::open`]), which also runs the numbered migrations.
//!   [`Store::insert`] is idempotent by `(owner, message_id, seq)`, so the pipeline can
//!   reprocess the log without duplicating anything; [`Store::query`] answers "one owner, a
//!   time range, some names", raw or downsampled into buckets; [`Store::export`] pages through
//!   everything an owner has; [`Store::dead_letter`] keeps what could not be decoded.
//! - [`Row`]: one measurement as stored. [`Query`] and [`Point`]: what is asked and answered.
//! - [`DeadLetter`]: a message the pipeline rejected, with the reason.
//! - [`ActivitySegment`]: what the behaviour model concluded a device was doing, and when;
//!   [`Store::upsert_activity`] writes them, [`Store::activity_timeline`] reads an owner's range,
//!   and [`Store::activity_enabled`] / [`Store::set_activity_enabled`] keep each owner's
//!   switch for the model (on unless switched off).
//! - [`Summary`] and [`DeviceSeen`]: the owner's dashboard at a glance: [`Store::summary`]
//!   gives each numeric measurement name's latest value and count, [`Store::devices_seen`] when
//!   each device last measured and how many messages it sent in the last hour.
//! - [`ApiSession`]: an HTTP API login session, kept by the SHA-256 of its token
//!   ([`TokenHash`]) so that it survives a restart and holds on every node sharing the store:
//!   [`Store::create_session`] (under the per-owner and total [`SessionBounds`]),
//!   [`Store::session`], [`Store::end_session`].
//!
//! Schema, indexes and the per-minute rollup that keeps 30-day queries fast are described in
//! `docs/store.md`; the SQL is in `migrations/<engine>/NNNN_name.sql`.
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! use tributary_store::{Query, Row, Store};
//!
//! let dir = std::env::temp_dir().join(format!("tributary-store-doc-{}", std::process::id()));
//! let store = Store::open(None, &dir).await?; // DATA_DIR/store.sqlite
//! let row = Row {
//!     owner: "alice".into(),
//!     device: "watch".into(),
//!     message_id: "0123456789abcdef0123456789abcdef".into(),
//!     seq: 0,
//!     name: "heart_rate".into(),
//!     unit: Some("beat/min".into()),
//!     time_ms: 1_700_000_000_000,
//!     value: Some(72.0),
//!     text: None,
//!     bool: None,
//!     data: None,
//!     sum: None,
//! };
//! assert_eq!(store.insert(&[row.clone()]).await?, 1);
//! assert_eq!(store.insert(&[row]).await?, 0); // already there
//! let points = store
//!     .query(&Query {
//!         owner: "alice".into(),
//!         from_ms: 1_699_999_980_000,
//!         to_ms: 1_700_000_040_000,
//!         names: vec![],
//!         bucket_ms: Some(60_000),
//!         limit: 100,
//!     })
//!     .await?;
//! assert_eq!((points[0].avg, points[0].count), (Some(72.0), 1));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # })
//! # }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

pub mod erasure;
mod error;
mod packs;
pub mod postgres;
mod rights;
mod sessions;
pub mod sqlite;

pub use error::{Error, Result};
pub use packs::{
    Budget, LedgerEntry, Pack, PackRelease, PackSettings, Participation, Recorded,
    DEFAULT_BUDGET_CEILING,
};
pub use rights::{
    AuditRecord, Consent, ConsentReceipt, DecisionRecord, MAX_PENDING_PER_SERVICE,
    RECEIPT_SIGNING_SECRET,
};
pub use sessions::{
    ApiSession, NewSession, SessionBounds, TokenHash, PURGE_BATCH, SESSION_TOUCH_MS,
};

/// The engine names, as [`Store::engine`] returns them and errors print them.
pub const SQLITE: &str = "sqlite";
/// See [`SQLITE`].
pub const POSTGRES: &str = "postgres";

/// The file [`Store::open`] uses when no URL (or plain `"sqlite"`) is given.
pub const DEFAULT_SQLITE_FILE: &str = "store.sqlite";

/// Milliseconds in the rollup's bucket: bucketed queries whose `bucket_ms` is a multiple of
/// this are answered from the per-minute rollup.
pub const MINUTE_MS: i64 = 60_000;

/// Rows must have `|time_ms| <=` this (about 36 million years), and buckets be no wider: it keeps
/// every bucket computation inside `i64` on both engines.
pub const MAX_ABS_TIME_MS: i64 = 1 << 60;

/// [`Store::summary`] returns at most this many names (the first in byte order): each costs an
/// index lookup of its latest row, and a dashboard has no use for more. An owner with more
/// names gets exactly this many entries back.
pub const SUMMARY_MAX_NAMES: usize = 1_000;

/// "The last hour" of [`Store::devices_seen`], in milliseconds.
const HOUR_MS: i64 = 3_600_000;

/// One measurement: one SenML record of one message, resolved (absolute time, full name).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The authenticated owner: every query is scoped to one.
    pub owner: String,
    /// The authenticated device that published the message.
    pub device: String,
    /// The log message this record came from (32 hex digits); with `seq`, the idempotency key.
    pub message_id: String,
    /// The record's position in its message.
    pub seq: u32,
    /// The resolved SenML name (base name + name).
    pub name: String,
    /// The SenML unit, if any.
    pub unit: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// A numeric value (must be finite): the only kind that is downsampled.
    pub value: Option<f64>,
    /// A string value (SenML `vs`).
    pub text: Option<String>,
    /// A boolean value (SenML `vb`).
    pub bool: Option<bool>,
    /// A data value (SenML `vd`, decoded).
    pub data: Option<Vec<u8>>,
    /// The SenML sum (`s`), kept as given (must be finite).
    pub sum: Option<f64>,
}

/// A message the pipeline could not turn into measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The authenticated owner, who may list their dead letters.
    pub owner: String,
    /// The authenticated device that published it.
    pub device: String,
    /// The log message id: a dead letter is stored once per `(owner, message_id)`.
    pub message_id: String,
    /// The MQTT topic it was published on.
    pub topic: String,
    /// When the broker received it, in milliseconds since the Unix epoch.
    pub received_ms: i64,
    /// Why it was rejected, for a person to read.
    pub reason: String,
    /// The payload as received.
    pub payload: Vec<u8>,
}

/// A dead letter as listed: its payload cut to the first bytes asked for,
/// so that listing many large ones never loads them whole.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedDeadLetter {
    /// The dead letter, `payload` holding at most the bytes asked for.
    pub letter: DeadLetter,
    /// The length of the whole payload as stored.
    pub payload_bytes: u64,
}

/// One stretch of time with one activity of one device, as the behaviour model wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivitySegment {
    /// The authenticated owner of the device's data: every read is scoped to one.
    pub owner: String,
    /// The device whose motion was classified.
    pub device: String,
    /// Start, inclusive, in milliseconds since the Unix epoch; with owner and device, the key.
    pub start_ms: i64,
    /// End, exclusive; must be after `start_ms`.
    pub end_ms: i64,
    /// The activity's name (`walking`, `sitting`, …), as the model names it.
    pub activity: String,
    /// How sure the model is, in `[0, 1]`.
    pub confidence: f64,
    /// How many classified windows the segment is made of.
    pub windows: u32,
    /// Which model wrote it.
    pub model_version: String,
}

/// What [`Store::query`] is asked: one owner, a time range, some names.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Only this owner's measurements are considered.
    pub owner: String,
    /// Start of the range, inclusive, in milliseconds since the Unix epoch.
    pub from_ms: i64,
    /// End of the range, exclusive.
    pub to_ms: i64,
    /// The names to return; empty means all.
    pub names: Vec<String>,
    /// `Some`: downsample numeric values into buckets of this width, aligned to multiples of it
    /// since the epoch. `None`: one point per row.
    pub bucket_ms: Option<i64>,
    /// At most this many points, the first ones in (name, time) order.
    pub limit: usize,
}

/// One answer of [`Store::query`]: a bucket of one name, or one raw row.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The measurement name.
    pub name: String,
    /// The unit (in a bucket: the greatest one in byte order, should a name have several).
    pub unit: Option<String>,
    /// The row's time, or the bucket's start.
    pub time_ms: i64,
    /// Average of the numeric values (raw: the value).
    pub avg: Option<f64>,
    /// Smallest numeric value (raw: the value).
    pub min: Option<f64>,
    /// Greatest numeric value (raw: the value).
    pub max: Option<f64>,
    /// How many numeric values the bucket holds (raw: 1).
    pub count: u64,
    /// Raw only: the device that measured it.
    pub device: Option<String>,
    /// Raw only: a string value.
    pub text: Option<String>,
    /// Raw only: a boolean value.
    pub bool: Option<bool>,
    /// Raw only: a data value.
    pub data: Option<Vec<u8>>,
}

/// One measurement name of an owner, as [`Store::summary`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The measurement name (one that has numeric values).
    pub name: String,
    /// The latest row's unit.
    pub unit: Option<String>,
    /// The latest row's numeric value; `None` when that row holds text, a boolean or data.
    pub latest_value: Option<f64>,
    /// The latest row's time: the greatest `time_ms` of the name (at equal times, the row with
    /// the greatest `(message_id, seq)` is the latest).
    pub latest_time_ms: i64,
    /// The device that measured the latest row.
    pub device: String,
    /// How many numeric values the name has, over all time.
    pub count: u64,
}

/// One device of an owner, as [`Store::devices_seen`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSeen {
    /// The device.
    pub device: String,
    /// When it was last seen: the time of its latest measurement, by measurement time
    /// (`time_ms`), not by when the message was received.
    pub last_ms: i64,
    /// Messages with measurements in the last hour before `now_ms`, by measurement time as
    /// `last_ms` (whole minutes: [`Store::devices_seen`] says which).
    pub messages_last_hour: u64,
}

/// The measurements store on one of its engines.
///
/// Cheap to share behind an `Arc`; every method takes `&self` and may be called concurrently.
pub enum Store {
    /// The embedded default: one SQLite file in WAL mode.
    Sqlite(sqlite::Sqlite),
    /// A PostgreSQL database, shared by several Tributary processes.
    Postgres(postgres::Postgres),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Store").field(&self.engine()).finish()
    }
}

impl Store {
    /// `url`: None or "sqlite" -> DATA_DIR/store.sqlite (WAL); "sqlite:///abs/path.db" (a
    /// relative path is taken relative to `data_dir`); "postgres://user@host:port/db" (or
    /// "postgresql://", any parameter tokio-postgres accepts; no TLS).
    ///
    /// Runs the numbered migrations (tracked in a schema_migrations table) before returning.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Store> {
        match parse_url(url, data_dir)? {
            Target::Sqlite(path) => Ok(Store::Sqlite(sqlite::Sqlite::open(path).await?)),
            Target::Postgres(url) => Ok(Store::Postgres(postgres::Postgres::open(&url).await?)),
        }
    }

    /// Inserts measurements; idempotent: a row whose (owner, message_id, seq) exists is skipped
    /// (reprocessing the log never duplicates). Returns how many were new.
    ///
    /// All rows go in one transaction, together with the rollup of the new ones. A row with a
    /// non-finite value or sum, a NUL character in a text field, or `|time_ms|` above
    /// [`MAX_ABS_TIME_MS`] fails the whole call with [`Error::InvalidRow`] before anything is
    /// written.
    pub async fn insert(&self, rows: &[Row]) -> Result<usize> {
        validate_rows(rows)?;
        if rows.is_empty() {
            return Ok(0);
        }
        match self {
            Store::Sqlite(s) => s.insert(rows.to_vec()).await,
            Store::Postgres(p) => p.insert(rows).await,
        }
    }

    /// Idempotent by (owner, message_id): the first letter stored for a message is kept.
    pub async fn dead_letter(&self, letter: &DeadLetter) -> Result<()> {
        validate_dead_letter(letter)?;
        match self {
            Store::Sqlite(s) => s.dead_letter(letter.clone()).await,
            Store::Postgres(p) => p.dead_letter(letter).await,
        }
    }

    /// Downsampled (bucket_ms Some: one Point per name and bucket with avg/min/max/count of numeric
    /// values, buckets aligned to multiples of bucket_ms since the epoch) or raw (bucket_ms None: one Point per
    /// row, avg=min=max=value, count 1; non-numeric rows carry their value in `text`/`bool`/`data`).
    ///
    /// Points come in (name, time) order, names compared byte by byte; raw rows at the same
    /// time are ordered by (message_id, seq). Buckets hold numeric values only: a bucket with
    /// none is not returned. When `bucket_ms` is a multiple of [`MINUTE_MS`], the whole minutes
    /// of the range are read from the rollup and only a partial minute at either end from the
    /// rows. `bucket_ms` must be in `1..=`[`MAX_ABS_TIME_MS`].
    pub async fn query(&self, q: &Query) -> Result<Vec<Point>> {
        let Some(plan) = Plan::new(q)? else {
            return Ok(Vec::new());
        };
        match (self, plan) {
            (Store::Sqlite(s), Plan::Raw { from_ms, to_ms }) => {
                s.raw(q.clone(), from_ms, to_ms).await
            }
            (Store::Postgres(p), Plan::Raw { from_ms, to_ms }) => p.raw(q, from_ms, to_ms).await,
            (Store::Sqlite(s), Plan::Buckets { bucket_ms, spans }) => {
                let parts = s.buckets(q.clone(), bucket_ms, spans).await?;
                Ok(merge_buckets(parts, q.limit))
            }
            (Store::Postgres(p), Plan::Buckets { bucket_ms, spans }) => {
                let parts = p.buckets(q, bucket_ms, &spans).await?;
                Ok(merge_buckets(parts, q.limit))
            }
        }
    }

    /// An owner's dead letters, newest first (by `received_ms`, then
    /// `message_id`), at most `limit`, each payload cut to its first
    /// `payload_prefix` bytes by the database (`usize::MAX`: whole).
    pub async fn dead_letters(
        &self,
        owner: &str,
        limit: usize,
        payload_prefix: usize,
    ) -> Result<Vec<ListedDeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        match self {
            Store::Sqlite(s) => {
                s.dead_letters(owner.to_owned(), limit, payload_prefix)
                    .await
            }
            Store::Postgres(p) => p.dead_letters(owner, limit, payload_prefix).await,
        }
    }

    /// Every measurement of an owner in time order (for export), paged.
    ///
    /// Rows come ordered by `(time_ms, message_id, seq)`; `after` is the last row of the previous
    /// page as `(time_ms, message_id, seq)` (exclusive), `None` for the first page. A page shorter
    /// than `limit` is the last one.
    pub async fn export(
        &self,
        owner: &str,
        after: Option<(i64, String, u32)>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        match self {
            Store::Sqlite(s) => s.export(owner.to_owned(), after, limit).await,
            Store::Postgres(p) => p.export(owner, after, limit).await,
        }
    }

    /// Inserts or replaces segments by (owner, device, start_ms), all in one transaction (the
    /// model extends a segment as windows arrive: the same key comes again with a later end).
    ///
    /// When one key is in `segments` more than once, the last one is stored. A segment whose
    /// `end_ms` is not after `start_ms`, with a time beyond ±[`MAX_ABS_TIME_MS`], a confidence
    /// that is not a finite number in `[0, 1]`, or a NUL character in a text field fails the
    /// whole call with [`Error::InvalidActivity`] before anything is written.
    pub async fn upsert_activity(&self, segments: &[ActivitySegment]) -> Result<()> {
        validate_segments(segments)?;
        let segments = last_per_key(segments);
        if segments.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite(s) => s.upsert_activity(segments).await,
            Store::Postgres(p) => p.upsert_activity(&segments).await,
        }
    }

    /// An owner's segments overlapping `[from_ms, to_ms)` (`start_ms < to_ms AND end_ms >
    /// from_ms`), ordered by (start_ms, device), at most `limit`.
    ///
    /// Segments are returned whole, not clipped to the range; devices are compared byte by
    /// byte. The scan reads the owner's segments that end after `from_ms` (docs/store.md says
    /// why), so it is cheap for recent ranges.
    pub async fn activity_timeline(
        &self,
        owner: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<ActivitySegment>> {
        if from_ms >= to_ms || limit == 0 {
            return Ok(Vec::new());
        }
        match self {
            Store::Sqlite(s) => {
                s.activity_timeline(owner.to_owned(), from_ms, to_ms, limit)
                    .await
            }
            Store::Postgres(p) => p.activity_timeline(owner, from_ms, to_ms, limit).await,
        }
    }

    /// Whether the model may classify this owner's data (true unless the owner switched it off).
    pub async fn activity_enabled(&self, owner: &str) -> Result<bool> {
        match self {
            Store::Sqlite(s) => s.activity_enabled(owner.to_owned()).await,
            Store::Postgres(p) => p.activity_enabled(owner).await,
        }
    }

    /// Switches the model on or off for an owner. Off stops new segments from being written for
    /// the owner (the pipeline asks [`Store::activity_disabled_owners`]); the segments already
    /// stored stay.
    pub async fn set_activity_enabled(&self, owner: &str, enabled: bool) -> Result<()> {
        if owner.contains('\0') {
            return Err(Error::InvalidActivity {
                owner: owner.to_owned(),
                what: "setting".to_owned(),
                reason: "owner contains a NUL character".to_owned(),
            });
        }
        match self {
            Store::Sqlite(s) => s.set_activity_enabled(owner.to_owned(), enabled).await,
            Store::Postgres(p) => p.set_activity_enabled(owner, enabled).await,
        }
    }

    /// The owners who switched the model off (the pipeline refreshes this set every second or
    /// so: one small read of the owners who ever changed the setting).
    pub async fn activity_disabled_owners(&self) -> Result<HashSet<String>> {
        match self {
            Store::Sqlite(s) => s.activity_disabled_owners().await,
            Store::Postgres(p) => p.activity_disabled_owners().await,
        }
    }

    /// One entry per measurement name of the owner that has numeric values (the names in the
    /// rollup), sorted by name in byte order, at most [`SUMMARY_MAX_NAMES`] of them (the first).
    ///
    /// `count` is the number of numeric values (the sum of the name's rollup counts: a read of
    /// its rollup rows, one per minute with values). The latest row is the name's row with the
    /// greatest `time_ms`, ties broken by the greatest `(message_id, seq)`, of any kind: when it
    /// holds text, a boolean or data, `latest_value` is `None`. It is read through the
    /// `(owner, name, time_ms)` index from its end, one lookup per name, never a scan of the
    /// owner's rows. Counts and latest rows come from one snapshot of the store.
    pub async fn summary(&self, owner: &str) -> Result<Vec<Summary>> {
        match self {
            Store::Sqlite(s) => s.summary(owner.to_owned(), SUMMARY_MAX_NAMES).await,
            Store::Postgres(p) => p.summary(owner, SUMMARY_MAX_NAMES).await,
        }
    }

    /// One entry per device of the owner that has measurements, sorted by device in byte order:
    /// when it was last seen (the time of its latest measurement, by measurement time) and how
    /// many messages it sent in the last hour before `now_ms`.
    ///
    /// Read from `device_minute`, which each insert keeps for its new rows. "The last hour" is
    /// the minutes starting at `m` with `now_ms - 1 h <= m < now_ms + 1 min`: whole minutes,
    /// always including the one holding `now_ms`; when `now_ms` is inside a minute, the minute
    /// holding `now_ms - 1 h` is out and the minute after `now_ms`'s is in (a device clock a
    /// little ahead). A message is counted once per minute it has rows in, and once per insert
    /// call that stored rows of it. Three index lookups per device, whatever the length of its
    /// history.
    pub async fn devices_seen(&self, owner: &str, now_ms: i64) -> Result<Vec<DeviceSeen>> {
        let from_minute = now_ms.saturating_sub(HOUR_MS);
        let to_minute = now_ms.saturating_add(MINUTE_MS);
        match self {
            Store::Sqlite(s) => {
                s.devices_seen(owner.to_owned(), from_minute, to_minute)
                    .await
            }
            Store::Postgres(p) => p.devices_seen(owner, from_minute, to_minute).await,
        }
    }

    /// Number of measurement rows and an order-independent checksum over all their fields (tests
    /// compare it before and after reprocessing).
    ///
    /// Reads every row (of every owner): meant for tests and checks, not for a hot path. The
    /// checksum is the wrapping sum of a 64-bit hash of each row's fields, so it is the same on
    /// both engines for the same rows.
    pub async fn count_and_checksum(&self) -> Result<(u64, u64)> {
        match self {
            Store::Sqlite(s) => s.count_and_checksum().await,
            Store::Postgres(p) => p.count_and_checksum().await,
        }
    }

    /// "sqlite" | "postgres"
    pub fn engine(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => SQLITE,
            Store::Postgres(_) => POSTGRES,
        }
    }
}

/// One numbered migration of one engine, embedded in the binary.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    /// Those of `all` (in version order) a schema at version `current`
    /// still needs, each announced in the log; a schema newer than this
    /// binary knows is an error (an older binary must not write to it).
    pub(crate) fn pending(
        all: &'static [Migration],
        current: i64,
        engine: &'static str,
    ) -> Result<&'static [Migration]> {
        let known = all.last().map_or(0, |m| m.version);
        if current > known {
            return Err(Error::SchemaTooNew {
                engine,
                found: current,
                known,
            });
        }
        let pending = &all[all.partition_point(|m| m.version <= current)..];
        for m in pending {
            tracing::info!(
                version = m.version,
                name = m.name,
                engine,
                "store: migrating"
            );
        }
        Ok(pending)
    }
}

enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

fn parse_url(url: Option<&str>, data_dir: &Path) -> Result<Target> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.unwrap_or_default().to_owned(),
        reason: reason.to_owned(),
    };
    match url {
        None | Some("sqlite") => Ok(Target::Sqlite(data_dir.join(DEFAULT_SQLITE_FILE))),
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Ok(Target::Postgres(u.to_owned()))
        }
        Some(u) => match u.strip_prefix("sqlite://") {
            Some("") => Err(invalid("no file path after sqlite://")),
            Some(path) => Ok(Target::Sqlite(data_dir.join(path))),
            None => Err(invalid(
                "expected \"sqlite\", sqlite:///path/to/file.db or postgres://user@host:port/db",
            )),
        },
    }
}

fn validate_rows(rows: &[Row]) -> Result<()> {
    for row in rows {
        let invalid = |reason: &str| Error::InvalidRow {
            owner: row.owner.clone(),
            message_id: row.message_id.clone(),
            seq: row.seq,
            reason: reason.to_owned(),
        };
        if row.time_ms.unsigned_abs() > MAX_ABS_TIME_MS.unsigned_abs() {
            return Err(invalid("time_ms out of range"));
        }
        if row.value.is_some_and(|v| !v.is_finite()) {
            return Err(invalid("value is not a finite number"));
        }
        if row.sum.is_some_and(|v| !v.is_finite()) {
            return Err(invalid("sum is not a finite number"));
        }
        // PostgreSQL text cannot hold NUL; refusing it on both engines keeps them alike.
        let texts = [&row.owner, &row.device, &row.message_id, &row.name];
        if texts.iter().any(|t| t.contains('\0'))
            || row.unit.as_deref().is_some_and(|t| t.contains('\0'))
            || row.text.as_deref().is_some_and(|t| t.contains('\0'))
        {
            return Err(invalid("text contains a NUL character"));
        }
    }
    Ok(())
}

fn validate_dead_letter(l: &DeadLetter) -> Result<()> {
    let texts = [&l.owner, &l.device, &l.message_id, &l.topic, &l.reason];
    if texts.iter().any(|t| t.contains('\0')) {
        return Err(Error::InvalidDeadLetter {
            owner: l.owner.clone(),
            message_id: l.message_id.clone(),
            reason: "text contains a NUL character".to_owned(),
        });
    }
    Ok(())
}

fn validate_segments(segments: &[ActivitySegment]) -> Result<()> {
    for s in segments {
        let invalid = |reason: &str| Error::InvalidActivity {
            owner: s.owner.clone(),
            what: format!("segment of device {:?} at {}", s.device, s.start_ms),
            reason: reason.to_owned(),
        };
        let limit = MAX_ABS_TIME_MS.unsigned_abs();
        if s.start_ms.unsigned_abs() > limit || s.end_ms.unsigned_abs() > limit {
            return Err(invalid("time out of range"));
        }
        if s.end_ms <= s.start_ms {
            return Err(invalid("end_ms is not after start_ms"));
        }
        // A NaN fails the range check too.
        if !(0.0..=1.0).contains(&s.confidence) {
            return Err(invalid("confidence is not a number in [0, 1]"));
        }
        let texts = [&s.owner, &s.device, &s.activity, &s.model_version];
        if texts.iter().any(|t| t.contains('\0')) {
            return Err(invalid("text contains a NUL character"));
        }
    }
    Ok(())
}

/// The last segment of each key, in key order: PostgreSQL's `ON CONFLICT DO UPDATE` may not
/// touch a row twice in one statement, and every writer then locks rows in one order (no
/// deadlocks).
fn last_per_key(segments: &[ActivitySegment]) -> Vec<ActivitySegment> {
    let mut by_key = BTreeMap::new();
    for s in segments {
        by_key.insert((s.owner.as_str(), s.device.as_str(), s.start_ms), s);
    }
    by_key.into_values().cloned().collect()
}

/// The start of the minute holding `time_ms` (validated rows cannot overflow).
pub(crate) fn minute_of(time_ms: i64) -> i64 {
    time_ms - time_ms.rem_euclid(MINUTE_MS)
}

/// Where one part of a bucketed query reads from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Source {
    /// `rollup_minute`, minutes in `[from_ms, to_ms)`.
    Rollup,
    /// `measurements`, times in `[from_ms, to_ms)`.
    Rows,
}

/// One part of a bucketed query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Span {
    pub source: Source,
    pub from_ms: i64,
    pub to_ms: i64,
}

enum Plan {
    Raw { from_ms: i64, to_ms: i64 },
    Buckets { bucket_ms: i64, spans: Vec<Span> },
}

impl Plan {
    /// `None`: the answer is empty without asking the engine.
    fn new(q: &Query) -> Result<Option<Plan>> {
        // No row lies outside ±MAX_ABS_TIME_MS, so clamping changes no answer and keeps the
        // arithmetic below (and the engines') inside i64.
        let from_ms = q.from_ms.max(-MAX_ABS_TIME_MS);
        let to_ms = q.to_ms.min(MAX_ABS_TIME_MS + 1);
        if let Some(b) = q.bucket_ms {
            if !(1..=MAX_ABS_TIME_MS).contains(&b) {
                return Err(Error::InvalidQuery {
                    reason: format!("bucket_ms {b} is not in 1..={MAX_ABS_TIME_MS}"),
                });
            }
        }
        if from_ms >= to_ms || q.limit == 0 {
            return Ok(None);
        }
        let Some(bucket_ms) = q.bucket_ms else {
            return Ok(Some(Plan::Raw { from_ms, to_ms }));
        };
        let rows = |from_ms, to_ms| Span {
            source: Source::Rows,
            from_ms,
            to_ms,
        };
        if bucket_ms % MINUTE_MS != 0 {
            return Ok(Some(Plan::Buckets {
                bucket_ms,
                spans: vec![rows(from_ms, to_ms)],
            }));
        }
        // Whole minutes from the rollup; the partial minute at either end from the rows. Every
        // minute lies inside one bucket, so the parts add up bucket by bucket.
        let first_whole = minute_of(from_ms + MINUTE_MS - 1);
        let end_whole = minute_of(to_ms);
        if first_whole >= end_whole {
            return Ok(Some(Plan::Buckets {
                bucket_ms,
                spans: vec![rows(from_ms, to_ms)],
            }));
        }
        let mut spans = vec![Span {
            source: Source::Rollup,
            from_ms: first_whole,
            to_ms: end_whole,
        }];
        if from_ms < first_whole {
            spans.push(rows(from_ms, first_whole));
        }
        if end_whole < to_ms {
            spans.push(rows(end_whole, to_ms));
        }
        Ok(Some(Plan::Buckets { bucket_ms, spans }))
    }
}

/// Numeric values of one name in one bucket (or one minute), before they become a [`Point`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Agg {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub unit: Option<String>,
}

impl Agg {
    pub fn one(value: f64, unit: Option<&str>) -> Agg {
        Agg {
            count: 1,
            sum: value,
            min: value,
            max: value,
            unit: unit.map(str::to_owned),
        }
    }

    pub fn add(&mut self, other: Agg) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        // The greatest unit in byte order, as SQL's MAX/GREATEST over "C"-collated text.
        self.unit = self.unit.take().max(other.unit);
    }
}

/// The rollup rows that new measurements add to, keyed by (owner, name, minute) in the order
/// the engines update them (one order for every writer: no deadlocks on PostgreSQL).
pub(crate) type RollupDelta = BTreeMap<(String, String, i64), Agg>;

/// What an insert's new rows of one (owner, device, minute) add to `device_minute`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeviceMinute {
    /// The distinct message ids: their number is added to `messages`.
    pub message_ids: HashSet<String>,
    /// The greatest `time_ms`.
    pub last_ms: i64,
}

/// The `device_minute` rows that new measurements add to, keyed by (owner, device, minute) in
/// the order the engines update them (one order for every writer, as the rollup's).
pub(crate) type DeviceDelta = BTreeMap<(String, String, i64), DeviceMinute>;

/// Everything an insert derives from the rows that were really new, written in its transaction:
/// both engines pass exactly those rows to [`NewRows::add`], so a row already stored changes
/// neither table.
#[derive(Debug, Default)]
pub(crate) struct NewRows {
    pub rollup: RollupDelta,
    pub devices: DeviceDelta,
}

impl NewRows {
    pub fn add(&mut self, row: &Row) {
        let minute = minute_of(row.time_ms);
        let seen = self
            .devices
            .entry((row.owner.clone(), row.device.clone(), minute))
            .or_insert_with(|| DeviceMinute {
                message_ids: HashSet::new(),
                last_ms: row.time_ms,
            });
        if !seen.message_ids.contains(&row.message_id) {
            seen.message_ids.insert(row.message_id.clone());
        }
        seen.last_ms = seen.last_ms.max(row.time_ms);

        let Some(value) = row.value else { return };
        let one = Agg::one(value, row.unit.as_deref());
        match self
            .rollup
            .entry((row.owner.clone(), row.name.clone(), minute))
        {
            std::collections::btree_map::Entry::Occupied(mut agg) => agg.get_mut().add(one),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(one);
            }
        }
    }
}

/// A count the database summed, as a `u64` (negative only if something else wrote the table).
pub(crate) fn stored_count(engine: &'static str, op: &'static str, count: i64) -> Result<u64> {
    u64::try_from(count).map_err(|_| Error::Corrupt {
        engine,
        op,
        what: format!("negative count {count}"),
    })
}

/// Each part is `(name, bucket start, aggregate)` in (name, bucket) order, at most `limit` long.
/// Since every part is sorted and cut at `limit`, the first `limit` keys of the union are all
/// in the parts.
fn merge_buckets(mut parts: Vec<Vec<(String, i64, Agg)>>, limit: usize) -> Vec<Point> {
    let merged: Vec<((String, i64), Agg)> = if parts.len() == 1 {
        // The common case (an aligned range): already sorted, nothing to add up.
        parts
            .pop()
            .unwrap_or_default()
            .into_iter()
            .map(|(name, bucket, agg)| ((name, bucket), agg))
            .collect()
    } else {
        let mut merged: BTreeMap<(String, i64), Agg> = BTreeMap::new();
        for (name, bucket, agg) in parts.into_iter().flatten() {
            match merged.entry((name, bucket)) {
                std::collections::btree_map::Entry::Occupied(mut a) => a.get_mut().add(agg),
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(agg);
                }
            }
        }
        merged.into_iter().collect()
    };
    merged
        .into_iter()
        .filter(|(_, agg)| agg.count > 0)
        .take(limit)
        .map(|((name, time_ms), agg)| Point {
            name,
            unit: agg.unit,
            time_ms,
            avg: Some(agg.sum / agg.count as f64),
            min: Some(agg.min),
            max: Some(agg.max),
            count: agg.count,
            device: None,
            text: None,
            bool: None,
            data: None,
        })
        .collect()
}

pub(crate) fn raw_point(row: Row) -> Point {
    Point {
        name: row.name,
        unit: row.unit,
        time_ms: row.time_ms,
        avg: row.value,
        min: row.value,
        max: row.value,
        count: 1,
        device: Some(row.device),
        text: row.text,
        bool: row.bool,
        data: row.data,
    }
}

/// A stable 64-bit hash of every field of a row (FNV-1a over a length-prefixed encoding, then
/// a final mix so that summing hashes spreads well). Not `std`'s hasher: that may change between
/// Rust releases, and checksums are compared across processes.
pub(crate) fn row_hash(row: &Row) -> u64 {
    struct Fnv(u64);
    impl Fnv {
        fn bytes(&mut self, b: &[u8]) {
            for &x in (b.len() as u64).to_le_bytes().iter().chain(b) {
                self.0 ^= u64::from(x);
                self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        fn opt(&mut self, b: Option<&[u8]>) {
            match b {
                None => self.bytes(&[0]),
                Some(b) => {
                    self.bytes(&[1]);
                    self.bytes(b);
                }
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.bytes(row.owner.as_bytes());
    h.bytes(row.device.as_bytes());
    h.bytes(row.message_id.as_bytes());
    h.bytes(&row.seq.to_le_bytes());
    h.bytes(row.name.as_bytes());
    h.opt(row.unit.as_deref().map(str::as_bytes));
    h.bytes(&row.time_ms.to_le_bytes());
    h.opt(
        row.value
            .map(|v| v.to_bits().to_le_bytes())
            .as_ref()
            .map(|b| &b[..]),
    );
    h.opt(row.text.as_deref().map(str::as_bytes));
    h.opt(row.bool.map(|b| [u8::from(b)]).as_ref().map(|b| &b[..]));
    h.opt(row.data.as_deref());
    h.opt(
        row.sum
            .map(|v| v.to_bits().to_le_bytes())
            .as_ref()
            .map(|b| &b[..]),
    );
    // splitmix64 finaliser
    let mut z = h.0;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `limit` as an SQL LIMIT.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
