//! Decoding and encoding errors, grouped by who is at fault.

use crate::ReasonCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not an error of the peer: the buffer holds only part of a packet.
    /// `needed` is a lower bound of the bytes still missing.
    #[error("need at least {needed} more bytes")]
    Incomplete { needed: usize },

    // The peer misbehaved.
    /// Bytes that cannot be parsed as the spec says (bad remaining length,
    /// reserved bits set, invalid UTF-8, QoS 3, truncated fields, …).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well-formed bytes that break a protocol rule (packet id 0, a property
    /// not allowed here, a duplicate property, empty SUBSCRIBE, …).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The remaining length announces a packet above the configured maximum;
    /// detected from the fixed header alone, before the body arrives.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge { size: usize, max: usize },
    /// A PUBLISH topic name with wildcards or other invalid content.
    #[error("invalid topic name")]
    TopicNameInvalid,
    /// A PUBLISH with Topic Alias 0 (5.0 §3.3.2.3.4).
    #[error("topic alias 0")]
    TopicAliasInvalid,

    // Unsupported.
    /// CONNECT with a protocol name or level other than MQTT 3.1.1 or 5.0.
    #[error("unsupported protocol version {0}")]
    UnsupportedProtocolVersion(u8),

    // Our own fault when encoding.
    /// A field too long for its length prefix (strings over 65,535 bytes,
    /// packets over 268,435,455 bytes), or a packet the peer's decoder would
    /// refuse (packet id 0, a property or reason code the packet type may not
    /// carry, QoS > 0 without a packet id, …).
    #[error("cannot encode: {0}")]
    Encode(&'static str),
}

impl From<&Error> for ReasonCode {
    /// The reason code a 5.0 server sends (in CONNACK or DISCONNECT) when it
    /// fails to decode a packet with this error.
    fn from(error: &Error) -> ReasonCode {
        match error {
            Error::Incomplete { .. } | Error::Malformed(_) => ReasonCode::MalformedPacket,
            Error::Protocol(_) => ReasonCode::ProtocolError,
            Error::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            Error::TopicNameInvalid => ReasonCode::TopicNameInvalid,
            Error::TopicAliasInvalid => ReasonCode::TopicAliasInvalid,
            Error::UnsupportedProtocolVersion(_) => ReasonCode::UnsupportedProtocolVersion,
            Error::Encode(_) => ReasonCode::ImplementationSpecificError,
        }
    }
}
