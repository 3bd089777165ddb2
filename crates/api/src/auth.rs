//! Owners' sign-up and login, the login tokens (sessions) and the
//! [`Owner`] extractor that every protected handler takes.
//!
//! A token is 32 random bytes in hex, kept in memory only: tokens do not
//! survive a restart (owners log in again), and are not shared between
//! API instances.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use rand::RngCore;
use serde::Deserialize;
use tributary_accounts::Identity;

use crate::error::{ApiError, Result};
use crate::ApiState;

/// How long a login token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// At most this many live tokens; a login beyond it gets 503 (bounded
/// memory: expired tokens are dropped first).
pub const MAX_SESSIONS: usize = 100_000;

/// Login tokens → owner, with expiry.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    tokens: Mutex<HashMap<String, Session>>,
}

#[derive(Debug)]
struct Session {
    owner: String,
    expires: Instant,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new token for `owner`.
    fn create(&self, owner: String) -> Result<String> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut tokens = self.lock();
        if tokens.len() >= MAX_SESSIONS {
            tokens.retain(|_, s| s.expires > now);
            if tokens.len() >= MAX_SESSIONS {
                return Err(ApiError::Unavailable(
                    "too many logged-in sessions; try again later".into(),
                ));
            }
        }
        tokens.insert(
            token.clone(),
            Session {
                owner,
                expires: now + TOKEN_LIFETIME,
            },
        );
        Ok(token)
    }

    /// Ends a session; whether the token was live.
    fn end(&self, token: &str) -> bool {
        let now = Instant::now();
        self.lock()
            .remove(token)
            .is_some_and(|session| session.expires > now)
    }

    /// The owner of a live token; an expired one is removed.
    fn owner(&self, token: &str) -> Option<String> {
        let mut tokens = self.lock();
        let session = tokens.get(token)?;
        if session.expires <= Instant::now() {
            tokens.remove(token);
            return None;
        }
        Some(session.owner.clone())
    }
}

/// The authenticated owner of a request, from its `Authorization: Bearer`
/// token. Every handler that reaches data takes this, and uses it as the
/// only source of the owner (never a path, query or body).
#[derive(Debug, Clone)]
pub struct Owner(pub String);

impl FromRequestParts<ApiState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Owner> {
        let token = bearer(&parts.headers)?;
        state
            .inner
            .sessions
            .owner(token)
            .map(Owner)
            .ok_or(ApiError::Unauthorized(
                "unknown or expired token; log in again",
            ))
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(headers: &HeaderMap) -> Result<&str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "missing Authorization header (Bearer token from POST /api/v1/login)",
        ))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be 'Bearer TOKEN'",
        ))
}

/// `POST /api/v1/logout`: the caller's token stops working at once.
pub(crate) async fn logout(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<StatusCode> {
    let token = bearer(&headers)?;
    if state.inner.sessions.end(token) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::Unauthorized(
            "unknown or expired token; log in again",
        ))
    }
}

/// The body of sign-up and login.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    name: String,
    password: String,
}

/// `POST /api/v1/signup`: a new owner with the given password.
pub(crate) async fn signup(
    State(state): State<ApiState>,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>)> {
    if !state
        .inner
        .signup_open
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Err(ApiError::Forbidden(
            "sign-up is turned off on this server; its operator adds owners (tributary owner add)",
        ));
    }
    let Json(credentials) = body?;
    let data_dir = state.inner.data_dir.clone();
    let name = credentials.name.clone();
    // Argon2 hashing and the locked file write are blocking.
    blocking(move || {
        tributary_accounts::add_owner(&data_dir, &credentials.name, Some(&credentials.password))
    })
    .await??;
    tracing::info!(owner = %name, "owner signed up");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "owner": name })),
    ))
}

/// `POST /api/v1/login`: a token for an owner's name and password.
pub(crate) async fn login(
    State(state): State<ApiState>,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Json<serde_json::Value>> {
    let Json(credentials) = body?;
    let throttle = &state.inner.login_throttle;
    let name = credentials.name.clone();
    if let Err(wait) = throttle.check(&name, Instant::now()) {
        return Err(ApiError::TooManyLogins {
            retry_after_s: wait.as_secs_f64().ceil() as u64,
        });
    }
    // One Argon2 check at a time per permit: logins cannot take every core.
    let _permit = state
        .inner
        .login_permits
        .acquire()
        .await
        .map_err(|e| ApiError::internal("login", e))?;
    let accounts = state.inner.accounts.clone();
    let identity = blocking(move || {
        accounts.reload_if_changed()?;
        Ok::<_, ApiError>(accounts.authenticate(&credentials.name, credentials.password.as_bytes()))
    })
    .await??;
    let owner = match identity {
        Ok(Identity::Owner { owner }) => owner,
        // A device, service or admin is not an owner: the same answer as a
        // wrong password, so that nothing about the name leaks.
        Ok(_) | Err(_) => {
            if let Some(lock) = throttle.failed(&name, Instant::now()) {
                // One line per lock, not per attempt.
                tracing::warn!(name = %name, lock_s = lock.as_secs(), "login: too many wrong passwords; name locked");
            }
            return Err(ApiError::BadCredentials);
        }
    };
    throttle.succeeded(&name);
    let token = state.inner.sessions.create(owner.clone())?;
    Ok(Json(serde_json::json!({
        "token": token,
        "owner": owner,
        "expires_in_s": TOKEN_LIFETIME.as_secs(),
    })))
}

/// Runs blocking work (Argon2, the accounts file) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal("blocking task", e))
}
