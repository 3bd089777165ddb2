//! One annotated byte literal per packet shape, decoded and encoded both ways.
//! Section numbers are those of the spec for the version at hand.

use bytes::Bytes;

use super::{check, check_decode, decode_err, encoded, MAX, V311, V5};
use crate::{
    decode, Auth, ConnAck, Connect, Disconnect, Error, Packet, Properties, ProtocolVersion,
    PubResp, Publish, QoS, ReasonCode, Result, SubAck, Subscribe, Subscription,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

fn user_kv() -> Vec<(String, String)> {
    vec![("k".into(), "v".into())]
}

// --- 3.1.1 -----------------------------------------------------------------

const V311_CONNECT: &[u8] = &[
    0x10, 31, // CONNECT, remaining length 31
    0x00, 0x04, b'M', b'Q', b'T', b'T', // §3.1.2.1 protocol name
    0x04, // §3.1.2.2 level 4 = 3.1.1
    0xEE, // §3.1.2.3 user name | password | will retain | will QoS 1 | will | clean session
    0x00, 0x3C, // §3.1.2.10 keep alive 60 s
    0x00, 0x03, b'c', b'i', b'd', // §3.1.3.1 client id "cid"
    0x00, 0x03, b'w', b'/', b't', // §3.1.3.2 will topic "w/t"
    0x00, 0x02, b'b', b'y', // §3.1.3.3 will message "by"
    0x00, 0x01, b'u', // §3.1.3.4 user name "u"
    0x00, 0x02, b'p', b'w', // §3.1.3.5 password "pw"
];

fn v311_connect() -> Packet {
    Packet::Connect(Connect {
        protocol: ProtocolVersion::V311,
        clean_start: true,
        keep_alive: 60,
        client_id: "cid".into(),
        will: Some(Will {
            topic: "w/t".into(),
            payload: Bytes::from_static(b"by"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"pw")),
        properties: Properties::default(),
    })
}

#[test]
fn v311_connect_with_will_and_credentials() -> Result<()> {
    check(V311, V311_CONNECT, v311_connect())?;
    // CONNECT names its own version: the negotiated one is not used.
    check_decode(V5, V311_CONNECT, v311_connect())
}

const V311_CONNECT_MINIMAL: &[u8] = &[
    0x10, 12, // CONNECT, remaining length 12
    0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
    0x04, // level 4
    0x00, // no flags: keep the session
    0x00, 0x00, // keep alive off
    0x00, 0x00, // empty client id
];

#[test]
fn v311_connect_minimal() -> Result<()> {
    let connect = Connect {
        protocol: ProtocolVersion::V311,
        clean_start: false,
        keep_alive: 0,
        client_id: String::new(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    check(V311, V311_CONNECT_MINIMAL, Packet::Connect(connect))
}

const V311_CONNACK: &[u8] = &[
    0x20, 0x02, // CONNACK, remaining length 2
    0x01, // §3.2.2.2 session present
    0x00, // §3.2.2.3 connection accepted
];

#[test]
fn v311_connack_accepted() -> Result<()> {
    let ack = ConnAck {
        session_present: true,
        reason: ReasonCode::Success,
        properties: Properties::default(),
    };
    check(V311, V311_CONNACK, Packet::ConnAck(ack))
}

const V311_CONNACK_REFUSED: &[u8] = &[
    0x20, 0x02, // CONNACK, remaining length 2
    0x00, // no session
    0x05, // §3.2.2.3 not authorized
];

#[test]
fn v311_connack_refused() -> Result<()> {
    let ack = ConnAck {
        session_present: false,
        reason: ReasonCode::NotAuthorized,
        properties: Properties::default(),
    };
    check(V311, V311_CONNACK_REFUSED, Packet::ConnAck(ack))
}

#[test]
fn v311_connack_maps_5_0_reasons_onto_return_codes() -> Result<()> {
    let ack = |reason| {
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason,
            properties: Properties::default(),
        })
    };
    assert_eq!(
        encoded(&ack(ReasonCode::Banned), V311)?,
        [0x20, 0x02, 0x00, 0x05]
    );
    assert_eq!(
        encoded(&ack(ReasonCode::ServerBusy), V311)?,
        [0x20, 0x02, 0x00, 0x03]
    );
    Ok(())
}

const V311_PUBLISH_QOS0: &[u8] = &[
    0x30, 0x07, // PUBLISH, QoS 0, remaining length 7
    0x00, 0x03, b'a', b'/', b'b', // §3.3.2.1 topic "a/b"
    b'h', b'i', // §3.3.3 payload; QoS 0 has no packet id
];

fn publish(qos: QoS, packet_id: Option<u16>, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: "a/b".into(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    }
}

#[test]
fn v311_publish_qos0() -> Result<()> {
    check(
        V311,
        V311_PUBLISH_QOS0,
        Packet::Publish(publish(QoS::AtMostOnce, None, b"hi")),
    )
}

const V311_PUBLISH_QOS1_DUP_RETAIN: &[u8] = &[
    0x3B, 0x09, // PUBLISH, §3.3.1 DUP | QoS 1 | RETAIN, remaining length 9
    0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
    0x00, 0x07, // §3.3.2.2 packet id 7
    b'h', b'i', // payload
];

#[test]
fn v311_publish_qos1_dup_retain() -> Result<()> {
    let p = Publish {
        dup: true,
        retain: true,
        ..publish(QoS::AtLeastOnce, Some(7), b"hi")
    };
    check(V311, V311_PUBLISH_QOS1_DUP_RETAIN, Packet::Publish(p))
}

const V311_PUBLISH_QOS2_EMPTY: &[u8] = &[
    0x34, 0x07, // PUBLISH, QoS 2, remaining length 7
    0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
    0x12, 0x34, // packet id 0x1234
          // empty payload
];

#[test]
fn v311_publish_qos2_empty_payload() -> Result<()> {
    check(
        V311,
        V311_PUBLISH_QOS2_EMPTY,
        Packet::Publish(publish(QoS::ExactlyOnce, Some(0x1234), b"")),
    )
}

const V311_PUBACK: &[u8] = &[0x40, 0x02, 0x00, 0x07]; // PUBACK, §3.4.2 packet id 7
const V311_PUBREC: &[u8] = &[0x50, 0x02, 0x00, 0x07]; // PUBREC, §3.5.2 packet id 7
const V311_PUBREL: &[u8] = &[0x62, 0x02, 0x00, 0x07]; // PUBREL, §3.6.1 flags 0010, packet id 7
const V311_PUBCOMP: &[u8] = &[0x70, 0x02, 0x00, 0x07]; // PUBCOMP, §3.7.2 packet id 7

#[test]
fn v311_publish_acknowledgements() -> Result<()> {
    check(V311, V311_PUBACK, Packet::PubAck(PubResp::success(7)))?;
    check(V311, V311_PUBREC, Packet::PubRec(PubResp::success(7)))?;
    check(V311, V311_PUBREL, Packet::PubRel(PubResp::success(7)))?;
    check(V311, V311_PUBCOMP, Packet::PubComp(PubResp::success(7)))
}

const V311_SUBSCRIBE: &[u8] = &[
    0x82, 12, // SUBSCRIBE, §3.8.1 flags 0010, remaining length 12
    0x00, 0x0A, // §3.8.2 packet id 10
    0x00, 0x03, b'a', b'/', b'#', // §3.8.3 filter "a/#"
    0x01, // requested QoS 1
    0x00, 0x01, b'b', // filter "b"
    0x02, // requested QoS 2
];

fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..Default::default()
    }
}

#[test]
fn v311_subscribe() -> Result<()> {
    let s = Subscribe {
        packet_id: 10,
        properties: Properties::default(),
        subscriptions: vec![
            Subscription {
                filter: "a/#".into(),
                options: options(QoS::AtLeastOnce),
            },
            Subscription {
                filter: "b".into(),
                options: options(QoS::ExactlyOnce),
            },
        ],
    };
    check(V311, V311_SUBSCRIBE, Packet::Subscribe(s))
}

const V311_SUBACK: &[u8] = &[
    0x90, 0x06, // SUBACK, remaining length 6
    0x00, 0x0A, // §3.9.2 packet id 10
    0x00, 0x01, 0x02, 0x80, // §3.9.3 granted QoS 0, 1, 2, failure
];

#[test]
fn v311_suback() -> Result<()> {
    let mut ack = SubAck {
        packet_id: 10,
        properties: Properties::default(),
        reasons: vec![
            ReasonCode::GRANTED_QOS0,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ],
    };
    check(V311, V311_SUBACK, Packet::SubAck(ack.clone()))?;
    // Every 5.0 failure becomes the one 3.1.1 failure code.
    ack.reasons[3] = ReasonCode::NotAuthorized;
    assert_eq!(encoded(&Packet::SubAck(ack), V311)?, V311_SUBACK);
    Ok(())
}

const V311_UNSUBSCRIBE: &[u8] = &[
    0xA2, 10, // UNSUBSCRIBE, §3.10.1 flags 0010, remaining length 10
    0x00, 0x0B, // §3.10.2 packet id 11
    0x00, 0x03, b'a', b'/', b'b', // §3.10.3 filter "a/b"
    0x00, 0x01, b'+', // filter "+"
];

#[test]
fn v311_unsubscribe() -> Result<()> {
    let u = Unsubscribe {
        packet_id: 11,
        properties: Properties::default(),
        filters: vec!["a/b".into(), "+".into()],
    };
    check(V311, V311_UNSUBSCRIBE, Packet::Unsubscribe(u))
}

const V311_UNSUBACK: &[u8] = &[0xB0, 0x02, 0x00, 0x0B]; // UNSUBACK, §3.11.2 packet id 11, no payload

#[test]
fn v311_unsuback() -> Result<()> {
    let ack = UnsubAck {
        packet_id: 11,
        properties: Properties::default(),
        reasons: vec![],
    };
    check(V311, V311_UNSUBACK, Packet::UnsubAck(ack.clone()))?;
    // 3.1.1 has no reason codes to carry.
    let with_reasons = UnsubAck {
        reasons: vec![ReasonCode::Success],
        ..ack
    };
    assert_eq!(
        encoded(&Packet::UnsubAck(with_reasons), V311)?,
        V311_UNSUBACK
    );
    Ok(())
}

const PINGREQ: &[u8] = &[0xC0, 0x00]; // PINGREQ (§3.12), no body in either version
const PINGRESP: &[u8] = &[0xD0, 0x00]; // PINGRESP (§3.13)

#[test]
fn ping_in_both_versions() -> Result<()> {
    for version in [V311, V5] {
        check(version, PINGREQ, Packet::PingReq)?;
        check(version, PINGRESP, Packet::PingResp)?;
    }
    Ok(())
}

const V311_DISCONNECT: &[u8] = &[0xE0, 0x00]; // DISCONNECT (§3.14), no body

#[test]
fn v311_disconnect() -> Result<()> {
    check(
        V311,
        V311_DISCONNECT,
        Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
    )?;
    // 3.1.1 has no reason code to carry.
    let d = Packet::Disconnect(Disconnect::new(ReasonCode::ServerShuttingDown));
    assert_eq!(encoded(&d, V311)?, V311_DISCONNECT);
    Ok(())
}

#[test]
fn v311_ignores_properties_when_encoding() -> Result<()> {
    let mut p = publish(QoS::AtMostOnce, None, b"hi");
    p.properties.user_properties = user_kv();
    assert_eq!(encoded(&Packet::Publish(p), V311)?, V311_PUBLISH_QOS0);
    Ok(())
}

// --- 5.0 -------------------------------------------------------------------

const V5_CONNECT: &[u8] = &[
    0x10, 47, // CONNECT, remaining length 47
    0x00, 0x04, b'M', b'Q', b'T', b'T', // §3.1.2.1 protocol name
    0x05, // §3.1.2.2 level 5 = 5.0
    0xC6, // §3.1.2.3 user name | password | will (QoS 0, no retain) | clean start
    0x00, 0x0A, // §3.1.2.10 keep alive 10 s
    15,   // §3.1.2.11 property length
    0x11, 0x00, 0x00, 0x00, 0x78, // session expiry interval 120 s
    0x21, 0x00, 0x14, // receive maximum 20
    0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
    0x00, 0x00, // §3.1.3.1 empty client id
    7,    // §3.1.3.2 will property length
    0x01, 0x01, // payload format indicator: UTF-8
    0x18, 0x00, 0x00, 0x00, 0x05, // will delay interval 5 s
    0x00, 0x01, b'w', // §3.1.3.3 will topic "w"
    0x00, 0x00, // §3.1.3.4 empty will payload
    0x00, 0x01, b'u', // §3.1.3.5 user name "u"
    0x00, 0x01, b'p', // §3.1.3.6 password "p"
];

fn v5_connect() -> Packet {
    Packet::Connect(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 10,
        client_id: String::new(),
        will: Some(Will {
            topic: "w".into(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties {
                payload_format_indicator: Some(1),
                will_delay_interval: Some(5),
                ..Default::default()
            },
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: Properties {
            session_expiry_interval: Some(120),
            receive_maximum: Some(20),
            user_properties: user_kv(),
            ..Default::default()
        },
    })
}

#[test]
fn v5_connect_with_properties_and_will_properties() -> Result<()> {
    check(V5, V5_CONNECT, v5_connect())?;
    check_decode(V311, V5_CONNECT, v5_connect())
}

const V5_CONNECT_PASSWORD_ONLY: &[u8] = &[
    0x10, 16, // CONNECT, remaining length 16
    0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
    0x05, // level 5
    0x40, // password without user name: allowed in 5.0 (§3.1.2.9)
    0x00, 0x00, // keep alive off
    0x00, // no properties
    0x00, 0x01, b'c', // client id "c"
    0x00, 0x00, // empty password
];

#[test]
fn v5_connect_password_without_user_name() -> Result<()> {
    let c = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 0,
        client_id: "c".into(),
        will: None,
        username: None,
        password: Some(Bytes::new()),
        properties: Properties::default(),
    };
    check(V5, V5_CONNECT_PASSWORD_ONLY, Packet::Connect(c))
}

const V5_CONNACK: &[u8] = &[
    0x20, 16,   // CONNACK, remaining length 16
    0x00, // §3.2.2.1 no session
    0x00, // §3.2.2.2 success
    13,   // §3.2.2.3 property length
    0x12, 0x00, 0x03, b'a', b'b', b'c', // assigned client identifier "abc"
    0x22, 0x00, 0x0A, // topic alias maximum 10
    0x24, 0x01, // maximum QoS 1
    0x28, 0x00, // wildcard subscriptions not available
];

#[test]
fn v5_connack_with_properties() -> Result<()> {
    let ack = ConnAck {
        session_present: false,
        reason: ReasonCode::Success,
        properties: Properties {
            assigned_client_identifier: Some("abc".into()),
            topic_alias_maximum: Some(10),
            maximum_qos: Some(1),
            wildcard_subscription_available: Some(0),
            ..Default::default()
        },
    };
    check(V5, V5_CONNACK, Packet::ConnAck(ack))
}

const V5_CONNACK_REFUSED: &[u8] = &[
    0x20, 0x03, // CONNACK, remaining length 3
    0x00, // no session
    0x87, // not authorized
    0x00, // no properties (the length is never omitted in CONNACK)
];

#[test]
fn v5_connack_refused() -> Result<()> {
    let ack = ConnAck {
        session_present: false,
        reason: ReasonCode::NotAuthorized,
        properties: Properties::default(),
    };
    check(V5, V5_CONNACK_REFUSED, Packet::ConnAck(ack))
}

const V5_PUBLISH: &[u8] = &[
    0x32, 48, // PUBLISH, QoS 1, remaining length 48
    0x00, 0x03, b'a', b'/', b'b', // §3.3.2.1 topic "a/b"
    0x00, 0x07, // §3.3.2.2 packet id 7
    38,   // §3.3.2.3 property length
    0x01, 0x01, // payload format indicator: UTF-8
    0x02, 0x00, 0x00, 0x00, 0x3C, // message expiry interval 60 s
    0x03, 0x00, 0x04, b't', b'e', b'x', b't', // content type "text"
    0x08, 0x00, 0x01, b'r', // response topic "r"
    0x09, 0x00, 0x02, 0xC0, 0xDE, // correlation data C0 DE
    0x0B, 0x01, // subscription identifier 1
    0x0B, 0x80, 0x01, // subscription identifier 128 (two-byte varint)
    0x23, 0x00, 0x05, // topic alias 5
    0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
    b'h', b'i', // §3.3.3 payload
];

#[test]
fn v5_publish_with_every_publish_property() -> Result<()> {
    let p = Publish {
        properties: Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            content_type: Some("text".into()),
            response_topic: Some("r".into()),
            correlation_data: Some(Bytes::from_static(&[0xC0, 0xDE])),
            subscription_identifiers: vec![1, 128],
            topic_alias: Some(5),
            user_properties: user_kv(),
            ..Default::default()
        },
        ..publish(QoS::AtLeastOnce, Some(7), b"hi")
    };
    check(V5, V5_PUBLISH, Packet::Publish(p))
}

const V5_PUBLISH_PLAIN: &[u8] = &[
    0x30, 0x08, // PUBLISH, QoS 0, remaining length 8
    0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
    0x00, // no properties
    b'h', b'i', // payload
];

#[test]
fn v5_publish_without_properties() -> Result<()> {
    check(
        V5,
        V5_PUBLISH_PLAIN,
        Packet::Publish(publish(QoS::AtMostOnce, None, b"hi")),
    )
}

const V5_PUBLISH_ALIAS_ONLY: &[u8] = &[
    0x30, 0x07, // PUBLISH, QoS 0, remaining length 7
    0x00, 0x00, // empty topic: the alias stands in (§3.3.2.3.4)
    0x03, // property length
    0x23, 0x00, 0x01, // topic alias 1
    b'x', // payload
];

#[test]
fn v5_publish_empty_topic_with_alias() -> Result<()> {
    let p = Publish {
        topic: String::new(),
        properties: Properties {
            topic_alias: Some(1),
            ..Default::default()
        },
        ..publish(QoS::AtMostOnce, None, b"x")
    };
    check(V5, V5_PUBLISH_ALIAS_ONLY, Packet::Publish(p))
}

const V5_PUBACK_SHORT: &[u8] = &[0x40, 0x02, 0x00, 0x07]; // PUBACK, packet id 7; success implied (§3.4.2.1)
const V5_PUBACK_REASON_ONLY: &[u8] = &[
    0x40, 0x03, // PUBACK, remaining length 3
    0x00, 0x07, // packet id 7
    0x10, // §3.4.2.1 no matching subscribers; no property length (§3.4.2.2.1)
];
const V5_PUBACK_FULL: &[u8] = &[
    0x40, 0x09, // PUBACK, remaining length 9
    0x00, 0x07, // packet id 7
    0x80, // unspecified error
    0x05, // §3.4.2.2 property length
    0x1F, 0x00, 0x02, b'n', b'o', // reason string "no"
];
const V5_PUBACK_SUCCESS_WITH_PROPERTIES: &[u8] = &[
    0x40, 11, // PUBACK, remaining length 11
    0x00, 0x07, // packet id 7
    0x00, // success, written because properties follow
    0x07, // property length
    0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
];

#[test]
fn v5_puback_short_and_long_forms() -> Result<()> {
    let ack = |reason, properties| {
        Packet::PubAck(PubResp {
            packet_id: 7,
            reason,
            properties,
        })
    };
    check(
        V5,
        V5_PUBACK_SHORT,
        ack(ReasonCode::Success, Properties::default()),
    )?;
    check(
        V5,
        V5_PUBACK_REASON_ONLY,
        ack(ReasonCode::NoMatchingSubscribers, Properties::default()),
    )?;
    let reason_string = Properties {
        reason_string: Some("no".into()),
        ..Default::default()
    };
    check(
        V5,
        V5_PUBACK_FULL,
        ack(ReasonCode::UnspecifiedError, reason_string),
    )?;
    let user = Properties {
        user_properties: user_kv(),
        ..Default::default()
    };
    check(
        V5,
        V5_PUBACK_SUCCESS_WITH_PROPERTIES,
        ack(ReasonCode::Success, user),
    )?;
    // Success with an empty property section is legal, but we write the short form.
    check_decode(
        V5,
        &[0x40, 0x04, 0x00, 0x07, 0x00, 0x00],
        ack(ReasonCode::Success, Properties::default()),
    )
}

const V5_PUBREC: &[u8] = &[
    0x50, 0x03, // PUBREC, remaining length 3
    0x00, 0x09, // packet id 9
    0x91, // §3.5.2.1 packet identifier in use
];
const V5_PUBREL: &[u8] = &[
    0x62, 0x03, // PUBREL, flags 0010, remaining length 3
    0x00, 0x09, // packet id 9
    0x92, // §3.6.2.1 packet identifier not found
];
const V5_PUBREL_SHORT: &[u8] = &[0x62, 0x02, 0x00, 0x09]; // PUBREL, packet id 9, success
const V5_PUBCOMP: &[u8] = &[
    0x70, 0x08, // PUBCOMP, remaining length 8
    0x00, 0x09, // packet id 9
    0x92, // §3.7.2.1 packet identifier not found
    0x04, // property length
    0x1F, 0x00, 0x01, b'x', // reason string "x"
];

#[test]
fn v5_pubrec_pubrel_pubcomp() -> Result<()> {
    let resp = |reason| PubResp {
        packet_id: 9,
        reason,
        properties: Properties::default(),
    };
    check(
        V5,
        V5_PUBREC,
        Packet::PubRec(resp(ReasonCode::PacketIdentifierInUse)),
    )?;
    check(
        V5,
        V5_PUBREL,
        Packet::PubRel(resp(ReasonCode::PacketIdentifierNotFound)),
    )?;
    check(V5, V5_PUBREL_SHORT, Packet::PubRel(PubResp::success(9)))?;
    let comp = PubResp {
        properties: Properties {
            reason_string: Some("x".into()),
            ..Default::default()
        },
        ..resp(ReasonCode::PacketIdentifierNotFound)
    };
    check(V5, V5_PUBCOMP, Packet::PubComp(comp))
}

const V5_SUBSCRIBE: &[u8] = &[
    0x82, 31, // SUBSCRIBE, flags 0010, remaining length 31
    0x00, 0x0A, // §3.8.2 packet id 10
    0x09, // §3.8.2.1 property length
    0x0B, 0x05, // subscription identifier 5
    0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
    0x00, 0x03, b'a', b'/', b'+', // §3.8.3 filter "a/+"
    0x2D, // §3.8.3.1 retain handling 2 | retain as published | no local | QoS 1
    0x00, 0x0A, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'x', // "$share/g/x"
    0x00, // QoS 0, no options
];

#[test]
fn v5_subscribe_with_options_and_properties() -> Result<()> {
    let s = Subscribe {
        packet_id: 10,
        properties: Properties {
            subscription_identifiers: vec![5],
            user_properties: user_kv(),
            ..Default::default()
        },
        subscriptions: vec![
            Subscription {
                filter: "a/+".into(),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: 2,
                },
            },
            Subscription {
                filter: "$share/g/x".into(),
                options: options(QoS::AtMostOnce),
            },
        ],
    };
    check(V5, V5_SUBSCRIBE, Packet::Subscribe(s))
}

const V5_SUBACK: &[u8] = &[
    0x90, 11, // SUBACK, remaining length 11
    0x00, 0x0A, // §3.9.2 packet id 10
    0x05, // §3.9.2.1 property length
    0x1F, 0x00, 0x02, b'o', b'k', // reason string "ok"
    0x01, 0x8F, 0xA2, // §3.9.3 granted QoS 1, topic filter invalid, wildcards not supported
];

#[test]
fn v5_suback() -> Result<()> {
    let ack = SubAck {
        packet_id: 10,
        properties: Properties {
            reason_string: Some("ok".into()),
            ..Default::default()
        },
        reasons: vec![
            ReasonCode::GrantedQoS1,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::WildcardSubscriptionsNotSupported,
        ],
    };
    check(V5, V5_SUBACK, Packet::SubAck(ack))
}

const V5_UNSUBSCRIBE: &[u8] = &[
    0xA2, 15, // UNSUBSCRIBE, flags 0010, remaining length 15
    0x00, 0x0B, // §3.10.2 packet id 11
    0x07, // §3.10.2.1 property length
    0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
    0x00, 0x03, b'a', b'/', b'b', // §3.10.3 filter "a/b"
];

#[test]
fn v5_unsubscribe() -> Result<()> {
    let u = Unsubscribe {
        packet_id: 11,
        properties: Properties {
            user_properties: user_kv(),
            ..Default::default()
        },
        filters: vec!["a/b".into()],
    };
    check(V5, V5_UNSUBSCRIBE, Packet::Unsubscribe(u))
}

const V5_UNSUBACK: &[u8] = &[
    0xB0, 0x05, // UNSUBACK, remaining length 5
    0x00, 0x0B, // §3.11.2 packet id 11
    0x00, // §3.11.2.1 no properties
    0x00, 0x11, // §3.11.3 success, no subscription existed
];

#[test]
fn v5_unsuback() -> Result<()> {
    let ack = UnsubAck {
        packet_id: 11,
        properties: Properties::default(),
        reasons: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
    };
    check(V5, V5_UNSUBACK, Packet::UnsubAck(ack))
}

const V5_DISCONNECT_SHORT: &[u8] = &[0xE0, 0x00]; // DISCONNECT, normal disconnection (§3.14.2.1)
const V5_DISCONNECT_REASON_ONLY: &[u8] = &[
    0xE0, 0x01, // DISCONNECT, remaining length 1
    0x8E, // §3.14.2.1 session taken over; no property length (§3.14.2.2.1)
];
const V5_DISCONNECT_FULL: &[u8] = &[
    0xE0, 13,   // DISCONNECT, remaining length 13
    0x04, // §3.14.2.1 disconnect with will message
    11,   // §3.14.2.2 property length
    0x11, 0x00, 0x00, 0x00, 0x00, // session expiry interval 0
    0x1F, 0x00, 0x03, b'b', b'y', b'e', // reason string "bye"
];

#[test]
fn v5_disconnect_short_and_long_forms() -> Result<()> {
    check(
        V5,
        V5_DISCONNECT_SHORT,
        Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
    )?;
    check(
        V5,
        V5_DISCONNECT_REASON_ONLY,
        Packet::Disconnect(Disconnect::new(ReasonCode::SessionTakenOver)),
    )?;
    let d = Disconnect {
        reason: ReasonCode::DisconnectWithWillMessage,
        properties: Properties {
            session_expiry_interval: Some(0),
            reason_string: Some("bye".into()),
            ..Default::default()
        },
    };
    check(V5, V5_DISCONNECT_FULL, Packet::Disconnect(d))?;
    check_decode(
        V5,
        &[0xE0, 0x02, 0x00, 0x00],
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    )
}

const V5_AUTH_SHORT: &[u8] = &[0xF0, 0x00]; // AUTH, success (§3.15.2.1)
const V5_AUTH: &[u8] = &[
    0xF0, 15,   // AUTH, remaining length 15
    0x18, // §3.15.2.1 continue authentication
    13,   // §3.15.2.2 property length
    0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // authentication method "SCRAM"
    0x16, 0x00, 0x02, 0x01, 0x02, // authentication data 01 02
];

#[test]
fn v5_auth() -> Result<()> {
    check(
        V5,
        V5_AUTH_SHORT,
        Packet::Auth(Auth {
            reason: ReasonCode::Success,
            properties: Properties::default(),
        }),
    )?;
    let a = Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: Properties {
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(&[1, 2])),
            ..Default::default()
        },
    };
    check(V5, V5_AUTH, Packet::Auth(a))
}

/// Every byte literal above with the version it is valid in.
const ALL: &[(ProtocolVersion, &[u8])] = &[
    (V311, V311_CONNECT),
    (V311, V311_CONNECT_MINIMAL),
    (V311, V311_CONNACK),
    (V311, V311_CONNACK_REFUSED),
    (V311, V311_PUBLISH_QOS0),
    (V311, V311_PUBLISH_QOS1_DUP_RETAIN),
    (V311, V311_PUBLISH_QOS2_EMPTY),
    (V311, V311_PUBACK),
    (V311, V311_PUBREC),
    (V311, V311_PUBREL),
    (V311, V311_PUBCOMP),
    (V311, V311_SUBSCRIBE),
    (V311, V311_SUBACK),
    (V311, V311_UNSUBSCRIBE),
    (V311, V311_UNSUBACK),
    (V311, PINGREQ),
    (V311, PINGRESP),
    (V311, V311_DISCONNECT),
    (V5, V5_CONNECT),
    (V5, V5_CONNECT_PASSWORD_ONLY),
    (V5, V5_CONNACK),
    (V5, V5_CONNACK_REFUSED),
    (V5, V5_PUBLISH),
    (V5, V5_PUBLISH_PLAIN),
    (V5, V5_PUBLISH_ALIAS_ONLY),
    (V5, V5_PUBACK_SHORT),
    (V5, V5_PUBACK_REASON_ONLY),
    (V5, V5_PUBACK_FULL),
    (V5, V5_PUBACK_SUCCESS_WITH_PROPERTIES),
    (V5, V5_PUBREC),
    (V5, V5_PUBREL),
    (V5, V5_PUBREL_SHORT),
    (V5, V5_PUBCOMP),
    (V5, V5_SUBSCRIBE),
    (V5, V5_SUBACK),
    (V5, V5_UNSUBSCRIBE),
    (V5, V5_UNSUBACK),
    (V5, PINGREQ),
    (V5, PINGRESP),
    (V5, V5_DISCONNECT_SHORT),
    (V5, V5_DISCONNECT_REASON_ONLY),
    (V5, V5_DISCONNECT_FULL),
    (V5, V5_AUTH_SHORT),
    (V5, V5_AUTH),
];

#[test]
fn every_proper_prefix_is_incomplete() {
    for &(version, bytes) in ALL {
        for len in 0..bytes.len() {
            match decode_err(version, &bytes[..len]) {
                Error::Incomplete { needed } => {
                    assert!(
                        needed >= 1 && needed <= bytes.len() - len,
                        "{bytes:02X?}[..{len}]: {needed}"
                    )
                }
                e => panic!("{bytes:02X?}[..{len}]: expected Incomplete, got {e:?}"),
            }
        }
    }
}

#[test]
fn incomplete_body_reports_exactly_the_missing_bytes() {
    // Once the fixed header is complete the packet size is known.
    assert_eq!(
        decode_err(V5, &V5_PUBLISH[..2]),
        Error::Incomplete { needed: 48 }
    );
    assert_eq!(
        decode_err(V5, &V5_PUBLISH[..40]),
        Error::Incomplete { needed: 10 }
    );
    // Before that, only a lower bound.
    assert_eq!(decode_err(V5, &[]), Error::Incomplete { needed: 2 });
    assert_eq!(decode_err(V5, &[0x30]), Error::Incomplete { needed: 1 });
    assert_eq!(
        decode_err(V5, &[0x30, 0x80]),
        Error::Incomplete { needed: 1 }
    );
}

#[test]
fn decode_uses_one_packet_and_leaves_the_next() -> Result<()> {
    for &(version, bytes) in ALL {
        let mut two = bytes.to_vec();
        two.extend_from_slice(PINGREQ);
        let (_, used) = decode(&two, version, MAX)?;
        assert_eq!(used, bytes.len());
        assert_eq!(decode(&two[used..], version, MAX)?, (Packet::PingReq, 2));
    }
    Ok(())
}
