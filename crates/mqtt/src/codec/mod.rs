//! Encoding and decoding of control packets.
//!
//! Every packet starts with a fixed header (3.1.1 §2.2, 5.0 §2.1):
//!
//! ```text
//! byte 1       bits 7-4  packet type      1 CONNECT     6 PUBREL       11 UNSUBACK
//!                                         2 CONNACK     7 PUBCOMP      12 PINGREQ
//!                                         3 PUBLISH     8 SUBSCRIBE    13 PINGRESP
//!                                         4 PUBACK      9 SUBACK       14 DISCONNECT
//!                                         5 PUBREC     10 UNSUBSCRIBE  15 AUTH (5.0)
//!              bits 3-0  flags: DUP/QoS/RETAIN for PUBLISH, 0010 for PUBREL,
//!                        SUBSCRIBE and UNSUBSCRIBE, 0000 for the rest
//! bytes 2..=5  Remaining Length, Variable Byte Integer (1 to 4 bytes):
//!              the number of bytes after the fixed header
//! ```
//!
//! followed by a variable header and payload particular to each type (see the
//! submodules). The packet size that `max_packet_size` limits is the whole
//! packet, fixed header included (5.0 §3.1.2.11.4).
//!
//! Decoding never reads past the announced remaining length and insists on
//! using all of it: bytes a packet type does not define are malformed. Errors
//! are reported in the order the bytes arrive, so a bad fixed header is
//! reported before `Incomplete` asks for the rest of the packet.

mod connect;
mod disconnect;
mod primitives;
mod properties;
mod publish;

pub use self::publish::{encode_publish_head, encode_publish_parts, PublishHeader};
mod subscribe;

#[cfg(test)]
mod tests;

use bytes::{BufMut, BytesMut};

use self::primitives::{parse_varint, put_varint, varint_len, Reader, Varint, MAX_VARINT};
use self::publish::{PUBACK_REASONS, PUBREL_REASONS};
use crate::{Error, Packet, PacketId, ProtocolVersion, ReasonCode, Result};

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;
const AUTH: u8 = 15;

/// The fixed header flags of PUBREL, SUBSCRIBE and UNSUBSCRIBE
/// (3.1.1 §3.6.1, §3.8.1, §3.10.1).
const FLAGS_0010: u8 = 0b0010;

/// Decodes one packet from the front of `buf`, returning it and the number of
/// bytes it used. `version` is the version negotiated by CONNECT (a CONNECT
/// itself is decoded whatever `version` says). A packet whose remaining length
/// would make it larger than `max_packet_size` is refused as soon as the fixed
/// header is complete.
pub fn decode(
    buf: &[u8],
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<(Packet, usize)> {
    let Some(&first) = buf.first() else {
        // At least the type byte and one length byte.
        return Err(Error::Incomplete { needed: 2 });
    };
    let (kind, flags) = (first >> 4, first & 0x0F);
    check_fixed_header(kind, flags, version)?;

    let (remaining, len_len) = match parse_varint(&buf[1..]) {
        Varint::Done { value, len } => (value as usize, len),
        Varint::Partial => return Err(Error::Incomplete { needed: 1 }),
        Varint::TooLong => return Err(Error::Malformed("remaining length longer than 4 bytes")),
    };
    let header = 1 + len_len;
    let size = header + remaining;
    if size > max_packet_size {
        return Err(Error::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Err(Error::Incomplete {
            needed: size - buf.len(),
        });
    }

    let mut r = Reader::new(&buf[header..size]);
    let packet = match kind {
        CONNECT => Packet::Connect(connect::decode_connect(&mut r)?),
        CONNACK => Packet::ConnAck(connect::decode_connack(&mut r, version)?),
        PUBLISH => Packet::Publish(publish::decode_publish(flags, &mut r, version)?),
        PUBACK => Packet::PubAck(publish::decode_pub_resp(&mut r, version, PUBACK_REASONS)?),
        PUBREC => Packet::PubRec(publish::decode_pub_resp(&mut r, version, PUBACK_REASONS)?),
        PUBREL => Packet::PubRel(publish::decode_pub_resp(&mut r, version, PUBREL_REASONS)?),
        PUBCOMP => Packet::PubComp(publish::decode_pub_resp(&mut r, version, PUBREL_REASONS)?),
        SUBSCRIBE => Packet::Subscribe(subscribe::decode_subscribe(&mut r, version)?),
        SUBACK => Packet::SubAck(subscribe::decode_suback(&mut r, version)?),
        UNSUBSCRIBE => Packet::Unsubscribe(subscribe::decode_unsubscribe(&mut r, version)?),
        UNSUBACK => Packet::UnsubAck(subscribe::decode_unsuback(&mut r, version)?),
        PINGREQ => Packet::PingReq,
        PINGRESP => Packet::PingResp,
        DISCONNECT => Packet::Disconnect(disconnect::decode_disconnect(&mut r, version)?),
        AUTH => Packet::Auth(disconnect::decode_auth(&mut r)?),
        _ => return Err(Error::Malformed("reserved packet type 0")),
    };
    r.finish()?;
    Ok((packet, size))
}

/// Rejects packet types that do not exist in `version` and reserved flag bits
/// (3.1.1 §2.2.2, 5.0 §2.1.3). PUBLISH flags are checked with its body.
fn check_fixed_header(kind: u8, flags: u8, version: ProtocolVersion) -> Result<()> {
    let expected = match kind {
        0 => return Err(Error::Malformed("reserved packet type 0")),
        AUTH if version == ProtocolVersion::V311 => {
            // Type 15 is reserved in 3.1.1 (§2.2.1).
            return Err(Error::Malformed("AUTH packet in MQTT 3.1.1"));
        }
        PUBLISH => return Ok(()),
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => FLAGS_0010,
        _ => 0,
    };
    if flags != expected {
        return Err(Error::Malformed("reserved fixed header flags"));
    }
    Ok(())
}

/// Appends the encoding of `packet` for `version` to `out`.
///
/// A CONNECT is encoded for its own `protocol`, whatever `version` says. For
/// 3.1.1, fields that only 5.0 has (properties, reason codes other than the
/// CONNACK and SUBACK return codes) are left out. Packets that the decoder
/// would refuse are refused with [`Error::Encode`] rather than sent.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<()> {
    // The packets of the message flow go straight into `out`; the rest are
    // staged in a body buffer first.
    match packet {
        Packet::Publish(p) => {
            let header = publish::PublishHeader {
                dup: p.dup,
                qos: p.qos,
                retain: p.retain,
                packet_id: p.packet_id,
            };
            return publish::encode_publish_parts(
                header,
                &p.topic,
                &p.properties,
                &p.payload,
                version,
                out,
            );
        }
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubComp(r)
            if r.packet_id != 0 && r.reason == ReasonCode::Success && r.properties.is_empty() =>
        {
            let kind = match packet {
                Packet::PubAck(_) => PUBACK,
                Packet::PubRec(_) => PUBREC,
                _ => PUBCOMP,
            };
            out.reserve(4);
            out.put_u8(kind << 4);
            out.put_u8(2);
            out.put_u16(r.packet_id);
            return Ok(());
        }
        _ => {}
    }
    let mut body = BytesMut::new();
    let (kind, flags) = match packet {
        Packet::Connect(c) => {
            connect::encode_connect(c, &mut body)?;
            (CONNECT, 0)
        }
        Packet::ConnAck(c) => {
            connect::encode_connack(c, version, &mut body)?;
            (CONNACK, 0)
        }
        Packet::Publish(_) => unreachable!("PUBLISH is encoded without staging above"),
        Packet::PubAck(p) => {
            publish::encode_pub_resp(p, version, PUBACK_REASONS, &mut body)?;
            (PUBACK, 0)
        }
        Packet::PubRec(p) => {
            publish::encode_pub_resp(p, version, PUBACK_REASONS, &mut body)?;
            (PUBREC, 0)
        }
        Packet::PubRel(p) => {
            publish::encode_pub_resp(p, version, PUBREL_REASONS, &mut body)?;
            (PUBREL, FLAGS_0010)
        }
        Packet::PubComp(p) => {
            publish::encode_pub_resp(p, version, PUBREL_REASONS, &mut body)?;
            (PUBCOMP, 0)
        }
        Packet::Subscribe(s) => {
            subscribe::encode_subscribe(s, version, &mut body)?;
            (SUBSCRIBE, FLAGS_0010)
        }
        Packet::SubAck(s) => {
            subscribe::encode_suback(s, version, &mut body)?;
            (SUBACK, 0)
        }
        Packet::Unsubscribe(u) => {
            subscribe::encode_unsubscribe(u, version, &mut body)?;
            (UNSUBSCRIBE, FLAGS_0010)
        }
        Packet::UnsubAck(u) => {
            subscribe::encode_unsuback(u, version, &mut body)?;
            (UNSUBACK, 0)
        }
        Packet::PingReq => (PINGREQ, 0),
        Packet::PingResp => (PINGRESP, 0),
        Packet::Disconnect(d) => {
            disconnect::encode_disconnect(d, version, &mut body)?;
            (DISCONNECT, 0)
        }
        Packet::Auth(a) => {
            if version == ProtocolVersion::V311 {
                return Err(Error::Encode("AUTH does not exist in MQTT 3.1.1"));
            }
            disconnect::encode_auth(a, &mut body)?;
            (AUTH, 0)
        }
    };
    if body.len() > MAX_VARINT as usize {
        return Err(Error::Encode("packet longer than 268,435,455 bytes"));
    }
    out.reserve(1 + varint_len(body.len()) + body.len());
    out.put_u8(kind << 4 | flags);
    put_varint(out, body.len())?;
    out.put_slice(&body);
    Ok(())
}

/// A Packet Identifier, which is never 0 (3.1.1 §2.3.1, 5.0 §2.2.1).
fn read_packet_id(r: &mut Reader<'_>) -> Result<PacketId> {
    match r.u16()? {
        0 => Err(Error::Protocol("packet identifier 0")),
        id => Ok(id),
    }
}

fn put_packet_id(out: &mut BytesMut, id: PacketId) -> Result<()> {
    if id == 0 {
        return Err(Error::Encode("packet identifier 0"));
    }
    out.put_u16(id);
    Ok(())
}

/// A 5.0 reason code byte, which must be one the packet type lists.
fn read_reason(r: &mut Reader<'_>, allowed: &[ReasonCode]) -> Result<ReasonCode> {
    match ReasonCode::from_u8(r.u8()?) {
        Some(reason) if allowed.contains(&reason) => Ok(reason),
        _ => Err(Error::Malformed("reason code not defined for this packet")),
    }
}

fn reason_byte(reason: ReasonCode, allowed: &[ReasonCode]) -> Result<u8> {
    if !allowed.contains(&reason) {
        return Err(Error::Encode("reason code not defined for this packet"));
    }
    Ok(reason as u8)
}
