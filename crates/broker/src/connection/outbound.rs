//! Delivery: log records that match the session's subscriptions, sent to the client.

use std::sync::Arc;

use tributary_log::{Offset, Record};
use tributary_mqtt::{Packet, ProtocolVersion, Publish, QoS};

use super::{Close, Connection};
use crate::session::{Held, Outbound, OutboundState};

/// Records read from the log per delivery round.
const DELIVERY_BATCH: usize = 256;

impl Connection {
    /// Reads the log from the session's position and sends what matches,
    /// until the outbound window or the write buffer is full.
    pub(super) async fn deliver(&mut self, held: &mut Held) -> Result<(), Close> {
        let max_buffer = self.broker.config.limits.max_write_buffer;
        let from = held.state.read_pos;
        let batch = match self.broker.log.read(from, DELIVERY_BATCH).await {
            Ok(batch) => batch,
            Err(tributary_log::Error::OffsetOutOfRange { start, .. }) => {
                // Retention keeps what sessions need, so this means the
                // session was restored from before a deleted segment.
                tracing::error!(client_id = %self.client_id, from = from.0, start, "session cursor was behind the log start");
                held.state.read_pos = Offset(start);
                return Ok(());
            }
            Err(e) => {
                tracing::error!(client_id = %self.client_id, error = %e, "read the log for delivery");
                return Err(Close::Shutdown);
            }
        };
        for (offset, record) in batch {
            let Some(route) = held.state.route(offset, &record.topic, &record.client_id) else {
                held.state.read_pos = Offset(offset.0 + 1);
                continue;
            };
            let qos = route.qos_for(record.qos);
            if (qos != QoS::AtMostOnce && held.state.outbound.len() >= self.outbound_window)
                || self.wbuf.len() >= max_buffer
            {
                break;
            }
            let retain = route.retain_as_published && record.retain;
            self.send_record(held, Some(offset), &record, qos, retain, &route.identifiers);
            held.state.read_pos = Offset(offset.0 + 1);
        }
        Ok(())
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
        self.send_record(held, None, record, qos, true, &identifiers);
    }

    fn send_record(
        &mut self,
        held: &mut Held,
        offset: Option<Offset>,
        record: &Record,
        qos: QoS,
        retain: bool,
        identifiers: &[u32],
    ) {
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            match held.state.allocate_packet_id() {
                Some(id) => Some(id),
                None => return,
            }
        };
        let mut properties = match self.version {
            ProtocolVersion::V5 => crate::wire::load_properties(&record.properties),
            ProtocolVersion::V311 => Default::default(),
        };
        if self.version == ProtocolVersion::V5 {
            properties.subscription_identifiers = identifiers.to_vec();
        }
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic: record.topic.clone(),
            packet_id,
            properties,
            payload: record.payload.clone(),
        };
        let sent = self.send(&Packet::Publish(publish.clone()));
        if let (true, Some(id)) = (sent, packet_id) {
            let state = if qos == QoS::AtLeastOnce {
                OutboundState::ExpectPubAck
            } else {
                OutboundState::ExpectPubRec
            };
            held.state.outbound.insert(
                id,
                Outbound {
                    offset,
                    state,
                    publish,
                },
            );
        }
    }
}
