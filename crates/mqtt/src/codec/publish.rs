//! PUBLISH (§3.3) and its acknowledgements PUBACK (§3.4), PUBREC (§3.5),
//! PUBREL (§3.6) and PUBCOMP (§3.7); section numbers are the same in 3.1.1
//! and 5.0.
//!
//! ```text
//! PUBLISH, fixed header flags: bit 3 DUP, bits 2-1 QoS, bit 0 RETAIN    §3.3.1
//!   Topic Name   UTF-8 String, no wildcards                              §3.3.2.1
//!   Packet Id    Two Byte Integer, only when QoS > 0, never 0            §3.3.2.2
//!   Properties   5.0 only                                                5.0 §3.3.2.3
//!   Payload      every remaining byte (may be none)                      §3.3.3
//!
//! PUBACK / PUBREC / PUBCOMP, flags 0000; PUBREL, flags 0010
//!   Packet Id    Two Byte Integer, never 0                               §3.4.2
//!   Reason Code  byte, 5.0 only; absent (Success) when the
//!                remaining length is 2                                   5.0 §3.4.2.1
//!   Properties   5.0 only; absent (none) when the remaining length
//!                is below 4                                              5.0 §3.4.2.2
//! ```
//!
//! Invariants: DUP is never set on QoS 0 (5.0 [MQTT-3.3.1-2]); QoS 3 is
//! malformed; an empty topic name is allowed only in 5.0 and only with a
//! Topic Alias (5.0 §3.3.2.3.4).

use bytes::{BufMut, Bytes, BytesMut};

use super::primitives::{put_string, put_varint, varint_len, Reader, MAX_VARINT};
use super::properties::{put_properties, read_properties, Place};
use super::{put_packet_id, read_packet_id, read_reason, reason_byte, PUBLISH};
use crate::{
    Error, PacketId, Properties, ProtocolVersion, PubResp, Publish, QoS, ReasonCode, Result,
};

const DUP: u8 = 0x08;
const RETAIN: u8 = 0x01;
const QOS_SHIFT: u8 = 1;

/// PUBACK and PUBREC reason codes (5.0 §3.4.2.1, §3.5.2.1).
pub(super) const PUBACK_REASONS: &[ReasonCode] = {
    use ReasonCode::*;
    &[
        Success,
        NoMatchingSubscribers,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicNameInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        PayloadFormatInvalid,
    ]
};

/// PUBREL and PUBCOMP reason codes (5.0 §3.6.2.1, §3.7.2.1).
pub(super) const PUBREL_REASONS: &[ReasonCode] =
    &[ReasonCode::Success, ReasonCode::PacketIdentifierNotFound];

pub(crate) fn decode_publish(
    flags: u8,
    r: &mut Reader<'_>,
    version: ProtocolVersion,
) -> Result<Publish> {
    let qos =
        QoS::from_u8((flags >> QOS_SHIFT) & 0b11).ok_or(Error::Malformed("PUBLISH with QoS 3"))?;
    let dup = flags & DUP != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(Error::Malformed("PUBLISH with DUP set at QoS 0"));
    }
    let topic = r.string()?;
    if topic.contains(['+', '#']) {
        return Err(Error::TopicNameInvalid);
    }
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(read_packet_id(r)?)
    };
    let properties = match version {
        ProtocolVersion::V311 => Default::default(),
        ProtocolVersion::V5 => read_properties(r, Place::Publish)?,
    };
    if topic.is_empty() {
        match version {
            ProtocolVersion::V311 => return Err(Error::TopicNameInvalid),
            ProtocolVersion::V5 if properties.topic_alias.is_none() => {
                return Err(Error::Protocol("empty topic name without a topic alias"))
            }
            ProtocolVersion::V5 => {}
        }
    }
    let payload = Bytes::copy_from_slice(r.rest());
    Ok(Publish {
        dup,
        qos,
        retain: flags & RETAIN != 0,
        topic,
        packet_id,
        properties,
        payload,
    })
}

/// Writes the body and returns the fixed header flags.
/// The fixed-header flags and identity of a PUBLISH, apart from its topic,
/// properties and payload (which [`encode_publish_parts`] borrows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishHeader {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub packet_id: Option<PacketId>,
}

/// Appends a whole PUBLISH (fixed header included) built from borrowed
/// parts, writing straight into `out`: the hot path of a broker, which
/// should neither own a copy of the topic nor stage the body elsewhere.
/// Properties are staged only when there are any (5.0).
pub fn encode_publish_parts(
    header: PublishHeader,
    topic: &str,
    properties: &Properties,
    payload: &[u8],
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<()> {
    encode_publish_head(header, topic, properties, payload.len(), version, out)?;
    out.put_slice(payload);
    Ok(())
}

/// Appends all of a PUBLISH but its payload, which must follow in exactly
/// `payload_len` bytes: for a payload made in place in `out` (a broker
/// opening a sealed payload straight into its write buffer). On an error
/// nothing is appended.
pub fn encode_publish_head(
    header: PublishHeader,
    topic: &str,
    properties: &Properties,
    payload_len: usize,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<()> {
    if header.dup && header.qos == QoS::AtMostOnce {
        return Err(Error::Encode("PUBLISH with DUP set at QoS 0"));
    }
    if topic.len() > u16::MAX as usize {
        return Err(Error::Encode("string longer than 65,535 bytes"));
    }
    if topic.contains('\0') {
        return Err(Error::Encode("string contains U+0000"));
    }
    let packet_id_len = match (header.qos, header.packet_id) {
        (QoS::AtMostOnce, None) => 0,
        (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(0)) => return Err(Error::Encode("packet id 0")),
        (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(_)) => 2,
        _ => {
            return Err(Error::Encode(
                "PUBLISH needs a packet id exactly when QoS > 0",
            ))
        }
    };
    let staged = if version == ProtocolVersion::V5 && !properties.is_empty() {
        let mut props = BytesMut::new();
        put_properties(&mut props, properties, Place::Publish)?;
        Some(props)
    } else {
        None
    };
    let props_len = match (&staged, version) {
        (Some(props), _) => props.len(),
        (None, ProtocolVersion::V5) => 1, // property length 0
        (None, ProtocolVersion::V311) => 0,
    };
    let body_len = 2 + topic.len() + packet_id_len + props_len + payload_len;
    if body_len > MAX_VARINT as usize {
        return Err(Error::Encode("packet longer than 268,435,455 bytes"));
    }
    let mut flags = (header.qos as u8) << QOS_SHIFT;
    if header.dup {
        flags |= DUP;
    }
    if header.retain {
        flags |= RETAIN;
    }
    out.reserve(1 + varint_len(body_len) + body_len);
    out.put_u8(PUBLISH << 4 | flags);
    put_varint(out, body_len)?;
    put_string(out, topic)?;
    if let Some(id) = header.packet_id {
        out.put_u16(id);
    }
    match staged {
        Some(props) => out.put_slice(&props),
        None if version == ProtocolVersion::V5 => out.put_u8(0),
        None => {}
    }
    Ok(())
}

pub(crate) fn decode_pub_resp(
    r: &mut Reader<'_>,
    version: ProtocolVersion,
    reasons: &[ReasonCode],
) -> Result<PubResp> {
    let packet_id = read_packet_id(r)?;
    let mut resp = PubResp::success(packet_id);
    if version == ProtocolVersion::V5 {
        if !r.is_empty() {
            resp.reason = read_reason(r, reasons)?;
        }
        if !r.is_empty() {
            resp.properties = read_properties(r, Place::PubResp)?;
        }
    }
    Ok(resp)
}

pub(crate) fn encode_pub_resp(
    p: &PubResp,
    version: ProtocolVersion,
    reasons: &[ReasonCode],
    out: &mut BytesMut,
) -> Result<()> {
    put_packet_id(out, p.packet_id)?;
    if version == ProtocolVersion::V5 {
        // The short forms of 5.0 §3.4.2.1 and §3.4.2.2.1.
        let no_properties = p.properties.is_empty();
        if p.reason == ReasonCode::Success && no_properties {
            return Ok(());
        }
        out.put_u8(reason_byte(p.reason, reasons)?);
        if !no_properties {
            put_properties(out, &p.properties, Place::PubResp)?;
        }
    }
    Ok(())
}
