//! Property tests: every spec-valid packet survives encode → decode, and
//! decoding arbitrary bytes never panics and re-encodes consistently.
//!
//! The strategies generate only packets that are valid for the version, so
//! that any difference after the round trip is a codec bug, not a test one.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

use super::super::connect::CONNACK_REASONS;
use super::super::disconnect::{AUTH_REASONS, DISCONNECT_REASONS};
use super::super::properties::Place;
use super::super::publish::{PUBACK_REASONS, PUBREL_REASONS};
use super::super::subscribe::{SUBACK_REASONS, UNSUBACK_REASONS};
use super::{V311, V5};
use crate::{
    decode, encode, Auth, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion,
    PubResp, Publish, QoS, ReasonCode, SubAck, Subscribe, Subscription, SubscriptionOptions,
    UnsubAck, Unsubscribe, Will,
};

/// UTF-8 text without U+0000, including multi-byte characters.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 /_$+#é€😀-]{0,12}"
}

/// A valid topic name: no wildcards, not empty.
fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9/ $é€-]{1,12}"
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn reason_from(allowed: &'static [ReasonCode]) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(allowed)
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    of(0u8..=1)
}

/// Every property with a valid value, each present or not.
fn any_properties() -> impl Strategy<Value = Properties> {
    let message = (
        of(0u8..=1),
        of(any::<u32>()),
        of(text()),
        of(text()),
        of(binary()),
    );
    let connection = (
        vec(1u32..=268_435_455, 0..3),
        of(any::<u32>()),
        of(text()),
        of(any::<u16>()),
        of(text()),
        of(binary()),
        flag(),
        of(any::<u32>()),
        flag(),
        of(text()),
        of(text()),
        of(text()),
    );
    let limits = (
        of(1..=u16::MAX),
        of(any::<u16>()),
        of(1..=u16::MAX),
        flag(),
        flag(),
        vec((text(), text()), 0..3),
        of(1..=u32::MAX),
        flag(),
        flag(),
        flag(),
    );
    (message, connection, limits).prop_map(|(m, c, l)| Properties {
        payload_format_indicator: m.0,
        message_expiry_interval: m.1,
        content_type: m.2,
        response_topic: m.3,
        correlation_data: m.4,
        subscription_identifiers: c.0,
        session_expiry_interval: c.1,
        assigned_client_identifier: c.2,
        server_keep_alive: c.3,
        authentication_method: c.4,
        authentication_data: c.5,
        request_problem_information: c.6,
        will_delay_interval: c.7,
        request_response_information: c.8,
        response_information: c.9,
        server_reference: c.10,
        reason_string: c.11,
        receive_maximum: l.0,
        topic_alias_maximum: l.1,
        topic_alias: l.2,
        maximum_qos: l.3,
        retain_available: l.4,
        user_properties: l.5,
        maximum_packet_size: l.6,
        wildcard_subscription_available: l.7,
        subscription_identifier_available: l.8,
        shared_subscription_available: l.9,
    })
}

/// Drops what `place` may not carry (5.0 §2.2.2.2).
fn restrict(p: Properties, place: Place) -> Properties {
    fn keep<T>(place: Place, id: u8, value: Option<T>) -> Option<T> {
        value.filter(|_| place.allows(id))
    }
    let mut subscription_identifiers = if place.allows(0x0B) {
        p.subscription_identifiers
    } else {
        Vec::new()
    };
    if place == Place::Subscribe {
        subscription_identifiers.truncate(1);
    }
    // Authentication data needs a method beside it.
    let authentication_method = match (&p.authentication_method, &p.authentication_data) {
        (None, Some(_)) => Some("SCRAM-SHA-1".to_owned()),
        (method, _) => method.clone(),
    };
    Properties {
        payload_format_indicator: keep(place, 0x01, p.payload_format_indicator),
        message_expiry_interval: keep(place, 0x02, p.message_expiry_interval),
        content_type: keep(place, 0x03, p.content_type),
        response_topic: keep(place, 0x08, p.response_topic),
        correlation_data: keep(place, 0x09, p.correlation_data),
        subscription_identifiers,
        session_expiry_interval: keep(place, 0x11, p.session_expiry_interval),
        assigned_client_identifier: keep(place, 0x12, p.assigned_client_identifier),
        server_keep_alive: keep(place, 0x13, p.server_keep_alive),
        authentication_method: keep(place, 0x15, authentication_method),
        authentication_data: keep(place, 0x16, p.authentication_data),
        request_problem_information: keep(place, 0x17, p.request_problem_information),
        will_delay_interval: keep(place, 0x18, p.will_delay_interval),
        request_response_information: keep(place, 0x19, p.request_response_information),
        response_information: keep(place, 0x1A, p.response_information),
        server_reference: keep(place, 0x1C, p.server_reference),
        reason_string: keep(place, 0x1F, p.reason_string),
        receive_maximum: keep(place, 0x21, p.receive_maximum),
        topic_alias_maximum: keep(place, 0x22, p.topic_alias_maximum),
        topic_alias: keep(place, 0x23, p.topic_alias),
        maximum_qos: keep(place, 0x24, p.maximum_qos),
        retain_available: keep(place, 0x25, p.retain_available),
        user_properties: if place.allows(0x26) {
            p.user_properties
        } else {
            Vec::new()
        },
        maximum_packet_size: keep(place, 0x27, p.maximum_packet_size),
        wildcard_subscription_available: keep(place, 0x28, p.wildcard_subscription_available),
        subscription_identifier_available: keep(place, 0x29, p.subscription_identifier_available),
        shared_subscription_available: keep(place, 0x2A, p.shared_subscription_available),
    }
}

/// Properties for `place`; none at all in 3.1.1, and often none in 5.0 so
/// that the short forms are exercised.
fn properties(version: ProtocolVersion, place: Place) -> BoxedStrategy<Properties> {
    match version {
        ProtocolVersion::V311 => Just(Properties::default()).boxed(),
        ProtocolVersion::V5 => prop_oneof![
            Just(Properties::default()),
            any_properties().prop_map(move |p| restrict(p, place)),
        ]
        .boxed(),
    }
}

fn will(version: ProtocolVersion) -> impl Strategy<Value = Will> {
    (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        properties(version, Place::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        of(will(version)),
        of(text()),
        of(binary()),
        properties(version, Place::Connect),
    )
        .prop_map(
            move |(
                clean_start,
                keep_alive,
                client_id,
                will,
                mut username,
                password,
                properties,
            )| {
                if version == ProtocolVersion::V311 && password.is_some() && username.is_none() {
                    username = Some(String::new());
                }
                Packet::Connect(Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                })
            },
        )
}

fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    use ReasonCode::*;
    const V311_REASONS: &[ReasonCode] = &[
        Success,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        ServerUnavailable,
        BadUserNameOrPassword,
        NotAuthorized,
    ];
    let reasons = match version {
        ProtocolVersion::V311 => V311_REASONS,
        ProtocolVersion::V5 => CONNACK_REASONS,
    };
    (
        any::<bool>(),
        reason_from(reasons),
        properties(version, Place::ConnAck),
    )
        .prop_map(|(session_present, reason, properties)| {
            let session_present = session_present && reason == Success;
            Packet::ConnAck(ConnAck {
                session_present,
                reason,
                properties,
            })
        })
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        properties(version, Place::Publish),
        binary(),
    )
        .prop_map(
            move |(dup, qos, retain, topic, drop_topic, id, properties, payload)| {
                let at_most_once = qos == QoS::AtMostOnce;
                // 5.0 may leave the topic empty when an alias stands in.
                let topic = if drop_topic && properties.topic_alias.is_some() {
                    String::new()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    packet_id: (!at_most_once).then_some(id),
                    properties,
                    payload,
                })
            },
        )
}

fn pub_resp(version: ProtocolVersion, reasons: &'static [ReasonCode]) -> BoxedStrategy<PubResp> {
    match version {
        ProtocolVersion::V311 => packet_id().prop_map(PubResp::success).boxed(),
        ProtocolVersion::V5 => (
            packet_id(),
            reason_from(reasons),
            properties(version, Place::PubResp),
        )
            .prop_map(|(packet_id, reason, properties)| PubResp {
                packet_id,
                reason,
                properties,
            })
            .boxed(),
    }
}

fn subscription_options(version: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    match version {
        ProtocolVersion::V311 => qos()
            .prop_map(|qos| SubscriptionOptions {
                qos,
                ..Default::default()
            })
            .boxed(),
        ProtocolVersion::V5 => (qos(), any::<bool>(), any::<bool>(), 0u8..=2)
            .prop_map(
                |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                },
            )
            .boxed(),
    }
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let subscription = (text(), subscription_options(version))
        .prop_map(|(filter, options)| Subscription { filter, options });
    (
        packet_id(),
        properties(version, Place::Subscribe),
        vec(subscription, 1..4),
    )
        .prop_map(|(packet_id, properties, subscriptions)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                subscriptions,
            })
        })
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    use ReasonCode::*;
    const V311_REASONS: &[ReasonCode] = &[Success, GrantedQoS1, GrantedQoS2, UnspecifiedError];
    let reasons = match version {
        ProtocolVersion::V311 => V311_REASONS,
        ProtocolVersion::V5 => SUBACK_REASONS,
    };
    (
        packet_id(),
        properties(version, Place::SubAck),
        vec(reason_from(reasons), 1..4),
    )
        .prop_map(|(packet_id, properties, reasons)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reasons,
            })
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        properties(version, Place::Unsubscribe),
        vec(text(), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reasons = match version {
        ProtocolVersion::V311 => Just(Vec::new()).boxed(),
        ProtocolVersion::V5 => vec(reason_from(UNSUBACK_REASONS), 1..4).boxed(),
    };
    (packet_id(), properties(version, Place::UnsubAck), reasons).prop_map(
        |(packet_id, properties, reasons)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reasons,
            })
        },
    )
}

fn disconnect(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    match version {
        ProtocolVersion::V311 => {
            Just(Packet::Disconnect(Disconnect::new(ReasonCode::Success))).boxed()
        }
        ProtocolVersion::V5 => (
            reason_from(DISCONNECT_REASONS),
            properties(version, Place::Disconnect),
        )
            .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
            .boxed(),
    }
}

fn auth() -> impl Strategy<Value = Packet> {
    (reason_from(AUTH_REASONS), properties(V5, Place::Auth))
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Any packet that is valid in `version`.
fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        pub_resp(version, PUBACK_REASONS).prop_map(Packet::PubAck),
        pub_resp(version, PUBACK_REASONS).prop_map(Packet::PubRec),
        pub_resp(version, PUBREL_REASONS).prop_map(Packet::PubRel),
        pub_resp(version, PUBREL_REASONS).prop_map(Packet::PubComp),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    match version {
        ProtocolVersion::V311 => common.boxed(),
        ProtocolVersion::V5 => prop_oneof![14 => common, 1 => auth()].boxed(),
    }
}

fn round_trip(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    let (decoded, used) = decode(&out, version, out.len())
        .map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
    prop_assert_eq!(&decoded, packet);
    prop_assert_eq!(used, out.len());
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    // More cases than proptest's 256 by default; PROPTEST_CASES still wins
    // for a long hunt.
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn v311_packets_round_trip(packet in packet(V311)) {
        round_trip(&packet, V311)?;
    }

    #[test]
    fn v5_packets_round_trip(packet in packet(V5)) {
        round_trip(&packet, V5)?;
    }

    /// What the fuzz target checks, cheaply, on every `cargo test`.
    #[test]
    fn decoding_arbitrary_bytes_is_consistent(bytes in vec(any::<u8>(), 0..64), v5 in any::<bool>()) {
        let version = if v5 { V5 } else { V311 };
        if let Ok((packet, used)) = decode(&bytes, version, 256) {
            prop_assert!(used <= bytes.len());
            let version = match &packet {
                Packet::Connect(c) => c.protocol,
                _ => version,
            };
            round_trip(&packet, version)?;
        }
    }

    /// Same, but starting from a valid packet with one byte changed, which
    /// reaches far deeper into the decoders than random bytes.
    #[test]
    fn decoding_mutated_packets_is_consistent(
        packet in packet(V5),
        v5 in any::<bool>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut out = BytesMut::new();
        encode(&packet, V5, &mut out).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
        let i = at.index(out.len());
        out[i] = byte;
        let version = if v5 { V5 } else { V311 };
        if let Ok((packet, _)) = decode(&out, version, usize::MAX) {
            let version = match &packet {
                Packet::Connect(c) => c.protocol,
                _ => version,
            };
            round_trip(&packet, version)?;
        }
    }
}
