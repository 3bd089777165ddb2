//! The owner's side of consent (docs/consent.md): the requests services
//! made of the caller, the caller's decisions on them and their signed
//! receipts; and, open to anyone, the key to verify receipts with and the
//! purposes a request may name.
//!
//! A decision is the owner's alone: the consent must be the caller's (any
//! other is answered as absent), and a request that authenticates as a
//! service (HTTP Basic) is refused before anything is looked up.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use tributary_rights::consent::{Decision, Status};
use tributary_rights::purpose::{purpose_of, PURPOSES};
use tributary_rights::receipt::{random_id, Decided, SigningKey};
use tributary_store::{Consent, ConsentReceipt, DecisionRecord, Store};

use crate::auth::Owner;
use crate::data::Params;
use crate::error::{store_error, ApiError, Result};
use crate::ApiState;

/// Consents per list unless `limit` says otherwise.
pub const DEFAULT_CONSENTS: usize = 50;
/// The most consents one list may hold (each carries its receipts).
pub const MAX_CONSENTS: usize = 100;

/// The receipts' signing key, loaded from the store on first use (the
/// first node to need it generates and keeps it; docs/consent.md, "The
/// key"), and the installation's part of every receipt.
pub(crate) struct Receipts {
    key: tokio::sync::OnceCell<Arc<SigningKey>>,
    issuer: std::sync::RwLock<tributary_rights::receipt::Issuer>,
}

impl Receipts {
    pub(crate) fn new() -> Receipts {
        Receipts {
            key: tokio::sync::OnceCell::new(),
            issuer: std::sync::RwLock::new(Default::default()),
        }
    }

    pub(crate) fn set_issuer(&self, issuer: tributary_rights::receipt::Issuer) {
        *self.issuer.write().unwrap_or_else(|p| p.into_inner()) = issuer;
    }

    pub(crate) fn issuer(&self) -> tributary_rights::receipt::Issuer {
        self.issuer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) async fn key(&self, store: &Store) -> Result<Arc<SigningKey>> {
        self.key
            .get_or_try_init(|| async {
                let candidate = SigningKey::generate()
                    .map_err(|e| ApiError::internal("generate the receipt key", e))?;
                let seed = store
                    .installation_secret(tributary_store::RECEIPT_SIGNING_SECRET, &candidate.seed())
                    .await
                    .map_err(store_error)?;
                let seed: [u8; 32] = seed.try_into().map_err(|_| {
                    ApiError::internal("read the receipt key", "the stored seed is not 32 bytes")
                })?;
                let key = SigningKey::from_seed(seed);
                tracing::info!(kid = %key.kid(), "consent receipts are signed with this key id");
                Ok(Arc::new(key))
            })
            .await
            .cloned()
    }
}

/// A consent as the API shows it, with its receipts.
#[derive(Serialize)]
pub(crate) struct ConsentView {
    id: String,
    service: String,
    owner: String,
    types: Vec<String>,
    purpose: String,
    purpose_category: Option<&'static str>,
    retention_days: u32,
    third_parties: Vec<String>,
    status: String,
    created_ms: i64,
    decided_ms: Option<i64>,
    receipts: Vec<ReceiptView>,
}

#[derive(Serialize)]
pub(crate) struct ReceiptView {
    receipt_id: String,
    status: String,
    created_ms: i64,
    /// The receipt as a compact JWS (EdDSA), verifiable with the JWKS.
    jws: String,
}

impl From<ConsentReceipt> for ReceiptView {
    fn from(r: ConsentReceipt) -> ReceiptView {
        ReceiptView {
            receipt_id: r.receipt_id,
            status: r.status,
            created_ms: r.created_ms,
            jws: r.jws,
        }
    }
}

/// `consent` with its receipts read from the store.
pub(crate) async fn view(store: &Store, consent: Consent) -> Result<ConsentView> {
    let receipts = store
        .consent_receipts(&consent.id)
        .await
        .map_err(store_error)?;
    Ok(ConsentView {
        purpose_category: purpose_of(&consent.purpose).map(|p| p.category),
        id: consent.id,
        service: consent.service,
        owner: consent.owner,
        types: consent.types,
        purpose: consent.purpose,
        retention_days: consent.retention_days,
        third_parties: consent.third_parties,
        status: consent.status,
        created_ms: consent.created_ms,
        decided_ms: consent.decided_ms,
        receipts: receipts.into_iter().map(ReceiptView::from).collect(),
    })
}

/// A page of consents: `before` is the `created_ms` to continue below.
#[derive(Serialize)]
pub(crate) struct ConsentPage {
    consents: Vec<ConsentView>,
    next_before: Option<i64>,
}

pub(crate) async fn page(
    store: &Store,
    consents: Vec<Consent>,
    limit: usize,
) -> Result<ConsentPage> {
    let next_before = (consents.len() == limit)
        .then(|| consents.last().map(|c| c.created_ms))
        .flatten();
    let mut views = Vec::with_capacity(consents.len());
    for c in consents {
        views.push(view(store, c).await?);
    }
    Ok(ConsentPage {
        consents: views,
        next_before,
    })
}

/// `GET /api/v1/consents?limit=&before=`: the requests made of the caller,
/// newest first, with their receipts.
pub(crate) async fn list(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<ConsentPage>> {
    let params = Params::new(raw, &["limit", "before"])?;
    let limit = params.limit(DEFAULT_CONSENTS, MAX_CONSENTS)?;
    let before = params.opt_i64("before")?;
    let store = &state.inner.store;
    let consents = store
        .owner_consents(&owner, before, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(page(store, consents, limit).await?))
}

/// The caller's consent `id`, or 404 (another owner's is absent too).
async fn own_consent(state: &ApiState, owner: &str, id: &str) -> Result<Consent> {
    let not_found = || ApiError::NotFound(format!("no consent request {:?} of yours", short(id)));
    if id.len() > 64 {
        return Err(not_found());
    }
    match state.inner.store.consent(id).await.map_err(store_error)? {
        Some(c) if c.owner == owner => Ok(c),
        _ => Err(not_found()),
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// `GET /api/v1/consents/{id}`.
pub(crate) async fn get_one(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<Json<ConsentView>> {
    let consent = own_consent(&state, &owner, &id).await?;
    Ok(Json(view(&state.inner.store, consent).await?))
}

/// The owner deciding: a logged-in owner, and never a service (HTTP Basic),
/// which is told so rather than "not logged in".
pub(crate) struct Decider(String);

impl FromRequestParts<ApiState> for Decider {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Decider> {
        let basic = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Basic "));
        if basic {
            return Err(ApiError::Forbidden(
                "a service cannot grant, refuse or revoke consent: only the owner asked decides",
            ));
        }
        Owner::from_request_parts(parts, state)
            .await
            .map(|Owner(owner)| Decider(owner))
    }
}

/// `POST /api/v1/consents/{id}/grant`.
pub(crate) async fn grant(
    state: State<ApiState>,
    owner: Decider,
    id: Path<String>,
) -> Result<impl IntoResponse> {
    decide(state, owner, id, Decision::Grant).await
}

/// `POST /api/v1/consents/{id}/refuse`.
pub(crate) async fn refuse(
    state: State<ApiState>,
    owner: Decider,
    id: Path<String>,
) -> Result<impl IntoResponse> {
    decide(state, owner, id, Decision::Refuse).await
}

/// `POST /api/v1/consents/{id}/revoke`.
pub(crate) async fn revoke(
    state: State<ApiState>,
    owner: Decider,
    id: Path<String>,
) -> Result<impl IntoResponse> {
    decide(state, owner, id, Decision::Revoke).await
}

async fn decide(
    State(state): State<ApiState>,
    Decider(owner): Decider,
    Path(id): Path<String>,
    decision: Decision,
) -> Result<impl IntoResponse> {
    let consent = own_consent(&state, &owner, &id).await?;
    let from = Status::parse(&consent.status).ok_or_else(|| {
        ApiError::internal(
            "read consent",
            format!("unknown status {:?}", consent.status),
        )
    })?;
    let Some(to) = from.after(decision) else {
        return Err(ApiError::Conflict(format!(
            "consent {id} is {}: {} applies only to {} requests",
            from.as_str(),
            decision.as_str(),
            match decision {
                Decision::Grant | Decision::Refuse => "pending",
                Decision::Revoke => "granted",
            }
        )));
    };
    let purpose = purpose_of(&consent.purpose).ok_or_else(|| {
        ApiError::internal(
            "read consent",
            format!("unknown purpose {:?}", consent.purpose),
        )
    })?;
    let store = &state.inner.store;
    let key = state.inner.receipts.key(store).await?;
    let receipt_id = random_id().map_err(|e| ApiError::internal("make a receipt id", e))?;
    let at_ms = crate::unix_ms(std::time::SystemTime::now());
    let receipt = state.inner.receipts.issuer().receipt(&Decided {
        consent_id: &consent.id,
        receipt_id: &receipt_id,
        owner: &owner,
        service: &consent.service,
        types: &consent.types,
        purpose,
        retention_days: consent.retention_days,
        third_parties: &consent.third_parties,
        status: to,
        at_ms,
    });
    let record = DecisionRecord {
        consent_id: consent.id.clone(),
        owner: owner.clone(),
        from: from.as_str().into(),
        to: to.as_str().into(),
        receipt: ConsentReceipt {
            receipt_id,
            consent_id: consent.id.clone(),
            owner: owner.clone(),
            status: to.as_str().into(),
            jws: key.sign(&receipt),
            created_ms: at_ms,
        },
    };
    if !store.decide_consent(&record).await.map_err(store_error)? {
        return Err(ApiError::Conflict(format!(
            "consent {id} changed meanwhile; read it again"
        )));
    }
    tracing::info!(%owner, consent = %consent.id, service = %consent.service, status = to.as_str(), "consent decided");
    let decided = own_consent(&state, &owner, &id).await?;
    Ok((StatusCode::OK, Json(view(store, decided).await?)))
}

/// `GET /api/v1/consents/{id}/receipts/{receipt_id}`: one receipt as a
/// file (`application/jose`, the compact JWS).
pub(crate) async fn receipt(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Path((id, receipt_id)): Path<(String, String)>,
) -> Result<impl IntoResponse> {
    let consent = own_consent(&state, &owner, &id).await?;
    let receipts = state
        .inner
        .store
        .consent_receipts(&consent.id)
        .await
        .map_err(store_error)?;
    let found = receipts
        .into_iter()
        .find(|r| r.receipt_id == receipt_id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "consent {id} has no receipt {:?}",
                short(&receipt_id)
            ))
        })?;
    let disposition = format!("attachment; filename=\"receipt-{}.jws\"", found.receipt_id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/jose".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        found.jws,
    ))
}

/// `GET /api/v1/consent/jwks.json`: the key receipts are signed with.
pub(crate) async fn jwks(State(state): State<ApiState>) -> Result<impl IntoResponse> {
    let key = state.inner.receipts.key(&state.inner.store).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/jwk-set+json")],
        Json(key.jwks()),
    ))
}

/// `GET /api/v1/consent/purposes`: the DPV purposes a request may name.
pub(crate) async fn purposes() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "purposes": PURPOSES
            .iter()
            .map(|p| serde_json::json!({"purpose": p.term, "category": p.category}))
            .collect::<Vec<_>>()
    }))
}
