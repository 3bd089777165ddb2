//! Against a stand-in for HAProxy's runtime API on a unix socket, which
//! answers as HAProxy 2.6 does (the answers were taken from a real one)
//! and records each command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::*;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// A server as the stand-in keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Server {
    addr: String,
    state: &'static str,
    /// Connections HAProxy still counts; `shutdown sessions` ends them.
    connections: u32,
}

#[derive(Debug, Default)]
struct Haproxy {
    backends: BTreeMap<String, BTreeMap<String, Server>>,
    commands: Vec<String>,
}

impl Haproxy {
    fn with_backend(name: &str) -> Haproxy {
        let mut haproxy = Haproxy::default();
        haproxy.backends.insert(name.to_owned(), BTreeMap::new());
        haproxy
    }

    fn answer(&mut self, line: &str) -> String {
        self.commands.push(line.to_owned());
        let words: Vec<&str> = line.split_whitespace().collect();
        let target = |i: usize| words.get(i).and_then(|t| t.split_once('/'));
        let missing = "No such server.\n\n".to_owned();
        match words.as_slice() {
            ["add", "server", _, addr, ..] => {
                let Some((b, s)) = target(2) else {
                    return missing;
                };
                let Some(backend) = self.backends.get_mut(b) else {
                    return "No such backend.\n".to_owned();
                };
                if backend.contains_key(s) {
                    return "Already exists a server with the same name in backend.\n\n".to_owned();
                }
                let server = Server {
                    addr: (*addr).to_owned(),
                    state: "maint",
                    connections: 0,
                };
                backend.insert(s.to_owned(), server);
                "New server registered.\n\n".to_owned()
            }
            ["del", "server", _] => {
                let Some((b, s)) = target(2) else {
                    return missing;
                };
                let Some(server) = self.backends.get(b).and_then(|be| be.get(s)) else {
                    return missing;
                };
                if server.state != "maint" {
                    return "Only servers in maintenance mode can be deleted.\n".to_owned();
                }
                if server.connections > 0 {
                    return "Server still has connections attached to it, cannot remove it.\n"
                        .to_owned();
                }
                self.backends.get_mut(b).map(|be| be.remove(s));
                "Server deleted.\n".to_owned()
            }
            [verb, ..] => {
                let (at, state) = match (verb, words.get(1), words.last()) {
                    (&"enable", Some(&"server"), _) => (2, Some("ready")),
                    (&"enable", Some(&"health"), _) => (2, None),
                    (&"set", Some(&"server"), Some(state)) => (2, Some(*state)),
                    (&"shutdown", Some(&"sessions"), _) => (3, None),
                    _ => return "Unknown command.\n".to_owned(),
                };
                let Some((b, s)) = target(at) else {
                    return missing;
                };
                let Some(server) = self.backends.get_mut(b).and_then(|be| be.get_mut(s)) else {
                    return missing;
                };
                match state {
                    Some("ready") => server.state = "ready",
                    Some("drain") => server.state = "drain",
                    Some("maint") => server.state = "maint",
                    _ if *verb == "shutdown" => server.connections = 0,
                    _ => {}
                }
                "\n".to_owned()
            }
            [] => "\n".to_owned(),
        }
    }
}

/// Serves the stand-in on `path` until the test ends.
fn serve(path: &Path, haproxy: Arc<Mutex<Haproxy>>) -> std::io::Result<()> {
    let listener = tokio::net::UnixListener::bind(path)?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let haproxy = haproxy.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(read).read_line(&mut line).await.is_ok() {
                    let answer = haproxy
                        .lock()
                        .expect("stand-in lock")
                        .answer(line.trim_end());
                    let _ = write.write_all(answer.as_bytes()).await;
                }
            });
        }
    });
    Ok(())
}

fn cluster(
    socket: &Path,
    extra: &str,
) -> std::result::Result<ClusterConfig, Box<dyn std::error::Error>> {
    let text = format!(
        "haproxy_api = {:?}\nadvertise = \"127.0.0.1:1883\"\nnode_name = \"n1\"\n{extra}",
        socket.display()
    );
    let table: ClusterFileConfig = toml::from_str(&text)?;
    Ok(table.build(false)?.ok_or("no cluster")?)
}

fn socket_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("admin.sock")
}

fn commands(haproxy: &Mutex<Haproxy>) -> Vec<String> {
    haproxy.lock().expect("stand-in lock").commands.clone()
}

#[tokio::test]
async fn join_adds_checks_and_enables_then_leave_drains_and_deletes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let haproxy = Arc::new(Mutex::new(Haproxy::with_backend("mqtt_nodes")));
    serve(&socket_in(&dir), haproxy.clone())?;
    let node = Membership::new(&cluster(&socket_in(&dir), "")?, "abc");
    assert!(node.join(&CancellationToken::new()).await);
    let server = haproxy.lock().expect("lock").backends["mqtt_nodes"]["n1"].clone();
    assert_eq!(
        (server.addr.as_str(), server.state),
        ("127.0.0.1:1883", "ready")
    );
    node.drain().await?;
    node.leave().await?;
    assert_eq!(
        commands(&haproxy),
        [
            "add server mqtt_nodes/n1 127.0.0.1:1883 check inter 500ms fall 2 rise 2",
            "enable health mqtt_nodes/n1",
            "enable server mqtt_nodes/n1",
            "set server mqtt_nodes/n1 state drain",
            "set server mqtt_nodes/n1 state maint",
            "del server mqtt_nodes/n1",
        ]
    );
    assert!(haproxy.lock().expect("lock").backends["mqtt_nodes"].is_empty());
    Ok(())
}

#[tokio::test]
async fn a_stale_entry_from_a_killed_run_is_replaced() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut stale = Haproxy::with_backend("mqtt_nodes");
    let old = Server {
        addr: "127.0.0.1:9".to_owned(),
        state: "ready",
        connections: 1,
    };
    stale
        .backends
        .get_mut("mqtt_nodes")
        .map(|b| b.insert("n1".to_owned(), old));
    let haproxy = Arc::new(Mutex::new(stale));
    serve(&socket_in(&dir), haproxy.clone())?;
    let node = Membership::new(&cluster(&socket_in(&dir), "")?, "abc");
    node.register().await?;
    let server = haproxy.lock().expect("lock").backends["mqtt_nodes"]["n1"].clone();
    assert_eq!(
        (server.addr.as_str(), server.state),
        ("127.0.0.1:1883", "ready")
    );
    let sent = commands(&haproxy);
    assert_eq!(
        sent[..5],
        [
            "add server mqtt_nodes/n1 127.0.0.1:1883 check inter 500ms fall 2 rise 2",
            "set server mqtt_nodes/n1 state maint",
            "del server mqtt_nodes/n1",
            "shutdown sessions server mqtt_nodes/n1",
            "del server mqtt_nodes/n1",
        ]
    );
    Ok(())
}

#[tokio::test]
async fn join_waits_for_haproxy_and_gives_up_when_told() -> TestResult {
    let dir = tempfile::tempdir()?;
    let socket = socket_in(&dir);
    let node = Arc::new(Membership::new(&cluster(&socket, "")?, "abc"));
    // Nothing listens yet: the first attempts fail, then HAProxy comes up.
    let joining = tokio::spawn({
        let node = node.clone();
        async move { node.join(&CancellationToken::new()).await }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let haproxy = Arc::new(Mutex::new(Haproxy::with_backend("mqtt_nodes")));
    serve(&socket, haproxy.clone())?;
    assert!(tokio::time::timeout(Duration::from_secs(10), joining).await??);

    // A backend that never appears: join keeps trying until stopped.
    let elsewhere = Membership::new(&cluster(&socket, "haproxy_backend = \"other\"\n")?, "abc");
    let err = elsewhere.register().await.expect_err("no such backend");
    assert!(err.to_string().contains("No such backend"), "{err}");
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stopper.cancel();
    });
    assert!(!elsewhere.join(&stop).await);
    Ok(())
}

#[tokio::test]
async fn the_http_backend_is_joined_and_left_too() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut both = Haproxy::with_backend("mqtt_nodes");
    both.backends
        .insert("http_nodes".to_owned(), BTreeMap::new());
    let haproxy = Arc::new(Mutex::new(both));
    serve(&socket_in(&dir), haproxy.clone())?;
    let config = cluster(
        &socket_in(&dir),
        "haproxy_http_backend = \"http_nodes\"\nadvertise_http = \"127.0.0.1:8080\"\n",
    )?;
    let node = Membership::new(&config, "abc");
    node.register().await?;
    assert_eq!(
        haproxy.lock().expect("lock").backends["http_nodes"]["n1"].addr,
        "127.0.0.1:8080"
    );
    node.leave().await?;
    assert!(haproxy
        .lock()
        .expect("lock")
        .backends
        .values()
        .all(BTreeMap::is_empty));
    Ok(())
}

#[test]
fn default_options_follow_the_listeners_proxy_setting() -> TestResult {
    let table = ClusterFileConfig {
        haproxy_api: Some("/run/haproxy/admin.sock".into()),
        advertise: Some("10.0.0.5:1883".into()),
        ..ClusterFileConfig::default()
    };
    let plain = table.build(false)?.ok_or("cluster")?;
    assert_eq!(plain.servers[0].options, CHECK_OPTIONS);
    assert_eq!(
        plain.api,
        ApiAddress::Unix("/run/haproxy/admin.sock".into())
    );
    let proxied = table.build(true)?.ok_or("cluster")?;
    assert_eq!(
        proxied.servers[0].options,
        "check inter 500ms fall 2 rise 2 send-proxy-v2 check-send-proxy"
    );
    assert_eq!(proxied.drain, Duration::from_secs(10));
    let tcp = ClusterFileConfig {
        haproxy_api: Some("127.0.0.1:9999".into()),
        ..table
    };
    assert_eq!(
        tcp.build(false)?.ok_or("cluster")?.api,
        ApiAddress::Tcp("127.0.0.1:9999".into())
    );
    Ok(())
}

#[test]
fn bad_values_are_refused_by_key() {
    let table = ClusterFileConfig {
        haproxy_api: Some("/run/haproxy/admin.sock".into()),
        advertise: Some("10.0.0.5:1883".into()),
        ..ClusterFileConfig::default()
    };
    let cases = [
        (
            ClusterFileConfig {
                advertise: None,
                ..table.clone()
            },
            "cluster.advertise",
        ),
        (
            ClusterFileConfig {
                advertise: Some("10.0.0.5".into()),
                ..table.clone()
            },
            "cluster.advertise",
        ),
        (
            ClusterFileConfig {
                server_options: Some("check; del server mqtt_nodes/other".into()),
                ..table.clone()
            },
            "cluster.server_options",
        ),
        (
            ClusterFileConfig {
                node_name: Some("a b".into()),
                ..table.clone()
            },
            "cluster.node_name",
        ),
        (
            ClusterFileConfig {
                haproxy_http_backend: Some("http_nodes".into()),
                ..table.clone()
            },
            "cluster.advertise_http",
        ),
        (
            ClusterFileConfig {
                drain_secs: MAX_DRAIN_SECS + 1,
                ..table.clone()
            },
            "cluster.drain_secs",
        ),
    ];
    for (config, key) in cases {
        let err = config.build(false).expect_err(key).to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
    assert!(ClusterFileConfig::default()
        .build(false)
        .is_ok_and(|c| c.is_none()));
}
