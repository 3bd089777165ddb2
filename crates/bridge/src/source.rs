//! The source broker: a persistent session with QoS 1 subscriptions, so the
//! source queues messages while the bridge is away, and the translation of
//! its PUBLISHes into log records.
//!
//! The MQTT client itself (TCP or TLS, CONNECT/CONNACK, cancel-safe packet
//! reader and writer) is `tributary-client`, shared with `tributary bench`.

use tributary_client::{Client, Connector, SessionStart};
use tributary_log::{MessageIds, Record};
use tributary_mqtt::{
    PacketId, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubAck, Subscribe,
    Subscription, SubscriptionOptions,
};

use crate::{BridgeConfig, Error, Result};

/// Packet id of the SUBSCRIBE sent on every connection (the only packet id
/// the bridge itself ever uses).
pub(crate) const SUBSCRIBE_ID: PacketId = 1;

pub(crate) struct Source {
    connector: Connector,
    name: String,
    client_id: String,
    protocol: ProtocolVersion,
    filters: Vec<String>,
    message_ids: MessageIds,
}

impl Source {
    pub fn new(config: &BridgeConfig) -> Result<Source> {
        Ok(Source {
            connector: Connector::new(&config.connect_options())?,
            name: config.source.to_string(),
            client_id: config.client_id.clone(),
            protocol: config.protocol,
            filters: config.filters.clone(),
            message_ids: MessageIds::new(),
        })
    }

    /// The source as the operator named it, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connects to the persistent session and queues the SUBSCRIBE; the
    /// SUBACK arrives among the queued PUBLISHes the source sends at once.
    ///
    /// Subscribing again on every connection keeps a session the source
    /// lost (a restart without persistence) working; a subscription the
    /// session already has keeps its queued messages (3.8.4).
    pub async fn connect(&self) -> Result<Client> {
        let mut client = self
            .connector
            .connect(&self.client_id, SessionStart::Persistent)
            .await
            .map_err(|e| match e {
                tributary_client::Error::Refused(reason) => Error::Refused {
                    addr: self.name.clone(),
                    reason,
                    version: self.protocol,
                },
                other => Error::Source(other),
            })?;
        client
            .writer
            .queue(&tributary_mqtt::Packet::Subscribe(self.subscribe()))?;
        Ok(client)
    }

    fn subscribe(&self) -> Subscribe {
        let options = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            // 5.0: keep the publisher's retain flag, and send retained
            // messages only when the subscription is new, not again on
            // every reconnect. (3.1.1 has neither: a reconnect brings the
            // retained messages again.)
            retain_as_published: true,
            retain_handling: 1,
            no_local: false,
        };
        Subscribe {
            packet_id: SUBSCRIBE_ID,
            properties: Properties::default(),
            subscriptions: self
                .filters
                .iter()
                .map(|filter| Subscription {
                    filter: filter.clone(),
                    options,
                })
                .collect(),
        }
    }

    /// Every filter must be granted; a filter granted only QoS 0 is logged,
    /// as its messages can be lost on the source's side.
    pub fn check_suback(&self, ack: &SubAck) -> Result<()> {
        let mut refused = Vec::new();
        for (i, filter) in self.filters.iter().enumerate() {
            let reason = ack
                .reasons
                .get(i)
                .copied()
                .unwrap_or(ReasonCode::UnspecifiedError);
            if reason.is_error() {
                refused.push((filter.clone(), reason));
            } else if reason == ReasonCode::GRANTED_QOS0 {
                tracing::warn!(%filter, "the source granted only QoS 0: its messages are not redelivered if the bridge fails");
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(Error::SubscribeRefused {
                refused,
                version: self.protocol,
            })
        }
    }

    /// The log record of a PUBLISH from the source. The source's identities
    /// are not Tributary's: owner and device stay empty and the client id is
    /// the bridge's.
    pub fn record(&self, publish: Publish, receive_time_ms: u64) -> Result<Record> {
        if publish.topic.is_empty() {
            // We announce no Topic Alias Maximum, so the source may not use aliases.
            return Err(Error::Unexpected("a PUBLISH without a topic name".into()));
        }
        Ok(Record {
            receive_time_ms,
            topic: publish.topic,
            qos: publish.qos as u8,
            retain: publish.retain,
            properties: tributary_mqtt::stored::stored_properties(&publish.properties),
            payload: publish.payload,
            client_id: self.client_id.clone(),
            message_id: self.message_ids.next(),
            owner: String::new(),
            device: String::new(),
        })
    }
}
