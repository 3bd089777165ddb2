//! Serving a [`Broker`]: one accept loop per listener, one task per
//! connection, the background tasks of `upkeep` (and, with Kafka as the log,
//! `kafka_tail`), and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::config::ListenerKind;
use crate::connection::{self, ExpectConnect};
use crate::listener::{Layers, Listeners};
use crate::transport::Transport;
use crate::upkeep::{self, ExpiryScope};
use crate::{Error, Result};

/// How long connections get to finish after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Broker {
    /// Serves MQTT on every listener until `shutdown` resolves, then closes
    /// every connection (5.0 clients get DISCONNECT 0x8B), saves state and
    /// closes the log.
    pub async fn run(
        self: Arc<Self>,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let stop = self.shutdown.clone();
        let beating = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(upkeep::retained_consumer(
            self.log.clone(),
            self.retained.clone(),
            self.retained_snapshot.clone(),
            self.retained_applied(),
            self.cluster.clone(),
            stop.clone(),
        ));
        tasks.spawn(upkeep::expire_sessions(
            ExpiryScope {
                sessions: self.sessions.clone(),
                shared: self.shared.clone(),
                session_file: self.session_file.clone(),
                log: self.log.clone(),
            },
            stop.clone(),
        ));
        tasks.spawn(upkeep::watch_accounts(
            self.accounts.clone(),
            self.sessions.clone(),
            stop.clone(),
        ));
        if let Some(kafka) = &self.config.kafka {
            let group = kafka.group(&format!("router-{}", self.node_id()));
            tasks.spawn(crate::kafka_tail::run(
                self.log.clone(),
                kafka.clone(),
                group,
                self.cluster.clone(),
                stop.clone(),
            ));
            if let Some(cluster) = &self.cluster {
                tasks.spawn(crate::cluster::directory::follow(
                    cluster.directory.clone(),
                    kafka.clone(),
                    crate::cluster::directory_topic(kafka),
                    self.sessions.clone(),
                    stop.clone(),
                ));
                tasks.spawn(crate::cluster::nodes::follow(
                    cluster.nodes.clone(),
                    kafka.clone(),
                    crate::cluster::nodes_topic(kafka),
                    stop.clone(),
                ));
                // Beats go on until the connections closed and settled
                // their wills: until then no other node takes them up.
                tasks.spawn(crate::cluster::nodes::beat(
                    cluster.nodes.clone(),
                    beating.clone(),
                ));
                tasks.spawn(crate::orphans::take_up(self.clone(), stop.clone()));
            }
        }
        self.wait_caught_up().await;
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
        // Connections handed over through `serve_io` finish too before the log closes.
        self.embedded_connections.close();
        let all_closed = async {
            connections.wait().await;
            self.embedded_connections.wait().await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, all_closed)
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the grace period; closing the log anyway");
        }
        beating.cancel();
        tasks.close();
        tasks.wait().await;
        self.durability.flush(SHUTDOWN_GRACE).await;
        self.log
            .close()
            .await
            .map_err(|e| Error::log("close the log", e))?;
        tracing::info!("shutdown complete");
        Ok(())
    }

    /// Resolves once the node serves MQTT connections: at once on the
    /// embedded log; on Kafka once its copy of the topics caught up (at most
    /// `CATCH_UP_WAIT` after start). A node joins its load balancer then.
    pub async fn caught_up(&self) -> bool {
        let Some(cluster) = &self.cluster else {
            return true;
        };
        let wait = async {
            let mut caught_up = cluster.caught_up.subscribe();
            if caught_up.wait_for(|done| *done).await.is_err() {
                return false;
            }
            // And the retained map has applied what the copy holds.
            let copied = self.log.end_offset();
            let mut retained = cluster.retained_at.subscribe();
            let applied = retained.wait_for(|at| *at >= copied).await.is_ok();
            applied
        };
        tokio::time::timeout(crate::cluster::CATCH_UP_WAIT, wait)
            .await
            .unwrap_or(false)
    }

    /// On Kafka: waits (at most `CATCH_UP_WAIT`) until the node's copy of
    /// the topics caught up, so that no client of it is sent old messages
    /// as new ones. Connections wait in the listen backlog meanwhile.
    async fn wait_caught_up(&self) {
        if self.cluster.is_none() {
            return;
        }
        let started = std::time::Instant::now();
        if !self.caught_up().await {
            tracing::warn!(
                "not caught up with Kafka within {:?}; serving anyway",
                crate::cluster::CATCH_UP_WAIT
            );
        } else {
            tracing::info!(
                waited_ms = started.elapsed().as_millis() as u64,
                "serving MQTT"
            );
        }
    }

    /// Disconnects this node's clients gradually, spread evenly over
    /// `over`, so that they reconnect (through the load balancer, to the
    /// other nodes) a few at a time rather than all at once: 5.0 clients
    /// get DISCONNECT 0x9C (use another server), 3.1.1 clients are closed.
    /// Each connection first makes durable and acknowledges the publishes
    /// it already received (principle 1), as at shutdown. Listeners keep
    /// accepting meanwhile (the balancer's health checks and stragglers);
    /// connections made during the drain are closed at its end. When
    /// `hurry` resolves first (a second signal), the rest are told at once.
    /// Returns once every drained connection let go of its session, or
    /// after the shutdown grace period. The caller then ends [`Broker::run`].
    pub async fn drain(&self, over: Duration, hurry: impl Future<Output = ()>) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let holders = self.sessions.holders();
        tracing::info!(
            connections = holders.len(),
            over_secs = over.as_secs_f64(),
            "draining: disconnecting clients gradually"
        );
        let count = u32::try_from(holders.len()).unwrap_or(u32::MAX).max(1);
        let step = over / count;
        let start = tokio::time::Instant::now();
        let spread = async {
            for (at, token) in (0..count).zip(&holders) {
                tokio::time::sleep_until(start + step * at).await;
                token.cancel();
            }
        };
        tokio::select! {
            () = spread => {}
            () = hurry => tracing::info!("draining: telling the remaining clients at once"),
        }
        // Connections made while draining, and whoever is still held.
        for token in self.sessions.holders() {
            token.cancel();
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !self.sessions.holders().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(
            elapsed_secs = start.elapsed().as_secs_f64(),
            "drained: clients disconnected"
        );
    }

    /// Serves one MQTT connection over any byte stream until it ends, as if
    /// accepted by a listener without layers. For embedding and for the
    /// connection fuzzer (fuzz/fuzz_targets/connection.rs), which feeds
    /// arbitrary bytes through an in-memory pipe.
    pub async fn serve_io<S>(self: Arc<Self>, io: S, peer: std::net::SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static,
    {
        let id = self.next_connection_id();
        let stop = self.shutdown.child_token();
        let transport = Transport::layered(Box::new(io), None);
        let tracker = self.embedded_connections.clone();
        tracker
            .track_future(connection::serve(Box::new(ExpectConnect::new(
                self, id, transport, peer, stop,
            ))))
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
            let id = self.next_connection_id();
            if layers.kind == ListenerKind::Tcp && !layers.proxy_protocol {
                // The common case goes straight to MQTT: no layers to pass,
                // and the task's future holds one pointer until CONNECT
                // (idle devices are most connections).
                let transport = Transport::Tcp(stream);
                let expect = ExpectConnect::new(broker, id, transport, peer, stop);
                connections.spawn(connection::serve(Box::new(expect)));
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
                connection::serve(Box::new(ExpectConnect::new(broker, id, transport, peer, stop))).await;
            });
        }
    }
}
