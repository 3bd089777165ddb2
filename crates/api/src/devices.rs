//! `/api/v1/devices`: an owner registers, lists and revokes the owner's own
//! devices. Another owner's device is answered exactly like one that does
//! not exist (404), so device names of other owners never leak.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::auth::{blocking, Owner};
use crate::error::{ApiError, Result};
use crate::ApiState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDevice {
    name: String,
}

/// One device as listed.
#[derive(Serialize)]
pub(crate) struct DeviceView {
    name: String,
    created_ms: i64,
    /// Set once the device is revoked.
    revoked_ms: Option<i64>,
}

/// `POST /api/v1/devices`: registers a device of the caller and returns its
/// MQTT token, the only time it is shown.
pub(crate) async fn add(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    body: Result<Json<NewDevice>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>)> {
    let Json(NewDevice { name }) = body?;
    let data_dir = state.inner.data_dir.clone();
    let (o, d) = (owner.clone(), name.clone());
    let token = blocking(move || tributary_accounts::add_device(&data_dir, &o, &d)).await??;
    tracing::info!(%owner, device = %name, "device added");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "device": name, "token": token })),
    ))
}

/// `GET /api/v1/devices`: the caller's devices, revoked ones included.
pub(crate) async fn list(
    State(state): State<ApiState>,
    Owner(owner): Owner,
) -> Result<Json<Vec<DeviceView>>> {
    Ok(Json(own_devices(&state, &owner).await?))
}

/// `DELETE /api/v1/devices/{name}`: revokes one of the caller's devices.
pub(crate) async fn revoke(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    let devices = own_devices(&state, &owner).await?;
    if !devices.iter().any(|d| d.name == name) {
        return Err(ApiError::NotFound(format!(
            "you have no device named {name}"
        )));
    }
    // A device never changes owner, so the check above stays true.
    let data_dir = state.inner.data_dir.clone();
    let device = name.clone();
    blocking(move || tributary_accounts::revoke_device(&data_dir, &device)).await??;
    tracing::info!(%owner, device = %name, "device revoked");
    Ok(StatusCode::NO_CONTENT)
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
            name: d.name,
            created_ms: unix_ms(d.created),
            revoked_ms: d.revoked.map(unix_ms),
        })
        .collect())
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
