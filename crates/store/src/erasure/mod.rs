//! What erasure needs of the store: each owner's wrapped data key, and the
//! erasures themselves (delete the rows, recompute what was derived from
//! them, and keep a tombstone so that nothing replayed from the log brings
//! them back). See docs/erasure.md.

mod postgres;
mod sqlite;

use crate::{Error, Result, Store, MAX_ABS_TIME_MS};

/// An owner may keep at most this many erasure tombstones (device or time range). Every node's
/// sinks hold all tombstones in memory to filter what they read from the log, so their number
/// must be bounded; erasing the whole account needs no more.
pub const MAX_ERASURES_PER_OWNER: u64 = 1_000;

/// The owner's rows an account erasure deletes without counting them, one
/// list for both engines: the rollups and settings, and the owner's rights
/// records (docs/erasure.md): pack places and settings, the ledger,
/// consents with their receipts (receipts first: they reference the
/// consents) and the audit log.
pub(crate) const OWNER_TABLES_WITHOUT_COUNTS: [&str; 9] = [
    "rollup_minute",
    "device_minute",
    "activity_settings",
    "pack_participants",
    "pack_settings",
    "pack_ledger",
    "consent_receipts",
    "consents",
    "audit_log",
];

/// An owner's data key as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The id every sealed payload names (`tributary_rights::seal`).
    pub key_id: u64,
    /// The key wrapped by the master key; `None` once the owner was erased (key destroyed).
    pub wrapped: Option<Vec<u8>>,
}

/// What to erase: one owner's data, of one device or all, in `[from_ms, to_ms)` of measurement
/// time (of receive time for dead letters; activity segments overlapping the range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub owner: String,
    pub device: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Erasure {
    /// The whole history of `owner`, every device.
    pub fn everything(owner: &str) -> Erasure {
        Erasure {
            owner: owner.to_owned(),
            device: None,
            from_ms: -MAX_ABS_TIME_MS,
            to_ms: MAX_ABS_TIME_MS + 1,
        }
    }

    /// Whether this erasure covers a measurement of `owner`'s `device` at `time_ms`.
    pub fn covers(&self, owner: &str, device: &str, time_ms: i64) -> bool {
        self.owner == owner
            && self.device.as_deref().is_none_or(|d| d == device)
            && self.from_ms <= time_ms
            && time_ms < self.to_ms
    }

    /// Whether it covers any of `owner`'s `device` in `[start_ms, end_ms)`
    /// (how an activity segment is erased: when it overlaps the range).
    pub fn overlaps(&self, owner: &str, device: &str, start_ms: i64, end_ms: i64) -> bool {
        self.owner == owner
            && self.device.as_deref().is_none_or(|d| d == device)
            && start_ms < self.to_ms
            && self.from_ms < end_ms
    }

    fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidErasure { reason });
        if self.owner.is_empty() || self.owner.contains('\0') {
            return invalid("the owner is empty or holds a NUL character".into());
        }
        if self
            .device
            .as_deref()
            .is_some_and(|d| d.is_empty() || d.contains('\0'))
        {
            return invalid("the device is empty or holds a NUL character".into());
        }
        if self.from_ms >= self.to_ms {
            return invalid(format!(
                "from ({}) must be before to ({})",
                self.from_ms, self.to_ms
            ));
        }
        let bound = MAX_ABS_TIME_MS + 1;
        if self.from_ms < -bound || self.to_ms > bound {
            return invalid(format!("times must be within ±{MAX_ABS_TIME_MS} ms"));
        }
        Ok(())
    }

    /// The first and last minute (start, in ms) holding measurement times of the range, for
    /// recomputing the per-minute tables.
    pub(crate) fn minutes(&self) -> (i64, i64) {
        (
            crate::minute_of(self.from_ms),
            crate::minute_of(self.to_ms - 1),
        )
    }
}

/// A stored erasure, as the sinks read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// Increasing: the sinks read those after the last they have.
    pub id: i64,
    pub erasure: Erasure,
    pub requested_ms: i64,
}

/// What an erasure deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub measurements: u64,
    pub dead_letters: u64,
    pub activity_segments: u64,
    /// Login sessions (whole-account erasure only).
    pub sessions: u64,
}

impl Store {
    /// The owner's data key, if one was ever made.
    pub async fn owner_key(&self, owner: &str) -> Result<Option<StoredKey>> {
        match self {
            Store::Sqlite(s) => s.owner_key(owner.to_owned()).await,
            Store::Postgres(p) => p.owner_key(owner).await,
        }
    }

    /// Stores `key` as the owner's unless the owner has a live key already, and returns the
    /// owner's key: of two nodes creating one at once, both end up with the same. A destroyed
    /// key (an erased owner whose id is used again) is replaced.
    pub async fn create_owner_key(&self, owner: &str, key: &StoredKey) -> Result<StoredKey> {
        let Some(wrapped) = key.wrapped.clone() else {
            return Err(Error::InvalidErasure {
                reason: "a new key must have its wrapped bytes".into(),
            });
        };
        let id = key.key_id as i64; // the bit pattern, read back with `as u64`
        match self {
            Store::Sqlite(s) => s.create_owner_key(owner.to_owned(), id, wrapped).await,
            Store::Postgres(p) => p.create_owner_key(owner, id, wrapped).await,
        }
    }

    /// Erases what `erasure` covers from the store (measurements, the per-minute tables
    /// recomputed for the minutes touched, dead letters, activity segments) and records it as
    /// a tombstone, in one transaction. Refused with [`Error::InvalidErasure`] when the range
    /// is empty or inverted, and with [`Error::TooManyErasures`] past
    /// [`MAX_ERASURES_PER_OWNER`].
    pub async fn erase(&self, erasure: &Erasure) -> Result<Erased> {
        erasure.validate()?;
        match self {
            Store::Sqlite(s) => s.erase(erasure.clone()).await,
            Store::Postgres(p) => p.erase(erasure).await,
        }
    }

    /// Erases the owner: the data key destroyed, every row of theirs deleted (measurements,
    /// rollups, dead letters, activity segments and setting, login sessions), and a tombstone
    /// over all time, in one transaction.
    pub async fn erase_owner(&self, owner: &str) -> Result<Erased> {
        let all = Erasure::everything(owner);
        all.validate()?;
        match self {
            Store::Sqlite(s) => s.erase_owner(all).await,
            Store::Postgres(p) => p.erase_owner(&all).await,
        }
    }

    /// Tombstones with an id above `after`, in id order, at most `limit`.
    pub async fn tombstones(&self, after: i64, limit: usize) -> Result<Vec<Tombstone>> {
        let limit = crate::sql_limit(limit);
        match self {
            Store::Sqlite(s) => s.tombstones(after, limit).await,
            Store::Postgres(p) => p.tombstones(after, limit).await,
        }
    }
}

/// A device column read back: NULL is "every device".
fn tombstone(
    id: i64,
    owner: String,
    device: Option<String>,
    from_ms: i64,
    to_ms: i64,
    requested_ms: i64,
) -> Tombstone {
    Tombstone {
        id,
        erasure: Erasure {
            owner,
            device,
            from_ms,
            to_ms,
        },
        requested_ms,
    }
}

fn stored_key(key_id: i64, wrapped: Option<Vec<u8>>) -> StoredKey {
    StoredKey {
        key_id: key_id as u64,
        wrapped,
    }
}
