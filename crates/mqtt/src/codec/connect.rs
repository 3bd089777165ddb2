//! CONNECT (3.1.1 §3.1, 5.0 §3.1) and CONNACK (3.1.1 §3.2, 5.0 §3.2).
//!
//! ```text
//! CONNECT, fixed header flags 0000
//!   Protocol Name    UTF-8 String "MQTT"                          §3.1.2.1
//!   Protocol Level   byte: 4 = 3.1.1, 5 = 5.0                     §3.1.2.2
//!   Connect Flags    byte                                         §3.1.2.3
//!                      bit 7   User Name Flag
//!                      bit 6   Password Flag
//!                      bit 5   Will Retain
//!                      bit 4-3 Will QoS
//!                      bit 2   Will Flag
//!                      bit 1   Clean Session (3.1.1) / Clean Start (5.0)
//!                      bit 0   reserved, 0
//!   Keep Alive       Two Byte Integer, seconds                    §3.1.2.10
//!   Properties       5.0 only                                     5.0 §3.1.2.11
//!   Client Id        UTF-8 String                                 §3.1.3.1
//!   Will Properties  5.0 only, when Will Flag                     5.0 §3.1.3.2
//!   Will Topic       UTF-8 String, when Will Flag                 §3.1.3.2 / 5.0 §3.1.3.3
//!   Will Payload     Binary Data, when Will Flag                  §3.1.3.3 / 5.0 §3.1.3.4
//!   User Name        UTF-8 String, when User Name Flag            §3.1.3.4 / 5.0 §3.1.3.5
//!   Password         Binary Data, when Password Flag              §3.1.3.5 / 5.0 §3.1.3.6
//!
//! CONNACK, fixed header flags 0000
//!   Acknowledge Flags  byte: bits 7-1 reserved 0, bit 0 Session Present   §3.2.2.1
//!   Reason Code        byte (3.1.1: Connect Return Code 0..=5)            §3.2.2.3 / 5.0 §3.2.2.2
//!   Properties         5.0 only                                           5.0 §3.2.2.3
//! ```
//!
//! A CONNECT names its own protocol version, so it is decoded whatever
//! version the caller passed, and encoded with `Connect::protocol`.

use bytes::{BufMut, BytesMut};

use super::primitives::{put_binary, put_string, Reader};
use super::properties::{put_properties, read_properties, Place};
use super::{read_reason, reason_byte};
use crate::topic::valid_topic_name;
use crate::{ConnAck, Connect, Error, ProtocolVersion, QoS, ReasonCode, Result, Will};

const USER_NAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_QOS: u8 = 0x18;
const WILL_FLAG: u8 = 0x04;
const CLEAN_START: u8 = 0x02;
const RESERVED: u8 = 0x01;

/// CONNACK reason codes (5.0 §3.2.2.2).
pub(super) const CONNACK_REASONS: &[ReasonCode] = {
    use ReasonCode::*;
    &[
        Success,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        BadUserNameOrPassword,
        NotAuthorized,
        ServerUnavailable,
        ServerBusy,
        Banned,
        BadAuthenticationMethod,
        TopicNameInvalid,
        PacketTooLarge,
        QuotaExceeded,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        ConnectionRateExceeded,
    ]
};

pub(crate) fn decode_connect(r: &mut Reader<'_>) -> Result<Connect> {
    let name = r.string()?;
    let level = r.u8()?;
    let protocol = match (name.as_str(), level) {
        ("MQTT", 4) => ProtocolVersion::V311,
        ("MQTT", 5) => ProtocolVersion::V5,
        // "MQIsdp" is MQTT 3.1: recognisably MQTT, so the server can answer
        // with "unacceptable protocol version" rather than just hang up.
        ("MQTT" | "MQIsdp", level) => return Err(Error::UnsupportedProtocolVersion(level)),
        _ => return Err(Error::Malformed("protocol name is not MQTT")),
    };
    let v5 = protocol == ProtocolVersion::V5;

    let flags = r.u8()?;
    if flags & RESERVED != 0 {
        return Err(Error::Malformed("CONNECT reserved flag set"));
    }
    let will_qos =
        QoS::from_u8((flags & WILL_QOS) >> WILL_QOS_SHIFT).ok_or(Error::Malformed("will QoS 3"))?;
    let has_will = flags & WILL_FLAG != 0;
    if !has_will && (will_qos != QoS::AtMostOnce || flags & WILL_RETAIN != 0) {
        return Err(Error::Malformed("will QoS or retain set without a will"));
    }
    if !v5 && flags & PASSWORD != 0 && flags & USER_NAME == 0 {
        // 3.1.1 §3.1.2.9 [MQTT-3.1.2-22]; 5.0 allows a password alone.
        return Err(Error::Malformed("password without user name"));
    }
    let keep_alive = r.u16()?;
    let properties = if v5 {
        read_properties(r, Place::Connect)?
    } else {
        Default::default()
    };

    let client_id = r.string()?;
    let will = if has_will {
        let properties = if v5 {
            read_properties(r, Place::Will)?
        } else {
            Default::default()
        };
        let topic = r.string()?;
        // The will is published under this name later, so it must be one.
        if !valid_topic_name(&topic) {
            return Err(Error::TopicNameInvalid);
        }
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: flags & WILL_RETAIN != 0,
            properties,
        })
    } else {
        None
    };
    let username = if flags & USER_NAME != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let password = if flags & PASSWORD != 0 {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start: flags & CLEAN_START != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

pub(crate) fn encode_connect(c: &Connect, out: &mut BytesMut) -> Result<()> {
    let v5 = c.protocol == ProtocolVersion::V5;
    if !v5 && c.password.is_some() && c.username.is_none() {
        return Err(Error::Encode(
            "3.1.1 CONNECT with a password needs a user name",
        ));
    }
    put_string(out, "MQTT")?;
    out.put_u8(c.protocol.level());
    let mut flags = 0;
    if c.clean_start {
        flags |= CLEAN_START;
    }
    if let Some(will) = &c.will {
        flags |= WILL_FLAG | (will.qos as u8) << WILL_QOS_SHIFT;
        if will.retain {
            flags |= WILL_RETAIN;
        }
    }
    if c.username.is_some() {
        flags |= USER_NAME;
    }
    if c.password.is_some() {
        flags |= PASSWORD;
    }
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    if v5 {
        put_properties(out, &c.properties, Place::Connect)?;
    }
    put_string(out, &c.client_id)?;
    if let Some(will) = &c.will {
        if v5 {
            put_properties(out, &will.properties, Place::Will)?;
        }
        put_string(out, &will.topic)?;
        put_binary(out, &will.payload)?;
    }
    if let Some(username) = &c.username {
        put_string(out, username)?;
    }
    if let Some(password) = &c.password {
        put_binary(out, password)?;
    }
    Ok(())
}

pub(crate) fn decode_connack(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<ConnAck> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(Error::Malformed("CONNACK reserved flag set"));
    }
    let session_present = flags & 1 != 0;
    let (reason, properties) = match version {
        ProtocolVersion::V311 => {
            let code = r.u8()?;
            let reason = ReasonCode::from_v311_connack(code)
                .ok_or(Error::Malformed("unknown CONNACK return code"))?;
            (reason, Default::default())
        }
        ProtocolVersion::V5 => {
            let reason = read_reason(r, CONNACK_REASONS)?;
            (reason, read_properties(r, Place::ConnAck)?)
        }
    };
    if session_present && reason != ReasonCode::Success {
        // 3.1.1 [MQTT-3.2.2-4], 5.0 [MQTT-3.2.2-6].
        return Err(Error::Protocol("session present with a refused connection"));
    }
    Ok(ConnAck {
        session_present,
        reason,
        properties,
    })
}

pub(crate) fn encode_connack(
    c: &ConnAck,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<()> {
    if c.session_present && c.reason != ReasonCode::Success {
        return Err(Error::Encode("session present with a refused connection"));
    }
    out.put_u8(u8::from(c.session_present));
    match version {
        ProtocolVersion::V311 => out.put_u8(c.reason.to_v311_connack()),
        ProtocolVersion::V5 => {
            out.put_u8(reason_byte(c.reason, CONNACK_REASONS)?);
            put_properties(out, &c.properties, Place::ConnAck)?;
        }
    }
    Ok(())
}
