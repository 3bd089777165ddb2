//! Which measurements are heart rate and which are step counts, decided
//! once for the Open mHealth and the FHIR files alike.
//!
//! Devices name their measurements freely (`watch/hr`, `band/steps`), so
//! the unit decides where it can: `beat/min` (SenML's registered unit for
//! heart rate) is a heart rate whatever the name. Steps have no unit of
//! their own in SenML (`count` or none), so for them the name's last
//! segment must say `steps`.

use tributary_store::Row;

/// A measurement the health formats have a type for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    /// Beats per minute.
    HeartRate(f64),
    /// A number of steps, counted over a period SenML does not state.
    Steps(f64),
}

/// What `row` is, if either: a finite numeric value is required (a text,
/// boolean or data record never maps), and a negative count is no count.
pub(crate) fn kind_of(row: &Row) -> Option<Kind> {
    let value = row.value.filter(|v| v.is_finite())?;
    let unit = row.unit.as_deref();
    if unit == Some("beat/min") {
        return Some(Kind::HeartRate(value));
    }
    let last_segment = row.name.rsplit('/').next().unwrap_or_default();
    let steps_unit = matches!(unit, None | Some("count") | Some("steps"));
    if last_segment == "steps" && steps_unit && value >= 0.0 {
        return Some(Kind::Steps(value));
    }
    None
}

/// A stable id for one mapped record: the same takeout taken twice names
/// the same data point alike. Built from the record's key (message id and
/// position) and the format, laid out as an RFC 9562 version 8 UUID (the
/// "custom" version: the bits are ours, not random and not a name hash of
/// a standard namespace).
pub(crate) fn record_uuid(format: &str, row: &Row) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(format.as_bytes());
    hash.update([0]);
    hash.update(row.message_id.as_bytes());
    hash.update(row.seq.to_be_bytes());
    uuid_from(&hash.finalize())
}

/// A UUID for an activity segment, keyed by device and start.
pub(crate) fn segment_uuid(format: &str, device: &str, start_ms: i64) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(format.as_bytes());
    hash.update([0]);
    hash.update(device.as_bytes());
    hash.update([0]);
    hash.update(start_ms.to_be_bytes());
    uuid_from(&hash.finalize())
}

fn uuid_from(hash: &[u8]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash[..16]);
    // Version 8: an id of our own making (a hash), in the UUID layout.
    uuid::Builder::from_custom_bytes(b).into_uuid().to_string()
}

#[cfg(test)]
pub(crate) fn row(name: &str, unit: Option<&str>, value: Option<f64>) -> Row {
    Row {
        owner: "ann".into(),
        device: "watch1".into(),
        message_id: "0123456789abcdef0123456789abcdef".into(),
        seq: 2,
        name: name.into(),
        unit: unit.map(str::to_owned),
        time_ms: 1_767_225_600_250,
        value,
        text: None,
        bool: None,
        data: None,
        sum: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_decides_heart_rate_and_name_decides_steps() {
        assert_eq!(
            kind_of(&row("watch1/hr", Some("beat/min"), Some(61.0))),
            Some(Kind::HeartRate(61.0))
        );
        assert_eq!(
            kind_of(&row("pulse", Some("beat/min"), Some(70.0))),
            Some(Kind::HeartRate(70.0))
        );
        assert_eq!(
            kind_of(&row("band/steps", Some("count"), Some(12.0))),
            Some(Kind::Steps(12.0))
        );
        assert_eq!(
            kind_of(&row("steps", None, Some(3.0))),
            Some(Kind::Steps(3.0))
        );
        // Not steps: another unit, a negative count, a name that only contains it.
        assert_eq!(kind_of(&row("band/steps", Some("m"), Some(1.0))), None);
        assert_eq!(kind_of(&row("band/steps", None, Some(-1.0))), None);
        assert_eq!(kind_of(&row("band/stepsize", None, Some(1.0))), None);
        // No numeric value, no mapping.
        assert_eq!(kind_of(&row("hr", Some("beat/min"), None)), None);
    }

    #[test]
    fn uuids_are_stable_version_8_and_differ_by_format() {
        let r = row("hr", Some("beat/min"), Some(61.0));
        let a = record_uuid("omh", &r);
        assert_eq!(a, record_uuid("omh", &r));
        assert_ne!(a, record_uuid("fhir", &r));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }
}
