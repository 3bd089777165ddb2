//! A log record as a Kafka message, and back.
//!
//! | part | content |
//! |---|---|
//! | key | the authenticated device (the client id for anonymous clients): one device's records stay in one partition, in order |
//! | value | the MQTT payload, unchanged |
//! | header `mqtt.topic` | the MQTT topic |
//! | header `mqtt.qos`, `mqtt.retain` | `0`/`1`/`2`, `true`/`false` |
//! | header `tributary.owner`, `tributary.device` | the authenticated owner and device (empty for anonymous clients) |
//! | header `content-type` | the 5.0 Content Type property, when the publisher set one |
//! | header `tributary.message-id` | 32 hex digits, unique per message: what duplicate checks compare |
//! | header `tributary.client-id`, `tributary.received-ms` | the MQTT client id; receive time, Unix milliseconds |
//! | header `mqtt.properties` | the 5.0 message properties in wire encoding (`tributary_mqtt::stored`), when there are any |

use bytes::Bytes;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tributary_log::Record;

pub const TOPIC: &str = "mqtt.topic";
pub const QOS: &str = "mqtt.qos";
pub const RETAIN: &str = "mqtt.retain";
pub const OWNER: &str = "tributary.owner";
pub const DEVICE: &str = "tributary.device";
pub const CONTENT_TYPE: &str = "content-type";
pub const MESSAGE_ID: &str = "tributary.message-id";
pub const CLIENT_ID: &str = "tributary.client-id";
pub const RECEIVED_MS: &str = "tributary.received-ms";
pub const PROPERTIES: &str = "mqtt.properties";

/// The Kafka key of a record.
pub fn key(record: &Record) -> &str {
    if record.device.is_empty() {
        &record.client_id
    } else {
        &record.device
    }
}

/// The headers of a record's Kafka message.
pub fn headers(record: &Record) -> OwnedHeaders {
    let qos = record.qos.to_string();
    let message_id = record.message_id.to_string();
    let received = record.receive_time_ms.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(10)
        .insert(text(TOPIC, &record.topic))
        .insert(text(QOS, &qos))
        .insert(text(RETAIN, if record.retain { "true" } else { "false" }))
        .insert(text(OWNER, &record.owner))
        .insert(text(DEVICE, &record.device))
        .insert(text(MESSAGE_ID, &message_id))
        .insert(text(CLIENT_ID, &record.client_id))
        .insert(text(RECEIVED_MS, &received));
    if !record.properties.is_empty() {
        let properties = tributary_mqtt::stored::load_properties(&record.properties);
        if let Some(content_type) = &properties.content_type {
            headers = headers.insert(text(CONTENT_TYPE, content_type));
        }
        headers = headers.insert(Header {
            key: PROPERTIES,
            value: Some(record.properties.as_ref()),
        });
    }
    headers
}

fn text<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// Why a Kafka message is not a Tributary record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Tributary record: {0}")]
pub struct NotARecord(pub String);

/// The record a Kafka message carries (made by [`headers`]).
pub fn record(
    headers: Option<&impl Headers>,
    payload: Option<&[u8]>,
) -> Result<Record, NotARecord> {
    let mut record = Record {
        payload: Bytes::copy_from_slice(payload.unwrap_or_default()),
        ..Record::default()
    };
    let mut has_topic = false;
    for header in headers.into_iter().flat_map(|h| h.iter()) {
        let value = header.value.unwrap_or_default();
        let as_text = || {
            std::str::from_utf8(value)
                .map(str::to_owned)
                .map_err(|_| NotARecord(format!("header {} is not UTF-8", header.key)))
        };
        match header.key {
            TOPIC => {
                record.topic = as_text()?;
                has_topic = true;
            }
            QOS => {
                record.qos = match value {
                    b"0" => 0,
                    b"1" => 1,
                    b"2" => 2,
                    _ => return Err(NotARecord("header mqtt.qos is not 0, 1 or 2".into())),
                }
            }
            RETAIN => record.retain = value == b"true",
            OWNER => record.owner = as_text()?,
            DEVICE => record.device = as_text()?,
            CLIENT_ID => record.client_id = as_text()?,
            MESSAGE_ID => {
                record.message_id = as_text()?
                    .parse()
                    .map_err(|_| NotARecord("header tributary.message-id is not hex".into()))?;
            }
            RECEIVED_MS => {
                record.receive_time_ms = as_text()?.parse().map_err(|_| {
                    NotARecord("header tributary.received-ms is not a number".into())
                })?;
            }
            PROPERTIES => record.properties = Bytes::copy_from_slice(value),
            _ => {}
        }
    }
    if !has_topic {
        return Err(NotARecord("no mqtt.topic header".into()));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::BorrowedHeaders;
    use tributary_log::MessageId;

    fn sample() -> Record {
        let properties = tributary_mqtt::Properties {
            content_type: Some("application/senml+json".into()),
            ..Default::default()
        };
        Record {
            receive_time_ms: 1_790_000_000_123,
            topic: "tributary/v1/w1/senml".into(),
            qos: 1,
            retain: true,
            properties: tributary_mqtt::stored::stored_properties(&properties),
            payload: Bytes::from_static(b"[{\"n\":\"hr\",\"v\":61}]"),
            client_id: "d:w1:watch".into(),
            message_id: MessageId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            owner: "ann".into(),
            device: "w1".into(),
        }
    }

    #[test]
    fn a_record_survives_the_round_trip_through_headers() -> Result<(), NotARecord> {
        let original = sample();
        let headers = headers(&original);
        let borrowed: &BorrowedHeaders = headers.as_borrowed();
        let back = record(Some(borrowed), Some(&original.payload))?;
        assert_eq!(back, original);
        assert_eq!(key(&original), "w1");
        let content_type = borrowed
            .iter()
            .find(|h| h.key == CONTENT_TYPE)
            .and_then(|h| h.value);
        assert_eq!(content_type, Some(&b"application/senml+json"[..]));
        Ok(())
    }

    #[test]
    fn foreign_messages_are_named_as_such() {
        let none: Option<&OwnedHeaders> = None;
        let err = record(none, Some(b"x")).expect_err("no headers");
        assert!(err.to_string().contains("mqtt.topic"), "{err}");
    }
}
