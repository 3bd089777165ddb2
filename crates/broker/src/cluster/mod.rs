//! What the nodes of a cluster share beyond the log, on Kafka: the session
//! directory (`directory`, a compacted topic), and each node's checkpoints
//! that translate a session's cursor between its local log and Kafka
//! (`checkpoints`). With the embedded log there is no cluster and none of
//! this runs.

pub mod checkpoints;
pub mod directory;

use std::sync::Arc;

use tributary_log::Offset;

pub use checkpoints::Checkpoints;
pub use directory::{ClusterSession, SessionDirectory};

use crate::persist::StoredSession;
use crate::session::SessionState;

/// The compacted topic of the session directory: `{group_prefix}.sessions`.
pub fn directory_topic(config: &tributary_kafka::KafkaConfig) -> String {
    format!("{}.sessions", config.group_prefix)
}

/// One node's part of the cluster.
pub struct Cluster {
    pub directory: Arc<SessionDirectory>,
    pub checkpoints: Arc<Checkpoints>,
}

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
