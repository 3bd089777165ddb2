//! SenML CBOR (RFC 8428 §6, media type `application/senml+cbor`): reading a
//! pack into [`RawRecord`]s.
//!
//! A pack is one CBOR array of maps keyed by the integer labels of §6
//! Table 4 (see [`crate::record`]). Numbers may be integers, floats or
//! decimal fractions (tag 4); data values are byte strings. §6 says any
//! extension uses text keys, so a text key is read as the JSON label of the
//! same name (and one ending in `_` rejects the pack); unknown integer keys
//! are ignored.

use std::io::Cursor;

use ciborium::value::Value as Cbor;

use crate::error::{Invalid, Result};
use crate::record::{FieldValue, Label, RawRecord};

/// CBOR tag of a decimal fraction `[exponent, mantissa]` (RFC 8949 §3.4.4).
const TAG_DECIMAL_FRACTION: u64 = 4;

impl FieldValue for Cbor {
    fn number(&self) -> Option<f64> {
        match self {
            Cbor::Integer(i) => Some(i128::from(*i) as f64),
            Cbor::Float(f) => Some(*f),
            Cbor::Tag(TAG_DECIMAL_FRACTION, inner) => decimal_fraction(inner),
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        self.as_text()
    }

    fn boolean(&self) -> Option<bool> {
        self.as_bool()
    }

    fn data(&self) -> Result<Vec<u8>, String> {
        self.as_bytes()
            .cloned()
            .ok_or_else(|| "must be a byte string".to_owned())
    }

    fn version(&self) -> Option<u64> {
        self.as_integer().and_then(|i| u64::try_from(i).ok())
    }
}

/// `mantissa × 10^exponent`, dividing for negative exponents so that e.g.
/// `[-1, 231]` gives exactly the double nearest 23.1.
fn decimal_fraction(inner: &Cbor) -> Option<f64> {
    let [Cbor::Integer(exponent), Cbor::Integer(mantissa)] = inner.as_array()?.as_slice() else {
        return None;
    };
    let exponent = i32::try_from(i128::from(*exponent)).ok()?;
    let mantissa = i128::from(*mantissa) as f64;
    Some(if exponent < 0 {
        mantissa / 10f64.powi(-exponent)
    } else {
        mantissa * 10f64.powi(exponent)
    })
}

/// Parses a SenML CBOR pack into its records, in order.
pub(crate) fn parse(payload: &[u8]) -> Result<Vec<RawRecord>> {
    let mut cursor = Cursor::new(payload);
    let pack: Cbor = ciborium::de::from_reader(&mut cursor)
        .map_err(|e| Invalid::pack(format!("pack is not valid CBOR: {e}")))?;
    if cursor.position() != payload.len() as u64 {
        return Err(Invalid::pack("pack has bytes after its CBOR array"));
    }
    let Cbor::Array(items) = pack else {
        return Err(Invalid::pack("pack must be a CBOR array of records"));
    };
    crate::check_record_count(items.len())?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let Cbor::Map(fields) = item else {
                return Err(Invalid::record(index, "must be a CBOR map"));
            };
            record(index, fields)
        })
        .collect()
}

fn record(index: usize, fields: &[(Cbor, Cbor)]) -> Result<RawRecord> {
    let mut record = RawRecord::default();
    for (key, value) in fields {
        match key {
            Cbor::Integer(key) => {
                if let Some(label) = Label::from_cbor(i128::from(*key)) {
                    record.set(index, label, value)?;
                }
            }
            Cbor::Text(name) => match Label::from_json(name) {
                Some(label) => record.set(index, label, value)?,
                None => RawRecord::unknown(index, name)?,
            },
            _ => {
                return Err(Invalid::record(
                    index,
                    "map keys must be integer labels or text",
                ))
            }
        }
    }
    Ok(record)
}

/// The CBOR integer key of a label, for building packs in tests.
#[cfg(test)]
pub(crate) fn key(label: Label) -> Cbor {
    Cbor::Integer(ciborium::value::Integer::from(label.cbor()))
}
