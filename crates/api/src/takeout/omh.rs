//! Open mHealth / IEEE 1752.1 data points: heart rate (`omh:heart-rate:2.0`),
//! step count (`omh:step-count:3.0`) and physical activity
//! (`ieee:physical-activity:1.0`), each a data point of the IEEE 1752.1
//! `data-point` and `header` schemas (docs/takeout.md).

use serde_json::{json, Value};
use tributary_store::{ActivitySegment, Row};

use super::kinds::{record_uuid, segment_uuid};
use crate::activity::rfc3339;

/// `header.schema_id` of each body schema.
fn schema_id(namespace: &str, name: &str, version: &str) -> Value {
    json!({ "namespace": namespace, "name": name, "version": version })
}

fn data_point(uuid: String, schema: Value, created_ms: i64, body: Value) -> Value {
    json!({
        "header": {
            "uuid": uuid,
            "schema_id": schema,
            "source_creation_date_time": rfc3339(created_ms),
            "modality": "sensed",
        },
        "body": body,
    })
}

/// One heart-rate measurement (`bpm` beats per minute) at its instant.
pub(crate) fn heart_rate(row: &Row, bpm: f64) -> Value {
    data_point(
        record_uuid("omh-heart-rate", row),
        schema_id("omh", "heart-rate", "2.0"),
        row.time_ms,
        json!({
            "heart_rate": { "value": bpm, "unit": "beats/min" },
            "effective_time_frame": { "date_time": rfc3339(row.time_ms) },
        }),
    )
}

/// One step count. The schema wants a time interval, but a SenML record
/// has one instant and does not say over what period it counted; the
/// interval is that instant (start = end), not an invented period.
pub(crate) fn step_count(row: &Row, steps: f64) -> Value {
    let at = rfc3339(row.time_ms);
    data_point(
        record_uuid("omh-step-count", row),
        schema_id("omh", "step-count", "3.0"),
        row.time_ms,
        json!({
            "step_count": { "value": steps, "unit": "steps" },
            "effective_time_frame": {
                "time_interval": { "start_date_time": at, "end_date_time": at }
            },
        }),
    )
}

/// One activity segment of the behaviour model: the activity's name as the
/// model gives it (`walking`, `sitting`, …) over the segment's interval.
pub(crate) fn physical_activity(segment: &ActivitySegment) -> Value {
    data_point(
        segment_uuid("ieee-physical-activity", &segment.device, segment.start_ms),
        schema_id("ieee", "physical-activity", "1.0"),
        segment.end_ms,
        json!({
            "activity_name": segment.activity,
            "effective_time_frame": {
                "time_interval": {
                    "start_date_time": rfc3339(segment.start_ms),
                    "end_date_time": rfc3339(segment.end_ms),
                }
            },
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::takeout::kinds::row;

    #[test]
    fn heart_rate_is_exactly_this() {
        let r = row("watch1/hr", Some("beat/min"), Some(61.5));
        let uuid = record_uuid("omh-heart-rate", &r);
        assert_eq!(
            heart_rate(&r, 61.5),
            json!({
                "header": {
                    "uuid": uuid,
                    "schema_id": {"namespace": "omh", "name": "heart-rate", "version": "2.0"},
                    "source_creation_date_time": "2026-01-01T00:00:00.250Z",
                    "modality": "sensed",
                },
                "body": {
                    "heart_rate": {"value": 61.5, "unit": "beats/min"},
                    "effective_time_frame": {"date_time": "2026-01-01T00:00:00.250Z"},
                },
            })
        );
    }

    #[test]
    fn step_count_is_exactly_this() {
        let r = row("band/steps", Some("count"), Some(120.0));
        let uuid = record_uuid("omh-step-count", &r);
        assert_eq!(
            step_count(&r, 120.0),
            json!({
                "header": {
                    "uuid": uuid,
                    "schema_id": {"namespace": "omh", "name": "step-count", "version": "3.0"},
                    "source_creation_date_time": "2026-01-01T00:00:00.250Z",
                    "modality": "sensed",
                },
                "body": {
                    "step_count": {"value": 120.0, "unit": "steps"},
                    "effective_time_frame": {"time_interval": {
                        "start_date_time": "2026-01-01T00:00:00.250Z",
                        "end_date_time": "2026-01-01T00:00:00.250Z",
                    }},
                },
            })
        );
    }

    #[test]
    fn physical_activity_is_exactly_this() {
        let segment = ActivitySegment {
            owner: "ann".into(),
            device: "watch1".into(),
            start_ms: 1_767_225_600_000,
            end_ms: 1_767_225_660_000,
            activity: "walking".into(),
            confidence: 0.9,
            windows: 20,
            model_version: "m1".into(),
        };
        let uuid = segment_uuid("ieee-physical-activity", "watch1", 1_767_225_600_000);
        assert_eq!(
            physical_activity(&segment),
            json!({
                "header": {
                    "uuid": uuid,
                    "schema_id": {"namespace": "ieee", "name": "physical-activity", "version": "1.0"},
                    "source_creation_date_time": "2026-01-01T00:01:00.000Z",
                    "modality": "sensed",
                },
                "body": {
                    "activity_name": "walking",
                    "effective_time_frame": {"time_interval": {
                        "start_date_time": "2026-01-01T00:00:00.000Z",
                        "end_date_time": "2026-01-01T00:01:00.000Z",
                    }},
                },
            })
        );
    }
}
