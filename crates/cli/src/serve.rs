//! `tributary serve`: a node, i.e. the broker, the pipeline, the archive and
//! the HTTP API, on the embedded log or on Kafka.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use tributary_broker::{Broker, ListenerConfig, ListenerKind, Listeners, TlsConfig};
use tributary_log::Log;
use tributary_membership::Membership;
use tributary_store::Store;

use crate::config::{DataArgs, FileConfig, LogBackend, NodeConfig};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// --config, --data-dir, --log, --store.
    #[command(flatten)]
    data: DataArgs,
    /// Address of the MQTT listener [default: 127.0.0.1:1883].
    #[arg(long, env = "TRIBUTARY_MQTT", value_name = "ADDR")]
    mqtt: Option<SocketAddr>,
    /// Let clients connect without credentials; only on a loopback listener.
    #[arg(long, env = "TRIBUTARY_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,
    /// Expect a PROXY protocol v2 header (HAProxy send-proxy-v2) on every
    /// connection of the plain MQTT listener (others: `proxy_protocol` in
    /// their config table).
    #[arg(long, env = "TRIBUTARY_PROXY_PROTOCOL")]
    proxy_protocol: bool,
    /// Address of the MQTT over TLS listener [default with a certificate: 0.0.0.0:8883].
    #[arg(long, env = "TRIBUTARY_MQTT_TLS", value_name = "ADDR")]
    mqtt_tls: Option<SocketAddr>,
    /// Address of an MQTT over WebSocket listener (path /mqtt) [default: off].
    #[arg(long, env = "TRIBUTARY_MQTT_WS", value_name = "ADDR")]
    mqtt_ws: Option<SocketAddr>,
    /// Address of an MQTT over secure WebSocket listener (path /mqtt) [default: off].
    #[arg(long, env = "TRIBUTARY_MQTT_WSS", value_name = "ADDR")]
    mqtt_wss: Option<SocketAddr>,
    /// PEM file with the server certificate (and chain) for TLS and WSS.
    #[arg(
        long,
        env = "TRIBUTARY_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// PEM file with the server certificate's private key.
    #[arg(
        long,
        env = "TRIBUTARY_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// PEM file with the CA that signs device certificates: a client
    /// certificate's common name then authenticates that device.
    #[arg(long, env = "TRIBUTARY_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// Address of the HTTP API [default: 127.0.0.1:8080].
    #[arg(long, env = "TRIBUTARY_HTTP", value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Where the Parquet archive goes: a directory (relative to the data
    /// dir; default `archive`), `file:///PATH`, `s3://BUCKET[/PREFIX]`
    /// (credentials from AWS_* variables; see `[archive]`), or `off`.
    #[arg(long, env = "TRIBUTARY_ARCHIVE", value_name = "URL")]
    archive: Option<String>,
    /// With --tls-client-ca: refuse TLS clients without a certificate.
    #[arg(long, env = "TRIBUTARY_TLS_REQUIRE_CLIENT_CERT")]
    tls_require_client_cert: bool,
    /// `[cluster]`: joining and leaving an HAProxy backend.
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// The `[cluster]` keys as flags (docs/cluster.md).
#[derive(Debug, Args)]
struct ClusterArgs {
    /// HAProxy's runtime API (a unix socket path or HOST:PORT): the node
    /// joins the backend when ready and leaves it on SIGTERM.
    #[arg(long, env = "TRIBUTARY_HAPROXY_API", value_name = "ADDR")]
    haproxy_api: Option<String>,
    /// The HAProxy backend to join [default: mqtt_nodes].
    #[arg(long, env = "TRIBUTARY_HAPROXY_BACKEND", value_name = "NAME")]
    haproxy_backend: Option<String>,
    /// HOST:PORT HAProxy connects to for this node's MQTT listener.
    #[arg(long, env = "TRIBUTARY_ADVERTISE", value_name = "ADDR")]
    advertise: Option<String>,
    /// The server's name in the backend [default: tributary-{node id}].
    #[arg(long, env = "TRIBUTARY_NODE_NAME", value_name = "NAME")]
    node_name: Option<String>,
    /// The rest of the `add server` line [default: check inter 500ms fall 2
    /// rise 2, with send-proxy-v2 check-send-proxy under --proxy-protocol].
    #[arg(long, env = "TRIBUTARY_SERVER_OPTIONS", value_name = "OPTIONS")]
    server_options: Option<String>,
    /// Seconds SIGTERM takes to disconnect the clients a few at a time [default: 10].
    #[arg(long, env = "TRIBUTARY_DRAIN_SECS", value_name = "SECS")]
    drain_secs: Option<u64>,
    /// A second HAProxy backend, for the HTTP API (with --advertise-http).
    #[arg(long, env = "TRIBUTARY_HAPROXY_HTTP_BACKEND", value_name = "NAME")]
    haproxy_http_backend: Option<String>,
    /// HOST:PORT HAProxy connects to for this node's HTTP API.
    #[arg(long, env = "TRIBUTARY_ADVERTISE_HTTP", value_name = "ADDR")]
    advertise_http: Option<String>,
}

impl ClusterArgs {
    fn apply(&self, config: &mut tributary_membership::ClusterFileConfig) {
        let set = |value: &Option<String>, key: &mut Option<String>| {
            if let Some(value) = value {
                *key = Some(value.clone());
            }
        };
        set(&self.haproxy_api, &mut config.haproxy_api);
        set(&self.advertise, &mut config.advertise);
        set(&self.node_name, &mut config.node_name);
        set(&self.server_options, &mut config.server_options);
        set(&self.haproxy_http_backend, &mut config.haproxy_http_backend);
        set(&self.advertise_http, &mut config.advertise_http);
        if let Some(backend) = &self.haproxy_backend {
            config.haproxy_backend = backend.clone();
        }
        if let Some(secs) = self.drain_secs {
            config.drain_secs = secs;
        }
    }
}

impl ServeArgs {
    /// The config file with the data flags and these applied, resolved.
    fn compose(&self) -> anyhow::Result<NodeConfig> {
        let mut config = self.data.compose()?;
        if let Some(addr) = self.mqtt {
            config.mqtt.listen = addr;
        }
        if self.allow_anonymous {
            config.mqtt.allow_anonymous = true;
        }
        if self.proxy_protocol {
            config.mqtt.proxy_protocol = true;
        }
        self.compose_listeners(&mut config)?;
        self.cluster.apply(&mut config.cluster);
        if let Some(addr) = self.http {
            config.http.listen = addr;
        }
        match self.archive.as_deref() {
            None => {}
            Some("off") => config.archive.enabled = false,
            Some(url) => {
                config.archive.enabled = true;
                config.archive.url = Some(url.to_owned());
            }
        }
        config.resolve()
    }
}

impl ServeArgs {
    fn compose_listeners(&self, config: &mut FileConfig) -> anyhow::Result<()> {
        let listen = |listen| ListenerConfig {
            listen,
            proxy_protocol: false,
        };
        if let Some(addr) = self.mqtt_tls {
            config.mqtt.tls.get_or_insert_with(|| listen(addr)).listen = addr;
        }
        if let Some(addr) = self.mqtt_ws {
            config.mqtt.ws.get_or_insert_with(|| listen(addr)).listen = addr;
        }
        if let Some(addr) = self.mqtt_wss {
            config.mqtt.wss.get_or_insert_with(|| listen(addr)).listen = addr;
        }
        if let (Some(cert_file), Some(key_file)) = (&self.tls_cert, &self.tls_key) {
            let tls = config.tls.get_or_insert_with(|| TlsConfig {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                client_ca_file: None,
                require_client_cert: false,
            });
            tls.cert_file = cert_file.clone();
            tls.key_file = key_file.clone();
        }
        if self.tls_client_ca.is_some() || self.tls_require_client_cert {
            let Some(tls) = config.tls.as_mut() else {
                anyhow::bail!("--tls-client-ca and --tls-require-client-cert need --tls-cert and --tls-key (or [tls] in the config file)");
            };
            if let Some(ca) = &self.tls_client_ca {
                tls.client_ca_file = Some(ca.clone());
            }
            tls.require_client_cert |= self.tls_require_client_cert;
        }
        Ok(())
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.compose()?;
    private_files();
    let runtime = crate::runtime()?;
    runtime.block_on(serve(config))
}

/// Everything `serve` creates (the log, sessions, the store, the archive on
/// local disk, temporary files) is readable by the service user only: the
/// data dir holds every owner's data, and other local users have no
/// business reading it. Set before any thread or file exists, and for the
/// whole process: files get 0600, directories 0700, whatever creates them.
fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file mode creation mask; it
    // takes no pointer and cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates the data dir (0700), or makes an existing one that other users
/// may enter private, with a log line: it holds every owner's data.
fn private_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create data dir {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("read data dir {}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("make data dir {} private (chmod 700)", dir.display()))?;
            tracing::warn!(data_dir = %dir.display(), was = format!("{:o}", mode & 0o777),
                "the data dir was open to other users; now 0700 (owner only)");
        }
    }
    Ok(())
}

async fn serve(config: NodeConfig) -> anyhow::Result<()> {
    let http_config = config.http.build()?;
    private_data_dir(&config.data_dir)?;
    let log = Log::open(config.log.clone())
        .with_context(|| format!("open the log in {}", config.data_dir.display()))?;
    let store = Arc::new(
        Store::open(config.store_url.as_deref(), &config.data_dir)
            .await
            .context("open the measurements store")?,
    );
    let archive = open_archive(&config)?;
    let model = open_model(&config)?;
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("listen for HTTP on {}", config.http.listen))?;
    let broker = Broker::open(config.broker.clone(), log.clone(), &config.data_dir).await?;
    // Owners' data keys, in the store every node shares (docs/erasure.md).
    let keyring = config.erasure.keyring(&config.data_dir, store.clone())?;
    broker.use_keyring(keyring.clone());
    // The store's erasures, followed below: the sinks, MQTT delivery and
    // the live feed do not pass on what they cover.
    // Read once before anything is served, so that a session resuming at
    // once does not get what was erased before this start.
    let tombstones = tributary_pipeline::erasure::Tombstones::default();
    tombstones
        .refresh(&store)
        .await
        .context("read the store's erasures")?;
    broker.use_erasures(Arc::new(tombstones.clone()));
    if !config.erasure.encrypt {
        tracing::warn!("erasure.encrypt is off: payloads are appended to the log in the clear");
    }
    if let LogBackend::Kafka(kafka) = config.backend() {
        tracing::info!(brokers = %kafka.brokers, "the log is Kafka: publishes are acknowledged once Kafka has them");
    }
    let listeners = Listeners::bind(&config.broker).await?;
    for (kind, addr) in listeners.addresses() {
        let path = if matches!(kind, ListenerKind::Ws | ListenerKind::Wss) {
            "/mqtt"
        } else {
            ""
        };
        tracing::info!(data_dir = %config.data_dir.display(), "{kind} listening on {}://{addr}{path}", kind.scheme());
    }
    if broker.accounts().is_empty() {
        let dir = config.data_dir.display();
        tracing::warn!(
            "no accounts yet{}; create the first owner and device (while this runs) with: \
             tributary owner add NAME --data-dir {dir} && tributary device add --owner NAME DEVICE --data-dir {dir}",
            if config.broker.mqtt.allow_anonymous { "" } else { " and anonymous access is off, so every client is refused" }
        );
    }
    // The pipeline and the HTTP API stop before the broker closes the log they read.
    let stop = CancellationToken::new();
    let api_state = tributary_api::ApiState::with_config(
        config.data_dir.clone(),
        broker.accounts().clone(),
        store.clone(),
        log.clone(),
        http_config,
    );
    api_state.set_router(broker.router().clone());
    api_state.set_receipt_issuer(config.receipt_issuer.clone());
    api_state.set_keyring(keyring.clone());
    api_state.set_erasures(Arc::new(tombstones.clone()));
    api_state.set_retained(Arc::new(crate::rights::BrokerRetained(broker.clone())));
    if let Some(archive) = &archive {
        api_state.set_archive(archive.clone());
    }
    let mut endpoints = tributary_api::MqttEndpoints::default();
    for (kind, addr) in listeners.addresses() {
        let port = Some(addr.port());
        match kind {
            ListenerKind::Tcp => endpoints.port = port,
            ListenerKind::Tls => endpoints.tls_port = port,
            ListenerKind::Ws => endpoints.ws_port = port,
            ListenerKind::Wss => endpoints.wss_port = port,
        }
    }
    api_state.set_mqtt_endpoints(endpoints);
    // Shared by the pipeline, which counts, and `/metrics`, which shows.
    let sink_stats = crate::pipeline::SinkStats::default();
    tokio::spawn(crate::metrics::publish(
        broker.clone(),
        sink_stats.clone(),
        api_state.clone(),
        stop.clone(),
    ));
    // Consents reach the broker's table from the store; the broker's audit
    // counts reach the store (docs/consent.md).
    tokio::spawn(crate::rights::follow_consents(
        store.clone(),
        broker.consents().clone(),
        stop.clone(),
    ));
    tokio::spawn(crate::rights::write_audit(
        store.clone(),
        broker.audit().clone(),
        stop.clone(),
    ));
    let audit_store = store.clone();
    let readiness = api_state.clone();
    let api = tokio::spawn(tributary_api::serve(http, api_state, {
        let stop = stop.clone();
        async move { stop.cancelled().await }
    }));
    // Erasures made on any node reach this one's sinks, its delivery and
    // its key cache.
    tokio::spawn(tributary_pipeline::erasure::follow(
        store.clone(),
        tombstones.clone(),
        Some(keyring.clone()),
        stop.clone(),
    ));
    let erasures = crate::pipeline::Erasures {
        keyring,
        tombstones,
    };
    let pipeline = crate::pipeline::run(
        config.clone(),
        log,
        crate::pipeline::Destinations { store, archive },
        model,
        erasures,
        sink_stats,
        stop.clone(),
    );
    // Logged when it happens, not at shutdown: the broker goes on without
    // the pipeline when it could not start (the sinks log their own errors).
    let pipeline = tokio::spawn(async move {
        if let Err(e) = pipeline.await {
            tracing::error!(error = %e, "pipeline stopped; measurements are not stored until tributary restarts");
        }
    });
    // In the HAProxy backend once everything above is up: the log open,
    // the listeners bound, the API served, and (on Kafka) MQTT served,
    // its copy of the topics caught up.
    let cluster = config.cluster.as_ref().map(|cluster| {
        let membership = Arc::new(Membership::new(cluster, broker.node_id()));
        let joining = CancellationToken::new();
        let join = tokio::spawn({
            let (membership, joining, broker) =
                (membership.clone(), joining.clone(), broker.clone());
            async move {
                tokio::select! {
                    () = joining.cancelled() => return false,
                    _ = broker.caught_up() => {}
                }
                membership.join(&joining).await
            }
        });
        Cluster {
            membership,
            join,
            joining,
        }
    });
    let leaving = broker.clone();
    let shutdown = async move {
        shutdown_signal().await;
        leave(&leaving, &readiness, cluster).await;
        stop.cancel();
        let _ = pipeline.await;
        if let Ok(Err(e)) = api.await {
            tracing::error!(error = %e, "HTTP API");
        }
    };
    let audit = broker.audit().clone();
    broker.run(listeners, shutdown).await?;
    // The connections are closed: what they delivered last is written now.
    if let Err(e) = crate::rights::flush_audit(&audit_store, &audit).await {
        tracing::error!(error = %e, "audit entries of the last second could not be written");
    }
    Ok(())
}

/// This node in an HAProxy backend: its membership and the task joining it.
struct Cluster {
    membership: Arc<Membership>,
    /// Resolves to whether the node joined.
    join: tokio::task::JoinHandle<bool>,
    /// Stops the join's retries at shutdown.
    joining: CancellationToken,
}

/// The first part of a graceful shutdown, before the broker closes what is
/// left: `/readyz` answers 503 at once; in a cluster, HAProxy sends no new
/// connections (`state drain`), the clients are disconnected a few at a
/// time over `drain_secs` (each connection's received publishes made
/// durable and acknowledged first), and the node leaves the backend
/// (`state maint`, `del server`). A second SIGTERM or SIGINT cuts the
/// gradual part short. Failures to talk to HAProxy are logged, never fatal:
/// its health checks take a node that is gone out of rotation anyway.
async fn leave(broker: &Broker, readiness: &tributary_api::ApiState, cluster: Option<Cluster>) {
    readiness.set_draining();
    let Some(cluster) = cluster else { return };
    let started = std::time::Instant::now();
    cluster.joining.cancel();
    let joined = cluster.join.await.unwrap_or(false);
    let membership = &cluster.membership;
    if joined {
        if let Err(e) = membership.drain().await {
            tracing::warn!(error = %e, "could not set the haproxy server to drain; disconnecting the clients anyway");
        }
    }
    // A second signal tells the remaining clients at once; they are gone
    // (their acknowledgements sent) before the server is deleted, which
    // would otherwise cut their connections in HAProxy.
    broker
        .drain(membership.drain_period(), shutdown_signal())
        .await;
    if joined {
        if let Err(e) = membership.leave().await {
            tracing::warn!(error = %e, "could not leave the haproxy backend; its health checks take the node out of rotation");
        }
    }
    tracing::info!(
        elapsed_secs = started.elapsed().as_secs_f64(),
        "left the cluster"
    );
}

/// The archive, when enabled. A bad URL stops the start; whether the
/// storage answers is asked in the background (object storage that does not
/// answer must not hold up the broker's start): unreachable, it only warns,
/// and the sink retries.
fn open_archive(config: &NodeConfig) -> anyhow::Result<Option<Arc<tributary_archive::Archive>>> {
    let Some(settings) = &config.archive else {
        tracing::info!("archive off");
        return Ok(None);
    };
    let archive = tributary_archive::Archive::open(&settings.config, &config.data_dir)
        .context("open the archive")?;
    let archive = Arc::new(archive);
    let checked = archive.clone();
    tokio::spawn(async move {
        match checked.check().await {
            Ok(()) => tracing::info!(archive = checked.location(), "archive ready"),
            Err(e) => {
                tracing::warn!(error = %e, "archive unreachable; measurements are archived once it answers")
            }
        }
    });
    Ok(Some(archive))
}

/// The behaviour model, when enabled and present. A model that is missing where `[model]
/// path` points, or that does not load (damaged, or made for another input layout), stops the
/// start; none at the default place only turns activity recognition off.
fn open_model(
    config: &NodeConfig,
) -> anyhow::Result<Option<Arc<tributary_model::model_file::Model>>> {
    if !config.model.enabled {
        tracing::info!("activity recognition off ([model] enabled = false)");
        return Ok(None);
    }
    let (dir, configured) = config.model.location(&config.data_dir);
    if !configured
        && !dir
            .join(tributary_model::model_file::METADATA_FILE)
            .exists()
    {
        tracing::info!(
            "no behaviour model in {}; activity recognition is off (docs/model.md: tributary model train-har)",
            dir.display()
        );
        return Ok(None);
    }
    let model = tributary_model::model_file::load(&dir)
        .with_context(|| format!("load the behaviour model from {}", dir.display()))?;
    tracing::info!(
        model = %model.metadata.version,
        accuracy = model.metadata.test.accuracy,
        "activity recognition on"
    );
    Ok(Some(Arc::new(model)))
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::error!(error = %e, "install the SIGTERM handler");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown signal received");
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
