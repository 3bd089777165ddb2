//! Which nodes of the cluster are alive: every node writes a beat to a
//! compacted topic (`{group_prefix}.nodes`, keyed by node name) every
//! [`BEAT`] and follows the topic. A node whose beat this node has not read
//! for [`DEAD_AFTER`] is taken for dead.
//!
//! - Judged by this node's own clock (when it read the beat), never by the
//!   time written in the beat, so nodes whose clocks disagree do not take
//!   each other for dead.
//! - Only while this node reads its own beats back: a node behind in
//!   reading, or cut off from Kafka, judges nobody.
//!
//! What a dead node leaves behind, the wills of its connections, is taken
//! up by the lowest-named live node (`crate::orphans`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tributary_kafka::{KafkaConfig, TableWriter};

use crate::persist::unix_ms;

/// How often a node writes its beat.
pub const BEAT: Duration = Duration::from_secs(1);
/// How long without a beat read before a node is taken for dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(6);
/// This node's own beat must have been read back this recently for it to
/// judge others (its view of the topic is current).
const OWN_BEAT_FRESH: Duration = Duration::from_secs(3);

/// One beat as the topic keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Beat {
    /// Unix milliseconds by the writer's clock: when a dead node was last
    /// heard of, as its wills' delay counts from it.
    at_ms: u64,
}

/// A node as this node last heard of it.
#[derive(Debug, Clone, Copy)]
struct Heard {
    /// When this node read its latest beat.
    read_at: Instant,
    /// The beat's own time (the writer's clock).
    at_ms: u64,
}

pub struct Nodes {
    node: String,
    writer: TableWriter,
    heard: Mutex<HashMap<String, Heard>>,
    /// When this node had read the topic whole once: a node never heard of
    /// since counts as heard of then.
    loaded_at: std::sync::OnceLock<Instant>,
}

impl Nodes {
    pub fn new(config: &KafkaConfig, topic: &str, node: &str) -> tributary_kafka::Result<Self> {
        Ok(Nodes {
            node: node.to_owned(),
            writer: TableWriter::new(config, topic)?,
            heard: Mutex::new(HashMap::new()),
            loaded_at: std::sync::OnceLock::new(),
        })
    }

    fn heard(&self) -> std::sync::MutexGuard<'_, HashMap<String, Heard>> {
        self.heard.lock().expect("nodes lock poisoned")
    }

    /// True when this node's view is current enough to judge others: the
    /// topic was read whole and its own latest beat was read back lately.
    fn view_is_current(&self, now: Instant) -> bool {
        self.loaded_at.get().is_some()
            && self
                .heard()
                .get(&self.node)
                .is_some_and(|own| now.duration_since(own.read_at) < OWN_BEAT_FRESH)
    }

    /// When this node last had news of `node` (or began to listen).
    fn last_news(&self, node: &str) -> Option<Instant> {
        let loaded_at = *self.loaded_at.get()?;
        let read_at = self.heard().get(node).map(|h| h.read_at);
        Some(read_at.map_or(loaded_at, |read| read.max(loaded_at)))
    }

    /// True when `node` is taken for dead: another node, not heard of for
    /// [`DEAD_AFTER`], judged while this node's view is current.
    pub fn is_dead(&self, node: &str) -> bool {
        let now = Instant::now();
        node != self.node
            && self.view_is_current(now)
            && self
                .last_news(node)
                .is_some_and(|news| now.duration_since(news) >= DEAD_AFTER)
    }

    /// True when this node is the one to take up what dead nodes left: the
    /// lowest-named of the nodes alive in its view (itself included).
    pub fn is_undertaker(&self) -> bool {
        let now = Instant::now();
        if !self.view_is_current(now) {
            return false;
        }
        let heard = self.heard();
        heard
            .iter()
            .filter(|(_, h)| now.duration_since(h.read_at) < DEAD_AFTER)
            .map(|(name, _)| name.as_str())
            .chain(std::iter::once(self.node.as_str()))
            .min()
            == Some(self.node.as_str())
    }

    /// Unix milliseconds of `node`'s latest beat this node read (by that
    /// node's clock), if any.
    pub fn last_beat_ms(&self, node: &str) -> Option<u64> {
        self.heard().get(node).map(|h| h.at_ms)
    }

    fn apply(&self, entry: &tributary_kafka::TableEntry) {
        let mut heard = self.heard();
        match entry.value.as_deref().map(serde_json::from_slice::<Beat>) {
            None => {
                heard.remove(&entry.key);
            }
            Some(Ok(beat)) => {
                heard.insert(
                    entry.key.clone(),
                    Heard {
                        read_at: Instant::now(),
                        at_ms: beat.at_ms,
                    },
                );
            }
            Some(Err(e)) => {
                tracing::warn!(node = %entry.key, error = %e, "nodes table: skipped a record that is no beat");
            }
        }
    }
}

/// Writes this node's beat every [`BEAT`] until `stop`; then removes it, so
/// that the others stop counting this node among the live ones at once.
pub async fn beat(nodes: Arc<Nodes>, stop: CancellationToken) {
    let mut failing = false;
    let mut every = tokio::time::interval(BEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        let beat = serde_json::to_vec(&Beat { at_ms: unix_ms() }).expect("a beat serialises");
        let written = tokio::time::timeout(BEAT, nodes.writer.put(&nodes.node, Some(&beat))).await;
        match written {
            Ok(Ok(_)) => failing = false,
            Ok(Err(e)) if !failing => {
                tracing::warn!(error = %e, "nodes table: this node's beat was not written; trying every second");
                failing = true;
            }
            Err(_) if !failing => {
                tracing::warn!(
                    "nodes table: this node's beat took over {BEAT:?}; trying every second"
                );
                failing = true;
            }
            _ => {}
        }
    }
    match tokio::time::timeout(2 * BEAT, nodes.writer.put(&nodes.node, None)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "nodes table: remove this node's beat"),
        Err(_) => tracing::warn!("nodes table: this node's beat was not removed in time; the others take it for gone 6 s after its last beat"),
    }
}

/// Reads the nodes topic from its start and follows it until `stop`.
pub async fn follow(
    nodes: Arc<Nodes>,
    config: KafkaConfig,
    topic: String,
    stop: CancellationToken,
) {
    let Some(reader) = super::open_table(&config, &topic, "nodes table", &stop).await else {
        return;
    };
    let mut unread = super::unread_partitions(&reader);
    let loaded = || {
        nodes.loaded_at.get_or_init(Instant::now);
    };
    if unread.is_empty() {
        loaded();
    }
    super::follow_table(&reader, "nodes table", &stop, |entry| {
        nodes.apply(&entry);
        let high = unread.get(&entry.partition);
        if high.is_some_and(|high| entry.offset + 1 >= *high) {
            unread.remove(&entry.partition);
            if unread.is_empty() {
                loaded();
            }
        }
    })
    .await;
}
