//! Properties: valid measurements survive `encode_json` → `decode`
//! unchanged, and no input makes `decode` panic.

use proptest::prelude::*;

use super::RECEIVED_MS;
use crate::units::{PRIMARY, SECONDARY};
use crate::{decode, encode_json, Format, Measurement, Value, EARLIEST_TIME_MS, MAX_FUTURE_MS};

fn finite() -> impl Strategy<Value = f64> {
    // Every finite double, including subnormals and -0.0 (equal to 0.0):
    // serde_json writes the shortest text that reads back to the same bits.
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

fn unit() -> impl Strategy<Value = Option<String>> {
    let all: Vec<&'static str> = PRIMARY.iter().chain(SECONDARY).copied().collect();
    proptest::option::of(proptest::sample::select(all).prop_map(str::to_owned))
}

/// A value and a sum that make a valid record: a record without a value
/// must carry a sum.
fn value_and_sum() -> impl Strategy<Value = (Value, Option<f64>)> {
    let value = prop_oneof![
        finite().prop_map(Value::Number),
        any::<String>().prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Data),
    ];
    prop_oneof![
        (value, proptest::option::of(finite())),
        finite().prop_map(|s| (Value::None, Some(s))),
    ]
}

fn measurement() -> impl Strategy<Value = Measurement> {
    (
        "[A-Za-z0-9][A-Za-z0-9:./_-]{0,60}",
        unit(),
        EARLIEST_TIME_MS..=RECEIVED_MS + MAX_FUTURE_MS,
        value_and_sum(),
    )
        .prop_map(|(name, unit, time_ms, (value, sum))| Measurement {
            name,
            unit,
            time_ms,
            value,
            sum,
        })
}

proptest! {
    #[test]
    fn encode_json_then_decode_is_identity(
        measurements in proptest::collection::vec(measurement(), 1..20),
    ) {
        let json = encode_json(&measurements);
        let decoded = decode(Format::Json, &json, RECEIVED_MS);
        prop_assert_eq!(decoded, Ok(measurements), "{}", String::from_utf8_lossy(&json));
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(Format::Json, &bytes, RECEIVED_MS);
        let _ = decode(Format::Cbor, &bytes, RECEIVED_MS);
    }
}
