//! The motion streams' checks, each refusal with its reason, and windows across packs and gaps.

use tributary_log::{MessageId, Record};
use tributary_model::classify::Classifier;
use tributary_model::input::{Normalisation, FEATURES};
use tributary_model::net::{init, Shape};

use super::{Added, MotionStreams};

const T0: f64 = 1_790_000_000.0;

/// An untrained classifier: these tests are about windows and refusals, not labels.
fn classifier() -> Classifier {
    let (_vars, net) = init(Shape::default(), 7).expect("init");
    let net = net.fold_batch_norm().expect("fold");
    let norm = Normalisation {
        signal_mean: vec![0.0; 6],
        signal_std: vec![1.0; 6],
        feature_mean: vec![0.0; FEATURES],
        feature_std: vec![1.0; FEATURES],
    };
    Classifier::new(&net, norm).expect("classifier")
}

/// One second of motion as a SenML JSON pack: `samples` samples `step_s` apart from `start_s`
/// (relative to T0), every channel unless `skip` names one, with `unit` for acc.
fn pack(
    id: u128,
    start_s: f64,
    samples: usize,
    step_s: f64,
    skip: Option<&str>,
    acc_unit: &str,
) -> Record {
    let mut records = Vec::new();
    for i in 0..samples {
        for (name, unit) in [
            ("acc_x", acc_unit),
            ("acc_y", acc_unit),
            ("acc_z", acc_unit),
            ("gyr_x", "rad/s"),
            ("gyr_y", "rad/s"),
            ("gyr_z", "rad/s"),
        ] {
            if skip == Some(name) && i == samples / 2 {
                continue;
            }
            let t = start_s + i as f64 * step_s;
            records.push(format!(
                r#"{{"n":"{name}","u":"{unit}","t":{t:.3},"v":{}}}"#,
                (i % 7) as f64 * 0.1 + 9.0
            ));
        }
    }
    let payload = format!(r#"[{{"bn":"watch/","bt":{T0}}},{}]"#, records.join(","));
    Record {
        receive_time_ms: 1_790_000_100_000,
        topic: "tributary/v1/watch/senml".into(),
        qos: 1,
        payload: payload.into_bytes().into(),
        client_id: "d:watch:c".into(),
        message_id: MessageId(id),
        owner: "ann".into(),
        device: "watch".into(),
        ..Record::default()
    }
}

fn motion(id: u128, start_s: f64) -> Record {
    pack(id, start_s, 50, 0.02, None, "m/s2")
}

fn reason(added: Added) -> String {
    match added {
        Added::Dead(letter) => letter.reason,
        other => panic!("a dead letter expected, got {other:?}"),
    }
}

#[test]
fn packs_of_one_second_make_a_window_every_64_samples_and_one_growing_segment() {
    let mut streams = MotionStreams::new("test-model".into());
    let windows: Vec<Added> = (0..4)
        .map(|s| streams.add(&motion(s as u128 + 1, s as f64)))
        .collect();
    // 50, 100, 150 (one window: 128), 200 (192: a second) samples.
    assert_eq!(windows[2], Added::Samples { windows: 1 });
    assert_eq!(windows[3], Added::Samples { windows: 1 });
    let segments = streams.classify(&classifier());
    assert!(!segments.is_empty());
    let first = &segments[0];
    // The first window's label speaks for its middle: samples 32..96 → 640 ms to 1920 ms.
    assert_eq!(first.start_ms, (T0 * 1000.0) as i64 + 640);
    assert_eq!(
        (
            first.owner.as_str(),
            first.device.as_str(),
            first.model_version.as_str()
        ),
        ("ann", "watch", "test-model")
    );
    let end = segments.iter().map(|s| s.end_ms).max().expect("a segment");
    assert_eq!(end, (T0 * 1000.0) as i64 + 64 * 20 + 1920);
}

#[test]
fn a_missing_axis_is_refused_with_its_name() {
    let mut streams = MotionStreams::new("m".into());
    let r = reason(streams.add(&pack(1, 0.0, 50, 0.02, Some("gyr_z"), "m/s2")));
    assert!(r.contains("gyr_z is missing"), "{r}");
}

#[test]
fn a_wrong_unit_is_refused() {
    let mut streams = MotionStreams::new("m".into());
    let r = reason(streams.add(&pack(1, 0.0, 50, 0.02, None, "g")));
    assert!(r.contains("acc_x must be in m/s2, not g"), "{r}");
}

#[test]
fn a_device_at_25_hz_is_refused_not_labelled() {
    let mut streams = MotionStreams::new("m".into());
    let r = reason(streams.add(&pack(1, 0.0, 25, 0.04, None, "m/s2")));
    assert!(r.contains("40 ms apart") && r.contains("50 Hz"), "{r}");
    assert!(streams.classify(&classifier()).is_empty());
}

#[test]
fn an_out_of_order_or_repeated_pack_is_refused() {
    let mut streams = MotionStreams::new("m".into());
    assert_eq!(streams.add(&motion(2, 1.0)), Added::Samples { windows: 0 });
    let r = reason(streams.add(&motion(1, 0.0)));
    assert!(r.contains("out of order"), "{r}");
    let r = reason(streams.add(&motion(3, 1.0)));
    assert!(r.contains("out of order or repeated"), "{r}");
}

#[test]
fn a_gap_starts_the_windows_afresh() {
    let mut streams = MotionStreams::new("m".into());
    for s in 0..2 {
        streams.add(&motion(s + 1, s as f64));
    }
    // 100 samples, then 10 s of silence: the next 50 must not complete a window with them.
    assert_eq!(streams.add(&motion(3, 12.0)), Added::Samples { windows: 0 });
    assert_eq!(streams.add(&motion(4, 13.0)), Added::Samples { windows: 0 });
    assert_eq!(streams.add(&motion(5, 14.0)), Added::Samples { windows: 1 });
}

#[test]
fn other_measurements_are_not_motion() {
    let mut streams = MotionStreams::new("m".into());
    let mut record = motion(1, 0.0);
    record.payload = br#"[{"bn":"watch/","bt":1790000000,"n":"hr","u":"beat/min","v":61}]"#
        .to_vec()
        .into();
    assert_eq!(streams.add(&record), Added::NotMotion);
    assert!(streams.is_empty());
}
