//! Packets from a connected client.

use tributary_log::Offset;
use tributary_mqtt::{
    Packet, Properties, ProtocolVersion, PubResp, Publish, QoS, ReasonCode, SubAck, Subscribe,
    UnsubAck, Unsubscribe,
};

use super::{Acks, Close, Connection, PendingAck};
use crate::durable::{Durable, NotDurable};
use crate::session::{Held, OutboundState, Subscription};

impl Connection {
    pub(super) async fn handle_packet(
        &mut self,
        held: &mut Held,
        packet: Packet,
    ) -> Result<(), Close> {
        match packet {
            Packet::Publish(publish) => self.on_publish(held, publish),
            Packet::PubAck(ack) => {
                self.complete_outbound(held, ack.packet_id, OutboundState::ExpectPubAck);
                Ok(())
            }
            Packet::PubRec(rec) => {
                let Some(out) = held.state.outbound.get_mut(&rec.packet_id) else {
                    if self.version == ProtocolVersion::V5 {
                        let mut rel = PubResp::success(rec.packet_id);
                        rel.reason = ReasonCode::PacketIdentifierNotFound;
                        self.send(&Packet::PubRel(rel));
                    }
                    return Ok(());
                };
                if rec.reason.is_error() {
                    // 5.0 §4.3.3: an error PUBREC ends the flow.
                    self.complete_outbound(held, rec.packet_id, OutboundState::ExpectPubRec);
                } else {
                    out.state = OutboundState::ExpectPubComp;
                    self.send(&Packet::PubRel(PubResp::success(rec.packet_id)));
                }
                Ok(())
            }
            Packet::PubComp(comp) => {
                if !held.state.complete_carried(comp.packet_id) {
                    self.complete_outbound(held, comp.packet_id, OutboundState::ExpectPubComp);
                }
                Ok(())
            }
            Packet::PubRel(rel) => {
                let mut comp = PubResp::success(rel.packet_id);
                if held.state.pubrel_came(rel.packet_id) {
                    self.unacked_inbound = self.unacked_inbound.saturating_sub(1);
                } else if self.version == ProtocolVersion::V5 {
                    comp.reason = ReasonCode::PacketIdentifierNotFound;
                }
                self.send(&Packet::PubComp(comp));
                Ok(())
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(held, subscribe).await,
            Packet::Unsubscribe(unsubscribe) => {
                self.on_unsubscribe(held, unsubscribe).await;
                Ok(())
            }
            Packet::PingReq => {
                self.send(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                if self.version == ProtocolVersion::V5 {
                    if let Some(expiry) = disconnect.properties.session_expiry_interval {
                        if held.state.expiry_secs == 0 && expiry > 0 {
                            // 5.0 §3.14.2.2.2: a session that started with expiry 0
                            // cannot be given one at DISCONNECT.
                            return Err(Close::Violation(
                                ReasonCode::ProtocolError,
                                "session expiry set at DISCONNECT after CONNECT set 0",
                            ));
                        }
                        held.state.expiry_secs =
                            expiry.min(self.broker.config.limits.max_session_expiry_secs);
                        held.state.persistent = held.state.expiry_secs > 0;
                    }
                }
                let publish_will = disconnect.reason == ReasonCode::DisconnectWithWillMessage;
                Err(Close::ClientDisconnect { publish_will })
            }
            Packet::Connect(_) => {
                tracing::info!(client_id = %self.client_id, "second CONNECT");
                Err(Close::Violation(
                    ReasonCode::ProtocolError,
                    "second CONNECT",
                ))
            }
            other => {
                // CONNACK, SUBACK, UNSUBACK, PINGRESP go only to clients; AUTH
                // needs an authentication method this broker does not offer.
                tracing::info!(client_id = %self.client_id, packet = other.name(), "unexpected packet from a client");
                Err(Close::Violation(
                    ReasonCode::ProtocolError,
                    "packet type not allowed from a client",
                ))
            }
        }
    }

    /// Ends an outbound flow that was waiting for `expected`; a message of
    /// a shared subscription is acknowledged to its group.
    fn complete_outbound(&mut self, held: &mut Held, packet_id: u16, expected: OutboundState) {
        if held
            .state
            .outbound
            .get(&packet_id)
            .is_some_and(|o| o.state == expected)
        {
            if let Some((key, offset)) = held
                .state
                .outbound
                .remove(&packet_id)
                .and_then(|o| o.shared)
            {
                self.broker.shared.ack(&key, self.id, offset);
            }
        }
    }

    fn on_publish(&mut self, held: &mut Held, mut publish: Publish) -> Result<(), Close> {
        if let Some(alias) = publish.properties.topic_alias.take() {
            self.resolve_topic_alias(alias, &mut publish.topic)?;
        }
        if publish.qos != QoS::AtMostOnce {
            let Some(packet_id) = publish.packet_id else {
                return Err(Close::Violation(
                    ReasonCode::ProtocolError,
                    "QoS > 0 without packet id",
                ));
            };
            if publish.qos == QoS::ExactlyOnce
                && (held.state.is_awaiting_pubrel(packet_id) || self.is_pending(packet_id))
            {
                // A resend of a QoS 2 message already stored (or being stored):
                // answer again, never append twice (5.0 §4.3.3).
                if held.state.is_awaiting_pubrel(packet_id) {
                    self.send(&Packet::PubRec(PubResp::success(packet_id)));
                }
                return Ok(());
            }
            self.unacked_inbound += 1;
            if self.version == ProtocolVersion::V5
                && self.unacked_inbound > u32::from(self.broker.config.limits.receive_maximum)
            {
                return Err(Close::Violation(
                    ReasonCode::ReceiveMaximumExceeded,
                    "more unacknowledged publishes than Receive Maximum",
                ));
            }
        }
        self.count_publish(publish.payload.len());
        let mut refused = None;
        if !crate::acl::may_publish(
            self.identity.as_deref(),
            &*self.broker.accounts,
            &publish.topic,
        ) {
            tracing::info!(client_id = %self.client_id, topic = %publish.topic, "publish denied by the ACL");
            const TEXT: &str = "not authorized to publish to this topic";
            if publish.qos == QoS::AtMostOnce || self.version == ProtocolVersion::V311 {
                // 3.1.1 has no way to refuse one publish; 5.0 QoS 0 has no acknowledgement.
                return Err(Close::Violation(ReasonCode::NotAuthorized, TEXT));
            }
            refused = Some((ReasonCode::NotAuthorized, TEXT));
        }
        if refused.is_none()
            && publish.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&publish.payload).is_err()
        {
            // 5.0 §3.3.2.3.2: the server may check a payload declared UTF-8.
            const TEXT: &str = "payload format indicator says UTF-8 but the payload is not";
            if publish.qos == QoS::AtMostOnce {
                return Err(Close::Violation(ReasonCode::PayloadFormatInvalid, TEXT));
            }
            refused = Some((ReasonCode::PayloadFormatInvalid, TEXT));
        }
        let mut record = match refused {
            Some(_) => None,
            None => self.new_record(
                publish.topic,
                publish.qos,
                publish.retain,
                &publish.properties,
                publish.payload,
            ),
        };
        if refused.is_none() && record.is_none() {
            // Sealing failed (logged): refused like a message that cannot be made durable.
            const TEXT: &str = "the payload could not be encrypted";
            if publish.qos == QoS::AtMostOnce || self.version == ProtocolVersion::V311 {
                return Err(Close::Violation(ReasonCode::UnspecifiedError, TEXT));
            }
            refused = Some((ReasonCode::UnspecifiedError, TEXT));
        }
        if let Some(retained) = record.as_ref().filter(|r| r.retain) {
            if !self.broker.retained_admits(retained) {
                tracing::info!(client_id = %self.client_id, topic = %retained.topic, "retained publish refused: over limits.max_retained_per_owner or max_retained_bytes_per_owner");
                const TEXT: &str = "the owner's retained messages are at their limit";
                if publish.qos == QoS::AtMostOnce || self.version == ProtocolVersion::V311 {
                    // As for the ACL: 3.1.1 cannot refuse one publish, 5.0 QoS 0 has no ack.
                    return Err(Close::Violation(ReasonCode::QuotaExceeded, TEXT));
                }
                refused = Some((ReasonCode::QuotaExceeded, TEXT));
                record = None;
            }
        }
        let ack = PendingAck {
            qos: publish.qos,
            packet_id: publish.packet_id,
            retain: publish.retain,
            refused,
            retained: None,
        };
        self.ingest
            .get_or_insert_default()
            .queued
            .push((record, ack));
        Ok(())
    }

    /// Applies a 5.0 topic alias (§3.3.2.3.4): a PUBLISH with a topic sets
    /// the alias, one with an empty topic uses it.
    fn resolve_topic_alias(&mut self, alias: u16, topic: &mut String) -> Result<(), Close> {
        if alias == 0 || alias > self.broker.config.limits.topic_alias_maximum {
            return Err(Close::Violation(
                ReasonCode::TopicAliasInvalid,
                "topic alias 0 or above Topic Alias Maximum",
            ));
        }
        if topic.is_empty() {
            match self.aliases.get_or_insert_default().inbound.get(&alias) {
                Some(known) => topic.clone_from(known),
                None => {
                    return Err(Close::Violation(
                        ReasonCode::ProtocolError,
                        "topic alias used before it was set",
                    ))
                }
            }
        } else {
            self.aliases
                .get_or_insert_default()
                .inbound
                .insert(alias, topic.clone());
        }
        Ok(())
    }

    /// True when a QoS 2 publish with this id is on its way into the log.
    fn is_pending(&self, packet_id: u16) -> bool {
        let pending =
            |ack: &PendingAck| ack.qos == QoS::ExactlyOnce && ack.packet_id == Some(packet_id);
        self.ingest.as_ref().is_some_and(|ingest| {
            ingest.queued.iter().any(|(_, a)| pending(a))
                || ingest
                    .appending
                    .iter()
                    .any(|append| append.acks.iter().any(pending))
        })
    }

    /// Answers the publishes of a finished append: PUBACK/PUBREC once
    /// durable; when the log refused them, 5.0 clients get 0x97 Quota
    /// exceeded and 3.1.1 clients are disconnected unacknowledged, so they
    /// resend after reconnecting (principle 1 of docs/architecture.md).
    pub(super) fn appended(
        &mut self,
        held: &mut Held,
        (result, acks): (Result<Durable, NotDurable>, Acks),
    ) -> Result<(), Close> {
        let stored = match result {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(client_id = %self.client_id, error = %e, count = acks.len(), "publishes not stored");
                if acks.iter().all(|ack| ack.packet_id.is_none()) {
                    // QoS 0 promises nothing and owes no answer: dropped.
                    return Ok(());
                }
                let refusal = e.refusal();
                if self.version == ProtocolVersion::V311 {
                    return Err(Close::Violation(refusal.0, refusal.1));
                }
                for ack in acks {
                    self.answer(held, &ack, ack.refused.unwrap_or(refusal));
                }
                return Ok(());
            }
        };
        let mut offsets = match stored {
            Durable::InLog(offsets) => Some(offsets.into_iter()),
            // The retained map learns of retained messages from the local
            // log, which Kafka feeds; there is no local offset yet.
            Durable::InKafka => None,
        };
        for ack in acks {
            if let Some(refusal) = ack.refused {
                self.answer(held, &ack, refusal);
                continue;
            }
            if let Some(offsets) = offsets.as_mut() {
                let Some(offset) = offsets.next() else {
                    self.answer(held, &ack, (ReasonCode::UnspecifiedError, "not stored"));
                    continue;
                };
                if let Some(record) = &ack.retained {
                    self.broker.retained.apply(offset, record);
                }
            }
            self.answer(held, &ack, (ReasonCode::Success, ""));
        }
        Ok(())
    }

    fn answer(
        &mut self,
        held: &mut Held,
        ack: &PendingAck,
        (reason, text): (ReasonCode, &'static str),
    ) {
        let Some(packet_id) = ack.packet_id else {
            return;
        };
        let mut response = PubResp::success(packet_id);
        response.reason = reason;
        if reason.is_error() && self.problem_information {
            response.properties.reason_string = Some(text.to_string());
        }
        // The Receive Maximum quota comes back with PUBACK, or for QoS 2 with
        // PUBCOMP (5.0 §4.9) unless an error PUBREC ends the flow now.
        if ack.qos == QoS::AtLeastOnce || reason.is_error() {
            self.unacked_inbound = self.unacked_inbound.saturating_sub(1);
        }
        match ack.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.send(&Packet::PubAck(response));
            }
            QoS::ExactlyOnce => {
                if !reason.is_error() {
                    held.state.await_pubrel(packet_id);
                }
                self.send(&Packet::PubRec(response));
            }
        }
    }

    async fn on_subscribe(&mut self, held: &mut Held, subscribe: Subscribe) -> Result<(), Close> {
        let identifier = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let since = self.broker.log.end_offset();
        if !held.state.reads_log() {
            // Nothing older can match a first subscription: start reading here.
            held.state.read_pos = since;
        }
        let mut reasons = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained_for = Vec::new();
        for sub in subscribe.subscriptions {
            let shared = sub.filter.starts_with("$share/");
            if shared && sub.options.no_local {
                // 5.0 §3.8.3.1: No Local on a shared subscription is a protocol error.
                return Err(Close::Violation(
                    ReasonCode::ProtocolError,
                    "No Local set on a shared subscription",
                ));
            }
            let inner = crate::shared::inner_filter(&sub.filter).unwrap_or(&sub.filter);
            let max_subscriptions = self.broker.config.limits.max_subscriptions as usize;
            let reason = if !tributary_mqtt::topic::valid_topic_filter(&sub.filter) {
                ReasonCode::TopicFilterInvalid
            } else if max_subscriptions > 0
                && !held.state.subscriptions.contains_key(&sub.filter)
                && held.state.subscriptions.len() >= max_subscriptions
            {
                ReasonCode::QuotaExceeded
            } else if !crate::acl::may_subscribe(
                self.identity.as_deref(),
                &*self.broker.accounts,
                inner,
            ) {
                ReasonCode::NotAuthorized
            } else {
                let existed = held.state.subscriptions.contains_key(&sub.filter);
                let send_retained = match sub.options.retain_handling {
                    0 => true,
                    1 => !existed,
                    _ => false,
                };
                // Retained messages are not sent for shared subscriptions (5.0 §4.8.2).
                if send_retained && !shared {
                    retained_for.push((sub.filter.clone(), sub.options.qos as u8));
                }
                if shared && !existed {
                    self.broker.shared.hold(&sub.filter);
                    let sender = self.shared_sender();
                    self.broker.shared.join(&sub.filter, self.id, sender);
                }
                // Subscribing again replaces the options but must not
                // interrupt the flow (3.1.1 §3.8.4, 5.0 §3.8.4): messages
                // queued for the old subscription stay deliverable. A new
                // one starts where the router starts routing it.
                let since = match held.state.subscriptions.get(&sub.filter) {
                    Some(old) => Offset(old.since),
                    None if shared => since,
                    None => self.route_filter(held.state.persistent, &sub.filter),
                };
                let entry = Subscription::new(sub.filter.clone(), sub.options, identifier, since);
                held.state.subscriptions.insert(sub.filter, entry);
                match sub.options.qos {
                    QoS::AtMostOnce => ReasonCode::GRANTED_QOS0,
                    QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                    QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
                }
            };
            if reason.is_error() {
                tracing::info!(client_id = %self.client_id, ?reason, "subscription refused");
            }
            reasons.push(reason);
        }
        if held.state.persistent {
            // Durable before the acknowledgement, like every other promise.
            self.save_session(&held.state, true).await;
        }
        self.send(&Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            properties: Properties::default(),
            reasons,
        }));
        for (filter, qos) in retained_for {
            for record in self.broker.retained.matching(&filter) {
                self.send_retained(held, &record, qos, identifier);
            }
        }
        Ok(())
    }

    async fn on_unsubscribe(&mut self, held: &mut Held, unsubscribe: Unsubscribe) {
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            reasons.push(match held.state.subscriptions.remove(filter) {
                Some(sub) => {
                    if sub.is_shared() {
                        self.broker.shared.leave(filter, self.id);
                        self.broker.shared.release(filter);
                    } else if let Some(routed) = &self.routed {
                        routed.unsubscribe(filter);
                    }
                    ReasonCode::Success
                }
                None => ReasonCode::NoSubscriptionExisted,
            });
        }
        if held.state.subscriptions.values().all(|s| s.is_shared()) {
            // Nothing of its own left to route.
            self.routed = None;
        }
        if held.state.persistent {
            // Durable before the acknowledgement, like every other promise.
            self.save_session(&held.state, true).await;
        }
        self.send(&Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: Properties::default(),
            reasons,
        }));
    }
}
