//! Unit tests: the RFC 8428 §5 examples in JSON and CBOR, one test per
//! rejection rule, and round-trip properties.

mod examples;
mod format;
mod rejections;
mod roundtrip;

use ciborium::value::{Integer, Value as Cbor};
use serde_json::Value as Json;

use crate::record::Label;
use crate::{Measurement, Value};

/// "Now" for the tests: 2023-11-14T22:13:20Z, after every RFC example time.
const RECEIVED_MS: i64 = 1_700_000_000_000;

fn m(name: &str, unit: Option<&str>, time_ms: i64, value: Value) -> Measurement {
    Measurement {
        name: name.to_owned(),
        unit: unit.map(str::to_owned),
        time_ms,
        value,
        sum: None,
    }
}

/// The same pack in CBOR, built with ciborium: integer labels, integers
/// kept as integers, `vd` as a byte string.
fn to_cbor(json: &str) -> Vec<u8> {
    let pack: Json = serde_json::from_str(json).expect("test pack is JSON");
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(&cbor_value(&pack, None), &mut bytes).expect("serialize CBOR");
    bytes
}

fn cbor_value(json: &Json, label: Option<Label>) -> Cbor {
    match json {
        Json::Null => Cbor::Null,
        Json::Bool(b) => Cbor::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Cbor::Integer(Integer::from(i)),
            None => Cbor::Float(n.as_f64().expect("finite")),
        },
        Json::String(s) if label == Some(Label::Vd) => {
            Cbor::Bytes(Json::String(s.clone()).data_for_test())
        }
        Json::String(s) => Cbor::Text(s.clone()),
        Json::Array(items) => Cbor::Array(items.iter().map(|i| cbor_value(i, None)).collect()),
        Json::Object(fields) => Cbor::Map(
            fields
                .iter()
                .map(|(k, v)| match Label::from_json(k) {
                    Some(label) => (crate::cbor::key(label), cbor_value(v, Some(label))),
                    None => (Cbor::Text(k.clone()), cbor_value(v, None)),
                })
                .collect(),
        ),
    }
}

trait DataForTest {
    fn data_for_test(&self) -> Vec<u8>;
}

impl DataForTest for Json {
    fn data_for_test(&self) -> Vec<u8> {
        crate::record::FieldValue::data(self).expect("test vd is base64url")
    }
}
