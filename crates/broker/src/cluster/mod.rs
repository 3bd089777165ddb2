//! What the nodes of a cluster share beyond the log, on Kafka: the session
//! directory (`directory`, a compacted topic), which nodes are alive
//! (`nodes`, another; `crate::orphans` takes up the wills dead nodes
//! left), and each node's checkpoints that translate a session's cursor between its local
//! log and Kafka (`checkpoints`). With the embedded log there is no cluster
//! and none of this runs.

pub mod checkpoints;
pub mod directory;
pub mod nodes;

use std::collections::HashMap;
use std::sync::Arc;

use tributary_kafka::TableReader;
use tributary_log::Offset;

pub use checkpoints::Checkpoints;
pub use directory::{ClusterSession, SessionDirectory};
pub use nodes::Nodes;

use crate::persist::StoredSession;
use crate::session::SessionState;

/// The compacted topic of the session directory: `{group_prefix}.sessions`.
pub fn directory_topic(config: &tributary_kafka::KafkaConfig) -> String {
    format!("{}.sessions", config.group_prefix)
}

/// The compacted topic of the nodes' beats: `{group_prefix}.nodes`.
pub fn nodes_topic(config: &tributary_kafka::KafkaConfig) -> String {
    format!("{}.nodes", config.group_prefix)
}

/// Pause after a table's read error before trying again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A reader of the table `topic` from its start, tried again every
/// [`RETRY`] until it opens; `None` once `stop` is cancelled.
async fn open_table(
    config: &tributary_kafka::KafkaConfig,
    topic: &str,
    what: &'static str,
    stop: &tokio_util::sync::CancellationToken,
) -> Option<TableReader> {
    loop {
        let (config, topic) = (config.clone(), topic.to_owned());
        match tokio::task::spawn_blocking(move || TableReader::new(&config, &topic)).await {
            Ok(Ok(reader)) => return Some(reader),
            Ok(Err(e)) => tracing::error!(error = %e, "{what}: start reading"),
            Err(e) => tracing::error!(error = %e, "{what}: start reading"),
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Hands every entry `reader` reads to `apply` until `stop`; a failed read
/// is logged once and tried again every [`RETRY`].
async fn follow_table(
    reader: &TableReader,
    what: &'static str,
    stop: &tokio_util::sync::CancellationToken,
    mut apply: impl FnMut(tributary_kafka::TableEntry),
) {
    let mut failing = false;
    loop {
        let entry = tokio::select! {
            () = stop.cancelled() => return,
            entry = reader.recv() => entry,
        };
        match entry {
            Ok(entry) => {
                failing = false;
                apply(entry);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "{what}: read failed; retrying every second");
                    failing = true;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Per partition with records, the high watermark when `reader` opened:
/// the table was read whole once every one of them was reached.
fn unread_partitions(reader: &TableReader) -> HashMap<i32, i64> {
    reader
        .ends()
        .iter()
        .filter(|(_, (low, high))| high > low)
        .map(|(p, (_, high))| (*p, *high))
        .collect()
}

/// The compacted topic of retained messages by MQTT topic:
/// `{group_prefix}.retained`.
pub fn retained_topic(config: &tributary_kafka::KafkaConfig) -> String {
    format!("{}.retained", config.group_prefix)
}

/// Longest a new node reads the retained table before it serves.
const RETAINED_LOAD: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads the cluster's retained table whole: the retained messages (the
/// latest of each topic) a new node starts with.
pub async fn read_retained(
    config: &tributary_kafka::KafkaConfig,
) -> tributary_kafka::Result<Vec<tributary_log::Record>> {
    let (config, topic) = (config.clone(), retained_topic(config));
    let reader = tokio::task::spawn_blocking(move || TableReader::new(&config, &topic))
        .await
        .map_err(|e| {
            tributary_kafka::Error::NotStored(format!("read the retained table: {e}"))
        })??;
    let mut pending = unread_partitions(&reader);
    let mut latest: HashMap<String, Option<tributary_log::Record>> = HashMap::new();
    let read = async {
        while !pending.is_empty() {
            let entry = reader.recv().await?;
            if pending
                .get(&entry.partition)
                .is_some_and(|high| entry.offset + 1 >= *high)
            {
                pending.remove(&entry.partition);
            }
            let record = match entry.record() {
                None => None,
                Some(Ok(record)) => Some(record),
                Some(Err(e)) => {
                    tracing::warn!(topic = %entry.key, error = %e, "retained table: skipped an entry that is no record");
                    continue;
                }
            };
            latest.insert(entry.key, record);
        }
        Ok::<(), tributary_kafka::Error>(())
    };
    match tokio::time::timeout(RETAINED_LOAD, read).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!("the retained table was not read whole within {RETAINED_LOAD:?}; starting with what was read"),
    }
    Ok(latest.into_values().flatten().collect())
}

/// One node's part of the cluster.
pub struct Cluster {
    pub directory: Arc<SessionDirectory>,
    pub nodes: Arc<Nodes>,
    pub checkpoints: Arc<Checkpoints>,
    /// True once the node's copy of the Kafka topics reached where the
    /// topics ended when its router group was first assigned: before, a new
    /// subscription would be sent old messages as they are copied, so the
    /// node does not serve yet.
    pub caught_up: tokio::sync::watch::Sender<bool>,
    /// Where the retained consumer stands in the local log. The node serves
    /// once it has applied what the copy holds at catch-up: the copy can
    /// repeat retained messages older than the retained table the map was
    /// seeded from, and a subscriber must not be sent those meanwhile.
    pub retained_at: tokio::sync::watch::Sender<tributary_log::Offset>,
}

/// Longest a node waits to catch up before it serves anyway.
pub const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

impl Cluster {
    /// The session as the directory keeps it, its cursor translated to Kafka.
    pub fn describe(&self, state: &SessionState, connected: bool) -> ClusterSession {
        ClusterSession {
            stored: StoredSession::of(state, connected),
            kafka_cursor: state
                .reads_log()
                .then(|| self.checkpoints.to_kafka(state.cursor()))
                .flatten(),
        }
    }

    /// A session another node held, as this node resumes it: from the local
    /// offset where this node has every record the session still needs
    /// (the local log's start when no checkpoint is that old). Each
    /// subscription then counts from there too: local offsets of the
    /// other node mean nothing here.
    pub fn adopt(&self, session: ClusterSession, log_start: Offset) -> SessionState {
        let cursor = self
            .checkpoints
            .to_local(session.kafka_cursor.as_ref())
            .unwrap_or(log_start)
            .max(log_start);
        let mut stored = session.stored;
        for sub in &mut stored.subscriptions {
            sub.since = cursor.0;
        }
        stored.restore(cursor)
    }
}
