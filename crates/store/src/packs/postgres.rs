//! The pack tables on PostgreSQL (see the parent module).

use super::sqlite::{LEDGER_COLUMNS, PACK_COLUMNS, PARTICIPATION_COLUMNS};
use super::{Budget, LedgerEntry, Pack, PackRelease, PackSettings, Participation, Recorded};
use crate::postgres::{err, pool_err, Postgres};
use crate::{sql_limit, stored_count, Result, POSTGRES};

fn read_pack(r: &tokio_postgres::Row, op: &'static str) -> Result<Pack> {
    Ok(Pack {
        id: r.try_get(0).map_err(err(op))?,
        buyer: r.try_get(1).map_err(err(op))?,
        title: r.try_get(2).map_err(err(op))?,
        measurement: r.try_get(3).map_err(err(op))?,
        purpose: r.try_get(4).map_err(err(op))?,
        spec: r.try_get(5).map_err(err(op))?,
        age_band: r.try_get(6).map_err(err(op))?,
        region: r.try_get(7).map_err(err(op))?,
        price_cents: r.try_get(8).map_err(err(op))?,
        currency: r.try_get(9).map_err(err(op))?,
        created_ms: r.try_get(10).map_err(err(op))?,
    })
}

fn read_participation(r: &tokio_postgres::Row, op: &'static str) -> Result<Participation> {
    Ok(Participation {
        pack_id: r.try_get(0).map_err(err(op))?,
        owner: r.try_get(1).map_err(err(op))?,
        status: r.try_get(2).map_err(err(op))?,
        joined_ms: r.try_get(3).map_err(err(op))?,
        withdrawn_ms: r.try_get(4).map_err(err(op))?,
        receipt: r.try_get(5).map_err(err(op))?,
        withdraw_receipt: r.try_get(6).map_err(err(op))?,
    })
}

fn read_ledger(r: &tokio_postgres::Row, op: &'static str) -> Result<LedgerEntry> {
    Ok(LedgerEntry {
        owner: r.try_get(0).map_err(err(op))?,
        pack_id: r.try_get(1).map_err(err(op))?,
        seq: r.try_get(2).map_err(err(op))?,
        epsilon: r.try_get(3).map_err(err(op))?,
        amount_cents: r.try_get(4).map_err(err(op))?,
        currency: r.try_get(5).map_err(err(op))?,
        at_ms: r.try_get(6).map_err(err(op))?,
    })
}

/// The ceiling and spent ε of one owner, through any client or transaction.
async fn budget_of(
    client: &impl deadpool_postgres::GenericClient,
    owner: &str,
    op: &'static str,
) -> Result<Budget> {
    let ceiling: Option<f64> = client
        .query_opt(
            "SELECT budget_ceiling FROM pack_settings WHERE owner = $1",
            &[&owner],
        )
        .await
        .map_err(err(op))?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(err(op))?;
    let spent: f64 = client
        .query_one(
            "SELECT COALESCE(SUM(epsilon), 0)::DOUBLE PRECISION FROM pack_ledger WHERE owner = $1",
            &[&owner],
        )
        .await
        .map_err(err(op))?
        .try_get(0)
        .map_err(err(op))?;
    Ok(Budget {
        ceiling: ceiling.unwrap_or(super::DEFAULT_BUDGET_CEILING),
        spent,
    })
}

impl Postgres {
    pub(crate) async fn create_pack(&self, p: &Pack) -> Result<()> {
        const OP: &str = "store pack";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        client
            .execute(
                &format!(
                    "INSERT INTO packs ({PACK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                ),
                &[
                    &p.id,
                    &p.buyer,
                    &p.title,
                    &p.measurement,
                    &p.purpose,
                    &p.spec,
                    &p.age_band,
                    &p.region,
                    &p.price_cents,
                    &p.currency,
                    &p.created_ms,
                ],
            )
            .await
            .map_err(err(OP))?;
        Ok(())
    }

    pub(crate) async fn pack(&self, id: &str) -> Result<Option<Pack>> {
        const OP: &str = "read pack";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        client
            .query_opt(
                &format!("SELECT {PACK_COLUMNS} FROM packs WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(err(OP))?
            .map(|r| read_pack(&r, OP))
            .transpose()
    }

    pub(crate) async fn packs(
        &self,
        buyer: Option<&str>,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<Pack>> {
        const OP: &str = "list packs";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        client
            .query(
                &format!(
                    "SELECT {PACK_COLUMNS} FROM packs
                     WHERE ($1::TEXT IS NULL OR buyer = $1) AND created_ms < $2
                     ORDER BY created_ms DESC, id DESC LIMIT $3"
                ),
                &[&buyer, &before_ms, &sql_limit(limit)],
            )
            .await
            .map_err(err(OP))?
            .iter()
            .map(|r| read_pack(r, OP))
            .collect()
    }

    pub(crate) async fn join_pack(&self, p: &Participation) -> Result<bool> {
        const OP: &str = "join pack";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        // A withdrawn row is replaced; a joined one is left alone.
        let changed = client
            .execute(
                &format!(
                    "INSERT INTO pack_participants ({PARTICIPATION_COLUMNS})
                     VALUES ($1, $2, 'joined', $3, NULL, $4, NULL)
                     ON CONFLICT (pack_id, owner) DO UPDATE SET
                         status = 'joined', joined_ms = excluded.joined_ms, withdrawn_ms = NULL,
                         receipt = excluded.receipt, withdraw_receipt = NULL
                     WHERE pack_participants.status = 'withdrawn'"
                ),
                &[&p.pack_id, &p.owner, &p.joined_ms, &p.receipt],
            )
            .await
            .map_err(err(OP))?;
        Ok(changed == 1)
    }

    pub(crate) async fn withdraw_pack(
        &self,
        pack_id: &str,
        owner: &str,
        withdrawn_ms: i64,
        receipt: &str,
    ) -> Result<bool> {
        const OP: &str = "withdraw from pack";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let changed = client
            .execute(
                "UPDATE pack_participants
                 SET status = 'withdrawn', withdrawn_ms = $3, withdraw_receipt = $4
                 WHERE pack_id = $1 AND owner = $2 AND status = 'joined'",
                &[&pack_id, &owner, &withdrawn_ms, &receipt],
            )
            .await
            .map_err(err(OP))?;
        Ok(changed == 1)
    }

    pub(crate) async fn owner_participations(
        &self,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Participation>> {
        const OP: &str = "list participations";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        client
            .query(
                &format!(
                    "SELECT {PARTICIPATION_COLUMNS} FROM pack_participants WHERE owner = $1
                     ORDER BY joined_ms DESC, pack_id DESC LIMIT $2"
                ),
                &[&owner, &sql_limit(limit)],
            )
            .await
            .map_err(err(OP))?
            .iter()
            .map(|r| read_participation(r, OP))
            .collect()
    }

    pub(crate) async fn pack_participants(
        &self,
        pack_id: &str,
        limit: usize,
    ) -> Result<Vec<String>> {
        const OP: &str = "list pack participants";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        client
            .query(
                "SELECT owner FROM pack_participants WHERE pack_id = $1 AND status = 'joined'
                 ORDER BY owner LIMIT $2",
                &[&pack_id, &sql_limit(limit)],
            )
            .await
            .map_err(err(OP))?
            .iter()
            .map(|r| r.try_get(0).map_err(err(OP)))
            .collect()
    }

    pub(crate) async fn pack_settings(&self, owner: &str) -> Result<Option<PackSettings>> {
        const OP: &str = "read pack settings";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let Some(r) = client
            .query_opt(
                "SELECT budget_ceiling, age_band, region FROM pack_settings WHERE owner = $1",
                &[&owner],
            )
            .await
            .map_err(err(OP))?
        else {
            return Ok(None);
        };
        Ok(Some(PackSettings {
            budget_ceiling: r.try_get(0).map_err(err(OP))?,
            age_band: r.try_get(1).map_err(err(OP))?,
            region: r.try_get(2).map_err(err(OP))?,
        }))
    }

    pub(crate) async fn set_pack_settings(&self, owner: &str, s: &PackSettings) -> Result<()> {
        const OP: &str = "store pack settings";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        client
            .execute(
                "INSERT INTO pack_settings (owner, budget_ceiling, age_band, region)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (owner) DO UPDATE SET budget_ceiling = excluded.budget_ceiling,
                     age_band = excluded.age_band, region = excluded.region",
                &[&owner, &s.budget_ceiling, &s.age_band, &s.region],
            )
            .await
            .map_err(err(OP))?;
        Ok(())
    }

    pub(crate) async fn budgets(&self, owners: &[String]) -> Result<Vec<Budget>> {
        const OP: &str = "read privacy budgets";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        let mut budgets = Vec::with_capacity(owners.len());
        for owner in owners {
            budgets.push(budget_of(&client, owner, OP).await?);
        }
        Ok(budgets)
    }

    pub(crate) async fn record_release(
        &self,
        release: &PackRelease,
        ledger: &[LedgerEntry],
    ) -> Result<Recorded> {
        const OP: &str = "record pack release";
        let participants = i64::try_from(release.participants).unwrap_or(i64::MAX);
        let mut client = self.pool.get().await.map_err(pool_err(OP))?;
        let tx = client.transaction().await.map_err(err(OP))?;
        // Releases of one pack are numbered one at a time on every node.
        tx.execute(
            "SELECT id FROM packs WHERE id = $1 FOR UPDATE",
            &[&release.pack_id],
        )
        .await
        .map_err(err(OP))?;
        let last: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(seq), 0)::BIGINT FROM pack_releases WHERE pack_id = $1",
                &[&release.pack_id],
            )
            .await
            .map_err(err(OP))?
            .try_get(0)
            .map_err(err(OP))?;
        if last != release.seq - 1 {
            return Ok(Recorded::SeqTaken);
        }
        // Every participant's budget is checked and charged under a lock on their settings row
        // (made here if they never set one), taken in name order so that two releases charging
        // the same owners cannot deadlock or both pass.
        let mut owners: Vec<&str> = ledger.iter().map(|e| e.owner.as_str()).collect();
        owners.sort_unstable();
        for owner in &owners {
            tx.execute(
                "INSERT INTO pack_settings (owner, budget_ceiling) VALUES ($1, $2)
                 ON CONFLICT (owner) DO NOTHING",
                &[owner, &super::DEFAULT_BUDGET_CEILING],
            )
            .await
            .map_err(err(OP))?;
            tx.execute(
                "SELECT owner FROM pack_settings WHERE owner = $1 FOR UPDATE",
                &[owner],
            )
            .await
            .map_err(err(OP))?;
        }
        for e in ledger {
            let budget = budget_of(&tx, &e.owner, OP).await?;
            if budget.spent + e.epsilon > budget.ceiling {
                return Ok(Recorded::OverBudget(e.owner.clone()));
            }
        }
        tx.execute(
            "INSERT INTO pack_releases (pack_id, seq, released_ms, participants, body)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &release.pack_id,
                &release.seq,
                &release.released_ms,
                &participants,
                &release.body,
            ],
        )
        .await
        .map_err(err(OP))?;
        let insert = tx
            .prepare(&format!(
                "INSERT INTO pack_ledger ({LEDGER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .await
            .map_err(err(OP))?;
        for e in ledger {
            tx.execute(
                &insert,
                &[
                    &e.owner,
                    &e.pack_id,
                    &e.seq,
                    &e.epsilon,
                    &e.amount_cents,
                    &e.currency,
                    &e.at_ms,
                ],
            )
            .await
            .map_err(err(OP))?;
        }
        tx.commit().await.map_err(err(OP))?;
        Ok(Recorded::Stored)
    }

    pub(crate) async fn pack_releases(
        &self,
        pack_id: &str,
        limit: usize,
    ) -> Result<Vec<PackRelease>> {
        const OP: &str = "list pack releases";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        client
            .query(
                "SELECT pack_id, seq, released_ms, participants, body FROM pack_releases
                 WHERE pack_id = $1 ORDER BY seq LIMIT $2",
                &[&pack_id, &sql_limit(limit)],
            )
            .await
            .map_err(err(OP))?
            .iter()
            .map(|r| {
                let n: i64 = r.try_get(3).map_err(err(OP))?;
                Ok(PackRelease {
                    pack_id: r.try_get(0).map_err(err(OP))?,
                    seq: r.try_get(1).map_err(err(OP))?,
                    released_ms: r.try_get(2).map_err(err(OP))?,
                    participants: stored_count(POSTGRES, OP, n)?,
                    body: r.try_get(4).map_err(err(OP))?,
                })
            })
            .collect()
    }

    pub(crate) async fn owner_ledger(&self, owner: &str, limit: usize) -> Result<Vec<LedgerEntry>> {
        const OP: &str = "list pack ledger";
        let client = self.pool.get().await.map_err(pool_err(OP))?;
        client
            .query(
                &format!(
                    "SELECT {LEDGER_COLUMNS} FROM pack_ledger WHERE owner = $1
                     ORDER BY at_ms DESC, pack_id DESC, seq DESC LIMIT $2"
                ),
                &[&owner, &sql_limit(limit)],
            )
            .await
            .map_err(err(OP))?
            .iter()
            .map(|r| read_ledger(r, OP))
            .collect()
    }
}
