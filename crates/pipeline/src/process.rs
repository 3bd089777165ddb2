//! One log record into measurement rows, a dead letter, or nothing.

use tributary_log::Record;
use tributary_senml::{Measurement, Value};
use tributary_store::{DeadLetter, Row};

/// What one record becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not a measurement: no SenML content type or topic suffix, no
    /// authenticated owner (anonymous loopback clients own no data), or a
    /// command to a device (`tributary/v1/{device}/commands/...`), which is
    /// nobody's measurement whatever its payload, or the clearing of a
    /// retained message (a retained PUBLISH with an empty payload).
    Skip,
    Rows(Vec<Row>),
    Dead(DeadLetter),
}

/// Distinct UTC days the measurements of one message may fall on, unless
/// configured (`[archive] max_days_per_message`).
pub const DEFAULT_MAX_DAYS_PER_MESSAGE: u32 = 31;

/// [`process_with`] at [`DEFAULT_MAX_DAYS_PER_MESSAGE`].
pub fn process(record: &Record) -> Outcome {
    process_with(record, DEFAULT_MAX_DAYS_PER_MESSAGE)
}

/// What `record` becomes. A pack whose measurements fall on more than
/// `max_days` distinct UTC days (0: no limit) is a dead letter: the archive
/// writes one partition (`owner=/date=`) per day a batch touches, so one
/// message must not be able to create thousands of them (principle 7).
pub fn process_with(record: &Record, max_days: u32) -> Outcome {
    let Some(format) = senml_format(record) else {
        return Outcome::Skip;
    };
    let message_id = record.message_id.to_string();
    let received_ms = i64::try_from(record.receive_time_ms).unwrap_or(i64::MAX);
    match tributary_senml::decode(format, &record.payload, received_ms) {
        Ok(measurements) if spans_more_days(&measurements, max_days) => Outcome::Dead(dead_letter(
            record,
            format!(
                "the pack's measurements fall on more than {max_days} different days (UTC), \
                     the most one message may span ([archive] max_days_per_message); \
                     send one pack per day"
            ),
        )),
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

/// Whether `measurements` fall on more than `max_days` distinct UTC days
/// (the archive's `date=` partitions); 0 never does.
fn spans_more_days(measurements: &[Measurement], max_days: u32) -> bool {
    if max_days == 0 {
        return false;
    }
    let mut days = std::collections::HashSet::new();
    measurements
        .iter()
        .any(|m| days.insert(m.time_ms.div_euclid(86_400_000)) && days.len() > max_days as usize)
}

/// The SenML format of `record` when a sink decodes it: an owner's data
/// (not a command to a device, nor the clearing of a retained message)
/// whose content type or topic says SenML. Every sink passes over the rest
/// without reading the payload, so `erasure::Unsealed` leaves those sealed.
pub fn senml_format(record: &Record) -> Option<tributary_senml::Format> {
    if record.owner.is_empty() || is_command(&record.topic) || clears_retained(record) {
        return None;
    }
    let properties = tributary_mqtt::stored::load_properties(&record.properties);
    tributary_senml::format_of(properties.content_type.as_deref(), &record.topic)
}

/// Whether `record` clears its topic's retained message: a device doing so,
/// or an erasure (docs/erasure.md), sends no measurement.
fn clears_retained(record: &Record) -> bool {
    record.retain && record.payload.is_empty()
}

/// Whether `topic` carries commands to a device (docs/topics.md): an
/// owner's, a service's or an admin's message to it, not the device's data.
fn is_command(topic: &str) -> bool {
    let mut levels = topic.split('/');
    matches!(
        (levels.next(), levels.next(), levels.next(), levels.next()),
        (Some("tributary"), Some("v1"), Some(_), Some("commands"))
    )
}

/// `record` as a dead letter of its owner, with the reason (the store's pipeline and the
/// activity sink both refuse messages this way).
pub(crate) fn dead_letter(record: &Record, reason: String) -> DeadLetter {
    DeadLetter {
        owner: record.owner.clone(),
        device: record.device.clone(),
        message_id: record.message_id.to_string(),
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

    /// A SenML pack of one record per day for the `days` days up to its
    /// receipt (times later than a day after receipt are invalid).
    fn daily_pack(days: u32) -> Vec<u8> {
        let records: Vec<String> = (0..days)
            .map(|day| {
                format!(
                    r#"{{"n":"steps","t":{},"v":1}}"#,
                    1_790_000_000 - 86_400 * i64::from(day)
                )
            })
            .collect();
        format!("[{}]", records.join(",")).into_bytes()
    }

    #[test]
    fn a_pack_spanning_more_days_than_allowed_is_a_dead_letter_with_the_reason() {
        let topic = "tributary/v1/w1/senml";
        let outcome = process(&record("ann", topic, &daily_pack(31)));
        let Outcome::Rows(rows) = outcome else {
            panic!("31 days are allowed by default: {outcome:?}");
        };
        assert_eq!(rows.len(), 31);
        let Outcome::Dead(letter) = process(&record("ann", topic, &daily_pack(32))) else {
            panic!("dead letter expected for 32 days");
        };
        assert!(
            letter.reason.contains("more than 31 different days")
                && letter.reason.contains("max_days_per_message"),
            "{}",
            letter.reason
        );
        assert!(matches!(
            process_with(&record("ann", topic, &daily_pack(3)), 2),
            Outcome::Dead(_)
        ));
        assert!(matches!(
            process_with(&record("ann", topic, &daily_pack(400)), 0),
            Outcome::Rows(_)
        ));
    }

    #[test]
    fn senml_commands_to_a_device_are_not_measurements() {
        let payload = br#"[{"bn":"w1/","bt":1790000000,"n":"hr","u":"beat/min","v":61}]"#;
        for topic in [
            "tributary/v1/w1/commands/senml",
            "tributary/v1/w1/commands/settings/senml",
        ] {
            assert_eq!(
                process(&record("ann", topic, payload)),
                Outcome::Skip,
                "{topic}"
            );
        }
        // A device's own data whose name merely contains "commands" is data.
        assert!(matches!(
            process(&record("ann", "tributary/v1/w1/x/commands/senml", payload)),
            Outcome::Rows(_)
        ));
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

    #[test]
    fn clearing_a_retained_message_is_passed_over_while_an_empty_publish_is_refused() {
        let clear = Record {
            retain: true,
            ..record("ann", "tributary/v1/w1/senml", b"")
        };
        assert_eq!(process(&clear), Outcome::Skip);
        assert!(matches!(
            process(&record("ann", "tributary/v1/w1/senml", b"")),
            Outcome::Dead(_)
        ));
    }
}
