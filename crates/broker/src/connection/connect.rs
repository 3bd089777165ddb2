//! `ExpectConnect`: the first packet of a connection, its answer, and taking
//! over (or creating) the client's session.

use std::time::Duration;

use bytes::Buf;
use tributary_accounts::{AuthError, Identity};
use tributary_mqtt::{ConnAck, Connect, Packet, Properties, ProtocolVersion, PubResp, ReasonCode};

use super::Connection;
use crate::session::{ClientId, Held, OutboundMessage, OutboundState, SessionState, Subscription};

impl Connection {
    /// Reads CONNECT (within `limits.connect_timeout_ms`), answers CONNACK and
    /// returns the session this connection now holds, or `None` when the
    /// connection was refused or closed.
    pub(super) async fn handshake(&mut self) -> Option<Held> {
        let timeout = self.broker.config.limits.connect_timeout();
        let connect = match tokio::time::timeout(timeout, self.read_connect()).await {
            Ok(Some(connect)) => connect,
            Ok(None) => return None,
            Err(_) => {
                tracing::info!(peer = %self.peer, "no CONNECT within the connect timeout");
                return None;
            }
        };
        self.version = connect.protocol;
        let per_source = self.broker.config.limits.max_connections_per_sec_per_source;
        if !self
            .broker
            .sources
            .admit(self.peer.ip(), per_source, std::time::Instant::now())
        {
            tracing::info!(peer = %self.peer, "refused: over limits.max_connections_per_sec_per_source");
            self.send(&Packet::ConnAck(ConnAck {
                session_present: false,
                reason: ReasonCode::ConnectionRateExceeded,
                properties: Properties::default(),
            }));
            self.flush().await;
            return None;
        }
        if self.rbuf.is_empty() {
            // Most clients now go quiet: hold no read buffer while they do.
            self.rbuf = bytes::BytesMut::new();
        }
        match self.accept(connect).await {
            Ok(held) => Some(held),
            Err(reason) => {
                self.send(&Packet::ConnAck(ConnAck {
                    session_present: false,
                    reason,
                    properties: Properties::default(),
                }));
                self.flush().await;
                None
            }
        }
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

    /// Checks CONNECT, takes the session and sends CONNACK.
    async fn accept(&mut self, connect: Connect) -> Result<Held, ReasonCode> {
        let broker = self.broker.clone();
        let limits = &broker.config.limits;
        let identity = self.authenticate(&connect).await?;
        if let Some(will) = &connect.will {
            if !crate::acl::may_publish(identity.as_ref(), &*broker.accounts, &will.topic) {
                tracing::info!(peer = %self.peer, topic = %will.topic, "refused: will topic not allowed for this identity");
                return Err(ReasonCode::NotAuthorized);
            }
        }
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
        self.identity = identity.map(Box::new);
        let max_expiry = limits.max_session_expiry_secs;
        let (persistent, expiry) = if v5 {
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
        if v5 {
            if let Some(receive_maximum) = connect.properties.receive_maximum {
                self.outbound_window = self.outbound_window.min(u32::from(receive_maximum));
            }
            if let Some(max) = connect.properties.maximum_packet_size {
                self.client_max_packet = max;
            }
            self.problem_information = connect.properties.request_problem_information != Some(0);
            properties.receive_maximum = Some(limits.receive_maximum);
            properties.maximum_packet_size =
                Some(limits.max_packet_size.min(u32::MAX as usize) as u32);
            properties.topic_alias_maximum = Some(limits.topic_alias_maximum);
            self.client_topic_alias_maximum = connect.properties.topic_alias_maximum.unwrap_or(0);
            properties.retain_available = Some(1);
            properties.wildcard_subscription_available = Some(1);
            properties.subscription_identifier_available = Some(1);
            properties.shared_subscription_available = Some(1);
        }
        self.client_id = client_id.clone();
        let mut keep_alive = connect.keep_alive;
        let max_keep_alive = limits.max_keep_alive_secs;
        if v5 && max_keep_alive > 0 && (keep_alive == 0 || keep_alive > max_keep_alive) {
            // 5.0 §3.2.2.3.14: the server may impose its own keep-alive.
            keep_alive = max_keep_alive;
            properties.server_keep_alive = Some(max_keep_alive);
        }
        self.keep_alive = keep_alive;
        self.will = connect.will.map(Box::new);

        let end = broker.log.end_offset();
        let protocol = connect.protocol;
        let mut held = broker
            .sessions
            .take(
                &client_id,
                self.id,
                self.stop.clone(),
                connect.clean_start,
                persistent,
                || SessionState::new(client_id.clone(), protocol, end),
            )
            .await;
        for key in std::mem::take(&mut held.discarded_shared) {
            broker.shared.release(&key);
        }
        let state = &mut held.state;
        state.protocol = protocol;
        state.persistent = persistent;
        state.expiry_secs = expiry;
        state.disconnected_at = None;
        if persistent {
            self.committed = broker.log.committed_offset(&client_id.consumer_name());
            self.save_session(state, true).await;
        } else {
            // A clean start may have discarded a persistent session.
            self.forget_stored_session().await;
        }
        let resumed = held.resumed;
        tracing::info!(client_id = %client_id, peer = %self.peer, protocol = protocol.level(), resumed, persistent, "connected");
        self.send(&Packet::ConnAck(ConnAck {
            session_present: resumed,
            reason: ReasonCode::Success,
            properties,
        }));
        if resumed {
            self.resend_inflight(&mut held);
        }
        // QoS 2 flows awaiting PUBREL still use the client's quota.
        self.unacked_inbound = held.state.inbound_qos2.len() as u32;
        for key in Subscription::shared_keys(held.state.subscriptions.values()) {
            let sender = self.shared_sender();
            broker.shared.join(&key, self.id, sender);
        }
        Ok(held)
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
        let accounts = self.broker.accounts.clone();
        let user = username.clone();
        match tokio::task::spawn_blocking(move || accounts.authenticate(&user, &password)).await {
            Ok(Ok(identity)) => Ok(Some(identity)),
            Ok(Err(AuthError::Revoked)) => {
                tracing::info!(peer = %self.peer, user = %username, "refused: revoked");
                Err(ReasonCode::NotAuthorized)
            }
            Ok(Err(e)) => {
                tracing::info!(peer = %self.peer, user = %username, reason = %e, "refused: bad credentials");
                Err(ReasonCode::BadUserNameOrPassword)
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "authenticate");
                Err(ReasonCode::ServerUnavailable)
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

    /// Answers a connection over `limits.max_connections` once its CONNECT
    /// arrives: CONNACK "server busy" (5.0) or "server unavailable" (3.1.1).
    pub(super) async fn refuse_busy(&mut self) {
        tracing::warn!(peer = %self.peer, "refused: limits.max_connections reached");
        let timeout = self
            .broker
            .config
            .limits
            .connect_timeout()
            .min(Duration::from_secs(5));
        if let Ok(Some(connect)) = tokio::time::timeout(timeout, self.read_connect()).await {
            self.version = connect.protocol;
            self.send(&Packet::ConnAck(ConnAck {
                session_present: false,
                reason: ReasonCode::ServerBusy,
                properties: Properties::default(),
            }));
            self.flush().await;
        }
    }
}
