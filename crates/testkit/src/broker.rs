//! [`TestBroker`]: a real broker in the test's process, on a temporary
//! data dir with the embedded log, that can be stopped and started again
//! on the same data.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tributary_broker::{Broker, BrokerConfig, Listeners};
use tributary_log::{Log, LogConfig};
use tributary_mqtt::{ConnAck, Connect};

use crate::client::TestClient;
use crate::Result;

/// Size of each direction of an in-memory connection's pipe; larger than
/// any test's burst, so neither side waits for the other to read.
const PIPE_BYTES: usize = 256 * 1024;

/// A broker serving plain MQTT on a free loopback port, on its own data
/// dir, until [`TestBroker::shutdown`].
pub struct TestBroker {
    config: BrokerConfig,
    /// The log's `(segment_bytes, max_bytes)` when a test sets them.
    log_bytes: Option<(u64, u64)>,
    /// Outlives every restart, so a restarted broker finds its sessions,
    /// cursors and retained messages; removed when the handle drops.
    dir: TempDir,
    running: Running,
}

/// One start of the broker.
struct Running {
    broker: Arc<Broker>,
    addr: SocketAddr,
    stop: CancellationToken,
    server: JoinHandle<tributary_broker::Result<()>>,
}

impl TestBroker {
    /// The configuration tests start from: anonymous clients allowed
    /// (honoured as the listener is on loopback), port 0, default limits.
    pub fn config() -> BrokerConfig {
        let mut config = BrokerConfig::default();
        config.mqtt.allow_anonymous = true;
        config.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }

    /// Starts a broker with [`TestBroker::config`].
    pub async fn start() -> Result<TestBroker> {
        TestBroker::start_with(TestBroker::config()).await
    }

    /// Starts a broker with `config` (its listener should be on port 0).
    pub async fn start_with(config: BrokerConfig) -> Result<TestBroker> {
        TestBroker::start_with_log(config, None).await
    }

    /// Starts a broker with `config` on a log of `(segment_bytes,
    /// max_bytes)` (default sizes for `None`), for tests of a full log.
    pub async fn start_with_log(
        config: BrokerConfig,
        log_bytes: Option<(u64, u64)>,
    ) -> Result<TestBroker> {
        // tmpfs when there is one: the log fsyncs every batch, and tests
        // do not need the data to survive a power cut.
        let dir = match Path::new("/dev/shm") {
            shm if shm.is_dir() => tempfile::tempdir_in(shm)?,
            _ => tempfile::tempdir()?,
        };
        let running = Running::start(&config, log_bytes, dir.path()).await?;
        Ok(TestBroker {
            config,
            log_bytes,
            dir,
            running,
        })
    }

    /// The plain MQTT listener's address (a new port after each restart).
    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// The running broker, for what tests check beyond MQTT (the log).
    pub fn broker(&self) -> &Arc<Broker> {
        &self.running.broker
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Connects over TCP and sends `connect`; returns the client and the
    /// broker's CONNACK, whatever its reason code.
    pub async fn connect(&self, connect: Connect) -> Result<(TestClient, ConnAck)> {
        let stream = tokio::net::TcpStream::connect(self.running.addr).await?;
        stream.set_nodelay(true)?;
        TestClient::handshake(Box::new(stream), connect).await
    }

    /// Like [`TestBroker::connect`], over an in-memory pipe served by
    /// `Broker::serve_io`: no socket, so nothing outside the runtime
    /// decides when bytes arrive (for tests on paused time).
    pub async fn connect_in_memory(&self, connect: Connect) -> Result<(TestClient, ConnAck)> {
        let (client, server) = tokio::io::duplex(PIPE_BYTES);
        let broker = self.running.broker.clone();
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        // `Broker::run` waits for these at shutdown as for its own.
        tokio::spawn(broker.serve_io(server, peer));
        TestClient::handshake(Box::new(client), connect).await
    }

    /// Stops the broker as an operator would (5.0 clients get DISCONNECT
    /// Server shutting down), then starts a new one on the same data dir:
    /// what persistent sessions must survive.
    pub async fn restart(self) -> Result<TestBroker> {
        let TestBroker {
            config,
            log_bytes,
            dir,
            running,
        } = self;
        // The old broker must have closed its log before the new one opens it.
        running.stop().await?;
        let running = Running::start(&config, log_bytes, dir.path()).await?;
        Ok(TestBroker {
            config,
            log_bytes,
            dir,
            running,
        })
    }

    /// Stops the broker and waits until it closed its log; the data dir
    /// is removed when the handle drops.
    pub async fn shutdown(self) -> Result<()> {
        self.running.stop().await
    }
}

impl Running {
    async fn start(
        config: &BrokerConfig,
        log_bytes: Option<(u64, u64)>,
        dir: &Path,
    ) -> Result<Running> {
        let mut log_config = LogConfig::new(dir.join("log"));
        if let Some((segment_bytes, max_bytes)) = log_bytes {
            log_config.segment_bytes = segment_bytes;
            log_config.max_bytes = max_bytes;
            log_config.max_age = None;
        }
        let log = Log::open(log_config)?;
        let broker = Broker::open(config.clone(), log, dir).await?;
        let listeners = Listeners::bind(config).await?;
        let addr = listeners
            .addresses()
            .first()
            .map(|(_, addr)| *addr)
            .ok_or_else(|| std::io::Error::other("the broker bound no listener"))?;
        let stop = CancellationToken::new();
        let server = tokio::spawn({
            let broker = broker.clone();
            let stop = stop.clone();
            async move { broker.run(listeners, stop.cancelled_owned()).await }
        });
        Ok(Running {
            broker,
            addr,
            stop,
            server,
        })
    }

    async fn stop(self) -> Result<()> {
        self.stop.cancel();
        Ok(self.server.await??)
    }
}
