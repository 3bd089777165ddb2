//! SUBSCRIBE (§3.8), SUBACK (§3.9), UNSUBSCRIBE (§3.10) and UNSUBACK
//! (§3.11); section numbers are the same in 3.1.1 and 5.0.
//!
//! ```text
//! SUBSCRIBE, fixed header flags 0010                                   §3.8.1
//!   Packet Id      Two Byte Integer, never 0                           §3.8.2
//!   Properties     5.0 only                                            5.0 §3.8.2.1
//!   then at least once:                                                §3.8.3
//!     Topic Filter UTF-8 String
//!     Options      byte                                                §3.8.3.1
//!                    3.1.1: bits 7-2 reserved 0, bits 1-0 QoS
//!                    5.0:   bits 7-6 reserved 0, bits 5-4 Retain Handling
//!                           (0..=2), bit 3 Retain As Published,
//!                           bit 2 No Local, bits 1-0 QoS
//!
//! SUBACK, flags 0000
//!   Packet Id      Two Byte Integer, never 0                           §3.9.2
//!   Properties     5.0 only                                            5.0 §3.9.2.1
//!   Reason Codes   one byte per filter, at least one                   §3.9.3
//!                    3.1.1: 0x00, 0x01, 0x02 granted QoS, 0x80 failure
//!
//! UNSUBSCRIBE, flags 0010
//!   Packet Id      Two Byte Integer, never 0                           §3.10.2
//!   Properties     5.0 only                                            5.0 §3.10.2.1
//!   Topic Filter   UTF-8 String, at least once                         §3.10.3
//!
//! UNSUBACK, flags 0000
//!   Packet Id      Two Byte Integer, never 0                           §3.11.2
//!   Properties     5.0 only                                            5.0 §3.11.2.1
//!   Reason Codes   5.0 only: one byte per filter, at least one         5.0 §3.11.3
//! ```
//!
//! Topic filters are only checked as strings here: the broker answers an
//! invalid filter in the SUBACK entry for it instead of dropping the client.

use bytes::{BufMut, BytesMut};

use super::primitives::{put_string, Reader};
use super::properties::{put_properties, read_properties, Place};
use super::{put_packet_id, read_packet_id, read_reason, reason_byte};
use crate::{
    Error, ProtocolVersion, QoS, ReasonCode, Result, SubAck, Subscribe, Subscription,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};

const NO_LOCAL: u8 = 0x04;
const RETAIN_AS_PUBLISHED: u8 = 0x08;
const RETAIN_HANDLING_SHIFT: u8 = 4;

/// SUBACK reason codes (5.0 §3.9.3).
pub(super) const SUBACK_REASONS: &[ReasonCode] = {
    use ReasonCode::*;
    &[
        Success,
        GrantedQoS1,
        GrantedQoS2,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicFilterInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        SharedSubscriptionsNotSupported,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ]
};

/// UNSUBACK reason codes (5.0 §3.11.3).
pub(super) const UNSUBACK_REASONS: &[ReasonCode] = {
    use ReasonCode::*;
    &[
        Success,
        NoSubscriptionExisted,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicFilterInvalid,
        PacketIdentifierInUse,
    ]
};

fn read_options(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions> {
    let reserved = match version {
        ProtocolVersion::V311 => 0xFC,
        ProtocolVersion::V5 => 0xC0,
    };
    if byte & reserved != 0 {
        return Err(Error::Malformed("subscription options reserved bits set"));
    }
    let qos = QoS::from_u8(byte & 0b11).ok_or(Error::Malformed("subscription with QoS 3"))?;
    let retain_handling = (byte >> RETAIN_HANDLING_SHIFT) & 0b11;
    if retain_handling == 3 {
        return Err(Error::Malformed("retain handling 3"));
    }
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & NO_LOCAL != 0,
        retain_as_published: byte & RETAIN_AS_PUBLISHED != 0,
        retain_handling,
    })
}

fn options_byte(o: &SubscriptionOptions, version: ProtocolVersion) -> Result<u8> {
    let mut byte = o.qos as u8;
    if version == ProtocolVersion::V5 {
        if o.retain_handling > 2 {
            return Err(Error::Encode("retain handling above 2"));
        }
        byte |= o.retain_handling << RETAIN_HANDLING_SHIFT;
        if o.no_local {
            byte |= NO_LOCAL;
        }
        if o.retain_as_published {
            byte |= RETAIN_AS_PUBLISHED;
        }
    }
    Ok(byte)
}

pub(crate) fn decode_subscribe(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<Subscribe> {
    let packet_id = read_packet_id(r)?;
    let properties = match version {
        ProtocolVersion::V311 => Default::default(),
        ProtocolVersion::V5 => read_properties(r, Place::Subscribe)?,
    };
    let mut subscriptions = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = read_options(r.u8()?, version)?;
        subscriptions.push(Subscription { filter, options });
    }
    if subscriptions.is_empty() {
        // 3.1.1 [MQTT-3.8.3-3], 5.0 [MQTT-3.8.3-2].
        return Err(Error::Protocol("SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe {
        packet_id,
        properties,
        subscriptions,
    })
}

pub(crate) fn encode_subscribe(
    s: &Subscribe,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<()> {
    if s.subscriptions.is_empty() {
        return Err(Error::Encode("SUBSCRIBE without topic filters"));
    }
    put_packet_id(out, s.packet_id)?;
    if version == ProtocolVersion::V5 {
        put_properties(out, &s.properties, Place::Subscribe)?;
    }
    for sub in &s.subscriptions {
        put_string(out, &sub.filter)?;
        out.put_u8(options_byte(&sub.options, version)?);
    }
    Ok(())
}

fn read_v311_suback_code(byte: u8) -> Result<ReasonCode> {
    Ok(match byte {
        0x00 => ReasonCode::Success,
        0x01 => ReasonCode::GrantedQoS1,
        0x02 => ReasonCode::GrantedQoS2,
        0x80 => ReasonCode::UnspecifiedError,
        _ => return Err(Error::Malformed("unknown SUBACK return code")),
    })
}

fn v311_suback_code(reason: ReasonCode) -> Result<u8> {
    match reason {
        ReasonCode::Success | ReasonCode::GrantedQoS1 | ReasonCode::GrantedQoS2 => Ok(reason as u8),
        reason if reason.is_error() => Ok(0x80),
        _ => Err(Error::Encode("reason code not allowed in SUBACK")),
    }
}

pub(crate) fn decode_suback(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<SubAck> {
    let packet_id = read_packet_id(r)?;
    let properties = match version {
        ProtocolVersion::V311 => Default::default(),
        ProtocolVersion::V5 => read_properties(r, Place::SubAck)?,
    };
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reasons.push(match version {
            ProtocolVersion::V311 => read_v311_suback_code(r.u8()?)?,
            ProtocolVersion::V5 => read_reason(r, SUBACK_REASONS)?,
        });
    }
    if reasons.is_empty() {
        return Err(Error::Protocol("SUBACK without reason codes"));
    }
    Ok(SubAck {
        packet_id,
        properties,
        reasons,
    })
}

pub(crate) fn encode_suback(
    s: &SubAck,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<()> {
    if s.reasons.is_empty() {
        return Err(Error::Encode("SUBACK without reason codes"));
    }
    put_packet_id(out, s.packet_id)?;
    if version == ProtocolVersion::V5 {
        put_properties(out, &s.properties, Place::SubAck)?;
    }
    for &reason in &s.reasons {
        out.put_u8(match version {
            ProtocolVersion::V311 => v311_suback_code(reason)?,
            ProtocolVersion::V5 => reason_byte(reason, SUBACK_REASONS)?,
        });
    }
    Ok(())
}

pub(crate) fn decode_unsubscribe(
    r: &mut Reader<'_>,
    version: ProtocolVersion,
) -> Result<Unsubscribe> {
    let packet_id = read_packet_id(r)?;
    let properties = match version {
        ProtocolVersion::V311 => Default::default(),
        ProtocolVersion::V5 => read_properties(r, Place::Unsubscribe)?,
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        // 3.1.1 [MQTT-3.10.3-2], 5.0 [MQTT-3.10.3-2].
        return Err(Error::Protocol("UNSUBSCRIBE without topic filters"));
    }
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

pub(crate) fn encode_unsubscribe(
    u: &Unsubscribe,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<()> {
    if u.filters.is_empty() {
        return Err(Error::Encode("UNSUBSCRIBE without topic filters"));
    }
    put_packet_id(out, u.packet_id)?;
    if version == ProtocolVersion::V5 {
        put_properties(out, &u.properties, Place::Unsubscribe)?;
    }
    for filter in &u.filters {
        put_string(out, filter)?;
    }
    Ok(())
}

pub(crate) fn decode_unsuback(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<UnsubAck> {
    let packet_id = read_packet_id(r)?;
    let mut ack = UnsubAck {
        packet_id,
        properties: Default::default(),
        reasons: Vec::new(),
    };
    if version == ProtocolVersion::V5 {
        ack.properties = read_properties(r, Place::UnsubAck)?;
        while !r.is_empty() {
            ack.reasons.push(read_reason(r, UNSUBACK_REASONS)?);
        }
        if ack.reasons.is_empty() {
            return Err(Error::Protocol("UNSUBACK without reason codes"));
        }
    }
    Ok(ack)
}

pub(crate) fn encode_unsuback(
    u: &UnsubAck,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<()> {
    put_packet_id(out, u.packet_id)?;
    if version == ProtocolVersion::V5 {
        if u.reasons.is_empty() {
            return Err(Error::Encode("UNSUBACK without reason codes"));
        }
        put_properties(out, &u.properties, Place::UnsubAck)?;
        for &reason in &u.reasons {
            out.put_u8(reason_byte(reason, UNSUBACK_REASONS)?);
        }
    }
    Ok(())
}
