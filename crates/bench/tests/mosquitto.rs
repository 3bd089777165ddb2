//! `tributary bench` against a real broker: Mosquitto, started on a free
//! port for each test. Skipped, with the reason printed, when `mosquitto` is
//! not installed (the test script and CI install Debian's `mosquitto`).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tributary_bench::{BenchConfig, Mode, Stop, TlsConfig};
use tributary_mqtt::{ProtocolVersion, QoS};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A Mosquitto process, killed when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
}

impl Mosquitto {
    /// Starts `mosquitto -p PORT` on a free port and waits until it accepts
    /// connections; `None` when Mosquitto is not installed.
    fn start() -> Result<Option<Mosquitto>, Box<dyn std::error::Error>> {
        Mosquitto::start_with(|port| vec!["-p".into(), port.to_string()])
    }

    /// Starts Mosquitto with the arguments `args` makes for a free port.
    fn start_with(
        args: impl FnOnce(u16) -> Vec<String>,
    ) -> Result<Option<Mosquitto>, Box<dyn std::error::Error>> {
        let Some(binary) = find_program("mosquitto") else {
            eprintln!("skipped: mosquitto is not installed (apt-get install mosquitto)");
            return Ok(None);
        };
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(binary)
            .args(args(port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let broker = Mosquitto { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("mosquitto did not listen on port {port} within 10 s").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(broker))
    }

    fn config(&self, mode: Mode) -> BenchConfig {
        BenchConfig {
            mode,
            port: self.port,
            time_limit: Duration::from_secs(60),
            quiet: Duration::from_millis(500),
            client_id_prefix: format!("t{}-", self.port),
            ..BenchConfig::default()
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_publishers_and_a_subscriber_lose_nothing() -> TestResult {
    let Some(broker) = Mosquitto::start()? else {
        return Ok(());
    };
    let report = tributary_bench::run(BenchConfig {
        clients: 2,
        messages: 200,
        qos: QoS::AtLeastOnce,
        subscribers: 1,
        ..broker.config(Mode::Pub)
    })
    .await?;
    println!("{report}\n{}", report.to_json());
    assert_eq!(report.sent, 400);
    assert_eq!(report.acknowledged, 400);
    assert_eq!(report.received, 400);
    assert_eq!(report.lost, 0);
    assert_eq!(report.duplicated, 0);
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(report.stopped, Stop::Completed);
    assert!(report.ack_latency_ms.p50.is_some());
    assert!(report.receive_latency_ms.max.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_over_mqtt5_with_two_subscribers() -> TestResult {
    let Some(broker) = Mosquitto::start()? else {
        return Ok(());
    };
    let report = tributary_bench::run(BenchConfig {
        clients: 3,
        messages: 100,
        size: 256,
        qos: QoS::ExactlyOnce,
        sub_qos: QoS::ExactlyOnce,
        protocol: ProtocolVersion::V5,
        subscribers: 2,
        inflight: 8,
        ..broker.config(Mode::Pub)
    })
    .await?;
    println!("{report}");
    assert_eq!(report.acknowledged, 300);
    assert_eq!(report.received, 600, "each subscriber gets every message");
    assert_eq!((report.lost, report.duplicated, report.failed), (0, 0, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_mode_receives_what_another_run_publishes() -> TestResult {
    let Some(broker) = Mosquitto::start()? else {
        return Ok(());
    };
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let sub = tokio::spawn(tributary_bench::run_with_ready(
        BenchConfig {
            clients: 1,
            filter: "other/#".into(),
            ..broker.config(Mode::Sub)
        },
        Some(subscribed_tx),
    ));
    subscribed.await?;
    let publish = tributary_bench::run(BenchConfig {
        clients: 2,
        messages: 150,
        topic: "other/{client}".into(),
        rate: 3000,
        ..broker.config(Mode::Pub)
    })
    .await?;
    assert_eq!(publish.acknowledged, 300);
    let sub = sub.await??;
    println!("{sub}");
    assert_eq!(sub.received, 300);
    assert_eq!((sub.lost, sub.duplicated), (0, 0));
    assert_eq!(sub.stopped, Stop::Quiet);
    assert!(sub.msg_per_s > 0.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conn_mode_holds_idle_connections() -> TestResult {
    let Some(broker) = Mosquitto::start()? else {
        return Ok(());
    };
    let report = tributary_bench::run(BenchConfig {
        clients: 50,
        connect_rate: 1000,
        hold: Duration::from_millis(300),
        ..broker.config(Mode::Conn)
    })
    .await?;
    println!("{report}\n{}", report.to_json());
    assert_eq!(report.connected, Some(50));
    assert_eq!(report.failed, 0);
    assert_eq!(report.stopped, Stop::Completed);
    assert!(report.connect_latency_ms.and_then(|l| l.p50).is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_counted_with_the_reason() -> TestResult {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let report = tributary_bench::run(BenchConfig {
        port,
        clients: 3,
        messages: 10,
        time_limit: Duration::from_secs(20),
        ..BenchConfig::default()
    })
    .await?;
    assert_eq!(report.failed, 3);
    assert_eq!(report.sent, 0);
    let (error, count) = report.errors.iter().next().ok_or("no error recorded")?;
    assert!(error.contains("connect to 127.0.0.1"), "{error}");
    assert_eq!(*count, 1, "each client id is its own message");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_file_and_insecure() -> TestResult {
    let Some(openssl) = find_program("openssl") else {
        eprintln!("skipped: openssl is not installed to make test certificates");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let certs = dir.path();
    // Arguments split at spaces: none of them contains one.
    let openssl = |args: &str| -> TestResult {
        let status = Command::new(&openssl)
            .args(args.split_whitespace())
            .current_dir(certs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("openssl {args} failed: {status}").into());
        }
        Ok(())
    };
    openssl(
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca",
    )?;
    openssl("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost")?;
    std::fs::write(certs.join("ext.cnf"), "subjectAltName=DNS:localhost\n")?;
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
         -days 2 -extfile ext.cnf",
    )?;
    // Mosquitto started as root reads its files as the mosquitto user.
    make_readable(certs)?;

    let conf = certs.join("mosquitto.conf");
    let Some(broker) = Mosquitto::start_with(|port| {
        let path = |f: &str| certs.join(f).display().to_string();
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\n",
            path("ca.pem"),
            path("server.pem"),
            path("server.key"),
        );
        // A failed write shows up as Mosquitto not listening.
        let _ = std::fs::write(&conf, text).and_then(|()| make_readable(certs));
        vec!["-c".into(), conf.display().to_string()]
    })?
    else {
        return Ok(());
    };

    let verified = tributary_bench::run(BenchConfig {
        host: "localhost".into(),
        clients: 2,
        messages: 100,
        subscribers: 1,
        protocol: ProtocolVersion::V5,
        tls: Some(TlsConfig {
            cafile: Some(certs.join("ca.pem")),
            insecure: false,
        }),
        ..broker.config(Mode::Pub)
    })
    .await?;
    println!("{verified}");
    assert_eq!(
        (verified.acknowledged, verified.received, verified.lost),
        (200, 200, 0)
    );
    assert_eq!(verified.failed, 0, "{:?}", verified.errors);

    // The certificate names localhost, not 127.0.0.1: only --insecure gets in.
    let insecure = |insecure| BenchConfig {
        host: "127.0.0.1".into(),
        clients: 1,
        messages: 10,
        tls: Some(TlsConfig {
            cafile: Some(certs.join("ca.pem")),
            insecure,
        }),
        ..broker.config(Mode::Pub)
    };
    let refused = tributary_bench::run(insecure(false)).await?;
    assert_eq!(refused.failed, 1);
    assert!(
        refused.errors.keys().any(|e| e.contains("TLS handshake")),
        "{:?}",
        refused.errors
    );
    let accepted = tributary_bench::run(insecure(true)).await?;
    assert_eq!((accepted.acknowledged, accepted.failed), (10, 0));
    Ok(())
}

fn make_readable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        std::fs::set_permissions(entry?.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}
