//! Delivery: log records that match the session's subscriptions (found by
//! the node's router, or read from the log while catching up), sent to the client.

use std::sync::Arc;

use tributary_log::{Offset, Record};
use tributary_mqtt::{PacketId, Properties, ProtocolVersion, PublishHeader, QoS};
use tributary_rights::owner_keys::Opener;

use super::{Close, Connection};
use crate::keys;
use crate::reader::{self, ForReader};
use crate::session::{Held, Outbound, OutboundMessage, OutboundState};
use crate::shared::SharedDelivery;
use tributary_router::Next;

/// Where an outgoing message comes from, which decides what its
/// acknowledgement releases.
enum Origin {
    /// The session's own reading of the log: holds the session cursor.
    Log(Offset),
    /// The same, for a QoS 2 delivery carried over from where the session
    /// was before: sent again with DUP under the packet id it had.
    LogAgain(Offset, PacketId),
    /// A retained message sent on subscribe: holds nothing.
    Retained,
    /// A shared subscription group's message: acknowledged to the group.
    Shared(Arc<str>, Offset),
}

/// What an outgoing PUBLISH's payload is made of.
enum Payload {
    /// The record's payload as it is (a copy already opened for a reader
    /// the consent filter or the audit saw).
    Plain,
    /// The record as the log holds it: sealed payloads are opened (or taken
    /// from the plaintexts this node kept), unless the owner was erased.
    AsLogged,
}

/// Records read from the log per delivery round.
const DELIVERY_BATCH: usize = 256;

impl Connection {
    /// Sends what the session has to deliver, until the outbound window or
    /// the write buffer is full: the log from the session's cursor up to
    /// where its routing started, then what the router put in its inbox.
    pub(super) async fn deliver(&mut self, held: &mut Held) -> Result<(), Close> {
        let Some(scan_until) = self.routed.as_ref().map(|r| r.scan_until) else {
            return Ok(());
        };
        if held.state.read_pos < scan_until {
            return self.deliver_from_log(held, scan_until).await;
        }
        let max_buffer = self.broker.config.limits.max_write_buffer;
        while held.state.outbound.len() < self.outbound_window as usize
            && self.wbuf.len() < max_buffer
        {
            let Some(routed) = self.routed.as_mut() else {
                return Ok(());
            };
            match routed.next() {
                Next::Record(offset, record) => {
                    if offset >= held.state.read_pos {
                        self.deliver_record(held, offset, &record);
                    }
                }
                Next::CaughtUp(to) => {
                    held.state.read_pos = held.state.read_pos.max(to);
                    return Ok(());
                }
                Next::Closed => return Ok(()), // shutting down
                Next::Overflowed => {
                    // The next round reads the log up to where routing resumes.
                    let from = routed.rearm();
                    tracing::debug!(client_id = %self.client_id, read_pos = held.state.read_pos.0, until = from.0, "inbox overflowed: reading the log");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Reads the log from the session's position up to `until` and sends
    /// what matches, until the outbound window or the write buffer is full.
    async fn deliver_from_log(&mut self, held: &mut Held, until: Offset) -> Result<(), Close> {
        let max_buffer = self.broker.config.limits.max_write_buffer;
        let from = held.state.read_pos;
        let batch = match self.broker.log.read(from, DELIVERY_BATCH).await {
            Ok(batch) => batch,
            Err(tributary_log::Error::OffsetOutOfRange { start, .. }) => {
                // Retention deleted what the session had not read: it was
                // away (or slow) past `log.max_bytes` or `max_age`.
                let skipped = start.saturating_sub(from.0);
                tracing::warn!(client_id = %self.client_id, from = from.0, start, skipped, "session fell behind the log's retention: its oldest messages are gone");
                self.broker.stats.add_skipped(skipped);
                held.state.read_pos = Offset(start);
                return Ok(());
            }
            Err(e) => {
                tracing::error!(client_id = %self.client_id, error = %e, "read the log for delivery");
                return Err(Close::Shutdown);
            }
        };
        for (offset, record) in batch {
            if offset >= until {
                break;
            }
            if held.state.outbound.len() >= self.outbound_window as usize
                || self.wbuf.len() >= max_buffer
            {
                break;
            }
            self.deliver_record(held, offset, &record);
        }
        Ok(())
    }

    /// Sends one log record if the session's subscriptions match it, and
    /// moves the session's cursor past it.
    fn deliver_record(&mut self, held: &mut Held, offset: Offset, record: &Arc<Record>) {
        if let Some(route) = held.state.route(offset, &record.topic, &record.client_id) {
            let mut origin = Origin::Log(offset);
            if !held.state.carried().is_empty() {
                match held.state.carried_for(record.message_id) {
                    Some(flow) if flow.released => {
                        // The client has it; only its PUBCOMP is owed.
                        held.state.read_pos = Offset(offset.0 + 1);
                        return;
                    }
                    Some(flow) => origin = Origin::LogAgain(offset, flow.packet_id),
                    None => {}
                }
            }
            let qos = route.qos_for(record.qos);
            let retain = route.retain_as_published && record.retain;
            self.send_record(held, origin, record, qos, retain, &route.identifiers);
        }
        held.state.read_pos = Offset(offset.0 + 1);
    }

    /// Sends the retained messages matching a new subscription (retain flag set).
    pub(super) fn send_retained(
        &mut self,
        held: &mut Held,
        record: &Arc<Record>,
        granted: u8,
        identifier: Option<u32>,
    ) {
        let qos = QoS::from_u8(granted.min(record.qos)).unwrap_or(QoS::AtMostOnce);
        let identifiers: Vec<u32> = identifier.into_iter().collect();
        self.send_record(held, Origin::Retained, record, qos, true, &identifiers);
    }

    /// Sends a message a shared subscription group handed to this connection.
    pub(super) fn send_shared(&mut self, held: &mut Held, delivery: SharedDelivery) {
        let Some(sub) = held.state.subscriptions.get(&*delivery.key) else {
            // Unsubscribed meanwhile: the group takes it back via `leave`.
            return;
        };
        let qos = QoS::from_u8(sub.qos.min(delivery.record.qos)).unwrap_or(QoS::AtMostOnce);
        let identifiers: Vec<u32> = sub.identifier.into_iter().collect();
        let origin = Origin::Shared(delivery.key.clone(), delivery.offset);
        if !self.send_record(held, origin, &delivery.record, qos, false, &identifiers) {
            // Sent at QoS 0, expired, or too large for the client: done with it.
            self.broker
                .shared
                .ack(&delivery.key, self.id, delivery.offset);
        }
    }

    /// Sends one record as PUBLISH, tracking it until acknowledged when
    /// QoS > 0. Returns true when the message now awaits the client's
    /// acknowledgement.
    fn send_record(
        &mut self,
        held: &mut Held,
        origin: Origin,
        record: &Arc<Record>,
        qos: QoS,
        retain: bool,
        identifiers: &[u32],
    ) -> bool {
        if self.broker.erased(record) {
            return false; // its device or time range was erased: done with it
        }
        // A service reads only what consents allow, an admin is audited
        // (docs/consent.md); a cut copy is what the session keeps for a
        // resend, so a resend never carries more than the first sending.
        //
        // The payload is opened first (docs/erasure.md): the consent filter
        // reads the measurements, and a sealed payload shows none. A reader
        // that is filtered or audited gets an opened copy of the record; the
        // others get the payload opened straight into the write buffer.
        let (record, audited, payload) = if reader::reads_for_others(self.identity.as_deref()) {
            let Some(opened) = self.broker.opened_payload(record) else {
                return false; // its owner was erased, or it does not open (logged)
            };
            let plain = match opened {
                std::borrow::Cow::Owned(plain) => Arc::new(Record {
                    payload: plain.into(),
                    ..(**record).clone()
                }),
                std::borrow::Cow::Borrowed(_) => record.clone(),
            };
            match reader::for_reader(&self.broker.consents, self.identity.as_deref(), &plain) {
                ForReader::Free => (plain, None, Payload::Plain),
                ForReader::Send(record, audited) => (record, Some(audited), Payload::Plain),
                ForReader::Withheld => return false,
            }
        } else {
            (record.clone(), None, Payload::AsLogged)
        };
        let record = &record;
        let Some(properties) = self.outgoing_properties(record, identifiers) else {
            return false; // expired
        };
        let again = match origin {
            Origin::LogAgain(_, id) => Some(id),
            _ => None,
        };
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            match again.or_else(|| held.state.allocate_packet_id()) {
                Some(id) => Some(id),
                None => return false,
            }
        };
        let header = PublishHeader {
            dup: again.is_some(),
            qos,
            retain,
            packet_id,
        };
        if !self.send_publish(header, record, payload, properties) {
            return false; // erased, unopenable (logged) or too large
        }
        if let Some(audited) = &audited {
            reader::audit_sent(
                &self.broker.audit,
                self.identity.as_deref(),
                self.client_id.as_str(),
                record,
                audited,
            );
        }
        let Some(id) = packet_id else { return false };
        let state = if qos == QoS::AtLeastOnce {
            OutboundState::ExpectPubAck
        } else {
            OutboundState::ExpectPubRec
        };
        let (offset, shared) = match origin {
            Origin::Log(offset) | Origin::LogAgain(offset, _) => (Some(offset), None),
            Origin::Retained => (None, None),
            Origin::Shared(key, offset) => (None, Some((key, offset))),
        };
        let message = OutboundMessage {
            record: record.clone(),
            qos,
            retain,
            identifiers: identifiers.to_vec(),
        };
        held.state.outbound.insert(
            id,
            Outbound {
                offset,
                state,
                message,
                shared,
            },
        );
        true
    }

    /// Sends an unacknowledged message again after a reconnect, with DUP.
    pub(super) fn resend(&mut self, packet_id: u16, message: &OutboundMessage) {
        // Erased since it was first sent (its owner, its device or its time
        // range): not sent again. The client never acknowledges it; the
        // session forgets it when it ends.
        if self.broker.erased(&message.record) {
            return;
        }
        let properties = self
            .outgoing_properties(&message.record, &message.identifiers)
            .unwrap_or_default();
        let header = PublishHeader {
            dup: true,
            qos: message.qos,
            retain: message.retain,
            packet_id: Some(packet_id),
        };
        self.send_publish(header, &message.record, Payload::AsLogged, properties);
    }

    /// The properties a record goes out with on this connection, or `None`
    /// when its Message Expiry Interval has passed (5.0 §3.3.2.3.3: the
    /// interval sent on is what remains). 3.1.1 clients get none.
    fn outgoing_properties(&self, record: &Record, identifiers: &[u32]) -> Option<Properties> {
        if record.properties.is_empty()
            && (identifiers.is_empty() || self.version == ProtocolVersion::V311)
        {
            return Some(Properties::default());
        }
        let mut properties = tributary_mqtt::stored::load_properties(&record.properties);
        if let Some(expiry) = properties.message_expiry_interval {
            let age_secs = crate::persist::unix_ms().saturating_sub(record.receive_time_ms) / 1000;
            match u32::try_from(age_secs)
                .ok()
                .and_then(|age| expiry.checked_sub(age))
            {
                Some(remaining) if remaining > 0 => {
                    properties.message_expiry_interval = Some(remaining)
                }
                _ => return None,
            }
        }
        if self.version == ProtocolVersion::V311 {
            return Some(Properties::default());
        }
        properties.subscription_identifiers = identifiers.to_vec();
        Some(properties)
    }

    /// Encodes a PUBLISH into the write buffer, replacing the topic by a
    /// topic alias when the client accepts them (5.0 Topic Alias Maximum >
    /// 0): an alias already set stands in for the topic; a new one is set
    /// while aliases remain. Returns false when the packet was not sent:
    /// its owner was erased (counted), it does not open (logged), or it is
    /// above the client's Maximum Packet Size.
    fn send_publish(
        &mut self,
        header: PublishHeader,
        record: &Record,
        payload: Payload,
        mut properties: Properties,
    ) -> bool {
        let topic = record.topic.as_str();
        let mut wire_topic = topic;
        let mut new_alias = None;
        if self.client_topic_alias_maximum > 0 {
            let known = self.aliases.as_ref().map(|a| &a.outbound);
            if let Some(alias) = known.and_then(|known| known.get(topic)) {
                properties.topic_alias = Some(*alias);
                wire_topic = "";
            } else {
                let used = known.map_or(0, |known| known.len());
                if used < usize::from(self.client_topic_alias_maximum) {
                    let alias = used as u16 + 1;
                    properties.topic_alias = Some(alias);
                    new_alias = Some(alias);
                }
            }
        }
        let start = self.wbuf.len();
        let encoded = match payload {
            Payload::Plain => self.encode_publish(header, wire_topic, &properties, &record.payload),
            Payload::AsLogged => match self.encode_kept(header, wire_topic, &properties, record) {
                // Sealed on this node a moment ago: no need to open it again.
                Some(encoded) => encoded,
                None => match self.encode_opened(header, wire_topic, &properties, record) {
                    Some(encoded) => encoded,
                    None => return false, // erased (counted), or does not open (logged)
                },
            },
        };
        if !self.keep_encoded(start, encoded) {
            return false;
        }
        if let Some(alias) = new_alias {
            self.aliases
                .get_or_insert_default()
                .outbound
                .insert(topic.to_owned(), alias);
        }
        self.unreported_sent = self.unreported_sent.saturating_add(1);
        true
    }

    /// Appends a PUBLISH of `record`'s plaintext to the write buffer if
    /// this node kept it when it sealed the record, and no erasure reached
    /// the node since (plaintexts.rs); `None` when it did not.
    fn encode_kept(
        &mut self,
        header: PublishHeader,
        topic: &str,
        properties: &Properties,
        record: &Record,
    ) -> Option<tributary_mqtt::Result<()>> {
        let recent = self.broker.recent_plaintexts.as_ref()?;
        let erasures = self.broker.keyring.get()?.erasures();
        let (version, wbuf) = (self.version, &mut self.wbuf);
        recent.with(record, erasures, |plaintext| {
            tributary_mqtt::encode_publish_parts(
                header, topic, properties, plaintext, version, wbuf,
            )
        })
    }

    /// Appends a PUBLISH of `record` as the log holds it to the write
    /// buffer, a sealed payload opened straight into it; `None` (nothing
    /// appended) when it must not go out: its owner was erased (counted),
    /// or its key is unreadable or it does not open (logged).
    fn encode_opened(
        &mut self,
        header: PublishHeader,
        topic: &str,
        properties: &Properties,
        record: &Record,
    ) -> Option<tributary_mqtt::Result<()>> {
        match self.broker.payload_opener(record)? {
            Opener::Plain => Some(self.encode_publish(header, topic, properties, &record.payload)),
            Opener::Key(key) => {
                let start = self.wbuf.len();
                let head = tributary_mqtt::encode_publish_head(
                    header,
                    topic,
                    properties,
                    keys::plaintext_len(record.payload.len()),
                    self.version,
                    &mut self.wbuf,
                );
                if head.is_ok() && !keys::open_into(&key, record, &mut self.wbuf) {
                    self.wbuf.truncate(start);
                    return None;
                }
                Some(head)
            }
            Opener::KeyGone => None, // never returned: an erased owner's is not sent
        }
    }

    /// Appends a PUBLISH of `payload` to the write buffer.
    fn encode_publish(
        &mut self,
        header: PublishHeader,
        topic: &str,
        properties: &Properties,
        payload: &[u8],
    ) -> tributary_mqtt::Result<()> {
        tributary_mqtt::encode_publish_parts(
            header,
            topic,
            properties,
            payload,
            self.version,
            &mut self.wbuf,
        )
    }
}
