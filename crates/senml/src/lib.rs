//! SenML (RFC 8428) decoding, validation and encoding, for JSON and CBOR
//! packs. No I/O.
//!
//! - [`format_of`] tells from an MQTT 5.0 content type or a topic whether a
//!   payload is SenML, and in which [`Format`].
//! - [`decode`] reads a pack, applies its base fields and returns absolute
//!   [`Measurement`]s (name, unit, Unix-ms time, [`Value`], sum), or the
//!   [`Invalid`] reason that names the record and field at fault. The whole
//!   pack is rejected if any record is.
//! - [`encode_json`] writes measurements back as a resolved SenML JSON pack.
//! - [`units`] holds the SenML units registry.
//!
//! ```
//! use tributary_senml::{decode, format_of, Format, Value};
//!
//! let payload = br#"[{"bn":"urn:dev:ow:10e2073a01080063:","bt":1.7e9,"u":"Cel","n":"temp","v":23.1}]"#;
//! let format = format_of(Some("application/senml+json"), "owner/device").unwrap();
//! assert_eq!(format, Format::Json);
//! let received_ms = 1_700_000_001_000;
//! let measurements = decode(format, payload, received_ms).unwrap();
//! assert_eq!(measurements[0].name, "urn:dev:ow:10e2073a01080063:temp");
//! assert_eq!(measurements[0].time_ms, 1_700_000_000_000);
//! assert_eq!(measurements[0].value, Value::Number(23.1));
//! ```

mod cbor;
mod error;
mod json;
mod record;
mod resolve;
pub mod units;
mod validate;

#[cfg(test)]
mod tests;

pub use error::{Invalid, Result};
pub use json::encode_json;
pub use resolve::MAX_VERSION;
pub use validate::{EARLIEST_TIME_MS, MAX_FUTURE_MS, MAX_NAME_BYTES, RELATIVE_TIME_LIMIT_S};

/// Largest payload decoded, in bytes: bounds the memory one pack can take.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Most records in one pack.
pub const MAX_RECORDS: usize = 10_000;

/// The content type of SenML JSON (RFC 8428 §12.3).
pub const CONTENT_TYPE_JSON: &str = "application/senml+json";

/// The content type of SenML CBOR (RFC 8428 §12.3).
pub const CONTENT_TYPE_CBOR: &str = "application/senml+cbor";

/// A SenML representation this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `application/senml+json`
    Json,
    /// `application/senml+cbor`
    Cbor,
}

/// One resolved measurement: base fields applied, time absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// `bn + n`, validated against RFC 8428 §4.5.1.
    pub name: String,
    /// `u`, else `bu`; a symbol from the SenML units registry.
    pub unit: Option<String>,
    /// Unix time in milliseconds, relative times already added to "now".
    pub time_ms: i64,
    /// The record's value (`bv + v` for numbers).
    pub value: Value,
    /// `bs + s`, when the record has a sum: integrated values such as
    /// energy, which a record may report with or without a current value.
    pub sum: Option<f64>,
}

/// A measurement's value: exactly one of `v`, `vs`, `vb`, `vd`, or none.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `v` (plus `bv`), always finite.
    Number(f64),
    /// `vs`
    String(String),
    /// `vb`
    Bool(bool),
    /// `vd`: the decoded octets.
    Data(Vec<u8>),
    /// A record that carries only a sum (`s`).
    None,
}

/// Which SenML format a message is in, if any.
///
/// The MQTT 5.0 content type decides when present: `application/senml+json`
/// or `application/senml+cbor`, compared case-insensitively with parameters
/// (`; charset=...`) ignored; any other content type is not SenML. Without a
/// content type (MQTT 3.1.1 has none) the topic's last level decides:
/// `senml` is JSON, `senml+cbor` or `senml-cbor` is CBOR.
pub fn format_of(content_type: Option<&str>, topic: &str) -> Option<Format> {
    if let Some(content_type) = content_type {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        return if essence.eq_ignore_ascii_case(CONTENT_TYPE_JSON) {
            Some(Format::Json)
        } else if essence.eq_ignore_ascii_case(CONTENT_TYPE_CBOR) {
            Some(Format::Cbor)
        } else {
            None
        };
    }
    match topic.rsplit('/').next() {
        Some("senml") => Some(Format::Json),
        Some("senml+cbor" | "senml-cbor") => Some(Format::Cbor),
        _ => None,
    }
}

/// Decodes and resolves a SenML pack into absolute measurements.
///
/// `received_ms` (Unix ms) is "now": a record without a time gets it, and
/// times below 2^28 s are relative to it (RFC 8428 §4.5.3). Measurements
/// come out in record order; records holding only base fields yield none.
pub fn decode(format: Format, payload: &[u8], received_ms: i64) -> Result<Vec<Measurement>> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Invalid::pack(format!(
            "pack is {} bytes, more than the limit of {MAX_PAYLOAD_BYTES}",
            payload.len()
        )));
    }
    let records = match format {
        Format::Json => json::parse(payload)?,
        Format::Cbor => cbor::parse(payload)?,
    };
    resolve::resolve(records, received_ms)
}

/// The pack-level checks on the number of records, shared by both formats.
fn check_record_count(records: usize) -> Result<()> {
    if records == 0 {
        return Err(Invalid::pack("pack is empty; it needs at least one record"));
    }
    if records > MAX_RECORDS {
        return Err(Invalid::pack(format!(
            "pack has {records} records, more than the limit of {MAX_RECORDS}"
        )));
    }
    Ok(())
}
