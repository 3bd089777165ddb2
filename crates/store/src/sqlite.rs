//! The SQLite engine: one file in WAL mode, one writer connection and a few reader
//! connections, every call on tokio's blocking pool.
//!
//! WAL lets readers (API queries) run while the writer (the pipeline) inserts; SQLite allows one
//! writer at a time anyway, so the writer connection sits behind a mutex rather than making
//! writers wait on SQLite's busy handler.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};

use crate::{
    raw_point, row_hash, sql_limit, stored_count, ActivitySegment, Agg, ApiSession, DeadLetter,
    DeviceSeen, Error, ListedDeadLetter, Migration, NewRows, NewSession, Point, Query, Result, Row,
    SessionBounds, Source, Span, Summary, TokenHash, MINUTE_MS, PURGE_BATCH, SQLITE,
};

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "activity",
        sql: include_str!("../migrations/sqlite/0002_activity.sql"),
    },
    Migration {
        version: 3,
        name: "device_minute",
        sql: include_str!("../migrations/sqlite/0003_device_minute.sql"),
    },
    Migration {
        version: 4,
        name: "api_sessions",
        sql: include_str!("../migrations/sqlite/0004_api_sessions.sql"),
    },
    Migration {
        version: 5,
        name: "consent",
        sql: include_str!("../migrations/sqlite/0005_consent.sql"),
    },
    Migration {
        version: 6,
        name: "erasure",
        sql: include_str!("../migrations/sqlite/0006_erasure.sql"),
    },
    Migration {
        version: 8,
        name: "packs",
        sql: include_str!("../migrations/sqlite/0008_packs.sql"),
    },
];

/// Reader connections kept open between calls; more may be opened under load, and are closed
/// after use.
const IDLE_READERS: usize = 4;

const ROW_COLUMNS: &str =
    "owner, device, message_id, seq, name, unit, time_ms, value, text, bool, data, sum";

const SEGMENT_COLUMNS: &str =
    "owner, device, start_ms, end_ms, activity, confidence, windows, model_version";

/// The SQLite store (see the module docs).
pub struct Sqlite {
    path: Arc<PathBuf>,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

pub(crate) fn err(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |source| Error::Sqlite { op, source }
}

fn connect(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // FULL: a committed insert survives a power loss too, so the pipeline may commit its log
    // offset right after. With WAL that is one fsync of the WAL per transaction.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -65536;",
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

impl Sqlite {
    pub(crate) async fn open(path: PathBuf) -> Result<Sqlite> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let p = path.clone();
        let conn = blocking("open store", move || {
            let mut conn = connect(&p).map_err(err("open store"))?;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await?;
        tracing::debug!(path = %path.display(), "sqlite store open");
        Ok(Sqlite {
            path: Arc::new(path),
            writer: Arc::new(Mutex::new(conn)),
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    pub(crate) async fn write<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let writer = Arc::clone(&self.writer);
        blocking(op, move || {
            // A panic while holding the lock cannot leave a transaction open (rusqlite rolls
            // back on drop), so a poisoned connection is still good.
            let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn).map_err(err(op))
        })
        .await
    }

    pub(crate) async fn read<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = Arc::clone(&self.readers);
        let path = Arc::clone(&self.path);
        blocking(op, move || {
            let idle = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => connect(&path).map_err(err(op))?,
            };
            let result = f(&conn);
            let mut idle = readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
    }

    pub(crate) async fn insert(&self, rows: Vec<Row>) -> Result<usize> {
        self.write("insert measurements", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut new = 0;
            let mut delta = NewRows::default();
            {
                let mut stmt = tx.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO measurements ({ROW_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ))?;
                for r in &rows {
                    // 0 when (owner, message_id, seq) was already there: sqlite3_changes().
                    let changed = stmt.execute(params![
                        r.owner,
                        r.device,
                        r.message_id,
                        r.seq,
                        r.name,
                        r.unit,
                        r.time_ms,
                        r.value,
                        r.text,
                        r.bool,
                        r.data,
                        r.sum
                    ])?;
                    if changed == 1 {
                        new += 1;
                        delta.add(r);
                    }
                }
                let mut up = tx.prepare_cached(
                    "INSERT INTO rollup_minute (owner, name, minute, count, sum, min, max, unit)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (owner, name, minute) DO UPDATE SET
                        count = rollup_minute.count + excluded.count,
                        sum = rollup_minute.sum + excluded.sum,
                        min = min(rollup_minute.min, excluded.min),
                        max = max(rollup_minute.max, excluded.max),
                        unit = CASE WHEN rollup_minute.unit IS NULL OR excluded.unit > rollup_minute.unit
                                    THEN excluded.unit ELSE rollup_minute.unit END",
                )?;
                for ((owner, name, minute), a) in &delta.rollup {
                    let count = i64::try_from(a.count).unwrap_or(i64::MAX);
                    up.execute(params![owner, name, minute, count, a.sum, a.min, a.max, a.unit])?;
                }
                let mut seen = tx.prepare_cached(
                    "INSERT INTO device_minute (owner, device, minute, messages, last_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (owner, device, minute) DO UPDATE SET
                        messages = device_minute.messages + excluded.messages,
                        last_ms = max(device_minute.last_ms, excluded.last_ms)",
                )?;
                for ((owner, device, minute), d) in &delta.devices {
                    let messages = i64::try_from(d.message_ids.len()).unwrap_or(i64::MAX);
                    seen.execute(params![owner, device, minute, messages, d.last_ms])?;
                }
            }
            tx.commit()?;
            Ok(new)
        })
        .await
    }

    pub(crate) async fn dead_letter(&self, l: DeadLetter) -> Result<()> {
        self.write("store dead letter", move |conn| {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO dead_letters
                    (owner, device, message_id, topic, received_ms, reason, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                l.owner,
                l.device,
                l.message_id,
                l.topic,
                l.received_ms,
                l.reason,
                l.payload
            ])?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn raw(&self, q: Query, from_ms: i64, to_ms: i64) -> Result<Vec<Point>> {
        const OP: &str = "query measurements";
        self.read(OP, move |conn| {
            let mut args = vec![
                Value::from(q.owner),
                Value::from(from_ms),
                Value::from(to_ms),
                Value::from(sql_limit(q.limit)),
            ];
            let names = names_filter(&mut args, q.names);
            let sql = format!(
                "SELECT {ROW_COLUMNS} FROM measurements
                 WHERE owner = ?1 AND time_ms >= ?2 AND time_ms < ?3 {names}
                 ORDER BY name, time_ms, message_id, seq LIMIT ?4"
            );
            let mut stmt = conn.prepare(&sql).map_err(err(OP))?;
            let mut rows = stmt.query(params_from_iter(args)).map_err(err(OP))?;
            let mut points = Vec::new();
            while let Some(r) = rows.next().map_err(err(OP))? {
                points.push(raw_point(read_row(r, OP)?));
            }
            Ok(points)
        })
        .await
    }

    pub(crate) async fn buckets(
        &self,
        q: Query,
        bucket_ms: i64,
        spans: Vec<Span>,
    ) -> Result<Vec<Vec<(String, i64, Agg)>>> {
        const OP: &str = "query measurement buckets";
        self.read(OP, move |conn| {
            let mut parts = Vec::new();
            for span in spans {
                let mut args = vec![
                    Value::from(q.owner.clone()),
                    Value::from(span.from_ms),
                    Value::from(span.to_ms),
                    Value::from(sql_limit(q.limit)),
                    Value::from(bucket_ms),
                ];
                let names = names_filter(&mut args, q.names.clone());
                // Floor division (SQLite's % truncates toward zero): buckets before the epoch
                // start at the multiple below, as after it.
                let sql = match span.source {
                    // One minute per bucket: the rollup rows are the buckets, already in
                    // primary-key order; no grouping or sorting.
                    Source::Rollup if bucket_ms == MINUTE_MS => format!(
                        "SELECT name, minute + 0 * ?5, count, sum, min, max, unit
                         FROM rollup_minute
                         WHERE owner = ?1 AND minute >= ?2 AND minute < ?3 {names}
                         ORDER BY name, minute LIMIT ?4"
                    ),
                    Source::Rollup => format!(
                        "SELECT name, minute - ((minute % ?5) + ?5) % ?5 AS bucket,
                                SUM(count), SUM(sum), MIN(min), MAX(max), MAX(unit)
                         FROM rollup_minute
                         WHERE owner = ?1 AND minute >= ?2 AND minute < ?3 {names}
                         GROUP BY name, bucket ORDER BY name, bucket LIMIT ?4"
                    ),
                    Source::Rows => format!(
                        "SELECT name, time_ms - ((time_ms % ?5) + ?5) % ?5 AS bucket,
                                COUNT(value), SUM(value), MIN(value), MAX(value), MAX(unit)
                         FROM measurements
                         WHERE owner = ?1 AND time_ms >= ?2 AND time_ms < ?3
                           AND value IS NOT NULL {names}
                         GROUP BY name, bucket ORDER BY name, bucket LIMIT ?4"
                    ),
                };
                let mut stmt = conn.prepare(&sql).map_err(err(OP))?;
                let part = stmt
                    .query_map(params_from_iter(args), |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            Agg {
                                count: 0,
                                sum: r.get(3)?,
                                min: r.get(4)?,
                                max: r.get(5)?,
                                unit: r.get(6)?,
                            },
                        ))
                    })
                    .map_err(err(OP))?
                    .map(|r| {
                        let (name, bucket, count, mut agg) = r.map_err(err(OP))?;
                        agg.count = u64::try_from(count).map_err(|_| Error::Corrupt {
                            engine: SQLITE,
                            op: OP,
                            what: format!("negative count {count}"),
                        })?;
                        Ok((name, bucket, agg))
                    })
                    .collect::<Result<Vec<_>>>()?;
                parts.push(part);
            }
            Ok(parts)
        })
        .await
    }

    pub(crate) async fn dead_letters(
        &self,
        owner: String,
        limit: usize,
        payload_prefix: usize,
    ) -> Result<Vec<ListedDeadLetter>> {
        const OP: &str = "list dead letters";
        self.read(OP, move |conn| {
            // substr() of a BLOB counts bytes; of a text, characters: the
            // payload column holds BLOBs only.
            let mut stmt = conn
                .prepare_cached(
                    "SELECT owner, device, message_id, topic, received_ms, reason,
                            substr(payload, 1, ?3), length(payload)
                     FROM dead_letters WHERE owner = ?1
                     ORDER BY received_ms DESC, message_id DESC LIMIT ?2",
                )
                .map_err(err(OP))?;
            let letters = stmt
                .query_map(
                    params![owner, sql_limit(limit), sql_limit(payload_prefix)],
                    |r| {
                        Ok(ListedDeadLetter {
                            letter: DeadLetter {
                                owner: r.get(0)?,
                                device: r.get(1)?,
                                message_id: r.get(2)?,
                                topic: r.get(3)?,
                                received_ms: r.get(4)?,
                                reason: r.get(5)?,
                                payload: r.get(6)?,
                            },
                            payload_bytes: r.get(7)?,
                        })
                    },
                )
                .map_err(err(OP))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err(OP))?;
            Ok(letters)
        })
        .await
    }

    pub(crate) async fn export(
        &self,
        owner: String,
        after: Option<(i64, String, u32)>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        const OP: &str = "export measurements";
        self.read(OP, move |conn| {
            let sql = match after {
                None => format!(
                    "SELECT {ROW_COLUMNS} FROM measurements WHERE owner = ?1
                     ORDER BY time_ms, message_id, seq LIMIT ?2"
                ),
                Some(_) => format!(
                    "SELECT {ROW_COLUMNS} FROM measurements
                     WHERE owner = ?1 AND (time_ms, message_id, seq) > (?3, ?4, ?5)
                     ORDER BY time_ms, message_id, seq LIMIT ?2"
                ),
            };
            let mut args = vec![Value::from(owner), Value::from(sql_limit(limit))];
            if let Some((time_ms, message_id, seq)) = after {
                args.extend([
                    Value::from(time_ms),
                    Value::from(message_id),
                    Value::from(seq),
                ]);
            }
            let mut stmt = conn.prepare_cached(&sql).map_err(err(OP))?;
            let mut rows = stmt.query(params_from_iter(args)).map_err(err(OP))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(err(OP))? {
                out.push(read_row(r, OP)?);
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn upsert_activity(&self, segments: Vec<ActivitySegment>) -> Result<()> {
        self.write("store activity", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(&format!(
                    "INSERT INTO activity_segments ({SEGMENT_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (owner, device, start_ms) DO UPDATE SET
                        end_ms = excluded.end_ms,
                        activity = excluded.activity,
                        confidence = excluded.confidence,
                        windows = excluded.windows,
                        model_version = excluded.model_version"
                ))?;
                for s in &segments {
                    stmt.execute(params![
                        s.owner,
                        s.device,
                        s.start_ms,
                        s.end_ms,
                        s.activity,
                        s.confidence,
                        s.windows,
                        s.model_version
                    ])?;
                }
            }
            tx.commit()
        })
        .await
    }

    pub(crate) async fn activity_timeline(
        &self,
        owner: String,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<ActivitySegment>> {
        const OP: &str = "read activity";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {SEGMENT_COLUMNS} FROM activity_segments
                     WHERE owner = ?1 AND end_ms > ?2 AND start_ms < ?3
                     ORDER BY start_ms, device LIMIT ?4"
                ))
                .map_err(err(OP))?;
            let mut rows = stmt
                .query(params![owner, from_ms, to_ms, sql_limit(limit)])
                .map_err(err(OP))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(err(OP))? {
                out.push(read_segment(r, OP)?);
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn activity_enabled(&self, owner: String) -> Result<bool> {
        const OP: &str = "read activity setting";
        self.read(OP, move |conn| {
            let enabled = conn
                .prepare_cached("SELECT enabled FROM activity_settings WHERE owner = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row(params![owner], |r| r.get::<_, bool>(0))
                        .optional()
                })
                .map_err(err(OP))?;
            Ok(enabled.unwrap_or(true))
        })
        .await
    }

    pub(crate) async fn set_activity_enabled(&self, owner: String, enabled: bool) -> Result<()> {
        self.write("store activity setting", move |conn| {
            conn.prepare_cached(
                "INSERT INTO activity_settings (owner, enabled, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (owner) DO UPDATE SET
                    enabled = excluded.enabled, updated_ms = excluded.updated_ms",
            )?
            .execute(params![owner, enabled, now_ms()])?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn activity_disabled_owners(&self) -> Result<HashSet<String>> {
        const OP: &str = "read activity settings";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT owner FROM activity_settings WHERE enabled = 0")
                .map_err(err(OP))?;
            let owners = stmt
                .query_map([], |r| r.get(0))
                .map_err(err(OP))?
                .collect::<rusqlite::Result<HashSet<String>>>()
                .map_err(err(OP))?;
            Ok(owners)
        })
        .await
    }

    pub(crate) async fn summary(&self, owner: String, limit: usize) -> Result<Vec<Summary>> {
        const OP: &str = "summarise measurements";
        self.read(OP, move |conn| {
            // One read transaction: the counts and the latest rows come from one snapshot (on
            // PostgreSQL the whole summary is one statement).
            let tx = conn.unchecked_transaction().map_err(err(OP))?;
            let counts = tx
                .prepare_cached(
                    "SELECT name, SUM(count) FROM rollup_minute WHERE owner = ?1
                     GROUP BY name ORDER BY name LIMIT ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![owner, sql_limit(limit)], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(err(OP))?;
            // The index (owner, name, time_ms) from its end; its entries carry the primary key,
            // so the (message_id, seq) tie-break needs no sort either.
            let mut latest = tx
                .prepare_cached(
                    "SELECT unit, value, time_ms, device FROM measurements
                     WHERE owner = ?1 AND name = ?2
                     ORDER BY time_ms DESC, message_id DESC, seq DESC LIMIT 1",
                )
                .map_err(err(OP))?;
            let mut out = Vec::with_capacity(counts.len());
            for (name, count) in counts {
                let row = latest
                    .query_row(params![owner, name], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()
                    .map_err(err(OP))?;
                // None only if rows were deleted behind the store's back; as on PostgreSQL,
                // such a name is left out.
                let Some((unit, latest_value, latest_time_ms, device)) = row else {
                    continue;
                };
                out.push(Summary {
                    name,
                    unit,
                    latest_value,
                    latest_time_ms,
                    device,
                    count: stored_count(SQLITE, OP, count)?,
                });
            }
            drop(latest);
            tx.commit().map_err(err(OP))?;
            Ok(out)
        })
        .await
    }

    pub(crate) async fn devices_seen(
        &self,
        owner: String,
        from_minute: i64,
        to_minute: i64,
    ) -> Result<Vec<DeviceSeen>> {
        const OP: &str = "read devices seen";
        self.read(OP, move |conn| {
            // The devices one after the other (each the next in the primary key), then per
            // device its last minute's last_ms (the greatest: minute <= last_ms < minute + 1 min)
            // and the sum over the hour's minutes: index lookups only.
            let mut stmt = conn
                .prepare_cached(
                    "WITH RECURSIVE devices(device) AS (
                        SELECT (SELECT device FROM device_minute WHERE owner = ?1
                                ORDER BY device LIMIT 1)
                        UNION ALL
                        SELECT (SELECT n.device FROM device_minute n
                                WHERE n.owner = ?1 AND n.device > d.device
                                ORDER BY n.device LIMIT 1)
                        FROM devices d WHERE d.device IS NOT NULL
                     )
                     SELECT d.device,
                        (SELECT last_ms FROM device_minute
                         WHERE owner = ?1 AND device = d.device ORDER BY minute DESC LIMIT 1),
                        (SELECT COALESCE(SUM(messages), 0) FROM device_minute
                         WHERE owner = ?1 AND device = d.device AND minute >= ?2 AND minute < ?3)
                     FROM devices d WHERE d.device IS NOT NULL ORDER BY d.device",
                )
                .map_err(err(OP))?;
            let rows = stmt
                .query_map(params![owner, from_minute, to_minute], |r| {
                    Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(err(OP))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err(OP))?;
            rows.into_iter()
                .map(|(device, last_ms, messages)| {
                    Ok(DeviceSeen {
                        device,
                        last_ms,
                        messages_last_hour: stored_count(SQLITE, OP, messages)?,
                    })
                })
                .collect()
        })
        .await
    }

    pub(crate) async fn create_session(
        &self,
        session: ApiSession,
        bounds: SessionBounds,
    ) -> Result<NewSession> {
        let now = session.created_ms;
        // None: full. IMMEDIATE behind the writer mutex: logins (of any process on this file) are
        // serialised, so the counts below cannot be raced.
        let ended = self
            .write("store login session", move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                purge_expired(&tx, now, Some(PURGE_BATCH))?;
                let count = |tx: &rusqlite::Transaction<'_>| {
                    tx.query_row("SELECT COUNT(*) FROM api_sessions", [], |r| {
                        r.get::<_, i64>(0)
                    })
                };
                let total = sql_limit(bounds.total);
                if count(&tx)? >= total {
                    // Full: only now is every expired session purged (this one login pays).
                    purge_expired(&tx, now, None)?;
                    if count(&tx)? >= total {
                        tx.commit()?;
                        return Ok(None);
                    }
                }
                tx.execute(
                    "DELETE FROM api_sessions WHERE owner = ?1 AND expires_ms <= ?2",
                    params![session.owner, now],
                )?;
                // The owner's sessions beyond the newest per_owner - 1, oldest last.
                let ended: Vec<Vec<u8>> = tx
                    .prepare_cached(
                        "SELECT token_hash FROM api_sessions WHERE owner = ?1
                     ORDER BY created_ms DESC, token_hash DESC LIMIT -1 OFFSET ?2",
                    )?
                    .query_map(
                        params![session.owner, sql_limit(bounds.per_owner - 1)],
                        |r| r.get(0),
                    )?
                    .collect::<rusqlite::Result<_>>()?;
                {
                    let mut delete =
                        tx.prepare_cached("DELETE FROM api_sessions WHERE token_hash = ?1")?;
                    for hash in &ended {
                        delete.execute(params![hash])?;
                    }
                }
                tx.execute(
                "INSERT INTO api_sessions (token_hash, owner, created_ms, last_used_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    &session.token_hash.0[..],
                    session.owner,
                    session.created_ms,
                    session.last_used_ms,
                    session.expires_ms
                ],
            )?;
                tx.commit()?;
                Ok(Some(ended))
            })
            .await?;
        let Some(ended) = ended else {
            return Ok(NewSession::Full);
        };
        let ended = ended
            .into_iter()
            .map(|hash| TokenHash::stored(SQLITE, "store login session", hash))
            .collect::<Result<_>>()?;
        Ok(NewSession::Created { ended })
    }

    pub(crate) async fn session(&self, token_hash: TokenHash) -> Result<Option<ApiSession>> {
        const OP: &str = "read login session";
        self.read(OP, move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT owner, created_ms, last_used_ms, expires_ms FROM api_sessions
                     WHERE token_hash = ?1",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![&token_hash.0[..]], |r| {
                        Ok(ApiSession {
                            token_hash,
                            owner: r.get(0)?,
                            created_ms: r.get(1)?,
                            last_used_ms: r.get(2)?,
                            expires_ms: r.get(3)?,
                        })
                    })
                    .optional()
                })
                .map_err(err(OP))?;
            Ok(row)
        })
        .await
    }

    pub(crate) async fn touch_session(&self, token_hash: TokenHash, now_ms: i64) -> Result<()> {
        self.write("touch login session", move |conn| {
            conn.prepare_cached("UPDATE api_sessions SET last_used_ms = ?2 WHERE token_hash = ?1")?
                .execute(params![&token_hash.0[..], now_ms])?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn end_session(&self, token_hash: TokenHash) -> Result<Option<i64>> {
        self.write("end login session", move |conn| {
            conn.prepare_cached(
                "DELETE FROM api_sessions WHERE token_hash = ?1 RETURNING expires_ms",
            )?
            .query_row(params![&token_hash.0[..]], |r| r.get(0))
            .optional()
        })
        .await
    }

    pub(crate) async fn session_count(&self, owner: String, now_ms: i64) -> Result<u64> {
        const OP: &str = "count login sessions";
        let count = self
            .read(OP, move |conn| {
                conn.prepare_cached(
                    "SELECT COUNT(*) FROM api_sessions WHERE owner = ?1 AND expires_ms > ?2",
                )
                .and_then(|mut stmt| stmt.query_row(params![owner, now_ms], |r| r.get(0)))
                .map_err(err(OP))
            })
            .await?;
        stored_count(SQLITE, OP, count)
    }

    pub(crate) async fn purge_sessions(&self, now_ms: i64, limit: usize) -> Result<u64> {
        let purged = self
            .write("purge login sessions", move |conn| {
                purge_expired(conn, now_ms, Some(limit))
            })
            .await?;
        Ok(purged as u64)
    }

    pub(crate) async fn count_and_checksum(&self) -> Result<(u64, u64)> {
        const OP: &str = "checksum measurements";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare(&format!("SELECT {ROW_COLUMNS} FROM measurements"))
                .map_err(err(OP))?;
            let mut rows = stmt.query([]).map_err(err(OP))?;
            let (mut count, mut sum) = (0u64, 0u64);
            while let Some(r) = rows.next().map_err(err(OP))? {
                count += 1;
                sum = sum.wrapping_add(row_hash(&read_row(r, OP)?));
            }
            Ok((count, sum))
        })
        .await
    }
}

/// Appends the names to `args` and returns the SQL condition for them ("" for all names).
fn names_filter(args: &mut Vec<Value>, names: Vec<String>) -> String {
    if names.is_empty() {
        return String::new();
    }
    let first = args.len() + 1;
    let marks: Vec<String> = (first..first + names.len())
        .map(|i| format!("?{i}"))
        .collect();
    args.extend(names.into_iter().map(Value::from));
    format!("AND name IN ({})", marks.join(", "))
}

fn read_row(r: &rusqlite::Row<'_>, op: &'static str) -> Result<Row> {
    let get = |e| Error::Sqlite { op, source: e };
    let seq: i64 = r.get(3).map_err(get)?;
    Ok(Row {
        owner: r.get(0).map_err(get)?,
        device: r.get(1).map_err(get)?,
        message_id: r.get(2).map_err(get)?,
        seq: u32::try_from(seq).map_err(|_| Error::Corrupt {
            engine: SQLITE,
            op,
            what: format!("seq {seq} is not a u32"),
        })?,
        name: r.get(4).map_err(get)?,
        unit: r.get(5).map_err(get)?,
        time_ms: r.get(6).map_err(get)?,
        value: r.get(7).map_err(get)?,
        text: r.get(8).map_err(get)?,
        bool: r.get(9).map_err(get)?,
        data: r.get(10).map_err(get)?,
        sum: r.get(11).map_err(get)?,
    })
}

fn read_segment(r: &rusqlite::Row<'_>, op: &'static str) -> Result<ActivitySegment> {
    let get = |e| Error::Sqlite { op, source: e };
    let windows: i64 = r.get(6).map_err(get)?;
    Ok(ActivitySegment {
        owner: r.get(0).map_err(get)?,
        device: r.get(1).map_err(get)?,
        start_ms: r.get(2).map_err(get)?,
        end_ms: r.get(3).map_err(get)?,
        activity: r.get(4).map_err(get)?,
        confidence: r.get(5).map_err(get)?,
        windows: u32::try_from(windows).map_err(|_| Error::Corrupt {
            engine: SQLITE,
            op,
            what: format!("windows {windows} is not a u32"),
        })?,
        model_version: r.get(7).map_err(get)?,
    })
}

/// Deletes expired sessions, the longest expired first: at most `limit`, or all.
fn purge_expired(conn: &Connection, now_ms: i64, limit: Option<usize>) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM api_sessions WHERE token_hash IN (
            SELECT token_hash FROM api_sessions WHERE expires_ms <= ?1
            ORDER BY expires_ms LIMIT ?2)",
    )?
    .execute(params![now_ms, limit.map_or(-1, sql_limit)])
}

fn migrate(conn: &mut Connection) -> Result<()> {
    const OP: &str = "run migrations";
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT    NOT NULL,
            applied_ms INTEGER NOT NULL
        )",
    )
    .map_err(err(OP))?;
    // IMMEDIATE: two processes opening one file migrate one after the other.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err(OP))?;
    let current: i64 = tx
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()
        .map_err(err(OP))?
        .flatten()
        .unwrap_or(0);
    for m in Migration::pending(MIGRATIONS, current, SQLITE)? {
        tx.execute_batch(m.sql).map_err(err(OP))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, now_ms()],
        )
        .map_err(err(OP))?;
    }
    tx.commit().map_err(err(OP))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| Error::Task { op, source })?
}
