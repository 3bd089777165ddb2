//! Owners' sign-up and login, the login tokens (sessions) and the
//! [`Owner`] extractor that every protected handler takes.
//!
//! A token is 32 random bytes in hex. Sessions are kept in the
//! measurements store (`api_sessions`, docs/store.md) by the SHA-256 of the
//! token, never the token: they survive a restart, and a session made on
//! one node is valid on every node sharing the store (a logout on any of
//! them ends it everywhere). Every authenticated request looks its session
//! up in the store; there is no cache, so an ended session is refused at
//! once on every node.
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
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tributary_accounts::{AuthError, Identity};
use tributary_store::{ApiSession, NewSession, SessionBounds, Store, TokenHash};

use crate::error::store_error;
use crate::error::{ApiError, Result};
use crate::ApiState;

/// How long a login token is valid (from login: no sliding expiry).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// At most this many live tokens in the store; a login beyond it gets 503
/// (bounded storage: expired tokens are purged first). Nodes that log
/// people in at the same moment may pass it by that many.
pub const MAX_SESSIONS: usize = 100_000;

/// Login sessions: made, found and ended in the store, under the bound of
/// `per_owner` tokens per owner (counted in the store, so on every node).
#[derive(Debug)]
pub(crate) struct Sessions {
    store: Arc<Store>,
    per_owner: usize,
    /// How long a token is valid ([`TOKEN_LIFETIME`] outside tests).
    lifetime: Duration,
    /// The live feeds open on this node, by the session they were opened
    /// with: a session ended here (logout, pushed out by a login) ends them
    /// at once; one ended on another node ends them at their next check of
    /// the store (`live::SESSION_CHECK`).
    watched: Arc<Mutex<HashMap<TokenHash, Watch>>>,
}

#[derive(Debug)]
struct Watch {
    ended: CancellationToken,
    /// Live feeds holding the entry ([`SessionWatch`]s): the last to go
    /// removes it.
    feeds: usize,
}

/// Held by a live feed: `ended` is cancelled when its session ends on this
/// node.
pub(crate) struct SessionWatch {
    pub(crate) ended: CancellationToken,
    hash: TokenHash,
    watched: Arc<Mutex<HashMap<TokenHash, Watch>>>,
}

impl Drop for SessionWatch {
    fn drop(&mut self) {
        let mut watched = lock(&self.watched);
        if let Some(watch) = watched.get_mut(&self.hash) {
            watch.feeds -= 1;
            if watch.feeds == 0 {
                watched.remove(&self.hash);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The cookie that carries a dashboard's login token.
pub const SESSION_COOKIE: &str = "tributary_session";
/// The header that carries the CSRF token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// 32 random bytes in hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the store keeps of a token. A plain SHA-256 is enough: the token is
/// 32 random bytes, not a password, so there is nothing to guess.
pub(crate) fn token_hash(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

/// The CSRF token of a session: derived from its token, so that nothing of
/// it is stored and every node gives the same one. The page's scripts that
/// read it cannot go back to the token, and the prefix keeps it apart from
/// the stored hash (a copy of the store does not give it either).
fn csrf_of(token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"tributary csrf\0");
    hasher.update(token.as_bytes());
    hex::encode(hasher.finalize())
}

/// Now, in milliseconds since the Unix epoch (as the store keeps times).
fn now_ms() -> i64 {
    crate::unix_ms(SystemTime::now())
}

/// A live session as a request presented it.
#[derive(Debug, Clone)]
pub(crate) struct LiveSession {
    pub(crate) token_hash: TokenHash,
    pub(crate) owner: String,
    pub(crate) csrf: String,
    pub(crate) expires_ms: i64,
    /// When the token expires, for a live feed's end.
    pub(crate) expires: Instant,
    /// Whether it came in the cookie (and not as a bearer token).
    pub(crate) by_cookie: bool,
}

impl Sessions {
    pub(crate) fn new(store: Arc<Store>, per_owner: usize, lifetime: Duration) -> Sessions {
        Sessions {
            store,
            per_owner: per_owner.max(1),
            lifetime,
            watched: Arc::default(),
        }
    }

    /// A new session for `owner`: its token and its CSRF token. When the
    /// owner already holds `per_owner` tokens, the oldest ends.
    async fn create(&self, owner: String) -> Result<(String, String)> {
        let token = random_hex();
        let now = now_ms();
        let lifetime_ms = i64::try_from(self.lifetime.as_millis()).unwrap_or(i64::MAX);
        let session = ApiSession {
            token_hash: token_hash(&token),
            owner,
            created_ms: now,
            last_used_ms: now,
            expires_ms: now.saturating_add(lifetime_ms),
        };
        let bounds = SessionBounds {
            per_owner: self.per_owner,
            total: MAX_SESSIONS,
        };
        match self
            .store
            .create_session(&session, bounds)
            .await
            .map_err(store_error)?
        {
            NewSession::Full => Err(ApiError::Unavailable(
                "too many logged-in sessions; try again later".into(),
            )),
            NewSession::Created { ended } => {
                for hash in ended {
                    self.ended_here(hash);
                    tracing::info!(owner = %session.owner, per_owner = self.per_owner, "login: the owner's oldest token ended (tokens per owner bound)");
                }
                let csrf = csrf_of(&token);
                Ok((token, csrf))
            }
        }
    }

    /// Ends a session; whether the token was live.
    async fn end(&self, hash: TokenHash) -> Result<bool> {
        let live = self
            .store
            .end_session(hash, now_ms())
            .await
            .map_err(store_error)?;
        self.ended_here(hash);
        Ok(live)
    }

    /// Ends this node's live feeds of a session that just ended.
    fn ended_here(&self, hash: TokenHash) {
        if let Some(watch) = lock(&self.watched).remove(&hash) {
            watch.ended.cancel();
        }
    }

    /// The session of a token, if live.
    async fn get(&self, hash: TokenHash) -> Result<Option<ApiSession>> {
        self.store
            .session(hash, now_ms())
            .await
            .map_err(store_error)
    }

    /// Whether a session is still live, for a live feed's periodic check.
    pub(crate) async fn is_live(&self, hash: TokenHash) -> Result<bool> {
        Ok(self.get(hash).await?.is_some())
    }

    /// What a live feed of this session waits on.
    pub(crate) fn watch(&self, hash: TokenHash) -> SessionWatch {
        let mut watched = lock(&self.watched);
        let watch = watched.entry(hash).or_insert_with(|| Watch {
            ended: CancellationToken::new(),
            feeds: 0,
        });
        watch.feeds += 1;
        SessionWatch {
            ended: watch.ended.clone(),
            hash,
            watched: self.watched.clone(),
        }
    }

    /// How many live tokens `owner` holds (counted in the store).
    #[cfg(test)]
    pub(crate) async fn count_of(&self, owner: &str) -> u64 {
        self.store
            .session_count(owner, now_ms())
            .await
            .expect("count sessions in a test store")
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
        let token_hash = token_hash(&token);
        let session = state
            .inner
            .sessions
            .get(token_hash)
            .await?
            .ok_or(ApiError::Unauthorized(EXPIRED))?;
        let left_ms = u64::try_from(session.expires_ms.saturating_sub(now_ms())).unwrap_or(0);
        let expires = Instant::now() + Duration::from_millis(left_ms);
        let csrf = csrf_of(&token);
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
            token_hash,
            owner: session.owner,
            csrf,
            expires_ms: session.expires_ms,
            expires,
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
fn set_cookie(token: Option<(&str, Duration)>, headers: &HeaderMap) -> HeaderValue {
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let (value, max_age) = match token {
        Some((token, lifetime)) => (token, lifetime.as_secs()),
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
    if !state.inner.sessions.end(session.token_hash).await? {
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

/// The shortest password sign-up accepts, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Fewer different characters than this is a pattern, not a password.
const MIN_DISTINCT_CHARS: usize = 4;
/// The passwords every guesser tries first (those of 8 characters or more
/// that the other rules let through).
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password123",
    "passw0rd",
    "iloveyou",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "whatever",
    "trustno1",
    "superman",
    "starwars",
    "qwertyuiop",
    "qwerty123",
    "1q2w3e4r",
    "1qaz2wsx",
    "zaq12wsx",
    "letmein1",
    "welcome1",
    "changeme",
    "administrator",
    "tributary",
];

/// Refuses a sign-up password that a guesser would try early: too short,
/// the name itself (or reversed), too few different characters ("aaaaaaaa",
/// "abababab"), a run such as "12345678" or "abcdefgh", or one of the
/// commonest passwords. The detail names the rule (the rules are public).
pub(crate) fn check_password(name: &str, password: &str) -> Result<()> {
    let chars: Vec<char> = password.chars().collect();
    let lower = password.to_lowercase();
    let weak = |why: &str| Err(ApiError::BadBody(format!("password {why}")));
    if chars.len() < MIN_PASSWORD_CHARS {
        return weak(&format!(
            "must be at least {MIN_PASSWORD_CHARS} characters long"
        ));
    }
    let reversed: String = name.chars().rev().collect();
    if lower == name.to_lowercase() || lower == reversed.to_lowercase() {
        return weak("must not be the name");
    }
    let mut distinct = chars.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT_CHARS {
        return weak(&format!(
            "must have at least {MIN_DISTINCT_CHARS} different characters"
        ));
    }
    let steps: Vec<i64> = chars
        .windows(2)
        .map(|w| i64::from(u32::from(w[1])) - i64::from(u32::from(w[0])))
        .collect();
    if steps.iter().all(|step| *step == steps[0]) {
        return weak("must not be a run of characters such as 12345678 or abcdefgh");
    }
    if COMMON_PASSWORDS.contains(&lower.as_str()) {
        return weak("is one of the most common passwords");
    }
    Ok(())
}

/// A login or sign-up name must follow the account name rules before
/// anything is done or kept for it (a throttle entry included): a
/// syntactically impossible name cannot exist, so refusing it with 400
/// tells nothing about which names do.
fn check_name(name: &str) -> Result<()> {
    tributary_accounts::check_owner_name(name).map_err(|e| ApiError::BadBody(e.to_string()))
}

/// The request's source address (`None` when the router is driven without
/// a socket, as in unit tests), and the listener it came in on.
pub(crate) struct Peer {
    pub(crate) source: Option<SocketAddr>,
    pub(crate) local: Option<SocketAddr>,
}

impl FromRequestParts<ApiState> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &ApiState,
    ) -> std::result::Result<Peer, Self::Rejection> {
        Ok(Peer {
            source: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr),
            local: parts
                .extensions
                .get::<crate::LocalAddr>()
                .map(|crate::LocalAddr(addr)| *addr),
        })
    }
}

/// `POST /api/v1/signup`: a new owner with the given password.
pub(crate) async fn signup(
    State(state): State<ApiState>,
    peer: Peer,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>)> {
    if !state.signup().is_open_on(peer.local) {
        return Err(ApiError::Forbidden(
            "sign-up is turned off on this server; its operator adds owners (tributary owner add)",
        ));
    }
    let Json(credentials) = body?;
    check_name(&credentials.name)?;
    check_password(&credentials.name, &credentials.password)?;
    // Only a sign-up that will cost an Argon2 hash and a file write counts.
    // (No source only when the router is driven without a socket.)
    if let Some(source) = peer.source {
        if let Err(wait) = state
            .inner
            .signup_throttle
            .take(source.ip(), Instant::now())
        {
            tracing::info!(%source, "sign-up refused: too many from this source");
            return Err(ApiError::TooMany {
                detail: "too many sign-ups from this address; try again later".into(),
                retry_after_s: Some(wait.as_secs_f64().ceil() as u64),
            });
        }
    }
    let data_dir = state.inner.data_dir.clone();
    let name = credentials.name.clone();
    // Argon2 hashing and the locked file write are blocking. The hash comes
    // before the name is looked up, so a taken name takes as long as a free one.
    let added = blocking(move || {
        tributary_accounts::add_owner(&data_dir, &credentials.name, Some(&credentials.password))
    })
    .await?;
    match added {
        Ok(_) => {}
        // Never which kind of account holds the name: that would tell a
        // stranger which names are devices, services or admins.
        Err(tributary_accounts::Error::Exists { .. }) => {
            return Err(ApiError::Conflict(crate::error::NAME_NOT_AVAILABLE.into()))
        }
        Err(other) => return Err(other.into()),
    }
    tracing::info!(owner = %name, "owner signed up");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "owner": name })),
    ))
}

/// `POST /api/v1/login`: a token for an owner's name and password, in the
/// body or (with `"cookie": true`) in the session cookie.
///
/// An unknown name, a wrong password and a name that is not an owner's
/// (device, service, admin) get the same 401 after the same work (one
/// Argon2 check), so neither the answer nor its time tells them apart.
pub(crate) async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response> {
    let Json(credentials) = body?;
    check_name(&credentials.name)?;
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
    // Again with the permit: guesses that waited for it stop at a lock
    // that the guesses before them started.
    if let Err(wait) = throttle.check(&name, Instant::now()) {
        return Err(ApiError::TooManyLogins {
            retry_after_s: wait.as_secs_f64().ceil() as u64,
        });
    }
    let accounts = state.inner.accounts.clone();
    let identity = blocking(move || {
        accounts.reload_if_changed()?;
        Ok::<_, ApiError>(
            accounts.authenticate_evenly(&credentials.name, credentials.password.as_bytes()),
        )
    })
    .await??;
    let owner = match identity {
        Ok(Identity::Owner { owner }) => owner,
        // A device, service or admin is not an owner: the same answer as a
        // wrong password, so that nothing about the name leaks.
        Ok(_)
        | Err(
            AuthError::UnknownUser | AuthError::BadSecret | AuthError::Revoked | AuthError::Locked,
        ) => {
            if let Some(lock) = throttle.failed(&name, Instant::now()) {
                // One line per lock, not per attempt.
                tracing::warn!(name = %name, lock_s = lock.as_secs(), "login: too many wrong passwords; name locked");
            }
            return Err(ApiError::BadCredentials);
        }
    };
    throttle.succeeded(&name);
    let (token, csrf) = state.inner.sessions.create(owner.clone()).await?;
    let lifetime = state.inner.sessions.lifetime;
    let expires_in_s = lifetime.as_secs();
    let mut response = if credentials.cookie {
        let body =
            serde_json::json!({ "owner": owner, "csrf": csrf, "expires_in_s": expires_in_s });
        let mut response = Json(body).into_response();
        response.headers_mut().insert(
            header::SET_COOKIE,
            set_cookie(Some((&token, lifetime)), &headers),
        );
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
