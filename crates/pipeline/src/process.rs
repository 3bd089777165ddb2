//! One log record into measurement rows, a dead letter, or nothing.

use tributary_log::Record;
use tributary_senml::{Measurement, Value};
use tributary_store::{DeadLetter, Row};

/// What one record becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not a measurement: no SenML content type or topic suffix, or no
    /// authenticated owner (anonymous loopback clients own no data).
    Skip,
    Rows(Vec<Row>),
    Dead(DeadLetter),
}

pub fn process(record: &Record) -> Outcome {
    if record.owner.is_empty() {
        return Outcome::Skip;
    }
    let properties = tributary_mqtt::stored::load_properties(&record.properties);
    let Some(format) =
        tributary_senml::format_of(properties.content_type.as_deref(), &record.topic)
    else {
        return Outcome::Skip;
    };
    let message_id = format!("{:032x}", record.message_id.0);
    let received_ms = i64::try_from(record.receive_time_ms).unwrap_or(i64::MAX);
    match tributary_senml::decode(format, &record.payload, received_ms) {
        Ok(measurements) => Outcome::Rows(
            measurements
                .into_iter()
                .enumerate()
                .map(|(seq, m)| row(record, &message_id, seq, m))
                .collect(),
        ),
        Err(invalid) => Outcome::Dead(dead_letter(record, invalid.to_string())),
    }
}

/// `record` as a dead letter of its owner, with the reason (the store's pipeline and the
/// activity sink both refuse messages this way).
pub(crate) fn dead_letter(record: &Record, reason: String) -> DeadLetter {
    DeadLetter {
        owner: record.owner.clone(),
        device: record.device.clone(),
        message_id: format!("{:032x}", record.message_id.0),
        topic: record.topic.clone(),
        received_ms: i64::try_from(record.receive_time_ms).unwrap_or(i64::MAX),
        reason,
        payload: record.payload.to_vec(),
    }
}

fn row(record: &Record, message_id: &str, seq: usize, m: Measurement) -> Row {
    let mut row = Row {
        owner: record.owner.clone(),
        device: record.device.clone(),
        message_id: message_id.to_owned(),
        seq: u32::try_from(seq).unwrap_or(u32::MAX),
        name: m.name,
        unit: m.unit,
        time_ms: m.time_ms,
        value: None,
        text: None,
        bool: None,
        data: None,
        sum: m.sum,
    };
    match m.value {
        Value::Number(v) => row.value = Some(v),
        Value::String(s) => row.text = Some(s),
        Value::Bool(b) => row.bool = Some(b),
        Value::Data(d) => row.data = Some(d),
        Value::None => {}
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_log::MessageId;

    /// A record as the broker writes it for device w1.
    fn record(owner: &str, topic: &str, payload: &[u8]) -> Record {
        Record {
            receive_time_ms: 1_790_000_000_000,
            topic: topic.into(),
            qos: 1,
            payload: payload.to_vec().into(),
            client_id: "d:w1:c".into(),
            message_id: MessageId(0xabc),
            owner: owner.into(),
            device: "w1".into(),
            ..Record::default()
        }
    }

    #[test]
    fn senml_json_becomes_one_row_per_record_keyed_by_message_and_index() {
        let payload = br#"[{"bn":"w1/","bt":1790000000,"n":"hr","u":"beat/min","v":61},{"n":"hr","t":1,"v":62}]"#;
        let Outcome::Rows(rows) = process(&record("ann", "tributary/v1/w1/senml", payload)) else {
            panic!("rows expected");
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].name.as_str(), rows[0].value, rows[0].time_ms),
            ("w1/hr", Some(61.0), 1_790_000_000_000)
        );
        assert_eq!(
            (rows[1].seq, rows[1].time_ms, rows[1].value),
            (1, 1_790_000_001_000, Some(62.0))
        );
        assert!(rows.iter().all(|r| r.owner == "ann" && r.device == "w1"));
        assert_eq!(rows[0].message_id, format!("{:032x}", 0xabc));
    }

    #[test]
    fn invalid_senml_is_a_dead_letter_with_the_reason() {
        let Outcome::Dead(letter) = process(&record("ann", "tributary/v1/w1/senml", b"{not json"))
        else {
            panic!("dead letter expected");
        };
        assert_eq!(
            (letter.owner.as_str(), letter.device.as_str()),
            ("ann", "w1")
        );
        assert!(!letter.reason.is_empty());
        assert_eq!(letter.payload, b"{not json");
    }

    #[test]
    fn other_topics_and_anonymous_data_are_passed_over() {
        assert_eq!(
            process(&record("ann", "tributary/v1/w1/raw", b"[]")),
            Outcome::Skip
        );
        assert_eq!(
            process(&record("", "tributary/v1/w1/senml", b"[]")),
            Outcome::Skip
        );
    }
}
