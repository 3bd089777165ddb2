//! Erasure on SQLite: each call one IMMEDIATE transaction on the writer connection.

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::{stored_key, tombstone, Erased, Erasure, StoredKey, Tombstone, MAX_ERASURES_PER_OWNER};
use crate::sqlite::{now_ms, Sqlite};
use crate::{Error, Result};

/// The minute of `time_ms` in SQL: SQLite's `%` truncates toward zero, so this floors as
/// `minute_of` does.
const MINUTE: &str = "time_ms - ((time_ms % 60000) + 60000) % 60000";

impl Sqlite {
    pub(crate) async fn owner_key(&self, owner: String) -> Result<Option<StoredKey>> {
        const OP: &str = "read owner key";
        self.read(OP, move |conn| {
            conn.prepare_cached("SELECT key_id, wrapped FROM owner_keys WHERE owner = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row(params![owner], |r| Ok(stored_key(r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(|source| Error::Sqlite { op: OP, source })
        })
        .await
    }

    pub(crate) async fn create_owner_key(
        &self,
        owner: String,
        key_id: i64,
        wrapped: Vec<u8>,
    ) -> Result<StoredKey> {
        self.write("create owner key", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO owner_keys (owner, key_id, wrapped, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (owner) DO UPDATE SET key_id = excluded.key_id,
                    wrapped = excluded.wrapped, created_ms = excluded.created_ms, erased_ms = NULL
                 WHERE owner_keys.wrapped IS NULL",
                params![owner, key_id, wrapped, now_ms()],
            )?;
            let key = tx.query_row(
                "SELECT key_id, wrapped FROM owner_keys WHERE owner = ?1",
                params![owner],
                |r| Ok(stored_key(r.get(0)?, r.get(1)?)),
            )?;
            tx.commit()?;
            Ok(key)
        })
        .await
    }

    pub(crate) async fn erase(&self, e: Erasure) -> Result<Erased> {
        let owner = e.owner.clone();
        let erased = self
            .write("erase", move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let kept: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM erasures WHERE owner = ?1",
                    params![e.owner],
                    |r| r.get(0),
                )?;
                if kept as u64 >= MAX_ERASURES_PER_OWNER {
                    return Ok(None);
                }
                let erased = erase_range(&tx, &e)?;
                tx.commit()?;
                Ok(Some(erased))
            })
            .await?;
        erased.ok_or(Error::TooManyErasures {
            owner,
            max: MAX_ERASURES_PER_OWNER,
        })
    }

    pub(crate) async fn erase_owner(&self, all: Erasure) -> Result<Erased> {
        self.write("erase owner", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            // Destroy the key (or record that there is none to have), then the rows.
            tx.execute(
                "INSERT INTO owner_keys (owner, key_id, wrapped, created_ms, erased_ms)
                 VALUES (?1, 0, NULL, ?2, ?2)
                 ON CONFLICT (owner) DO UPDATE SET wrapped = NULL, erased_ms = excluded.erased_ms",
                params![all.owner, now],
            )?;
            // The owner's earlier tombstones are covered by the one over all time.
            tx.execute("DELETE FROM erasures WHERE owner = ?1", params![all.owner])?;
            insert_tombstone(&tx, &all, now)?;
            let owner = &all.owner;
            let erased = Erased {
                measurements: tx
                    .execute("DELETE FROM measurements WHERE owner = ?1", params![owner])?
                    as u64,
                dead_letters: tx
                    .execute("DELETE FROM dead_letters WHERE owner = ?1", params![owner])?
                    as u64,
                activity_segments: tx.execute(
                    "DELETE FROM activity_segments WHERE owner = ?1",
                    params![owner],
                )? as u64,
                sessions: tx.execute("DELETE FROM api_sessions WHERE owner = ?1", params![owner])?
                    as u64,
            };
            for table in super::OWNER_TABLES_WITHOUT_COUNTS {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE owner = ?1"),
                    params![owner],
                )?;
            }
            tx.commit()?;
            Ok(erased)
        })
        .await
    }

    pub(crate) async fn tombstones(&self, after: i64, limit: i64) -> Result<Vec<Tombstone>> {
        const OP: &str = "read erasures";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, owner, device, from_ms, to_ms, requested_ms FROM erasures
                     WHERE id > ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(|source| Error::Sqlite { op: OP, source })?;
            let rows = stmt
                .query_map(params![after, limit], |r| {
                    Ok(tombstone(
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|source| Error::Sqlite { op: OP, source })?;
            Ok(rows)
        })
        .await
    }
}

fn insert_tombstone(tx: &Transaction<'_>, e: &Erasure, now: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO erasures (owner, device, from_ms, to_ms, requested_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![e.owner, e.device, e.from_ms, e.to_ms, now],
    )?;
    Ok(())
}

/// Deletes the rows of a device or time-range erasure and recomputes the per-minute tables of
/// the minutes it touched from the rows that remain.
fn erase_range(tx: &Transaction<'_>, e: &Erasure) -> rusqlite::Result<Erased> {
    insert_tombstone(tx, e, now_ms())?;
    let (first, last) = e.minutes();
    let args = params![e.owner, e.device, e.from_ms, e.to_ms];
    let measurements = tx.execute(
        "DELETE FROM measurements WHERE owner = ?1 AND (?2 IS NULL OR device = ?2)
           AND time_ms >= ?3 AND time_ms < ?4",
        args,
    )? as u64;
    if measurements > 0 {
        let minutes = params![e.owner, first, last];
        tx.execute(
            "DELETE FROM rollup_minute WHERE owner = ?1 AND minute >= ?2 AND minute <= ?3",
            minutes,
        )?;
        tx.execute(
            &format!(
                "INSERT INTO rollup_minute (owner, name, minute, count, sum, min, max, unit)
                 SELECT owner, name, {MINUTE}, COUNT(*), SUM(value), MIN(value), MAX(value),
                        MAX(unit)
                 FROM measurements
                 WHERE owner = ?1 AND time_ms >= ?2 AND time_ms < ?3 + 60000
                   AND value IS NOT NULL
                 GROUP BY owner, name, {MINUTE}"
            ),
            minutes,
        )?;
        let devices = params![e.owner, e.device, first, last];
        tx.execute(
            "DELETE FROM device_minute WHERE owner = ?1 AND (?2 IS NULL OR device = ?2)
               AND minute >= ?3 AND minute <= ?4",
            devices,
        )?;
        tx.execute(
            &format!(
                "INSERT INTO device_minute (owner, device, minute, messages, last_ms)
                 SELECT owner, device, {MINUTE}, COUNT(DISTINCT message_id), MAX(time_ms)
                 FROM measurements
                 WHERE owner = ?1 AND (?2 IS NULL OR device = ?2)
                   AND time_ms >= ?3 AND time_ms < ?4 + 60000
                 GROUP BY owner, device, {MINUTE}"
            ),
            devices,
        )?;
    }
    let dead_letters = tx.execute(
        "DELETE FROM dead_letters WHERE owner = ?1 AND (?2 IS NULL OR device = ?2)
           AND received_ms >= ?3 AND received_ms < ?4",
        args,
    )? as u64;
    let activity_segments = tx.execute(
        "DELETE FROM activity_segments WHERE owner = ?1 AND (?2 IS NULL OR device = ?2)
           AND start_ms < ?4 AND end_ms > ?3",
        args,
    )? as u64;
    Ok(Erased {
        measurements,
        dead_letters,
        activity_segments,
        sessions: 0,
    })
}
