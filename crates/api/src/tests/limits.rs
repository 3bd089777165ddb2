//! The limits that keep owners (and strangers) apart on the HTTP side, each
//! shown refusing or slowing the abuse while a well-behaved owner goes on
//! unaffected. What is about connections runs over a real socket against
//! [`crate::serve`].

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use crate::{HttpConfig, Signup};

/// `serve` on a socket, stopped when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(api: &Api, bind: &str) -> Result<Server, Box<dyn std::error::Error>> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::serve(listener, api.state.clone(), async {
            let _ = stopped.await;
        }));
        Ok(Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Where a client connects (a listener on 0.0.0.0 through loopback).
    fn target(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.addr.port()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// An answer read off the socket.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// One HTTP/1.1 request on a fresh connection (from `source` when given,
/// e.g. 127.0.0.2, another loopback address), read to its end.
async fn http(
    to: SocketAddr,
    source: Option<IpAddr>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> std::io::Result<Answer> {
    let mut stream = match source {
        Some(ip) => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(to).await?
        }
        None => TcpStream::connect(to).await?,
    };
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let raw = String::from_utf8(raw).map_err(std::io::Error::other)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no end of head in {raw:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok(Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

fn credentials(name: &str, password: &str) -> Value {
    json!({"name": name, "password": password})
}

/// Whether the server closes `stream` within `within` (EOF or reset), while
/// the client, with `trickle`, keeps sending header lines slowly.
async fn closed_by_server(stream: &mut TcpStream, trickle: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        if trickle && stream.write_all(b"x-slow: 1\r\n").await.is_err() {
            return true;
        }
        // Polls every 100 ms (the trickle's pace); hyper may send an error
        // status before closing.
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) if Instant::now() >= deadline => return false,
            Err(_) => {}
        }
    }
}

// ---- Sign-up ----

#[tokio::test]
async fn signup_auto_is_open_on_loopback_and_off_on_a_network_listener() -> TestResult {
    assert!(Signup::Auto.is_open_on(Some(SocketAddr::from(([127, 0, 0, 1], 1)))));
    assert!(Signup::Auto.is_open_on(Some("[::1]:1".parse()?)));
    assert!(!Signup::Auto.is_open_on(Some(SocketAddr::from(([0, 0, 0, 0], 1)))));
    assert!(!Signup::Auto.is_open_on(Some(SocketAddr::from(([192, 0, 2, 1], 1)))));
    assert!(Signup::Open.is_open_on(Some(SocketAddr::from(([192, 0, 2, 1], 1)))));
    assert!(!Signup::Off.is_open_on(None));

    let api = api().await?;
    assert_eq!(api.state.signup(), Signup::Auto, "the default");
    // An owner the operator added signs in on either listener.
    tributary_accounts::add_owner(api._dir.path(), "ann", Some("correct horse"))?;
    let network = Server::start(&api, "0.0.0.0:0").await?;
    let answer = http(
        network.target(),
        None,
        "POST",
        "/api/v1/signup",
        None,
        Some(credentials("bob", "correct horse")),
    )
    .await?;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    let answer = http(
        network.target(),
        None,
        "POST",
        "/api/v1/login",
        None,
        Some(credentials("ann", "correct horse")),
    )
    .await?;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let loopback = Server::start(&api, "127.0.0.1:0").await?;
    let answer = http(
        loopback.target(),
        None,
        "POST",
        "/api/v1/signup",
        None,
        Some(credentials("bob", "correct horse")),
    )
    .await?;
    assert_eq!(answer.status, 201, "{}", answer.body);
    Ok(())
}

#[tokio::test]
async fn signups_beyond_the_rate_of_one_source_are_429_and_others_sign_up() -> TestResult {
    let api = api_with_config(HttpConfig {
        signups_per_hour_per_source: 2,
        ..HttpConfig::default()
    })
    .await?;
    let server = Server::start(&api, "127.0.0.1:0").await?;
    let flooder = Some(IpAddr::from([127, 0, 0, 1]));
    for name in ["spam1", "spam2"] {
        let answer = http(
            server.target(),
            flooder,
            "POST",
            "/api/v1/signup",
            None,
            Some(credentials(name, "correct horse")),
        )
        .await?;
        assert_eq!(answer.status, 201, "{}", answer.body);
    }
    let answer = http(
        server.target(),
        flooder,
        "POST",
        "/api/v1/signup",
        None,
        Some(credentials("spam3", "correct horse")),
    )
    .await?;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    // One sign-up per 30 minutes comes back.
    let retry_after: u64 = answer
        .header("retry-after")
        .ok_or("no Retry-After")?
        .parse()?;
    assert!((1790..=1800).contains(&retry_after), "{retry_after}");
    assert!(answer.json()["detail"]
        .as_str()
        .is_some_and(|d| d.contains("too many sign-ups")));
    // Refused before anything was written.
    let listing = tributary_accounts::list(api._dir.path())?;
    assert!(listing.owners.iter().all(|o| o.name != "spam3"));
    // Another address signs up; owners who exist log in as before.
    let answer = http(
        server.target(),
        Some(IpAddr::from([127, 0, 0, 2])),
        "POST",
        "/api/v1/signup",
        None,
        Some(credentials("ann", "correct horse")),
    )
    .await?;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let answer = http(
        server.target(),
        flooder,
        "POST",
        "/api/v1/login",
        None,
        Some(credentials("spam1", "correct horse")),
    )
    .await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    Ok(())
}

#[tokio::test]
async fn weak_passwords_are_refused_at_signup() -> TestResult {
    let api = api().await?;
    for (password, why) in [
        ("short", "at least 8 characters"),
        ("aaaaaaaaaaaa", "different characters"),
        ("abababababab", "different characters"),
        ("12345678", "a run of characters"),
        ("zyxwvutsrq", "a run of characters"),
        ("annabelle", "must not be the name"),
        ("ELLEBANNA", "must not be the name"),
        ("Password1", "most common"),
    ] {
        let reply = api
            .post("/api/v1/signup", None, credentials("annabelle", password))
            .await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, why);
    }
    assert!(tributary_accounts::list(api._dir.path())?.owners.is_empty());
    api.owner("annabelle").await;
    Ok(())
}

#[tokio::test]
async fn invalid_login_names_are_400_and_leave_no_throttle_entry() -> TestResult {
    let api = api().await?;
    api.owner("ann").await;
    let long = "n".repeat(65);
    for name in ["", ".hidden", "a/b", "ann bob", "änn", long.as_str()] {
        for _ in 0..tributary_accounts::throttle::FREE_FAILURES + 1 {
            let reply = api
                .post("/api/v1/login", None, credentials(name, "wrong horse"))
                .await;
            assert_problem(&reply, StatusCode::BAD_REQUEST, "owner name");
        }
        let reply = api
            .post("/api/v1/signup", None, credentials(name, "correct horse"))
            .await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "owner name");
    }
    assert_eq!(api.state.inner.accounts.login_throttle().tracked_names(), 0);
    // A valid name that does not exist is counted (its answer must equal a
    // wrong password's); the owner's own login is untouched.
    let reply = api
        .post("/api/v1/login", None, credentials("nobody", "wrong horse"))
        .await;
    assert_problem(&reply, StatusCode::UNAUTHORIZED, "wrong name or password");
    assert_eq!(api.state.inner.accounts.login_throttle().tracked_names(), 1);
    let reply = api
        .post("/api/v1/login", None, credentials("ann", "correct horse"))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn login_answers_alike_for_unknown_names_wrong_passwords_and_non_owners() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let device = api
        .post("/api/v1/devices", Some(&ann), json!({"name": "watch"}))
        .await
        .json();
    let (id, device_token) = (
        device["id"].as_str().ok_or("id")?.to_owned(),
        device["token"].as_str().ok_or("token")?.to_owned(),
    );
    tributary_accounts::add_admin(api._dir.path(), "root", Some("admin horse"))?;

    let attempts = [
        (
            "unknown name",
            "nobody".to_owned(),
            "wrong horse".to_owned(),
        ),
        ("wrong password", "ann".to_owned(), "wrong horse".to_owned()),
        ("device, right token", id.clone(), device_token),
        ("device, wrong token", id, "wrong horse".to_owned()),
        (
            "admin, right password",
            "root".to_owned(),
            "admin horse".to_owned(),
        ),
    ];
    let mut answers = Vec::new();
    let mut times = Vec::new();
    for (what, name, password) in &attempts {
        // The fastest of two (scheduling noise only adds; the device's name
        // takes four failures, below the login throttle's five).
        let mut fastest = Duration::MAX;
        for _ in 0..2 {
            let started = Instant::now();
            let reply = api
                .post("/api/v1/login", None, credentials(name, password))
                .await;
            fastest = fastest.min(started.elapsed());
            answers.push((
                *what,
                reply.status,
                reply.content_type.clone(),
                reply.body.clone(),
            ));
        }
        times.push((*what, fastest));
    }
    let (_, status, content_type, body) = &answers[0];
    assert_eq!(*status, StatusCode::UNAUTHORIZED);
    for (what, s, c, b) in &answers {
        assert_eq!(
            (s, c, b),
            (status, content_type, body),
            "{what} is answered differently"
        );
    }
    // Every refusal costs one Argon2 check, an unknown name included (a
    // decoy): none is answered in a fraction of the time of a wrong
    // password. (The device's and admin's right secrets may be cached after
    // their first check, so only the refusals are compared.)
    let wrong = times[1].1;
    for (what, time) in [times[0], times[3]] {
        assert!(
            time * 3 >= wrong,
            "{what} took {time:?}, a wrong password {wrong:?}: {times:?}"
        );
    }

    // Sign-up on a taken name of any kind: one answer.
    let mut bodies = Vec::new();
    for name in ["ann", "root", attempts[2].1.as_str()] {
        let reply = api
            .post("/api/v1/signup", None, credentials(name, "correct horse"))
            .await;
        assert_problem(&reply, StatusCode::CONFLICT, "name not available");
        bodies.push(reply.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    Ok(())
}

// ---- Per-owner bounds ----

#[tokio::test]
async fn a_login_beyond_the_tokens_per_owner_ends_the_oldest() -> TestResult {
    let api = api_with_config(HttpConfig {
        max_tokens_per_owner: 2,
        ..HttpConfig::default()
    })
    .await?;
    let bob = api.owner("bob").await;
    let first = api.owner("ann").await;
    let login = || api.post("/api/v1/login", None, credentials("ann", "correct horse"));
    let second = login().await.json()["token"]
        .as_str()
        .ok_or("token")?
        .to_owned();
    let third = login().await.json()["token"]
        .as_str()
        .ok_or("token")?
        .to_owned();
    let reply = api.get("/api/v1/devices", Some(&first)).await;
    assert_problem(
        &reply,
        StatusCode::UNAUTHORIZED,
        "unknown or expired session",
    );
    for token in [&second, &third, &bob] {
        assert_eq!(
            api.get("/api/v1/devices", Some(token)).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(api.state.inner.sessions.count_of("ann").await, 2);
    assert_eq!(api.state.inner.sessions.count_of("bob").await, 1);
    Ok(())
}

/// Opens a live feed through the router; the response holds it open.
async fn open_feed(
    api: &Api,
    token: &str,
) -> Result<axum::response::Response, Box<dyn std::error::Error>> {
    let request = Request::builder()
        .uri("/api/v1/live")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())?;
    Ok(api.router.clone().oneshot(request).await?)
}

#[tokio::test]
async fn live_feeds_beyond_the_owners_bound_are_429_and_others_open() -> TestResult {
    let api = api_with_config(HttpConfig {
        max_feeds_per_owner: 2,
        ..HttpConfig::default()
    })
    .await?;
    let ann = api.owner("ann").await;
    let bob = api.owner("bob").await;
    let first = open_feed(&api, &ann).await?;
    let second = open_feed(&api, &ann).await?;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let reply = api.get("/api/v1/live", Some(&ann)).await;
    assert_problem(&reply, StatusCode::TOO_MANY_REQUESTS, "live feeds open");
    let bobs = open_feed(&api, &bob).await?;
    assert_eq!(bobs.status(), StatusCode::OK);
    // Closing one frees its place.
    drop(first);
    let again = open_feed(&api, &ann).await?;
    assert_eq!(again.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn logout_ends_the_live_feed_of_its_token_at_once() -> TestResult {
    let api = api().await?; // feeds last 60 s by themselves
    let ann = api.owner("ann").await;
    let other = api
        .post("/api/v1/login", None, credentials("ann", "correct horse"))
        .await
        .json()["token"]
        .as_str()
        .ok_or("token")?
        .to_owned();
    let feed = open_feed(&api, &ann).await?;
    let kept = open_feed(&api, &other).await?;
    let reply = api
        .call(Method::POST, "/api/v1/logout", Some(&ann), None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    tokio::time::timeout(Duration::from_secs(5), feed.into_body().collect())
        .await
        .map_err(|_| "the feed of a logged-out token stayed open")??;
    // The same owner's other token keeps its feed: it still delivers.
    api.log
        .append(record("ann", "watch", b"still here"))
        .await?;
    let mut body = kept.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await?
        .ok_or("the feed ended")??;
    let data = frame.into_data().map_err(|_| "not data")?;
    assert!(String::from_utf8_lossy(&data).contains("still here"));
    Ok(())
}

#[tokio::test]
async fn an_expired_or_pushed_out_token_ends_its_live_feed() -> TestResult {
    let api = api_with_config(HttpConfig {
        token_lifetime: Duration::from_secs(1),
        ..HttpConfig::default()
    })
    .await?;
    let ann = api.owner("ann").await;
    let started = Instant::now();
    let feed = open_feed(&api, &ann).await?;
    assert_eq!(feed.status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(10), feed.into_body().collect())
        .await
        .map_err(|_| "the feed of an expired token stayed open")??;
    assert!(started.elapsed() < Duration::from_secs(5));

    let api = api_with_config(HttpConfig {
        max_tokens_per_owner: 1,
        ..HttpConfig::default()
    })
    .await?;
    let ann = api.owner("ann").await;
    let feed = open_feed(&api, &ann).await?;
    // A new login pushes the old token, and its feed, out.
    let newer = api
        .post("/api/v1/login", None, credentials("ann", "correct horse"))
        .await;
    assert_eq!(newer.status, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), feed.into_body().collect())
        .await
        .map_err(|_| "the feed of a pushed-out token stayed open")??;
    Ok(())
}

#[tokio::test]
async fn a_logout_on_another_node_ends_the_live_feed_within_the_check() -> TestResult {
    let a = api().await?; // feeds last 60 s by themselves
    let ann = a.owner("ann").await;
    let b = super::other_node(&a).await?;
    let feed = open_feed(&a, &ann).await?;
    assert_eq!(feed.status(), StatusCode::OK);
    let started = Instant::now();
    let reply = b
        .call(Method::POST, "/api/v1/logout", Some(&ann), None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    tokio::time::timeout(
        crate::live::SESSION_CHECK + Duration::from_secs(5),
        feed.into_body().collect(),
    )
    .await
    .map_err(|_| "the feed of a token logged out on another node stayed open")??;
    assert!(started.elapsed() <= crate::live::SESSION_CHECK + Duration::from_secs(2));
    Ok(())
}

// ---- The listener ----

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed_and_a_waiting_client_is_served() -> TestResult
{
    let timeout = Duration::from_millis(600);
    let api = api_with_config(HttpConfig {
        max_connections: 3,
        header_read_timeout: timeout,
        ..HttpConfig::default()
    })
    .await?;
    let server = Server::start(&api, "127.0.0.1:0").await?;
    let to = server.target();
    // Every slot taken: two idle sockets and a slow loris that never ends
    // its request head.
    let opened = Instant::now();
    let mut idle = [TcpStream::connect(to).await?, TcpStream::connect(to).await?];
    let mut loris = TcpStream::connect(to).await?;
    loris
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        .await?;
    // A well-behaved client beyond the bound waits in the backlog (no
    // descriptor is spent on it) until a slot frees.
    let waiting = tokio::spawn(http(to, None, "GET", "/healthz", None, None));

    assert!(
        closed_by_server(&mut loris, true, Duration::from_secs(10)).await,
        "the slow loris stayed open"
    );
    for socket in &mut idle {
        assert!(
            closed_by_server(socket, false, Duration::from_secs(10)).await,
            "an idle socket stayed open"
        );
    }
    assert!(
        opened.elapsed() >= timeout - Duration::from_millis(100),
        "closed before the header timeout: {:?}",
        opened.elapsed()
    );
    let answer = tokio::time::timeout(Duration::from_secs(10), waiting).await???;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
    // Served only once the stuck connections were closed.
    assert!(opened.elapsed() >= timeout - Duration::from_millis(100));
    // And the next is served at once.
    let answer = http(to, None, "GET", "/healthz", None, None).await?;
    assert_eq!(answer.status, 200);
    Ok(())
}

#[tokio::test]
async fn a_keep_alive_connection_idle_after_its_answer_is_closed() -> TestResult {
    let api = api_with_config(HttpConfig {
        header_read_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    })
    .await?;
    let server = Server::start(&api, "127.0.0.1:0").await?;
    let mut stream = TcpStream::connect(server.target()).await?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await?;
    let mut answer = [0u8; 1024];
    let n = stream.read(&mut answer).await?;
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_by_server(&mut stream, false, Duration::from_secs(10)).await,
        "the idle keep-alive connection stayed open"
    );
    Ok(())
}

// ---- Every error is a problem ----

#[tokio::test]
async fn axums_own_rejections_are_problems() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let bearer = format!("Bearer {ann}");
    let send = |method: Method, uri: &str, content_type: Option<&str>, body: Body| {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, bearer.as_str());
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(body).expect("valid request");
        let router = api.router.clone();
        async move {
            let response = router.oneshot(request).await.expect("infallible");
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (status, headers, body)
        }
    };
    let json = Some("application/json");
    let cases: Vec<(
        &str,
        StatusCode,
        (StatusCode, axum::http::HeaderMap, axum::body::Bytes),
    )> = vec![
        (
            "unknown /api/ route",
            StatusCode::NOT_FOUND,
            send(Method::GET, "/api/v1/nothing", None, Body::empty()).await,
        ),
        (
            "wrong method",
            StatusCode::METHOD_NOT_ALLOWED,
            send(Method::PATCH, "/api/v1/devices", None, Body::empty()).await,
        ),
        (
            "JSON syntax",
            StatusCode::BAD_REQUEST,
            send(
                Method::POST,
                "/api/v1/devices",
                json,
                Body::from("{\"name\":"),
            )
            .await,
        ),
        (
            "not declared as JSON",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            send(
                Method::POST,
                "/api/v1/devices",
                Some("text/plain"),
                Body::from("{\"name\":\"w\"}"),
            )
            .await,
        ),
        (
            "no content type",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            send(
                Method::POST,
                "/api/v1/devices",
                None,
                Body::from("{\"name\":\"w\"}"),
            )
            .await,
        ),
        (
            "a field of the wrong type",
            StatusCode::BAD_REQUEST,
            send(
                Method::POST,
                "/api/v1/devices",
                json,
                Body::from("{\"name\":5}"),
            )
            .await,
        ),
        (
            "an unknown field",
            StatusCode::BAD_REQUEST,
            send(
                Method::PUT,
                "/api/v1/activity/settings",
                json,
                Body::from("{\"enabled\":true,\"x\":1}"),
            )
            .await,
        ),
        (
            "body too large",
            StatusCode::PAYLOAD_TOO_LARGE,
            send(
                Method::POST,
                "/api/v1/devices",
                json,
                Body::from(format!(
                    "{{\"name\":\"{}\"}}",
                    "w".repeat(crate::BODY_LIMIT)
                )),
            )
            .await,
        ),
        (
            "a path segment that is not UTF-8",
            StatusCode::BAD_REQUEST,
            send(Method::DELETE, "/api/v1/devices/%FF", None, Body::empty()).await,
        ),
        (
            "a query string that is not UTF-8",
            StatusCode::BAD_REQUEST,
            send(
                Method::GET,
                "/api/v1/dead-letters?limit=%FF",
                None,
                Body::empty(),
            )
            .await,
        ),
    ];
    for (what, expected, (status, headers, body)) in cases {
        assert_eq!(
            status,
            expected,
            "{what}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(b"application/problem+json".as_slice()),
            "{what}"
        );
        let problem: Value = serde_json::from_slice(&body)?;
        assert_eq!(problem["status"], expected.as_u16(), "{what}");
        assert_eq!(problem["type"], "about:blank", "{what}");
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {problem}"
        );
    }
    // The owner's requests still work.
    assert_eq!(
        api.get("/api/v1/devices", Some(&ann)).await.status,
        StatusCode::OK
    );
    Ok(())
}

// ---- The size of one answer ----

#[tokio::test]
async fn a_dead_letter_list_is_bounded_in_size() -> TestResult {
    let api = api().await?;
    let ann = api.owner("ann").await;
    let bob = api.owner("bob").await;
    let max = crate::data::MAX_DEAD_LETTER_PAYLOAD;
    // A megabyte of text whose cut falls inside a two-byte character.
    let mut big = "x".repeat(max - 1).into_bytes();
    big.extend("é".repeat(512 * 1024).as_bytes());
    for (owner, id, payload) in [("ann", 1, big.clone()), ("bob", 2, b"small".to_vec())] {
        api.store
            .dead_letter(&tributary_store::DeadLetter {
                owner: owner.into(),
                device: "d".into(),
                message_id: format!("{id:032x}"),
                topic: "tributary/v1/d/senml".into(),
                received_ms: 1_000,
                reason: "not a SenML pack".into(),
                payload,
            })
            .await?;
    }
    let reply = api.get("/api/v1/dead-letters", Some(&ann)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.len() < 2 * max, "{} bytes", reply.body.len());
    let letter = &reply.json()[0];
    assert_eq!(letter["truncated"], true);
    assert_eq!(letter["payload_bytes"], big.len());
    assert_eq!(letter["payload"], "x".repeat(max - 1));
    let reply = api
        .get(
            &format!(
                "/api/v1/dead-letters?limit={}",
                crate::data::MAX_DEAD_LETTERS + 1
            ),
            Some(&ann),
        )
        .await;
    assert_problem(&reply, StatusCode::BAD_REQUEST, "limit");
    // Another owner's small letters come whole.
    let reply = api.get("/api/v1/dead-letters", Some(&bob)).await;
    let letter = &reply.json()[0];
    assert_eq!(
        (
            &letter["payload"],
            &letter["truncated"],
            &letter["payload_bytes"]
        ),
        (&json!("small"), &json!(false), &json!(5))
    );
    Ok(())
}

#[tokio::test]
async fn devices_beyond_the_owners_bound_are_409_and_others_add() -> TestResult {
    let api = api_with_config(HttpConfig {
        max_devices_per_owner: 2,
        ..HttpConfig::default()
    })
    .await?;
    let ann = api.owner("ann").await;
    let bob = api.owner("bob").await;
    let first = api
        .post("/api/v1/devices", Some(&ann), json!({"name": "watch"}))
        .await;
    let id = first.json()["id"].as_str().ok_or("id")?.to_owned();
    let reply = api
        .call(
            Method::DELETE,
            &format!("/api/v1/devices/{id}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = api
        .post("/api/v1/devices", Some(&ann), json!({"name": "phone"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    // The revoked watch still counts: the list holds it.
    let reply = api
        .post("/api/v1/devices", Some(&ann), json!({"name": "ring"}))
        .await;
    assert_problem(&reply, StatusCode::CONFLICT, "the most one owner may");
    assert_eq!(
        api.get("/api/v1/devices", Some(&ann))
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let reply = api
        .post("/api/v1/devices", Some(&bob), json!({"name": "ring"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    Ok(())
}

#[tokio::test]
async fn shutdown_ends_open_live_feeds_and_serve_returns() -> TestResult {
    let api = api().await?; // feeds last 60 s by themselves
    let ann = api.owner("ann").await;
    let mut server = Server::start(&api, "127.0.0.1:0").await?;
    let mut feed = TcpStream::connect(server.target()).await?;
    feed.write_all(
        format!("GET /api/v1/live HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ann}\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut head = [0u8; 512];
    let n = feed.read(&mut head).await?;
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    server
        .stop
        .take()
        .ok_or("stop")?
        .send(())
        .map_err(|()| "stopped")?;
    let task = server.task.take().ok_or("task")?;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .map_err(|_| "serve waited for the live feed")???;
    assert!(closed_by_server(&mut feed, false, Duration::from_secs(5)).await);
    Ok(())
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_cut_off_and_others_served() -> TestResult {
    let timeout = Duration::from_millis(600);
    let api = api_with_config(HttpConfig {
        header_read_timeout: timeout,
        ..HttpConfig::default()
    })
    .await?;
    let server = Server::start(&api, "127.0.0.1:0").await?;
    let mut slow = TcpStream::connect(server.target()).await?;
    let started = Instant::now();
    slow.write_all(
        b"POST /api/v1/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    )
    .await?;
    // A byte every 100 ms: each arrives well within any per-read timeout.
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let _ = slow.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still open");
    }
    assert!(started.elapsed() >= timeout - Duration::from_millis(100));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("not complete within 600 ms"), "{answer}");
    // A client that sends its body at once is served.
    api.owner("ann").await;
    let answer = http(
        server.target(),
        None,
        "POST",
        "/api/v1/login",
        None,
        Some(credentials("ann", "correct horse")),
    )
    .await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    Ok(())
}

#[tokio::test]
async fn a_live_feed_outlives_the_header_timeout() -> TestResult {
    let timeout = Duration::from_millis(300);
    let api = api_with_config(HttpConfig {
        header_read_timeout: timeout,
        ..HttpConfig::default()
    })
    .await?;
    let ann = api.owner("ann").await;
    let server = Server::start(&api, "127.0.0.1:0").await?;
    let mut feed = TcpStream::connect(server.target()).await?;
    feed.write_all(
        format!("GET /api/v1/live HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ann}\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut buf = [0u8; 4096];
    let n = feed.read(&mut buf).await?;
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Three header timeouts later the streamed answer is still open.
    assert!(!closed_by_server(&mut feed, false, timeout * 3).await);
    api.log
        .append(record("ann", "watch", b"still live"))
        .await?;
    let mut seen = String::new();
    while !seen.contains("still live") {
        let n = tokio::time::timeout(Duration::from_secs(5), feed.read(&mut buf)).await??;
        assert!(n > 0, "the feed closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    Ok(())
}
