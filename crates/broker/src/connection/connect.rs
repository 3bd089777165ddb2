//! `ExpectConnect`: the first packet of a connection and its answer. It
//! reads CONNECT, admits or refuses the client, and returns the terms both
//! sides agreed on ([`Negotiated`]), from which the connected
//! [`Connection`] is made; that connection then takes over (or creates) the
//! client's session and sends CONNACK.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio_util::sync::CancellationToken;
use tributary_accounts::{AuthError, Identity};
use tributary_mqtt::{
    ConnAck, Connect, Packet, Properties, ProtocolVersion, PubResp, ReasonCode, Will,
};

use super::{Connection, CLOSE_FLUSH_TIMEOUT};
use crate::broker::Broker;
use crate::session::{ClientId, Held, OutboundMessage, OutboundState, SessionState, Subscription};
use crate::transport::Transport;

/// A connection before its CONNECT: what it has is the socket and the
/// broker; what it will be is decided by the CONNECT.
pub(crate) struct ExpectConnect {
    pub(super) broker: Arc<Broker>,
    pub(super) id: u64,
    pub(super) peer: SocketAddr,
    pub(super) transport: Transport,
    /// Bytes read so far; what follows the CONNECT goes to the connection.
    pub(super) rbuf: BytesMut,
    /// Cancelled at shutdown and when another connection takes the session over.
    pub(super) stop: CancellationToken,
}

/// The terms of a connection, agreed by CONNECT and CONNACK.
pub(super) struct Negotiated {
    pub(super) version: ProtocolVersion,
    /// Namespaced by the identity (see [`ClientId::for_identity`]).
    pub(super) client_id: ClientId,
    /// Who authenticated; `None` for an anonymous client (loopback only).
    pub(super) identity: Option<Box<Identity>>,
    /// Seconds; 0 turns keep-alive off. The broker's own where it imposes one.
    pub(super) keep_alive: u16,
    pub(super) will: Option<Box<Will>>,
    /// Smaller of `limits.inflight` and the client's 5.0 Receive Maximum.
    pub(super) outbound_window: u32,
    /// The client's 5.0 Maximum Packet Size.
    pub(super) client_max_packet: u32,
    /// Whether the client asked for reason strings and user properties (5.0).
    pub(super) problem_information: bool,
    /// Seals the payloads of an identity with an owner (docs/erasure.md).
    pub(super) sealer: Option<Box<tributary_rights::seal::Sealer>>,
    /// The client's 5.0 Topic Alias Maximum.
    pub(super) client_topic_alias_maximum: u16,
}

/// What the client asked of its session.
pub(super) struct SessionTerms {
    clean_start: bool,
    /// 3.1.1 clean session off, or 5.0 Session Expiry Interval > 0.
    persistent: bool,
    /// Seconds, capped by `limits.max_session_expiry_secs`.
    expiry_secs: u32,
    /// The CONNACK properties decided so far (5.0).
    connack: Properties,
    /// On Kafka: this connection's claim of the client id in the session
    /// directory (its epoch), and what the directory knew before it.
    claim: Option<(i64, Option<crate::cluster::directory::Entry>)>,
}

/// Longest a CONNECT waits for its claim in the session directory.
const CLAIM_WAIT: Duration = Duration::from_secs(3);

impl ExpectConnect {
    pub(crate) fn new(
        broker: Arc<Broker>,
        id: u64,
        transport: Transport,
        peer: SocketAddr,
        stop: CancellationToken,
    ) -> Self {
        ExpectConnect {
            broker,
            id,
            peer,
            transport,
            rbuf: BytesMut::new(),
            stop,
        }
    }

    /// Reads CONNECT (within `limits.connect_timeout_ms`) and admits the
    /// client: returns the connected connection and the session it now
    /// holds (CONNACK sent), or `None` when it was refused or closed.
    pub(super) async fn handshake(mut self: Box<Self>) -> Option<(Box<Connection>, Held)> {
        let timeout = self.broker.config.limits.connect_timeout();
        let connect = match tokio::time::timeout(timeout, self.read_connect()).await {
            Ok(Some(connect)) => connect,
            Ok(None) => return None,
            Err(_) => {
                tracing::info!(peer = %self.peer, "no CONNECT within the connect timeout");
                return None;
            }
        };
        let version = connect.protocol;
        let per_source = self.broker.config.limits.max_connections_per_sec_per_source;
        if !self
            .broker
            .sources
            .admit(self.peer.ip(), per_source, std::time::Instant::now())
        {
            tracing::info!(peer = %self.peer, "refused: over limits.max_connections_per_sec_per_source");
            self.refuse(version, ReasonCode::ConnectionRateExceeded)
                .await;
            return None;
        }
        if self.rbuf.is_empty() {
            // Most clients now go quiet: hold no read buffer while they do.
            self.rbuf = BytesMut::new();
        }
        let (terms, mut session) = match self.admit(connect).await {
            Ok(admitted) => admitted,
            Err(reason) => {
                self.refuse(version, reason).await;
                return None;
            }
        };
        if let Some(cluster) = &self.broker.cluster {
            // Kafka away must not keep clients out (their publishes are
            // then refused with 0x97, as ever): without a claim in time the
            // session is served by this node alone.
            match tokio::time::timeout(CLAIM_WAIT, cluster.directory.claim(&terms.client_id)).await
            {
                Ok(Ok(claim)) => session.claim = Some(claim),
                Ok(Err(e)) => {
                    tracing::warn!(client_id = %terms.client_id, peer = %self.peer, error = %e, "session directory: no claim; serving the session on this node alone");
                }
                Err(_) => {
                    tracing::warn!(client_id = %terms.client_id, peer = %self.peer, "session directory: no claim within {CLAIM_WAIT:?} (Kafka away?); serving the session on this node alone");
                }
            }
        }
        let mut connection = Box::new(Connection::new(*self, terms));
        let held = connection.open_session(session).await;
        Some((connection, held))
    }

    /// Reads until a whole first packet arrived; anything but a valid
    /// CONNECT closes the connection (3.1.1 §3.1, 5.0 §3.1: the first packet
    /// must be CONNECT). A PROXY header here means the listener was not
    /// configured for one (those are read before TLS): it is refused.
    async fn read_connect(&mut self) -> Option<Connect> {
        let max = self.broker.config.limits.max_packet_size;
        loop {
            if crate::proxy::looks_like_proxy(&self.rbuf) && self.rbuf.len() >= 2 {
                tracing::info!(peer = %self.peer, "refused: PROXY header on a listener without proxy_protocol");
                return None;
            }
            match tributary_mqtt::decode(&self.rbuf, ProtocolVersion::V5, max) {
                Ok((Packet::Connect(connect), used)) => {
                    self.rbuf.advance(used);
                    return Some(connect);
                }
                Ok((other, _)) => {
                    tracing::info!(peer = %self.peer, packet = other.name(), "first packet is not CONNECT");
                    return None;
                }
                Err(tributary_mqtt::Error::Incomplete { .. }) => {}
                Err(tributary_mqtt::Error::UnsupportedProtocolVersion(level)) => {
                    tracing::info!(peer = %self.peer, level, "unsupported protocol version");
                    // 3.1.1 §3.1.2.2: CONNACK return code 0x01, in the 3.1.1 form
                    // every version's client can read.
                    let _ = self
                        .transport
                        .writer()
                        .write_all(&[0x20, 0x02, 0x00, 0x01])
                        .await;
                    return None;
                }
                Err(e) => {
                    tracing::info!(peer = %self.peer, error = %e, "malformed CONNECT");
                    return None;
                }
            }
            match self
                .transport
                .reader()
                .read_some(&mut self.rbuf, super::SMALL_READ as usize)
                .await
            {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Checks CONNECT (credentials, the will's topic, the client id) and
    /// decides the connection's terms; the reason code refuses it.
    async fn admit(&mut self, connect: Connect) -> Result<(Negotiated, SessionTerms), ReasonCode> {
        let broker = self.broker.clone();
        let limits = &broker.config.limits;
        let identity = self.authenticate(&connect).await?;
        if let Some(will) = &connect.will {
            if !crate::acl::may_publish(identity.as_ref(), &*broker.accounts, &will.topic) {
                tracing::info!(peer = %self.peer, topic = %will.topic, "refused: will topic not allowed for this identity");
                return Err(ReasonCode::NotAuthorized);
            }
        }
        let sealer = self.sealer_for(identity.as_ref()).await?;
        let v5 = connect.protocol == ProtocolVersion::V5;
        let mut properties = Properties::default();
        let client_id = if connect.client_id.is_empty() {
            if !v5 && !connect.clean_start {
                // 3.1.1 §3.1.3.1: a zero-length id needs a clean session.
                tracing::info!(peer = %self.peer, "refused: empty client id without clean session");
                return Err(ReasonCode::ClientIdentifierNotValid);
            }
            let assigned = format!("auto-{:032x}", broker.next_message_id().0);
            if v5 {
                properties.assigned_client_identifier = Some(assigned.clone());
            }
            assigned
        } else {
            connect.client_id.clone()
        };
        let client_id = ClientId::for_identity(identity.as_ref(), &client_id);
        let max_expiry = limits.max_session_expiry_secs;
        let (persistent, expiry_secs) = if v5 {
            let requested = connect.properties.session_expiry_interval.unwrap_or(0);
            if requested > max_expiry {
                properties.session_expiry_interval = Some(max_expiry);
            }
            (requested > 0, requested.min(max_expiry))
        } else {
            (
                !connect.clean_start,
                if connect.clean_start { 0 } else { max_expiry },
            )
        };
        let mut terms = Negotiated {
            version: connect.protocol,
            client_id,
            identity: identity.map(Box::new),
            sealer,
            keep_alive: connect.keep_alive,
            will: connect.will.map(Box::new),
            outbound_window: u32::from(limits.inflight),
            client_max_packet: u32::MAX,
            problem_information: true,
            client_topic_alias_maximum: 0,
        };
        if v5 {
            if let Some(receive_maximum) = connect.properties.receive_maximum {
                terms.outbound_window = terms.outbound_window.min(u32::from(receive_maximum));
            }
            if let Some(max) = connect.properties.maximum_packet_size {
                terms.client_max_packet = max;
            }
            terms.problem_information = connect.properties.request_problem_information != Some(0);
            terms.client_topic_alias_maximum = connect.properties.topic_alias_maximum.unwrap_or(0);
            properties.receive_maximum = Some(limits.receive_maximum);
            properties.maximum_packet_size =
                Some(limits.max_packet_size.min(u32::MAX as usize) as u32);
            properties.topic_alias_maximum = Some(limits.topic_alias_maximum);
            properties.retain_available = Some(1);
            properties.wildcard_subscription_available = Some(1);
            properties.subscription_identifier_available = Some(1);
            properties.shared_subscription_available = Some(1);
            let max_keep_alive = limits.max_keep_alive_secs;
            if max_keep_alive > 0 && (terms.keep_alive == 0 || terms.keep_alive > max_keep_alive) {
                // 5.0 §3.2.2.3.14: the server may impose its own keep-alive.
                terms.keep_alive = max_keep_alive;
                properties.server_keep_alive = Some(max_keep_alive);
            }
        }
        let session = SessionTerms {
            clean_start: connect.clean_start,
            persistent,
            expiry_secs,
            connack: properties,
            claim: None,
        };
        Ok((terms, session))
    }

    /// Refuses the client with a CONNACK carrying `reason`.
    /// The sealer of an identity's owner, their key made on first use; a
    /// key that cannot be had (the store away) refuses the connection with
    /// Server unavailable rather than take payloads it could not seal.
    async fn sealer_for(
        &self,
        identity: Option<&Identity>,
    ) -> Result<Option<Box<tributary_rights::seal::Sealer>>, ReasonCode> {
        let (Some(keyring), Some(Identity::Device { owner, .. } | Identity::Owner { owner })) =
            (self.broker.keyring.get(), identity)
        else {
            return Ok(None);
        };
        match keyring.sealer(owner).await {
            Ok(sealer) => Ok(sealer.map(Box::new)),
            Err(e) => {
                tracing::warn!(peer = %self.peer, owner = %owner, error = %e, "refused: no data key for the owner");
                Err(ReasonCode::ServerUnavailable)
            }
        }
    }

    async fn refuse(&mut self, version: ProtocolVersion, reason: ReasonCode) {
        let connack = Packet::ConnAck(ConnAck {
            session_present: false,
            reason,
            properties: Properties::default(),
        });
        let mut out = BytesMut::new();
        if tributary_mqtt::encode(&connack, version, &mut out).is_ok() {
            let write = self.transport.writer().write_all(&out);
            let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, write).await;
        }
    }

    /// Answers a connection over `limits.max_connections` once its CONNECT
    /// arrives: CONNACK "server busy" (5.0) or "server unavailable" (3.1.1).
    pub(super) async fn refuse_busy(mut self: Box<Self>) {
        tracing::warn!(peer = %self.peer, "refused: limits.max_connections reached");
        let timeout = self
            .broker
            .config
            .limits
            .connect_timeout()
            .min(Duration::from_secs(5));
        if let Ok(Some(connect)) = tokio::time::timeout(timeout, self.read_connect()).await {
            self.refuse(connect.protocol, ReasonCode::ServerBusy).await;
        }
    }

    /// Checks the CONNECT's credentials against the account store: a device
    /// (user name = device, password = its token) or an owner (user name =
    /// owner, password). Without credentials only anonymous access (loopback,
    /// `--allow-anonymous`) lets a client in. Log lines name the user, never
    /// the secret.
    async fn authenticate(&mut self, connect: &Connect) -> Result<Option<Identity>, ReasonCode> {
        if let Some(device) = self.transport.cert_device() {
            return self.certificate_identity(device, connect).map(Some);
        }
        let Some(username) = connect.username.clone() else {
            if self.broker.config.mqtt.allow_anonymous {
                return Ok(None);
            }
            tracing::info!(peer = %self.peer, "refused: no credentials and anonymous access is off");
            return Err(ReasonCode::NotAuthorized);
        };
        let password = connect.password.clone().unwrap_or_default();
        // The wait for an Argon2 permit (bounded: `limits.max_password_checks`)
        // ends with the CONNECT timeout; the client is then told the server
        // is busy, and nothing was allocated for it.
        let timeout = self.broker.config.limits.connect_timeout();
        let checked = self
            .broker
            .accounts
            .authenticate_guarded(&username, &password);
        match tokio::time::timeout(timeout, checked).await {
            Ok(Ok(identity)) => Ok(Some(identity)),
            Ok(Err(AuthError::Revoked)) => {
                tracing::info!(peer = %self.peer, user = %username, "refused: revoked");
                Err(ReasonCode::NotAuthorized)
            }
            Ok(Err(AuthError::Locked)) => {
                // The same answer as a wrong password: the client learns
                // nothing, and no Argon2 ran.
                tracing::info!(peer = %self.peer, user = %username, "refused: name locked after repeated wrong passwords");
                Err(ReasonCode::BadUserNameOrPassword)
            }
            Ok(Err(e)) => {
                tracing::info!(peer = %self.peer, user = %username, reason = %e, "refused: bad credentials");
                Err(ReasonCode::BadUserNameOrPassword)
            }
            Err(_) => {
                tracing::info!(peer = %self.peer, user = %username, "refused: no password check free within the connect timeout");
                Err(ReasonCode::ServerBusy)
            }
        }
    }

    /// The device a verified TLS client certificate names (its common
    /// name) authenticates without a token; a user name, if sent, must be
    /// that device's name.
    fn certificate_identity(
        &self,
        device: &str,
        connect: &Connect,
    ) -> Result<Identity, ReasonCode> {
        if connect
            .username
            .as_deref()
            .is_some_and(|user| user != device)
        {
            tracing::info!(peer = %self.peer, device, user = ?connect.username, "refused: user name is not the device of the client certificate");
            return Err(ReasonCode::BadUserNameOrPassword);
        }
        let accounts = &self.broker.accounts;
        match accounts.owner_of(device) {
            None => {
                tracing::info!(peer = %self.peer, device, "refused: client certificate names an unknown device");
                Err(ReasonCode::BadUserNameOrPassword)
            }
            Some(_) if !accounts.device_active(device) => {
                tracing::info!(peer = %self.peer, device, "refused: device revoked");
                Err(ReasonCode::NotAuthorized)
            }
            Some(owner) => Ok(Identity::Device {
                owner,
                device: device.to_owned(),
            }),
        }
    }
}

impl Connection {
    /// Takes over (or creates) the client's session, answers CONNACK, and
    /// resends what a resumed session still owes the client.
    pub(super) async fn open_session(&mut self, terms: SessionTerms) -> Held {
        let broker = self.broker.clone();
        let client_id = self.client_id.clone();
        let end = broker.log.end_offset();
        let protocol = self.version;
        if let (Some(cluster), Some((epoch, known))) = (&broker.cluster, terms.claim) {
            self.cluster_claim = Some(Box::new(super::ClusterClaim {
                epoch,
                written: None,
                will_in_directory: false,
            }));
            if terms.persistent && !terms.clean_start {
                adopt_from_directory(&broker, cluster, &client_id, known).await;
            }
        }
        let taken = broker
            .sessions
            .take(
                &client_id,
                self.id,
                self.stop.clone(),
                terms.clean_start,
                terms.persistent,
                || SessionState::new(client_id.clone(), protocol, end),
            )
            .await;
        for key in &taken.discarded_shared {
            broker.shared.release(key);
        }
        let (mut held, resumed) = (taken.held, taken.resumed);
        let state = &mut held.state;
        state.protocol = protocol;
        state.persistent = terms.persistent;
        state.expiry_secs = terms.expiry_secs;
        state.disconnected_at = None;
        if terms.persistent {
            self.committed = broker.log.committed_offset(&client_id.consumer_name());
            self.save_session(state, true).await;
        } else {
            // A clean start may have discarded a persistent session.
            self.forget_stored_session().await;
        }
        self.will_to_directory(state).await;
        tracing::info!(client_id = %client_id, peer = %self.peer, protocol = protocol.level(), resumed, persistent = terms.persistent, "connected");
        self.send(&Packet::ConnAck(ConnAck {
            session_present: resumed,
            reason: ReasonCode::Success,
            properties: terms.connack,
        }));
        if resumed {
            self.resend_inflight(&mut held);
        }
        // QoS 2 flows awaiting PUBREL still use the client's quota.
        self.unacked_inbound = held.state.awaiting_pubrel().count() as u32;
        for key in Subscription::shared_keys(held.state.subscriptions.values()) {
            let sender = self.shared_sender();
            broker.shared.join(&key, self.id, sender);
        }
        self.route_session(&held);
        held
    }

    /// Drops what disk holds of a session that is no longer persistent.
    /// Cheap when there is nothing to forget (the common case of a
    /// client that never had a persistent session): no disk, no thread.
    async fn forget_stored_session(&mut self) {
        let consumer = self.client_id.consumer_name();
        if self.broker.session_file.contains(&self.client_id) {
            let file = self.broker.session_file.clone();
            let id = self.client_id.clone();
            let _ = tokio::task::spawn_blocking(move || file.update(&id, None)).await;
        }
        if self.broker.log.committed_offset(&consumer).is_none() {
            return;
        }
        if let Err(e) = self
            .broker
            .log
            .remove_consumer(&self.client_id.consumer_name())
        {
            tracing::error!(client_id = %self.client_id, error = %e, "remove a session cursor");
        }
    }

    /// Resends unacknowledged outbound messages of a resumed session
    /// (3.1.1 §4.4, 5.0 §4.4): PUBLISH with DUP, or PUBREL.
    fn resend_inflight(&mut self, held: &mut Held) {
        let pending: Vec<(u16, OutboundState, OutboundMessage)> = held
            .state
            .outbound
            .iter()
            .map(|(id, o)| (*id, o.state, o.message.clone()))
            .collect();
        let released = held.state.carried().iter().filter(|c| c.released);
        for flow in released {
            self.send(&Packet::PubRel(PubResp::success(flow.packet_id)));
        }
        for (id, state, message) in pending {
            match state {
                OutboundState::ExpectPubComp => {
                    self.send(&Packet::PubRel(PubResp::success(id)));
                }
                OutboundState::ExpectPubAck | OutboundState::ExpectPubRec => {
                    self.resend(id, &message)
                }
            }
        }
    }
}

/// Resumes here a persistent session that another node held last: waits
/// for that node's last state (it is closing its connection, having seen
/// this node's claim), then puts the session into this node's registry,
/// its cursor translated to this node's log. A session this node wrote
/// last is already in its registry.
async fn adopt_from_directory(
    broker: &Broker,
    cluster: &crate::cluster::Cluster,
    client_id: &ClientId,
    known: Option<crate::cluster::directory::Entry>,
) {
    let Some(known) = known else { return };
    // `known` already holds this node's claim; the node to wait for is the
    // one whose latest state says it is still connected: its last state,
    // written as it closes, has the session as it ended (cursor, QoS 2
    // flows), not as it was up to a second before. A node taken for dead
    // writes nothing more: no wait for it.
    let state = match known.state {
        Some((_, holder, session))
            if holder != cluster.directory.node()
                && session.stored.disconnected_at_ms.is_none()
                && !cluster.nodes.is_dead(&holder) =>
        {
            cluster.directory.handed_over(client_id, &holder).await
        }
        state => state,
    };
    let Some((_, node, session)) = state else {
        return;
    };
    if node == cluster.directory.node() || session.stored.expired() {
        return;
    }
    let kafka_cursor = format!("{:?}", session.kafka_cursor);
    let state = cluster.adopt(session, broker.log.start_offset());
    tracing::info!(client_id = %client_id, from = %node, kafka_cursor, cursor = state.read_pos.0, subscriptions = state.subscriptions.len(), "session resumed from another node");
    for key in Subscription::shared_keys(state.subscriptions.values()) {
        broker.shared.hold(&key);
    }
    broker.sessions.restore_if_idle(state);
}
