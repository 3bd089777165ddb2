//! The PostgreSQL engine: a small connection pool (deadpool), statements prepared once per
//! connection, whole batches sent as arrays (`UNNEST`) so an insert is two round trips
//! whatever its size.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use std::collections::HashSet;

use crate::{
    raw_point, row_hash, sql_limit, stored_count, ActivitySegment, Agg, ApiSession, DeadLetter,
    DeviceSeen, Error, ListedDeadLetter, Migration, NewRows, NewSession, Point, Query, Result, Row,
    SessionBounds, Source, Span, Summary, TokenHash, MINUTE_MS, POSTGRES, PURGE_BATCH,
};

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "activity",
        sql: include_str!("../migrations/postgres/0002_activity.sql"),
    },
    Migration {
        version: 3,
        name: "device_minute",
        sql: include_str!("../migrations/postgres/0003_device_minute.sql"),
    },
    Migration {
        version: 4,
        name: "api_sessions",
        sql: include_str!("../migrations/postgres/0004_api_sessions.sql"),
    },
    Migration {
        version: 5,
        name: "consent",
        sql: include_str!("../migrations/postgres/0005_consent.sql"),
    },
    Migration {
        version: 6,
        name: "erasure",
        sql: include_str!("../migrations/postgres/0006_erasure.sql"),
    },
    Migration {
        version: 8,
        name: "packs",
        sql: include_str!("../migrations/postgres/0008_packs.sql"),
    },
];

/// Connections in the pool: the pipeline's writer plus a few API readers.
const POOL_SIZE: usize = 8;

/// With `hashtext(owner)`, the two-key advisory lock that serialises one owner's logins on every
/// node ("tses" in ASCII; two-key locks never meet the one-key migration lock).
const SESSION_LOCK: i32 = 0x7473_6573;

/// Deletes expired sessions, the longest expired first, at most `$2` (NULL: all).
const PURGE_SESSIONS: &str = "DELETE FROM api_sessions WHERE token_hash IN (
    SELECT token_hash FROM api_sessions WHERE expires_ms <= $1 ORDER BY expires_ms LIMIT $2)";

/// Serialises concurrent migrations (pg_advisory_xact_lock key; "trib" "stor" in ASCII).
const MIGRATION_LOCK: i64 = 0x7472_6962_7374_6f72;

const ROW_COLUMNS: &str =
    "owner, device, message_id, seq, name, unit, time_ms, value, text, bool, data, sum";

const SEGMENT_COLUMNS: &str =
    "owner, device, start_ms, end_ms, activity, confidence, windows, model_version";

/// The PostgreSQL store (see the module docs).
pub struct Postgres {
    pub(crate) pool: Pool,
}

pub(crate) fn err(op: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |source| Error::Postgres { op, source }
}

pub(crate) fn pool_err(op: &'static str) -> impl FnOnce(deadpool_postgres::PoolError) -> Error {
    move |source| Error::Pool { op, source }
}

impl Postgres {
    pub(crate) async fn open(url: &str) -> Result<Postgres> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| Error::InvalidUrl {
            url: url.to_owned(),
            reason: format!("{e}"),
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| Error::InvalidUrl {
                url: url.to_owned(),
                reason: format!("build connection pool: {e}"),
            })?;
        let store = Postgres { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        const OP: &str = "run migrations";
        let mut client = self.pool.get().await.map_err(pool_err(OP))?;
        let tx = client.transaction().await.map_err(err(OP))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(err(OP))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    BIGINT PRIMARY KEY,
                name       TEXT   NOT NULL,
                applied_ms BIGINT NOT NULL
            )",
        )
        .await
        .map_err(err(OP))?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(err(OP))?
            .get(0);
        for m in Migration::pending(MIGRATIONS, current, POSTGRES)? {
            tx.batch_execute(m.sql).await.map_err(err(OP))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &crate::sqlite::now_ms()],
            )
            .await
            .map_err(err(OP))?;
        }
        tx.commit().await.map_err(err(OP))
    }

    pub(crate) async fn insert(&self, rows: &[Row]) -> Result<usize> {
        const OP: &str = "insert measurements";
        let owners: Vec<&str> = rows.iter().map(|r| r.owner.as_str()).collect();
        let devices: Vec<&str> = rows.iter().map(|r| r.device.as_str()).collect();
        let ids: Vec<&str> = rows.iter().map(|r| r.message_id.as_str()).collect();
        let seqs: Vec<i64> = rows.iter().map(|r| i64::from(r.seq)).collect();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let units: Vec<Option<&str>> = rows.iter().map(|r| r.unit.as_deref()).collect();
        let times: Vec<i64> = rows.iter().map(|r| r.time_ms).collect();
        let values: Vec<Option<f64>> = rows.iter().map(|r| r.value).collect();
        let texts: Vec<Option<&str>> = rows.iter().map(|r| r.text.as_deref()).collect();
        let bools: Vec<Option<bool>> = rows.iter().map(|r| r.bool).collect();
        let datas: Vec<Option<&[u8]>> = rows.iter().map(|r| r.data.as_deref()).collect();
        let sums: Vec<Option<f64>> = rows.iter().map(|r| r.sum).collect();

        let mut client = self.pool.get().await.map_err(pool_err(OP))?;
        let tx = client.transaction().await.map_err(err(OP))?;
        // RETURNING yields only the rows this statement inserted: a duplicate (already stored,
        // stored by a concurrent transaction, or twice in this batch) is not returned.
        let stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO measurements ({ROW_COLUMNS})
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[],
                     $6::text[], $7::int8[], $8::float8[], $9::text[], $10::bool[], $11::bytea[],
                     $12::float8[])
                 ON CONFLICT DO NOTHING
                 RETURNING owner, name, time_ms, value, unit, device, message_id"
            ))
            .await
            .map_err(err(OP))?;
        let inserted = tx
            .query(
                &stmt,
                &[
                    &owners, &devices, &ids, &seqs, &names, &units, &times, &values, &texts,
                    &bools, &datas, &sums,
                ],
            )
            .await
            .map_err(err(OP))?;
        let mut new = NewRows::default();
        for r in &inserted {
            let row = Row {
                owner: r.try_get(0).map_err(err(OP))?,
                name: r.try_get(1).map_err(err(OP))?,
                time_ms: r.try_get(2).map_err(err(OP))?,
                value: r.try_get(3).map_err(err(OP))?,
                unit: r.try_get(4).map_err(err(OP))?,
                device: r.try_get(5).map_err(err(OP))?,
                message_id: r.try_get(6).map_err(err(OP))?,
                seq: 0,
                text: None,
                bool: None,
                data: None,
                sum: None,
            };
            new.add(&row);
        }
        let delta = &new.rollup;
        if !delta.is_empty() {
            let mut r_owners = Vec::with_capacity(delta.len());
            let mut r_names = Vec::with_capacity(delta.len());
            let mut minutes = Vec::with_capacity(delta.len());
            let mut counts = Vec::with_capacity(delta.len());
            let mut r_sums = Vec::with_capacity(delta.len());
            let mut mins = Vec::with_capacity(delta.len());
            let mut maxs = Vec::with_capacity(delta.len());
            let mut r_units = Vec::with_capacity(delta.len());
            for ((owner, name, minute), a) in delta {
                r_owners.push(owner.as_str());
                r_names.push(name.as_str());
                minutes.push(*minute);
                counts.push(i64::try_from(a.count).unwrap_or(i64::MAX));
                r_sums.push(a.sum);
                mins.push(a.min);
                maxs.push(a.max);
                r_units.push(a.unit.as_deref());
            }
            // Keys are distinct and sorted (a BTreeMap): ON CONFLICT DO UPDATE may not touch a
            // row twice, and every writer locks rollup rows in one order.
            let up = tx
                .prepare_cached(
                    "INSERT INTO rollup_minute AS r (owner, name, minute, count, sum, min, max, unit)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[],
                         $5::float8[], $6::float8[], $7::float8[], $8::text[])
                     ON CONFLICT (owner, name, minute) DO UPDATE SET
                        count = r.count + EXCLUDED.count,
                        sum = r.sum + EXCLUDED.sum,
                        min = LEAST(r.min, EXCLUDED.min),
                        max = GREATEST(r.max, EXCLUDED.max),
                        unit = GREATEST(r.unit, EXCLUDED.unit)",
                )
                .await
                .map_err(err(OP))?;
            tx.execute(
                &up,
                &[
                    &r_owners, &r_names, &minutes, &counts, &r_sums, &mins, &maxs, &r_units,
                ],
            )
            .await
            .map_err(err(OP))?;
        }
        let devices = &new.devices;
        if !devices.is_empty() {
            let mut d_owners = Vec::with_capacity(devices.len());
            let mut d_devices = Vec::with_capacity(devices.len());
            let mut minutes = Vec::with_capacity(devices.len());
            let mut messages = Vec::with_capacity(devices.len());
            let mut lasts = Vec::with_capacity(devices.len());
            for ((owner, device, minute), d) in devices {
                d_owners.push(owner.as_str());
                d_devices.push(device.as_str());
                minutes.push(*minute);
                messages.push(i64::try_from(d.message_ids.len()).unwrap_or(i64::MAX));
                lasts.push(d.last_ms);
            }
            // Distinct sorted keys, as the rollup's; every writer upserts the rollup first and
            // device_minute second, so the lock order is one for all.
            let up = tx
                .prepare_cached(
                    "INSERT INTO device_minute AS d (owner, device, minute, messages, last_ms)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[],
                         $5::int8[])
                     ON CONFLICT (owner, device, minute) DO UPDATE SET
                        messages = d.messages + EXCLUDED.messages,
                        last_ms = GREATEST(d.last_ms, EXCLUDED.last_ms)",
                )
                .await
                .map_err(err(OP))?;
            tx.execute(&up, &[&d_owners, &d_devices, &minutes, &messages, &lasts])
                .await
                .map_err(err(OP))?;
        }
        tx.commit().await.map_err(err(OP))?;
        Ok(inserted.len())
    }

    pub(crate) async fn dead_letter(&self, l: &DeadLetter) -> Result<()> {
        const OP: &str = "store dead letter";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO dead_letters
                    (owner, device, message_id, topic, received_ms, reason, payload)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(err(OP))?;
        client
            .execute(
                &stmt,
                &[
                    &l.owner,
                    &l.device,
                    &l.message_id,
                    &l.topic,
                    &l.received_ms,
                    &l.reason,
                    &l.payload,
                ],
            )
            .await
            .map_err(err(OP))?;
        Ok(())
    }

    pub(crate) async fn raw(&self, q: &Query, from_ms: i64, to_ms: i64) -> Result<Vec<Point>> {
        const OP: &str = "query measurements";
        let names = if q.names.is_empty() {
            ""
        } else {
            "AND name = ANY($5::text[])"
        };
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM measurements
             WHERE owner = $1 AND time_ms >= $2 AND time_ms < $3 {names}
             ORDER BY name, time_ms, message_id, seq LIMIT $4"
        );
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client.prepare_cached(&sql).await.map_err(err(OP))?;
        let limit = sql_limit(q.limit);
        let rows = if q.names.is_empty() {
            client
                .query(&stmt, &[&q.owner, &from_ms, &to_ms, &limit])
                .await
        } else {
            client
                .query(&stmt, &[&q.owner, &from_ms, &to_ms, &limit, &q.names])
                .await
        }
        .map_err(err(OP))?;
        rows.iter()
            .map(|r| read_row(r, OP).map(raw_point))
            .collect()
    }

    pub(crate) async fn buckets(
        &self,
        q: &Query,
        bucket_ms: i64,
        spans: &[Span],
    ) -> Result<Vec<Vec<(String, i64, Agg)>>> {
        const OP: &str = "query measurement buckets";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let names = if q.names.is_empty() {
            ""
        } else {
            "AND name = ANY($6::text[])"
        };
        let limit = sql_limit(q.limit);
        let mut parts = Vec::new();
        for span in spans {
            // Floor division (% truncates toward zero): buckets before the epoch start at the
            // multiple below, as after it.
            let sql = match span.source {
                // One minute per bucket: the rollup rows are the buckets, already in
                // primary-key order; no grouping or sorting.
                Source::Rollup if bucket_ms == MINUTE_MS => format!(
                    "SELECT name, minute + 0 * $5::int8, count, sum, min, max, unit
                     FROM rollup_minute
                     WHERE owner = $1 AND minute >= $2 AND minute < $3 {names}
                     ORDER BY name, minute LIMIT $4"
                ),
                Source::Rollup => format!(
                    "SELECT name, minute - ((minute % $5) + $5) % $5 AS bucket,
                            SUM(count)::int8, SUM(sum), MIN(min), MAX(max), MAX(unit)
                     FROM rollup_minute
                     WHERE owner = $1 AND minute >= $2 AND minute < $3 {names}
                     GROUP BY name, bucket ORDER BY name, bucket LIMIT $4"
                ),
                Source::Rows => format!(
                    "SELECT name, time_ms - ((time_ms % $5) + $5) % $5 AS bucket,
                            COUNT(value), SUM(value), MIN(value), MAX(value), MAX(unit)
                     FROM measurements
                     WHERE owner = $1 AND time_ms >= $2 AND time_ms < $3
                       AND value IS NOT NULL {names}
                     GROUP BY name, bucket ORDER BY name, bucket LIMIT $4"
                ),
            };
            let stmt = client.prepare_cached(&sql).await.map_err(err(OP))?;
            let rows = if q.names.is_empty() {
                client
                    .query(
                        &stmt,
                        &[&q.owner, &span.from_ms, &span.to_ms, &limit, &bucket_ms],
                    )
                    .await
            } else {
                client
                    .query(
                        &stmt,
                        &[
                            &q.owner,
                            &span.from_ms,
                            &span.to_ms,
                            &limit,
                            &bucket_ms,
                            &q.names,
                        ],
                    )
                    .await
            }
            .map_err(err(OP))?;
            let part = rows
                .iter()
                .map(|r| {
                    let count: i64 = r.try_get(2).map_err(err(OP))?;
                    Ok((
                        r.try_get(0).map_err(err(OP))?,
                        r.try_get(1).map_err(err(OP))?,
                        Agg {
                            count: u64::try_from(count).map_err(|_| Error::Corrupt {
                                engine: POSTGRES,
                                op: OP,
                                what: format!("negative count {count}"),
                            })?,
                            sum: r.try_get(3).map_err(err(OP))?,
                            min: r.try_get(4).map_err(err(OP))?,
                            max: r.try_get(5).map_err(err(OP))?,
                            unit: r.try_get(6).map_err(err(OP))?,
                        },
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            parts.push(part);
        }
        Ok(parts)
    }

    pub(crate) async fn dead_letters(
        &self,
        owner: &str,
        limit: usize,
        payload_prefix: usize,
    ) -> Result<Vec<ListedDeadLetter>> {
        const OP: &str = "list dead letters";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached(
                "SELECT owner, device, message_id, topic, received_ms, reason,
                        substring(payload from 1 for $3), octet_length(payload)::BIGINT
                 FROM dead_letters WHERE owner = $1
                 ORDER BY received_ms DESC, message_id DESC LIMIT $2",
            )
            .await
            .map_err(err(OP))?;
        // substring() takes an INTEGER length; a bytea holds under 1 GiB.
        let prefix = i32::try_from(payload_prefix).unwrap_or(i32::MAX);
        let rows = client
            .query(&stmt, &[&owner, &sql_limit(limit), &prefix])
            .await
            .map_err(err(OP))?;
        rows.iter()
            .map(|r| {
                let payload_bytes: i64 = r.try_get(7).map_err(err(OP))?;
                Ok(ListedDeadLetter {
                    letter: DeadLetter {
                        owner: r.try_get(0).map_err(err(OP))?,
                        device: r.try_get(1).map_err(err(OP))?,
                        message_id: r.try_get(2).map_err(err(OP))?,
                        topic: r.try_get(3).map_err(err(OP))?,
                        received_ms: r.try_get(4).map_err(err(OP))?,
                        reason: r.try_get(5).map_err(err(OP))?,
                        payload: r.try_get(6).map_err(err(OP))?,
                    },
                    payload_bytes: u64::try_from(payload_bytes).unwrap_or(0),
                })
            })
            .collect()
    }

    pub(crate) async fn export(
        &self,
        owner: &str,
        after: Option<(i64, String, u32)>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        const OP: &str = "export measurements";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let limit = sql_limit(limit);
        let rows = match after {
            None => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {ROW_COLUMNS} FROM measurements WHERE owner = $1
                         ORDER BY time_ms, message_id, seq LIMIT $2"
                    ))
                    .await
                    .map_err(err(OP))?;
                client.query(&stmt, &[&owner, &limit]).await
            }
            Some((time_ms, message_id, seq)) => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {ROW_COLUMNS} FROM measurements
                         WHERE owner = $1 AND (time_ms, message_id, seq) > ($3, $4, $5)
                         ORDER BY time_ms, message_id, seq LIMIT $2"
                    ))
                    .await
                    .map_err(err(OP))?;
                let seq = i64::from(seq);
                client
                    .query(&stmt, &[&owner, &limit, &time_ms, &message_id, &seq])
                    .await
            }
        }
        .map_err(err(OP))?;
        rows.iter().map(|r| read_row(r, OP)).collect()
    }

    /// `segments`: one per key, in key order (see `last_per_key`).
    pub(crate) async fn upsert_activity(&self, segments: &[ActivitySegment]) -> Result<()> {
        const OP: &str = "store activity";
        let owners: Vec<&str> = segments.iter().map(|s| s.owner.as_str()).collect();
        let devices: Vec<&str> = segments.iter().map(|s| s.device.as_str()).collect();
        let starts: Vec<i64> = segments.iter().map(|s| s.start_ms).collect();
        let ends: Vec<i64> = segments.iter().map(|s| s.end_ms).collect();
        let activities: Vec<&str> = segments.iter().map(|s| s.activity.as_str()).collect();
        let confidences: Vec<f64> = segments.iter().map(|s| s.confidence).collect();
        let windows: Vec<i64> = segments.iter().map(|s| i64::from(s.windows)).collect();
        let versions: Vec<&str> = segments.iter().map(|s| s.model_version.as_str()).collect();
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        // One statement is one transaction: all segments or none.
        let stmt = client
            .prepare_cached(&format!(
                "INSERT INTO activity_segments ({SEGMENT_COLUMNS})
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[],
                     $6::float8[], $7::int8[], $8::text[])
                 ON CONFLICT (owner, device, start_ms) DO UPDATE SET
                    end_ms = EXCLUDED.end_ms,
                    activity = EXCLUDED.activity,
                    confidence = EXCLUDED.confidence,
                    windows = EXCLUDED.windows,
                    model_version = EXCLUDED.model_version"
            ))
            .await
            .map_err(err(OP))?;
        client
            .execute(
                &stmt,
                &[
                    &owners,
                    &devices,
                    &starts,
                    &ends,
                    &activities,
                    &confidences,
                    &windows,
                    &versions,
                ],
            )
            .await
            .map_err(err(OP))?;
        Ok(())
    }

    pub(crate) async fn activity_timeline(
        &self,
        owner: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<ActivitySegment>> {
        const OP: &str = "read activity";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {SEGMENT_COLUMNS} FROM activity_segments
                 WHERE owner = $1 AND end_ms > $2 AND start_ms < $3
                 ORDER BY start_ms, device LIMIT $4"
            ))
            .await
            .map_err(err(OP))?;
        let rows = client
            .query(&stmt, &[&owner, &from_ms, &to_ms, &sql_limit(limit)])
            .await
            .map_err(err(OP))?;
        rows.iter().map(|r| read_segment(r, OP)).collect()
    }

    pub(crate) async fn activity_enabled(&self, owner: &str) -> Result<bool> {
        const OP: &str = "read activity setting";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached("SELECT enabled FROM activity_settings WHERE owner = $1")
            .await
            .map_err(err(OP))?;
        let row = client.query_opt(&stmt, &[&owner]).await.map_err(err(OP))?;
        match row {
            Some(r) => r.try_get(0).map_err(err(OP)),
            None => Ok(true),
        }
    }

    pub(crate) async fn set_activity_enabled(&self, owner: &str, enabled: bool) -> Result<()> {
        const OP: &str = "store activity setting";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO activity_settings (owner, enabled, updated_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (owner) DO UPDATE SET
                    enabled = EXCLUDED.enabled, updated_ms = EXCLUDED.updated_ms",
            )
            .await
            .map_err(err(OP))?;
        client
            .execute(&stmt, &[&owner, &enabled, &crate::sqlite::now_ms()])
            .await
            .map_err(err(OP))?;
        Ok(())
    }

    pub(crate) async fn activity_disabled_owners(&self) -> Result<HashSet<String>> {
        const OP: &str = "read activity settings";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached("SELECT owner FROM activity_settings WHERE NOT enabled")
            .await
            .map_err(err(OP))?;
        let rows = client.query(&stmt, &[]).await.map_err(err(OP))?;
        rows.iter().map(|r| r.try_get(0).map_err(err(OP))).collect()
    }

    pub(crate) async fn summary(&self, owner: &str, limit: usize) -> Result<Vec<Summary>> {
        const OP: &str = "summarise measurements";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        // One statement, so one snapshot. The latest row of each name is read backwards through
        // the (owner, name, time_ms) index; the (message_id, seq) tie-break is an incremental
        // sort of the rows at the greatest time only. A name without rows (deleted behind the
        // store's back) drops out of the join, as on SQLite.
        let stmt = client
            .prepare_cached(
                "SELECT r.name, r.count, m.unit, m.value, m.time_ms, m.device
                 FROM (SELECT name, SUM(count)::int8 AS count FROM rollup_minute
                       WHERE owner = $1 GROUP BY name ORDER BY name LIMIT $2) AS r
                 CROSS JOIN LATERAL (
                    SELECT unit, value, time_ms, device FROM measurements
                    WHERE owner = $1 AND name = r.name
                    ORDER BY time_ms DESC, message_id DESC, seq DESC LIMIT 1) AS m
                 ORDER BY r.name",
            )
            .await
            .map_err(err(OP))?;
        let rows = client
            .query(&stmt, &[&owner, &sql_limit(limit)])
            .await
            .map_err(err(OP))?;
        rows.iter()
            .map(|r| {
                Ok(Summary {
                    name: r.try_get(0).map_err(err(OP))?,
                    count: stored_count(POSTGRES, OP, r.try_get(1).map_err(err(OP))?)?,
                    unit: r.try_get(2).map_err(err(OP))?,
                    latest_value: r.try_get(3).map_err(err(OP))?,
                    latest_time_ms: r.try_get(4).map_err(err(OP))?,
                    device: r.try_get(5).map_err(err(OP))?,
                })
            })
            .collect()
    }

    pub(crate) async fn devices_seen(
        &self,
        owner: &str,
        from_minute: i64,
        to_minute: i64,
    ) -> Result<Vec<DeviceSeen>> {
        const OP: &str = "read devices seen";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        // The devices one after the other (each the next in the primary key: a loose index
        // scan), then per device its last minute's last_ms (the greatest: minute <= last_ms <
        // minute + 1 min) and the sum over the hour's minutes: index lookups only.
        let stmt = client
            .prepare_cached(
                "WITH RECURSIVE devices(device) AS (
                    SELECT (SELECT device FROM device_minute WHERE owner = $1
                            ORDER BY device LIMIT 1)
                    UNION ALL
                    SELECT (SELECT n.device FROM device_minute n
                            WHERE n.owner = $1 AND n.device > d.device
                            ORDER BY n.device LIMIT 1)
                    FROM devices d WHERE d.device IS NOT NULL
                 )
                 SELECT d.device,
                    (SELECT last_ms FROM device_minute
                     WHERE owner = $1 AND device = d.device ORDER BY minute DESC LIMIT 1),
                    (SELECT COALESCE(SUM(messages), 0)::int8 FROM device_minute
                     WHERE owner = $1 AND device = d.device AND minute >= $2 AND minute < $3)
                 FROM devices d WHERE d.device IS NOT NULL ORDER BY d.device",
            )
            .await
            .map_err(err(OP))?;
        let rows = client
            .query(&stmt, &[&owner, &from_minute, &to_minute])
            .await
            .map_err(err(OP))?;
        rows.iter()
            .map(|r| {
                Ok(DeviceSeen {
                    device: r.try_get(0).map_err(err(OP))?,
                    last_ms: r.try_get(1).map_err(err(OP))?,
                    messages_last_hour: stored_count(POSTGRES, OP, r.try_get(2).map_err(err(OP))?)?,
                })
            })
            .collect()
    }

    pub(crate) async fn create_session(
        &self,
        session: &ApiSession,
        bounds: SessionBounds,
    ) -> Result<NewSession> {
        const OP: &str = "store login session";
        let now = session.created_ms;
        let mut client = self.pool.get().await.map_err(pool_err(OP))?;
        let tx = client.transaction().await.map_err(err(OP))?;
        // Every node's logins of this owner wait here, so the owner's count cannot be raced.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&SESSION_LOCK, &session.owner],
        )
        .await
        .map_err(err(OP))?;
        let purge = tx.prepare_cached(PURGE_SESSIONS).await.map_err(err(OP))?;
        tx.execute(&purge, &[&now, &Some(sql_limit(PURGE_BATCH))])
            .await
            .map_err(err(OP))?;
        let count = tx
            .prepare_cached("SELECT COUNT(*) FROM api_sessions")
            .await
            .map_err(err(OP))?;
        let total = sql_limit(bounds.total);
        let counted = |row: tokio_postgres::Row| row.try_get::<_, i64>(0).map_err(err(OP));
        if counted(tx.query_one(&count, &[]).await.map_err(err(OP))?)? >= total {
            // Full: only now is every expired session purged (this one login pays).
            tx.execute(&purge, &[&now, &None::<i64>])
                .await
                .map_err(err(OP))?;
            if counted(tx.query_one(&count, &[]).await.map_err(err(OP))?)? >= total {
                tx.commit().await.map_err(err(OP))?;
                return Ok(NewSession::Full);
            }
        }
        // The owner's expired sessions, then those beyond the newest per_owner - 1.
        let ended = tx
            .prepare_cached(
                "DELETE FROM api_sessions WHERE owner = $1 AND (expires_ms <= $2 OR token_hash IN (
                    SELECT token_hash FROM api_sessions WHERE owner = $1 AND expires_ms > $2
                    ORDER BY created_ms DESC, token_hash DESC OFFSET $3))
                 RETURNING token_hash, expires_ms",
            )
            .await
            .map_err(err(OP))?;
        let rows = tx
            .query(
                &ended,
                &[&session.owner, &now, &sql_limit(bounds.per_owner - 1)],
            )
            .await
            .map_err(err(OP))?;
        let mut ended = Vec::new();
        for row in rows {
            let expires_ms: i64 = row.try_get(1).map_err(err(OP))?;
            if expires_ms > now {
                ended.push(TokenHash::stored(
                    POSTGRES,
                    OP,
                    row.try_get(0).map_err(err(OP))?,
                )?);
            }
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO api_sessions (token_hash, owner, created_ms, last_used_ms, expires_ms)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await
            .map_err(err(OP))?;
        tx.execute(
            &insert,
            &[
                &&session.token_hash.0[..],
                &session.owner,
                &session.created_ms,
                &session.last_used_ms,
                &session.expires_ms,
            ],
        )
        .await
        .map_err(err(OP))?;
        tx.commit().await.map_err(err(OP))?;
        Ok(NewSession::Created { ended })
    }

    pub(crate) async fn session(&self, token_hash: TokenHash) -> Result<Option<ApiSession>> {
        const OP: &str = "read login session";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached(
                "SELECT owner, created_ms, last_used_ms, expires_ms FROM api_sessions
                 WHERE token_hash = $1",
            )
            .await
            .map_err(err(OP))?;
        let Some(row) = client
            .query_opt(&stmt, &[&&token_hash.0[..]])
            .await
            .map_err(err(OP))?
        else {
            return Ok(None);
        };
        Ok(Some(ApiSession {
            token_hash,
            owner: row.try_get(0).map_err(err(OP))?,
            created_ms: row.try_get(1).map_err(err(OP))?,
            last_used_ms: row.try_get(2).map_err(err(OP))?,
            expires_ms: row.try_get(3).map_err(err(OP))?,
        }))
    }

    pub(crate) async fn touch_session(&self, token_hash: TokenHash, now_ms: i64) -> Result<()> {
        const OP: &str = "touch login session";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached("UPDATE api_sessions SET last_used_ms = $2 WHERE token_hash = $1")
            .await
            .map_err(err(OP))?;
        client
            .execute(&stmt, &[&&token_hash.0[..], &now_ms])
            .await
            .map_err(err(OP))?;
        Ok(())
    }

    pub(crate) async fn end_session(&self, token_hash: TokenHash) -> Result<Option<i64>> {
        const OP: &str = "end login session";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached("DELETE FROM api_sessions WHERE token_hash = $1 RETURNING expires_ms")
            .await
            .map_err(err(OP))?;
        client
            .query_opt(&stmt, &[&&token_hash.0[..]])
            .await
            .map_err(err(OP))?
            .map(|row| row.try_get(0).map_err(err(OP)))
            .transpose()
    }

    pub(crate) async fn session_count(&self, owner: &str, now_ms: i64) -> Result<u64> {
        const OP: &str = "count login sessions";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached(
                "SELECT COUNT(*) FROM api_sessions WHERE owner = $1 AND expires_ms > $2",
            )
            .await
            .map_err(err(OP))?;
        let count: i64 = client
            .query_one(&stmt, &[&owner, &now_ms])
            .await
            .map_err(err(OP))?
            .try_get(0)
            .map_err(err(OP))?;
        stored_count(POSTGRES, OP, count)
    }

    pub(crate) async fn purge_sessions(&self, now_ms: i64, limit: usize) -> Result<u64> {
        const OP: &str = "purge login sessions";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached(PURGE_SESSIONS)
            .await
            .map_err(err(OP))?;
        client
            .execute(&stmt, &[&now_ms, &Some(sql_limit(limit))])
            .await
            .map_err(err(OP))
    }

    pub(crate) async fn count_and_checksum(&self) -> Result<(u64, u64)> {
        const OP: &str = "checksum measurements";
        // Paged by primary key rather than one huge result: bounded memory at any size.
        const PAGE: i64 = 10_000;
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let first = client
            .prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM measurements
                 ORDER BY owner, message_id, seq LIMIT $1"
            ))
            .await
            .map_err(err(OP))?;
        let next = client
            .prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM measurements
                 WHERE (owner, message_id, seq) > ($2, $3, $4)
                 ORDER BY owner, message_id, seq LIMIT $1"
            ))
            .await
            .map_err(err(OP))?;
        let (mut count, mut sum) = (0u64, 0u64);
        let mut last: Option<(String, String, i64)> = None;
        loop {
            let rows = match &last {
                None => client.query(&first, &[&PAGE]).await,
                Some((o, m, s)) => client.query(&next, &[&PAGE, o, m, s]).await,
            }
            .map_err(err(OP))?;
            for r in &rows {
                let row = read_row(r, OP)?;
                count += 1;
                sum = sum.wrapping_add(row_hash(&row));
                last = Some((row.owner, row.message_id, i64::from(row.seq)));
            }
            if (rows.len() as i64) < PAGE {
                return Ok((count, sum));
            }
        }
    }
}

fn read_segment(r: &tokio_postgres::Row, op: &'static str) -> Result<ActivitySegment> {
    let windows: i64 = r.try_get(6).map_err(err(op))?;
    Ok(ActivitySegment {
        owner: r.try_get(0).map_err(err(op))?,
        device: r.try_get(1).map_err(err(op))?,
        start_ms: r.try_get(2).map_err(err(op))?,
        end_ms: r.try_get(3).map_err(err(op))?,
        activity: r.try_get(4).map_err(err(op))?,
        confidence: r.try_get(5).map_err(err(op))?,
        windows: u32::try_from(windows).map_err(|_| Error::Corrupt {
            engine: POSTGRES,
            op,
            what: format!("windows {windows} is not a u32"),
        })?,
        model_version: r.try_get(7).map_err(err(op))?,
    })
}

fn read_row(r: &tokio_postgres::Row, op: &'static str) -> Result<Row> {
    let seq: i64 = r.try_get(3).map_err(err(op))?;
    Ok(Row {
        owner: r.try_get(0).map_err(err(op))?,
        device: r.try_get(1).map_err(err(op))?,
        message_id: r.try_get(2).map_err(err(op))?,
        seq: u32::try_from(seq).map_err(|_| Error::Corrupt {
            engine: POSTGRES,
            op,
            what: format!("seq {seq} is not a u32"),
        })?,
        name: r.try_get(4).map_err(err(op))?,
        unit: r.try_get(5).map_err(err(op))?,
        time_ms: r.try_get(6).map_err(err(op))?,
        value: r.try_get(7).map_err(err(op))?,
        text: r.try_get(8).map_err(err(op))?,
        bool: r.try_get(9).map_err(err(op))?,
        data: r.try_get(10).map_err(err(op))?,
        sum: r.try_get(11).map_err(err(op))?,
    })
}
