//! [`TestClient`]: an MQTT client for tests, straight on the codec, so a
//! test sends exactly the packets it means (wills, properties, each step of
//! a QoS 2 exchange) and checks every packet the broker answers with.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tributary_mqtt::{
    decode, encode, ConnAck, Connect, Disconnect, Packet, PacketId, Properties, ProtocolVersion,
    PubResp, Publish, QoS, ReasonCode, SubAck, Subscribe, Subscription, SubscriptionOptions, Will,
};

use crate::{Error, Result};

/// How long a test waits for a packet before failing, on the runtime's
/// clock. Generous: it only bounds a test that is failing anyway.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest packet accepted from the broker.
const MAX_PACKET: usize = 1024 * 1024;

/// A byte stream to the broker: a TCP socket or one end of an in-memory pipe.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A CONNECT for a session that ends with the connection: 3.1.1 Clean
/// Session, 5.0 Clean Start without Session Expiry Interval. No keep-alive,
/// so that no test is cut off by it unless it asks for one.
pub fn clean(protocol: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 0,
        client_id: client_id.to_owned(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

/// A CONNECT that resumes (or creates) a session the broker keeps after
/// the connection: 3.1.1 Clean Session off, 5.0 Clean Start off with a
/// Session Expiry Interval of `expiry_secs` (ignored by 3.1.1, whose
/// sessions expire after the broker's `limits.max_session_expiry_secs`).
pub fn persistent(protocol: ProtocolVersion, client_id: &str, expiry_secs: u32) -> Connect {
    let mut connect = clean(protocol, client_id);
    connect.clean_start = false;
    if protocol == ProtocolVersion::V5 {
        connect.properties.session_expiry_interval = Some(expiry_secs);
    }
    connect
}

/// A QoS 1 will, not retained; a test sets 5.0 properties (Will Delay
/// Interval) on the result.
pub fn will(topic: &str, payload: &'static [u8]) -> Will {
    Will {
        topic: topic.to_owned(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    }
}

/// One connection to the broker, past its CONNECT.
pub struct TestClient {
    stream: Box<dyn Io>,
    version: ProtocolVersion,
    /// Bytes read but not yet decoded: a packet may arrive in pieces.
    rbuf: BytesMut,
    next_packet_id: PacketId,
}

impl TestClient {
    /// Sends `connect` over `stream` and reads the broker's answer (for a
    /// test that opens the connection itself, e.g. in a spawned task).
    pub async fn handshake(stream: Box<dyn Io>, connect: Connect) -> Result<(TestClient, ConnAck)> {
        let mut client = TestClient {
            stream,
            version: connect.protocol,
            rbuf: BytesMut::new(),
            next_packet_id: 1,
        };
        client.send(&Packet::Connect(connect)).await?;
        let connack = match client.expect("CONNACK").await? {
            Packet::ConnAck(ack) => ack,
            other => return Err(unexpected("CONNACK", other)),
        };
        Ok((client, connack))
    }

    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Encodes and writes one packet.
    pub async fn send(&mut self, packet: &Packet) -> Result<()> {
        let mut buf = BytesMut::new();
        encode(packet, self.version, &mut buf).map_err(Error::Encode)?;
        self.stream.write_all(&buf).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// The next packet from the broker, within [`RECV_TIMEOUT`]; `None`
    /// when the broker closed the connection.
    pub async fn next(&mut self) -> Result<Option<Packet>> {
        tokio::time::timeout(RECV_TIMEOUT, self.read_packet())
            .await
            .map_err(|_| Error::Timeout {
                waiting_for: "a packet",
                within: RECV_TIMEOUT,
            })?
    }

    async fn read_packet(&mut self) -> Result<Option<Packet>> {
        loop {
            match decode(&self.rbuf, self.version, MAX_PACKET) {
                Ok((packet, used)) => {
                    let _ = self.rbuf.split_to(used);
                    return Ok(Some(packet));
                }
                Err(tributary_mqtt::Error::Incomplete { .. }) => {}
                Err(e) => return Err(Error::Protocol(e)),
            }
            // A reset counts as closed: the broker may drop the socket
            // right after its last word.
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next packet, which the test expects to be `expected`: a timeout
    /// or a closed connection is reported as failing to get it.
    pub async fn expect(&mut self, expected: &'static str) -> Result<Packet> {
        match self.next().await {
            Ok(Some(packet)) => Ok(packet),
            Ok(None) => Err(Error::Closed {
                waiting_for: expected,
            }),
            Err(Error::Timeout { within, .. }) => Err(Error::Timeout {
                waiting_for: expected,
                within,
            }),
            Err(e) => Err(e),
        }
    }

    pub async fn expect_publish(&mut self) -> Result<Publish> {
        match self.expect("PUBLISH").await? {
            Packet::Publish(publish) => Ok(publish),
            other => Err(unexpected("PUBLISH", other)),
        }
    }

    pub async fn expect_puback(&mut self) -> Result<PubResp> {
        match self.expect("PUBACK").await? {
            Packet::PubAck(ack) => Ok(ack),
            other => Err(unexpected("PUBACK", other)),
        }
    }

    pub async fn expect_pubrec(&mut self) -> Result<PubResp> {
        match self.expect("PUBREC").await? {
            Packet::PubRec(rec) => Ok(rec),
            other => Err(unexpected("PUBREC", other)),
        }
    }

    pub async fn expect_pubrel(&mut self) -> Result<PubResp> {
        match self.expect("PUBREL").await? {
            Packet::PubRel(rel) => Ok(rel),
            other => Err(unexpected("PUBREL", other)),
        }
    }

    pub async fn expect_pubcomp(&mut self) -> Result<PubResp> {
        match self.expect("PUBCOMP").await? {
            Packet::PubComp(comp) => Ok(comp),
            other => Err(unexpected("PUBCOMP", other)),
        }
    }

    pub async fn expect_pingresp(&mut self) -> Result<()> {
        match self.expect("PINGRESP").await? {
            Packet::PingResp => Ok(()),
            other => Err(unexpected("PINGRESP", other)),
        }
    }

    /// Reads until the broker closes the connection; returns the
    /// DISCONNECT it sent first, if any (5.0 only).
    pub async fn expect_closed(&mut self) -> Result<Option<Disconnect>> {
        let disconnect = match self.next().await? {
            None => return Ok(None),
            Some(Packet::Disconnect(disconnect)) => disconnect,
            Some(other) => {
                return Err(unexpected("DISCONNECT or the end of the connection", other))
            }
        };
        match self.next().await? {
            None => Ok(Some(disconnect)),
            Some(other) => Err(unexpected(
                "the end of the connection after DISCONNECT",
                other,
            )),
        }
    }

    /// Subscribes to one filter and returns the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<SubAck> {
        let packet_id = self.packet_id();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter: filter.to_owned(),
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            }],
        }))
        .await?;
        match self.expect("SUBACK").await? {
            Packet::SubAck(ack) if ack.packet_id == packet_id => Ok(ack),
            other => Err(unexpected("SUBACK", other)),
        }
    }

    /// Sends a PUBLISH (with a fresh packet id at QoS 1 and 2) and returns
    /// its packet id; the test reads the acknowledgements.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &'static [u8],
        qos: QoS,
    ) -> Result<Option<PacketId>> {
        let packet_id = (qos != QoS::AtMostOnce).then(|| self.packet_id());
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.to_owned(),
            packet_id,
            properties: Properties::default(),
            payload: Bytes::from_static(payload),
        }))
        .await?;
        Ok(packet_id)
    }

    /// Publishes and completes the acknowledgement exchange of its QoS:
    /// once this returns, the broker has the message in its log. Returns
    /// the reason code of PUBACK or PUBREC (Success at QoS 0).
    pub async fn publish_stored(
        &mut self,
        topic: &str,
        payload: &'static [u8],
        qos: QoS,
    ) -> Result<ReasonCode> {
        let packet_id = self.publish(topic, payload, qos).await?;
        let Some(packet_id) = packet_id else {
            return Ok(ReasonCode::Success);
        };
        if qos == QoS::AtLeastOnce {
            return Ok(self.expect_puback().await?.reason);
        }
        let rec = self.expect_pubrec().await?;
        self.send(&Packet::PubRel(PubResp::success(packet_id)))
            .await?;
        self.expect_pubcomp().await?;
        Ok(rec.reason)
    }

    /// Acknowledges a delivered PUBLISH as its QoS asks: PUBACK, or PUBREC
    /// then (after the broker's PUBREL) PUBCOMP.
    pub async fn ack(&mut self, publish: &Publish) -> Result<()> {
        let Some(packet_id) = publish.packet_id else {
            return Ok(());
        };
        if publish.qos == QoS::AtLeastOnce {
            return self
                .send(&Packet::PubAck(PubResp::success(packet_id)))
                .await;
        }
        self.send(&Packet::PubRec(PubResp::success(packet_id)))
            .await?;
        self.expect_pubrel().await?;
        self.send(&Packet::PubComp(PubResp::success(packet_id)))
            .await
    }

    /// Ends the connection properly (DISCONNECT Normal disconnection): the
    /// broker discards the will.
    pub async fn disconnect(self) -> Result<()> {
        self.disconnect_with(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION))
            .await
    }

    /// Ends the connection with the given DISCONNECT (5.0: Disconnect with
    /// Will Message, a new Session Expiry Interval).
    pub async fn disconnect_with(mut self, disconnect: Disconnect) -> Result<()> {
        self.send(&Packet::Disconnect(disconnect)).await?;
        self.stream.shutdown().await?;
        // Waiting for the broker's close makes "disconnected" a fact for
        // whatever the test does next (reconnect, publish while away).
        match self.next().await? {
            None => Ok(()),
            Some(other) => Err(unexpected(
                "the end of the connection after DISCONNECT",
                other,
            )),
        }
    }

    /// Closes the byte stream without DISCONNECT, as a client that lost its
    /// network does: the broker publishes the will.
    pub fn drop_connection(self) {
        drop(self);
    }

    fn packet_id(&mut self) -> PacketId {
        let id = self.next_packet_id;
        self.next_packet_id = id.checked_add(1).unwrap_or(1);
        id
    }
}

fn unexpected(expected: &'static str, got: Packet) -> Error {
    Error::Unexpected {
        expected,
        got: Box::new(got),
    }
}
