//! Sessions: what the broker remembers about a client id between and during
//! connections, and the registry that hands a session to exactly one
//! connection at a time.
//!
//! A session's queue of undelivered messages is not a copy: it is the log
//! itself, from the session's cursor on. The connection that owns a session
//! reads the log from `read_pos`, delivers what matches the subscriptions, and
//! commits the cursor (the lowest offset not yet fully acknowledged) as the
//! log consumer `session/{client id}`. A persistent session therefore keeps
//! its queue across disconnects and broker restarts for free. Its cursor
//! does not hold log retention back (`Broker::open`): a session away past
//! `log.max_bytes` or `max_age` loses its own oldest messages rather than
//! stop every publisher. Which records are for which connected session is
//! the router's work (`router`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
// Tokio's clock, not std's: expiry then follows paused time in tests like
// every other timer of the broker (keep-alive, will delay).
use tokio::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedMappedMutexGuard, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;
use tributary_log::{MessageId, Offset, Record};
use tributary_mqtt::{PacketId, ProtocolVersion, QoS, SubscriptionOptions};

/// Start of the log consumer name of every session's cursor.
pub const CONSUMER_PREFIX: &str = "session/";

/// A client identifier as the session registry keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientId(pub Arc<str>);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The start of an anonymous client's session key. Sessions that older
/// versions saved under a bare anonymous client id are not resumed (they
/// expire as any session does).
pub const ANONYMOUS_PREFIX: &str = "anon:";

impl ClientId {
    /// The session key of a client: its MQTT client id within its
    /// identity, so that nobody can take over (or read) another identity's
    /// session by choosing its client id. Anonymous clients get a prefix of
    /// their own (`anon:`), so that an anonymous client id such as
    /// `d:x:c1` cannot name a device's session either: the prefixes `d:`,
    /// `o:`, `s:`, `a:` and `anon:` differ in their first two characters.
    pub fn for_identity(
        identity: Option<&tributary_accounts::Identity>,
        client_id: &str,
    ) -> ClientId {
        match identity {
            None => ClientId::new(format!("{ANONYMOUS_PREFIX}{client_id}")),
            Some(tributary_accounts::Identity::Device { device, .. }) => {
                ClientId::new(format!("d:{device}:{client_id}"))
            }
            Some(tributary_accounts::Identity::Owner { owner }) => {
                ClientId::new(format!("o:{owner}:{client_id}"))
            }
            Some(tributary_accounts::Identity::Service { service, .. }) => {
                ClientId::new(format!("s:{service}:{client_id}"))
            }
            Some(tributary_accounts::Identity::Admin { admin }) => {
                ClientId::new(format!("a:{admin}:{client_id}"))
            }
        }
    }

    /// The device whose session this is, for keys made by `for_identity`.
    pub fn device(&self) -> Option<&str> {
        self.account("d:")
    }

    /// The service whose session this is, for keys made by `for_identity`.
    pub fn service(&self) -> Option<&str> {
        self.account("s:")
    }

    /// The account name in a key `{prefix}{name}:{client id}`. Account
    /// names never contain ':', so the first one ends the name.
    fn account(&self, prefix: &str) -> Option<&str> {
        self.0
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(':'))
            .map(|(name, _)| name)
    }

    /// One allocation shared by the connection, the registry and the session.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        ClientId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The log consumer name under which the session's cursor is committed.
    pub fn consumer_name(&self) -> String {
        format!("{CONSUMER_PREFIX}{}", self.0)
    }
}

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub filter: String,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 5.0 subscription identifier, sent back with each matching message.
    pub identifier: Option<u32>,
    /// The log end offset when the subscription was made: records before it
    /// were published before the subscription existed and are not delivered.
    pub since: u64,
}

impl Subscription {
    /// True for `$share/{group}/{filter}` subscriptions.
    pub fn is_shared(&self) -> bool {
        self.filter.starts_with("$share/")
    }

    /// The shared filters among `subscriptions`.
    pub fn shared_keys<'a>(
        subscriptions: impl IntoIterator<Item = &'a Subscription>,
    ) -> Vec<String> {
        subscriptions
            .into_iter()
            .filter(|s| s.is_shared())
            .map(|s| s.filter.clone())
            .collect()
    }

    pub fn new(
        filter: String,
        options: SubscriptionOptions,
        identifier: Option<u32>,
        since: Offset,
    ) -> Self {
        Subscription {
            filter,
            qos: options.qos as u8,
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            identifier,
            since: since.0,
        }
    }
}

/// Where an outbound QoS 1/2 message stands in its acknowledgement flow,
/// named for the packet it waits for.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundState {
    /// QoS 1 sent, waiting for PUBACK.
    ExpectPubAck,
    /// QoS 2 sent, waiting for PUBREC.
    ExpectPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    ExpectPubComp,
}

/// An outbound message not yet fully acknowledged.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The log offset it came from; `None` for retained messages sent on
    /// subscribe, which do not hold the session cursor back.
    pub offset: Option<Offset>,
    pub state: OutboundState,
    /// Kept to resend (with DUP) when the client reconnects.
    pub message: OutboundMessage,
    /// For a message of a shared subscription: the group and the offset to
    /// acknowledge to it.
    pub shared: Option<(Arc<str>, Offset)>,
}

/// What an outbound message is, to send it again: the record (shared with
/// the log's cache, not copied) and how it went out.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    pub record: Arc<Record>,
    pub qos: QoS,
    pub retain: bool,
    pub identifiers: Vec<u32>,
}

/// A QoS 2 delivery that was in flight when the session was last saved,
/// carried over a broker restart or a move to another node. Its record is
/// known by message id, as a record's offset differs from node to node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedFlow {
    pub packet_id: PacketId,
    /// Text in JSON (`MessageId`'s 32 hexadecimal digits): serde's
    /// `flatten`, used by the directory's record, refuses a u128 number.
    pub message_id: MessageId,
    /// PUBREC came and PUBREL went: the client has the message, and only
    /// its PUBCOMP is owed. Otherwise the message goes again, with DUP and
    /// the same packet id, when the session reads its record.
    pub released: bool,
}

/// A session's QoS 2 flows beside those in `outbound`.
#[derive(Debug, Default)]
struct Qos2Flows {
    /// The client's publishes made durable and answered with PUBREC,
    /// awaiting PUBREL; a repeated PUBLISH with one of these packet ids is a
    /// resend and is not appended again.
    inbound: BTreeSet<PacketId>,
    /// Deliveries carried over from where the session was before.
    carried: Vec<CarriedFlow>,
}

/// Session state, owned by at most one connection at a time.
#[derive(Debug)]
pub struct SessionState {
    pub client_id: ClientId,
    pub protocol: ProtocolVersion,
    /// True when the session outlives its connection.
    pub persistent: bool,
    /// Seconds the session survives offline (5.0 Session Expiry Interval).
    pub expiry_secs: u32,
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Next log offset to examine for delivery.
    pub read_pos: Offset,
    /// Outbound QoS 1/2 messages by packet id.
    pub outbound: BTreeMap<PacketId, Outbound>,
    /// QoS 2 flows in progress; allocated with the first, as most sessions
    /// never have one and an idle connection should cost least.
    qos2: Option<Box<Qos2Flows>>,
    next_packet_id: PacketId,
    /// When the last connection ended, for expiry while offline.
    pub disconnected_at: Option<Instant>,
    /// Cancels a will waiting out its 5.0 Will Delay Interval: a new
    /// connection for the client id arrived in time (5.0 §3.1.3.2.2).
    pub pending_will: Option<CancellationToken>,
}

impl SessionState {
    pub fn new(client_id: ClientId, protocol: ProtocolVersion, read_pos: Offset) -> Self {
        SessionState {
            client_id,
            protocol,
            persistent: false,
            expiry_secs: 0,
            subscriptions: BTreeMap::new(),
            read_pos,
            outbound: BTreeMap::new(),
            qos2: None,
            next_packet_id: 1,
            disconnected_at: None,
            pending_will: None,
        }
    }

    /// A free packet id for an outbound message, `None` when all 65,535 are in use.
    pub fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.outbound.contains_key(&id) && !self.carried().iter().any(|c| c.packet_id == id)
            {
                return Some(id);
            }
        }
        None
    }

    /// The QoS 2 deliveries in flight from the log, to carry over a restart
    /// or a move: those sent here and those still carried from before.
    pub fn flows_to_carry(&self) -> Vec<CarriedFlow> {
        let sent = self.outbound.iter().filter_map(|(id, o)| {
            let released = match o.state {
                OutboundState::ExpectPubAck => return None,
                OutboundState::ExpectPubRec => false,
                OutboundState::ExpectPubComp => true,
            };
            o.offset.map(|_| CarriedFlow {
                packet_id: *id,
                message_id: o.message.record.message_id,
                released,
            })
        });
        sent.chain(self.carried().iter().copied()).collect()
    }

    fn qos2_mut(&mut self) -> &mut Qos2Flows {
        self.qos2.get_or_insert_with(Box::default)
    }

    /// The client's QoS 2 publishes awaiting PUBREL, by packet id.
    pub fn awaiting_pubrel(&self) -> impl Iterator<Item = PacketId> + '_ {
        self.qos2.iter().flat_map(|q| q.inbound.iter().copied())
    }

    /// True when the client's QoS 2 publish `packet_id` was stored and
    /// answered with PUBREC, and its PUBREL has not come.
    pub fn is_awaiting_pubrel(&self, packet_id: PacketId) -> bool {
        self.qos2
            .as_ref()
            .is_some_and(|q| q.inbound.contains(&packet_id))
    }

    /// Notes the client's QoS 2 publish `packet_id` as stored and answered.
    pub fn await_pubrel(&mut self, packet_id: PacketId) {
        self.qos2_mut().inbound.insert(packet_id);
    }

    /// Ends the client's QoS 2 flow `packet_id` on its PUBREL; false when
    /// there was none.
    pub fn pubrel_came(&mut self, packet_id: PacketId) -> bool {
        self.qos2
            .as_mut()
            .is_some_and(|q| q.inbound.remove(&packet_id))
    }

    /// The deliveries carried over from where the session was before.
    pub fn carried(&self) -> &[CarriedFlow] {
        self.qos2.as_ref().map_or(&[], |q| &q.carried)
    }

    /// The carried flow of a record the session reads again: a released
    /// one stays until its PUBCOMP (the record is not sent again); one to
    /// send again leaves the carried flows for `outbound`.
    pub fn carried_for(&mut self, message_id: MessageId) -> Option<CarriedFlow> {
        let carried = &mut self.qos2.as_mut()?.carried;
        let at = carried.iter().position(|c| c.message_id == message_id)?;
        let flow = carried[at];
        if !flow.released {
            carried.remove(at);
        }
        Some(flow)
    }

    /// Ends a carried flow on its PUBCOMP; false when there is none.
    pub fn complete_carried(&mut self, packet_id: PacketId) -> bool {
        let Some(carried) = self.qos2.as_mut().map(|q| &mut q.carried) else {
            return false;
        };
        let before = carried.len();
        carried.retain(|c| !(c.released && c.packet_id == packet_id));
        carried.len() < before
    }

    /// Restores the QoS 2 flows a saved session had in progress.
    pub fn restore_qos2(&mut self, awaiting_pubrel: Vec<PacketId>, carried: Vec<CarriedFlow>) {
        if !awaiting_pubrel.is_empty() || !carried.is_empty() {
            *self.qos2_mut() = Qos2Flows {
                inbound: awaiting_pubrel.into_iter().collect(),
                carried,
            };
        }
    }

    /// True when the session reads the log itself: it has a subscription
    /// of its own (not shared) or log messages in flight.
    pub fn reads_log(&self) -> bool {
        self.subscriptions.values().any(|s| !s.is_shared())
            || self.outbound.values().any(|o| o.offset.is_some())
    }

    /// The lowest log offset this session has not fully acknowledged: what it
    /// commits, and where it resumes after a broker restart.
    pub fn cursor(&self) -> Offset {
        self.outbound
            .values()
            .filter_map(|o| o.offset)
            .min()
            .unwrap_or(self.read_pos)
            .min(self.read_pos)
    }

    /// The granted QoS and the subscriptions that match a record, or `None`.
    /// Overlapping subscriptions deliver once at the highest QoS (and carry
    /// every matching subscription identifier).
    pub fn route(&self, offset: Offset, topic: &str, publisher: &str) -> Option<Route> {
        let mut route: Option<Route> = None;
        for sub in self.subscriptions.values() {
            if sub.is_shared() {
                continue; // delivered by the group's dispatcher
            }
            if offset.0 < sub.since || !tributary_mqtt::topic::matches(&sub.filter, topic) {
                continue;
            }
            if sub.no_local && publisher == self.client_id.as_str() {
                continue;
            }
            let r = route.get_or_insert(Route {
                qos: 0,
                retain_as_published: false,
                identifiers: Vec::new(),
            });
            r.qos = r.qos.max(sub.qos);
            r.retain_as_published |= sub.retain_as_published;
            if let Some(id) = sub.identifier {
                r.identifiers.push(id);
            }
        }
        route
    }
}

/// How a record is delivered to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Highest QoS granted by a matching subscription (capped by the message's QoS later).
    pub qos: u8,
    pub retain_as_published: bool,
    pub identifiers: Vec<u32>,
}

impl Route {
    pub fn qos_for(&self, published: u8) -> QoS {
        QoS::from_u8(self.qos.min(published)).unwrap_or(QoS::AtMostOnce)
    }
}

/// A session in the registry: its state, and the connection holding it.
struct Entry {
    /// The state of a session that outlives (or may outlive) its
    /// connection; `None` for a connection whose session ends with it,
    /// which keeps its state to itself (see [`SessionRef::Own`]).
    state: Option<SessionSlot>,
    /// Cancelled to make the connection holding the session let go of it.
    holder: Option<(u64, CancellationToken)>,
}

/// Where the registry keeps a session's state; a connection holds the lock
/// while it serves the session, and the next one waits for it.
type SessionSlot = Arc<tokio::sync::Mutex<Option<SessionState>>>;

/// All sessions by client id. A new connection for a client id takes the
/// session over: the previous connection is told to close and the new one
/// waits for it to release the state.
#[derive(Default)]
pub struct Registry {
    entries: Mutex<HashMap<ClientId, Entry>>,
}

/// A session held by one connection; dropping it releases the session.
/// Kept for the connection's whole life in its task (what an idle
/// connection costs), so what only the handshake needs is in [`Taken`].
pub struct Held {
    pub state: SessionRef,
}

/// What taking a session gives a connection: its hold, and what its
/// handshake needs once.
pub struct Taken {
    pub held: Held,
    /// Whether an existing session was resumed (CONNACK Session Present).
    pub resumed: bool,
    /// Shared subscriptions of a persistent session that a clean start
    /// discarded; their groups must be released.
    pub discarded_shared: Vec<String>,
}

/// A connection's hold on its session's state.
pub enum SessionRef {
    /// A session in the registry, which later connections may take over.
    Registered(OwnedMappedMutexGuard<Option<SessionState>, SessionState>),
    /// A session that ends with its connection (clean session / expiry 0):
    /// nobody else will ever need its state, so it stays out of the registry.
    Own(Box<SessionState>),
}

impl std::ops::Deref for SessionRef {
    type Target = SessionState;

    fn deref(&self) -> &SessionState {
        match self {
            SessionRef::Registered(guard) => guard,
            SessionRef::Own(state) => state,
        }
    }
}

impl std::ops::DerefMut for SessionRef {
    fn deref_mut(&mut self) -> &mut SessionState {
        match self {
            SessionRef::Registered(guard) => &mut *guard,
            SessionRef::Own(state) => &mut *state,
        }
    }
}

impl Registry {
    /// Takes the session of `client_id` for connection `conn`, creating one
    /// with `fresh` when there is none or `clean_start` asks to discard it.
    /// `kick` is cancelled when a later connection takes the session over.
    /// `persistent` says whether the new session outlives its connection.
    pub async fn take(
        &self,
        client_id: &ClientId,
        conn: u64,
        kick: CancellationToken,
        clean_start: bool,
        persistent: bool,
        fresh: impl FnOnce() -> SessionState,
    ) -> Taken {
        let state = {
            let mut entries = self.entries.lock().expect("registry lock poisoned");
            let entry = entries.entry(client_id.clone()).or_insert_with(|| Entry {
                state: None,
                holder: None,
            });
            if let Some((_, previous)) = entry.holder.replace((conn, kick)) {
                previous.cancel();
            }
            if entry.state.is_none() && persistent {
                entry.state = Some(Arc::new(tokio::sync::Mutex::new(None)));
            }
            entry.state.clone()
        };
        let Some(state) = state else {
            // No session to resume and none to keep: the connection owns its state.
            return Taken {
                held: Held {
                    state: SessionRef::Own(Box::new(fresh())),
                },
                resumed: false,
                discarded_shared: Vec::new(),
            };
        };
        let mut guard: OwnedMutexGuard<Option<SessionState>> = state.lock_owned().await;
        if let Some(will) = guard.as_mut().and_then(|s| s.pending_will.take()) {
            will.cancel();
        }
        let resumed = !clean_start && guard.as_ref().is_some_and(|s| s.persistent);
        let mut discarded_shared = Vec::new();
        if !resumed {
            if let Some(old) = guard.take().filter(|s| s.persistent) {
                discarded_shared = Subscription::shared_keys(old.subscriptions.values());
            }
            *guard = Some(fresh());
        }
        let state =
            OwnedMutexGuard::map(guard, |s| s.as_mut().expect("session state was just set"));
        Taken {
            held: Held {
                state: SessionRef::Registered(state),
            },
            resumed,
            discarded_shared,
        }
    }

    /// Called by a connection when it ends: drops a non-persistent session
    /// unless another connection has taken it over meanwhile.
    pub fn release(&self, client_id: &ClientId, conn: u64, persistent: bool) {
        let mut entries = self.entries.lock().expect("registry lock poisoned");
        if let Some(entry) = entries.get_mut(client_id) {
            if entry.holder.as_ref().is_some_and(|(c, _)| *c == conn) {
                entry.holder = None;
                if !persistent {
                    entries.remove(client_id);
                }
            }
        }
    }

    /// Puts a persistent session loaded from disk into the registry.
    pub fn restore(&self, state: SessionState) {
        let mut entries = self.entries.lock().expect("registry lock poisoned");
        entries.insert(
            state.client_id.clone(),
            Entry {
                state: Some(Arc::new(tokio::sync::Mutex::new(Some(state)))),
                holder: None,
            },
        );
    }

    /// Puts a session resumed from another node into the registry,
    /// replacing what this node had of it, unless a connection here holds it.
    pub fn restore_if_idle(&self, state: SessionState) {
        let mut entries = self.entries.lock().expect("registry lock poisoned");
        if entries
            .get(&state.client_id)
            .is_some_and(|e| e.holder.is_some())
        {
            return;
        }
        entries.insert(
            state.client_id.clone(),
            Entry {
                state: Some(Arc::new(tokio::sync::Mutex::new(Some(state)))),
                holder: None,
            },
        );
    }

    /// Another node took `client_id`'s session over: cancels the token of
    /// the connection holding it here, and a will waiting out its delay
    /// (a new connection for the client id arrived in time, 5.0 §3.1.3.2.2).
    pub fn taken_elsewhere(&self, client_id: &ClientId) {
        let entries = self.entries.lock().expect("registry lock poisoned");
        let Some(entry) = entries.get(client_id) else {
            return;
        };
        if let Some((_, token)) = &entry.holder {
            tracing::info!(client_id = %client_id, "session taken over by another node");
            token.cancel();
        }
        let Some(slot) = &entry.state else { return };
        if let Ok(mut state) = slot.try_lock() {
            if let Some(will) = state.as_mut().and_then(|s| s.pending_will.take()) {
                will.cancel();
            }
        };
    }

    /// Cancels the token of every connection holding a session whose key
    /// `pred` picks (revoked devices).
    pub fn kick_where(&self, pred: impl Fn(&ClientId) -> bool) {
        let entries = self.entries.lock().expect("registry lock poisoned");
        for (id, entry) in entries.iter() {
            if let (true, Some((_, token))) = (pred(id), &entry.holder) {
                token.cancel();
            }
        }
    }

    /// The tokens of the connections holding a session now (a drain
    /// cancels them one by one).
    pub fn holders(&self) -> Vec<CancellationToken> {
        let entries = self.entries.lock().expect("registry lock poisoned");
        entries
            .values()
            .filter_map(|entry| entry.holder.as_ref().map(|(_, token)| token.clone()))
            .collect()
    }

    /// Removes offline sessions whose expiry has passed and returns their
    /// ids with their shared subscriptions.
    pub fn expire(&self, now: Instant) -> Vec<(ClientId, Vec<String>)> {
        let mut entries = self.entries.lock().expect("registry lock poisoned");
        let mut expired = Vec::new();
        entries.retain(|id, entry| {
            if entry.holder.is_some() {
                return true;
            }
            let Some(slot) = &entry.state else {
                return true;
            };
            let Ok(state) = slot.try_lock() else {
                return true;
            };
            let Some(state) = state.as_ref() else {
                return true;
            };
            let gone = match state.disconnected_at {
                Some(at) => now.duration_since(at).as_secs() >= u64::from(state.expiry_secs),
                None => false,
            };
            if gone {
                expired.push((
                    id.clone(),
                    Subscription::shared_keys(state.subscriptions.values()),
                ));
            }
            !gone
        });
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_with(filters: &[(&str, u8, u64)]) -> SessionState {
        let mut s = SessionState::new(ClientId::new("me"), ProtocolVersion::V5, Offset(0));
        for (filter, qos, since) in filters {
            let options = SubscriptionOptions {
                qos: QoS::from_u8(*qos).expect("qos"),
                ..Default::default()
            };
            s.subscriptions.insert(
                filter.to_string(),
                Subscription::new(filter.to_string(), options, None, Offset(*since)),
            );
        }
        s
    }

    #[test]
    fn session_keys_are_scoped_by_identity_kind() {
        use tributary_accounts::{Grants, Identity};
        let key = |identity: Option<&Identity>| ClientId::for_identity(identity, "c1");
        let device = Identity::Device {
            owner: "ann".into(),
            device: "x".into(),
        };
        let owner = Identity::Owner { owner: "x".into() };
        let service = Identity::Service {
            service: "x".into(),
            grants: Grants {
                read: true,
                command: false,
                packs: false,
            },
        };
        let admin = Identity::Admin { admin: "x".into() };
        let keys = [
            key(Some(&device)),
            key(Some(&owner)),
            key(Some(&service)),
            key(Some(&admin)),
            key(None),
        ];
        let shown: Vec<&str> = keys.iter().map(ClientId::as_str).collect();
        assert_eq!(shown, ["d:x:c1", "o:x:c1", "s:x:c1", "a:x:c1", "anon:c1"]);
        let devices: Vec<Option<&str>> = keys.iter().map(ClientId::device).collect();
        assert_eq!(devices, [Some("x"), None, None, None, None]);
        let services: Vec<Option<&str>> = keys.iter().map(ClientId::service).collect();
        assert_eq!(services, [None, None, Some("x"), None, None]);
    }

    #[test]
    fn anonymous_client_ids_cannot_collide_with_authenticated_session_keys() {
        use tributary_accounts::Identity;
        let device = Identity::Device {
            owner: "ann".into(),
            device: "x".into(),
        };
        let owner = Identity::Owner { owner: "x".into() };
        let admin = Identity::Admin { admin: "x".into() };
        for identity in [&device, &owner, &admin] {
            let authenticated = ClientId::for_identity(Some(identity), "c1");
            // An anonymous client choosing the authenticated key as its id.
            let anonymous = ClientId::for_identity(None, authenticated.as_str());
            assert_ne!(anonymous, authenticated);
            assert_eq!((anonymous.device(), anonymous.service()), (None, None));
        }
    }

    #[test]
    fn overlapping_subscriptions_route_once_at_the_highest_qos() {
        let s = session_with(&[("a/#", 0, 0), ("a/+", 2, 0), ("b", 1, 0)]);
        let route = s.route(Offset(3), "a/x", "other").expect("matches");
        assert_eq!(route.qos, 2);
        assert_eq!(route.qos_for(1), QoS::AtLeastOnce);
        assert!(s.route(Offset(3), "c", "other").is_none());
    }

    #[test]
    fn subscription_does_not_see_records_from_before_it() {
        let s = session_with(&[("a", 1, 10)]);
        assert!(s.route(Offset(9), "a", "other").is_none());
        assert!(s.route(Offset(10), "a", "other").is_some());
    }

    #[test]
    fn no_local_skips_own_messages() {
        let mut s = session_with(&[("a", 1, 0)]);
        s.subscriptions.get_mut("a").expect("sub").no_local = true;
        assert!(s.route(Offset(1), "a", "me").is_none());
        assert!(s.route(Offset(1), "a", "you").is_some());
    }

    #[test]
    fn cursor_is_the_oldest_unacknowledged_offset() {
        let mut s = session_with(&[]);
        s.read_pos = Offset(50);
        assert_eq!(s.cursor(), Offset(50));
        let message = OutboundMessage {
            record: Arc::new(Record {
                topic: "a".into(),
                qos: 1,
                ..Record::default()
            }),
            qos: QoS::AtLeastOnce,
            retain: false,
            identifiers: Vec::new(),
        };
        s.outbound.insert(
            1,
            Outbound {
                offset: Some(Offset(42)),
                state: OutboundState::ExpectPubAck,
                message: message.clone(),
                shared: None,
            },
        );
        s.outbound.insert(
            2,
            Outbound {
                offset: None,
                state: OutboundState::ExpectPubAck,
                message,
                shared: None,
            },
        );
        assert_eq!(s.cursor(), Offset(42));
    }

    #[test]
    fn packet_ids_skip_those_in_use_and_wrap_without_zero() {
        let mut s = session_with(&[]);
        s.next_packet_id = u16::MAX;
        assert_eq!(s.allocate_packet_id(), Some(u16::MAX));
        assert_eq!(s.allocate_packet_id(), Some(1));
    }

    #[test]
    fn carried_flows_keep_their_packet_ids_until_they_end() {
        let mut s = SessionState::new(ClientId::new("c"), ProtocolVersion::V5, Offset(0));
        let flow = |packet_id, message_id, released| CarriedFlow {
            packet_id,
            message_id: MessageId(message_id),
            released,
        };
        s.restore_qos2(Vec::new(), vec![flow(1, 7, true), flow(2, 8, false)]);
        assert_eq!(
            s.allocate_packet_id(),
            Some(3),
            "ids of carried flows are in use"
        );
        // The one to send again leaves for `outbound`; the released one
        // stays until its PUBCOMP.
        assert_eq!(s.carried_for(MessageId(8)), Some(flow(2, 8, false)));
        assert_eq!(s.carried_for(MessageId(8)), None);
        assert_eq!(s.carried_for(MessageId(7)), Some(flow(1, 7, true)));
        assert!(!s.complete_carried(2));
        assert!(s.complete_carried(1));
        assert!(s.carried().is_empty());
    }

    #[tokio::test]
    async fn takeover_waits_for_the_old_holder_and_kicks_it() {
        let registry = Arc::new(Registry::default());
        let id = ClientId::new("c");
        let first_kick = CancellationToken::new();
        let mut first = registry
            .take(
                &id,
                1,
                first_kick.clone(),
                false,
                true,
                || session_with(&[]),
            )
            .await;
        first.held.state.persistent = true;
        let (r, id2) = (registry.clone(), id.clone());
        let second = tokio::spawn(async move {
            r.take(&id2, 2, CancellationToken::new(), false, true, || {
                session_with(&[])
            })
            .await
            .resumed
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), first_kick.cancelled())
            .await
            .expect("kicked");
        registry.release(&id, 1, true);
        drop(first);
        assert!(
            second.await.expect("join"),
            "the persistent session is resumed by the new connection"
        );
    }
}
