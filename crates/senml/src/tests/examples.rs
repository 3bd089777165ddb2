//! RFC 8428 §5.1 examples, decoded to the measurements the RFC describes;
//! each also converted to CBOR, which must decode identically.

use super::{m, to_cbor, RECEIVED_MS};
use crate::{decode, Format, Measurement, Value};

fn check(json: &str, expected: &[Measurement]) {
    let from_json = decode(Format::Json, json.as_bytes(), RECEIVED_MS).expect("JSON decodes");
    assert_eq!(from_json, expected);
    let from_cbor = decode(Format::Cbor, &to_cbor(json), RECEIVED_MS).expect("CBOR decodes");
    assert_eq!(from_cbor, expected);
}

const DEV: &str = "urn:dev:ow:10e2073a01080063";

#[test]
fn single_datapoint() {
    check(
        r#"[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#,
        &[m(DEV, Some("Cel"), RECEIVED_MS, Value::Number(23.1))],
    );
}

/// §6's CBOR of the single datapoint, byte by byte.
#[test]
fn single_datapoint_cbor_bytes() {
    let mut bytes = vec![
        0x81, // array(1)
        0xa3, // map(3)
        0x00, // key 0: n
        0x78, 0x1b, // text(27)
    ];
    bytes.extend_from_slice(DEV.as_bytes());
    bytes.extend_from_slice(&[
        0x01, // key 1: u
        0x63, b'C', b'e', b'l', // text(3) "Cel"
        0x02, // key 2: v
        0xfb, 0x40, 0x37, 0x19, 0x99, 0x99, 0x99, 0x99, 0x9a, // float64 23.1
    ]);
    let decoded = decode(Format::Cbor, &bytes, RECEIVED_MS).expect("decodes");
    assert_eq!(
        decoded,
        [m(DEV, Some("Cel"), RECEIVED_MS, Value::Number(23.1))]
    );
}

#[test]
fn multiple_datapoints() {
    check(
        r#"[
 {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
 {"n":"current","u":"A","v":1.2}
]"#,
        &[
            m(
                "urn:dev:ow:10e2073a01080063:voltage",
                Some("V"),
                RECEIVED_MS,
                Value::Number(120.1),
            ),
            m(
                "urn:dev:ow:10e2073a01080063:current",
                Some("A"),
                RECEIVED_MS,
                Value::Number(1.2),
            ),
        ],
    );
}

#[test]
fn multiple_measurements_over_time() {
    let voltage = "urn:dev:ow:10e2073a0108006:voltage";
    let current = "urn:dev:ow:10e2073a0108006:current";
    let bt = 1_276_020_076_001;
    let mut expected = vec![m(voltage, Some("V"), bt, Value::Number(120.1))];
    for (back, v) in [(5, 1.2), (4, 1.3), (3, 1.4), (2, 1.5), (1, 1.6), (0, 1.7)] {
        expected.push(m(current, Some("A"), bt - back * 1000, Value::Number(v)));
    }
    check(
        r#"[
 {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
  "bu":"A","bver":5,
  "n":"voltage","u":"V","v":120.1},
 {"n":"current","t":-5,"v":1.2},
 {"n":"current","t":-4,"v":1.3},
 {"n":"current","t":-3,"v":1.4},
 {"n":"current","t":-2,"v":1.5},
 {"n":"current","t":-1,"v":1.6},
 {"n":"current","v":1.7}
]"#,
        &expected,
    );
}

/// The humidity, position and battery readings of §5.1.4, as a table.
fn mobile_device() -> Vec<Measurement> {
    let t0 = 1_320_067_464_000;
    [
        ("%RH", 0, 20.0),
        ("lon", 0, 24.30621),
        ("lat", 0, 60.07965),
        ("%RH", 60, 20.3),
        ("lon", 60, 24.30622),
        ("lat", 60, 60.07965),
        ("%RH", 120, 20.7),
        ("lon", 120, 24.30623),
        ("lat", 120, 60.07966),
        ("%EL", 150, 98.0),
        ("%RH", 180, 21.2),
        ("lon", 180, 24.30628),
        ("lat", 180, 60.07967),
    ]
    .into_iter()
    .map(|(unit, after, v)| m(DEV, Some(unit), t0 + after * 1000, Value::Number(v)))
    .collect()
}

#[test]
fn multiple_measurements_of_a_mobile_device() {
    check(
        r#"[
 {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
  "bu":"%RH","v":20},
 {"u":"lon","v":24.30621},
 {"u":"lat","v":60.07965},
 {"t":60,"v":20.3},
 {"u":"lon","t":60,"v":24.30622},
 {"u":"lat","t":60,"v":60.07965},
 {"t":120,"v":20.7},
 {"u":"lon","t":120,"v":24.30623},
 {"u":"lat","t":120,"v":60.07966},
 {"u":"%EL","t":150,"v":98},
 {"t":180,"v":21.2},
 {"u":"lon","t":180,"v":24.30628},
 {"u":"lat","t":180,"v":60.07967}
]"#,
        &mobile_device(),
    );
}

#[test]
fn resolved_data() {
    check(
        r#"[
 {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,"v":20},
 {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,"v":24.30621},
 {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,"v":60.07965},
 {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,"v":20.3},
 {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,"v":24.30622},
 {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,"v":60.07965},
 {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,"v":20.7},
 {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,"v":24.30623},
 {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,"v":60.07966},
 {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,"v":98},
 {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,"v":21.2},
 {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,"v":24.30628},
 {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,"v":60.07967}
]"#,
        &mobile_device(),
    );
}

#[test]
fn multiple_data_types() {
    let name = |n: &str| format!("{DEV}:{n}");
    check(
        r#"[
 {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
 {"n":"label","vs":"Machine Room"},
 {"n":"open","vb":false},
 {"n":"nfc-reader","vd":"aGkgCg"}
]"#,
        &[
            m(&name("temp"), Some("Cel"), RECEIVED_MS, Value::Number(23.1)),
            m(
                &name("label"),
                None,
                RECEIVED_MS,
                Value::String("Machine Room".into()),
            ),
            m(&name("open"), None, RECEIVED_MS, Value::Bool(false)),
            m(
                &name("nfc-reader"),
                None,
                RECEIVED_MS,
                Value::Data(b"hi \n".to_vec()),
            ),
        ],
    );
}

#[test]
fn collection_of_resources() {
    let t = 1_320_078_429_000;
    check(
        r#"[
 {"bn":"2001:db8::2/","bt":1.320078429e+09,
  "n":"temperature","u":"Cel","v":25.2},
 {"n":"humidity","u":"%RH","v":30},
 {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
 {"n":"humidity","u":"%RH","v":67}
]"#,
        &[
            m(
                "2001:db8::2/temperature",
                Some("Cel"),
                t,
                Value::Number(25.2),
            ),
            m("2001:db8::2/humidity", Some("%RH"), t, Value::Number(30.0)),
            m(
                "2001:db8::1/temperature",
                Some("Cel"),
                t,
                Value::Number(12.3),
            ),
            m("2001:db8::1/humidity", Some("%RH"), t, Value::Number(67.0)),
        ],
    );
}

/// The first record only sets the base name and yields no measurement.
#[test]
fn setting_an_actuator() {
    let name = |n: &str| format!("{DEV}:{n}");
    check(
        r#"[
 {"bn":"urn:dev:ow:10e2073a01080063:"},
 {"n":"temp","u":"Cel","v":23.1},
 {"n":"heat","u":"/","v":1},
 {"n":"fan","u":"/","v":0}
]"#,
        &[
            m(&name("temp"), Some("Cel"), RECEIVED_MS, Value::Number(23.1)),
            m(&name("heat"), Some("/"), RECEIVED_MS, Value::Number(1.0)),
            m(&name("fan"), Some("/"), RECEIVED_MS, Value::Number(0.0)),
        ],
    );
}

#[test]
fn lights_off_a_tenth_of_a_second_apart() {
    let t = 1_320_078_429_000;
    check(
        r#"[
 {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
 {"n":"2001:db8::4","v":0.5},
 {"n":"2001:db8::3","t":0.1,"v":0},
 {"n":"2001:db8::4","t":0.1,"v":0}
]"#,
        &[
            m("2001:db8::3", Some("/"), t, Value::Number(0.5)),
            m("2001:db8::4", Some("/"), t, Value::Number(0.5)),
            m("2001:db8::3", Some("/"), t + 100, Value::Number(0.0)),
            m("2001:db8::4", Some("/"), t + 100, Value::Number(0.0)),
        ],
    );
}

#[test]
fn relative_times_count_from_received() {
    check(
        r#"[{"n":"a","v":1,"t":-5},{"n":"a","v":2,"t":-0.25},{"n":"a","v":3,"bt":-60,"t":10}]"#,
        &[
            m("a", None, RECEIVED_MS - 5000, Value::Number(1.0)),
            m("a", None, RECEIVED_MS - 250, Value::Number(2.0)),
            m("a", None, RECEIVED_MS - 50_000, Value::Number(3.0)),
        ],
    );
}

#[test]
fn base_value_and_base_sum_are_added() {
    let mut with_sum = m("meter", Some("J"), RECEIVED_MS, Value::Number(105.0));
    with_sum.sum = Some(1005.0);
    let mut only_sum = m("meter", Some("J"), RECEIVED_MS, Value::None);
    only_sum.sum = Some(1010.0);
    check(
        r#"[{"bn":"meter","bu":"J","bv":100,"bs":1000,"v":5,"s":5},{"s":10}]"#,
        &[with_sum, only_sum],
    );
}

#[test]
fn unknown_fields_without_underscore_and_ut_are_ignored() {
    check(
        r#"[{"n":"a","v":1,"ut":60,"foo":{"x":[1]},"bar":"y"}]"#,
        &[m("a", None, RECEIVED_MS, Value::Number(1.0))],
    );
}

#[test]
fn bver_up_to_ten_is_accepted() {
    check(
        r#"[{"bver":10,"n":"a","v":1}]"#,
        &[m("a", None, RECEIVED_MS, Value::Number(1.0))],
    );
}

#[test]
fn cbor_decimal_fractions_and_text_keys_are_read() {
    use ciborium::value::{Integer, Value as Cbor};
    let int = |i: i64| Cbor::Integer(Integer::from(i));
    // [{0: "a", "u": "Cel", 2: 4([-1, 231])}]: 23.1 as a decimal fraction.
    let pack = Cbor::Array(vec![Cbor::Map(vec![
        (int(0), Cbor::Text("a".into())),
        (Cbor::Text("u".into()), Cbor::Text("Cel".into())),
        (
            int(2),
            Cbor::Tag(4, Box::new(Cbor::Array(vec![int(-1), int(231)]))),
        ),
        (int(99), Cbor::Null),
    ])]);
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(&pack, &mut bytes).expect("serialize");
    let decoded = decode(Format::Cbor, &bytes, RECEIVED_MS).expect("decodes");
    assert_eq!(
        decoded,
        [m("a", Some("Cel"), RECEIVED_MS, Value::Number(23.1))]
    );
}

/// A pack at both limits (10,000 records, just under 1 MiB) decodes: the
/// resolve pass is linear, so this stays fast.
#[test]
fn largest_pack_decodes() {
    let record = format!(
        r#"{{"n":"urn:dev:ow:10e2073a01080063:heart-rate","u":"beat/min","t":-1,"v":61.5,"pad":"{}"}}"#,
        "x".repeat(10)
    );
    let body = vec![record; crate::MAX_RECORDS].join(",");
    let pack = format!("[{body}]");
    assert!(pack.len() <= crate::MAX_PAYLOAD_BYTES, "{}", pack.len());
    let decoded = decode(Format::Json, pack.as_bytes(), RECEIVED_MS).expect("decodes");
    assert_eq!(decoded.len(), crate::MAX_RECORDS);
    let decoded = decode(Format::Cbor, &to_cbor(&pack), RECEIVED_MS).expect("decodes");
    assert_eq!(decoded.len(), crate::MAX_RECORDS);
}
