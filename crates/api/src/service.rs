//! The service's side of consent (docs/consent.md): a service, authenticated
//! with HTTP Basic (its name and its token, as for MQTT), asks owners for
//! consent, lists its requests, and reads the measurements owners consented
//! to, each read recorded in the owner's audit log before it is answered.
//!
//! Authentication goes through `Accounts::authenticate_guarded`: a token
//! that verified before is recognised by its SHA-256 digest (one entry per
//! account, so the cache is bounded by the accounts file), so only the first
//! request after a start or a token change pays for Argon2, and at most
//! `max_password_checks` of those run at once.

use std::collections::HashMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tributary_accounts::{AuthError, Grant, Grants, Identity};
use tributary_rights::consent::{Request, Status};
use tributary_store::{AuditRecord, Consent};

use crate::consent::{page, view, ConsentPage, ConsentView, DEFAULT_CONSENTS, MAX_CONSENTS};
use crate::data::{Params, PointView, DEFAULT_POINTS, MAX_POINTS};
use crate::error::{store_error, ApiError, Result};
use crate::ApiState;

/// The authenticated service of a request.
pub(crate) struct Service(pub(crate) String);

const BASIC_NEEDED: &str =
    "a service authenticates with 'Authorization: Basic' of its name and token";

impl FromRequestParts<ApiState> for Service {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Service> {
        let (service, grants) = authenticate(parts, state).await?;
        if !grants.contains(Grant::Read) {
            return Err(ApiError::Forbidden(
                "this service was not granted 'read' (tributary service add NAME --grant read)",
            ));
        }
        Ok(Service(service))
    }
}

/// The service a request authenticates as with HTTP Basic, and its grants;
/// what it may do with them is the caller's to check.
pub(crate) async fn authenticate(parts: &Parts, state: &ApiState) -> Result<(String, Grants)> {
    let encoded = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or(ApiError::Unauthorized(BASIC_NEEDED))?;
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| ApiError::Unauthorized(BASIC_NEEDED))?;
    let decoded = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized(BASIC_NEEDED))?;
    let (name, token) = decoded
        .split_once(':')
        .ok_or(ApiError::Unauthorized(BASIC_NEEDED))?;
    match state
        .inner
        .accounts
        .authenticate_guarded(name, token.as_bytes())
        .await
    {
        Ok(Identity::Service { service, grants }) => Ok((service, grants)),
        Ok(_) => Err(ApiError::Forbidden(
            "only services use /api/v1/service/ (owners log in and use /api/v1/)",
        )),
        Err(AuthError::Revoked) => Err(ApiError::Unauthorized("this service is revoked")),
        Err(_) => Err(ApiError::Unauthorized("wrong service name or token")),
    }
}

/// `POST /api/v1/service/consents`: asks an owner for consent. The answer
/// does not tell whether the owner exists: a request to nobody stays
/// pending.
pub(crate) async fn ask(
    State(state): State<ApiState>,
    Service(service): Service,
    body: Result<Json<Request>, JsonRejection>,
) -> Result<(StatusCode, Json<ConsentView>)> {
    let Json(request) = body?;
    if request.owner.is_empty() || request.owner.len() > 64 || request.owner.contains('\0') {
        return Err(ApiError::BadBody("owner: name the owner asked".into()));
    }
    let (request, _) = request
        .validate()
        .map_err(|e| ApiError::BadBody(e.to_string()))?;
    let consent = Consent {
        id: tributary_rights::receipt::random_id()
            .map_err(|e| ApiError::internal("make a consent id", e))?,
        service: service.clone(),
        owner: request.owner,
        types: request.types,
        purpose: request.purpose,
        retention_days: request.retention_days,
        third_parties: request.third_parties,
        status: Status::Pending.as_str().into(),
        created_ms: crate::unix_ms(std::time::SystemTime::now()),
        decided_ms: None,
    };
    let store = &state.inner.store;
    if !store.create_consent(&consent).await.map_err(store_error)? {
        return Err(ApiError::TooMany {
            detail: format!(
                "this service has {} pending requests, the most it may; wait for owners to decide",
                tributary_store::MAX_PENDING_PER_SERVICE
            ),
            retry_after_s: None,
        });
    }
    tracing::info!(%service, consent = %consent.id, "consent requested");
    Ok((StatusCode::CREATED, Json(view(store, consent).await?)))
}

/// `GET /api/v1/service/consents?limit=&before=`: the service's requests,
/// newest first, with where each stands and its receipts.
pub(crate) async fn list(
    State(state): State<ApiState>,
    Service(service): Service,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<ConsentPage>> {
    let params = Params::new(raw, &["limit", "before"])?;
    let limit = params.limit(DEFAULT_CONSENTS, MAX_CONSENTS)?;
    let before = params.opt_i64("before")?;
    let store = &state.inner.store;
    let consents = store
        .service_consents(&service, before, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(page(store, consents, limit).await?))
}

/// `GET /api/v1/service/measurements?owner=&from=&to=&names=&limit=`: raw
/// measurements of one consenting owner, of the consented types only
/// (`names` narrows them; a name outside the consent is refused). Recorded
/// in the owner's audit log before the answer goes out.
pub(crate) async fn measurements(
    State(state): State<ApiState>,
    Service(service): Service,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<Vec<PointView>>> {
    let params = Params::new(raw, &["owner", "from", "to", "names", "limit"])?;
    let owner = params
        .get("owner")
        .filter(|o| !o.is_empty() && o.len() <= 64 && !o.contains('\0'))
        .ok_or_else(|| ApiError::bad_param("owner", "is required: the owner whose data to read"))?
        .to_owned();
    let (from_ms, to_ms) = params.range()?;
    let limit = params.limit(DEFAULT_POINTS, MAX_POINTS)?;
    let store = &state.inner.store;
    let consent = store
        .granted_consent(&service, &owner)
        .await
        .map_err(store_error)?
        .ok_or(ApiError::Forbidden(
            "no live consent of this owner for this service: ask with POST /api/v1/service/consents",
        ))?;
    let names: Vec<String> = match params.get("names") {
        None | Some("") => consent.types.clone(),
        Some(list) => {
            let asked: Vec<String> = list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(other) = asked.iter().find(|n| !consent.types.contains(n)) {
                return Err(ApiError::bad_param(
                    "names",
                    format!(
                        "{:?} is not among the consented types",
                        other.chars().take(80).collect::<String>()
                    ),
                ));
            }
            asked
        }
    };
    let query = tributary_store::Query {
        owner: owner.clone(),
        from_ms,
        to_ms,
        names,
        bucket_ms: None,
        limit,
    };
    let points = store.query(&query).await.map_err(store_error)?;
    // Recorded before it is answered: a read the audit log cannot take is
    // not answered.
    let now = crate::unix_ms(std::time::SystemTime::now());
    let entry = AuditRecord {
        id: 0,
        owner,
        actor_kind: "service".into(),
        actor: service,
        channel: "api".into(),
        detail: "GET /api/v1/service/measurements".into(),
        device: String::new(),
        consent_id: Some(consent.id),
        count: points.len() as u64,
        first_ms: now,
        last_ms: now,
    };
    store
        .append_audit(&[entry], now)
        .await
        .map_err(store_error)?;
    Ok(Json(points.into_iter().map(PointView::from).collect()))
}
