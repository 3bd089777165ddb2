//! The broker's state and its construction: everything the connections of
//! one node share (the log and where publishes are made durable, sessions,
//! retained messages, shared subscription groups, accounts, limits and
//! figures), loaded from the data dir and the log by [`Broker::open`].
//!
//! Serving it is apart: `server` runs the listeners and the connections,
//! `upkeep` the background tasks. Neither is needed to build a `Broker`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_accounts::Accounts;
use tributary_log::{Log, MessageId, MessageIds, Offset, Record};

use crate::cluster::{Checkpoints, Cluster, Nodes, SessionDirectory};
use crate::config::BrokerConfig;
use crate::durable::Durability;
use crate::persist::SessionFile;
use crate::rate::SourceLimiter;
use crate::retained::{Retained, RetainedSnapshot};
use crate::session::{Registry, Subscription};
use crate::shared::SharedGroups;
use crate::stats::BrokerStats;
use crate::{Error, Result};
use tributary_rights::audit::Aggregator;
use tributary_rights::consent::LiveConsents;
use tributary_router::Router;

/// Audit entries the node holds before deliveries to services and admins
/// wait for the audit writer (docs/consent.md, "The audit log").
const AUDIT_MAX_ENTRIES: usize = 10_000;

/// Records read from the log per batch when replaying retained messages.
const REPLAY_BATCH: usize = 1024;

/// State shared by every connection of one broker.
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) log: Log,
    pub(crate) sessions: Arc<Registry>,
    pub(crate) session_file: Arc<SessionFile>,
    pub(crate) retained: Arc<Retained>,
    /// The subscription index that hands each log record to the sessions it is for.
    pub(crate) router: Arc<Router>,
    /// Shared subscriptions (`$share/{group}/{filter}`), delivered by group.
    pub(crate) shared: Arc<SharedGroups>,
    /// Connection attempts per source address (`limits.max_connections_per_sec_per_source`).
    pub(crate) sources: SourceLimiter,
    /// Owners and devices, for authentication and the ACL.
    pub(crate) accounts: Arc<Accounts>,
    /// Where the retained map is saved; written by the retained consumer.
    pub(crate) retained_snapshot: Arc<RetainedSnapshot>,
    /// Where the retained map stood at the last snapshot load or replay.
    retained_applied: Offset,
    message_ids: MessageIds,
    next_connection: AtomicU64,
    /// Cancelled when shutdown starts; every connection's token is a child.
    pub(crate) shutdown: CancellationToken,
    /// Set when [`Broker::drain`] starts: a connection told to close then
    /// tells its client to use another server.
    pub(crate) draining: std::sync::atomic::AtomicBool,
    /// Connections served through `Broker::serve_io`, which `run` waits for
    /// at shutdown as for its own.
    pub(crate) embedded_connections: TaskTracker,
    /// One permit per open connection (`limits.max_connections`).
    pub(crate) connection_permits: Arc<Semaphore>,
    /// Where publishes are made durable: the log itself, or Kafka.
    pub(crate) durability: Durability,
    /// On Kafka: the session directory and this node's checkpoints.
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// Names this node's consumer group on Kafka (kept in the data dir).
    node_id: String,
    /// Messages in and out, append latency (for metrics).
    pub(crate) stats: BrokerStats,
    /// The consents services read under (`reader.rs`); empty until the
    /// node fills it from the store, so a service receives nothing before.
    pub(crate) consents: Arc<LiveConsents>,
    /// Deliveries to services and admins, counted for the audit log.
    pub(crate) audit: Arc<Aggregator>,
    /// Owners' data keys (docs/erasure.md): set once by whoever opened the
    /// broker, before it serves ([`Broker::use_keyring`]); unset, payloads
    /// are neither sealed nor opened (tests, the fuzzer).
    pub(crate) keyring: std::sync::OnceLock<Arc<tributary_rights::owner_keys::Keyring>>,
    /// The erasures of devices and time ranges this node knows of (the
    /// store's tombstones): what delivery must not send again. Set once,
    /// like the keyring ([`Broker::use_erasures`]); unset, none.
    pub(crate) erasures: std::sync::OnceLock<Arc<dyn tributary_rights::erased::Erasures>>,
    /// The plaintexts of what this node sealed last, for its own
    /// subscribers; `None` when the log is Kafka (nothing read back from
    /// Kafka could match one).
    pub(crate) recent_plaintexts: Option<crate::plaintexts::RecentPlaintexts>,
}

impl Drop for Broker {
    /// Stops the background tasks `open` started (the router), also for a
    /// broker that was never `run`.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The session directory and the nodes table (their topics created when
/// missing) and this node's checkpoints.
async fn open_cluster(
    kafka: &tributary_kafka::KafkaConfig,
    log: &Log,
    data_dir: &Path,
    node_id: &str,
) -> Result<Cluster> {
    let topic = crate::cluster::directory_topic(kafka);
    tributary_kafka::ensure_table(kafka, &topic)
        .await
        .map_err(Error::Kafka)?;
    let directory = SessionDirectory::new(kafka, &topic, node_id).map_err(Error::Kafka)?;
    let nodes_topic = crate::cluster::nodes_topic(kafka);
    tributary_kafka::ensure_table(kafka, &nodes_topic)
        .await
        .map_err(Error::Kafka)?;
    let nodes = Nodes::new(kafka, &nodes_topic, node_id).map_err(Error::Kafka)?;
    let checkpoints = Checkpoints::open(data_dir, log.start_offset(), log.end_offset());
    Ok(Cluster {
        directory: Arc::new(directory),
        nodes: Arc::new(nodes),
        checkpoints: Arc::new(checkpoints),
        caught_up: tokio::sync::watch::channel(false).0,
        retained_at: tokio::sync::watch::channel(tributary_log::Offset(0)).0,
    })
}

impl Broker {
    /// Seal what owners' devices publish and open what subscribers are sent
    /// with `keyring` (docs/erasure.md). Call before serving; a second call
    /// is ignored (the first keyring stays).
    pub fn use_keyring(&self, keyring: Arc<tributary_rights::owner_keys::Keyring>) {
        let _ = self.keyring.set(keyring);
    }

    /// The erasures delivery must respect (docs/erasure.md); the first call
    /// wins. Set before the broker serves.
    pub fn use_erasures(&self, erasures: Arc<dyn tributary_rights::erased::Erasures>) {
        let _ = self.erasures.set(erasures);
    }

    /// Loads persistent sessions and retained messages from `data_dir` and the log.
    pub async fn open(config: BrokerConfig, log: Log, data_dir: &Path) -> Result<Arc<Broker>> {
        config.validate().map_err(Error::Config)?;
        // Sessions and shared subscription groups keep their queues as
        // cursors into the log. One that falls behind (an owner's device
        // away for a week, say) must not stop every other publisher when
        // the log is full: past `log.max_bytes` or `max_age` it loses its
        // own oldest messages instead (docs/configuration.md).
        log.let_consumers_yield(&[
            crate::session::CONSUMER_PREFIX,
            crate::shared::CONSUMER_PREFIX,
        ]);
        let session_file = Arc::new(SessionFile::new(data_dir));
        let sessions = Arc::new(Registry::default());
        let stored = session_file
            .load()
            .map_err(|e| Error::io("load sessions.json", e))?;
        let restored = stored.len();
        let shared = Arc::new(SharedGroups::new(log.clone()));
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
        let accounts = Accounts::open(data_dir).map_err(Error::Accounts)?;
        let accounts = Arc::new(accounts.with_max_checks(config.limits.max_password_checks));
        let node_id =
            crate::node_id::load_or_create(data_dir).map_err(|e| Error::io("read node_id", e))?;
        let cluster = match &config.kafka {
            Some(kafka) => Some(Arc::new(
                open_cluster(kafka, &log, data_dir, &node_id).await?,
            )),
            None => None,
        };
        let recent_plaintexts = config
            .kafka
            .is_none()
            .then(crate::plaintexts::RecentPlaintexts::new);
        let durability = match &config.kafka {
            Some(kafka) => {
                tributary_kafka::ensure_topics(kafka)
                    .await
                    .map_err(Error::Kafka)?;
                let producer = tributary_kafka::Producer::new(kafka).map_err(Error::Kafka)?;
                let table = crate::cluster::retained_topic(kafka);
                tributary_kafka::ensure_table(kafka, &table)
                    .await
                    .map_err(Error::Kafka)?;
                Durability::Kafka {
                    producer: Arc::new(producer),
                    retained: Arc::new(
                        tributary_kafka::TableWriter::new(kafka, &table).map_err(Error::Kafka)?,
                    ),
                }
            }
            None => Durability::Embedded(log.clone()),
        };
        let retained_snapshot = Arc::new(RetainedSnapshot::new(data_dir));
        let (retained, applied) = retained_snapshot
            .load()
            .map_err(|e| Error::io("load retained.snapshot", e))?;
        let shutdown = CancellationToken::new();
        let router = Arc::new(Router::new(log.end_offset()));
        tokio::spawn(tributary_router::run(
            router.clone(),
            log.clone(),
            shutdown.clone(),
        ));
        let mut broker = Broker {
            router,
            connection_permits: Arc::new(Semaphore::new(config.limits.max_connections)),
            config,
            log,
            sessions,
            session_file,
            retained: Arc::new(retained),
            shared,
            accounts,
            sources: SourceLimiter::default(),
            retained_snapshot,
            retained_applied: applied,
            message_ids: MessageIds::new(),
            next_connection: AtomicU64::new(1),
            shutdown,
            draining: std::sync::atomic::AtomicBool::new(false),
            embedded_connections: TaskTracker::new(),
            durability,
            cluster,
            node_id,
            stats: BrokerStats::default(),
            consents: Arc::new(LiveConsents::default()),
            audit: Arc::new(Aggregator::new(AUDIT_MAX_ENTRIES)),
            keyring: std::sync::OnceLock::new(),
            erasures: std::sync::OnceLock::new(),
            recent_plaintexts,
        };
        broker.retained_applied = broker.replay_retained(applied).await?;
        if let (Some(kafka), Offset(0)) = (&broker.config.kafka, broker.log.end_offset()) {
            // A new node: what was retained before it started is in the
            // cluster's retained table, not in its (empty) log.
            let seeded = crate::cluster::read_retained(kafka)
                .await
                .map_err(Error::Kafka)?;
            for record in seeded {
                broker.retained.seed(Arc::new(record));
            }
        }
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
                .read(pos, REPLAY_BATCH)
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
        self.durability.kafka_reachable()
    }

    /// Messages in and out and append latency (for metrics).
    pub fn stats(&self) -> &BrokerStats {
        &self.stats
    }

    /// Open MQTT connections (for metrics).
    pub fn connections(&self) -> usize {
        self.config.limits.max_connections - self.connection_permits.available_permits()
    }

    /// The node's subscription index, which the HTTP API's live feeds use too.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// What `owner` (or a service or admin, by name) has retained, against
    /// `limits.max_retained_per_owner` and `max_retained_bytes_per_owner`.
    pub fn retained_usage(&self, owner: &str) -> crate::RetainedUsage {
        self.retained.usage(owner)
    }

    /// Whether retaining `record` keeps its owner within
    /// `limits.max_retained_per_owner` and `max_retained_bytes_per_owner`:
    /// asked of a retained PUBLISH and of a retained will when it fires.
    pub(crate) fn retained_admits(&self, record: &Record) -> bool {
        let limits = &self.config.limits;
        self.retained.admits(
            record,
            limits.max_retained_per_owner,
            limits.max_retained_bytes_per_owner,
        )
    }

    /// Appends a will message to the log like any publish. A retained will
    /// keeps to its owner's bound on retained messages as a retained PUBLISH
    /// does, checked when it fires (the client is gone and cannot be told,
    /// so the refusal is logged and counted).
    pub(crate) async fn append_will(&self, record: Record) {
        if record.retain && !self.retained_admits(&record) {
            self.stats.add_will_refused();
            tracing::warn!(client_id = %record.client_id, topic = %record.topic, "retained will not published: over limits.max_retained_per_owner or max_retained_bytes_per_owner");
            return;
        }
        let retain = record.retain.then(|| record.clone());
        match self.durability.store(vec![record]).await {
            Ok(crate::durable::Durable::InLog(offsets)) => {
                if let (Some(record), Some(offset)) = (retain, offsets.first()) {
                    self.retained.apply(*offset, &Arc::new(record));
                }
            }
            // The retained map learns it from the local log, which Kafka feeds.
            Ok(crate::durable::Durable::InKafka) => {}
            Err(e) => {
                tracing::error!(error = %e, "append a will message")
            }
        }
    }

    /// The consents deliveries to services are checked against: the node
    /// replaces its contents when the store's consents change
    /// (docs/consent.md, "Enforcement").
    pub fn consents(&self) -> &Arc<LiveConsents> {
        &self.consents
    }

    /// Deliveries to services and admins, counted for the audit log: the
    /// node's audit writer takes them (docs/consent.md, "The audit log").
    pub fn audit(&self) -> &Arc<Aggregator> {
        &self.audit
    }

    /// The account store the broker authenticates against (shared with the HTTP API).
    pub fn accounts(&self) -> &Arc<Accounts> {
        &self.accounts
    }

    pub(crate) fn next_message_id(&self) -> MessageId {
        self.message_ids.next()
    }

    /// A number for a new connection, unique in this process (the session
    /// registry tells a connection from the one that took its session over).
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Where the retained map stood once `open` had replayed the log.
    pub(crate) fn retained_applied(&self) -> Offset {
        self.retained_applied
    }

    /// This node's id, kept in `DATA_DIR/node_id` (its Kafka consumer
    /// group and its default server name in a load balancer are named
    /// after it).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }
}
