//! One test per way a packet can be refused, each asserting the exact error
//! variant. The bytes are minimal packets with the one fault in place.

use bytes::{Bytes, BytesMut};

use super::{decode_err, encoded, V311, V5};
use crate::{
    decode, encode, Auth, ConnAck, Connect, Error, Packet, Properties, ProtocolVersion, PubResp,
    Publish, QoS, ReasonCode, Result, SubAck, Subscribe, Subscription, SubscriptionOptions,
    Unsubscribe,
};

#[track_caller]
fn malformed(version: ProtocolVersion, bytes: &[u8]) {
    let e = decode_err(version, bytes);
    assert!(
        matches!(e, Error::Malformed(_)),
        "expected Malformed, got {e:?}"
    );
}

#[track_caller]
fn protocol(version: ProtocolVersion, bytes: &[u8]) {
    let e = decode_err(version, bytes);
    assert!(
        matches!(e, Error::Protocol(_)),
        "expected Protocol, got {e:?}"
    );
}

#[track_caller]
fn encode_refused(packet: Packet, version: ProtocolVersion) {
    let e = encoded(&packet, version).expect_err("encode should fail");
    assert!(matches!(e, Error::Encode(_)), "expected Encode, got {e:?}");
}

// --- Fixed header -----------------------------------------------------------

#[test]
fn remaining_length_of_five_bytes_is_malformed() {
    malformed(V5, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
    // Even before the fifth byte arrives.
    malformed(V5, &[0x30, 0x80, 0x80, 0x80, 0x80]);
}

#[test]
fn packet_too_large_is_detected_from_the_fixed_header() {
    // PUBLISH announcing 128 bytes (0x80 0x01): 3 + 128 = 131 bytes in all.
    assert_eq!(
        decode(&[0x30, 0x80, 0x01], V5, 100),
        Err(Error::PacketTooLarge {
            size: 131,
            max: 100
        })
    );
    // A packet of exactly the maximum size is fine.
    assert_eq!(decode(&[0xC0, 0x00], V311, 2), Ok((Packet::PingReq, 2)));
    assert_eq!(
        decode(&[0xC0, 0x00], V311, 1),
        Err(Error::PacketTooLarge { size: 2, max: 1 })
    );
}

#[test]
fn packet_type_0_is_malformed() {
    malformed(V311, &[0x00, 0x00]);
    malformed(V5, &[0x00, 0x00]);
}

#[test]
fn auth_in_3_1_1_is_malformed() {
    malformed(V311, &[0xF0, 0x00]);
}

#[test]
fn pubrel_subscribe_unsubscribe_need_flags_0010() {
    for version in [V311, V5] {
        malformed(version, &[0x60, 0x02, 0x00, 0x01]); // PUBREL with flags 0000
        malformed(version, &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]); // SUBSCRIBE 0000
        malformed(version, &[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']); // UNSUBSCRIBE 0000
    }
}

#[test]
fn other_packets_need_flags_0000() {
    for version in [V311, V5] {
        malformed(version, &[0xC1, 0x00]); // PINGREQ
        malformed(version, &[0xD8, 0x00]); // PINGRESP
        malformed(version, &[0xE2, 0x00]); // DISCONNECT
        malformed(version, &[0x42, 0x02, 0x00, 0x01]); // PUBACK
        malformed(version, &[0x12, 0x00]); // CONNECT
    }
}

#[test]
fn trailing_bytes_are_malformed() {
    malformed(V311, &[0xC0, 0x01, 0x00]); // PINGREQ with a body
    malformed(V311, &[0x40, 0x03, 0x00, 0x01, 0x00]); // 3.1.1 PUBACK with a reason byte
    malformed(V311, &[0xE0, 0x01, 0x00]); // 3.1.1 DISCONNECT with a reason byte
    malformed(V311, &[0x20, 0x03, 0x00, 0x00, 0x00]); // 3.1.1 CONNACK with properties
    malformed(V311, &[0xB0, 0x03, 0x00, 0x01, 0x00]); // 3.1.1 UNSUBACK with a reason
    malformed(V5, &[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00]); // PUBACK past its properties
    malformed(V5, &[0x20, 0x04, 0x00, 0x00, 0x00, 0x00]); // CONNACK past its properties
}

#[test]
fn field_running_past_the_packet_is_malformed() {
    // Topic length 5 in a PUBLISH of 3 bytes.
    malformed(V311, &[0x30, 0x03, 0x00, 0x05, b'a']);
    // Property length 9 with 2 bytes left.
    malformed(V5, &[0x40, 0x06, 0x00, 0x01, 0x80, 0x09, 0x1F, 0x00]);
}

// --- CONNECT ---------------------------------------------------------------

/// A 3.1.1 CONNECT with the given protocol name, level and flags, client id
/// "c" and no optional payload fields.
fn connect(name: &[u8], level: u8, flags: u8) -> Vec<u8> {
    let mut body = vec![0x00, name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, flags, 0x00, 0x3C]);
    if level == 5 {
        body.push(0x00); // no properties
    }
    body.extend_from_slice(&[0x00, 0x01, b'c']);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

#[test]
fn connect_unknown_protocol_level_is_unsupported() {
    assert_eq!(
        decode_err(V311, &connect(b"MQTT", 3, 0x02)),
        Error::UnsupportedProtocolVersion(3)
    );
    assert_eq!(
        decode_err(V5, &connect(b"MQTT", 6, 0x02)),
        Error::UnsupportedProtocolVersion(6)
    );
}

#[test]
fn connect_mqisdp_is_unsupported() {
    assert_eq!(
        decode_err(V311, &connect(b"MQIsdp", 3, 0x02)),
        Error::UnsupportedProtocolVersion(3)
    );
}

#[test]
fn connect_other_protocol_name_is_malformed() {
    malformed(V311, &connect(b"HTTP", 4, 0x02));
    malformed(V311, &connect(b"mqtt", 4, 0x02));
}

#[test]
fn connect_reserved_flag_is_malformed() {
    malformed(V311, &connect(b"MQTT", 4, 0x03));
    malformed(V5, &connect(b"MQTT", 5, 0x03));
}

#[test]
fn connect_will_qos_without_will_is_malformed() {
    malformed(V311, &connect(b"MQTT", 4, 0x0A)); // will QoS 1, no will flag
    malformed(V5, &connect(b"MQTT", 5, 0x12)); // will QoS 2, no will flag
}

#[test]
fn connect_will_retain_without_will_is_malformed() {
    malformed(V311, &connect(b"MQTT", 4, 0x22));
}

#[test]
fn connect_will_qos_3_is_malformed() {
    // The flag check comes before the will fields are read.
    malformed(V311, &connect(b"MQTT", 4, 0x1E));
}

#[test]
fn connect_3_1_1_password_without_user_name_is_malformed() {
    malformed(V311, &connect(b"MQTT", 4, 0x42));
}

#[test]
fn connect_missing_flagged_field_is_malformed() {
    // User name flag set, but the payload ends after the client id.
    malformed(V311, &connect(b"MQTT", 4, 0x82));
}

#[test]
fn connect_will_topic_with_wildcard_is_invalid() {
    let bytes = [
        0x10, 20, // CONNECT
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x06, 0x00, 0x00, // will | clean session
        0x00, 0x01, b'c', // client id
        0x00, 0x03, b'a', b'/', b'#', // will topic "a/#"
        0x00, 0x00, // empty will payload
    ];
    assert_eq!(decode_err(V311, &bytes), Error::TopicNameInvalid);
}

#[test]
fn client_id_with_invalid_utf8_is_malformed() {
    let mut bytes = connect(b"MQTT", 4, 0x02);
    *bytes.last_mut().expect("client id") = 0xFF;
    malformed(V311, &bytes);
}

#[test]
fn client_id_with_nul_is_malformed() {
    let mut bytes = connect(b"MQTT", 4, 0x02);
    *bytes.last_mut().expect("client id") = 0x00;
    malformed(V311, &bytes);
}

// --- CONNACK ---------------------------------------------------------------

#[test]
fn connack_reserved_flags_are_malformed() {
    malformed(V311, &[0x20, 0x02, 0x02, 0x00]);
}

#[test]
fn connack_unknown_3_1_1_return_code_is_malformed() {
    malformed(V311, &[0x20, 0x02, 0x00, 0x06]);
}

#[test]
fn connack_5_0_reason_for_another_packet_is_malformed() {
    malformed(V5, &[0x20, 0x03, 0x00, 0x10, 0x00]); // "no matching subscribers"
}

#[test]
fn connack_session_present_with_refusal_is_protocol_error() {
    protocol(V311, &[0x20, 0x02, 0x01, 0x05]);
    protocol(V5, &[0x20, 0x03, 0x01, 0x87, 0x00]);
}

// --- PUBLISH ---------------------------------------------------------------

#[test]
fn publish_qos_3_is_malformed() {
    malformed(V311, &[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]);
}

#[test]
fn publish_dup_at_qos_0_is_malformed() {
    malformed(V311, &[0x38, 0x03, 0x00, 0x01, b'a']);
}

#[test]
fn publish_packet_id_0_is_protocol_error() {
    protocol(V311, &[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00]);
}

#[test]
fn publish_topic_with_plus_is_invalid() {
    assert_eq!(
        decode_err(V311, &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+']),
        Error::TopicNameInvalid
    );
}

#[test]
fn publish_topic_with_hash_is_invalid() {
    assert_eq!(
        decode_err(V5, &[0x30, 0x04, 0x00, 0x01, b'#', 0x00]),
        Error::TopicNameInvalid
    );
}

#[test]
fn publish_empty_topic_in_3_1_1_is_invalid() {
    assert_eq!(
        decode_err(V311, &[0x30, 0x02, 0x00, 0x00]),
        Error::TopicNameInvalid
    );
}

#[test]
fn publish_empty_topic_without_alias_in_5_0_is_protocol_error() {
    protocol(V5, &[0x30, 0x03, 0x00, 0x00, 0x00]);
}

#[test]
fn publish_topic_with_invalid_utf8_is_malformed() {
    malformed(V311, &[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28]);
}

#[test]
fn publish_topic_with_nul_is_malformed() {
    malformed(V311, &[0x30, 0x05, 0x00, 0x03, b'a', 0x00, b'b']);
}

/// 5.0 §3.3.2.3.4: alias 0 is "Topic Alias invalid" (0x94), not a generic
/// protocol error.
#[test]
fn publish_topic_alias_0_is_topic_alias_invalid() {
    let bytes = [0x30, 0x07, 0x00, 0x01, b'a', 0x03, 0x23, 0x00, 0x00];
    assert_eq!(decode(&bytes, V5, 1024), Err(Error::TopicAliasInvalid));
}

#[test]
fn publish_subscription_identifier_0_is_protocol_error() {
    protocol(V5, &[0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x0B, 0x00]);
}

// --- PUBACK, PUBREC, PUBREL, PUBCOMP --------------------------------------

#[test]
fn pub_responses_with_packet_id_0_are_protocol_errors() {
    for version in [V311, V5] {
        for first in [0x40, 0x50, 0x62, 0x70] {
            protocol(version, &[first, 0x02, 0x00, 0x00]);
        }
    }
}

#[test]
fn pub_response_without_packet_id_is_malformed() {
    malformed(V5, &[0x40, 0x01, 0x00]);
}

#[test]
fn unknown_reason_code_is_malformed() {
    malformed(V5, &[0x40, 0x03, 0x00, 0x01, 0x03]); // 0x03 is unassigned
}

#[test]
fn reason_code_of_another_packet_is_malformed() {
    malformed(V5, &[0x62, 0x03, 0x00, 0x01, 0x10]); // PUBREL with "no matching subscribers"
    malformed(V5, &[0x40, 0x03, 0x00, 0x01, 0x92]); // PUBACK with "packet id not found"
}

// --- Properties ------------------------------------------------------------

#[test]
fn property_not_allowed_in_packet_is_protocol_error() {
    // PUBACK carrying a topic alias.
    protocol(V5, &[0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01]);
    // CONNECT carrying a will delay interval (a will property).
    let mut bytes = vec![
        0x10, 18, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x00,
    ];
    bytes.extend_from_slice(&[0x05, 0x18, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]);
    protocol(V5, &bytes);
}

#[test]
fn repeated_single_valued_property_is_protocol_error() {
    // PUBACK with the reason string twice.
    protocol(
        V5,
        &[
            0x40, 0x0B, 0x00, 0x01, 0x80, 0x07, 0x1F, 0x00, 0x00, 0x1F, 0x00, 0x01, b'x',
        ],
    );
}

#[test]
fn repeated_subscription_identifier_in_subscribe_is_protocol_error() {
    protocol(
        V5,
        &[
            0x82, 0x0B, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'a', 0x00,
        ],
    );
}

#[test]
fn unknown_property_identifier_is_malformed() {
    malformed(V5, &[0x40, 0x06, 0x00, 0x01, 0x00, 0x02, 0x7F, 0x00]);
}

#[test]
fn zero_or_one_property_with_2_is_protocol_error() {
    // PUBLISH with payload format indicator 2.
    protocol(V5, &[0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x01, 0x02]);
}

#[test]
fn authentication_data_without_method_is_protocol_error() {
    // AUTH, continue authentication, with authentication data 01 only.
    protocol(V5, &[0xF0, 0x06, 0x18, 0x04, 0x16, 0x00, 0x01, 0x01]);
}

#[test]
fn receive_maximum_0_is_protocol_error() {
    protocol(V5, &[0x20, 0x06, 0x00, 0x00, 0x03, 0x21, 0x00, 0x00]);
}

// --- SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK ------------------------------

#[test]
fn subscribe_packet_id_0_is_protocol_error() {
    protocol(V311, &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00]);
}

#[test]
fn subscribe_without_filters_is_protocol_error() {
    protocol(V311, &[0x82, 0x02, 0x00, 0x01]);
    protocol(V5, &[0x82, 0x03, 0x00, 0x01, 0x00]);
}

#[test]
fn subscribe_filter_without_options_is_malformed() {
    malformed(V311, &[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']);
}

#[test]
fn subscribe_options_reserved_bits_3_1_1_are_malformed() {
    malformed(V311, &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04]); // no-local bit in 3.1.1
}

#[test]
fn subscribe_options_reserved_bits_5_0_are_malformed() {
    malformed(V5, &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40]);
}

#[test]
fn subscribe_retain_handling_3_is_malformed() {
    malformed(V5, &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30]);
}

#[test]
fn subscribe_qos_3_is_malformed() {
    malformed(V311, &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03]);
}

#[test]
fn subscribe_filter_with_nul_is_malformed() {
    malformed(V311, &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00]);
}

#[test]
fn subscribe_invalid_filter_is_left_to_the_broker() -> Result<()> {
    // "a/#/b" is no valid filter, but the SUBACK says so, not the decoder.
    let bytes = [
        0x82, 0x0A, 0x00, 0x01, 0x00, 0x05, b'a', b'/', b'#', b'/', b'b', 0x00,
    ];
    let (packet, _) = decode(&bytes, V311, 64)?;
    let Packet::Subscribe(s) = packet else {
        panic!("{packet:?}")
    };
    assert_eq!(s.subscriptions[0].filter, "a/#/b");
    Ok(())
}

#[test]
fn suback_unknown_3_1_1_code_is_malformed() {
    malformed(V311, &[0x90, 0x03, 0x00, 0x01, 0x03]);
}

#[test]
fn suback_without_reasons_is_protocol_error() {
    protocol(V311, &[0x90, 0x02, 0x00, 0x01]);
}

#[test]
fn unsubscribe_packet_id_0_is_protocol_error() {
    protocol(V311, &[0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a']);
}

#[test]
fn unsubscribe_without_filters_is_protocol_error() {
    protocol(V311, &[0xA2, 0x02, 0x00, 0x01]);
    protocol(V5, &[0xA2, 0x03, 0x00, 0x01, 0x00]);
}

#[test]
fn unsuback_5_0_without_reasons_is_protocol_error() {
    protocol(V5, &[0xB0, 0x03, 0x00, 0x01, 0x00]);
}

// --- DISCONNECT, AUTH --------------------------------------------------------

#[test]
fn disconnect_reason_of_another_packet_is_malformed() {
    malformed(V5, &[0xE0, 0x01, 0x18]); // "continue authentication"
}

#[test]
fn auth_with_reason_but_no_property_length_is_malformed() {
    malformed(V5, &[0xF0, 0x01, 0x18]);
}

// --- Encoding --------------------------------------------------------------

#[test]
fn encode_string_over_65535_bytes_fails() {
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a".repeat(65_536),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::new(),
    };
    encode_refused(Packet::Publish(p), V311);
}

#[test]
fn encode_string_of_65535_bytes_works() -> Result<()> {
    let p = Packet::Unsubscribe(Unsubscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec!["a".repeat(65_535)],
    });
    let bytes = encoded(&p, V311)?;
    // 1 type byte + 3 length bytes + packet id + string length + string.
    assert_eq!(bytes.len(), 1 + 3 + 2 + 2 + 65_535);
    assert_eq!(decode(&bytes, V311, usize::MAX)?, (p, bytes.len()));
    Ok(())
}

#[test]
fn encode_packet_over_268435455_bytes_fails() {
    // vec! of zeros is allocated lazily, and the size is checked before copying.
    let payload = Bytes::from(vec![0u8; 268_435_456]);
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a".into(),
        packet_id: None,
        properties: Properties::default(),
        payload,
    };
    let mut out = BytesMut::new();
    let e = encode(&Packet::Publish(p), V311, &mut out).expect_err("too large");
    assert!(matches!(e, Error::Encode(_)), "{e:?}");
    assert!(out.is_empty(), "nothing written on failure");
}

#[test]
fn encode_refuses_what_decode_refuses() {
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "a".into(),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::new(),
    };
    // QoS 1 without a packet id.
    encode_refused(Packet::Publish(publish.clone()), V311);
    // DUP at QoS 0.
    encode_refused(
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::AtMostOnce,
            ..publish.clone()
        }),
        V311,
    );
    // Packet id 0.
    encode_refused(Packet::PubAck(PubResp::success(0)), V5);
    // A property PUBACK may not carry.
    let mut ack = PubResp::success(1);
    ack.properties.topic_alias = Some(1);
    encode_refused(Packet::PubAck(ack), V5);
    // A reason code PUBREL may not carry.
    encode_refused(
        Packet::PubRel(PubResp {
            reason: ReasonCode::QuotaExceeded,
            ..PubResp::success(1)
        }),
        V5,
    );
    // Two subscription identifiers in SUBSCRIBE, and no filters.
    let subscribe = Subscribe {
        packet_id: 1,
        properties: Properties {
            subscription_identifiers: vec![1, 2],
            ..Default::default()
        },
        subscriptions: vec![Subscription {
            filter: "a".into(),
            options: SubscriptionOptions::default(),
        }],
    };
    encode_refused(Packet::Subscribe(subscribe.clone()), V5);
    encode_refused(
        Packet::Subscribe(Subscribe {
            subscriptions: vec![],
            ..subscribe
        }),
        V311,
    );
    // Retain handling 3.
    let options = SubscriptionOptions {
        retain_handling: 3,
        ..Default::default()
    };
    let subscribe = Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        subscriptions: vec![Subscription {
            filter: "a".into(),
            options,
        }],
    };
    encode_refused(Packet::Subscribe(subscribe), V5);
    // A SUBACK without reasons.
    encode_refused(
        Packet::SubAck(SubAck {
            packet_id: 1,
            properties: Properties::default(),
            reasons: vec![],
        }),
        V311,
    );
    // AUTH in 3.1.1.
    encode_refused(
        Packet::Auth(Auth {
            reason: ReasonCode::Success,
            properties: Properties::default(),
        }),
        V311,
    );
    // Session present on a refused connection.
    encode_refused(
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason: ReasonCode::NotAuthorized,
            properties: Properties::default(),
        }),
        V5,
    );
    // A 3.1.1 password without a user name.
    let connect = Connect {
        protocol: ProtocolVersion::V311,
        clean_start: true,
        keep_alive: 0,
        client_id: "c".into(),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"p")),
        properties: Properties::default(),
    };
    encode_refused(Packet::Connect(connect), V311);
    // A string containing U+0000.
    encode_refused(
        Packet::Publish(Publish {
            topic: "a\0".into(),
            qos: QoS::AtMostOnce,
            ..publish
        }),
        V311,
    );
}
