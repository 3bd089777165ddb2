//! The control packets of MQTT 3.1.1 and 5.0 as one set of types.
//!
//! Both protocol versions share these types: fields that exist only in 5.0
//! (properties, most reason codes) are ignored when encoding for 3.1.1 and
//! left at their defaults when decoding 3.1.1.

use bytes::Bytes;

use crate::{Properties, ReasonCode};

/// The protocol level byte of CONNECT (3.1.1 §3.1.2.2, 5.0 §3.1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1, protocol level 4.
    V311,
    /// MQTT 5.0, protocol level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte sent in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }
}

/// Quality of service of a PUBLISH or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// `None` for 3, which every version forbids.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A packet identifier: never 0 on the wire (3.1.1 §2.3.1, 5.0 §2.2.1).
pub type PacketId = u16;

/// Any MQTT control packet.
// CONNECT is the largest variant (two `Properties`), but it arrives once per
// connection; boxing it would change the public shape every crate matches on
// for a copy of a few hundred bytes per decoded packet.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubResp),
    PubRec(PubResp),
    PubRel(PubResp),
    PubComp(PubResp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// 5.0 only.
    Auth(Auth),
}

impl Packet {
    /// The packet type's name as the spec writes it, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// CONNECT (3.1.1 §3.1, 5.0 §3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    /// "Clean Session" in 3.1.1, "Clean Start" in 5.0.
    pub clean_start: bool,
    /// Seconds; 0 turns keep-alive off.
    pub keep_alive: u16,
    /// May be empty: the server then assigns one (5.0) or, in 3.1.1, accepts it
    /// only together with a clean session.
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub properties: Properties,
}

/// The will message carried in CONNECT.
#[derive(Debug, Clone, PartialEq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// 5.0 will properties (will delay interval, message expiry, content type, …).
    pub properties: Properties,
}

/// CONNACK (3.1.1 §3.2, 5.0 §3.2).
///
/// `reason` is always a 5.0 reason code; encoding for 3.1.1 maps it onto the
/// six 3.1.1 return codes and decoding 3.1.1 maps back.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnAck {
    pub session_present: bool,
    pub reason: ReasonCode,
    pub properties: Properties,
}

/// PUBLISH (3.1.1 §3.3, 5.0 §3.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in 5.0 when a topic alias stands in for it.
    pub topic: String,
    /// `Some` exactly when `qos` is 1 or 2.
    pub packet_id: Option<PacketId>,
    pub properties: Properties,
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq)]
pub struct PubResp {
    pub packet_id: PacketId,
    /// Always `Success` in 3.1.1.
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl PubResp {
    /// A successful response without properties.
    pub fn success(packet_id: PacketId) -> PubResp {
        PubResp {
            packet_id,
            reason: ReasonCode::Success,
            properties: Properties::default(),
        }
    }
}

/// The options byte of each SUBSCRIBE entry (5.0 §3.8.3.1; 3.1.1 has only QoS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained on subscribe; 1: only if the subscription is new; 2: never.
    pub retain_handling: u8,
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// Valid UTF-8 without U+0000, but not yet checked as a topic filter: the
    /// broker answers an invalid filter with a SUBACK failure for that entry.
    pub filter: String,
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE (3.1.1 §3.8, 5.0 §3.8).
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    pub properties: Properties,
    /// Never empty (a SUBSCRIBE without filters is a protocol error).
    pub subscriptions: Vec<Subscription>,
}

/// SUBACK (3.1.1 §3.9, 5.0 §3.9).
///
/// Reason codes are 5.0 codes (`GrantedQoS0..2` or a failure); 3.1.1 encodes
/// every failure as 0x80.
#[derive(Debug, Clone, PartialEq)]
pub struct SubAck {
    pub packet_id: PacketId,
    pub properties: Properties,
    pub reasons: Vec<ReasonCode>,
}

/// UNSUBSCRIBE (3.1.1 §3.10, 5.0 §3.10).
#[derive(Debug, Clone, PartialEq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    pub properties: Properties,
    /// Never empty.
    pub filters: Vec<String>,
}

/// UNSUBACK (3.1.1 §3.11, 5.0 §3.11). 3.1.1 carries no reason codes.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsubAck {
    pub packet_id: PacketId,
    pub properties: Properties,
    pub reasons: Vec<ReasonCode>,
}

/// DISCONNECT (3.1.1 §3.14, 5.0 §3.14). 3.1.1 carries no reason code.
#[derive(Debug, Clone, PartialEq)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Disconnect {
    pub fn new(reason: ReasonCode) -> Disconnect {
        Disconnect {
            reason,
            properties: Properties::default(),
        }
    }
}

/// AUTH (5.0 §3.15).
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: Properties,
}
