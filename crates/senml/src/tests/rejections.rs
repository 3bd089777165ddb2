//! One test per rejection rule, checking the record index and reason text.

use ciborium::value::{Integer, Value as Cbor};

use super::{to_cbor, RECEIVED_MS};
use crate::{decode, Format, Invalid, MAX_PAYLOAD_BYTES, MAX_RECORDS};

fn reject(json: &str) -> Invalid {
    decode(Format::Json, json.as_bytes(), RECEIVED_MS).expect_err("must be rejected")
}

fn reject_cbor(pack: &Cbor) -> Invalid {
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(pack, &mut bytes).expect("serialize");
    decode(Format::Cbor, &bytes, RECEIVED_MS).expect_err("must be rejected")
}

fn assert_reason(invalid: &Invalid, record: Option<usize>, starts_with: &str) {
    assert_eq!(invalid.record, record, "{invalid:?}");
    assert!(
        invalid.reason.starts_with(starts_with),
        "reason {:?} does not start with {starts_with:?}",
        invalid.reason
    );
    assert_eq!(invalid.to_string(), invalid.reason);
}

#[test]
fn not_json() {
    assert_reason(&reject("[{"), None, "pack is not valid JSON: ");
}

#[test]
fn not_cbor() {
    let invalid = decode(Format::Cbor, &[0xff], RECEIVED_MS).expect_err("rejected");
    assert_reason(&invalid, None, "pack is not valid CBOR: ");
}

#[test]
fn cbor_with_trailing_bytes() {
    let mut bytes = to_cbor(r#"[{"n":"a","v":1}]"#);
    bytes.push(0x00);
    let invalid = decode(Format::Cbor, &bytes, RECEIVED_MS).expect_err("rejected");
    assert_reason(&invalid, None, "pack has bytes after its CBOR array");
}

#[test]
fn pack_not_an_array() {
    assert_reason(
        &reject(r#"{"n":"a","v":1}"#),
        None,
        "pack must be a JSON array of records",
    );
    assert_reason(
        &reject_cbor(&Cbor::Text("a".into())),
        None,
        "pack must be a CBOR array of records",
    );
}

#[test]
fn empty_pack() {
    assert_reason(
        &reject("[]"),
        None,
        "pack is empty; it needs at least one record",
    );
}

#[test]
fn too_many_records() {
    let pack = format!(
        "[{}]",
        vec![r#"{"n":"a","v":1}"#; MAX_RECORDS + 1].join(",")
    );
    assert_reason(
        &reject(&pack),
        None,
        "pack has 10001 records, more than the limit of 10000",
    );
}

#[test]
fn payload_too_large() {
    let payload = vec![b' '; MAX_PAYLOAD_BYTES + 1];
    let invalid = decode(Format::Json, &payload, RECEIVED_MS).expect_err("rejected");
    assert_reason(
        &invalid,
        None,
        "pack is 1048577 bytes, more than the limit of 1048576",
    );
}

#[test]
fn record_not_an_object() {
    assert_reason(
        &reject(r#"[{"n":"a","v":1},2]"#),
        Some(1),
        "record 1: must be a JSON object",
    );
    assert_reason(
        &reject_cbor(&Cbor::Array(vec![Cbor::Bool(true)])),
        Some(0),
        "record 0: must be a CBOR map",
    );
}

#[test]
fn cbor_key_neither_integer_nor_text() {
    let pack = Cbor::Array(vec![Cbor::Map(vec![(Cbor::Bool(true), Cbor::Null)])]);
    assert_reason(
        &reject_cbor(&pack),
        Some(0),
        "record 0: map keys must be integer labels or text",
    );
}

#[test]
fn field_of_the_wrong_type() {
    for (pack, reason) in [
        (
            r#"[{"n":"a","v":"1"}]"#,
            r#"record 0: field "v" must be a number"#,
        ),
        (
            r#"[{"n":1,"v":1}]"#,
            r#"record 0: field "n" must be a string"#,
        ),
        (
            r#"[{"n":"a","vb":1}]"#,
            r#"record 0: field "vb" must be a boolean"#,
        ),
        (
            r#"[{"n":"a","vd":1}]"#,
            r#"record 0: field "vd" must be a base64url string"#,
        ),
        (
            r#"[{"n":"a","v":1,"bu":null}]"#,
            r#"record 0: field "bu" must be a string"#,
        ),
        (
            r#"[{"n":"a","v":1,"bver":5.5}]"#,
            r#"record 0: field "bver" must be an unsigned integer"#,
        ),
    ] {
        assert_reason(&reject(pack), Some(0), reason);
    }
}

#[test]
fn data_not_base64url() {
    assert_reason(
        &reject(r#"[{"n":"a","vd":"aGk+Cg=="}]"#),
        Some(0),
        r#"record 0: field "vd" is not valid base64url: "#,
    );
}

#[test]
fn cbor_data_not_bytes() {
    let pack = Cbor::Array(vec![Cbor::Map(vec![
        (Cbor::Integer(Integer::from(0)), Cbor::Text("a".into())),
        (Cbor::Integer(Integer::from(8)), Cbor::Text("aGkgCg".into())),
    ])]);
    assert_reason(
        &reject_cbor(&pack),
        Some(0),
        r#"record 0: field "vd" must be a byte string"#,
    );
}

#[test]
fn must_understand_field() {
    assert_reason(
        &reject(r#"[{"n":"a","v":1},{"n":"a","v":1,"foo_":1}]"#),
        Some(1),
        r#"record 1: field "foo_" must be understood but is not supported"#,
    );
    let pack = Cbor::Array(vec![Cbor::Map(vec![(
        Cbor::Text("bar_".into()),
        Cbor::Null,
    )])]);
    assert_reason(
        &reject_cbor(&pack),
        Some(0),
        r#"record 0: field "bar_" must be understood but is not supported"#,
    );
}

#[test]
fn no_value() {
    assert_reason(
        &reject(r#"[{"n":"a","t":-1}]"#),
        Some(0),
        "record 0: has no value; one of v, vs, vb, vd or a sum s is required",
    );
    assert_reason(
        &reject("[{}]"),
        Some(0),
        "record 0: has no value; one of v, vs, vb, vd or a sum s is required",
    );
}

#[test]
fn more_than_one_value() {
    assert_reason(
        &reject(r#"[{"n":"a","v":1,"vs":"x","vd":"aGk"}]"#),
        Some(0),
        "record 0: has more than one value (v, vs, vd); exactly one of v, vs, vb, vd is allowed",
    );
}

#[test]
fn empty_name() {
    assert_reason(
        &reject(r#"[{"v":1}]"#),
        Some(0),
        "record 0: name (bn + n) is empty",
    );
}

#[test]
fn name_too_long() {
    let pack = format!(r#"[{{"bn":"{}","n":"b","v":1}}]"#, "a".repeat(255));
    assert_reason(
        &reject(&pack),
        Some(0),
        "record 0: name (bn + n) is 256 bytes, longer than 255",
    );
}

#[test]
fn name_not_starting_with_letter_or_digit() {
    assert_reason(
        &reject(r#"[{"n":"-a","v":1}]"#),
        Some(0),
        r#"record 0: name "-a" (bn + n) must start with a letter or digit"#,
    );
}

#[test]
fn name_with_forbidden_character() {
    assert_reason(
        &reject(r#"[{"bn":"dev/","n":"heart rate","v":1}]"#),
        Some(0),
        r#"record 0: name "dev/heart rate" (bn + n) contains ' '; only A-Z a-z 0-9 - : . / _ are allowed"#,
    );
}

#[test]
fn unit_not_registered() {
    let invalid = reject(
        r#"[{"bn":"d:","n":"a","u":"m","v":1},{"n":"b","v":2},{"n":"c","u":"furlong","v":3}]"#,
    );
    assert_eq!(
        invalid,
        Invalid {
            record: Some(2),
            reason: r#"record 2: unit "furlong" is not in the SenML units registry"#.into(),
        }
    );
    // A base unit is checked where it is applied.
    assert_reason(
        &reject(r#"[{"bu":"cel","n":"a","v":1}]"#),
        Some(0),
        r#"record 0: unit "cel" is not in the SenML units registry"#,
    );
}

#[test]
fn number_not_finite() {
    let pack = Cbor::Array(vec![Cbor::Map(vec![
        (Cbor::Integer(Integer::from(0)), Cbor::Text("a".into())),
        (Cbor::Integer(Integer::from(2)), Cbor::Float(f64::INFINITY)),
    ])]);
    assert_reason(
        &reject_cbor(&pack),
        Some(0),
        r#"record 0: field "v" must be a finite number"#,
    );
    assert_reason(
        &reject(r#"[{"n":"a","bv":1e308,"v":1e308}]"#),
        Some(0),
        "record 0: value (bv + v) is not a finite number",
    );
    assert_reason(
        &reject(r#"[{"n":"a","bs":-1e308,"s":-1e308}]"#),
        Some(0),
        "record 0: sum (bs + s) is not a finite number",
    );
}

#[test]
fn time_before_2001() {
    assert_reason(
        &reject(r#"[{"n":"a","v":1,"t":978307199}]"#),
        Some(0),
        "record 0: time (bt + t) resolves to 978307199000 ms, before 2001-01-01",
    );
}

#[test]
fn time_more_than_a_day_ahead() {
    let t = RECEIVED_MS / 1000 + 24 * 3600 + 1;
    assert_reason(
        &reject(&format!(r#"[{{"n":"a","v":1,"t":{t}}}]"#)),
        Some(0),
        "record 0: time (bt + t) resolves to 1700086401000 ms, more than 24 h after the pack was received at 1700000000000 ms",
    );
    // Exactly 24 h ahead is still accepted.
    let t = RECEIVED_MS / 1000 + 24 * 3600;
    decode(
        Format::Json,
        format!(r#"[{{"n":"a","v":1,"t":{t}}}]"#).as_bytes(),
        RECEIVED_MS,
    )
    .expect("24 h ahead is accepted");
}

#[test]
fn unsupported_version() {
    assert_reason(
        &reject(r#"[{"n":"a","v":1},{"bver":11,"n":"a","v":1}]"#),
        Some(1),
        r#"record 1: field "bver" is 11, not a supported version (1 to 10)"#,
    );
    assert_reason(
        &reject(r#"[{"bver":0,"n":"a","v":1}]"#),
        Some(0),
        r#"record 0: field "bver" is 0, not a supported version (1 to 10)"#,
    );
}

#[test]
fn long_payload_text_is_cut_short_in_reasons() {
    let unit = "x".repeat(10_000);
    let invalid = reject(&format!(r#"[{{"n":"a","u":"{unit}","v":1}}]"#));
    let quoted = format!("\"{}\"...", "x".repeat(64));
    assert_eq!(
        invalid.reason,
        format!("record 0: unit {quoted} is not in the SenML units registry")
    );
}
