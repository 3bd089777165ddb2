//! Consents, their receipts, the installation's secrets and the audit log (docs/store.md,
//! docs/consent.md): what `tributary-rights` decides, kept so that every node sharing the store
//! sees the same.
//!
//! Lists are newest first and bounded by the caller's `limit`. For the owner's takeout:
//! [`Store::owner_consents`], [`Store::owner_receipts`] and [`Store::owner_audit`] return
//! everything of one owner, page by page.

mod postgres;
mod sqlite;

use crate::{Error, Result, Store};

/// The name under which the receipts' signing seed is kept.
pub const RECEIPT_SIGNING_SECRET: &str = "receipt-signing";

/// Most pending requests one service may have open: asking is cheap, and an owner's list of
/// requests is not a place to flood.
pub const MAX_PENDING_PER_SERVICE: u64 = 1_000;

/// One consent: a service's request and where the owner's decisions left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub id: String,
    pub service: String,
    pub owner: String,
    /// Measurement names, sorted.
    pub types: Vec<String>,
    /// A DPV purpose term.
    pub purpose: String,
    pub retention_days: u32,
    pub third_parties: Vec<String>,
    /// `pending`, `granted`, `refused` or `revoked`.
    pub status: String,
    pub created_ms: i64,
    /// When the owner last decided.
    pub decided_ms: Option<i64>,
}

/// One signed receipt of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentReceipt {
    pub receipt_id: String,
    pub consent_id: String,
    pub owner: String,
    /// The status the decision led to.
    pub status: String,
    /// The receipt as a compact JWS.
    pub jws: String,
    pub created_ms: i64,
}

/// One decision to store: the consent moves from `from` to `to` only if it is still `from` and
/// the owner's, and the receipt goes in with it.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub consent_id: String,
    pub owner: String,
    pub from: String,
    pub to: String,
    pub receipt: ConsentReceipt,
}

/// One audit entry (docs/consent.md, "The audit log").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Assigned by the store, increasing; 0 in what is appended.
    pub id: i64,
    pub owner: String,
    /// `service` or `admin`.
    pub actor_kind: String,
    pub actor: String,
    /// `mqtt` or `api`.
    pub channel: String,
    pub detail: String,
    pub device: String,
    pub consent_id: Option<String>,
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// A list of names kept as one text column: no name holds a newline (the API checks).
pub(crate) fn join(names: &[String]) -> String {
    names.join("\n")
}

pub(crate) fn split(joined: &str) -> Vec<String> {
    joined
        .split('\n')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn no_nul<'a>(fields: impl IntoIterator<Item = &'a str>) -> Result<()> {
    if fields.into_iter().any(|f| f.contains('\0')) {
        return Err(Error::InvalidConsent {
            reason: "a text field contains a NUL character".into(),
        });
    }
    Ok(())
}

fn check_consent(c: &Consent) -> Result<()> {
    no_nul(
        [&c.id, &c.service, &c.owner, &c.purpose, &c.status]
            .into_iter()
            .map(String::as_str)
            .chain(c.types.iter().map(String::as_str))
            .chain(c.third_parties.iter().map(String::as_str)),
    )?;
    if c.types
        .iter()
        .chain(&c.third_parties)
        .any(|n| n.contains('\n') || n.is_empty())
    {
        return Err(Error::InvalidConsent {
            reason: "a type or third party is empty or contains a newline".into(),
        });
    }
    Ok(())
}

impl Store {
    /// The installation's secret `name`: `candidate` when none was kept yet (then kept), else
    /// the one kept, so that every node of a cluster ends with the same.
    pub async fn installation_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        no_nul([name])?;
        match self {
            Store::Sqlite(s) => s.installation_secret(name.into(), candidate.to_vec()).await,
            Store::Postgres(p) => p.installation_secret(name, candidate).await,
        }
    }

    /// Stores a new request; `false` (nothing stored) when its service already has
    /// [`MAX_PENDING_PER_SERVICE`] pending.
    pub async fn create_consent(&self, consent: &Consent) -> Result<bool> {
        check_consent(consent)?;
        match self {
            Store::Sqlite(s) => s.create_consent(consent.clone()).await,
            Store::Postgres(p) => p.create_consent(consent).await,
        }
    }

    pub async fn consent(&self, id: &str) -> Result<Option<Consent>> {
        no_nul([id])?;
        match self {
            Store::Sqlite(s) => s.consent(id.into()).await,
            Store::Postgres(p) => p.consent(id).await,
        }
    }

    /// An owner's consents, newest first, created before `before_ms` (None: all), at most `limit`.
    pub async fn owner_consents(
        &self,
        owner: &str,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Consent>> {
        self.consents_by("owner", owner, before_ms, limit).await
    }

    /// A service's consents, newest first, as [`Store::owner_consents`].
    pub async fn service_consents(
        &self,
        service: &str,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Consent>> {
        self.consents_by("service", service, before_ms, limit).await
    }

    async fn consents_by(
        &self,
        column: &'static str,
        who: &str,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Consent>> {
        no_nul([who])?;
        let before = before_ms.unwrap_or(i64::MAX);
        match self {
            Store::Sqlite(s) => s.consents_by(column, who.into(), before, limit).await,
            Store::Postgres(p) => p.consents_by(column, who, before, limit).await,
        }
    }

    /// The newest granted consent of `service` for `owner`, if any.
    pub async fn granted_consent(&self, service: &str, owner: &str) -> Result<Option<Consent>> {
        no_nul([service, owner])?;
        match self {
            Store::Sqlite(s) => s.granted_consent(service.into(), owner.into()).await,
            Store::Postgres(p) => p.granted_consent(service, owner).await,
        }
    }

    /// Every granted consent (oldest first, so that the newest of a pair wins when a table is
    /// built from them), at most `limit`.
    pub async fn granted_consents(&self, limit: usize) -> Result<Vec<Consent>> {
        match self {
            Store::Sqlite(s) => s.granted_consents(limit).await,
            Store::Postgres(p) => p.granted_consents(limit).await,
        }
    }

    /// A number that moves with every decision: nodes poll it and reload the granted consents
    /// when it moved.
    pub async fn consent_version(&self) -> Result<i64> {
        match self {
            Store::Sqlite(s) => s.consent_version().await,
            Store::Postgres(p) => p.consent_version().await,
        }
    }

    /// Applies one decision with its receipt, in one transaction; `false` (nothing written)
    /// when the consent is not the owner's or no longer in `from`.
    pub async fn decide_consent(&self, d: &DecisionRecord) -> Result<bool> {
        let r = &d.receipt;
        no_nul([
            d.consent_id.as_str(),
            &d.owner,
            &d.from,
            &d.to,
            &r.receipt_id,
            &r.jws,
        ])?;
        match self {
            Store::Sqlite(s) => s.decide_consent(d.clone()).await,
            Store::Postgres(p) => p.decide_consent(d).await,
        }
    }

    /// The receipts of one consent, oldest first (at most one per decision, so at most two).
    pub async fn consent_receipts(&self, consent_id: &str) -> Result<Vec<ConsentReceipt>> {
        no_nul([consent_id])?;
        match self {
            Store::Sqlite(s) => {
                s.receipts_by("consent_id", consent_id.into(), i64::MAX, 16)
                    .await
            }
            Store::Postgres(p) => p.receipts_by("consent_id", consent_id, i64::MAX, 16).await,
        }
    }

    /// An owner's receipts, newest first, created before `before_ms`, at most `limit`.
    pub async fn owner_receipts(
        &self,
        owner: &str,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ConsentReceipt>> {
        no_nul([owner])?;
        let before = before_ms.unwrap_or(i64::MAX);
        match self {
            Store::Sqlite(s) => s.receipts_by("owner", owner.into(), before, limit).await,
            Store::Postgres(p) => p.receipts_by("owner", owner, before, limit).await,
        }
    }

    /// Appends audit entries (their `id` is ignored), in one transaction.
    pub async fn append_audit(&self, entries: &[AuditRecord], recorded_ms: i64) -> Result<()> {
        for e in entries {
            no_nul([
                e.owner.as_str(),
                &e.actor_kind,
                &e.actor,
                &e.channel,
                &e.detail,
                &e.device,
                e.consent_id.as_deref().unwrap_or(""),
            ])?;
            if e.count > i64::MAX as u64 {
                return Err(Error::InvalidConsent {
                    reason: "audit count out of range".into(),
                });
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite(s) => s.append_audit(entries.to_vec(), recorded_ms).await,
            Store::Postgres(p) => p.append_audit(entries, recorded_ms).await,
        }
    }

    /// An owner's audit entries, newest first, with ids below `before_id` (None: all), at most
    /// `limit`.
    pub async fn owner_audit(
        &self,
        owner: &str,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        no_nul([owner])?;
        let before = before_id.unwrap_or(i64::MAX);
        match self {
            Store::Sqlite(s) => s.owner_audit(owner.into(), before, limit).await,
            Store::Postgres(p) => p.owner_audit(owner, before, limit).await,
        }
    }
}
