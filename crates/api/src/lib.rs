//! The owner-facing HTTP API (axum): sign-up and login, the owner's
//! devices, measurements, dead letters and export from the store, the
//! owner's takeout (one streamed zip of everything, `takeout/`), the
//! behaviour model's activity segments and its on/off switch, the live feed (Server-Sent Events from the log),
//! consent with signed receipts and the audit log (owners decide, services ask and read), pooled packs, health,
//! Prometheus metrics and an OpenAPI 3.1 document; and the owner's
//! dashboard, the single-page app of `web/` embedded at compile time and
//! served for every GET outside `/api/` (`web.rs`, docs/dashboard.md).
//! `docs/api.md` lists the endpoints with examples.
//!
//! # Overview
//!
//! - [`ApiState`]: what the handlers reach (data dir, accounts, store, log,
//!   login sessions, metrics, the bounds of [`HttpConfig`]); cheap to clone.
//! - [`router`] builds the `axum::Router` (tests drive it directly);
//!   [`serve`] runs it on a listener until a shutdown future resolves.
//! - [`ApiError`]: every error, answered as `application/problem+json`.
//!
//! # Invariants
//!
//! - The owner of every data request comes from its session, a bearer
//!   token or the dashboard's cookie ([`auth::Owner`]), never from the
//!   path, query or body (principle 3 of docs/architecture.md); another
//!   owner's device is answered as absent (404).
//! - A change made with the cookie carries the session's CSRF token
//!   (`X-CSRF-Token`), or is refused with 403 before anything is done.
//! - Logins are throttled per name after a few wrong passwords
//!   (`tributary_accounts::LoginThrottle`, shared with MQTT CONNECT: 429
//!   with Retry-After, doubling locks).
//! - Bounded (docs/configuration.md, `[http]`): connections and the time
//!   to send a request head ([`serve`], `server.rs`), bodies
//!   ([`BODY_LIMIT`]), sign-ups per source address, login tokens per owner
//!   and in all ([`auth::MAX_SESSIONS`]; both counted in the store),
//!   concurrent Argon2 checks, live
//!   feeds per owner and in all ([`live::MAX_FEEDS`]) and their duration,
//!   devices per owner, and the size of every list answer.
//! - A service (HTTP Basic, `/api/v1/service/`) names the owner it reads,
//!   and reads only that owner's consented types under a live consent;
//!   each read is in the owner's audit log before it is answered
//!   (`service.rs`, docs/consent.md). Consent is decided only by the owner
//!   asked (`consent.rs`).
//! - A live feed ends when the token it was opened with ends.
//! - Every error, axum's own rejections included, is problem+json.
//! - Login sessions live in the store, by the SHA-256 of their token: they
//!   survive a restart and are valid on every node sharing the store; the
//!   per-owner bound is counted there. No node caches them.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! let data_dir = std::path::PathBuf::from("data");
//! let accounts = Arc::new(tributary_accounts::Accounts::open(&data_dir).expect("accounts"));
//! let store = Arc::new(tributary_store::Store::open(None, &data_dir).await.expect("store"));
//! let log = tributary_log::Log::open(tributary_log::LogConfig::new(data_dir.join("log"))).expect("log");
//! let state = tributary_api::ApiState::new(data_dir, accounts, store, log);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! tributary_api::serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod activity;
mod audit;
pub mod auth;
mod config;
mod consent;
mod data;
mod devices;
mod erasure;
mod error;
pub mod live;
mod metrics;
mod packs;
mod server;
mod service;
mod takeout;
#[cfg(test)]
mod tests;
mod throttle;
mod web;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::sync::Semaphore;

pub use config::{ConfigError, HttpConfig, HttpFileConfig, Signup};
pub use erasure::RetainedMessages;
pub use error::{ApiError, Result};
pub use metrics::{Histogram, Metrics, HTTP_REQUESTS_TOTAL};
pub use server::{serve, LocalAddr};

/// Largest request body accepted (all bodies are small JSON objects).
pub const BODY_LIMIT: usize = 64 * 1024;
/// Concurrent Argon2 checks at login: each takes a core for ~30 ms.
const LOGIN_CONCURRENCY: usize = 2;

/// The OpenAPI 3.1 document served at `/api/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// What the handlers reach. Clones share everything.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where `accounts.json` lives: sign-up and devices write it there.
    data_dir: PathBuf,
    /// The broker's view of the accounts, for login.
    accounts: Arc<tributary_accounts::Accounts>,
    /// Measurements, dead letters and activity, read for the caller only;
    /// the caller's activity switch.
    store: Arc<tributary_store::Store>,
    /// The live feed follows it.
    log: tributary_log::Log,
    /// The bounds of `[http]`.
    config: HttpConfig,
    sessions: auth::Sessions,
    /// Sign-ups per source address.
    signup_throttle: throttle::SignupThrottle,
    /// Whether `POST /api/v1/signup` is open (`[http] signup`); changed by
    /// [`ApiState::set_signup`].
    signup: std::sync::Mutex<Signup>,
    login_permits: Semaphore,
    /// All live feeds, and each owner's.
    feeds: live::Feeds,
    /// Cancelled when [`serve`] is told to shut down: live feeds end then,
    /// so that shutdown does not wait for them.
    closing: tokio_util::sync::CancellationToken,
    metrics: Metrics,
    /// Where devices connect, for the dashboard's snippets.
    mqtt: std::sync::RwLock<MqttEndpoints>,
    /// Where live feeds learn of their owner's records (`set_router`).
    router: std::sync::OnceLock<Arc<tributary_router::Router>>,
    /// The receipts' signing key and issuer (`consent.rs`).
    receipts: consent::Receipts,
    /// Set when the node starts leaving ([`ApiState::set_draining`]):
    /// `/readyz` answers 503 from then on, so a load balancer checking it
    /// sends nothing new here.
    draining: std::sync::atomic::AtomicBool,
    /// The owners whose takeout is being written (one each, a few in all).
    takeouts: takeout::Running,
    /// Owners' data keys: live feeds open payloads with it, erasure
    /// destroys keys through the store and forgets them here
    /// (`set_keyring`; unset, payloads are shown as stored).
    keyring: std::sync::OnceLock<Arc<tributary_rights::owner_keys::Keyring>>,
    /// The erasures of devices and time ranges the node knows of: live
    /// feeds do not show what they cover (`set_erasures`; unset, none).
    erasures: std::sync::OnceLock<Arc<dyn tributary_rights::erased::Erasures>>,
    /// The archive erasure deletes from or rewrites (`set_archive`).
    archive: std::sync::OnceLock<Arc<tributary_archive::Archive>>,
    /// The retained messages erasure clears (`set_retained`).
    retained: std::sync::OnceLock<Arc<dyn erasure::RetainedMessages>>,
}

/// The MQTT listeners' ports, as `GET /api/v1/info` tells the dashboard
/// (the host is the one the page was loaded from).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MqttEndpoints {
    /// MQTT over TCP.
    pub port: Option<u16>,
    /// MQTT over TLS.
    pub tls_port: Option<u16>,
    /// MQTT over WebSocket (path `/mqtt`).
    pub ws_port: Option<u16>,
    /// MQTT over secure WebSocket (path `/mqtt`).
    pub wss_port: Option<u16>,
}

impl ApiState {
    /// With the default bounds of `[http]`.
    pub fn new(
        data_dir: PathBuf,
        accounts: Arc<tributary_accounts::Accounts>,
        store: Arc<tributary_store::Store>,
        log: tributary_log::Log,
    ) -> ApiState {
        ApiState::with_config(data_dir, accounts, store, log, HttpConfig::default())
    }

    /// With the bounds of `config` (from [`HttpFileConfig::build`]).
    pub fn with_config(
        data_dir: PathBuf,
        accounts: Arc<tributary_accounts::Accounts>,
        store: Arc<tributary_store::Store>,
        log: tributary_log::Log,
        config: HttpConfig,
    ) -> ApiState {
        let sessions = auth::Sessions::new(
            store.clone(),
            config.max_tokens_per_owner,
            config.token_lifetime,
        );
        ApiState {
            inner: Arc::new(Inner {
                data_dir,
                accounts,
                store,
                log,
                sessions,
                signup_throttle: throttle::SignupThrottle::new(config.signups_per_hour_per_source),
                signup: std::sync::Mutex::new(config.signup),
                login_permits: Semaphore::new(LOGIN_CONCURRENCY),
                feeds: live::Feeds::new(live::MAX_FEEDS, config.max_feeds_per_owner),
                closing: tokio_util::sync::CancellationToken::new(),
                config,
                metrics: Metrics::default(),
                mqtt: std::sync::RwLock::default(),
                router: std::sync::OnceLock::new(),
                draining: std::sync::atomic::AtomicBool::new(false),
                takeouts: takeout::Running::default(),
                receipts: consent::Receipts::new(),
                keyring: std::sync::OnceLock::new(),
                erasures: std::sync::OnceLock::new(),
                archive: std::sync::OnceLock::new(),
                retained: std::sync::OnceLock::new(),
            }),
        }
    }

    /// What the installation says of itself in every consent receipt
    /// (`[consent]`, docs/configuration.md).
    pub fn set_receipt_issuer(&self, issuer: tributary_rights::receipt::Issuer) {
        self.inner.receipts.set_issuer(issuer);
    }

    /// The keyring of the node (docs/erasure.md).
    pub fn set_keyring(&self, keyring: Arc<tributary_rights::owner_keys::Keyring>) {
        let _ = self.inner.keyring.set(keyring);
    }

    pub(crate) fn keyring(&self) -> Option<&Arc<tributary_rights::owner_keys::Keyring>> {
        self.inner.keyring.get()
    }

    /// The erasures live feeds respect (docs/erasure.md).
    pub fn set_erasures(&self, erasures: Arc<dyn tributary_rights::erased::Erasures>) {
        let _ = self.inner.erasures.set(erasures);
    }

    /// Whether an erasure covers `record` (its device, at its receive time).
    pub(crate) fn erased(&self, record: &tributary_log::Record) -> bool {
        self.inner.erasures.get().is_some_and(|erasures| {
            erasures.covers_record(&record.owner, &record.device, record.receive_time_ms)
        })
    }

    /// The archive erasures reach (none: the archive is off).
    pub fn set_archive(&self, archive: Arc<tributary_archive::Archive>) {
        let _ = self.inner.archive.set(archive);
    }

    /// The retained messages of the node's broker, which erasures clear
    /// (none: erasures leave retained messages alone).
    pub fn set_retained(&self, retained: Arc<dyn RetainedMessages>) {
        let _ = self.inner.retained.set(retained);
    }

    /// Has live feeds follow owners through the node's router (the one the
    /// broker routes with), so that the log is read once for all of them.
    /// Without it the API starts a router of its own on first use.
    pub fn set_router(&self, router: Arc<tributary_router::Router>) {
        let _ = self.inner.router.set(router);
    }

    /// The router live feeds follow owners through.
    pub(crate) fn router(&self) -> &Arc<tributary_router::Router> {
        self.inner.router.get_or_init(|| {
            let log = self.inner.log.clone();
            let router = Arc::new(tributary_router::Router::new(log.end_offset()));
            // Ends when the log closes.
            let stop = tokio_util::sync::CancellationToken::new();
            tokio::spawn(tributary_router::run(router.clone(), log, stop));
            router
        })
    }

    /// Opens or closes `POST /api/v1/signup`; closed, it answers 403 and
    /// owners are added with `tributary owner add`.
    pub fn set_signup(&self, signup: Signup) {
        *self
            .inner
            .signup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = signup;
    }

    /// Whether and how `POST /api/v1/signup` is open.
    pub fn signup(&self) -> Signup {
        *self
            .inner
            .signup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tells the dashboard where devices connect.
    pub fn set_mqtt_endpoints(&self, endpoints: MqttEndpoints) {
        *self
            .inner
            .mqtt
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = endpoints;
    }

    /// Marks the node as leaving: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.inner
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The metrics, for the server to set its gauges.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("data_dir", &self.inner.data_dir)
            .finish_non_exhaustive()
    }
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/signup", post(auth::signup))
        .route("/login", post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/session", get(auth::session))
        .route("/info", get(info))
        .route("/devices", get(devices::list).post(devices::add))
        .route("/devices/{id}", delete(devices::revoke))
        .route("/devices/{id}/token", post(devices::rotate))
        .route("/erasures", post(erasure::erase))
        .route("/account", delete(erasure::erase_account))
        .route("/summary", get(data::summary))
        .route("/measurements", get(data::measurements))
        .route("/dead-letters", get(data::dead_letters))
        .route("/export", get(data::export))
        .route("/takeout", get(takeout::takeout))
        .route("/live", get(live::live))
        .route("/activity", get(activity::timeline))
        .route("/activity/daily", get(activity::daily))
        .route(
            "/activity/settings",
            get(activity::settings).put(activity::set_settings),
        )
        .route("/consents", get(consent::list))
        .route("/consents/{id}", get(consent::get_one))
        .route("/consents/{id}/grant", post(consent::grant))
        .route("/consents/{id}/refuse", post(consent::refuse))
        .route("/consents/{id}/revoke", post(consent::revoke))
        .route(
            "/consents/{id}/receipts/{receipt_id}",
            get(consent::receipt),
        )
        .route("/consent/jwks.json", get(consent::jwks))
        .route("/consent/purposes", get(consent::purposes))
        .route("/audit", get(audit::list))
        .route("/service/consents", get(service::list).post(service::ask))
        .route("/service/measurements", get(service::measurements))
        .route(
            "/service/packs",
            get(packs::buyer_packs).post(packs::define),
        )
        .route(
            "/service/packs/{id}/releases",
            get(packs::releases).post(packs::release),
        )
        .route("/packs", get(packs::offers))
        .route(
            "/packs/settings",
            get(packs::settings).put(packs::set_settings),
        )
        .route("/packs/earnings", get(packs::earnings))
        .route("/packs/{id}/join", post(packs::join))
        .route("/packs/{id}/withdraw", post(packs::withdraw));
    Router::new()
        .nest("/api/v1", v1)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/openapi.json", get(openapi))
        .fallback(web::serve)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(error::problems_only))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panicked,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Gzip when the client asks (the dashboard's files, exports); the
        // default predicate leaves the live feed (text/event-stream) alone.
        // A zip is compressed already (and a takeout is large): not again.
        .layer(
            tower_http::compression::CompressionLayer::new().compress_when(
                tower_http::compression::predicate::Predicate::and(
                    tower_http::compression::predicate::DefaultPredicate::new(),
                    tower_http::compression::predicate::NotForContentType::const_new(
                        "application/zip",
                    ),
                ),
            ),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(metrics::UNMATCHED_ROUTE.to_owned(), |p| {
            p.as_str().to_owned()
        });
    let response = next.run(request).await;
    state
        .inner
        .metrics
        .count_request(&route, response.status().as_u16());
    response
}

/// `GET /api/v1/info`: the server's version and MQTT ports (no login
/// needed: the same as a port scan would tell).
async fn info(State(state): State<ApiState>) -> axum::Json<serde_json::Value> {
    let mqtt = state
        .inner
        .mqtt
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    axum::Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "mqtt": mqtt,
    }))
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the node is not leaving, the accounts file is readable and
/// the store answers a trivial query.
async fn readyz(State(state): State<ApiState>) -> Result<&'static str> {
    if state
        .inner
        .draining
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Err(ApiError::Unavailable("the node is draining".to_owned()));
    }
    let data_dir = state.inner.data_dir.clone();
    auth::blocking(move || tributary_accounts::list(&data_dir))
        .await?
        .map_err(|e| ApiError::Unavailable(format!("accounts not readable: {e}")))?;
    let probe = tributary_store::Query {
        owner: String::new(),
        from_ms: 0,
        to_ms: 1,
        names: Vec::new(),
        bucket_ms: None,
        limit: 1,
    };
    state.inner.store.query(&probe).await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: store query");
        ApiError::Unavailable(format!(
            "the {} store does not answer",
            state.inner.store.engine()
        ))
    })?;
    Ok("ready")
}

async fn metrics_text(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.inner.metrics.render(),
    )
}

async fn openapi() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI_JSON,
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
