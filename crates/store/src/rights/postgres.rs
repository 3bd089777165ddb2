//! The rights tables on PostgreSQL (see the parent module).

use super::{join, split, AuditRecord, Consent, ConsentReceipt, DecisionRecord};
use crate::postgres::{err, pool_err, Postgres};
use crate::{sql_limit, stored_count, Error, Result, POSTGRES};

const CONSENT_COLUMNS: &str = "id, service, owner, types, purpose, retention_days, third_parties, \
     status, created_ms, decided_ms";

const RECEIPT_COLUMNS: &str = "receipt_id, consent_id, owner, status, jws, created_ms";

const AUDIT_COLUMNS: &str = "id, owner, actor_kind, actor, channel, detail, device, consent_id, \
     count, first_ms, last_ms";

fn read_consent(r: &tokio_postgres::Row, op: &'static str) -> Result<Consent> {
    let retention: i32 = r.try_get(5).map_err(err(op))?;
    Ok(Consent {
        id: r.try_get(0).map_err(err(op))?,
        service: r.try_get(1).map_err(err(op))?,
        owner: r.try_get(2).map_err(err(op))?,
        types: split(r.try_get(3).map_err(err(op))?),
        purpose: r.try_get(4).map_err(err(op))?,
        retention_days: u32::try_from(retention).map_err(|_| Error::Corrupt {
            engine: POSTGRES,
            op,
            what: format!("retention of {retention} days"),
        })?,
        third_parties: split(r.try_get(6).map_err(err(op))?),
        status: r.try_get(7).map_err(err(op))?,
        created_ms: r.try_get(8).map_err(err(op))?,
        decided_ms: r.try_get(9).map_err(err(op))?,
    })
}

fn read_receipt(r: &tokio_postgres::Row, op: &'static str) -> Result<ConsentReceipt> {
    Ok(ConsentReceipt {
        receipt_id: r.try_get(0).map_err(err(op))?,
        consent_id: r.try_get(1).map_err(err(op))?,
        owner: r.try_get(2).map_err(err(op))?,
        status: r.try_get(3).map_err(err(op))?,
        jws: r.try_get(4).map_err(err(op))?,
        created_ms: r.try_get(5).map_err(err(op))?,
    })
}

impl Postgres {
    pub(crate) async fn installation_secret(
        &self,
        name: &str,
        candidate: &[u8],
    ) -> Result<Vec<u8>> {
        const OP: &str = "keep installation secret";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        // Two nodes starting at once both insert; the primary key keeps the first, and both
        // read that one back.
        client
            .execute(
                "INSERT INTO installation_secrets (name, secret, created_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &candidate, &crate::sqlite::now_ms()],
            )
            .await
            .map_err(err(OP))?;
        let row = client
            .query_one(
                "SELECT secret FROM installation_secrets WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(err(OP))?;
        row.try_get(0).map_err(err(OP))
    }

    pub(crate) async fn create_consent(&self, c: &Consent) -> Result<bool> {
        const OP: &str = "store consent request";
        let mut client = self.pool.get().await.map_err(pool_err(OP))?;
        let tx = client.transaction().await.map_err(err(OP))?;
        // One service's requests are counted and inserted one at a time on every node.
        tx.execute(
            "SELECT pg_advisory_xact_lock(1668248436, hashtext($1))",
            &[&c.service],
        )
        .await
        .map_err(err(OP))?;
        let pending: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM consents WHERE service = $1 AND status = 'pending'",
                &[&c.service],
            )
            .await
            .map_err(err(OP))?
            .try_get(0)
            .map_err(err(OP))?;
        if stored_count(POSTGRES, OP, pending)? >= super::MAX_PENDING_PER_SERVICE {
            return Ok(false);
        }
        let retention = i32::try_from(c.retention_days).unwrap_or(i32::MAX);
        tx.execute(
            &format!(
                "INSERT INTO consents ({CONSENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            &[
                &c.id,
                &c.service,
                &c.owner,
                &join(&c.types),
                &c.purpose,
                &retention,
                &join(&c.third_parties),
                &c.status,
                &c.created_ms,
                &c.decided_ms,
            ],
        )
        .await
        .map_err(err(OP))?;
        tx.commit().await.map_err(err(OP))?;
        Ok(true)
    }

    pub(crate) async fn consent(&self, id: &str) -> Result<Option<Consent>> {
        const OP: &str = "read consent";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let row = client
            .query_opt(
                &format!("SELECT {CONSENT_COLUMNS} FROM consents WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(err(OP))?;
        row.map(|r| read_consent(&r, OP)).transpose()
    }

    pub(crate) async fn consents_by(
        &self,
        column: &'static str,
        who: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<Consent>> {
        const OP: &str = "list consents";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let rows = client
            .query(
                &format!(
                    "SELECT {CONSENT_COLUMNS} FROM consents WHERE {column} = $1 AND created_ms < $2
                     ORDER BY created_ms DESC, id DESC LIMIT $3"
                ),
                &[&who, &before_ms, &sql_limit(limit)],
            )
            .await
            .map_err(err(OP))?;
        rows.iter().map(|r| read_consent(r, OP)).collect()
    }

    pub(crate) async fn granted_consent(
        &self,
        service: &str,
        owner: &str,
    ) -> Result<Option<Consent>> {
        const OP: &str = "read granted consent";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {CONSENT_COLUMNS} FROM consents
                     WHERE service = $1 AND owner = $2 AND status = 'granted'
                     ORDER BY decided_ms DESC, id DESC LIMIT 1"
                ),
                &[&service, &owner],
            )
            .await
            .map_err(err(OP))?;
        row.map(|r| read_consent(&r, OP)).transpose()
    }

    pub(crate) async fn granted_consents(&self, limit: usize) -> Result<Vec<Consent>> {
        const OP: &str = "read granted consents";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let rows = client
            .query(
                &format!(
                    "SELECT {CONSENT_COLUMNS} FROM consents WHERE status = 'granted'
                     ORDER BY decided_ms, id LIMIT $1"
                ),
                &[&sql_limit(limit)],
            )
            .await
            .map_err(err(OP))?;
        rows.iter().map(|r| read_consent(r, OP)).collect()
    }

    pub(crate) async fn consent_version(&self) -> Result<i64> {
        const OP: &str = "read consent version";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let stmt = client
            .prepare_cached("SELECT version FROM consent_version WHERE id = 1")
            .await
            .map_err(err(OP))?;
        client
            .query_one(&stmt, &[])
            .await
            .map_err(err(OP))?
            .try_get(0)
            .map_err(err(OP))
    }

    pub(crate) async fn decide_consent(&self, d: &DecisionRecord) -> Result<bool> {
        const OP: &str = "store consent decision";
        let mut client = self.pool.get().await.map_err(pool_err(OP))?;
        let tx = client.transaction().await.map_err(err(OP))?;
        let r = &d.receipt;
        let moved = tx
            .execute(
                "UPDATE consents SET status = $1, decided_ms = $2
                 WHERE id = $3 AND owner = $4 AND status = $5",
                &[&d.to, &r.created_ms, &d.consent_id, &d.owner, &d.from],
            )
            .await
            .map_err(err(OP))?;
        if moved == 0 {
            return Ok(false);
        }
        tx.execute(
            &format!(
                "INSERT INTO consent_receipts ({RECEIPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            &[
                &r.receipt_id,
                &r.consent_id,
                &r.owner,
                &r.status,
                &r.jws,
                &r.created_ms,
            ],
        )
        .await
        .map_err(err(OP))?;
        tx.execute(
            "UPDATE consent_version SET version = version + 1 WHERE id = 1",
            &[],
        )
        .await
        .map_err(err(OP))?;
        tx.commit().await.map_err(err(OP))?;
        Ok(true)
    }

    pub(crate) async fn receipts_by(
        &self,
        column: &'static str,
        who: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<ConsentReceipt>> {
        const OP: &str = "list consent receipts";
        let order = if column == "consent_id" {
            "ASC"
        } else {
            "DESC"
        };
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let rows = client
            .query(
                &format!(
                    "SELECT {RECEIPT_COLUMNS} FROM consent_receipts
                     WHERE {column} = $1 AND created_ms < $2
                     ORDER BY created_ms {order}, receipt_id {order} LIMIT $3"
                ),
                &[&who, &before_ms, &sql_limit(limit)],
            )
            .await
            .map_err(err(OP))?;
        rows.iter().map(|r| read_receipt(r, OP)).collect()
    }

    pub(crate) async fn append_audit(
        &self,
        entries: &[AuditRecord],
        recorded_ms: i64,
    ) -> Result<()> {
        const OP: &str = "append audit entries";
        let mut client = self.pool.get().await.map_err(pool_err(OP))?;
        let tx = client.transaction().await.map_err(err(OP))?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO audit_log (owner, actor_kind, actor, channel, detail, device,
                    consent_id, count, first_ms, last_ms, recorded_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .await
            .map_err(err(OP))?;
        for e in entries {
            let count = e.count as i64;
            tx.execute(
                &stmt,
                &[
                    &e.owner,
                    &e.actor_kind,
                    &e.actor,
                    &e.channel,
                    &e.detail,
                    &e.device,
                    &e.consent_id,
                    &count,
                    &e.first_ms,
                    &e.last_ms,
                    &recorded_ms,
                ],
            )
            .await
            .map_err(err(OP))?;
        }
        tx.commit().await.map_err(err(OP))
    }

    pub(crate) async fn owner_audit(
        &self,
        owner: &str,
        before_id: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        const OP: &str = "read audit log";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let rows = client
            .query(
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE owner = $1 AND id < $2
                     ORDER BY id DESC LIMIT $3"
                ),
                &[&owner, &before_id, &sql_limit(limit)],
            )
            .await
            .map_err(err(OP))?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: r.try_get(0).map_err(err(OP))?,
                    owner: r.try_get(1).map_err(err(OP))?,
                    actor_kind: r.try_get(2).map_err(err(OP))?,
                    actor: r.try_get(3).map_err(err(OP))?,
                    channel: r.try_get(4).map_err(err(OP))?,
                    detail: r.try_get(5).map_err(err(OP))?,
                    device: r.try_get(6).map_err(err(OP))?,
                    consent_id: r.try_get(7).map_err(err(OP))?,
                    count: stored_count(POSTGRES, OP, r.try_get(8).map_err(err(OP))?)?,
                    first_ms: r.try_get(9).map_err(err(OP))?,
                    last_ms: r.try_get(10).map_err(err(OP))?,
                })
            })
            .collect()
    }
}
