//! Erasure by the owner (docs/erasure.md): `POST /api/v1/erasures` erases a
//! device's data or a time range (store rows, derived data and archive
//! files; a tombstone keeps the log's copies from coming back), and
//! `DELETE /api/v1/account` erases everything of the caller: the data key
//! is destroyed, so the copies the log and Kafka keep can no longer be
//! read, and the account is closed.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_store::erasure::Erasure;
use tributary_store::MAX_ABS_TIME_MS;

use crate::auth::{blocking, Owner};
use crate::error::{store_error, ApiError, Result};
use crate::ApiState;

/// The node's retained messages, which an erasure clears too: the broker
/// behind the API implements it (`ApiState::set_retained`).
pub trait RetainedMessages: Send + Sync {
    /// Clears the retained messages `owner` (or only `device`) published
    /// or had published to its topics, received in `from_ms..to_ms`;
    /// returns how many, each durable; `Err` says why not.
    fn clear(
        &self,
        owner: &str,
        device: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<u64, String>> + Send + '_>>;
}

/// What `POST /api/v1/erasures` is asked to erase.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EraseRequest {
    /// One of the caller's devices; absent: every device.
    device: Option<String>,
    /// Measurement time, inclusive; absent: from the beginning.
    from_ms: Option<i64>,
    /// Measurement time, exclusive; absent: to the end.
    to_ms: Option<i64>,
}

/// `DELETE /api/v1/account` must name the account it erases, so that a
/// stray request cannot.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EraseAccount {
    confirm: String,
}

/// What was erased.
#[derive(Serialize, Default)]
pub(crate) struct ErasedView {
    measurements: u64,
    dead_letters: u64,
    activity_segments: u64,
    /// Retained MQTT messages cleared.
    retained: u64,
    /// Login sessions ended (account erasure).
    sessions: u64,
    /// `None` when the node keeps no archive.
    archive: Option<ArchiveView>,
    /// How long the erasure took, in milliseconds.
    elapsed_ms: u64,
}

#[derive(Serialize)]
pub(crate) struct ArchiveView {
    files_deleted: u64,
    files_rewritten: u64,
    rows: u64,
}

impl From<tributary_archive::Erased> for ArchiveView {
    fn from(e: tributary_archive::Erased) -> ArchiveView {
        ArchiveView {
            files_deleted: e.files_deleted,
            files_rewritten: e.files_rewritten,
            rows: e.rows,
        }
    }
}

/// `POST /api/v1/erasures`: erases one of the caller's devices, or a time
/// range, or a device's time range.
pub(crate) async fn erase(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    body: Result<Json<EraseRequest>, JsonRejection>,
) -> Result<Json<ErasedView>> {
    let started = Instant::now();
    let Json(request) = body?;
    if request.device.is_none() && request.from_ms.is_none() && request.to_ms.is_none() {
        return Err(ApiError::BadBody(
            "name a device, a time range (from_ms, to_ms) or both; to erase everything, \
             DELETE /api/v1/account"
                .into(),
        ));
    }
    let bound = MAX_ABS_TIME_MS + 1;
    let from_ms = request.from_ms.unwrap_or(-bound);
    let to_ms = request.to_ms.unwrap_or(bound);
    if from_ms >= to_ms {
        return Err(ApiError::BadBody(format!(
            "from_ms ({from_ms}) must be before to_ms ({to_ms})"
        )));
    }
    if from_ms < -bound || to_ms > bound {
        return Err(ApiError::BadBody(format!(
            "from_ms and to_ms must be within ±{MAX_ABS_TIME_MS}"
        )));
    }
    if let Some(device) = &request.device {
        // Another owner's device is answered like one that does not exist.
        crate::devices::own_device(&state, &owner, device).await?;
    }
    let erasure = Erasure {
        owner: owner.clone(),
        device: request.device.clone(),
        from_ms,
        to_ms,
    };
    // The store first: its tombstone also stops the sinks from archiving
    // the covered rows again while the archive is rewritten.
    let stored = state
        .inner
        .store
        .erase(&erasure)
        .await
        .map_err(erase_error)?;
    let archive = match state.inner.archive.get() {
        Some(archive) => {
            let erase = tributary_archive::Erase {
                owner: &owner,
                device: request.device.as_deref(),
                from_ms,
                to_ms,
            };
            Some(archive.erase(&erase).await.map_err(archive_error)?.into())
        }
        None => None,
    };
    let retained =
        clear_retained(&state, &owner, request.device.as_deref(), from_ms, to_ms).await?;
    tracing::info!(%owner, device = ?request.device, from_ms, to_ms, measurements = stored.measurements, retained, "erased");
    Ok(Json(ErasedView {
        measurements: stored.measurements,
        dead_letters: stored.dead_letters,
        activity_segments: stored.activity_segments,
        retained,
        sessions: 0,
        archive,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }))
}

/// `DELETE /api/v1/account`: erases everything of the caller (body
/// `{"confirm": "<owner name>"}`).
pub(crate) async fn erase_account(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    body: Result<Json<EraseAccount>, JsonRejection>,
) -> Result<Json<ErasedView>> {
    let started = Instant::now();
    let Json(EraseAccount { confirm }) = body?;
    if confirm != owner {
        return Err(ApiError::BadBody(
            "confirm must be your owner name: this erases your account and all its data".into(),
        ));
    }
    // The archive and the retained messages first: should either fail,
    // the account stays and the caller, still logged in, can try again.
    let archive = match state.inner.archive.get() {
        Some(archive) => Some(archive.erase_owner(&owner).await.map_err(archive_error)?),
        None => None,
    };
    let retained = clear_retained(&state, &owner, None, i64::MIN, i64::MAX).await?;
    // One transaction: the key destroyed, every row and login session gone.
    let stored = state
        .inner
        .store
        .erase_owner(&owner)
        .await
        .map_err(erase_error)?;
    if let Some(keyring) = state.keyring() {
        keyring.forget(&owner);
    }
    let data_dir = state.inner.data_dir.clone();
    let o = owner.clone();
    blocking(move || tributary_accounts::erase_owner(&data_dir, &o)).await??;
    tracing::info!(%owner, measurements = stored.measurements, "account erased");
    Ok(Json(ErasedView {
        measurements: stored.measurements,
        dead_letters: stored.dead_letters,
        activity_segments: stored.activity_segments,
        retained,
        sessions: stored.sessions,
        archive: archive.map(Into::into),
        elapsed_ms: started.elapsed().as_millis() as u64,
    }))
}

/// Clears the erased retained messages; 0 on a node without a broker.
async fn clear_retained(
    state: &ApiState,
    owner: &str,
    device: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> Result<u64> {
    let Some(retained) = state.inner.retained.get() else {
        return Ok(0);
    };
    retained
        .clear(owner, device, from_ms, to_ms)
        .await
        .map_err(|error| {
            tracing::error!(%error, "erase: retained messages");
            ApiError::Unavailable(
                "the retained messages could not be cleared; the server log has the cause; try again"
                    .into(),
            )
        })
}

fn erase_error(error: tributary_store::Error) -> ApiError {
    match error {
        tributary_store::Error::InvalidErasure { reason } => ApiError::BadBody(reason),
        e @ tributary_store::Error::TooManyErasures { .. } => ApiError::Conflict(e.to_string()),
        other => store_error(other),
    }
}

fn archive_error(error: tributary_archive::Error) -> ApiError {
    tracing::error!(%error, "erase: archive");
    ApiError::Unavailable("the archive failed; the server log has the cause; try again".into())
}
