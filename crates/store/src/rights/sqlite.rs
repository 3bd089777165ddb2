//! The rights tables on SQLite (see the parent module).

use rusqlite::{params, OptionalExtension};

use super::{join, split, AuditRecord, Consent, ConsentReceipt, DecisionRecord};
use crate::sqlite::{err, Sqlite};
use crate::{sql_limit, stored_count, Result, SQLITE};

const CONSENT_COLUMNS: &str = "id, service, owner, types, purpose, retention_days, third_parties, \
     status, created_ms, decided_ms";

const RECEIPT_COLUMNS: &str = "receipt_id, consent_id, owner, status, jws, created_ms";

const AUDIT_COLUMNS: &str = "id, owner, actor_kind, actor, channel, detail, device, consent_id, \
     count, first_ms, last_ms";

fn read_consent(r: &rusqlite::Row<'_>) -> rusqlite::Result<Consent> {
    Ok(Consent {
        id: r.get(0)?,
        service: r.get(1)?,
        owner: r.get(2)?,
        types: split(&r.get::<_, String>(3)?),
        purpose: r.get(4)?,
        retention_days: r.get(5)?,
        third_parties: split(&r.get::<_, String>(6)?),
        status: r.get(7)?,
        created_ms: r.get(8)?,
        decided_ms: r.get(9)?,
    })
}

fn read_receipt(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConsentReceipt> {
    Ok(ConsentReceipt {
        receipt_id: r.get(0)?,
        consent_id: r.get(1)?,
        owner: r.get(2)?,
        status: r.get(3)?,
        jws: r.get(4)?,
        created_ms: r.get(5)?,
    })
}

impl Sqlite {
    pub(crate) async fn installation_secret(
        &self,
        name: String,
        candidate: Vec<u8>,
    ) -> Result<Vec<u8>> {
        self.write("keep installation secret", move |conn| {
            conn.execute(
                "INSERT INTO installation_secrets (name, secret, created_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name, candidate, crate::sqlite::now_ms()],
            )?;
            conn.query_row(
                "SELECT secret FROM installation_secrets WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
        })
        .await
    }

    pub(crate) async fn create_consent(&self, c: Consent) -> Result<bool> {
        self.write("store consent request", move |conn| {
            let tx = conn.transaction()?;
            let pending: i64 = tx.query_row(
                "SELECT COUNT(*) FROM consents WHERE service = ?1 AND status = 'pending'",
                params![c.service],
                |r| r.get(0),
            )?;
            if pending as u64 >= super::MAX_PENDING_PER_SERVICE {
                return Ok(false);
            }
            tx.execute(
                &format!("INSERT INTO consents ({CONSENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    c.id,
                    c.service,
                    c.owner,
                    join(&c.types),
                    c.purpose,
                    c.retention_days,
                    join(&c.third_parties),
                    c.status,
                    c.created_ms,
                    c.decided_ms
                ],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn consent(&self, id: String) -> Result<Option<Consent>> {
        const OP: &str = "read consent";
        self.read(OP, move |conn| {
            conn.query_row(
                &format!("SELECT {CONSENT_COLUMNS} FROM consents WHERE id = ?1"),
                params![id],
                read_consent,
            )
            .optional()
            .map_err(err(OP))
        })
        .await
    }

    pub(crate) async fn consents_by(
        &self,
        column: &'static str,
        who: String,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<Consent>> {
        const OP: &str = "list consents";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {CONSENT_COLUMNS} FROM consents WHERE {column} = ?1 AND created_ms < ?2
                     ORDER BY created_ms DESC, id DESC LIMIT ?3"
                ))
                .map_err(err(OP))?;
            let rows = stmt
                .query_map(params![who, before_ms, sql_limit(limit)], read_consent)
                .map_err(err(OP))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err(OP))?;
            Ok(rows)
        })
        .await
    }

    pub(crate) async fn granted_consent(
        &self,
        service: String,
        owner: String,
    ) -> Result<Option<Consent>> {
        const OP: &str = "read granted consent";
        self.read(OP, move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {CONSENT_COLUMNS} FROM consents
                     WHERE service = ?1 AND owner = ?2 AND status = 'granted'
                     ORDER BY decided_ms DESC, id DESC LIMIT 1"
                ),
                params![service, owner],
                read_consent,
            )
            .optional()
            .map_err(err(OP))
        })
        .await
    }

    pub(crate) async fn granted_consents(&self, limit: usize) -> Result<Vec<Consent>> {
        const OP: &str = "read granted consents";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {CONSENT_COLUMNS} FROM consents WHERE status = 'granted'
                     ORDER BY decided_ms, id LIMIT ?1"
                ))
                .map_err(err(OP))?;
            let rows = stmt
                .query_map(params![sql_limit(limit)], read_consent)
                .map_err(err(OP))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err(OP))?;
            Ok(rows)
        })
        .await
    }

    pub(crate) async fn consent_version(&self) -> Result<i64> {
        const OP: &str = "read consent version";
        self.read(OP, move |conn| {
            conn.prepare_cached("SELECT version FROM consent_version WHERE id = 1")
                .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
                .map_err(err(OP))
        })
        .await
    }

    pub(crate) async fn decide_consent(&self, d: DecisionRecord) -> Result<bool> {
        self.write("store consent decision", move |conn| {
            let tx = conn.transaction()?;
            let r = &d.receipt;
            let moved = tx.execute(
                "UPDATE consents SET status = ?1, decided_ms = ?2
                 WHERE id = ?3 AND owner = ?4 AND status = ?5",
                params![d.to, r.created_ms, d.consent_id, d.owner, d.from],
            )?;
            if moved == 0 {
                return Ok(false);
            }
            tx.execute(
                &format!("INSERT INTO consent_receipts ({RECEIPT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![r.receipt_id, r.consent_id, r.owner, r.status, r.jws, r.created_ms],
            )?;
            tx.execute("UPDATE consent_version SET version = version + 1 WHERE id = 1", [])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn receipts_by(
        &self,
        column: &'static str,
        who: String,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<ConsentReceipt>> {
        const OP: &str = "list consent receipts";
        // A consent's receipts read oldest first (the order of its decisions); an owner's
        // newest first, as every list of an owner.
        let order = if column == "consent_id" {
            "ASC"
        } else {
            "DESC"
        };
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {RECEIPT_COLUMNS} FROM consent_receipts
                     WHERE {column} = ?1 AND created_ms < ?2
                     ORDER BY created_ms {order}, receipt_id {order} LIMIT ?3"
                ))
                .map_err(err(OP))?;
            let rows = stmt
                .query_map(params![who, before_ms, sql_limit(limit)], read_receipt)
                .map_err(err(OP))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err(OP))?;
            Ok(rows)
        })
        .await
    }

    pub(crate) async fn append_audit(
        &self,
        entries: Vec<AuditRecord>,
        recorded_ms: i64,
    ) -> Result<()> {
        self.write("append audit entries", move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO audit_log (owner, actor_kind, actor, channel, detail, device,
                        consent_id, count, first_ms, last_ms, recorded_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?;
                for e in &entries {
                    stmt.execute(params![
                        e.owner,
                        e.actor_kind,
                        e.actor,
                        e.channel,
                        e.detail,
                        e.device,
                        e.consent_id,
                        e.count as i64,
                        e.first_ms,
                        e.last_ms,
                        recorded_ms
                    ])?;
                }
            }
            tx.commit()
        })
        .await
    }

    pub(crate) async fn owner_audit(
        &self,
        owner: String,
        before_id: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        const OP: &str = "read audit log";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE owner = ?1 AND id < ?2
                     ORDER BY id DESC LIMIT ?3"
                ))
                .map_err(err(OP))?;
            let rows = stmt
                .query_map(params![owner, before_id, sql_limit(limit)], |r| {
                    Ok((
                        AuditRecord {
                            id: r.get(0)?,
                            owner: r.get(1)?,
                            actor_kind: r.get(2)?,
                            actor: r.get(3)?,
                            channel: r.get(4)?,
                            detail: r.get(5)?,
                            device: r.get(6)?,
                            consent_id: r.get(7)?,
                            count: 0,
                            first_ms: r.get(9)?,
                            last_ms: r.get(10)?,
                        },
                        r.get::<_, i64>(8)?,
                    ))
                })
                .map_err(err(OP))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err(OP))?;
            rows.into_iter()
                .map(|(mut e, count)| {
                    e.count = stored_count(SQLITE, OP, count)?;
                    Ok(e)
                })
                .collect()
        })
        .await
    }
}
