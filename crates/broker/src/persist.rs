//! The session file: every persistent session's subscriptions and expiry,
//! written atomically whenever they change, so that a broker restart (even
//! after SIGKILL) brings them back. The cursor of each session is not here:
//! it is the log consumer offset `session/{client id}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tributary_log::Offset;
use tributary_mqtt::{PacketId, ProtocolVersion};

use crate::retained::write_atomically;
use crate::session::{CarriedFlow, ClientId, SessionState, Subscription};

/// What survives a restart of one persistent session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSession {
    pub client_id: ClientId,
    /// Protocol level (4 or 5) of the last connection.
    pub protocol: u8,
    pub expiry_secs: u32,
    pub subscriptions: Vec<Subscription>,
    /// Unix milliseconds of the last disconnect; `None` while connected.
    pub disconnected_at_ms: Option<u64>,
    /// Packet ids of the client's QoS 2 publishes stored and answered with
    /// PUBREC, awaiting PUBREL: a resend of one after a restart, or on
    /// another node, is answered again and not stored twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound_qos2: Vec<PacketId>,
    /// QoS 2 deliveries to the client in flight: carried over, so that a
    /// message the client already has is not sent again as a new one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound_qos2: Vec<CarriedFlow>,
}

impl StoredSession {
    pub fn of(state: &SessionState, connected: bool) -> Self {
        StoredSession {
            client_id: state.client_id.clone(),
            protocol: state.protocol.level(),
            expiry_secs: state.expiry_secs,
            subscriptions: state.subscriptions.values().cloned().collect(),
            disconnected_at_ms: (!connected).then(unix_ms),
            inbound_qos2: state.awaiting_pubrel().collect(),
            outbound_qos2: state.flows_to_carry(),
        }
    }

    /// True when the session was offline longer than its expiry.
    pub fn expired(&self) -> bool {
        self.disconnected_at_ms
            .is_some_and(|at| unix_ms().saturating_sub(at) >= u64::from(self.expiry_secs) * 1000)
    }

    /// The in-memory session, resuming delivery at `cursor`. A session that
    /// was connected when the broker died counts as disconnected now.
    pub fn restore(self, cursor: Offset) -> SessionState {
        let protocol = if self.protocol == 5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V311
        };
        let mut state = SessionState::new(self.client_id, protocol, cursor);
        state.persistent = true;
        state.expiry_secs = self.expiry_secs;
        state.subscriptions = self
            .subscriptions
            .into_iter()
            .map(|s| (s.filter.clone(), s))
            .collect();
        state.restore_qos2(self.inbound_qos2, self.outbound_qos2);
        let offline_for = self
            .disconnected_at_ms
            .map_or(0, |at| unix_ms().saturating_sub(at));
        let now = Instant::now();
        state.disconnected_at = Some(
            now.checked_sub(Duration::from_millis(offline_for))
                .unwrap_or(now),
        );
        state
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The session file and the in-memory index it is written from.
///
/// Connections hold their session's state for as long as they live, so the
/// file is written from this index (updated by each connection) rather than
/// by locking every session.
pub struct SessionFile {
    path: PathBuf,
    index: Mutex<BTreeMap<ClientId, StoredSession>>,
}

impl SessionFile {
    pub fn new(data_dir: &Path) -> Self {
        SessionFile {
            path: data_dir.join("sessions.json"),
            index: Mutex::new(BTreeMap::new()),
        }
    }

    /// Reads the file (an absent file means no sessions) and fills the index.
    pub fn load(&self) -> std::io::Result<Vec<StoredSession>> {
        let sessions: Vec<StoredSession> = match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut index = self.index.lock().expect("session index lock poisoned");
        *index = sessions
            .iter()
            .map(|s| (s.client_id.clone(), s.clone()))
            .collect();
        Ok(sessions)
    }

    /// True when the file holds a session for `client_id`.
    pub fn contains(&self, client_id: &ClientId) -> bool {
        self.index
            .lock()
            .expect("session index lock poisoned")
            .contains_key(client_id)
    }

    /// Records a session's new shape (or its removal, with `None`) and
    /// writes the file before returning.
    pub fn update(
        &self,
        client_id: &ClientId,
        session: Option<StoredSession>,
    ) -> std::io::Result<()> {
        let mut index = self.index.lock().expect("session index lock poisoned");
        let changed = match &session {
            Some(s) => index.get(client_id) != Some(s),
            None => index.contains_key(client_id),
        };
        if !changed {
            return Ok(());
        }
        match session {
            Some(s) => index.insert(client_id.clone(), s),
            None => index.remove(client_id),
        };
        // Written under the lock so that concurrent updates reach the disk in order.
        let sessions: Vec<&StoredSession> = index.values().collect();
        let bytes = serde_json::to_vec_pretty(&sessions).map_err(std::io::Error::other)?;
        write_atomically(&self.path, &bytes)
    }
}
