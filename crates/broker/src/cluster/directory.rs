//! The cluster-wide session directory: a compacted Kafka topic keyed by
//! session key (`ClientId`), which every node reads whole and follows.
//!
//! - **Claims.** A CONNECT writes a claim for its client id; the claim's
//!   Kafka offset is its epoch. Every node holding a connection for that
//!   client id under an older epoch closes it (5.0: DISCONNECT 0x8E), so a
//!   client id is connected on one node at a time.
//! - **State.** The holder writes the session's shape (protocol,
//!   expiry, subscriptions) and where it stands in Kafka ([`KafkaCursor`])
//!   under its epoch: at connect, on (un)subscribe, about once a second
//!   while its cursor moves, and when the connection ends. A state written
//!   under an older epoch than the directory's latest state loses, so a
//!   stale node cannot overwrite a newer holder's session.
//! - **Hand-over.** A node taking a session over waits (at most
//!   `HANDOVER`) for the previous holder's last state, then resumes from
//!   it. When the previous node was killed, the last state it wrote stands
//!   (its cursor is at most about a second old: records are sent again,
//!   none is lost).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tributary_kafka::{KafkaConfig, TableReader, TableWriter};

use super::checkpoints::KafkaCursor;
use crate::persist::StoredSession;
use crate::session::{ClientId, Registry};

/// Longest a CONNECT waits for the directory to show its own claim.
const CLAIM_SEEN: Duration = Duration::from_secs(5);
/// Longest a node taking a session over waits for the previous holder's
/// last state.
pub const HANDOVER: Duration = Duration::from_secs(3);
/// Pause after a read error before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// A session as the directory keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSession {
    #[serde(flatten)]
    pub stored: StoredSession,
    /// Where the session stands in Kafka; `None` when it reads nothing or
    /// its node could not say (the next node then starts from its log's
    /// start for it).
    pub kafka_cursor: Option<KafkaCursor>,
}

/// One record of the directory topic.
#[derive(Debug, Serialize, Deserialize)]
struct DirRecord {
    node: String,
    /// The epoch a state is written under; `None` for a claim, whose epoch
    /// is its own offset.
    epoch: Option<i64>,
    session: Option<ClusterSession>,
}

/// What the directory knows of one client id.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The latest claim: its epoch and node.
    pub claim: (i64, String),
    /// The latest state, with the epoch and node it was written under.
    pub state: Option<(i64, String, ClusterSession)>,
}

/// Why a claim could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("the session directory in Kafka: {0}")]
    Kafka(#[from] tributary_kafka::Error),
    #[error("the session directory did not show the claim within {0:?}")]
    NotSeen(Duration),
    #[error("another connection claimed the client id meanwhile")]
    Superseded,
}

pub struct SessionDirectory {
    node: String,
    writer: TableWriter,
    entries: Mutex<HashMap<ClientId, Entry>>,
    /// Per partition, the highest offset applied.
    applied: Mutex<HashMap<i32, i64>>,
    changed: Notify,
    /// This node's claims that are still the latest, by client id.
    local: Mutex<HashMap<ClientId, i64>>,
    /// Per partition, the high watermark when reading began; emptied once
    /// the directory was read up to them (`loaded`).
    loading: Mutex<Option<HashMap<i32, i64>>>,
}

impl SessionDirectory {
    pub fn new(config: &KafkaConfig, topic: &str, node: &str) -> tributary_kafka::Result<Self> {
        Ok(SessionDirectory {
            node: node.to_owned(),
            writer: TableWriter::new(config, topic)?,
            entries: Mutex::new(HashMap::new()),
            applied: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            local: Mutex::new(HashMap::new()),
            loading: Mutex::new(None),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Claims `client_id` for this node; returns the claim's epoch and what
    /// the directory knows of the client id once it has read the claim back
    /// (so every earlier write of the key is applied): the latest claim is
    /// this one, the latest state an earlier holder's.
    pub async fn claim(&self, client_id: &ClientId) -> Result<(i64, Option<Entry>), ClaimError> {
        let record = DirRecord {
            node: self.node.clone(),
            epoch: None,
            session: None,
        };
        let value = serde_json::to_vec(&record).expect("a directory record serialises");
        let at = self.writer.put(client_id.as_str(), Some(&value)).await?;
        self.local
            .lock()
            .expect("directory lock poisoned")
            .insert(client_id.clone(), at.offset);
        let seen = tokio::time::timeout(CLAIM_SEEN, self.applied_up_to(at.partition, at.offset));
        if seen.await.is_err() {
            self.let_go(client_id, at.offset);
            return Err(ClaimError::NotSeen(CLAIM_SEEN));
        }
        // Every earlier write of the key is applied now; states are written
        // under their claim, so none is ours yet.
        let known = self.entry(client_id);
        if known.as_ref().is_some_and(|e| e.claim.0 > at.offset) {
            self.let_go(client_id, at.offset);
            return Err(ClaimError::Superseded);
        }
        Ok((at.offset, known))
    }

    /// Waits (at most `HANDOVER`) until the session's latest state was
    /// written by its holder `node` after it let go of the session (or by
    /// anyone under a later epoch), and returns the latest state.
    pub async fn handed_over(
        &self,
        client_id: &ClientId,
        node: &str,
    ) -> Option<(i64, String, ClusterSession)> {
        let released = |e: &Entry| {
            e.state
                .as_ref()
                .is_some_and(|(_, by, s)| by != node || s.stored.disconnected_at_ms.is_some())
        };
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if self.entry(client_id).as_ref().is_some_and(released) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(HANDOVER, wait).await.is_err() {
            tracing::info!(client_id = %client_id, previous = node, "session hand-over: no last state from the previous node in time; resuming from its latest state");
        }
        self.entry(client_id).and_then(|e| e.state)
    }

    /// Hands the session's state, written under `epoch`, to Kafka now
    /// (behind every earlier write of this node); the future resolves once
    /// Kafka has it.
    pub fn put_state(
        &self,
        client_id: &ClientId,
        epoch: i64,
        session: ClusterSession,
    ) -> impl std::future::Future<Output = tributary_kafka::Result<()>> + Send + 'static {
        let record = DirRecord {
            node: self.node.clone(),
            epoch: Some(epoch),
            session: Some(session),
        };
        let value = serde_json::to_vec(&record).expect("a directory record serialises");
        let written = self.writer.put(client_id.as_str(), Some(&value));
        async move { written.await.map(|_| ()) }
    }

    /// Removes the session from the directory (a clean session ended, or
    /// a persistent one expired), when `epoch` is still the latest claim.
    pub async fn forget(&self, client_id: &ClientId, epoch: i64) {
        if self.entry(client_id).is_some_and(|e| e.claim.0 > epoch) {
            return;
        }
        if let Err(e) = self.writer.put(client_id.as_str(), None).await {
            tracing::warn!(client_id = %client_id, error = %e, "remove a session from the directory");
        }
    }

    /// The latest claim's epoch and node.
    pub fn entry(&self, client_id: &ClientId) -> Option<Entry> {
        self.entries
            .lock()
            .expect("directory lock poisoned")
            .get(client_id)
            .cloned()
    }

    async fn applied_up_to(&self, partition: i32, offset: i64) {
        loop {
            let notified = self.changed.notified();
            let applied = self
                .applied
                .lock()
                .expect("directory lock poisoned")
                .get(&partition)
                .copied();
            if applied.is_some_and(|a| a >= offset) {
                return;
            }
            notified.await;
        }
    }

    /// Waits (at most `timeout`) until the directory was read whole once;
    /// false when it was not.
    pub async fn loaded(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                let whole = self
                    .loading
                    .lock()
                    .expect("directory lock poisoned")
                    .as_ref()
                    .is_some_and(HashMap::is_empty);
                if whole {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Where a new node's copy of the Kafka topics must start so that every
    /// persistent session in the directory could resume on it: per
    /// partition, the oldest position a session still needs (`None`: from
    /// the partition's start, for a session whose position in it is not
    /// known). Empty when no session reads anything: the node then starts
    /// at the end.
    pub fn resume_points(&self) -> Vec<Option<KafkaCursor>> {
        let entries = self.entries.lock().expect("directory lock poisoned");
        entries
            .values()
            .filter_map(|e| e.state.as_ref())
            .map(|(_, _, session)| session)
            .filter(|s| {
                !s.stored.expired() && s.stored.subscriptions.iter().any(|sub| !sub.is_shared())
            })
            .map(|s| s.kafka_cursor.clone())
            .collect()
    }

    /// Applies one record read from the topic; returns the client id another
    /// node claimed after this node's last claim of it (its connection here
    /// closes and a will waiting out its delay here is not sent).
    fn apply(&self, entry: tributary_kafka::TableEntry) -> Option<ClientId> {
        let client_id = ClientId::new(entry.key);
        let mut kick = None;
        {
            let mut entries = self.entries.lock().expect("directory lock poisoned");
            match entry
                .value
                .as_deref()
                .map(serde_json::from_slice::<DirRecord>)
            {
                None => {
                    entries.remove(&client_id);
                }
                Some(Err(e)) => {
                    tracing::warn!(client_id = %client_id, offset = entry.offset, error = %e, "session directory: skipped a record that is not one");
                }
                Some(Ok(record)) => {
                    let epoch = record.epoch.unwrap_or(entry.offset);
                    let e = entries.entry(client_id.clone()).or_insert_with(|| Entry {
                        claim: (epoch, record.node.clone()),
                        state: None,
                    });
                    if epoch >= e.claim.0 {
                        e.claim = (epoch, record.node.clone());
                    }
                    if let Some(session) = record.session {
                        let newer = e.state.as_ref().is_none_or(|(old, ..)| epoch >= *old);
                        if newer {
                            e.state = Some((epoch, record.node.clone(), session));
                        }
                    }
                    if record.node != self.node && record.epoch.is_none() {
                        // Another node's claim: unless this node holds a
                        // later one, what it has of the session lets go.
                        let mut local = self.local.lock().expect("directory lock poisoned");
                        if local.get(&client_id).is_none_or(|mine| *mine < epoch) {
                            local.remove(&client_id);
                            kick = Some(client_id.clone());
                        }
                    }
                }
            }
        }
        let mut applied = self.applied.lock().expect("directory lock poisoned");
        let a = applied.entry(entry.partition).or_insert(entry.offset);
        *a = (*a).max(entry.offset);
        if let Some(pending) = self
            .loading
            .lock()
            .expect("directory lock poisoned")
            .as_mut()
        {
            if pending
                .get(&entry.partition)
                .is_some_and(|high| *a + 1 >= *high)
            {
                pending.remove(&entry.partition);
            }
        }
        kick
    }

    /// True when another node claimed `client_id` after this node's claim
    /// `epoch`.
    pub fn claimed_after(&self, client_id: &ClientId, epoch: i64) -> bool {
        self.entry(client_id)
            .is_some_and(|e| e.claim.0 > epoch && e.claim.1 != self.node)
    }

    /// This node no longer holds `client_id` under `epoch` (its
    /// connection ended).
    pub fn let_go(&self, client_id: &ClientId, epoch: i64) {
        let mut local = self.local.lock().expect("directory lock poisoned");
        if local.get(client_id) == Some(&epoch) {
            local.remove(client_id);
        }
    }
}

/// Reads the directory topic from its start and follows it until `stop`,
/// closing local connections whose client id another node claimed.
pub async fn follow(
    directory: Arc<SessionDirectory>,
    config: KafkaConfig,
    topic: String,
    registry: Arc<Registry>,
    stop: CancellationToken,
) {
    let reader = loop {
        let (config, topic) = (config.clone(), topic.clone());
        match tokio::task::spawn_blocking(move || TableReader::new(&config, &topic)).await {
            Ok(Ok(reader)) => break reader,
            Ok(Err(e)) => tracing::error!(error = %e, "session directory: start reading"),
            Err(e) => tracing::error!(error = %e, "session directory: start reading"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    };
    // Partitions with records to read before the directory is whole.
    let pending = reader
        .ends()
        .iter()
        .filter(|(_, (low, high))| high > low)
        .map(|(p, (_, high))| (*p, *high))
        .collect();
    *directory.loading.lock().expect("directory lock poisoned") = Some(pending);
    directory.changed.notify_waiters();
    let mut failing = false;
    loop {
        let entry = tokio::select! {
            () = stop.cancelled() => return,
            entry = reader.recv() => entry,
        };
        match entry {
            Ok(entry) => {
                failing = false;
                if let Some(client_id) = directory.apply(entry) {
                    registry.taken_elsewhere(&client_id);
                }
                directory.changed.notify_waiters();
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "session directory: read failed; retrying every second");
                    failing = true;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{CarriedFlow, SessionState};
    use tributary_log::Offset;
    use tributary_mqtt::ProtocolVersion;

    /// The directory's record flattens the stored session into its own;
    /// QoS 2 flows (message ids too wide for a JSON number there) read back.
    #[test]
    fn a_session_with_qos2_flows_reads_back_from_the_file_and_the_directory() {
        let mut state = SessionState::new(ClientId::new("c"), ProtocolVersion::V5, Offset(0));
        state.persistent = true;
        let carried = CarriedFlow {
            packet_id: 9,
            message_id: tributary_log::MessageId(u128::MAX - 1),
            released: true,
        };
        state.restore_qos2(vec![3], vec![carried]);
        let stored = StoredSession::of(&state, false);
        let file: StoredSession =
            serde_json::from_slice(&serde_json::to_vec(&stored).unwrap()).unwrap();
        assert_eq!(file, stored);
        let directory = ClusterSession {
            stored: stored.clone(),
            kafka_cursor: None,
        };
        let read: ClusterSession =
            serde_json::from_slice(&serde_json::to_vec(&directory).unwrap()).unwrap();
        assert_eq!(read, directory);
        let back = read.stored.restore(Offset(0));
        assert_eq!(back.awaiting_pubrel().collect::<Vec<_>>(), vec![3]);
        assert_eq!(back.carried(), &[carried]);
    }
}
