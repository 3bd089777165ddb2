//! SenML JSON (RFC 8428 §4, media type `application/senml+json`): reading a
//! pack into [`RawRecord`]s and writing measurements back.
//!
//! A pack is a JSON array of objects, one per record; data values (`vd`) are
//! base64url (RFC 4648 §5) without padding, and padding is tolerated on input.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use serde_json::{Map, Value as Json};

use crate::error::{Invalid, Result};
use crate::record::{FieldValue, Label, RawRecord};
use crate::{Measurement, Value};

/// base64url as §4.3 writes it: no padding; padding accepted when reading.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl FieldValue for Json {
    fn number(&self) -> Option<f64> {
        self.as_f64()
    }

    fn text(&self) -> Option<&str> {
        self.as_str()
    }

    fn boolean(&self) -> Option<bool> {
        self.as_bool()
    }

    fn data(&self) -> Result<Vec<u8>, String> {
        let text = self
            .as_str()
            .ok_or_else(|| "must be a base64url string".to_owned())?;
        BASE64URL
            .decode(text)
            .map_err(|e| format!("is not valid base64url: {e}"))
    }

    fn version(&self) -> Option<u64> {
        self.as_u64()
    }
}

/// Parses a SenML JSON pack into its records, in order.
pub(crate) fn parse(payload: &[u8]) -> Result<Vec<RawRecord>> {
    let pack: Json = serde_json::from_slice(payload)
        .map_err(|e| Invalid::pack(format!("pack is not valid JSON: {e}")))?;
    let Json::Array(items) = pack else {
        return Err(Invalid::pack("pack must be a JSON array of records"));
    };
    crate::check_record_count(items.len())?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let Json::Object(fields) = item else {
                return Err(Invalid::record(index, "must be a JSON object"));
            };
            record(index, fields)
        })
        .collect()
}

fn record(index: usize, fields: &Map<String, Json>) -> Result<RawRecord> {
    let mut record = RawRecord::default();
    for (name, value) in fields {
        match Label::from_json(name) {
            Some(label) => record.set(index, label, value)?,
            None => RawRecord::unknown(index, name)?,
        }
    }
    Ok(record)
}

/// Writes measurements as a SenML JSON pack of resolved records (§4.6):
/// absolute names and times, no base fields. Times are written in whole
/// seconds when they are, else as fractional seconds that read back to the
/// same millisecond.
pub fn encode_json(measurements: &[Measurement]) -> Vec<u8> {
    let records: Vec<Json> = measurements.iter().map(encode_record).collect();
    serde_json::to_vec(&records).expect("a JSON value always serializes")
}

fn encode_record(m: &Measurement) -> Json {
    let mut fields = Map::new();
    fields.insert(Label::N.json().into(), Json::from(m.name.as_str()));
    if let Some(unit) = &m.unit {
        fields.insert(Label::U.json().into(), Json::from(unit.as_str()));
    }
    let time = if m.time_ms % 1000 == 0 {
        Json::from(m.time_ms / 1000)
    } else {
        Json::from(m.time_ms as f64 / 1000.0)
    };
    fields.insert(Label::T.json().into(), time);
    let value = match &m.value {
        Value::Number(v) => Some((Label::V, Json::from(*v))),
        Value::String(s) => Some((Label::Vs, Json::from(s.as_str()))),
        Value::Bool(b) => Some((Label::Vb, Json::from(*b))),
        Value::Data(d) => Some((Label::Vd, Json::from(BASE64URL.encode(d)))),
        Value::None => None,
    };
    if let Some((label, value)) = value {
        fields.insert(label.json().into(), value);
    }
    if let Some(sum) = m.sum {
        fields.insert(Label::S.json().into(), Json::from(sum));
    }
    Json::Object(fields)
}
