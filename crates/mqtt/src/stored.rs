//! The 5.0 properties of a PUBLISH as the log stores them: their wire
//! encoding without the length prefix (the `properties` field of a log
//! `Record`), so later consumers can read them with any MQTT 5 codec.
//!
//! Only the properties that belong to the message travel through the log;
//! topic alias and subscription identifiers belong to one connection.

use crate::{Packet, Properties, ProtocolVersion, Publish, QoS};
use bytes::{Bytes, BytesMut};

/// The stored form of a publish's (or will's) message properties.
pub fn stored_properties(properties: &Properties) -> Bytes {
    let kept = Properties {
        payload_format_indicator: properties.payload_format_indicator,
        message_expiry_interval: properties.message_expiry_interval,
        content_type: properties.content_type.clone(),
        response_topic: properties.response_topic.clone(),
        correlation_data: properties.correlation_data.clone(),
        user_properties: properties.user_properties.clone(),
        ..Properties::default()
    };
    if kept.is_empty() {
        return Bytes::new();
    }
    // Encoded inside a minimal PUBLISH to the one-byte topic "t", whose
    // layout is: 0x30, remaining length (1–4 bytes), 00 01 't', property
    // length (1–4 bytes), properties, empty payload.
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t".into(),
        packet_id: None,
        properties: kept,
        payload: Bytes::new(),
    });
    let mut buf = BytesMut::new();
    if crate::encode(&packet, ProtocolVersion::V5, &mut buf).is_err() {
        return Bytes::new();
    }
    let after_header = 1 + varint_len(&buf[1..]);
    let props_at = after_header + 3;
    let body = buf.freeze().slice(props_at..);
    body.slice(varint_len(&body)..)
}

/// The properties of a stored record; empty when there are none or the
/// bytes cannot be read (they were written by `stored_properties`).
pub fn load_properties(stored: &Bytes) -> Properties {
    if stored.is_empty() {
        return Properties::default();
    }
    let mut buf = BytesMut::new();
    let mut prop_len = BytesMut::new();
    put_varint(&mut prop_len, stored.len());
    buf.extend_from_slice(&[0x30]);
    put_varint(&mut buf, 3 + prop_len.len() + stored.len());
    buf.extend_from_slice(&[0x00, 0x01, b't']);
    buf.extend_from_slice(&prop_len);
    buf.extend_from_slice(stored);
    match crate::decode(&buf, ProtocolVersion::V5, usize::MAX) {
        Ok((Packet::Publish(p), _)) => p.properties,
        _ => Properties::default(),
    }
}

fn varint_len(buf: &[u8]) -> usize {
    buf.iter()
        .take(4)
        .position(|b| b & 0x80 == 0)
        .map_or(4, |i| i + 1)
}

fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.extend_from_slice(&[byte]);
        if value == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_properties_survive_the_log_and_connection_ones_do_not() {
        let props = Properties {
            content_type: Some("application/senml+json".into()),
            message_expiry_interval: Some(60),
            user_properties: vec![("k".into(), "v".into())],
            topic_alias: Some(3),
            subscription_identifiers: vec![7],
            ..Properties::default()
        };
        let loaded = load_properties(&stored_properties(&props));
        assert_eq!(
            loaded.content_type.as_deref(),
            Some("application/senml+json")
        );
        assert_eq!(loaded.message_expiry_interval, Some(60));
        assert_eq!(
            loaded.user_properties,
            vec![("k".to_string(), "v".to_string())]
        );
        assert_eq!(loaded.topic_alias, None);
        assert!(loaded.subscription_identifiers.is_empty());
    }

    #[test]
    fn no_properties_store_nothing() {
        assert!(stored_properties(&Properties::default()).is_empty());
        assert_eq!(load_properties(&Bytes::new()), Properties::default());
    }
}
