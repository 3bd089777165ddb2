//! DISCONNECT (3.1.1 §3.14, 5.0 §3.14) and AUTH (5.0 §3.15).
//!
//! ```text
//! DISCONNECT, fixed header flags 0000
//!   3.1.1: no variable header, no payload (remaining length 0)
//!   5.0:
//!     Reason Code  byte; absent (Normal disconnection) when the
//!                  remaining length is 0                            5.0 §3.14.2.1
//!     Properties   absent (none) when the remaining length is
//!                  below 2                                          5.0 §3.14.2.2
//!
//! AUTH, 5.0 only, flags 0000
//!   Reason Code    byte; absent (Success) together with the
//!                  properties when the remaining length is 0        5.0 §3.15.2.1
//!   Properties     required when the Reason Code is present         5.0 §3.15.2.2
//! ```
//!
//! PINGREQ (§3.12) and PINGRESP (§3.13) have no body at all and are handled
//! in the parent module.

use bytes::{BufMut, BytesMut};

use super::primitives::Reader;
use super::properties::{put_properties, read_properties, Place};
use super::{read_reason, reason_byte};
use crate::{Auth, Disconnect, ProtocolVersion, ReasonCode, Result};

/// DISCONNECT reason codes (5.0 §3.14.2.1).
pub(super) const DISCONNECT_REASONS: &[ReasonCode] = {
    use ReasonCode::*;
    &[
        Success,
        DisconnectWithWillMessage,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        NotAuthorized,
        ServerBusy,
        ServerShuttingDown,
        KeepAliveTimeout,
        SessionTakenOver,
        TopicFilterInvalid,
        TopicNameInvalid,
        ReceiveMaximumExceeded,
        TopicAliasInvalid,
        PacketTooLarge,
        MessageRateTooHigh,
        QuotaExceeded,
        AdministrativeAction,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        SharedSubscriptionsNotSupported,
        ConnectionRateExceeded,
        MaximumConnectTime,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ]
};

/// AUTH reason codes (5.0 §3.15.2.1).
pub(super) const AUTH_REASONS: &[ReasonCode] = &[
    ReasonCode::Success,
    ReasonCode::ContinueAuthentication,
    ReasonCode::ReAuthenticate,
];

pub(crate) fn decode_disconnect(
    r: &mut Reader<'_>,
    version: ProtocolVersion,
) -> Result<Disconnect> {
    let mut d = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    if version == ProtocolVersion::V5 {
        if !r.is_empty() {
            d.reason = read_reason(r, DISCONNECT_REASONS)?;
        }
        if !r.is_empty() {
            d.properties = read_properties(r, Place::Disconnect)?;
        }
    }
    Ok(d)
}

pub(crate) fn encode_disconnect(
    d: &Disconnect,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<()> {
    if version == ProtocolVersion::V5 {
        let no_properties = d.properties.is_empty();
        if d.reason == ReasonCode::NORMAL_DISCONNECTION && no_properties {
            return Ok(());
        }
        out.put_u8(reason_byte(d.reason, DISCONNECT_REASONS)?);
        if !no_properties {
            put_properties(out, &d.properties, Place::Disconnect)?;
        }
    }
    Ok(())
}

/// Only called for 5.0: AUTH does not exist in 3.1.1.
pub(crate) fn decode_auth(r: &mut Reader<'_>) -> Result<Auth> {
    if r.is_empty() {
        return Ok(Auth {
            reason: ReasonCode::Success,
            properties: Default::default(),
        });
    }
    let reason = read_reason(r, AUTH_REASONS)?;
    let properties = read_properties(r, Place::Auth)?;
    Ok(Auth { reason, properties })
}

pub(crate) fn encode_auth(a: &Auth, out: &mut BytesMut) -> Result<()> {
    if a.reason == ReasonCode::Success && a.properties.is_empty() {
        return Ok(());
    }
    out.put_u8(reason_byte(a.reason, AUTH_REASONS)?);
    put_properties(out, &a.properties, Place::Auth)
}
