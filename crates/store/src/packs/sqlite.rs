//! The pack tables on SQLite (see the parent module).

use rusqlite::{params, OptionalExtension};

use super::{Budget, LedgerEntry, Pack, PackRelease, PackSettings, Participation, Recorded};
use crate::sqlite::{err, Sqlite};
use crate::{sql_limit, stored_count, Result, SQLITE};

pub(super) const PACK_COLUMNS: &str = "id, buyer, title, measurement, purpose, spec, age_band, \
     region, price_cents, currency, created_ms";
pub(super) const PARTICIPATION_COLUMNS: &str =
    "pack_id, owner, status, joined_ms, withdrawn_ms, receipt, withdraw_receipt";
pub(super) const LEDGER_COLUMNS: &str =
    "owner, pack_id, seq, epsilon, amount_cents, currency, at_ms";

fn read_pack(r: &rusqlite::Row<'_>) -> rusqlite::Result<Pack> {
    Ok(Pack {
        id: r.get(0)?,
        buyer: r.get(1)?,
        title: r.get(2)?,
        measurement: r.get(3)?,
        purpose: r.get(4)?,
        spec: r.get(5)?,
        age_band: r.get(6)?,
        region: r.get(7)?,
        price_cents: r.get(8)?,
        currency: r.get(9)?,
        created_ms: r.get(10)?,
    })
}

fn read_participation(r: &rusqlite::Row<'_>) -> rusqlite::Result<Participation> {
    Ok(Participation {
        pack_id: r.get(0)?,
        owner: r.get(1)?,
        status: r.get(2)?,
        joined_ms: r.get(3)?,
        withdrawn_ms: r.get(4)?,
        receipt: r.get(5)?,
        withdraw_receipt: r.get(6)?,
    })
}

fn read_ledger(r: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerEntry> {
    Ok(LedgerEntry {
        owner: r.get(0)?,
        pack_id: r.get(1)?,
        seq: r.get(2)?,
        epsilon: r.get(3)?,
        amount_cents: r.get(4)?,
        currency: r.get(5)?,
        at_ms: r.get(6)?,
    })
}

/// The ceiling and spent ε of one owner, inside a connection or transaction.
fn budget_of(conn: &rusqlite::Connection, owner: &str) -> rusqlite::Result<Budget> {
    let ceiling: Option<f64> = conn
        .query_row(
            "SELECT budget_ceiling FROM pack_settings WHERE owner = ?1",
            params![owner],
            |r| r.get(0),
        )
        .optional()?;
    let spent: f64 = conn.query_row(
        "SELECT COALESCE(SUM(epsilon), 0) FROM pack_ledger WHERE owner = ?1",
        params![owner],
        |r| r.get(0),
    )?;
    Ok(Budget {
        ceiling: ceiling.unwrap_or(super::DEFAULT_BUDGET_CEILING),
        spent,
    })
}

impl Sqlite {
    pub(crate) async fn create_pack(&self, p: Pack) -> Result<()> {
        self.write("store pack", move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO packs ({PACK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                params![
                    p.id,
                    p.buyer,
                    p.title,
                    p.measurement,
                    p.purpose,
                    p.spec,
                    p.age_band,
                    p.region,
                    p.price_cents,
                    p.currency,
                    p.created_ms
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn pack(&self, id: String) -> Result<Option<Pack>> {
        const OP: &str = "read pack";
        self.read(OP, move |conn| {
            conn.query_row(
                &format!("SELECT {PACK_COLUMNS} FROM packs WHERE id = ?1"),
                params![id],
                read_pack,
            )
            .optional()
            .map_err(err(OP))
        })
        .await
    }

    pub(crate) async fn packs(
        &self,
        buyer: Option<String>,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<Pack>> {
        const OP: &str = "list packs";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {PACK_COLUMNS} FROM packs
                     WHERE (?1 IS NULL OR buyer = ?1) AND created_ms < ?2
                     ORDER BY created_ms DESC, id DESC LIMIT ?3"
                ))
                .map_err(err(OP))?;
            let rows = stmt
                .query_map(params![buyer, before_ms, sql_limit(limit)], read_pack)
                .map_err(err(OP))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err(OP))?;
            Ok(rows)
        })
        .await
    }

    pub(crate) async fn join_pack(&self, p: Participation) -> Result<bool> {
        self.write("join pack", move |conn| {
            // A withdrawn row is replaced; a joined one is left alone.
            let changed = conn.execute(
                &format!(
                    "INSERT INTO pack_participants ({PARTICIPATION_COLUMNS})
                     VALUES (?1, ?2, 'joined', ?3, NULL, ?4, NULL)
                     ON CONFLICT (pack_id, owner) DO UPDATE SET
                         status = 'joined', joined_ms = excluded.joined_ms, withdrawn_ms = NULL,
                         receipt = excluded.receipt, withdraw_receipt = NULL
                     WHERE pack_participants.status = 'withdrawn'"
                ),
                params![p.pack_id, p.owner, p.joined_ms, p.receipt],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    pub(crate) async fn withdraw_pack(
        &self,
        pack_id: String,
        owner: String,
        withdrawn_ms: i64,
        receipt: String,
    ) -> Result<bool> {
        self.write("withdraw from pack", move |conn| {
            let changed = conn.execute(
                "UPDATE pack_participants
                 SET status = 'withdrawn', withdrawn_ms = ?3, withdraw_receipt = ?4
                 WHERE pack_id = ?1 AND owner = ?2 AND status = 'joined'",
                params![pack_id, owner, withdrawn_ms, receipt],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    pub(crate) async fn owner_participations(
        &self,
        owner: String,
        limit: usize,
    ) -> Result<Vec<Participation>> {
        const OP: &str = "list participations";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {PARTICIPATION_COLUMNS} FROM pack_participants WHERE owner = ?1
                     ORDER BY joined_ms DESC, pack_id DESC LIMIT ?2"
                ))
                .map_err(err(OP))?;
            let rows = stmt
                .query_map(params![owner, sql_limit(limit)], read_participation)
                .map_err(err(OP))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err(OP))?;
            Ok(rows)
        })
        .await
    }

    pub(crate) async fn pack_participants(
        &self,
        pack_id: String,
        limit: usize,
    ) -> Result<Vec<String>> {
        const OP: &str = "list pack participants";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT owner FROM pack_participants WHERE pack_id = ?1 AND status = 'joined'
                     ORDER BY owner LIMIT ?2",
                )
                .map_err(err(OP))?;
            let rows = stmt
                .query_map(params![pack_id, sql_limit(limit)], |r| r.get(0))
                .map_err(err(OP))?
                .collect::<rusqlite::Result<Vec<String>>>()
                .map_err(err(OP))?;
            Ok(rows)
        })
        .await
    }

    pub(crate) async fn pack_settings(&self, owner: String) -> Result<Option<PackSettings>> {
        const OP: &str = "read pack settings";
        self.read(OP, move |conn| {
            conn.query_row(
                "SELECT budget_ceiling, age_band, region FROM pack_settings WHERE owner = ?1",
                params![owner],
                |r| {
                    Ok(PackSettings {
                        budget_ceiling: r.get(0)?,
                        age_band: r.get(1)?,
                        region: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(err(OP))
        })
        .await
    }

    pub(crate) async fn set_pack_settings(&self, owner: String, s: PackSettings) -> Result<()> {
        self.write("store pack settings", move |conn| {
            conn.execute(
                "INSERT INTO pack_settings (owner, budget_ceiling, age_band, region)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (owner) DO UPDATE SET budget_ceiling = excluded.budget_ceiling,
                     age_band = excluded.age_band, region = excluded.region",
                params![owner, s.budget_ceiling, s.age_band, s.region],
            )?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn budgets(&self, owners: Vec<String>) -> Result<Vec<Budget>> {
        const OP: &str = "read privacy budgets";
        self.read(OP, move |conn| {
            owners
                .iter()
                .map(|o| budget_of(conn, o).map_err(err(OP)))
                .collect()
        })
        .await
    }

    pub(crate) async fn record_release(
        &self,
        release: PackRelease,
        ledger: Vec<LedgerEntry>,
    ) -> Result<Recorded> {
        let participants = i64::try_from(release.participants).unwrap_or(i64::MAX);
        self.write("record pack release", move |conn| {
            let tx = conn.transaction()?;
            let last: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM pack_releases WHERE pack_id = ?1",
                params![release.pack_id],
                |r| r.get(0),
            )?;
            if last != release.seq - 1 {
                return Ok(Recorded::SeqTaken);
            }
            for e in &ledger {
                let budget = budget_of(&tx, &e.owner)?;
                if budget.spent + e.epsilon > budget.ceiling {
                    return Ok(Recorded::OverBudget(e.owner.clone()));
                }
            }
            tx.execute(
                "INSERT INTO pack_releases (pack_id, seq, released_ms, participants, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    release.pack_id,
                    release.seq,
                    release.released_ms,
                    participants,
                    release.body
                ],
            )?;
            {
                let mut insert = tx.prepare_cached(&format!(
                    "INSERT INTO pack_ledger ({LEDGER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ))?;
                for e in &ledger {
                    insert.execute(params![
                        e.owner,
                        e.pack_id,
                        e.seq,
                        e.epsilon,
                        e.amount_cents,
                        e.currency,
                        e.at_ms
                    ])?;
                }
            }
            tx.commit()?;
            Ok(Recorded::Stored)
        })
        .await
    }

    pub(crate) async fn pack_releases(
        &self,
        pack_id: String,
        limit: usize,
    ) -> Result<Vec<PackRelease>> {
        const OP: &str = "list pack releases";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT pack_id, seq, released_ms, participants, body FROM pack_releases
                     WHERE pack_id = ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(err(OP))?;
            let rows = stmt
                .query_map(params![pack_id, sql_limit(limit)], |r| {
                    Ok((
                        PackRelease {
                            pack_id: r.get(0)?,
                            seq: r.get(1)?,
                            released_ms: r.get(2)?,
                            participants: 0,
                            body: r.get(4)?,
                        },
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(err(OP))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err(OP))?;
            rows.into_iter()
                .map(|(mut release, n)| {
                    release.participants = stored_count(SQLITE, OP, n)?;
                    Ok(release)
                })
                .collect()
        })
        .await
    }

    pub(crate) async fn owner_ledger(
        &self,
        owner: String,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>> {
        const OP: &str = "list pack ledger";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {LEDGER_COLUMNS} FROM pack_ledger WHERE owner = ?1
                     ORDER BY at_ms DESC, pack_id DESC, seq DESC LIMIT ?2"
                ))
                .map_err(err(OP))?;
            let rows = stmt
                .query_map(params![owner, sql_limit(limit)], read_ledger)
                .map_err(err(OP))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err(OP))?;
            Ok(rows)
        })
        .await
    }
}
