//! Unit tests of the engine-independent parts: URL parsing, query plans, bucket merging.
//! The engines themselves are tested through the public API in `tests/store.rs`.

use super::*;

fn query(from_ms: i64, to_ms: i64, bucket_ms: Option<i64>) -> Query {
    Query {
        owner: "o".into(),
        from_ms,
        to_ms,
        names: vec![],
        bucket_ms,
        limit: 10,
    }
}

fn spans(q: &Query) -> Vec<Span> {
    match Plan::new(q).expect("valid query") {
        Some(Plan::Buckets { spans, .. }) => spans,
        _ => panic!("expected a bucketed plan"),
    }
}

fn rows(from_ms: i64, to_ms: i64) -> Span {
    Span {
        source: Source::Rows,
        from_ms,
        to_ms,
    }
}

fn rollup(from_ms: i64, to_ms: i64) -> Span {
    Span {
        source: Source::Rollup,
        from_ms,
        to_ms,
    }
}

#[test]
fn urls_name_their_engine_and_file() -> Result<()> {
    let dir = Path::new("/data");
    assert!(
        matches!(parse_url(None, dir)?, Target::Sqlite(p) if p == Path::new("/data/store.sqlite"))
    );
    assert!(
        matches!(parse_url(Some("sqlite"), dir)?, Target::Sqlite(p) if p == Path::new("/data/store.sqlite"))
    );
    assert!(
        matches!(parse_url(Some("sqlite:///x/y.db"), dir)?, Target::Sqlite(p) if p == Path::new("/x/y.db"))
    );
    assert!(
        matches!(parse_url(Some("sqlite://rel.db"), dir)?, Target::Sqlite(p) if p == Path::new("/data/rel.db"))
    );
    assert!(
        matches!(parse_url(Some("postgres://u@h:5432/db"), dir)?, Target::Postgres(u) if u == "postgres://u@h:5432/db")
    );
    assert!(matches!(
        parse_url(Some("postgresql://u@h/db"), dir)?,
        Target::Postgres(_)
    ));
    let e = parse_url(Some("mysql://h/db"), dir)
        .err()
        .expect("mysql is refused");
    assert!(
        e.to_string()
            .starts_with("invalid store url \"mysql://h/db\""),
        "{e}"
    );
    assert!(parse_url(Some("sqlite://"), dir).is_err());
    Ok(())
}

#[test]
fn minute_buckets_read_whole_minutes_from_the_rollup_and_edges_from_rows() {
    // aligned range: rollup only
    assert_eq!(
        spans(&query(0, 600_000, Some(300_000))),
        vec![rollup(0, 600_000)]
    );
    // partial minutes at both ends
    assert_eq!(
        spans(&query(59_999, 300_001, Some(300_000))),
        vec![
            rollup(60_000, 300_000),
            rows(59_999, 60_000),
            rows(300_000, 300_001)
        ]
    );
    // before the epoch: floor, not truncation
    assert_eq!(
        spans(&query(-150_000, -1, Some(60_000))),
        vec![
            rollup(-120_000, -60_000),
            rows(-150_000, -120_000),
            rows(-60_000, -1)
        ]
    );
    assert_eq!(
        spans(&query(-90_000, -1, Some(60_000))),
        vec![rows(-90_000, -1)]
    );
    // less than a whole minute: rows only
    assert_eq!(
        spans(&query(1, 59_999, Some(60_000))),
        vec![rows(1, 59_999)]
    );
    // not a multiple of a minute: rows only
    assert_eq!(
        spans(&query(0, 600_000, Some(90_000))),
        vec![rows(0, 600_000)]
    );
}

#[test]
fn empty_ranges_and_zero_limits_ask_nothing_and_bad_buckets_are_refused() {
    assert!(Plan::new(&query(10, 10, None)).expect("valid").is_none());
    assert!(Plan::new(&query(10, 5, Some(60_000)))
        .expect("valid")
        .is_none());
    let mut q = query(0, 10, None);
    q.limit = 0;
    assert!(Plan::new(&q).expect("valid").is_none());
    for b in [0, -60_000, MAX_ABS_TIME_MS + 1] {
        let e = Plan::new(&query(0, 10, Some(b))).err().expect("refused");
        assert!(matches!(e, Error::InvalidQuery { .. }), "{e}");
    }
}

#[test]
fn merging_adds_parts_bucket_by_bucket_and_cuts_at_the_limit() {
    let a = |count, sum, min, max, unit: Option<&str>| Agg {
        count,
        sum,
        min,
        max,
        unit: unit.map(str::to_owned),
    };
    let parts = vec![
        vec![
            ("hr".into(), 0, a(2, 130.0, 60.0, 70.0, Some("beat/min"))),
            ("hr".into(), 300_000, a(1, 50.0, 50.0, 50.0, None)),
        ],
        vec![("hr".into(), 0, a(1, 90.0, 90.0, 90.0, Some("bpm")))],
        vec![("a".into(), 300_000, a(1, 1.0, 1.0, 1.0, None))],
    ];
    let points = merge_buckets(parts.clone(), 10);
    let got: Vec<_> = points
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.time_ms,
                p.count,
                p.avg,
                p.min,
                p.max,
                p.unit.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", 300_000, 1, Some(1.0), Some(1.0), Some(1.0), None),
            (
                "hr",
                0,
                3,
                Some(220.0 / 3.0),
                Some(60.0),
                Some(90.0),
                Some("bpm")
            ),
            ("hr", 300_000, 1, Some(50.0), Some(50.0), Some(50.0), None),
        ]
    );
    assert_eq!(merge_buckets(parts, 2).len(), 2);
}

#[test]
fn row_hash_sees_every_field() {
    let base = Row {
        owner: "o".into(),
        device: "d".into(),
        message_id: "m".into(),
        seq: 0,
        name: "n".into(),
        unit: None,
        time_ms: 0,
        value: None,
        text: None,
        bool: None,
        data: None,
        sum: None,
    };
    let variants = [
        Row {
            owner: "p".into(),
            ..base.clone()
        },
        Row {
            device: "e".into(),
            ..base.clone()
        },
        Row {
            message_id: "n".into(),
            ..base.clone()
        },
        Row {
            seq: 1,
            ..base.clone()
        },
        Row {
            name: "m".into(),
            ..base.clone()
        },
        Row {
            unit: Some(String::new()),
            ..base.clone()
        },
        Row {
            time_ms: 1,
            ..base.clone()
        },
        Row {
            value: Some(0.0),
            ..base.clone()
        },
        Row {
            text: Some(String::new()),
            ..base.clone()
        },
        Row {
            bool: Some(false),
            ..base.clone()
        },
        Row {
            data: Some(vec![]),
            ..base.clone()
        },
        Row {
            sum: Some(0.0),
            ..base.clone()
        },
    ];
    let mut hashes: Vec<u64> = variants.iter().map(row_hash).collect();
    hashes.push(row_hash(&base));
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), variants.len() + 1);
}

#[test]
fn rows_that_the_engines_would_store_differently_are_refused() {
    let row = Row {
        owner: "o".into(),
        device: "d".into(),
        message_id: "m".into(),
        seq: 0,
        name: "n".into(),
        unit: None,
        time_ms: 0,
        value: Some(1.0),
        text: None,
        bool: None,
        data: None,
        sum: None,
    };
    assert!(validate_rows(std::slice::from_ref(&row)).is_ok());
    for bad in [
        Row {
            value: Some(f64::NAN),
            ..row.clone()
        },
        Row {
            sum: Some(f64::INFINITY),
            ..row.clone()
        },
        Row {
            text: Some("a\0b".into()),
            ..row.clone()
        },
        Row {
            time_ms: i64::MIN,
            ..row.clone()
        },
    ] {
        assert!(matches!(
            validate_rows(&[row.clone(), bad]),
            Err(Error::InvalidRow { .. })
        ));
    }
}

#[test]
fn pending_migrations_follow_the_schema_version() {
    use crate::Migration;
    static ALL: [Migration; 2] = [
        Migration {
            version: 1,
            name: "init",
            sql: "",
        },
        Migration {
            version: 2,
            name: "more",
            sql: "",
        },
    ];
    let versions = |current| {
        Migration::pending(&ALL, current, crate::SQLITE)
            .map(|p| p.iter().map(|m| m.version).collect::<Vec<_>>())
    };
    assert_eq!(versions(0).ok(), Some(vec![1, 2]));
    assert_eq!(versions(1).ok(), Some(vec![2]));
    assert_eq!(versions(2).ok(), Some(vec![]));
    assert!(matches!(
        versions(3),
        Err(crate::Error::SchemaTooNew {
            found: 3,
            known: 2,
            ..
        })
    ));
}

fn segment(device: &str, start_ms: i64, end_ms: i64) -> ActivitySegment {
    ActivitySegment {
        owner: "o".into(),
        device: device.into(),
        start_ms,
        end_ms,
        activity: "walking".into(),
        confidence: 0.5,
        windows: 1,
        model_version: "v1".into(),
    }
}

#[test]
fn segments_that_the_engines_would_store_differently_are_refused() {
    let good = segment("d", 0, 1);
    assert!(validate_segments(std::slice::from_ref(&good)).is_ok());
    let edges = [
        ActivitySegment {
            confidence: 0.0,
            ..good.clone()
        },
        ActivitySegment {
            confidence: 1.0,
            start_ms: -MAX_ABS_TIME_MS,
            end_ms: MAX_ABS_TIME_MS,
            ..good.clone()
        },
    ];
    assert!(validate_segments(&edges).is_ok());
    for bad in [
        segment("d", 5, 5),
        segment("d", 5, 4),
        segment("d", -MAX_ABS_TIME_MS - 1, 0),
        segment("d", 0, MAX_ABS_TIME_MS + 1),
        ActivitySegment {
            confidence: f64::NAN,
            ..good.clone()
        },
        ActivitySegment {
            confidence: 1.5,
            ..good.clone()
        },
        ActivitySegment {
            confidence: -0.1,
            ..good.clone()
        },
        ActivitySegment {
            activity: "a\0b".into(),
            ..good.clone()
        },
        ActivitySegment {
            model_version: "\0".into(),
            ..good.clone()
        },
    ] {
        assert!(
            matches!(
                validate_segments(&[good.clone(), bad.clone()]),
                Err(Error::InvalidActivity { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn the_last_segment_of_a_key_wins_and_keys_come_sorted() {
    let first = segment("b", 0, 10);
    let longer = segment("b", 0, 20);
    let other = segment("a", 0, 5);
    let got = last_per_key(&[first, other.clone(), longer.clone()]);
    assert_eq!(got, vec![other, longer]);
}

#[test]
fn new_rows_count_distinct_messages_per_device_minute_and_roll_up_numbers_only() {
    let row = |device: &str, message_id: &str, seq, time_ms, value| Row {
        owner: "o".into(),
        device: device.into(),
        message_id: message_id.into(),
        seq,
        name: "n".into(),
        unit: None,
        time_ms,
        value,
        text: value.is_none().then(|| "t".into()),
        bool: None,
        data: None,
        sum: None,
    };
    let mut new = NewRows::default();
    for r in [
        row("d", "m1", 0, 1_000, Some(1.0)),
        row("d", "m1", 1, 50_000, None),
        row("d", "m2", 0, 20_000, Some(2.0)),
        row("d", "m2", 1, 60_000, Some(3.0)),
        row("e", "m1", 2, -1, None),
    ] {
        new.add(&r);
    }
    let devices: Vec<_> = new
        .devices
        .iter()
        .map(|((_, device, minute), d)| (device.as_str(), *minute, d.message_ids.len(), d.last_ms))
        .collect();
    assert_eq!(
        devices,
        vec![
            ("d", 0, 2, 50_000),
            ("d", 60_000, 1, 60_000),
            ("e", -60_000, 1, -1)
        ]
    );
    let rollup: Vec<_> = new
        .rollup
        .iter()
        .map(|((_, _, minute), a)| (*minute, a.count, a.sum))
        .collect();
    assert_eq!(rollup, vec![(0, 2, 3.0), (60_000, 1, 3.0)]);
}
