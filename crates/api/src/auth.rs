//! Owners' sign-up and login, the login tokens (sessions) and the
//! [`Owner`] extractor that every protected handler takes.
//!
//! A token is 32 random bytes in hex, kept in memory only: tokens do not
//! survive a restart (owners log in again), and are not shared between
//! API instances.
//!
//! A session reaches the API in one of two ways. API clients send the
//! token as `Authorization: Bearer`. The dashboard never sees the token: a
//! login with `"cookie": true` puts it in an `HttpOnly`, `SameSite=Strict`
//! cookie that page scripts cannot read, and answers a CSRF token instead.
//! A request authenticated by the cookie that can change something (any
//! method but GET and HEAD) must carry that CSRF token in `X-CSRF-Token`:
//! SameSite already keeps other sites' requests from carrying the cookie,
//! and the header is the second lock for browsers or proxies that do not
//! honour it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
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
    /// What a cookie-authenticated request that changes something must
    /// echo in `X-CSRF-Token`.
    csrf: String,
}

/// The cookie that carries a dashboard's login token.
pub const SESSION_COOKIE: &str = "tributary_session";
/// The header that carries the CSRF token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// 32 random bytes in hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A live session as a request presented it.
#[derive(Debug, Clone)]
pub(crate) struct LiveSession {
    pub(crate) token: String,
    pub(crate) owner: String,
    pub(crate) csrf: String,
    pub(crate) expires_ms: i64,
    /// Whether it came in the cookie (and not as a bearer token).
    pub(crate) by_cookie: bool,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new session for `owner`: its token and its CSRF token.
    fn create(&self, owner: String) -> Result<(String, String)> {
        let token = random_hex();
        let csrf = random_hex();
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
                csrf: csrf.clone(),
            },
        );
        Ok((token, csrf))
    }

    /// Ends a session; whether the token was live.
    fn end(&self, token: &str) -> bool {
        let now = Instant::now();
        self.lock()
            .remove(token)
            .is_some_and(|session| session.expires > now)
    }

    /// The owner and CSRF token of a live token, and when it expires (Unix
    /// ms); an expired one is removed.
    fn get(&self, token: &str) -> Option<(String, String, i64)> {
        let mut tokens = self.lock();
        let session = tokens.get(token)?;
        let now = Instant::now();
        if session.expires <= now {
            tokens.remove(token);
            return None;
        }
        let left = session.expires.duration_since(now);
        let expires_ms = crate::unix_ms(std::time::SystemTime::now() + left);
        Some((session.owner.clone(), session.csrf.clone(), expires_ms))
    }
}

const EXPIRED: &str = "unknown or expired session; log in again";

impl FromRequestParts<ApiState> for LiveSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<LiveSession> {
        let (token, by_cookie) = match parts.headers.get(header::AUTHORIZATION) {
            Some(_) => (bearer(&parts.headers)?.to_owned(), false),
            None => (
                session_cookie(&parts.headers).ok_or(ApiError::Unauthorized(
                    "not logged in: send 'Authorization: Bearer TOKEN' (from POST /api/v1/login)",
                ))?,
                true,
            ),
        };
        let (owner, csrf, expires_ms) = state
            .inner
            .sessions
            .get(&token)
            .ok_or(ApiError::Unauthorized(EXPIRED))?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD);
        if by_cookie && !safe {
            let sent = parts.headers.get(CSRF_HEADER).map(|v| v.as_bytes());
            if !sent.is_some_and(|sent| same_secret(sent, csrf.as_bytes())) {
                return Err(ApiError::Forbidden(
                    "missing or wrong X-CSRF-Token header (a cookie session must send the csrf token from login or GET /api/v1/session)",
                ));
            }
        }
        Ok(LiveSession {
            token,
            owner,
            csrf,
            expires_ms,
            by_cookie,
        })
    }
}

/// Whether two secrets are equal, in a time that does not depend on where
/// they first differ (a guesser learns nothing from how long a refusal took).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The login token in the request's session cookie, if any.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

/// The `Set-Cookie` value that holds `token` for the token's lifetime, or
/// (`None`) that removes it. `Secure` when the request came through a
/// TLS-terminating proxy that says so.
fn set_cookie(token: Option<&str>, headers: &HeaderMap) -> HeaderValue {
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let (value, max_age) = match token {
        Some(token) => (token, TOKEN_LIFETIME.as_secs()),
        None => ("", 0),
    };
    let cookie = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).expect("a hex token makes a valid header value")
}

/// The authenticated owner of a request, from its `Authorization: Bearer`
/// token. Every handler that reaches data takes this, and uses it as the
/// only source of the owner (never a path, query or body).
#[derive(Debug, Clone)]
pub struct Owner(pub String);

impl FromRequestParts<ApiState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Owner> {
        LiveSession::from_request_parts(parts, state)
            .await
            .map(|session| Owner(session.owner))
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

/// `POST /api/v1/logout`: the caller's token stops working at once (and a
/// cookie session's cookie is removed).
pub(crate) async fn logout(
    State(state): State<ApiState>,
    session: LiveSession,
    headers: HeaderMap,
) -> Result<Response> {
    if !state.inner.sessions.end(&session.token) {
        return Err(ApiError::Unauthorized(EXPIRED));
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if session.by_cookie {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, set_cookie(None, &headers));
    }
    Ok(response)
}

/// `GET /api/v1/session`: who the caller's session is, the CSRF token a
/// cookie session must send, and when it expires; 401 when logged out (how
/// the dashboard learns at start whether someone is signed in).
pub(crate) async fn session(session: LiveSession) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "owner": session.owner,
        "csrf": session.csrf,
        "expires_ms": session.expires_ms,
    }))
}

/// The body of sign-up.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    name: String,
    password: String,
}

/// The body of login: with `cookie` the session goes in a cookie (the
/// dashboard) instead of the body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    name: String,
    password: String,
    #[serde(default)]
    cookie: bool,
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

/// `POST /api/v1/login`: a token for an owner's name and password, in the
/// body or (with `"cookie": true`) in the session cookie.
pub(crate) async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response> {
    let Json(credentials) = body?;
    // The accounts' throttle, which MQTT CONNECT counts in too.
    let throttle = state.inner.accounts.login_throttle();
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
    let (token, csrf) = state.inner.sessions.create(owner.clone())?;
    let expires_in_s = TOKEN_LIFETIME.as_secs();
    let mut response = if credentials.cookie {
        let body =
            serde_json::json!({ "owner": owner, "csrf": csrf, "expires_in_s": expires_in_s });
        let mut response = Json(body).into_response();
        response
            .headers_mut()
            .insert(header::SET_COOKIE, set_cookie(Some(&token), &headers));
        response
    } else {
        let body =
            serde_json::json!({ "token": token, "owner": owner, "expires_in_s": expires_in_s });
        Json(body).into_response()
    };
    // A token, in the body or the cookie, must not be kept by any cache.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Runs blocking work (Argon2, the accounts file) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal("blocking task", e))
}
