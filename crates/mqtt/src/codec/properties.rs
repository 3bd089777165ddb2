//! The 5.0 property section (5.0 §2.2.2) and which packet may carry which
//! property (5.0 §2.2.2.2, table 2-4).
//!
//! ```text
//! Property Length   Variable Byte Integer: bytes of properties that follow
//! Property*         Identifier (Variable Byte Integer, all defined ones fit
//!                   in one byte) then the value in the identifier's type:
//!                   Byte, Two/Four Byte Integer, Variable Byte Integer,
//!                   UTF-8 String, Binary Data or UTF-8 String Pair
//! ```
//!
//! Decoding: an identifier the spec does not define is Malformed (its value
//! cannot even be skipped); a defined property that this packet may not
//! carry, a single-valued property given twice, or a value the spec forbids
//! (0 for Receive Maximum, 2 for a 0-or-1 flag, …), as is Authentication
//! Data without an Authentication Method, is a Protocol error.
//!
//! Encoding writes properties in identifier order, user properties in their
//! given order, and refuses a property the packet may not carry: sending it
//! would make the peer close the connection.

use bytes::{BufMut, BytesMut};

use super::primitives::{put_binary, put_string, put_varint, Reader};
use crate::{Error, Properties, Result};

const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
const CONTENT_TYPE: u8 = 0x03;
const RESPONSE_TOPIC: u8 = 0x08;
const CORRELATION_DATA: u8 = 0x09;
const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
const SERVER_KEEP_ALIVE: u8 = 0x13;
const AUTHENTICATION_METHOD: u8 = 0x15;
const AUTHENTICATION_DATA: u8 = 0x16;
const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
const WILL_DELAY_INTERVAL: u8 = 0x18;
const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
const RESPONSE_INFORMATION: u8 = 0x1A;
const SERVER_REFERENCE: u8 = 0x1C;
const REASON_STRING: u8 = 0x1F;
const RECEIVE_MAXIMUM: u8 = 0x21;
const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
const TOPIC_ALIAS: u8 = 0x23;
const MAXIMUM_QOS: u8 = 0x24;
const RETAIN_AVAILABLE: u8 = 0x25;
const USER_PROPERTY: u8 = 0x26;
const MAXIMUM_PACKET_SIZE: u8 = 0x27;
const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// A set of property identifiers as bits of a `u64` (every identifier is
/// below 64).
const fn mask(ids: &[u8]) -> u64 {
    let mut bits = 0;
    let mut i = 0;
    while i < ids.len() {
        bits |= 1 << ids[i];
        i += 1;
    }
    bits
}

/// Where a property section sits; each place allows its own properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Connect,
    /// The will properties in the CONNECT payload.
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    PubResp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Place {
    /// Table 2-4 of 5.0 §2.2.2.2, read by column.
    fn allowed(self) -> u64 {
        match self {
            Place::Connect => mask(&[
                SESSION_EXPIRY_INTERVAL,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                REQUEST_PROBLEM_INFORMATION,
                REQUEST_RESPONSE_INFORMATION,
                RECEIVE_MAXIMUM,
                TOPIC_ALIAS_MAXIMUM,
                USER_PROPERTY,
                MAXIMUM_PACKET_SIZE,
            ]),
            Place::Will => mask(&[
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                CONTENT_TYPE,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                WILL_DELAY_INTERVAL,
                USER_PROPERTY,
            ]),
            Place::ConnAck => mask(&[
                SESSION_EXPIRY_INTERVAL,
                ASSIGNED_CLIENT_IDENTIFIER,
                SERVER_KEEP_ALIVE,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                RESPONSE_INFORMATION,
                SERVER_REFERENCE,
                REASON_STRING,
                RECEIVE_MAXIMUM,
                TOPIC_ALIAS_MAXIMUM,
                MAXIMUM_QOS,
                RETAIN_AVAILABLE,
                USER_PROPERTY,
                MAXIMUM_PACKET_SIZE,
                WILDCARD_SUBSCRIPTION_AVAILABLE,
                SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                SHARED_SUBSCRIPTION_AVAILABLE,
            ]),
            Place::Publish => mask(&[
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                CONTENT_TYPE,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                SUBSCRIPTION_IDENTIFIER,
                TOPIC_ALIAS,
                USER_PROPERTY,
            ]),
            Place::PubResp | Place::SubAck | Place::UnsubAck => {
                mask(&[REASON_STRING, USER_PROPERTY])
            }
            Place::Subscribe => mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]),
            Place::Unsubscribe => mask(&[USER_PROPERTY]),
            Place::Disconnect => mask(&[
                SESSION_EXPIRY_INTERVAL,
                SERVER_REFERENCE,
                REASON_STRING,
                USER_PROPERTY,
            ]),
            Place::Auth => mask(&[
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                REASON_STRING,
                USER_PROPERTY,
            ]),
        }
    }

    pub(super) fn allows(self, id: u8) -> bool {
        id < 64 && self.allowed() & (1 << id) != 0
    }
}

fn once<T>(slot: &mut Option<T>, value: T) -> Result<()> {
    if slot.is_some() {
        return Err(Error::Protocol("property appears more than once"));
    }
    *slot = Some(value);
    Ok(())
}

fn zero_or_one(value: u8) -> Result<u8> {
    if value > 1 {
        return Err(Error::Protocol("property value must be 0 or 1"));
    }
    Ok(value)
}

fn non_zero<T: Default + PartialEq>(value: T) -> Result<T> {
    if value == T::default() {
        return Err(Error::Protocol("property value must not be 0"));
    }
    Ok(value)
}

/// Reads a Property Length and the properties it covers.
pub(crate) fn read_properties(r: &mut Reader<'_>, place: Place) -> Result<Properties> {
    let len = r.varint()? as usize;
    let mut r = Reader::new(r.take(len)?);
    let mut p = Properties::default();
    while !r.is_empty() {
        let id = u8::try_from(r.varint()?)
            .map_err(|_| Error::Malformed("unknown property identifier"))?;
        if !known(id) {
            return Err(Error::Malformed("unknown property identifier"));
        }
        if !place.allows(id) {
            return Err(Error::Protocol("property not allowed in this packet"));
        }
        match id {
            PAYLOAD_FORMAT_INDICATOR => {
                once(&mut p.payload_format_indicator, zero_or_one(r.u8()?)?)?
            }
            MESSAGE_EXPIRY_INTERVAL => once(&mut p.message_expiry_interval, r.u32()?)?,
            CONTENT_TYPE => once(&mut p.content_type, r.string()?)?,
            RESPONSE_TOPIC => once(&mut p.response_topic, r.string()?)?,
            CORRELATION_DATA => once(&mut p.correlation_data, r.binary()?)?,
            SUBSCRIPTION_IDENTIFIER => {
                let value = non_zero(r.varint()?)?;
                // PUBLISH may carry one per matching subscription; SUBSCRIBE one.
                if place == Place::Subscribe && !p.subscription_identifiers.is_empty() {
                    return Err(Error::Protocol("property appears more than once"));
                }
                p.subscription_identifiers.push(value);
            }
            SESSION_EXPIRY_INTERVAL => once(&mut p.session_expiry_interval, r.u32()?)?,
            ASSIGNED_CLIENT_IDENTIFIER => once(&mut p.assigned_client_identifier, r.string()?)?,
            SERVER_KEEP_ALIVE => once(&mut p.server_keep_alive, r.u16()?)?,
            AUTHENTICATION_METHOD => once(&mut p.authentication_method, r.string()?)?,
            AUTHENTICATION_DATA => once(&mut p.authentication_data, r.binary()?)?,
            REQUEST_PROBLEM_INFORMATION => {
                once(&mut p.request_problem_information, zero_or_one(r.u8()?)?)?
            }
            WILL_DELAY_INTERVAL => once(&mut p.will_delay_interval, r.u32()?)?,
            REQUEST_RESPONSE_INFORMATION => {
                once(&mut p.request_response_information, zero_or_one(r.u8()?)?)?
            }
            RESPONSE_INFORMATION => once(&mut p.response_information, r.string()?)?,
            SERVER_REFERENCE => once(&mut p.server_reference, r.string()?)?,
            REASON_STRING => once(&mut p.reason_string, r.string()?)?,
            RECEIVE_MAXIMUM => once(&mut p.receive_maximum, non_zero(r.u16()?)?)?,
            TOPIC_ALIAS_MAXIMUM => once(&mut p.topic_alias_maximum, r.u16()?)?,
            TOPIC_ALIAS => match r.u16()? {
                0 => return Err(Error::TopicAliasInvalid),
                alias => once(&mut p.topic_alias, alias)?,
            },
            MAXIMUM_QOS => once(&mut p.maximum_qos, zero_or_one(r.u8()?)?)?,
            RETAIN_AVAILABLE => once(&mut p.retain_available, zero_or_one(r.u8()?)?)?,
            USER_PROPERTY => {
                let name = r.string()?;
                let value = r.string()?;
                p.user_properties.push((name, value));
            }
            MAXIMUM_PACKET_SIZE => once(&mut p.maximum_packet_size, non_zero(r.u32()?)?)?,
            WILDCARD_SUBSCRIPTION_AVAILABLE => once(
                &mut p.wildcard_subscription_available,
                zero_or_one(r.u8()?)?,
            )?,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => once(
                &mut p.subscription_identifier_available,
                zero_or_one(r.u8()?)?,
            )?,
            SHARED_SUBSCRIPTION_AVAILABLE => {
                once(&mut p.shared_subscription_available, zero_or_one(r.u8()?)?)?
            }
            _ => return Err(Error::Malformed("unknown property identifier")),
        }
    }
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        // 5.0 §3.1.2.11.10, §3.2.2.3.18, §3.15.2.2.3.
        return Err(Error::Protocol("authentication data without a method"));
    }
    Ok(p)
}

fn known(id: u8) -> bool {
    const KNOWN: u64 = mask(&[
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        SUBSCRIPTION_IDENTIFIER,
        SESSION_EXPIRY_INTERVAL,
        ASSIGNED_CLIENT_IDENTIFIER,
        SERVER_KEEP_ALIVE,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        REQUEST_PROBLEM_INFORMATION,
        WILL_DELAY_INTERVAL,
        REQUEST_RESPONSE_INFORMATION,
        RESPONSE_INFORMATION,
        SERVER_REFERENCE,
        REASON_STRING,
        RECEIVE_MAXIMUM,
        TOPIC_ALIAS_MAXIMUM,
        TOPIC_ALIAS,
        MAXIMUM_QOS,
        RETAIN_AVAILABLE,
        USER_PROPERTY,
        MAXIMUM_PACKET_SIZE,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        SHARED_SUBSCRIPTION_AVAILABLE,
    ]);
    id < 64 && KNOWN & (1 << id) != 0
}

/// Collects the encoded properties of one section, checking each against the
/// place it is written to.
struct Section {
    place: Place,
    buf: BytesMut,
}

impl Section {
    /// Starts property `id`, returning the buffer for its value.
    fn start(&mut self, id: u8) -> Result<&mut BytesMut> {
        if !self.place.allows(id) {
            return Err(Error::Encode("property not allowed in this packet"));
        }
        self.buf.put_u8(id);
        Ok(&mut self.buf)
    }

    fn u8(&mut self, id: u8, value: Option<u8>) -> Result<()> {
        if let Some(value) = value {
            self.start(id)?.put_u8(value);
        }
        Ok(())
    }

    fn u16(&mut self, id: u8, value: Option<u16>) -> Result<()> {
        if let Some(value) = value {
            self.start(id)?.put_u16(value);
        }
        Ok(())
    }

    fn u32(&mut self, id: u8, value: Option<u32>) -> Result<()> {
        if let Some(value) = value {
            self.start(id)?.put_u32(value);
        }
        Ok(())
    }

    fn string(&mut self, id: u8, value: &Option<String>) -> Result<()> {
        if let Some(value) = value {
            put_string(self.start(id)?, value)?;
        }
        Ok(())
    }

    fn binary(&mut self, id: u8, value: &Option<bytes::Bytes>) -> Result<()> {
        if let Some(value) = value {
            put_binary(self.start(id)?, value)?;
        }
        Ok(())
    }
}

/// Appends a Property Length and the properties of `p`.
pub(crate) fn put_properties(out: &mut BytesMut, p: &Properties, place: Place) -> Result<()> {
    let mut s = Section {
        place,
        buf: BytesMut::new(),
    };
    s.u8(PAYLOAD_FORMAT_INDICATOR, p.payload_format_indicator)?;
    s.u32(MESSAGE_EXPIRY_INTERVAL, p.message_expiry_interval)?;
    s.string(CONTENT_TYPE, &p.content_type)?;
    s.string(RESPONSE_TOPIC, &p.response_topic)?;
    s.binary(CORRELATION_DATA, &p.correlation_data)?;
    if place == Place::Subscribe && p.subscription_identifiers.len() > 1 {
        return Err(Error::Encode(
            "SUBSCRIBE carries at most one subscription identifier",
        ));
    }
    for &id in &p.subscription_identifiers {
        if id == 0 {
            return Err(Error::Encode("subscription identifier 0"));
        }
        put_varint(s.start(SUBSCRIPTION_IDENTIFIER)?, id as usize)?;
    }
    s.u32(SESSION_EXPIRY_INTERVAL, p.session_expiry_interval)?;
    s.string(ASSIGNED_CLIENT_IDENTIFIER, &p.assigned_client_identifier)?;
    s.u16(SERVER_KEEP_ALIVE, p.server_keep_alive)?;
    s.string(AUTHENTICATION_METHOD, &p.authentication_method)?;
    s.binary(AUTHENTICATION_DATA, &p.authentication_data)?;
    s.u8(REQUEST_PROBLEM_INFORMATION, p.request_problem_information)?;
    s.u32(WILL_DELAY_INTERVAL, p.will_delay_interval)?;
    s.u8(REQUEST_RESPONSE_INFORMATION, p.request_response_information)?;
    s.string(RESPONSE_INFORMATION, &p.response_information)?;
    s.string(SERVER_REFERENCE, &p.server_reference)?;
    s.string(REASON_STRING, &p.reason_string)?;
    s.u16(RECEIVE_MAXIMUM, p.receive_maximum)?;
    s.u16(TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum)?;
    s.u16(TOPIC_ALIAS, p.topic_alias)?;
    s.u8(MAXIMUM_QOS, p.maximum_qos)?;
    s.u8(RETAIN_AVAILABLE, p.retain_available)?;
    for (name, value) in &p.user_properties {
        let buf = s.start(USER_PROPERTY)?;
        put_string(buf, name)?;
        put_string(buf, value)?;
    }
    s.u32(MAXIMUM_PACKET_SIZE, p.maximum_packet_size)?;
    s.u8(
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        p.wildcard_subscription_available,
    )?;
    s.u8(
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        p.subscription_identifier_available,
    )?;
    s.u8(
        SHARED_SUBSCRIPTION_AVAILABLE,
        p.shared_subscription_available,
    )?;
    put_varint(out, s.buf.len())?;
    out.put_slice(&s.buf);
    Ok(())
}
