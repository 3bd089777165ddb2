//! What a login session's lookup in the store adds to an authenticated GET: the API's router
//! driven in-process (no sockets, so only the handlers and the store are measured), N times
//! `GET /api/v1/info` (no session) and N times `GET /api/v1/session` (bearer token: one store
//! lookup), alternating, then the latency percentiles of each and their difference.
//!
//! ```text
//! cargo run --release -p tributary-api --example session_bench -- [--requests N]
//!     [--url sqlite|postgres://user@host:port/db]
//! ```
//! Defaults: 20,000 requests of each kind, SQLite in a temporary directory. A PostgreSQL URL
//! should name a scratch database: the example adds a login session to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

const OWNER: &str = "bench";
const PASSWORD: &str = "correct horse battery";

struct Args {
    requests: usize,
    url: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        requests: 20_000,
        url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--requests" => {
                args.requests = value()?.parse().map_err(|e| format!("--requests: {e}"))?
            }
            "--url" => args.url = Some(value()?),
            other => {
                return Err(format!(
                    "unknown argument {other:?} (see the example's docs)"
                ))
            }
        }
    }
    if args.requests == 0 {
        return Err("--requests must be at least 1".into());
    }
    Ok(args)
}

/// One request through the router; its status and how long it took, body read.
async fn timed(router: &axum::Router, uri: &str, token: Option<&str>) -> BenchResult<Duration> {
    let mut request = Request::builder().uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Body::empty())?;
    let started = Instant::now();
    let response = router.clone().oneshot(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    let took = started.elapsed();
    if status != StatusCode::OK {
        return Err(format!("{uri}: {status}").into());
    }
    Ok(took)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() -> BenchResult {
    let args = parse_args()?;
    let dir = tempfile::tempdir()?;
    tributary_accounts::add_owner(dir.path(), OWNER, Some(PASSWORD))?;
    let accounts = Arc::new(tributary_accounts::Accounts::open(dir.path())?);
    let store = Arc::new(tributary_store::Store::open(args.url.as_deref(), dir.path()).await?);
    let log = tributary_log::Log::open(tributary_log::LogConfig::new(dir.path().join("log")))?;
    let state = tributary_api::ApiState::new(dir.path().to_owned(), accounts, store.clone(), log);
    let router = tributary_api::router(state);

    let login = Request::post("/api/v1/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!(
            r#"{{"name":"{OWNER}","password":"{PASSWORD}"}}"#
        )))?;
    let body = router
        .clone()
        .oneshot(login)
        .await?
        .into_body()
        .collect()
        .await?
        .to_bytes();
    let token = serde_json::from_slice::<serde_json::Value>(&body)?["token"]
        .as_str()
        .ok_or("no token in the login answer")?
        .to_owned();

    // Warm up (connections, prepared statements, page cache), then alternate.
    for _ in 0..200 {
        timed(&router, "/api/v1/info", None).await?;
        timed(&router, "/api/v1/session", Some(&token)).await?;
    }
    let mut open = Vec::with_capacity(args.requests);
    let mut authed = Vec::with_capacity(args.requests);
    let started = Instant::now();
    for _ in 0..args.requests {
        open.push(timed(&router, "/api/v1/info", None).await?);
        authed.push(timed(&router, "/api/v1/session", Some(&token)).await?);
    }
    let wall = started.elapsed();
    open.sort();
    authed.sort();
    println!(
        "store: {}, {} requests of each kind, sequential, in {:.1} s",
        store.engine(),
        args.requests,
        wall.as_secs_f64()
    );
    println!("{:<34} {:>9} {:>9} {:>9}", "", "p50 µs", "p90 µs", "p99 µs");
    for (name, sorted) in [
        ("GET /api/v1/info (no session)", &open),
        ("GET /api/v1/session (bearer)", &authed),
    ] {
        println!(
            "{name:<34} {:>9.1} {:>9.1} {:>9.1}",
            micros(percentile(sorted, 0.5)),
            micros(percentile(sorted, 0.9)),
            micros(percentile(sorted, 0.99))
        );
    }
    println!(
        "{:<34} {:>9.1} {:>9.1} {:>9.1}",
        "added by the session lookup",
        micros(percentile(&authed, 0.5)) - micros(percentile(&open, 0.5)),
        micros(percentile(&authed, 0.9)) - micros(percentile(&open, 0.9)),
        micros(percentile(&authed, 0.99)) - micros(percentile(&open, 0.99))
    );
    Ok(())
}
