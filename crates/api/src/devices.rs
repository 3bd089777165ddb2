//! `/api/v1/devices`: an owner registers, lists, revokes and re-keys the
//! owner's own devices. Another owner's device is answered exactly like one
//! that does not exist (404), so device ids of other owners never leak.
//!
//! A device added here is named by its owner (`name`, "watch": unique
//! among the owner's active devices only) and gets a generated `id`, its
//! MQTT user name and topic level, unique across the installation without
//! anyone inventing it. Devices added by `tributary device add` (and all
//! devices made before names existed) have `id == name`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::auth::{blocking, Owner};
use crate::error::{ApiError, Result};
use crate::{unix_ms, ApiState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDevice {
    name: String,
}

/// One device as listed.
#[derive(Serialize)]
pub(crate) struct DeviceView {
    /// The MQTT user name and topic level.
    id: String,
    /// What the owner calls it.
    name: String,
    created_ms: i64,
    /// Set once the device is revoked.
    revoked_ms: Option<i64>,
    /// The time of its latest stored measurement, if any.
    last_seen_ms: Option<i64>,
    /// Messages with measurements from the last hour.
    messages_last_hour: u64,
}

/// A token in a response must not be kept by any cache.
const NO_STORE: [(header::HeaderName, &str); 1] = [(header::CACHE_CONTROL, "no-store")];

/// The topic a device publishes SenML to.
fn senml_topic(id: &str) -> String {
    format!("tributary/v1/{id}/senml")
}

/// `POST /api/v1/devices`: registers a device of the caller under the name
/// the caller gives it, and returns its id and MQTT token, the only time
/// the token is shown.
pub(crate) async fn add(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    body: Result<Json<NewDevice>, JsonRejection>,
) -> Result<(
    StatusCode,
    [(header::HeaderName, &'static str); 1],
    Json<serde_json::Value>,
)> {
    let Json(NewDevice { name }) = body?;
    // Bounds the accounts file and the device list (checked, then added: a
    // burst of concurrent adds may pass it by a few).
    let max = state.inner.config.max_devices_per_owner;
    if own_devices(&state, &owner).await?.len() >= max {
        return Err(ApiError::Conflict(format!(
            "you have {max} devices (revoked ones included), the most one owner may"
        )));
    }
    let data_dir = state.inner.data_dir.clone();
    let (o, label) = (owner.clone(), name.clone());
    let (id, token) =
        blocking(move || tributary_accounts::add_labelled_device(&data_dir, &o, &label)).await??;
    let name = name.trim();
    tracing::info!(%owner, device = %id, "device added");
    Ok((
        StatusCode::CREATED,
        NO_STORE,
        Json(serde_json::json!({
            "id": id,
            "name": name,
            "token": token,
            "topic": senml_topic(&id),
        })),
    ))
}

/// `GET /api/v1/devices`: the caller's devices, revoked ones included,
/// with when each was last seen.
pub(crate) async fn list(
    State(state): State<ApiState>,
    Owner(owner): Owner,
) -> Result<Json<Vec<DeviceView>>> {
    Ok(Json(with_last_seen(&state, &owner).await?))
}

/// The owner's devices, revoked ones included, with when each was last
/// seen (the device list, and the takeout's `devices.json`).
pub(crate) async fn with_last_seen(state: &ApiState, owner: &str) -> Result<Vec<DeviceView>> {
    let mut devices = own_devices(state, owner).await?;
    let now_ms = unix_ms(std::time::SystemTime::now());
    let seen = state
        .inner
        .store
        .devices_seen(owner, now_ms)
        .await
        .map_err(crate::error::store_error)?;
    for device in &mut devices {
        if let Some(s) = seen.iter().find(|s| s.device == device.id) {
            device.last_seen_ms = Some(s.last_ms);
            device.messages_last_hour = s.messages_last_hour;
        }
    }
    Ok(devices)
}

/// `DELETE /api/v1/devices/{id}`: revokes one of the caller's devices.
pub(crate) async fn revoke(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    own_device(&state, &owner, &id).await?;
    // A device never changes owner, so the check above stays true.
    let data_dir = state.inner.data_dir.clone();
    let device = id.clone();
    blocking(move || tributary_accounts::revoke_device(&data_dir, &device)).await??;
    tracing::info!(%owner, device = %id, "device revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/devices/{id}/token`: a new token for one of the caller's
/// active devices, shown this once; the old one stops working.
pub(crate) async fn rotate(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<(
    [(header::HeaderName, &'static str); 1],
    Json<serde_json::Value>,
)> {
    let device = own_device(&state, &owner, &id).await?;
    if device.revoked_ms.is_some() {
        return Err(ApiError::NotFound(format!(
            "device {id} is revoked; add a new one"
        )));
    }
    let data_dir = state.inner.data_dir.clone();
    let d = id.clone();
    let token = blocking(move || tributary_accounts::rotate_device_token(&data_dir, &d)).await??;
    tracing::info!(%owner, device = %id, "device token rotated");
    Ok((
        NO_STORE,
        Json(serde_json::json!({ "id": id, "token": token })),
    ))
}

/// The caller's device `id`, or 404 (also when it is another owner's).
pub(crate) async fn own_device(state: &ApiState, owner: &str, id: &str) -> Result<DeviceView> {
    own_devices(state, owner)
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("you have no device with id {id}")))
}

async fn own_devices(state: &ApiState, owner: &str) -> Result<Vec<DeviceView>> {
    let data_dir = state.inner.data_dir.clone();
    let listing = blocking(move || tributary_accounts::list(&data_dir)).await??;
    Ok(listing
        .owners
        .into_iter()
        .find(|o| o.name == owner)
        .map(|o| o.devices)
        .unwrap_or_default()
        .into_iter()
        .map(|d| DeviceView {
            id: d.name,
            name: d.label,
            created_ms: unix_ms(d.created),
            revoked_ms: d.revoked.map(unix_ms),
            last_seen_ms: None,
            messages_last_hour: 0,
        })
        .collect())
}
