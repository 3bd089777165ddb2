//! Erasure on PostgreSQL: each call one transaction. Erasures of one owner are serialised by
//! locking the owner's key row (or an advisory lock when there is none), so two nodes erasing
//! at once cannot pass the per-owner bound together.

use tokio_postgres::Transaction;

use super::{stored_key, tombstone, Erased, Erasure, StoredKey, Tombstone, MAX_ERASURES_PER_OWNER};
use crate::postgres::{err, pool_err, Postgres};
use crate::sqlite::now_ms;
use crate::{Error, Result};

/// The minute of `time_ms` in SQL: `%` truncates toward zero, so this floors as `minute_of`.
const MINUTE: &str = "time_ms - ((time_ms % 60000) + 60000) % 60000";

/// With `hashtext(owner)`, the two-key advisory lock that serialises one owner's erasures on
/// every node ("eras" in ASCII).
const ERASE_LOCK: i32 = 0x6572_6173;

impl Postgres {
    pub(crate) async fn owner_key(&self, owner: &str) -> Result<Option<StoredKey>> {
        const OP: &str = "read owner key";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached("SELECT key_id, wrapped FROM owner_keys WHERE owner = $1")
            .await
            .map_err(err(OP))?;
        let row = client.query_opt(&stmt, &[&owner]).await.map_err(err(OP))?;
        Ok(row.map(|r| stored_key(r.get(0), r.get(1))))
    }

    pub(crate) async fn create_owner_key(
        &self,
        owner: &str,
        key_id: i64,
        wrapped: Vec<u8>,
    ) -> Result<StoredKey> {
        const OP: &str = "create owner key";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        // One statement: the insert wins, or the row already there is returned (a live key is
        // never replaced; a destroyed one is).
        let row = client
            .query_opt(
                "INSERT INTO owner_keys (owner, key_id, wrapped, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (owner) DO UPDATE SET key_id = EXCLUDED.key_id,
                    wrapped = EXCLUDED.wrapped, created_ms = EXCLUDED.created_ms, erased_ms = NULL
                 WHERE owner_keys.wrapped IS NULL
                 RETURNING key_id, wrapped",
                &[&owner, &key_id, &wrapped, &now_ms()],
            )
            .await
            .map_err(err(OP))?;
        match row {
            Some(r) => Ok(stored_key(r.get(0), r.get(1))),
            // No row returned: a live key was there, and stays; read it.
            None => self.owner_key(owner).await?.ok_or_else(|| Error::Corrupt {
                engine: crate::POSTGRES,
                op: OP,
                what: format!("no key for owner {owner:?} after creating one"),
            }),
        }
    }

    pub(crate) async fn erase(&self, e: &Erasure) -> Result<Erased> {
        const OP: &str = "erase";
        let mut client = self.pool.get().await.map_err(pool_err(OP))?;
        let tx = client.transaction().await.map_err(err(OP))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&ERASE_LOCK, &e.owner],
        )
        .await
        .map_err(err(OP))?;
        let kept: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM erasures WHERE owner = $1",
                &[&e.owner],
            )
            .await
            .map_err(err(OP))?
            .get(0);
        if kept as u64 >= MAX_ERASURES_PER_OWNER {
            return Err(Error::TooManyErasures {
                owner: e.owner.clone(),
                max: MAX_ERASURES_PER_OWNER,
            });
        }
        let erased = erase_range(&tx, e).await.map_err(err(OP))?;
        tx.commit().await.map_err(err(OP))?;
        Ok(erased)
    }

    pub(crate) async fn erase_owner(&self, all: &Erasure) -> Result<Erased> {
        const OP: &str = "erase owner";
        let mut client = self.pool.get().await.map_err(pool_err(OP))?;
        let tx = client.transaction().await.map_err(err(OP))?;
        let owner = &all.owner;
        let now = now_ms();
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&ERASE_LOCK, owner],
        )
        .await
        .map_err(err(OP))?;
        tx.execute(
            "INSERT INTO owner_keys (owner, key_id, wrapped, created_ms, erased_ms)
             VALUES ($1, 0, NULL, $2, $2)
             ON CONFLICT (owner) DO UPDATE SET wrapped = NULL, erased_ms = EXCLUDED.erased_ms",
            &[owner, &now],
        )
        .await
        .map_err(err(OP))?;
        tx.execute("DELETE FROM erasures WHERE owner = $1", &[owner])
            .await
            .map_err(err(OP))?;
        insert_tombstone(&tx, all, now).await.map_err(err(OP))?;
        let mut deleted = [0u64; 4];
        for (i, table) in [
            "measurements",
            "dead_letters",
            "activity_segments",
            "api_sessions",
        ]
        .iter()
        .enumerate()
        {
            deleted[i] = tx
                .execute(&format!("DELETE FROM {table} WHERE owner = $1"), &[owner])
                .await
                .map_err(err(OP))?;
        }
        for table in super::OWNER_TABLES_WITHOUT_COUNTS {
            tx.execute(&format!("DELETE FROM {table} WHERE owner = $1"), &[owner])
                .await
                .map_err(err(OP))?;
        }
        tx.commit().await.map_err(err(OP))?;
        Ok(Erased {
            measurements: deleted[0],
            dead_letters: deleted[1],
            activity_segments: deleted[2],
            sessions: deleted[3],
        })
    }

    pub(crate) async fn tombstones(&self, after: i64, limit: i64) -> Result<Vec<Tombstone>> {
        const OP: &str = "read erasures";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached(
                "SELECT id, owner, device, from_ms, to_ms, requested_ms FROM erasures
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .await
            .map_err(err(OP))?;
        let rows = client
            .query(&stmt, &[&after, &limit])
            .await
            .map_err(err(OP))?;
        Ok(rows
            .iter()
            .map(|r| tombstone(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect())
    }
}

async fn insert_tombstone(
    tx: &Transaction<'_>,
    e: &Erasure,
    now: i64,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO erasures (owner, device, from_ms, to_ms, requested_ms)
         VALUES ($1, $2, $3, $4, $5)",
        &[&e.owner, &e.device, &e.from_ms, &e.to_ms, &now],
    )
    .await
}

/// Deletes the rows of a device or time-range erasure and recomputes the per-minute tables of
/// the minutes it touched from the rows that remain.
async fn erase_range(tx: &Transaction<'_>, e: &Erasure) -> Result<Erased, tokio_postgres::Error> {
    insert_tombstone(tx, e, now_ms()).await?;
    let (first, last) = e.minutes();
    let measurements = tx
        .execute(
            "DELETE FROM measurements WHERE owner = $1 AND ($2::text IS NULL OR device = $2)
               AND time_ms >= $3 AND time_ms < $4",
            &[&e.owner, &e.device, &e.from_ms, &e.to_ms],
        )
        .await?;
    if measurements > 0 {
        tx.execute(
            "DELETE FROM rollup_minute WHERE owner = $1 AND minute >= $2 AND minute <= $3",
            &[&e.owner, &first, &last],
        )
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO rollup_minute (owner, name, minute, count, sum, min, max, unit)
                 SELECT owner, name, {MINUTE}, COUNT(*), SUM(value), MIN(value), MAX(value),
                        MAX(unit)
                 FROM measurements
                 WHERE owner = $1 AND time_ms >= $2 AND time_ms < $3::int8 + 60000
                   AND value IS NOT NULL
                 GROUP BY owner, name, {MINUTE}"
            ),
            &[&e.owner, &first, &last],
        )
        .await?;
        tx.execute(
            "DELETE FROM device_minute WHERE owner = $1 AND ($2::text IS NULL OR device = $2)
               AND minute >= $3 AND minute <= $4",
            &[&e.owner, &e.device, &first, &last],
        )
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO device_minute (owner, device, minute, messages, last_ms)
                 SELECT owner, device, {MINUTE}, COUNT(DISTINCT message_id), MAX(time_ms)
                 FROM measurements
                 WHERE owner = $1 AND ($2::text IS NULL OR device = $2)
                   AND time_ms >= $3 AND time_ms < $4::int8 + 60000
                 GROUP BY owner, device, {MINUTE}"
            ),
            &[&e.owner, &e.device, &first, &last],
        )
        .await?;
    }
    let dead_letters = tx
        .execute(
            "DELETE FROM dead_letters WHERE owner = $1 AND ($2::text IS NULL OR device = $2)
               AND received_ms >= $3 AND received_ms < $4",
            &[&e.owner, &e.device, &e.from_ms, &e.to_ms],
        )
        .await?;
    let activity_segments = tx
        .execute(
            "DELETE FROM activity_segments WHERE owner = $1 AND ($2::text IS NULL OR device = $2)
               AND start_ms < $4 AND end_ms > $3",
            &[&e.owner, &e.device, &e.from_ms, &e.to_ms],
        )
        .await?;
    Ok(Erased {
        measurements,
        dead_letters,
        activity_segments,
        sessions: 0,
    })
}
