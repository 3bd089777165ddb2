//! FHIR R4 Observations (in a Bundle of type `collection`): heart rate as
//! LOINC 8867-4 in UCUM `/min`, steps as LOINC 55423-8 ("Number of steps
//! in unspecified time Pedometer": a SenML record does not say over what
//! period it counted, so not 41950-7, which is steps in 24 hours) in UCUM
//! `{steps}`. docs/takeout.md has the table.

use serde_json::{json, Value};
use tributary_store::Row;

use super::kinds::{record_uuid, Kind};
use crate::activity::rfc3339;

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// What differs between the mapped kinds.
struct Coding {
    category: (&'static str, &'static str),
    loinc: &'static str,
    display: &'static str,
    unit: &'static str,
    ucum: &'static str,
}

fn coding(kind: Kind) -> (Coding, f64) {
    match kind {
        Kind::HeartRate(bpm) => (
            Coding {
                category: ("vital-signs", "Vital Signs"),
                loinc: "8867-4",
                display: "Heart rate",
                unit: "beats/minute",
                ucum: "/min",
            },
            bpm,
        ),
        Kind::Steps(steps) => (
            Coding {
                category: ("activity", "Activity"),
                loinc: "55423-8",
                display: "Number of steps in unspecified time Pedometer",
                unit: "steps",
                ucum: "{steps}",
            },
            steps,
        ),
    }
}

/// One Bundle entry: the Observation of `row`, which is of `kind`.
pub(crate) fn entry(row: &Row, kind: Kind) -> Value {
    let id = record_uuid("fhir-observation", row);
    let (c, value) = coding(kind);
    json!({
        "fullUrl": format!("urn:uuid:{id}"),
        "resource": {
            "resourceType": "Observation",
            "id": id,
            "status": "final",
            "category": [{
                "coding": [{ "system": CATEGORY, "code": c.category.0, "display": c.category.1 }]
            }],
            "code": {
                "coding": [{ "system": LOINC, "code": c.loinc, "display": c.display }],
                "text": c.display,
            },
            "effectiveDateTime": rfc3339(row.time_ms),
            "device": { "display": row.device },
            "valueQuantity": { "value": value, "unit": c.unit, "system": UCUM, "code": c.ucum },
        },
    })
}

/// The Bundle's opening, up to where the entries go (`timestamp`: when the
/// takeout was made).
pub(crate) fn bundle_start(now_ms: i64) -> String {
    format!(
        r#"{{"resourceType":"Bundle","type":"collection","timestamp":"{}""#,
        rfc3339(now_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::takeout::kinds::row;

    #[test]
    fn heart_rate_observation_is_exactly_this() {
        let r = row("watch1/hr", Some("beat/min"), Some(61.0));
        let id = record_uuid("fhir-observation", &r);
        assert_eq!(
            entry(&r, Kind::HeartRate(61.0)),
            json!({
                "fullUrl": format!("urn:uuid:{id}"),
                "resource": {
                    "resourceType": "Observation",
                    "id": id,
                    "status": "final",
                    "category": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                        "display": "Vital Signs",
                    }]}],
                    "code": {
                        "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
                        "text": "Heart rate",
                    },
                    "effectiveDateTime": "2026-01-01T00:00:00.250Z",
                    "device": {"display": "watch1"},
                    "valueQuantity": {
                        "value": 61.0,
                        "unit": "beats/minute",
                        "system": "http://unitsofmeasure.org",
                        "code": "/min",
                    },
                },
            })
        );
    }

    #[test]
    fn steps_observation_is_exactly_this() {
        let r = row("band/steps", Some("count"), Some(42.0));
        let id = record_uuid("fhir-observation", &r);
        assert_eq!(
            entry(&r, Kind::Steps(42.0)),
            json!({
                "fullUrl": format!("urn:uuid:{id}"),
                "resource": {
                    "resourceType": "Observation",
                    "id": id,
                    "status": "final",
                    "category": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "activity",
                        "display": "Activity",
                    }]}],
                    "code": {
                        "coding": [{
                            "system": "http://loinc.org",
                            "code": "55423-8",
                            "display": "Number of steps in unspecified time Pedometer",
                        }],
                        "text": "Number of steps in unspecified time Pedometer",
                    },
                    "effectiveDateTime": "2026-01-01T00:00:00.250Z",
                    "device": {"display": "watch1"},
                    "valueQuantity": {
                        "value": 42.0,
                        "unit": "steps",
                        "system": "http://unitsofmeasure.org",
                        "code": "{steps}",
                    },
                },
            })
        );
    }

    #[test]
    fn bundle_start_is_a_collection() {
        assert_eq!(
            bundle_start(1_767_225_600_000),
            r#"{"resourceType":"Bundle","type":"collection","timestamp":"2026-01-01T00:00:00.000Z""#
        );
    }
}
