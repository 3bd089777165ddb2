//! The API through its router (`tower::ServiceExt::oneshot`) with a real
//! accounts file and a real log in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use tributary_log::{Log, LogConfig, Offset, Record};

use crate::{router, ApiState};

mod consent;
mod limits;

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct Api {
    router: Router,
    state: ApiState,
    store: Arc<tributary_store::Store>,
    log: Log,
    _dir: tempfile::TempDir,
}

async fn api() -> Result<Api, Box<dyn std::error::Error>> {
    api_with_live(Duration::from_secs(60)).await
}

async fn api_with_live(live: Duration) -> Result<Api, Box<dyn std::error::Error>> {
    api_with_config(crate::HttpConfig {
        live_max_duration: live,
        ..crate::HttpConfig::default()
    })
    .await
}

async fn api_with_config(config: crate::HttpConfig) -> Result<Api, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let accounts = Arc::new(tributary_accounts::Accounts::open(dir.path())?);
    let store = Arc::new(tributary_store::Store::open(None, dir.path()).await?);
    let log = Log::open(LogConfig::new(dir.path().join("log")))?;
    let state = ApiState::with_config(
        dir.path().to_owned(),
        accounts,
        store.clone(),
        log.clone(),
        config,
    );
    Ok(Api {
        router: router(state.clone()),
        state,
        store,
        log,
        _dir: dir,
    })
}

struct Reply {
    status: StatusCode,
    content_type: String,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let authorization = token.map(|token| format!("Bearer {token}"));
        self.call_authorized(method, uri, authorization, body).await
    }

    /// A request with `authorization` as its whole Authorization header.
    async fn call_authorized(
        &self,
        method: Method,
        uri: &str,
        authorization: Option<String>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).expect("valid request"))
            .await
            .expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Reply {
            status,
            content_type,
            retry_after,
            body,
        }
    }

    async fn post(&self, uri: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, uri, token, Some(body)).await
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, uri, token, None).await
    }

    /// Signs `name` up and returns a login token.
    async fn owner(&self, name: &str) -> String {
        let reply = self
            .post(
                "/api/v1/signup",
                None,
                json!({"name": name, "password": "correct horse"}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let reply = self
            .post(
                "/api/v1/login",
                None,
                json!({"name": name, "password": "correct horse"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.json()["token"].as_str().expect("token").to_owned()
    }
}

fn assert_problem(reply: &Reply, status: StatusCode, detail_contains: &str) {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.content_type, "application/problem+json");
    let problem = reply.json();
    assert_eq!(problem["type"], "about:blank");
    assert_eq!(problem["status"], status.as_u16());
    assert!(problem["title"].is_string());
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_contains),
        "detail {detail:?} lacks {detail_contains:?}"
    );
}

#[tokio::test]
async fn signup_then_login_gives_a_token() -> TestResult {
    let api = api().await?;
    let token = api.owner("ann").await;
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let reply = api.get("/api/v1/devices", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!([]));
    Ok(())
}

#[tokio::test]
async fn signup_of_a_taken_name_is_409() -> TestResult {
    let api = api().await?;
    api.owner("ann").await;
    let reply = api
        .post(
            "/api/v1/signup",
            None,
            json!({"name": "ann", "password": "another one"}),
        )
        .await;
    assert_problem(&reply, StatusCode::CONFLICT, "name not available");
    Ok(())
}

#[tokio::test]
async fn bad_signups_are_400_naming_the_fault() -> TestResult {
    let api = api().await?;
    let reply = api
        .post(
            "/api/v1/signup",
            None,
            json!({"name": "a/b", "password": "correct horse"}),
        )
        .await;
    assert_problem(&reply, StatusCode::BAD_REQUEST, "may contain only");
    let reply = api
        .post(
            "/api/v1/signup",
            None,
            json!({"name": "ann", "password": "short"}),
        )
        .await;
    assert_problem(&reply, StatusCode::BAD_REQUEST, "password");
    let reply = api
        .post("/api/v1/signup", None, json!({"name": "ann"}))
        .await;
    assert_problem(&reply, StatusCode::BAD_REQUEST, "password");
    let big = "x".repeat(crate::BODY_LIMIT + 1);
    let reply = api
        .post(
            "/api/v1/signup",
            None,
            json!({"name": "ann", "password": big}),
        )
        .await;
    assert_problem(&reply, StatusCode::PAYLOAD_TOO_LARGE, "larger than");
    Ok(())
}

#[tokio::test]
async fn wrong_password_and_non_owners_get_401_at_login() -> TestResult {
    let api = api().await?;
    api.owner("ann").await;
    let reply = api
        .post(
            "/api/v1/login",
            None,
            json!({"name": "ann", "password": "wrong horse"}),
        )
        .await;
    assert_problem(&reply, StatusCode::UNAUTHORIZED, "wrong name or password");
    let reply = api
        .post(
            "/api/v1/login",
            None,
            json!({"name": "nobody", "password": "wrong horse"}),
        )
        .await;
    assert_problem(&reply, StatusCode::UNAUTHORIZED, "wrong name or password");
    Ok(())
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_name_with_retry_after() -> TestResult {
    let api = api().await?;
    api.owner("ann").await;
    let login = |name: &'static str, password: &'static str| {
        api.post(
            "/api/v1/login",
            None,
            json!({"name": name, "password": password}),
        )
    };
    for name in ["ann", "nobody"] {
        for _ in 0..tributary_accounts::throttle::FREE_FAILURES {
            let reply = login(name, "wrong horse").await;
            assert_problem(&reply, StatusCode::UNAUTHORIZED, "wrong name or password");
        }
        // Locked: even the right password waits, and a name that does not
        // exist is answered alike.
        let reply = login(name, "correct horse").await;
        assert_problem(
            &reply,
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins",
        );
        assert_eq!(reply.retry_after.as_deref(), Some("30"), "{name}");
    }
    // Other names are not affected.
    api.owner("bob").await;
    Ok(())
}

#[tokio::test]
async fn logout_ends_the_token_at_once() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let reply = api.get("/api/v1/devices", Some(&ann)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = api
        .call(Method::POST, "/api/v1/logout", Some(&ann), None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = api.get("/api/v1/devices", Some(&ann)).await;
    assert_problem(
        &reply,
        StatusCode::UNAUTHORIZED,
        "unknown or expired session",
    );
    let reply = api
        .call(Method::POST, "/api/v1/logout", Some(&ann), None)
        .await;
    assert_problem(
        &reply,
        StatusCode::UNAUTHORIZED,
        "unknown or expired session",
    );
    Ok(())
}

/// Another node on the same data directory and store (or this one after a
/// restart): a second `ApiState` with its own log directory.
async fn other_node(api: &Api) -> Result<Api, Box<dyn std::error::Error>> {
    let data_dir = api.state.inner.data_dir.clone();
    let accounts = Arc::new(tributary_accounts::Accounts::open(&data_dir)?);
    let log = Log::open(LogConfig::new(data_dir.join("log-other-node")))?;
    let state = ApiState::new(data_dir, accounts, api.store.clone(), log.clone());
    Ok(Api {
        router: router(state.clone()),
        state,
        store: api.store.clone(),
        log,
        _dir: tempfile::tempdir()?,
    })
}

#[tokio::test]
async fn a_session_holds_on_every_node_sharing_the_store_and_a_logout_on_one_ends_it_on_all(
) -> TestResult {
    let a = api().await?;
    let ann = a.owner("ann").await;
    let b = other_node(&a).await?;
    let on_b = b.get("/api/v1/session", Some(&ann)).await;
    assert_eq!(on_b.status, StatusCode::OK);
    let on_a = a.get("/api/v1/session", Some(&ann)).await;
    // The same owner, expiry and CSRF token wherever it is asked.
    assert_eq!(on_a.json(), on_b.json());
    assert_eq!(on_b.json()["owner"], "ann");
    // Only the token's hash is stored.
    let hash = crate::auth::token_hash(&ann);
    assert!(a
        .store
        .session(hash, crate::unix_ms(std::time::SystemTime::now()))
        .await?
        .is_some());

    let reply = b
        .call(Method::POST, "/api/v1/logout", Some(&ann), None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    for node in [&a, &b] {
        let reply = node.get("/api/v1/devices", Some(&ann)).await;
        assert_problem(
            &reply,
            StatusCode::UNAUTHORIZED,
            "unknown or expired session",
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_forged_token_or_an_expired_stored_session_is_401() -> TestResult {
    let api = api().await?;
    api.owner("ann").await;
    for forged in ["f".repeat(64), "not hex at all".into()] {
        let reply = api.get("/api/v1/devices", Some(&forged)).await;
        assert_problem(
            &reply,
            StatusCode::UNAUTHORIZED,
            "unknown or expired session",
        );
    }
    // A stored session whose expiry has passed (as another node, or an
    // earlier run, left it) is refused, and the lookup deletes it.
    let token = "e".repeat(64);
    let hash = crate::auth::token_hash(&token);
    let now = crate::unix_ms(std::time::SystemTime::now());
    let session = tributary_store::ApiSession {
        token_hash: hash,
        owner: "ann".into(),
        created_ms: now - 2_000,
        last_used_ms: now - 2_000,
        expires_ms: now - 1_000,
    };
    let bounds = tributary_store::SessionBounds {
        per_owner: 10,
        total: 10,
    };
    api.store.create_session(&session, bounds).await?;
    let reply = api.get("/api/v1/devices", Some(&token)).await;
    assert_problem(
        &reply,
        StatusCode::UNAUTHORIZED,
        "unknown or expired session",
    );
    // Deleted: nothing expired is left to purge.
    assert_eq!(api.store.purge_sessions(now, usize::MAX).await?, 0);
    Ok(())
}

#[tokio::test]
async fn signup_can_be_turned_off() -> TestResult {
    let api = api().await?;
    api.state.set_signup(crate::Signup::Off);
    let reply = api
        .post(
            "/api/v1/signup",
            None,
            json!({"name": "ann", "password": "correct horse"}),
        )
        .await;
    assert_problem(&reply, StatusCode::FORBIDDEN, "sign-up is turned off");
    api.state.set_signup(crate::Signup::Open);
    api.owner("ann").await;
    Ok(())
}

#[tokio::test]
async fn a_device_token_does_not_log_in_as_an_owner() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let reply = api
        .post("/api/v1/devices", Some(&ann), json!({"name": "watch"}))
        .await;
    let device_token = reply.json()["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = reply.json()["id"].as_str().unwrap_or_default().to_owned();
    let reply = api
        .post(
            "/api/v1/login",
            None,
            json!({"name": id, "password": device_token}),
        )
        .await;
    assert_problem(&reply, StatusCode::UNAUTHORIZED, "wrong name or password");
    Ok(())
}

#[tokio::test]
async fn missing_or_unknown_tokens_are_401() -> TestResult {
    let api = api().await?;
    let reply = api.get("/api/v1/devices", None).await;
    assert_problem(&reply, StatusCode::UNAUTHORIZED, "not logged in");
    let reply = api.get("/api/v1/devices", Some("00ff")).await;
    assert_problem(
        &reply,
        StatusCode::UNAUTHORIZED,
        "unknown or expired session",
    );
    let reply = api.get("/api/v1/live", Some("00ff")).await;
    assert_problem(
        &reply,
        StatusCode::UNAUTHORIZED,
        "unknown or expired session",
    );
    Ok(())
}

#[tokio::test]
async fn device_registration_returns_the_token_once_and_it_connects() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let reply = api
        .post("/api/v1/devices", Some(&ann), json!({"name": "watch"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let created = reply.json();
    assert_eq!(created["name"], "watch");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["topic"], format!("tributary/v1/{id}/senml"));
    let token = created["token"].as_str().expect("token");
    // The id and token are the device's MQTT user name and password.
    let accounts = tributary_accounts::Accounts::open(&api.state.inner.data_dir)?;
    let device = tributary_accounts::Identity::Device {
        owner: "ann".into(),
        device: id.clone(),
    };
    assert_eq!(
        accounts.authenticate(&id, token.as_bytes()),
        Ok(device.clone())
    );
    // Listed without the token.
    let reply = api.get("/api/v1/devices", Some(&ann)).await;
    let listed = reply.json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["name"], "watch");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["last_seen_ms"], Value::Null);
    assert_eq!(listed[0]["messages_last_hour"], 0);
    assert!(listed[0]["created_ms"].as_i64().unwrap_or(0) > 0);
    assert_eq!(listed[0]["revoked_ms"], Value::Null);
    assert!(!String::from_utf8_lossy(&reply.body).contains(token));
    // A name the owner already uses is 409.
    let reply = api
        .post("/api/v1/devices", Some(&ann), json!({"name": "watch"}))
        .await;
    assert_problem(&reply, StatusCode::CONFLICT, "already exists");
    // A new token replaces the old one.
    let reply = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/token"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let rotated = reply.json()["token"].as_str().expect("token").to_owned();
    accounts.reload_if_changed()?;
    assert!(accounts.authenticate(&id, token.as_bytes()).is_err());
    assert_eq!(accounts.authenticate(&id, rotated.as_bytes()), Ok(device));
    // Revoked: listed with revoked_ms, and its token cannot be rotated.
    let reply = api
        .call(
            Method::DELETE,
            &format!("/api/v1/devices/{id}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = api.get("/api/v1/devices", Some(&ann)).await;
    assert!(reply.json()[0]["revoked_ms"].as_i64().is_some());
    let reply = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/token"),
            Some(&ann),
            None,
        )
        .await;
    assert_problem(&reply, StatusCode::NOT_FOUND, "is revoked");
    Ok(())
}

#[tokio::test]
async fn two_owners_never_see_each_others_devices() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let bob = api.owner("bob").await;
    let reply = api
        .post("/api/v1/devices", Some(&ann), json!({"name": "watch"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let anns = reply.json()["id"].as_str().unwrap_or_default().to_owned();
    // Both may call a device "watch".
    let reply = api
        .post("/api/v1/devices", Some(&bob), json!({"name": "watch"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let bobs = reply.json()["id"].as_str().unwrap_or_default().to_owned();
    assert_ne!(anns, bobs);

    let names = |reply: Reply| -> Vec<String> {
        reply
            .json()
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["name"].as_str().map(str::to_owned))
            .collect()
    };
    let ids = |reply: Reply| -> Vec<String> {
        reply
            .json()
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        names(api.get("/api/v1/devices", Some(&ann)).await),
        ["watch"]
    );
    assert_eq!(
        ids(api.get("/api/v1/devices", Some(&ann)).await),
        vec![anns.clone()]
    );
    assert_eq!(
        ids(api.get("/api/v1/devices", Some(&bob)).await),
        vec![bobs.clone()]
    );

    // Bob cannot revoke or re-key Ann's device, and is told the same as
    // for a device that does not exist.
    for (method, uri) in [
        (Method::DELETE, format!("/api/v1/devices/{anns}")),
        (Method::POST, format!("/api/v1/devices/{anns}/token")),
    ] {
        let reply = api.call(method, &uri, Some(&bob), None).await;
        assert_problem(
            &reply,
            StatusCode::NOT_FOUND,
            &format!("you have no device with id {anns}"),
        );
    }
    let reply = api
        .call(Method::DELETE, "/api/v1/devices/nothing", Some(&bob), None)
        .await;
    assert_problem(
        &reply,
        StatusCode::NOT_FOUND,
        "you have no device with id nothing",
    );
    let reply = api.get("/api/v1/devices", Some(&ann)).await;
    assert_eq!(reply.json()[0]["revoked_ms"], Value::Null);
    Ok(())
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() -> TestResult {
    let api = api().await?;
    let reply = api.get("/api/v1/nothing", None).await;
    assert_problem(&reply, StatusCode::NOT_FOUND, "no such endpoint");
    let reply = api.call(Method::PUT, "/api/v1/signup", None, None).await;
    assert_problem(&reply, StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    let reply = api.call(Method::POST, "/api/v1/signup", None, None).await;
    assert_eq!(reply.status.as_u16() / 100, 4);
    assert_eq!(reply.content_type, "application/problem+json");
    Ok(())
}

#[tokio::test]
async fn a_draining_node_is_not_ready_but_healthy() -> TestResult {
    let api = api().await?;
    assert_eq!(api.get("/readyz", None).await.status, StatusCode::OK);
    api.state.set_draining();
    let reply = api.get("/readyz", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8(reply.body)?.contains("draining"));
    assert_eq!(api.get("/healthz", None).await.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn health_and_metrics() -> TestResult {
    let api = api().await?;
    let reply = api.get("/healthz", None).await;
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (StatusCode::OK, b"ok".as_slice())
    );
    let reply = api.get("/readyz", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    api.get("/api/v1/devices", None).await;
    api.state
        .metrics()
        .set_gauge("tributary_test_gauge", "a test gauge.", 3.0);
    let reply = api.get("/metrics", None).await;
    assert!(reply.content_type.starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(reply.body)?;
    assert!(
        text.contains("# TYPE tributary_http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("tributary_http_requests_total{route=\"/healthz\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tributary_http_requests_total{route=\"/api/v1/devices\",status=\"401\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE tributary_test_gauge gauge\ntributary_test_gauge 3\n"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn openapi_lists_every_route() -> TestResult {
    let api = api().await?;
    let reply = api.get("/api/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().ok_or("no paths")?;
    for (path, method) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} missing"
        );
    }
    Ok(())
}

/// Every route the router has, as the OpenAPI document names it.
const ROUTES: &[(&str, &str)] = &[
    ("/api/v1/signup", "post"),
    ("/api/v1/login", "post"),
    ("/api/v1/logout", "post"),
    ("/api/v1/session", "get"),
    ("/api/v1/info", "get"),
    ("/api/v1/devices", "get"),
    ("/api/v1/devices", "post"),
    ("/api/v1/devices/{id}", "delete"),
    ("/api/v1/devices/{id}/token", "post"),
    ("/api/v1/erasures", "post"),
    ("/api/v1/account", "delete"),
    ("/api/v1/summary", "get"),
    ("/api/v1/measurements", "get"),
    ("/api/v1/dead-letters", "get"),
    ("/api/v1/export", "get"),
    ("/api/v1/takeout", "get"),
    ("/api/v1/live", "get"),
    ("/api/v1/activity", "get"),
    ("/api/v1/activity/daily", "get"),
    ("/api/v1/activity/settings", "get"),
    ("/api/v1/activity/settings", "put"),
    ("/api/v1/consents", "get"),
    ("/api/v1/consents/{id}", "get"),
    ("/api/v1/consents/{id}/grant", "post"),
    ("/api/v1/consents/{id}/refuse", "post"),
    ("/api/v1/consents/{id}/revoke", "post"),
    ("/api/v1/consents/{id}/receipts/{receipt_id}", "get"),
    ("/api/v1/consent/jwks.json", "get"),
    ("/api/v1/consent/purposes", "get"),
    ("/api/v1/audit", "get"),
    ("/api/v1/service/consents", "get"),
    ("/api/v1/service/consents", "post"),
    ("/api/v1/service/measurements", "get"),
    ("/api/v1/service/packs", "get"),
    ("/api/v1/service/packs", "post"),
    ("/api/v1/service/packs/{id}/releases", "get"),
    ("/api/v1/service/packs/{id}/releases", "post"),
    ("/api/v1/packs", "get"),
    ("/api/v1/packs/settings", "get"),
    ("/api/v1/packs/settings", "put"),
    ("/api/v1/packs/earnings", "get"),
    ("/api/v1/packs/{id}/join", "post"),
    ("/api/v1/packs/{id}/withdraw", "post"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/metrics", "get"),
    ("/api/openapi.json", "get"),
];

fn record(owner: &str, device: &str, payload: &'static [u8]) -> Record {
    Record {
        receive_time_ms: 1_767_225_600_000,
        topic: format!("tributary/v1/{device}/senml"),
        payload: payload.into(),
        owner: owner.into(),
        device: device.into(),
        ..Record::default()
    }
}

#[tokio::test]
async fn live_feed_delivers_only_the_callers_records() -> TestResult {
    let api = api_with_live(Duration::from_secs(2)).await?;
    let ann = api.owner("ann").await;
    // Before the feed opens: never sent (the feed starts at the end).
    api.log.append(record("ann", "watch", b"old")).await?;

    let request = Request::builder()
        .uri("/api/v1/live")
        .header(header::AUTHORIZATION, format!("Bearer {ann}"))
        .body(Body::empty())?;
    let response = api.router.clone().oneshot(request).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );

    api.log.append(record("bob", "phone", b"bob's")).await?;
    api.log
        .append(record("ann", "watch", b"[{\"n\":\"hr\",\"v\":61}]"))
        .await?;
    api.log.append(record("", "anonymous", b"anon")).await?;
    api.log.append(record("ann", "watch", b"\xff\x00")).await?;

    // The feed ends by itself after its 2 s bound: read it all.
    let body =
        tokio::time::timeout(Duration::from_secs(10), response.into_body().collect()).await??;
    let text = String::from_utf8(body.to_bytes().to_vec())?;
    let events: Vec<Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(
        events,
        [
            json!({"topic": "tributary/v1/watch/senml", "device": "watch", "received_ms": 1_767_225_600_000u64,
                   "payload": "[{\"n\":\"hr\",\"v\":61}]"}),
            json!({"topic": "tributary/v1/watch/senml", "device": "watch", "received_ms": 1_767_225_600_000u64,
                   "payload": "/wA=", "encoding": "base64"}),
        ],
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn live_feed_ends_when_the_log_closes() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let request = Request::builder()
        .uri("/api/v1/live")
        .header(header::AUTHORIZATION, format!("Bearer {ann}"))
        .body(Body::empty())?;
    let response = api.router.clone().oneshot(request).await?;
    api.log.close().await?;
    tokio::time::timeout(Duration::from_secs(10), response.into_body().collect()).await??;
    Ok(())
}

fn row(
    owner: &str,
    device: &str,
    seq: u32,
    name: &str,
    time_ms: i64,
    value: f64,
) -> tributary_store::Row {
    tributary_store::Row {
        owner: owner.into(),
        device: device.into(),
        message_id: format!("{:032x}", time_ms),
        seq,
        name: name.into(),
        unit: Some("beat/min".into()),
        time_ms,
        value: Some(value),
        text: None,
        bool: None,
        data: None,
        sum: None,
    }
}

#[tokio::test]
async fn measurements_are_the_callers_only() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let bob = api.owner("bob").await;
    api.store
        .insert(&[
            row("ann", "watch", 0, "hr", 60_000, 60.0),
            row("ann", "watch", 1, "hr", 90_000, 70.0),
            row("ann", "watch", 2, "steps", 90_000, 5.0),
            row("bob", "phone", 0, "hr", 60_000, 99.0),
        ])
        .await?;
    let reply = api
        .get("/api/v1/measurements?from=0&to=120000&names=hr", Some(&ann))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let points = reply.json();
    let values: Vec<f64> = points
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["avg"].as_f64())
        .collect();
    assert_eq!(values, [60.0, 70.0]);
    assert_eq!(points[0]["device"], "watch");
    // Downsampled into one minute bucket.
    let reply = api
        .get(
            "/api/v1/measurements?from=60000&to=120000&names=hr&bucket=60000",
            Some(&ann),
        )
        .await;
    let points = reply.json();
    assert_eq!(points.as_array().map(Vec::len), Some(1), "{points}");
    assert_eq!(
        (points[0]["avg"].as_f64(), points[0]["count"].as_u64()),
        (Some(65.0), Some(2))
    );
    // Bob sees his own row only.
    let reply = api
        .get("/api/v1/measurements?from=0&to=120000", Some(&bob))
        .await;
    let values: Vec<f64> = reply
        .json()
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["avg"].as_f64())
        .collect();
    assert_eq!(values, [99.0]);
    // An owner parameter is no way around it.
    let reply = api
        .get(
            "/api/v1/measurements?from=0&to=120000&owner=ann",
            Some(&bob),
        )
        .await;
    assert_problem(
        &reply,
        StatusCode::BAD_REQUEST,
        "unknown query parameter 'owner'",
    );
    Ok(())
}

#[tokio::test]
async fn bad_query_parameters_are_400_naming_the_parameter() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    for (uri, detail) in [
        ("/api/v1/measurements?to=5", "'from': is required"),
        (
            "/api/v1/measurements?from=x&to=5",
            "'from': must be an integer",
        ),
        ("/api/v1/measurements?from=0", "'to': is required"),
        (
            "/api/v1/measurements?from=10&to=5",
            "'to': must not be before",
        ),
        ("/api/v1/measurements?from=0&to=5&bucket=0", "'bucket'"),
        ("/api/v1/measurements?from=0&to=5&limit=0", "'limit'"),
        ("/api/v1/measurements?from=0&to=5&limit=99999999", "'limit'"),
        ("/api/v1/dead-letters?limit=-1", "'limit'"),
        (
            "/api/v1/export?format=xml",
            "'format': must be senml, csv or parquet",
        ),
    ] {
        let reply = api.get(uri, Some(&ann)).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, detail);
    }
    let reply = api.get("/api/v1/measurements?from=0&to=5", None).await;
    assert_problem(&reply, StatusCode::UNAUTHORIZED, "not logged in");
    Ok(())
}

#[tokio::test]
async fn dead_letters_are_the_callers_only() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let bob = api.owner("bob").await;
    for (owner, payload) in [("ann", b"not senml".to_vec()), ("bob", vec![0xff, 0x00])] {
        api.store
            .dead_letter(&tributary_store::DeadLetter {
                owner: owner.into(),
                device: "d".into(),
                message_id: format!("{:032x}", 7),
                topic: "tributary/v1/d/senml".into(),
                received_ms: 1_000,
                reason: "not a SenML pack".into(),
                payload,
            })
            .await?;
    }
    let reply = api.get("/api/v1/dead-letters", Some(&ann)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let letters = reply.json();
    assert_eq!(letters.as_array().map(Vec::len), Some(1));
    assert_eq!(letters[0]["payload"], "not senml");
    assert_eq!(letters[0]["reason"], "not a SenML pack");
    let reply = api.get("/api/v1/dead-letters?limit=5", Some(&bob)).await;
    let letters = reply.json();
    assert_eq!(
        (
            letters[0]["payload"].as_str(),
            letters[0]["encoding"].as_str()
        ),
        (Some("/wA="), Some("base64"))
    );
    Ok(())
}

#[tokio::test]
async fn export_pages_through_every_row_as_senml_and_csv() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let bob = api.owner("bob").await;
    // More than one export page.
    let rows: Vec<_> = (0..2_500)
        .map(|i| row("ann", "watch", 0, "hr", 1_000 * i, i as f64))
        .collect();
    api.store.insert(&rows).await?;
    let mut odd = row("ann", "watch", 1, "note, \"quoted\"", 5, 0.0);
    (odd.value, odd.text, odd.unit) = (None, Some("line\nbreak".into()), None);
    let mut blob = row("ann", "watch", 2, "blob", 5, 0.0);
    (blob.value, blob.data, blob.bool) = (None, Some(vec![0xfb, 0xff]), Some(true));
    api.store
        .insert(&[odd, blob, row("bob", "phone", 0, "hr", 0, 1.0)])
        .await?;

    let reply = api.get("/api/v1/export", Some(&ann)).await;
    assert_eq!(
        (reply.status, reply.content_type.as_str()),
        (StatusCode::OK, "application/senml+json")
    );
    let records = reply.json();
    let records = records.as_array().ok_or("not an array")?;
    assert_eq!(records.len(), 2_502);
    assert_eq!(
        records[0],
        json!({"n": "hr", "u": "beat/min", "t": 0.0, "v": 0.0})
    );
    assert!(records
        .iter()
        .any(|r| *r == json!({"n": "blob", "u": "beat/min", "t": 0.005, "vb": true, "vd": "-_8"})));
    assert_eq!(
        records.last(),
        Some(&json!({"n": "hr", "u": "beat/min", "t": 2499.0, "v": 2499.0}))
    );

    let reply = api.get("/api/v1/export?format=csv", Some(&ann)).await;
    assert_eq!(reply.content_type, "text/csv; charset=utf-8");
    let text = String::from_utf8(reply.body)?;
    let mut lines = text.split("\r\n");
    assert_eq!(
        lines.next(),
        Some("device,message_id,seq,name,unit,time_ms,value,text,bool,data,sum")
    );
    assert!(
        text.contains(",1,\"note, \"\"quoted\"\"\",,5,,\"line\nbreak\",,,\r\n"),
        "{text}"
    );
    assert_eq!(text.matches("\r\n").count(), 1 + 2_502);

    let reply = api.get("/api/v1/export?format=csv", Some(&bob)).await;
    assert_eq!(String::from_utf8(reply.body)?.matches("\r\n").count(), 2);
    Ok(())
}

#[tokio::test]
async fn export_as_parquet_is_one_file_with_a_row_group_per_page() -> TestResult {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let api = api().await?;
    let ann = api.owner("ann").await;
    let rows: Vec<_> = (0..2_500)
        .map(|i| row("ann", "watch", 0, "hr", 1_000 * i, i as f64))
        .collect();
    api.store.insert(&rows).await?;
    api.store
        .insert(&[row("bob", "phone", 0, "hr", 0, 1.0)])
        .await?;
    let reply = api.get("/api/v1/export?format=parquet", Some(&ann)).await;
    assert_eq!(
        (reply.status, reply.content_type.as_str()),
        (StatusCode::OK, "application/vnd.apache.parquet")
    );
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(reply.body))?;
    assert_eq!(reader.metadata().num_row_groups(), 3, "pages of 1,000");
    let batches = reader.build()?.collect::<Result<Vec<_>, _>>()?;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2_500);
    let values: Vec<f64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("value")
                .and_then(|c| c.as_any().downcast_ref::<arrow_array::Float64Array>())
                .map(|a| a.values().to_vec())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(values, (0..2_500).map(f64::from).collect::<Vec<_>>());

    // An owner without measurements gets a valid, empty file.
    let carol = api.owner("carol").await;
    let reply = api.get("/api/v1/export?format=parquet", Some(&carol)).await;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(reply.body))?;
    assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    Ok(())
}

/// 2026-12-05T00:00:00Z.
const DEC_5: i64 = 20_792 * 86_400_000;
const HOUR: i64 = 3_600_000;

fn segment(
    owner: &str,
    device: &str,
    start_ms: i64,
    end_ms: i64,
    activity: &str,
) -> tributary_store::ActivitySegment {
    tributary_store::ActivitySegment {
        owner: owner.into(),
        device: device.into(),
        start_ms,
        end_ms,
        activity: activity.into(),
        confidence: 0.75,
        windows: 3,
        model_version: "har-v1".into(),
    }
}

#[tokio::test]
async fn activity_is_the_callers_only() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let bob = api.owner("bob").await;
    api.store
        .upsert_activity(&[
            segment(
                "ann",
                "watch",
                DEC_5 + 9 * HOUR,
                DEC_5 + 10 * HOUR,
                "walking",
            ),
            segment(
                "ann",
                "phone",
                DEC_5 + 9 * HOUR + 1_500,
                DEC_5 + 11 * HOUR,
                "sitting",
            ),
            segment("bob", "watch", DEC_5 + 9 * HOUR, DEC_5 + 12 * HOUR, "lying"),
        ])
        .await?;
    let uri = format!("/api/v1/activity?from={DEC_5}&to={}", DEC_5 + 86_400_000);
    let reply = api.get(&uri, Some(&ann)).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.json(),
        json!({"segments": [
            {"device": "watch", "activity": "walking",
             "start": "2026-12-05T09:00:00.000Z", "end": "2026-12-05T10:00:00.000Z",
             "start_ms": DEC_5 + 9 * HOUR, "end_ms": DEC_5 + 10 * HOUR,
             "confidence": 0.75, "windows": 3, "model_version": "har-v1"},
            {"device": "phone", "activity": "sitting",
             "start": "2026-12-05T09:00:01.500Z", "end": "2026-12-05T11:00:00.000Z",
             "start_ms": DEC_5 + 9 * HOUR + 1_500, "end_ms": DEC_5 + 11 * HOUR,
             "confidence": 0.75, "windows": 3, "model_version": "har-v1"},
        ], "truncated": false})
    );
    let reply = api.get(&format!("{uri}&limit=1"), Some(&ann)).await;
    let page = reply.json();
    assert_eq!(page["segments"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["segments"][0]["device"], "watch");
    assert_eq!(page["truncated"], true);

    let reply = api.get(&uri, Some(&bob)).await;
    let bobs = reply.json();
    assert_eq!(bobs["segments"].as_array().map(Vec::len), Some(1));
    assert_eq!(bobs["segments"][0]["activity"], "lying");
    // Nor do bob's minutes reach ann's summary.
    let reply = api
        .get(&uri.replace("/activity?", "/activity/daily?"), Some(&ann))
        .await;
    assert_eq!(
        reply.json(),
        json!({"days": [{"date": "2026-12-05", "minutes": {"walking": 60.0, "sitting": 119.975}}],
               "truncated": false})
    );
    let reply = api.get(&format!("{uri}&owner=ann"), Some(&bob)).await;
    assert_problem(
        &reply,
        StatusCode::BAD_REQUEST,
        "unknown query parameter 'owner'",
    );
    Ok(())
}

#[tokio::test]
async fn daily_minutes_split_at_the_callers_midnight() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    api.store
        .upsert_activity(&[
            // 22:00Z on the 5th to 02:00Z on the 6th
            segment(
                "ann",
                "watch",
                DEC_5 + 22 * HOUR,
                DEC_5 + 26 * HOUR,
                "sitting",
            ),
            // another device at the same time: both count
            segment(
                "ann",
                "phone",
                DEC_5 + 23 * HOUR,
                DEC_5 + 23 * HOUR + 30_000,
                "walking",
            ),
        ])
        .await?;
    let range = format!("from={DEC_5}&to={}", DEC_5 + 2 * 86_400_000);
    let reply = api
        .get(&format!("/api/v1/activity/daily?{range}"), Some(&ann))
        .await;
    assert_eq!(
        reply.json()["days"],
        json!([
            {"date": "2026-12-05", "minutes": {"sitting": 120.0, "walking": 0.5}},
            {"date": "2026-12-06", "minutes": {"sitting": 120.0}},
        ])
    );
    // UTC+02:00: midnight is 22:00Z, so all four hours fall on the 6th; the range's last
    // two hours are the 7th there.
    let reply = api
        .get(
            &format!("/api/v1/activity/daily?{range}&utc_offset_minutes=120"),
            Some(&ann),
        )
        .await;
    assert_eq!(
        reply.json()["days"],
        json!([
            {"date": "2026-12-05", "minutes": {}},
            {"date": "2026-12-06", "minutes": {"sitting": 240.0, "walking": 0.5}},
            {"date": "2026-12-07", "minutes": {}},
        ])
    );
    // UTC−03:30: midnight is 03:30Z; 22:00Z to 02:00Z is all on the 5th.
    let reply = api
        .get(
            &format!("/api/v1/activity/daily?{range}&utc_offset_minutes=-210"),
            Some(&ann),
        )
        .await;
    assert_eq!(
        reply.json()["days"],
        json!([
            {"date": "2026-12-04", "minutes": {}},
            {"date": "2026-12-05", "minutes": {"sitting": 240.0, "walking": 0.5}},
            {"date": "2026-12-06", "minutes": {}},
        ])
    );
    Ok(())
}

#[tokio::test]
async fn activity_settings_round_trip() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let bob = api.owner("bob").await;
    let uri = "/api/v1/activity/settings";
    let reply = api.get(uri, Some(&ann)).await;
    assert_eq!(
        (reply.status, reply.json()),
        (StatusCode::OK, json!({"enabled": true}))
    );
    let reply = api
        .call(
            Method::PUT,
            uri,
            Some(&ann),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (StatusCode::OK, json!({"enabled": false}))
    );
    assert_eq!(
        api.get(uri, Some(&ann)).await.json(),
        json!({"enabled": false})
    );
    assert_eq!(
        api.get(uri, Some(&bob)).await.json(),
        json!({"enabled": true})
    );
    assert_eq!(
        api.store.activity_disabled_owners().await?,
        ["ann".to_owned()].into_iter().collect()
    );
    let reply = api
        .call(Method::PUT, uri, Some(&ann), Some(json!({"enabled": true})))
        .await;
    assert_eq!(reply.json(), json!({"enabled": true}));
    assert!(api.store.activity_disabled_owners().await?.is_empty());

    for body in [
        json!({"enabled": "no"}),
        json!({}),
        json!({"enabled": false, "owner": "bob"}),
    ] {
        let reply = api.call(Method::PUT, uri, Some(&ann), Some(body)).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "enabled");
    }
    let reply = api
        .call(Method::PUT, uri, Some(&ann), Some(json!({"owner": "bob"})))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        api.get(uri, Some(&bob)).await.json(),
        json!({"enabled": true})
    );
    Ok(())
}

#[tokio::test]
async fn bad_activity_requests_are_problems() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let year = 366 * 86_400_000i64;
    for (uri, detail) in [
        ("/api/v1/activity?to=5".to_owned(), "'from': is required"),
        ("/api/v1/activity?from=0".to_owned(), "'to': is required"),
        (
            "/api/v1/activity?from=x&to=5".to_owned(),
            "'from': must be an integer",
        ),
        (
            "/api/v1/activity?from=10&to=5".to_owned(),
            "'to': must not be before",
        ),
        ("/api/v1/activity?from=0&to=5&limit=0".to_owned(), "'limit'"),
        (
            "/api/v1/activity?from=0&to=5&limit=10001".to_owned(),
            "'limit'",
        ),
        (
            "/api/v1/activity?from=0&to=5&bucket=1".to_owned(),
            "unknown query parameter 'bucket'",
        ),
        (
            "/api/v1/activity/daily?to=5".to_owned(),
            "'from': is required",
        ),
        (
            format!("/api/v1/activity/daily?from=0&to={}", year + 1),
            "'to': must be at most 366 days after 'from'",
        ),
        (
            "/api/v1/activity/daily?from=0&to=5&utc_offset_minutes=841".to_owned(),
            "'utc_offset_minutes': must be an integer from -840 to 840",
        ),
        (
            "/api/v1/activity/daily?from=0&to=5&utc_offset_minutes=1.5".to_owned(),
            "'utc_offset_minutes'",
        ),
        (
            format!(
                "/api/v1/activity/daily?from={}&to={}",
                i64::MIN,
                i64::MIN + 1
            ),
            "'from': must be within",
        ),
        (
            "/api/v1/activity/daily?from=0&to=5&limit=3".to_owned(),
            "unknown query parameter 'limit'",
        ),
    ] {
        let reply = api.get(&uri, Some(&ann)).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, detail);
    }
    // Exactly 366 days is fine, and an empty range has no days.
    let reply = api
        .get(
            &format!("/api/v1/activity/daily?from=0&to={year}"),
            Some(&ann),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["days"].as_array().map(Vec::len), Some(366));
    let reply = api
        .get("/api/v1/activity/daily?from=5&to=5", Some(&ann))
        .await;
    assert_eq!(reply.json(), json!({"days": [], "truncated": false}));

    for (method, uri) in [
        (Method::GET, "/api/v1/activity?from=0&to=5"),
        (Method::GET, "/api/v1/activity/daily?from=0&to=5"),
        (Method::GET, "/api/v1/activity/settings"),
        (Method::PUT, "/api/v1/activity/settings"),
    ] {
        let reply = api.call(method.clone(), uri, None, None).await;
        assert_problem(&reply, StatusCode::UNAUTHORIZED, "not logged in");
        let reply = api.call(method, uri, Some("00ff"), None).await;
        assert_problem(
            &reply,
            StatusCode::UNAUTHORIZED,
            "unknown or expired session",
        );
    }
    let reply = api
        .call(
            Method::DELETE,
            "/api/v1/activity/settings",
            Some(&ann),
            None,
        )
        .await;
    assert_problem(&reply, StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    Ok(())
}

/// One request with the given headers and optional JSON body; the response
/// as status, headers and body text.
async fn raw_call(
    api: &Api,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Result<(StatusCode, axum::http::HeaderMap, String), Box<dyn std::error::Error>> {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = api.router.clone().oneshot(request.body(body)?).await?;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

#[tokio::test]
async fn a_cookie_session_is_httponly_and_its_changes_need_the_csrf_token() -> TestResult {
    let api = api().await?;
    api.owner("ann").await;
    let (status, headers, body) = raw_call(
        &api,
        Method::POST,
        "/api/v1/login",
        &[],
        Some(json!({"name": "ann", "password": "correct horse", "cookie": true})),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let set_cookie = headers[header::SET_COOKIE].to_str()?.to_owned();
    for part in [
        "tributary_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let login: Value = serde_json::from_str(&body)?;
    // The token is in the cookie only, never where a script could read it.
    assert_eq!(login["token"], Value::Null);
    let csrf = login["csrf"].as_str().ok_or("csrf")?.to_owned();
    let cookie = set_cookie.split(';').next().ok_or("cookie")?.to_owned();
    let token = cookie.trim_start_matches("tributary_session=");
    assert!(!body.contains(token));

    // Reads need only the cookie.
    let (status, _, body) = raw_call(
        &api,
        Method::GET,
        "/api/v1/session",
        &[("cookie", &cookie)],
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let session: Value = serde_json::from_str(&body)?;
    assert_eq!(session["owner"], "ann");
    assert_eq!(session["csrf"], csrf.as_str());
    assert!(session["expires_ms"].as_i64().unwrap_or(0) > 0);

    // A change without the CSRF token, or with another, is refused and
    // does nothing.
    for sent in [None, Some("0badc0de")] {
        let mut headers = vec![("cookie", cookie.as_str())];
        if let Some(sent) = sent {
            headers.push(("x-csrf-token", sent));
        }
        let (status, _, body) = raw_call(
            &api,
            Method::POST,
            "/api/v1/devices",
            &headers,
            Some(json!({"name": "watch"})),
        )
        .await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("X-CSRF-Token"), "{body}");
    }
    let (_, _, body) = raw_call(
        &api,
        Method::GET,
        "/api/v1/devices",
        &[("cookie", &cookie)],
        None,
    )
    .await?;
    assert_eq!(body, "[]");
    let with_csrf = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let (status, headers, body) = raw_call(
        &api,
        Method::POST,
        "/api/v1/devices",
        &with_csrf,
        Some(json!({"name": "watch"})),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED);
    // A device token, like a login token, is kept by no cache.
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let id = serde_json::from_str::<Value>(&body)?["id"]
        .as_str()
        .ok_or("id")?
        .to_owned();
    let (status, headers, _) = raw_call(
        &api,
        Method::POST,
        &format!("/api/v1/devices/{id}/token"),
        &with_csrf,
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");

    // Logout ends the session and removes the cookie.
    let (status, headers, _) =
        raw_call(&api, Method::POST, "/api/v1/logout", &with_csrf, None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(headers[header::SET_COOKIE].to_str()?.contains("Max-Age=0"));
    let (status, _, _) = raw_call(
        &api,
        Method::GET,
        "/api/v1/session",
        &[("cookie", &cookie)],
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn a_cookie_behind_a_tls_proxy_is_secure() -> TestResult {
    let api = api().await?;
    api.owner("ann").await;
    let (_, headers, _) = raw_call(
        &api,
        Method::POST,
        "/api/v1/login",
        &[("x-forwarded-proto", "https")],
        Some(json!({"name": "ann", "password": "correct horse", "cookie": true})),
    )
    .await?;
    assert!(headers[header::SET_COOKIE].to_str()?.ends_with("; Secure"));
    Ok(())
}

#[tokio::test]
async fn the_dashboard_is_served_for_every_app_route_and_the_api_keeps_its_404() -> TestResult {
    let api = api().await?;
    for path in ["/", "/explore", "/devices?x=1"] {
        let (status, headers, body) = raw_call(&api, Method::GET, path, &[], None).await?;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(headers[header::CONTENT_TYPE]
            .to_str()?
            .starts_with("text/html"));
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str()?;
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(
            body.contains("<html") || body.contains("<!doctype"),
            "{body}"
        );
    }
    let (status, headers, _) =
        raw_call(&api, Method::GET, "/assets/missing-0000.js", &[], None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    let (status, headers, _) = raw_call(&api, Method::GET, "/api/v1/nothing", &[], None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    let (status, _, _) = raw_call(&api, Method::POST, "/explore", &[], None).await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    Ok(())
}

#[tokio::test]
async fn info_tells_where_devices_connect() -> TestResult {
    let api = api().await?;
    api.state.set_mqtt_endpoints(crate::MqttEndpoints {
        port: Some(1883),
        ws_port: Some(8083),
        ..Default::default()
    });
    let reply = api.get("/api/v1/info", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let info = reply.json();
    assert_eq!(info["mqtt"]["port"], 1883);
    assert_eq!(info["mqtt"]["ws_port"], 8083);
    assert_eq!(info["mqtt"]["tls_port"], Value::Null);
    Ok(())
}

/// The events' ids and the whole text of a live feed of `token` resumed
/// after `last` (it ends by `api_with_live`'s bound).
async fn resumed_feed(
    api: &Api,
    token: &str,
    last: Offset,
) -> Result<(Vec<u64>, String), Box<dyn std::error::Error>> {
    let (status, _, text) = raw_call(
        api,
        Method::GET,
        "/api/v1/live",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("last-event-id", &last.0.to_string()),
        ],
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{text}");
    let ids = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    Ok((ids, text))
}

#[tokio::test]
async fn a_live_feed_resumes_after_its_last_event_id() -> TestResult {
    let api = api_with_live(Duration::from_secs(1)).await?;
    let ann = api.owner("ann").await;
    let first = api.log.append(record("ann", "watch", b"one")).await?;
    api.log.append(record("bob", "phone", b"bob's")).await?;
    api.log.append(record("ann", "watch", b"two")).await?;
    let (ids, text) = resumed_feed(&api, &ann, first).await?;
    assert_eq!(ids, [first.0 + 2], "{text}");
    assert!(text.contains("two") && !text.contains("one"), "{text}");
    Ok(())
}

/// An erasure of one owner's device at all times, as the node's
/// tombstones would say it.
struct ErasedDevice(&'static str, &'static str);

impl tributary_rights::erased::Erasures for ErasedDevice {
    fn covers(&self, owner: &str, device: &str, _time_ms: i64) -> bool {
        (owner, device) == (self.0, self.1)
    }
}

#[tokio::test]
async fn a_resumed_live_feed_sends_nothing_an_erasure_covers() -> TestResult {
    let api = api_with_live(Duration::from_secs(1)).await?;
    api.state.set_erasures(Arc::new(ErasedDevice("ann", "old")));
    let ann = api.owner("ann").await;
    let first = api.log.append(record("ann", "watch", b"one")).await?;
    api.log.append(record("ann", "old", b"erased")).await?;
    api.log.append(record("ann", "watch", b"two")).await?;
    let (ids, text) = resumed_feed(&api, &ann, first).await?;
    assert_eq!(ids, [first.0 + 2], "{text}");
    assert!(!text.contains("erased"), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_gzipped_export_is_whole() -> TestResult {
    // Regression: the compression layer polled the export's stream after
    // its end, and the handler panicked (an empty reply to the browser).
    let api = api().await?;
    let ann = api.owner("ann").await;
    api.store
        .insert(&[row("ann", "watch", 0, "hr", 60_000, 60.0)])
        .await?;
    let request = Request::builder()
        .uri("/api/v1/export?format=csv")
        .header(header::AUTHORIZATION, format!("Bearer {ann}"))
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())?;
    let response = api.router.clone().oneshot(request).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
    let gzipped = response.into_body().collect().await?.to_bytes();
    let mut csv = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut csv)?;
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        [
            "device,message_id,seq,name,unit,time_ms,value,text,bool,data,sum",
            "watch,0000000000000000000000000000ea60,0,hr,beat/min,60000,60,,,,",
        ]
    );
    Ok(())
}

/// The takeout's entries, read back with the zip crate's reader (which
/// checks each entry's CRC as it reads to the end).
fn unzip(
    body: Vec<u8>,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, Box<dyn std::error::Error>> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(body))?;
    let mut entries = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        entries.insert(entry.name()?.into_owned(), bytes);
    }
    Ok(entries)
}

#[tokio::test]
async fn takeout_is_a_zip_of_everything_of_the_caller_and_nothing_of_another() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    api.owner("bob").await;
    // More than one export page, heart rate and steps.
    let mut rows: Vec<_> = (0..2_500)
        .map(|i| {
            row(
                "ann",
                "watch",
                0,
                "watch/hr",
                1_000 * i,
                60.0 + (i % 30) as f64,
            )
        })
        .collect();
    for i in 0..40 {
        let mut steps = row("ann", "watch", 1, "watch/steps", 1_000 * i, 10.0 * i as f64);
        steps.unit = Some("count".into());
        rows.push(steps);
    }
    rows.push(row("bob", "phone", 0, "phone/hr", 0, 99.5));
    api.store.insert(&rows).await?;
    // More than one page of segments, two devices starting together each
    // time, so that a page ends between two segments of the same start.
    let segments: Vec<_> = (0..1_500)
        .map(|i| tributary_store::ActivitySegment {
            owner: "ann".into(),
            device: if i % 2 == 0 { "phone" } else { "watch" }.into(),
            start_ms: 60_000 * (i / 2),
            end_ms: 60_000 * (i / 2) + 60_000,
            activity: "walking".into(),
            confidence: 0.9,
            windows: 10,
            model_version: "m1".into(),
        })
        .collect();
    api.store.upsert_activity(&segments).await?;

    let reply = api.get("/api/v1/takeout?from=1", Some(&ann)).await;
    assert_problem(&reply, StatusCode::BAD_REQUEST, "from");
    let reply = api.get("/api/v1/takeout", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let reply = api.get("/api/v1/takeout", Some(&ann)).await;
    assert_eq!(
        (reply.status, reply.content_type.as_str()),
        (StatusCode::OK, "application/zip")
    );
    let entries = unzip(reply.body)?;
    assert_eq!(entries.len(), 14, "{:?}", entries.keys());
    let text = |name: &str| String::from_utf8(entries[name].clone()).unwrap_or_default();
    let json_of = |name: &str| serde_json::from_slice::<Value>(&entries[name]).unwrap_or_default();
    for name in entries.keys() {
        assert!(text("README.txt").contains(name.as_str()), "{name}");
    }
    assert_eq!(
        text("measurements/measurements.csv")
            .matches("\r\n")
            .count(),
        1 + 2_540
    );
    assert_eq!(
        json_of("measurements/measurements.senml.json")
            .as_array()
            .map(Vec::len),
        Some(2_540)
    );
    assert_eq!(
        json_of("omh/heart-rate.json").as_array().map(Vec::len),
        Some(2_500)
    );
    assert_eq!(
        json_of("omh/step-count.json").as_array().map(Vec::len),
        Some(40)
    );
    let fhir = json_of("fhir/observations.json");
    assert_eq!(fhir["resourceType"], "Bundle");
    assert_eq!(fhir["entry"].as_array().map(Vec::len), Some(2_540));
    // Every segment once, in (start, device) order.
    let written = json_of("activity/segments.json");
    let keys: Vec<(i64, String)> = written
        .as_array()
        .ok_or("segments")?
        .iter()
        .map(|s| {
            (
                s["start_ms"].as_i64().unwrap_or(-1),
                s["device"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want: Vec<(i64, String)> = segments
        .iter()
        .map(|s| (s.start_ms, s.device.clone()))
        .collect();
    assert_eq!(keys, want);
    assert_eq!(
        json_of("omh/physical-activity.json")
            .as_array()
            .map(Vec::len),
        Some(1_500)
    );
    assert_eq!(json_of("profile.json")["name"], "ann");
    for (name, bytes) in &entries {
        if name.ends_with(".parquet") {
            continue;
        }
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("bob") && !text.contains("99.5"), "{name}");
    }
    Ok(())
}
