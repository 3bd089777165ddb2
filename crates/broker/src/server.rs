//! The broker: shared state, the accept loop, and the background tasks
//! (retained consumer, session expiry), with graceful shutdown.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_accounts::Accounts;
use tributary_log::{Log, MessageId, MessageIds, Offset};

use crate::config::BrokerConfig;
use crate::connection::Connection;
use crate::listener::{Layers, ListenerKind, Listeners};
use crate::persist::SessionFile;
use crate::retained::{Retained, RetainedSnapshot};
use crate::session::{Registry, Subscription};
use crate::shared::SharedGroups;
use crate::transport::Transport;
use crate::{Error, Result};

/// The log consumer that keeps the retained snapshot.
const RETAINED_CONSUMER: &str = "retained";
/// How often the retained snapshot is rewritten when it changed.
const RETAINED_SNAPSHOT_EVERY: Duration = Duration::from_secs(5);
/// How often offline sessions are checked for expiry.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often the account store is checked for changes by admin commands.
const ACCOUNTS_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long connections get to finish after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Records read from the log per batch by background consumers.
const READ_BATCH: usize = 1024;

/// State shared by every connection of one broker.
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) log: Log,
    pub(crate) sessions: Registry,
    pub(crate) session_file: Arc<SessionFile>,
    pub(crate) retained: Arc<Retained>,
    pub(crate) shared: SharedGroups,
    /// Connection attempts per source address (`limits.max_connections_per_sec_per_source`).
    pub(crate) sources: crate::rate::SourceLimiter,
    /// Owners and devices, for authentication and the ACL.
    pub(crate) accounts: Arc<Accounts>,
    retained_snapshot: Arc<RetainedSnapshot>,
    /// Where the retained map stood at the last snapshot load or replay.
    retained_applied: AtomicU64,
    message_ids: MessageIds,
    next_connection: AtomicU64,
    /// Cancelled when shutdown starts; every connection's token is a child.
    pub(crate) shutdown: CancellationToken,
    /// One permit per open connection (`limits.max_connections`).
    pub(crate) connection_permits: Arc<Semaphore>,
    /// With Kafka as the log: where publishes are made durable.
    pub(crate) kafka: Option<Arc<tributary_kafka::Producer>>,
    /// Names this node's consumer group on Kafka (kept in the data dir).
    node_id: String,
    /// Messages in and out, append latency (for metrics).
    pub(crate) stats: crate::stats::BrokerStats,
}

impl Broker {
    /// Loads persistent sessions and retained messages from `data_dir` and the log.
    pub async fn open(config: BrokerConfig, log: Log, data_dir: &Path) -> Result<Arc<Broker>> {
        config.validate().map_err(Error::Config)?;
        let session_file = Arc::new(SessionFile::new(data_dir));
        let sessions = Registry::default();
        let stored = session_file
            .load()
            .map_err(|e| Error::io("load sessions.json", e))?;
        let restored = stored.len();
        let shared = SharedGroups::new(log.clone());
        for session in stored {
            for key in Subscription::shared_keys(&session.subscriptions) {
                shared.hold(&key);
            }
            let name = session.client_id.consumer_name();
            // Without a committed cursor (a crash between the session file
            // and the offsets journal) start at the oldest subscription: each
            // subscription's `since` keeps older records out anyway.
            let oldest_subscription = session.subscriptions.iter().map(|s| Offset(s.since)).min();
            let cursor = log
                .committed_offset(&name)
                .or(oldest_subscription)
                .unwrap_or(log.end_offset())
                .max(log.start_offset());
            sessions.restore(session.restore(cursor));
        }
        let accounts =
            Arc::new(Accounts::open(data_dir).map_err(|e| Error::Accounts(e.to_string()))?);
        let kafka = match &config.kafka {
            Some(kafka) => {
                tributary_kafka::ensure_topics(kafka)
                    .await
                    .map_err(|e| Error::Kafka(e.to_string()))?;
                let producer = tributary_kafka::Producer::new(kafka)
                    .map_err(|e| Error::Kafka(e.to_string()))?;
                Some(Arc::new(producer))
            }
            None => None,
        };
        let node_id = crate::store::node_id(data_dir).map_err(|e| Error::io("read node_id", e))?;
        let retained_snapshot = Arc::new(RetainedSnapshot::new(data_dir));
        let (retained, applied) = retained_snapshot
            .load()
            .map_err(|e| Error::io("load retained.snapshot", e))?;
        let broker = Broker {
            connection_permits: Arc::new(Semaphore::new(config.limits.max_connections)),
            config,
            log,
            sessions,
            session_file,
            retained: Arc::new(retained),
            shared,
            accounts,
            sources: crate::rate::SourceLimiter::default(),
            retained_snapshot,
            retained_applied: AtomicU64::new(applied.0),
            message_ids: MessageIds::new(),
            next_connection: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            kafka,
            node_id,
            stats: crate::stats::BrokerStats::default(),
        };
        let applied = broker.replay_retained(applied).await?;
        broker.retained_applied.store(applied.0, Ordering::Relaxed);
        tracing::info!(
            sessions = restored,
            retained = broker.retained.len(),
            "broker state loaded"
        );
        Ok(Arc::new(broker))
    }

    /// Applies retained records from `from` to the log end; returns the end.
    async fn replay_retained(&self, from: Offset) -> Result<Offset> {
        let mut pos = from.max(self.log.start_offset());
        loop {
            let batch = self
                .log
                .read(pos, READ_BATCH)
                .await
                .map_err(|e| Error::log("replay retained messages", e))?;
            let Some((last, _)) = batch.last() else {
                return Ok(pos);
            };
            pos = Offset(last.0 + 1);
            for (offset, record) in &batch {
                if record.retain {
                    self.retained.apply(*offset, record);
                }
            }
        }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// With Kafka as the log: whether Kafka is reachable (for metrics).
    pub fn kafka_reachable(&self) -> Option<bool> {
        self.kafka.as_ref().map(|producer| producer.reachable())
    }

    /// Messages in and out and append latency (for metrics).
    pub fn stats(&self) -> &crate::stats::BrokerStats {
        &self.stats
    }

    /// Open MQTT connections (for metrics).
    pub fn connections(&self) -> usize {
        self.config.limits.max_connections - self.connection_permits.available_permits()
    }

    /// The account store the broker authenticates against (shared with the HTTP API).
    pub fn accounts(&self) -> &Arc<Accounts> {
        &self.accounts
    }

    pub(crate) fn next_message_id(&self) -> MessageId {
        self.message_ids.next()
    }

    /// Serves MQTT on every listener until `shutdown` resolves, then closes
    /// every connection (5.0 clients get DISCONNECT 0x8B), saves state and
    /// closes the log.
    pub async fn run(
        self: Arc<Self>,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let stop = self.shutdown.clone();
        let tasks = TaskTracker::new();
        tasks.spawn(self.clone().retained_consumer(stop.clone()));
        tasks.spawn(self.clone().expire_sessions(stop.clone()));
        tasks.spawn(self.clone().watch_accounts(stop.clone()));
        if let Some(kafka) = &self.config.kafka {
            let group = kafka.group(&format!("router-{}", self.node_id));
            tasks.spawn(crate::kafka_tail::run(
                self.clone(),
                kafka.clone(),
                group,
                stop.clone(),
            ));
        }
        let connections = TaskTracker::new();
        let accepting = CancellationToken::new();
        let acceptors = TaskTracker::new();
        for listener in listeners.all {
            let layers = Layers {
                kind: listener.kind,
                proxy_protocol: listener.proxy_protocol,
                tls: listeners.tls.clone(),
                max_packet_size: self.config.limits.max_packet_size,
            };
            acceptors.spawn(self.clone().accept_loop(
                listener.socket,
                layers,
                connections.clone(),
                accepting.clone(),
            ));
        }
        shutdown.await;
        tracing::info!("shutting down: closing connections");
        accepting.cancel();
        acceptors.close();
        acceptors.wait().await;
        stop.cancel();
        connections.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the grace period; closing the log anyway");
        }
        tasks.close();
        tasks.wait().await;
        if let Some(producer) = &self.kafka {
            // Everything acknowledged is in Kafka already; this only lets
            // unacknowledged records finish before the process ends.
            let producer = producer.clone();
            let _ = tokio::task::spawn_blocking(move || producer.flush(SHUTDOWN_GRACE)).await;
        }
        self.log
            .close()
            .await
            .map_err(|e| Error::log("close the log", e))?;
        tracing::info!("shutdown complete");
        Ok(())
    }

    /// Serves one MQTT connection over any byte stream until it ends, as if
    /// accepted by a listener without layers. For embedding and for the
    /// connection fuzzer (fuzz/fuzz_targets/connection.rs), which feeds
    /// arbitrary bytes through an in-memory pipe.
    pub async fn serve_io<S>(self: Arc<Self>, io: S, peer: std::net::SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static,
    {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let stop = self.shutdown.child_token();
        let transport = Transport::layered(Box::new(io), None);
        Box::new(Connection::new(self, id, transport, peer, stop))
            .run()
            .await;
    }

    /// Accepts on one listener until `accepting` is cancelled; each
    /// connection passes its listener's layers in its own task.
    async fn accept_loop(
        self: Arc<Self>,
        socket: TcpListener,
        layers: Layers,
        connections: TaskTracker,
        accepting: CancellationToken,
    ) {
        let layers = Arc::new(layers);
        loop {
            let (stream, peer) = tokio::select! {
                () = accepting.cancelled() => return,
                accepted = socket.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(listener = %layers.kind, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "set TCP_NODELAY");
            }
            let broker = self.clone();
            let stop = self.shutdown.child_token();
            let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
            if layers.kind == ListenerKind::Tcp && !layers.proxy_protocol {
                // The common case goes straight to MQTT: no layers to pass,
                // and no second task-sized future for an idle device.
                connections.spawn(async move {
                    let transport = Transport::Tcp(stream);
                    Box::new(Connection::new(broker, id, transport, peer, stop))
                        .run()
                        .await;
                });
                continue;
            }
            let layers = layers.clone();
            connections.spawn(async move {
                let timeout = broker.config.limits.connect_timeout();
                let opened = tokio::time::timeout(timeout, layers.open(stream, peer)).await;
                let Ok(Some((transport, peer))) = opened else {
                    if opened.is_err() {
                        tracing::info!(%peer, listener = %layers.kind, "refused: no handshake within the connect timeout");
                    }
                    return;
                };
                Box::new(Connection::new(broker, id, transport, peer, stop))
                    .run()
                    .await;
            });
        }
    }

    /// Follows the log, applying retained records, and snapshots the map so
    /// a restart replays only what came after.
    async fn retained_consumer(self: Arc<Self>, stop: CancellationToken) {
        let mut pos =
            Offset(self.retained_applied.load(Ordering::Relaxed)).max(self.log.end_offset());
        let mut saved = Offset(self.retained_applied.load(Ordering::Relaxed));
        let mut last_save = Instant::now();
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                () = self.log.wait_beyond(pos) => false,
                () = tokio::time::sleep(RETAINED_SNAPSHOT_EVERY) => false,
            };
            match self.log.read(pos, READ_BATCH).await {
                Ok(batch) => {
                    for (offset, record) in &batch {
                        if record.retain {
                            self.retained.apply(*offset, record);
                        }
                        pos = Offset(offset.0 + 1);
                    }
                }
                Err(e) => tracing::error!(error = %e, "read the log for retained messages"),
            }
            if pos != saved && (stopping || last_save.elapsed() >= RETAINED_SNAPSHOT_EVERY) {
                let (retained, snapshot, at) =
                    (self.retained.clone(), self.retained_snapshot.clone(), pos);
                match tokio::task::spawn_blocking(move || snapshot.save(&retained, at))
                    .await
                    .map_err(std::io::Error::other)
                {
                    Ok(Ok(())) => {
                        saved = at;
                        last_save = Instant::now();
                        if let Err(e) = self.log.commit_offset(RETAINED_CONSUMER, at) {
                            tracing::error!(error = %e, "commit the retained consumer offset");
                        }
                    }
                    Ok(Err(e)) | Err(e) => tracing::error!(error = %e, "save retained.snapshot"),
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// Follows changes the admin commands make to the account store (they
    /// run as separate processes) and disconnects revoked devices and services.
    async fn watch_accounts(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(ACCOUNTS_CHECK_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let accounts = self.accounts.clone();
            match tokio::task::spawn_blocking(move || accounts.reload_if_changed()).await {
                Ok(Ok(true)) => {
                    tracing::info!("accounts reloaded");
                    let accounts = &self.accounts;
                    self.sessions.kick_where(|key| {
                        key.device().is_some_and(|d| !accounts.device_active(d))
                            || key.service().is_some_and(|s| !accounts.service_active(s))
                    });
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "reload accounts.json"),
                Err(e) => tracing::error!(error = %e, "reload accounts.json"),
            }
        }
    }

    /// Drops offline sessions whose expiry interval has passed.
    async fn expire_sessions(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(EXPIRY_CHECK_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for (client_id, shared) in self.sessions.expire(Instant::now()) {
                for key in shared {
                    self.shared.release(&key);
                }
                tracing::info!(client_id = %client_id, "session expired");
                let file = self.session_file.clone();
                let id = client_id.clone();
                let saved = tokio::task::spawn_blocking(move || file.update(&id, None)).await;
                if !matches!(saved, Ok(Ok(()))) {
                    tracing::error!(client_id = %client_id, "remove an expired session from sessions.json");
                }
                if let Err(e) = self.log.remove_consumer(&client_id.consumer_name()) {
                    tracing::error!(client_id = %client_id, error = %e, "remove an expired session's cursor");
                }
            }
        }
    }
}
