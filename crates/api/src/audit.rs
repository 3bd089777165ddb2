//! `GET /api/v1/audit`: the caller's audit log, every read of their data by
//! anyone but them (docs/consent.md, "The audit log"), newest first.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use serde::Serialize;

use crate::auth::Owner;
use crate::data::Params;
use crate::error::{store_error, Result};
use crate::ApiState;

/// Entries per page unless `limit` says otherwise.
pub const DEFAULT_ENTRIES: usize = 100;
/// The most entries one page may hold.
pub const MAX_ENTRIES: usize = 1_000;

#[derive(Serialize)]
pub(crate) struct AuditPage {
    entries: Vec<EntryView>,
    /// Pass as `before` for the next (older) page; absent on the last.
    next_before: Option<i64>,
}

#[derive(Serialize)]
pub(crate) struct EntryView {
    id: i64,
    actor_kind: String,
    actor: String,
    channel: String,
    detail: String,
    device: String,
    consent_id: Option<String>,
    count: u64,
    first_ms: i64,
    last_ms: i64,
}

impl From<tributary_store::AuditRecord> for EntryView {
    fn from(e: tributary_store::AuditRecord) -> EntryView {
        EntryView {
            id: e.id,
            actor_kind: e.actor_kind,
            actor: e.actor,
            channel: e.channel,
            detail: e.detail,
            device: e.device,
            consent_id: e.consent_id,
            count: e.count,
            first_ms: e.first_ms,
            last_ms: e.last_ms,
        }
    }
}

/// `GET /api/v1/audit?limit=&before=`.
pub(crate) async fn list(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<AuditPage>> {
    let params = Params::new(raw, &["limit", "before"])?;
    let limit = params.limit(DEFAULT_ENTRIES, MAX_ENTRIES)?;
    let before = params.opt_i64("before")?;
    let entries = state
        .inner
        .store
        .owner_audit(&owner, before, limit)
        .await
        .map_err(store_error)?;
    let next_before = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage {
        entries: entries.into_iter().map(EntryView::from).collect(),
        next_before,
    }))
}
