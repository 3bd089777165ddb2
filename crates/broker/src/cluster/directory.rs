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
//! - **Wills.** A connection with a will writes it, sealed as its payload
//!   would be in the log, under its epoch and the key [`will_key`] (apart
//!   from the session's, which compaction keeps to its latest state);
//!   when the connection ends its node settles the will (publishes it or
//!   not, as MQTT says) and writes so. A will never settled because its
//!   node died is taken up by another node (`crate::orphans`): the first
//!   settlement of an epoch in the topic is the one that counts, so the
//!   will is published once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tributary_kafka::{KafkaConfig, TableWriter};

use super::checkpoints::KafkaCursor;
use crate::persist::StoredSession;
use crate::session::{ClientId, Registry};

/// Longest a CONNECT waits for the directory to show its own claim.
const CLAIM_SEEN: Duration = Duration::from_secs(5);
/// Longest a node taking a session over waits for the previous holder's
/// last state.
pub const HANDOVER: Duration = Duration::from_secs(3);

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
    /// A claim's time: Unix milliseconds by its node's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at_ms: Option<u64>,
}

/// What the directory knows of one client id.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The latest claim: its epoch and node.
    pub claim: (i64, String),
    /// When the latest claim was made (Unix ms by its node's clock; `None`
    /// from a node that did not say).
    pub claim_at_ms: Option<u64>,
    /// The latest state, with the epoch and node it was written under.
    pub state: Option<(i64, String, ClusterSession)>,
}

/// The key of a client id's will in the directory topic. U+0000 cannot
/// begin a client id (MQTT strings never hold it), so no session's key is
/// ever one of these.
pub fn will_key(client_id: &ClientId) -> String {
    format!("{WILL_KEY}{client_id}")
}

const WILL_KEY: &str = "\0will:";

/// A connection's will as the directory keeps it: the log record it
/// becomes (its payload sealed), less what is stamped when it is published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterWill {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    /// 5.0 properties in wire encoding, in hex.
    pub properties: String,
    /// The payload as the log would hold it (sealed), in hex.
    pub payload: String,
    pub owner: String,
    pub device: String,
    /// Seconds after the connection's end before it is published (the 5.0
    /// Will Delay Interval, capped by the session's expiry).
    pub delay_secs: u32,
    /// When the connection ended (Unix ms), noted by its node once the will
    /// began waiting out its delay there ([`SessionDirectory::will_waiting`]):
    /// a node taking the will up from a dead node counts the delay from
    /// then. `None` until then (the delay then counts from the node's last
    /// beat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
}

impl ClusterWill {
    /// The will of `record`, published `delay_secs` after its connection ends.
    pub fn of(record: &tributary_log::Record, delay_secs: u32) -> Self {
        ClusterWill {
            topic: record.topic.clone(),
            qos: record.qos,
            retain: record.retain,
            properties: hex::encode(&record.properties),
            payload: hex::encode(&record.payload),
            owner: record.owner.clone(),
            device: record.device.clone(),
            delay_secs,
            ended_ms: None,
        }
    }

    /// The log record to publish now for `client_id`, under `message_id`.
    pub fn to_record(
        &self,
        client_id: &ClientId,
        message_id: tributary_log::MessageId,
    ) -> Result<tributary_log::Record, hex::FromHexError> {
        Ok(tributary_log::Record {
            receive_time_ms: crate::persist::unix_ms(),
            topic: self.topic.clone(),
            qos: self.qos,
            retain: self.retain,
            properties: hex::decode(&self.properties)?.into(),
            payload: hex::decode(&self.payload)?.into(),
            client_id: client_id.as_str().to_owned(),
            message_id,
            owner: self.owner.clone(),
            device: self.device.clone(),
        })
    }
}

/// One record under a [`will_key`]: a connection's will, or (`will: None`)
/// its settlement by `node`.
#[derive(Debug, Serialize, Deserialize)]
struct WillRecord {
    node: String,
    /// The epoch of the connection whose will this is.
    epoch: i64,
    will: Option<ClusterWill>,
    /// A will taken up from a dead node and given back unpublished by its
    /// taker-up, which is stopping: its settlement no longer counts, so
    /// that a live node takes it up again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    handed_back: bool,
}

/// What the directory knows of one client id's will.
#[derive(Debug, Clone, Default)]
pub struct WillEntry {
    /// The latest will, with its connection's epoch and node.
    pub will: Option<(i64, String, ClusterWill)>,
    /// The latest epoch whose will was settled, and where in its partition
    /// its first settlement is (the one that counts).
    pub settled: Option<(i64, i64)>,
}

impl WillEntry {
    /// The will nobody settled yet: its epoch, its node and the will.
    pub fn unsettled(&self) -> Option<(i64, &str, &ClusterWill)> {
        let (epoch, node, will) = self.will.as_ref()?;
        if self.settled.as_ref().is_some_and(|(s, _)| s >= epoch) {
            return None;
        }
        Some((*epoch, node, will))
    }

    /// Applies `record`, read at `offset`.
    fn apply(&mut self, record: WillRecord, offset: i64) {
        let WillRecord {
            node,
            epoch,
            will,
            handed_back,
        } = record;
        match will {
            Some(will) => {
                if self.will.as_ref().is_none_or(|(old, ..)| epoch >= *old) {
                    self.will = Some((epoch, node, will));
                    if handed_back && self.settled.is_some_and(|(s, _)| s == epoch) {
                        self.settled = None;
                    }
                }
            }
            None => {
                if self.settled.as_ref().is_none_or(|(old, _)| epoch > *old) {
                    self.settled = Some((epoch, offset));
                }
            }
        }
    }
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
    wills: Mutex<HashMap<ClientId, WillEntry>>,
    /// Per partition, the highest offset applied.
    applied: Mutex<HashMap<i32, i64>>,
    changed: Notify,
    /// This node's claims that are still the latest, by client id.
    local: Mutex<HashMap<ClientId, i64>>,
    /// Wills of this node's ended connections that it is still publishing
    /// (a delayed one waits out its delay) and has not settled yet: not
    /// orphans, although their claims left `local`.
    settling: Mutex<HashSet<(ClientId, i64)>>,
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
            wills: Mutex::new(HashMap::new()),
            applied: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            local: Mutex::new(HashMap::new()),
            settling: Mutex::new(HashSet::new()),
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
            at_ms: Some(crate::persist::unix_ms()),
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
            at_ms: None,
        };
        let value = serde_json::to_vec(&record).expect("a directory record serialises");
        let written = self.writer.put(client_id.as_str(), Some(&value));
        async move { written.await.map(|_| ()) }
    }

    /// Writes the will of this node's connection of `epoch`, for another
    /// node to publish should this one die before the connection ends.
    pub async fn put_will(
        &self,
        client_id: &ClientId,
        epoch: i64,
        will: ClusterWill,
    ) -> tributary_kafka::Result<()> {
        self.write_will(client_id, epoch, Some(will))
            .await
            .map(|_| ())
    }

    fn write_will(
        &self,
        client_id: &ClientId,
        epoch: i64,
        will: Option<ClusterWill>,
    ) -> impl std::future::Future<Output = tributary_kafka::Result<tributary_kafka::Delivered>>
           + Send
           + 'static {
        let record = WillRecord {
            node: self.node.clone(),
            epoch,
            will,
            handed_back: false,
        };
        let value = serde_json::to_vec(&record).expect("a will record serialises");
        self.writer.put(&will_key(client_id), Some(&value))
    }

    /// Notes when this node's connection of `epoch` ended, its will now
    /// waiting out its delay here: should this node die meanwhile, the node
    /// that takes the will up counts the delay from `ended_ms` rather than
    /// from this node's last beat (orphans.rs). Writes nothing when the
    /// directory does not hold that will of this node's (it was never
    /// written, or a newer connection's replaced it).
    pub async fn will_waiting(
        &self,
        client_id: &ClientId,
        epoch: i64,
        ended_ms: u64,
    ) -> tributary_kafka::Result<()> {
        let waiting = self.will_entry(client_id).and_then(|entry| {
            let (of, node, will) = entry.will?;
            (of == epoch && node == self.node).then_some(ClusterWill {
                ended_ms: Some(ended_ms),
                ..will
            })
        });
        match waiting {
            Some(will) => self
                .write_will(client_id, epoch, Some(will))
                .await
                .map(|_| ()),
            None => Ok(()),
        }
    }

    /// Notes that this node deals with the will of its ended connection of
    /// `epoch` (publishes it, perhaps after its delay), so that the orphan
    /// scan leaves it alone until [`Self::will_settled`].
    pub fn will_pending(&self, client_id: &ClientId, epoch: i64) {
        self.settling
            .lock()
            .expect("directory lock poisoned")
            .insert((client_id.clone(), epoch));
    }

    /// Writes that the will of the connection of `epoch` is settled by
    /// this node (its connection ended here and the will was dealt with).
    pub async fn will_settled(
        &self,
        client_id: &ClientId,
        epoch: i64,
    ) -> tributary_kafka::Result<()> {
        self.write_will(client_id, epoch, None).await?;
        // Until the settlement is read back an orphan scan may see the
        // will unsettled; its taking-up then loses to this earlier
        // settlement (the first of the epoch counts). One not written
        // stays pending: taken up here it would be published twice.
        self.settling
            .lock()
            .expect("directory lock poisoned")
            .remove(&(client_id.clone(), epoch));
        Ok(())
    }

    /// Settles the will of the connection of `epoch` as its taker-up; true
    /// when it is this node's settlement that counts (the first of that
    /// epoch in the topic), once read back: this node then publishes it.
    pub async fn take_up_will(&self, client_id: &ClientId, epoch: i64) -> bool {
        let at = match self.write_will(client_id, epoch, None).await {
            Ok(at) => at,
            Err(e) => {
                tracing::warn!(client_id = %client_id, error = %e, "session directory: settle a will");
                return false;
            }
        };
        let seen = tokio::time::timeout(CLAIM_SEEN, self.applied_up_to(at.partition, at.offset));
        seen.await.is_ok()
            && self
                .will_entry(client_id)
                .is_some_and(|w| w.settled == Some((epoch, at.offset)))
    }

    /// Gives back the will of `node`'s connection of `epoch`, taken up here
    /// and not yet published: this node is stopping, and another takes it
    /// up (see [`WillRecord::handed_back`]).
    pub async fn hand_back_will(
        &self,
        client_id: &ClientId,
        epoch: i64,
        node: &str,
        will: ClusterWill,
    ) -> tributary_kafka::Result<()> {
        let record = WillRecord {
            node: node.to_owned(),
            epoch,
            will: Some(will),
            handed_back: true,
        };
        let value = serde_json::to_vec(&record).expect("a will record serialises");
        self.writer.put(&will_key(client_id), Some(&value)).await?;
        Ok(())
    }

    /// What the directory knows of `client_id`'s will.
    pub fn will_entry(&self, client_id: &ClientId) -> Option<WillEntry> {
        self.wills
            .lock()
            .expect("directory lock poisoned")
            .get(client_id)
            .cloned()
    }

    /// The wills left unsettled by connections of nodes `is_gone` says are
    /// gone, and (once the directory was read whole) by this node's
    /// connections of an earlier life, killed and restarted: its claims of
    /// then are not among its live ones. Client id, epoch, node and will.
    /// Those this node is still publishing (`will_pending`) are left out.
    pub fn orphaned_wills(
        &self,
        is_gone: impl Fn(&str) -> bool,
    ) -> Vec<(ClientId, i64, String, ClusterWill)> {
        let loaded = self.is_loaded();
        // Both held at once (nothing takes `local` while holding `wills`),
        // so a scan each second copies nothing but the orphans.
        let local = self.local.lock().expect("directory lock poisoned");
        let wills = self.wills.lock().expect("directory lock poisoned");
        let settling = self.settling.lock().expect("directory lock poisoned");
        wills
            .iter()
            .filter_map(|(client_id, w)| {
                let (epoch, node, will) = w.unsettled()?;
                let gone = if node == self.node {
                    loaded
                        && local.get(client_id) != Some(&epoch)
                        && !settling.contains(&(client_id.clone(), epoch))
                } else {
                    is_gone(node)
                };
                gone.then(|| (client_id.clone(), epoch, node.to_owned(), will.clone()))
            })
            .collect()
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

    /// True once the directory was read whole.
    fn is_loaded(&self) -> bool {
        self.loading
            .lock()
            .expect("directory lock poisoned")
            .as_ref()
            .is_some_and(HashMap::is_empty)
    }

    /// Waits (at most `timeout`) until the directory was read whole once;
    /// false when it was not.
    pub async fn loaded(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if self.is_loaded() {
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
        if let Some(client_id) = entry.key.strip_prefix(WILL_KEY) {
            self.apply_will(
                ClientId::new(client_id),
                entry.value.as_deref(),
                entry.offset,
            );
        } else {
            let partition_offset = (entry.partition, entry.offset);
            let kick = self.apply_session(entry);
            self.applied(partition_offset);
            return kick;
        }
        self.applied((entry.partition, entry.offset));
        None
    }

    fn apply_will(&self, client_id: ClientId, value: Option<&[u8]>, offset: i64) {
        let mut wills = self.wills.lock().expect("directory lock poisoned");
        match value.map(serde_json::from_slice::<WillRecord>) {
            None => {
                wills.remove(&client_id);
            }
            Some(Ok(record)) => wills.entry(client_id).or_default().apply(record, offset),
            Some(Err(e)) => {
                tracing::warn!(client_id = %client_id, error = %e, "session directory: skipped a will record that is not one");
            }
        }
    }

    fn apply_session(&self, entry: tributary_kafka::TableEntry) -> Option<ClientId> {
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
                        claim_at_ms: None,
                        state: None,
                    });
                    if epoch >= e.claim.0 {
                        e.claim = (epoch, record.node.clone());
                        if record.epoch.is_none() {
                            e.claim_at_ms = record.at_ms;
                        }
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
        kick
    }

    /// Notes that every record up to `offset` of `partition` was applied.
    fn applied(&self, (partition, offset): (i32, i64)) {
        let mut applied = self.applied.lock().expect("directory lock poisoned");
        let a = applied.entry(partition).or_insert(offset);
        *a = (*a).max(offset);
        if let Some(pending) = self
            .loading
            .lock()
            .expect("directory lock poisoned")
            .as_mut()
        {
            if pending.get(&partition).is_some_and(|high| *a + 1 >= *high) {
                pending.remove(&partition);
            }
        }
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
    let Some(reader) = super::open_table(&config, &topic, "session directory", &stop).await else {
        return;
    };
    // Partitions with records to read before the directory is whole.
    let pending = super::unread_partitions(&reader);
    *directory.loading.lock().expect("directory lock poisoned") = Some(pending);
    directory.changed.notify_waiters();
    super::follow_table(&reader, "session directory", &stop, |entry| {
        if let Some(client_id) = directory.apply(entry) {
            registry.taken_elsewhere(&client_id);
        }
        directory.changed.notify_waiters();
    })
    .await;
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

    fn will(payload: &str) -> ClusterWill {
        ClusterWill {
            topic: "t".into(),
            qos: 1,
            retain: false,
            properties: String::new(),
            payload: hex::encode(payload),
            owner: String::new(),
            device: String::new(),
            delay_secs: 0,
            ended_ms: None,
        }
    }

    fn record(node: &str, epoch: i64, will: Option<ClusterWill>) -> WillRecord {
        WillRecord {
            node: node.into(),
            epoch,
            will,
            handed_back: false,
        }
    }

    /// A will given back by its taker-up is unsettled again, and the next
    /// settlement of its epoch is the one that counts; a will record that
    /// is not given back settles nothing anew.
    #[test]
    fn a_will_given_back_is_taken_up_again() {
        let mut entry = WillEntry::default();
        entry.apply(record("a", 5, Some(will("gone"))), 6);
        entry.apply(record("b", 5, None), 7);
        assert!(entry.unsettled().is_none());
        entry.apply(record("a", 5, Some(will("gone"))), 8);
        assert!(entry.unsettled().is_none(), "only a hand-back unsettles");
        let given_back = WillRecord {
            handed_back: true,
            ..record("a", 5, Some(will("gone")))
        };
        entry.apply(given_back, 9);
        assert_eq!(entry.unsettled().map(|(e, n, _)| (e, n)), Some((5, "a")));
        entry.apply(record("c", 5, None), 10);
        entry.apply(record("b", 5, None), 11);
        assert_eq!(entry.settled, Some((5, 10)));
        // A hand-back of an older connection's will changes nothing.
        entry.apply(record("a", 9, Some(will("later"))), 12);
        entry.apply(record("a", 9, None), 13);
        let stale = WillRecord {
            handed_back: true,
            ..record("a", 5, Some(will("gone")))
        };
        entry.apply(stale, 14);
        assert_eq!(entry.settled, Some((9, 13)));
        assert!(entry.unsettled().is_none());
    }

    /// The note of when a connection ended carries its will again: the will
    /// keeps its settlement state and gains the time; a record written
    /// before the note existed reads as a will without it.
    #[test]
    fn a_noted_will_keeps_its_settlement_and_gains_its_end() {
        let mut entry = WillEntry::default();
        entry.apply(record("a", 5, Some(will("gone"))), 6);
        let noted = ClusterWill {
            ended_ms: Some(1_700_000_000_000),
            ..will("gone")
        };
        entry.apply(record("a", 5, Some(noted.clone())), 7);
        let (epoch, node, kept) = entry.unsettled().expect("still unsettled");
        assert_eq!(
            (epoch, node, kept.ended_ms),
            (5, "a", Some(1_700_000_000_000))
        );
        entry.apply(record("a", 5, None), 8);
        entry.apply(record("a", 5, Some(noted)), 9);
        assert!(
            entry.unsettled().is_none(),
            "a late note settles nothing anew"
        );
        let old: ClusterWill = serde_json::from_str(
            r#"{"topic":"t","qos":1,"retain":false,"properties":"","payload":"","owner":"","device":"","delay_secs":3}"#,
        )
        .expect("an older record reads");
        assert_eq!(old.ended_ms, None);
        assert!(!serde_json::to_string(&will("x"))
            .unwrap()
            .contains("ended_ms"));
    }

    /// A will stays unsettled until a settlement of its epoch (or a later
    /// one) is read; the first settlement of an epoch is the one that counts.
    #[test]
    fn a_will_is_settled_once_by_the_first_settlement_of_its_epoch() {
        let mut entry = WillEntry::default();
        entry.apply(record("a", 5, Some(will("gone"))), 6);
        assert_eq!(entry.unsettled().map(|(e, n, _)| (e, n)), Some((5, "a")));
        // A settlement of an older connection settles nothing newer.
        entry.apply(record("a", 4, None), 7);
        assert!(entry.unsettled().is_some());
        entry.apply(record("a", 5, None), 8);
        entry.apply(record("a", 5, None), 9);
        entry.apply(record("c", 5, None), 10);
        assert_eq!(entry.unsettled().map(|(e, ..)| e), None);
        assert_eq!(
            entry.settled,
            Some((5, 8)),
            "the first counts, also from one node"
        );
        // The next connection's will is its own.
        entry.apply(record("c", 9, Some(will("gone again"))), 11);
        assert_eq!(entry.unsettled().map(|(e, n, _)| (e, n)), Some((9, "c")));
    }

    /// A will reads back as the record it was made from, stamped anew.
    #[test]
    fn a_will_in_the_directory_becomes_the_record_it_was_made_from() {
        let made = tributary_log::Record {
            receive_time_ms: 1,
            topic: "tributary/v1/d/status".into(),
            qos: 1,
            retain: true,
            properties: bytes::Bytes::from_static(&[0x01, 0x01]),
            payload: bytes::Bytes::from_static(b"sealed \x00\xff"),
            client_id: "d".into(),
            message_id: tributary_log::MessageId(1),
            owner: "ann".into(),
            device: "d".into(),
        };
        let kept: ClusterWill =
            serde_json::from_slice(&serde_json::to_vec(&ClusterWill::of(&made, 3)).unwrap())
                .unwrap();
        assert_eq!(kept.delay_secs, 3);
        let back = kept
            .to_record(&ClientId::new("d"), tributary_log::MessageId(2))
            .unwrap();
        assert_eq!(
            (
                back.topic,
                back.qos,
                back.retain,
                back.properties,
                back.payload
            ),
            (
                made.topic,
                made.qos,
                made.retain,
                made.properties,
                made.payload
            )
        );
        assert_eq!(
            (back.owner, back.device, back.client_id),
            (made.owner, made.device, made.client_id)
        );
        assert_eq!(back.message_id, tributary_log::MessageId(2));
    }
}
