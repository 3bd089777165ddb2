//! Pooled data packs (docs/packs.md, docs/store.md): the packs buyers define, the owners who
//! take part (with their signed receipts), each release's published body, and the ledger of what
//! every release cost each participant in ε and paid them.
//!
//! What a release computes is `tributary_rights::pack`; this module keeps its inputs and
//! outcomes so that every node sharing the store agrees on them.
//!
//! Invariants:
//! - A pack's releases are numbered 1, 2, … with no gap: [`Store::record_release`] stores
//!   release `seq` only when `seq - 1` is the last one, so two nodes releasing at once cannot
//!   both succeed.
//! - No owner's spent ε goes over their ceiling: the same call checks every participant's
//!   ledger against their ceiling in the transaction that charges them (on PostgreSQL under a
//!   lock on the owners' settings rows, taken in name order; on SQLite under the one writer).

mod postgres;
mod sqlite;

use crate::{Error, Result, Store};

/// The ε an owner's data may be spent on in all, until the owner sets another ceiling.
pub const DEFAULT_BUDGET_CEILING: f64 = 10.0;

/// A pack as a buyer defined it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pack {
    pub id: String,
    /// The service that defined it and pays for it.
    pub buyer: String,
    pub title: String,
    /// The one measurement name the pack is about.
    pub measurement: String,
    /// A DPV purpose term.
    pub purpose: String,
    /// The release's definition as JSON (days, bounds, ε, aggregates, k); the API reads it.
    pub spec: String,
    /// Cohort: only owners who share this age band take part (None: any).
    pub age_band: Option<String>,
    /// Cohort: only owners who share this region take part (None: any).
    pub region: Option<String>,
    /// What each participant earns per release, in hundredths of `currency`.
    pub price_cents: i64,
    pub currency: String,
    pub created_ms: i64,
}

/// An owner's place in a pack.
#[derive(Debug, Clone, PartialEq)]
pub struct Participation {
    pub pack_id: String,
    pub owner: String,
    /// `joined` or `withdrawn`.
    pub status: String,
    pub joined_ms: i64,
    pub withdrawn_ms: Option<i64>,
    /// The signed receipt of joining (a compact JWS).
    pub receipt: String,
    /// The signed receipt of withdrawing.
    pub withdraw_receipt: Option<String>,
}

/// One release as published.
#[derive(Debug, Clone, PartialEq)]
pub struct PackRelease {
    pub pack_id: String,
    pub seq: i64,
    pub released_ms: i64,
    pub participants: u64,
    /// The published figures and noise parameters, as JSON.
    pub body: String,
}

/// What one release cost one participant and paid them.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    pub owner: String,
    pub pack_id: String,
    pub seq: i64,
    pub epsilon: f64,
    pub amount_cents: i64,
    pub currency: String,
    pub at_ms: i64,
}

/// An owner's settings for packs.
#[derive(Debug, Clone, PartialEq)]
pub struct PackSettings {
    /// The ε the owner's data may be spent on in all.
    pub budget_ceiling: f64,
    /// Profile fields the owner chose to share with cohorts.
    pub age_band: Option<String>,
    pub region: Option<String>,
}

impl Default for PackSettings {
    fn default() -> Self {
        PackSettings {
            budget_ceiling: DEFAULT_BUDGET_CEILING,
            age_band: None,
            region: None,
        }
    }
}

/// An owner's budget as a release sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub ceiling: f64,
    pub spent: f64,
}

impl Budget {
    pub fn left(&self) -> f64 {
        (self.ceiling - self.spent).max(0.0)
    }
}

/// What [`Store::record_release`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Stored,
    /// Another release took this number first: reload and try again.
    SeqTaken,
    /// The owner's ledger has no room for this release any more (it was charged meanwhile).
    OverBudget(String),
}

fn invalid(reason: &str) -> Error {
    Error::InvalidPack {
        reason: reason.to_owned(),
    }
}

fn no_nul<'a>(fields: impl IntoIterator<Item = &'a str>) -> Result<()> {
    if fields.into_iter().any(|f| f.contains('\0')) {
        return Err(invalid("a text field contains a NUL character"));
    }
    Ok(())
}

fn check_settings(s: &PackSettings) -> Result<()> {
    if !(s.budget_ceiling.is_finite() && s.budget_ceiling >= 0.0) {
        return Err(invalid(
            "the budget ceiling must be a finite number, at least 0",
        ));
    }
    no_nul(s.age_band.iter().chain(&s.region).map(String::as_str))
}

impl Store {
    pub async fn create_pack(&self, pack: &Pack) -> Result<()> {
        no_nul(
            [
                &pack.id,
                &pack.buyer,
                &pack.title,
                &pack.measurement,
                &pack.purpose,
                &pack.spec,
                &pack.currency,
            ]
            .into_iter()
            .map(String::as_str)
            .chain(pack.age_band.iter().chain(&pack.region).map(String::as_str)),
        )?;
        match self {
            Store::Sqlite(s) => s.create_pack(pack.clone()).await,
            Store::Postgres(p) => p.create_pack(pack).await,
        }
    }

    pub async fn pack(&self, id: &str) -> Result<Option<Pack>> {
        no_nul([id])?;
        match self {
            Store::Sqlite(s) => s.pack(id.into()).await,
            Store::Postgres(p) => p.pack(id).await,
        }
    }

    /// Packs newest first, created before `before_ms` (None: all), of one buyer or of all, at
    /// most `limit`.
    pub async fn packs(
        &self,
        buyer: Option<&str>,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Pack>> {
        no_nul(buyer)?;
        let before = before_ms.unwrap_or(i64::MAX);
        match self {
            Store::Sqlite(s) => s.packs(buyer.map(str::to_owned), before, limit).await,
            Store::Postgres(p) => p.packs(buyer, before, limit).await,
        }
    }

    /// Joins (or joins again after withdrawing); `false` when the owner is in already.
    pub async fn join_pack(&self, p: &Participation) -> Result<bool> {
        no_nul([p.pack_id.as_str(), &p.owner, &p.receipt])?;
        match self {
            Store::Sqlite(s) => s.join_pack(p.clone()).await,
            Store::Postgres(pg) => pg.join_pack(p).await,
        }
    }

    /// Withdraws with its receipt; `false` when the owner is not in.
    pub async fn withdraw_pack(
        &self,
        pack_id: &str,
        owner: &str,
        withdrawn_ms: i64,
        receipt: &str,
    ) -> Result<bool> {
        no_nul([pack_id, owner, receipt])?;
        match self {
            Store::Sqlite(s) => {
                s.withdraw_pack(pack_id.into(), owner.into(), withdrawn_ms, receipt.into())
                    .await
            }
            Store::Postgres(p) => p.withdraw_pack(pack_id, owner, withdrawn_ms, receipt).await,
        }
    }

    /// An owner's participations, newest first, at most `limit`.
    pub async fn owner_participations(
        &self,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<Participation>> {
        no_nul([owner])?;
        match self {
            Store::Sqlite(s) => s.owner_participations(owner.into(), limit).await,
            Store::Postgres(p) => p.owner_participations(owner, limit).await,
        }
    }

    /// The owners in a pack now (joined, not withdrawn), in name order, at most `limit`.
    pub async fn pack_participants(&self, pack_id: &str, limit: usize) -> Result<Vec<String>> {
        no_nul([pack_id])?;
        match self {
            Store::Sqlite(s) => s.pack_participants(pack_id.into(), limit).await,
            Store::Postgres(p) => p.pack_participants(pack_id, limit).await,
        }
    }

    /// An owner's settings (the defaults when they never set any).
    pub async fn pack_settings(&self, owner: &str) -> Result<PackSettings> {
        no_nul([owner])?;
        let found = match self {
            Store::Sqlite(s) => s.pack_settings(owner.into()).await?,
            Store::Postgres(p) => p.pack_settings(owner).await?,
        };
        Ok(found.unwrap_or_default())
    }

    pub async fn set_pack_settings(&self, owner: &str, settings: &PackSettings) -> Result<()> {
        no_nul([owner])?;
        check_settings(settings)?;
        match self {
            Store::Sqlite(s) => s.set_pack_settings(owner.into(), settings.clone()).await,
            Store::Postgres(p) => p.set_pack_settings(owner, settings).await,
        }
    }

    /// Each owner's ceiling and ε spent so far, in the order given.
    pub async fn budgets(&self, owners: &[String]) -> Result<Vec<Budget>> {
        no_nul(owners.iter().map(String::as_str))?;
        match self {
            Store::Sqlite(s) => s.budgets(owners.to_vec()).await,
            Store::Postgres(p) => p.budgets(owners).await,
        }
    }

    /// Stores a release and charges its participants, in one transaction (see the module's
    /// invariants); nothing is written unless everything is.
    pub async fn record_release(
        &self,
        release: &PackRelease,
        ledger: &[LedgerEntry],
    ) -> Result<Recorded> {
        no_nul([release.pack_id.as_str(), &release.body])?;
        for e in ledger {
            no_nul([e.owner.as_str(), &e.pack_id, &e.currency])?;
            if !(e.epsilon.is_finite() && e.epsilon >= 0.0) || e.pack_id != release.pack_id {
                return Err(invalid(
                    "a ledger entry must charge a finite ε to this pack",
                ));
            }
        }
        if release.seq < 1 {
            return Err(invalid("releases are numbered from 1"));
        }
        match self {
            Store::Sqlite(s) => s.record_release(release.clone(), ledger.to_vec()).await,
            Store::Postgres(p) => p.record_release(release, ledger).await,
        }
    }

    /// A pack's releases, oldest first.
    pub async fn pack_releases(&self, pack_id: &str, limit: usize) -> Result<Vec<PackRelease>> {
        no_nul([pack_id])?;
        match self {
            Store::Sqlite(s) => s.pack_releases(pack_id.into(), limit).await,
            Store::Postgres(p) => p.pack_releases(pack_id, limit).await,
        }
    }

    /// An owner's ledger entries, newest first, at most `limit`.
    pub async fn owner_ledger(&self, owner: &str, limit: usize) -> Result<Vec<LedgerEntry>> {
        no_nul([owner])?;
        match self {
            Store::Sqlite(s) => s.owner_ledger(owner.into(), limit).await,
            Store::Postgres(p) => p.owner_ledger(owner, limit).await,
        }
    }
}
