//! One test body, run against every engine: SQLite always (in a temporary directory),
//! PostgreSQL when `TRIBUTARY_TEST_POSTGRES` names a server (a fresh database per run, dropped
//! afterwards).

use std::error::Error as StdError;

use tributary_store::erasure::{Erased, Erasure, StoredKey};
use tributary_store::{
    ActivitySegment, ApiSession, AuditRecord, Consent, ConsentReceipt, DeadLetter, DecisionRecord,
    DeviceSeen, ListedDeadLetter, NewSession, Point, Query, Row, SessionBounds, Store, Summary,
    TokenHash, PURGE_BATCH, SESSION_TOUCH_MS, SUMMARY_MAX_NAMES,
};

type TestResult = Result<(), Box<dyn StdError + Send + Sync>>;

/// 1_699_999_200_000: an hour boundary, so minutes, 5 minutes and 90 s buckets all start here.
const T0: i64 = 472_222 * 3_600_000;

fn mid(n: u32) -> String {
    format!("{n:032x}")
}

fn num(owner: &str, msg: u32, seq: u32, name: &str, unit: &str, time_ms: i64, v: f64) -> Row {
    Row {
        owner: owner.into(),
        device: format!("{owner}-watch"),
        message_id: mid(msg),
        seq,
        name: name.into(),
        unit: Some(unit.into()),
        time_ms,
        value: Some(v),
        text: None,
        bool: None,
        data: None,
        sum: None,
    }
}

fn other(owner: &str, msg: u32, seq: u32, name: &str, time_ms: i64) -> Row {
    Row {
        owner: owner.into(),
        device: format!("{owner}-phone"),
        message_id: mid(msg),
        seq,
        name: name.into(),
        unit: None,
        time_ms,
        value: None,
        text: None,
        bool: None,
        data: None,
        sum: None,
    }
}

fn dataset() -> Vec<Row> {
    let hr = "heart_rate";
    let bpm = "beat/min";
    vec![
        // alice's heart rate, straddling minute and 5-minute edges
        num("alice", 1, 0, hr, bpm, T0, 60.0),
        num("alice", 1, 1, hr, bpm, T0 + 59_999, 70.0),
        num("alice", 2, 0, hr, bpm, T0 + 60_000, 80.0),
        num("alice", 2, 1, hr, bpm, T0 + 150_000, 100.0),
        num("alice", 3, 0, hr, bpm, T0 + 299_999, 90.0),
        num("alice", 3, 1, hr, bpm, T0 + 300_000, 50.0),
        // alice's steps, with a SenML sum
        Row {
            sum: Some(1234.5),
            ..num("alice", 4, 0, "steps", "count", T0 + 30_000, 10.0)
        },
        num("alice", 4, 1, "steps", "count", T0 + 90_000, 20.0),
        // alice's non-numeric values
        Row {
            text: Some("walking".into()),
            ..other("alice", 5, 0, "activity", T0 + 45_000)
        },
        Row {
            bool: Some(true),
            ..other("alice", 5, 1, "worn", T0 + 46_000)
        },
        Row {
            data: Some(vec![0, 1, 2, 255]),
            ..other("alice", 5, 2, "blob", T0 + 47_000)
        },
        // bob: same names, times and even the same message id as alice's: never mixed in
        num("bob", 1, 0, hr, bpm, T0 + 10_000, 200.0),
        num("bob", 6, 0, "steps", "count", T0 + 30_000, 1000.0),
        // carol, before the epoch: buckets floor, they do not truncate toward zero
        num("carol", 7, 0, hr, bpm, -1, 5.0),
        num("carol", 7, 1, hr, bpm, -60_001, 7.0),
    ]
}

fn query(owner: &str, from_ms: i64, to_ms: i64, names: &[&str], bucket_ms: Option<i64>) -> Query {
    Query {
        owner: owner.into(),
        from_ms,
        to_ms,
        names: names.iter().map(|n| n.to_string()).collect(),
        bucket_ms,
        limit: 1000,
    }
}

/// (name, time, count, avg, min, max, unit) of a bucketed point.
type Bucket = (String, i64, u64, f64, f64, f64, Option<String>);

fn buckets(points: &[Point]) -> Vec<Bucket> {
    points
        .iter()
        .map(|p| {
            assert_eq!(
                (&p.device, &p.text, &p.bool, &p.data),
                (&None, &None, &None, &None)
            );
            (
                p.name.clone(),
                p.time_ms,
                p.count,
                p.avg.expect("a bucket has an average"),
                p.min.expect("a bucket has a minimum"),
                p.max.expect("a bucket has a maximum"),
                p.unit.clone(),
            )
        })
        .collect()
}

fn b(name: &str, time_ms: i64, count: u64, avg: f64, min: f64, max: f64) -> Bucket {
    let unit = match name {
        "steps" => "count",
        _ => "beat/min",
    };
    (
        name.into(),
        time_ms,
        count,
        avg,
        min,
        max,
        Some(unit.into()),
    )
}

fn raw(row: &Row) -> Point {
    Point {
        name: row.name.clone(),
        unit: row.unit.clone(),
        time_ms: row.time_ms,
        avg: row.value,
        min: row.value,
        max: row.value,
        count: 1,
        device: Some(row.device.clone()),
        text: row.text.clone(),
        bool: row.bool,
        data: row.data.clone(),
    }
}

/// The body every engine runs.
async fn store_contract(store: &Store) -> TestResult {
    let rows = dataset();
    let (count0, sum0) = store.count_and_checksum().await?;
    assert_eq!(count0, 0, "{}: a fresh store is empty", store.engine());

    // ---- insert, and insert again ----
    assert_eq!(store.insert(&rows).await?, rows.len());
    let (count, sum) = store.count_and_checksum().await?;
    assert_eq!(count, rows.len() as u64);
    assert_ne!(sum, sum0);
    assert_eq!(store.insert(&rows).await?, 0, "re-inserting adds nothing");
    assert_eq!(store.insert(&rows[3..5]).await?, 0);
    assert_eq!(store.count_and_checksum().await?, (count, sum));

    // ---- raw queries ----
    let alice = |names: &[&str]| query("alice", T0, T0 + 301_000, names, None);
    let by = |name: &str| -> Vec<Point> {
        rows.iter()
            .filter(|r| r.owner == "alice" && r.name == name)
            .map(raw)
            .collect()
    };
    let mut expected = Vec::new();
    for name in ["activity", "blob", "heart_rate", "steps", "worn"] {
        expected.extend(by(name));
    }
    assert_eq!(store.query(&alice(&[])).await?, expected);
    assert_eq!(
        store.query(&alice(&["worn", "steps"])).await?,
        [by("steps"), by("worn")].concat()
    );
    let mut limited = alice(&["heart_rate"]);
    limited.limit = 3;
    assert_eq!(store.query(&limited).await?, by("heart_rate")[..3].to_vec());
    // the range is [from, to): the row at T0 + 300_000 is out, T0 + 299_999 in
    let hr = store
        .query(&query("alice", T0 + 1, T0 + 300_000, &["heart_rate"], None))
        .await?;
    assert_eq!(hr, by("heart_rate")[1..5].to_vec());
    let bob = store
        .query(&query("bob", T0, T0 + 301_000, &[], None))
        .await?;
    let bobs: Vec<Point> = rows.iter().filter(|r| r.owner == "bob").map(raw).collect();
    assert_eq!(bob, [bobs[0].clone(), bobs[1].clone()].to_vec());
    assert!(store
        .query(&query("nobody", T0, T0 + 301_000, &[], None))
        .await?
        .is_empty());

    // ---- bucketed queries ----
    // 1 minute, aligned range (from the rollup); non-numeric rows make no buckets
    let minute = store
        .query(&query("alice", T0, T0 + 360_000, &[], Some(60_000)))
        .await?;
    assert_eq!(
        buckets(&minute),
        vec![
            b("heart_rate", T0, 2, 65.0, 60.0, 70.0),
            b("heart_rate", T0 + 60_000, 1, 80.0, 80.0, 80.0),
            b("heart_rate", T0 + 120_000, 1, 100.0, 100.0, 100.0),
            b("heart_rate", T0 + 240_000, 1, 90.0, 90.0, 90.0),
            b("heart_rate", T0 + 300_000, 1, 50.0, 50.0, 50.0),
            b("steps", T0, 1, 10.0, 10.0, 10.0),
            b("steps", T0 + 60_000, 1, 20.0, 20.0, 20.0),
        ]
    );
    let mut two = query("alice", T0, T0 + 360_000, &[], Some(60_000));
    two.limit = 2;
    assert_eq!(store.query(&two).await?, minute[..2].to_vec());
    // 5 minutes, aligned range
    assert_eq!(
        buckets(
            &store
                .query(&query("alice", T0, T0 + 600_000, &[], Some(300_000)))
                .await?
        ),
        vec![
            b("heart_rate", T0, 5, 80.0, 60.0, 100.0),
            b("heart_rate", T0 + 300_000, 1, 50.0, 50.0, 50.0),
            b("steps", T0, 2, 15.0, 10.0, 20.0),
        ]
    );
    // 5 minutes, a range with partial minutes at both ends (rollup + rows)
    assert_eq!(
        buckets(
            &store
                .query(&query(
                    "alice",
                    T0 + 59_999,
                    T0 + 300_001,
                    &[],
                    Some(300_000)
                ))
                .await?
        ),
        vec![
            b("heart_rate", T0, 4, 85.0, 70.0, 100.0),
            b("heart_rate", T0 + 300_000, 1, 50.0, 50.0, 50.0),
            b("steps", T0, 1, 20.0, 20.0, 20.0),
        ]
    );
    // 90 s: not a multiple of a minute (rows only); 299_999 and 300_000 share a bucket
    assert_eq!(
        buckets(
            &store
                .query(&query(
                    "alice",
                    T0,
                    T0 + 360_000,
                    &["heart_rate"],
                    Some(90_000)
                ))
                .await?
        ),
        vec![
            b("heart_rate", T0, 3, 70.0, 60.0, 80.0),
            b("heart_rate", T0 + 90_000, 1, 100.0, 100.0, 100.0),
            b("heart_rate", T0 + 270_000, 2, 70.0, 50.0, 90.0),
        ]
    );
    // two owners never mix, in buckets either
    assert_eq!(
        buckets(
            &store
                .query(&query("bob", T0, T0 + 600_000, &[], Some(300_000)))
                .await?
        ),
        vec![
            b("heart_rate", T0, 1, 200.0, 200.0, 200.0),
            b("steps", T0, 1, 1000.0, 1000.0, 1000.0),
        ]
    );
    // before the epoch
    assert_eq!(
        buckets(
            &store
                .query(&query("carol", -120_000, 0, &[], Some(60_000)))
                .await?
        ),
        vec![
            b("heart_rate", -120_000, 1, 7.0, 7.0, 7.0),
            b("heart_rate", -60_000, 1, 5.0, 5.0, 5.0),
        ]
    );
    assert_eq!(
        buckets(
            &store
                .query(&query("carol", -120_000, 0, &[], Some(90_000)))
                .await?
        ),
        vec![b("heart_rate", -90_000, 2, 6.0, 5.0, 7.0)]
    );
    assert!(store
        .query(&query("alice", T0, T0 + 1, &[], Some(0)))
        .await
        .is_err());

    // ---- re-insert with something new: only the new row counts, in the rollup too ----
    let new = num("alice", 8, 0, "heart_rate", "beat/min", T0 + 1, 61.0);
    let batch = vec![rows[0].clone(), new.clone(), new.clone(), rows[1].clone()];
    assert_eq!(
        store.insert(&batch).await?,
        1,
        "a row twice in one batch is new once"
    );
    assert_eq!(
        buckets(
            &store
                .query(&query(
                    "alice",
                    T0,
                    T0 + 60_000,
                    &["heart_rate"],
                    Some(60_000)
                ))
                .await?
        ),
        vec![b("heart_rate", T0, 3, 191.0 / 3.0, 60.0, 70.0)]
    );
    let (count2, sum2) = store.count_and_checksum().await?;
    assert_eq!(count2, count + 1);
    assert_ne!(sum2, sum);

    // ---- dead letters ----
    let letter = DeadLetter {
        owner: "alice".into(),
        device: "alice-watch".into(),
        message_id: mid(100),
        topic: "alice/watch/senml".into(),
        received_ms: T0,
        reason: "not SenML: expected an array".into(),
        payload: b"{\"oops\":1}".to_vec(),
    };
    let later = DeadLetter {
        message_id: mid(101),
        received_ms: T0 + 1,
        payload: vec![0xff, 0],
        ..letter.clone()
    };
    let bobs_letter = DeadLetter {
        owner: "bob".into(),
        ..letter.clone()
    };
    store.dead_letter(&letter).await?;
    store.dead_letter(&later).await?;
    store.dead_letter(&bobs_letter).await?;
    let again = DeadLetter {
        reason: "another reason".into(),
        ..letter.clone()
    };
    store.dead_letter(&again).await?;
    let whole = |letters: Vec<ListedDeadLetter>| -> Vec<DeadLetter> {
        letters.into_iter().map(|l| l.letter).collect()
    };
    assert_eq!(
        whole(store.dead_letters("alice", 10, usize::MAX).await?),
        vec![later.clone(), letter.clone()]
    );
    assert_eq!(
        whole(store.dead_letters("alice", 1, usize::MAX).await?),
        vec![later.clone()]
    );
    assert_eq!(
        whole(store.dead_letters("bob", 10, usize::MAX).await?),
        vec![bobs_letter]
    );
    assert!(store
        .dead_letters("carol", 10, usize::MAX)
        .await?
        .is_empty());
    // A listing cuts each payload in the database and says how long it was.
    let cut = store.dead_letters("alice", 10, 4).await?;
    let cut: Vec<(&[u8], u64)> = cut
        .iter()
        .map(|l| (l.letter.payload.as_slice(), l.payload_bytes))
        .collect();
    assert_eq!(cut, [(&[0xff, 0][..], 2), (&b"{\"oo"[..], 10)]);

    // ---- export, paged ----
    let mut all: Vec<Row> = rows
        .iter()
        .chain([&new])
        .filter(|r| r.owner == "alice")
        .cloned()
        .collect();
    all.sort_by(|a, b| (a.time_ms, &a.message_id, a.seq).cmp(&(b.time_ms, &b.message_id, b.seq)));
    let mut exported = Vec::new();
    let mut after = None;
    let mut pages = Vec::new();
    loop {
        let page = store.export("alice", after.clone(), 4).await?;
        pages.push(page.len());
        if let Some(last) = page.last() {
            after = Some((last.time_ms, last.message_id.clone(), last.seq));
        }
        let done = page.len() < 4;
        exported.extend(page);
        if done {
            break;
        }
    }
    assert_eq!(pages, vec![4, 4, 4, 0], "12 rows in pages of 4");
    assert_eq!(exported, all, "every field round-trips, in time order");
    assert_eq!(store.export("bob", None, 1).await?, vec![rows[11].clone()]);
    Ok(())
}

fn segment(
    owner: &str,
    device: &str,
    start_ms: i64,
    end_ms: i64,
    activity: &str,
) -> ActivitySegment {
    ActivitySegment {
        owner: owner.into(),
        device: device.into(),
        start_ms,
        end_ms,
        activity: activity.into(),
        confidence: 0.5,
        windows: 1,
        model_version: "har-v1".into(),
    }
}

/// The activity tables, on every engine.
async fn activity_contract(store: &Store) -> TestResult {
    const DAY: i64 = 86_400_000;
    assert!(store
        .activity_timeline("alice", T0, T0 + DAY, 10)
        .await?
        .is_empty());

    // ---- upsert: the same key again replaces, so the model can extend a segment ----
    let short = segment("alice", "watch", T0, T0 + 60_000, "walking");
    store.upsert_activity(&[short]).await?;
    let walk = ActivitySegment {
        end_ms: T0 + 120_000,
        confidence: 0.75,
        windows: 4,
        model_version: "har-v2".into(),
        ..segment("alice", "watch", T0, 0, "walking")
    };
    store.upsert_activity(std::slice::from_ref(&walk)).await?;
    assert_eq!(
        store.activity_timeline("alice", T0, T0 + DAY, 10).await?,
        vec![walk.clone()],
        "one row, with the later values"
    );

    // Twice in one batch: the last one is stored.
    let sit_early = segment("alice", "watch", T0 + 120_000, T0 + 150_000, "sitting");
    let sit = segment("alice", "watch", T0 + 120_000, T0 + 180_000, "sitting");
    let band = segment("alice", "band", T0, T0 + 30_000, "standing");
    let phone = segment("alice", "phone", T0 + 30_000, T0 + 90_000, "lying");
    // Ten days either side of T0: found by any query in between, however far its start.
    let ring = segment("alice", "ring", T0 - 10 * DAY, T0 + 10 * DAY, "sitting");
    let bobs = segment("bob", "watch", T0, T0 + 180_000, "upstairs");
    store
        .upsert_activity(&[
            sit_early,
            phone.clone(),
            sit.clone(),
            band.clone(),
            ring.clone(),
            bobs.clone(),
        ])
        .await?;
    store.upsert_activity(&[]).await?;

    // ---- overlap: start_ms < to AND end_ms > from, in (start_ms, device) order ----
    let timeline = |from: i64, to: i64| store.activity_timeline("alice", from, to, 100);
    assert_eq!(
        timeline(T0 - DAY, T0 + DAY).await?,
        vec![
            ring.clone(),
            band.clone(),
            walk.clone(),
            phone.clone(),
            sit.clone()
        ]
    );
    // A segment ending at `from` or starting at `to` does not overlap.
    assert_eq!(
        timeline(T0 + 120_000, T0 + 180_000).await?,
        vec![ring.clone(), sit.clone()]
    );
    assert_eq!(timeline(T0 - 60_000, T0).await?, vec![ring.clone()]);
    assert_eq!(
        timeline(T0 + 119_999, T0 + 120_001).await?,
        vec![ring.clone(), walk.clone(), sit.clone()]
    );
    assert_eq!(
        timeline(T0 + 10 * DAY, T0 + 11 * DAY).await?,
        Vec::<ActivitySegment>::new()
    );
    assert_eq!(
        store
            .activity_timeline("alice", T0 - DAY, T0 + DAY, 2)
            .await?,
        vec![ring.clone(), band.clone()]
    );
    assert!(store
        .activity_timeline("alice", T0 + 1, T0, 10)
        .await?
        .is_empty());
    assert!(store
        .activity_timeline("alice", T0, T0 + DAY, 0)
        .await?
        .is_empty());

    // ---- owners never mix ----
    assert_eq!(
        store
            .activity_timeline("bob", T0 - DAY, T0 + DAY, 100)
            .await?,
        vec![bobs]
    );
    assert!(store
        .activity_timeline("carol", T0 - DAY, T0 + DAY, 100)
        .await?
        .is_empty());

    // ---- an invalid segment fails the whole batch, before anything is written ----
    let new = segment("alice", "watch", T0 + 200_000, T0 + 210_000, "walking");
    let bad = ActivitySegment {
        confidence: f64::NAN,
        ..segment("alice", "watch", T0 + 300_000, T0 + 310_000, "walking")
    };
    let e = store
        .upsert_activity(&[new, bad])
        .await
        .err()
        .ok_or("a NaN confidence is refused")?;
    assert!(
        matches!(e, tributary_store::Error::InvalidActivity { .. }),
        "{e}"
    );
    let backwards = segment("alice", "watch", T0 + 300_000, T0 + 300_000, "walking");
    assert!(store.upsert_activity(&[backwards]).await.is_err());
    assert_eq!(timeline(T0 + 190_000, T0 + DAY).await?, vec![ring]);

    // ---- settings: on unless switched off ----
    assert!(store.activity_enabled("alice").await?);
    assert!(store.activity_disabled_owners().await?.is_empty());
    store.set_activity_enabled("alice", false).await?;
    store.set_activity_enabled("alice", false).await?;
    store.set_activity_enabled("bob", true).await?;
    assert!(!store.activity_enabled("alice").await?);
    assert!(store.activity_enabled("bob").await?);
    assert!(store.activity_enabled("carol").await?);
    assert_eq!(
        store.activity_disabled_owners().await?,
        ["alice".to_owned()].into_iter().collect()
    );
    // Switching off keeps what is stored.
    assert_eq!(timeline(T0, T0 + 1).await?.len(), 3);
    store.set_activity_enabled("alice", true).await?;
    assert!(store.activity_enabled("alice").await?);
    assert!(store.activity_disabled_owners().await?.is_empty());
    assert!(store.set_activity_enabled("a\0b", false).await.is_err());
    Ok(())
}

/// Erasure: keys, device and range erasures (rows gone, per-minute tables recomputed from what
/// remains), the whole account, bad input, and nobody else's rows touched.
async fn erasure_contract(store: &Store) -> TestResult {
    let bpm = "beat/min";
    let zora = |device: &str, msg: u32, time_ms: i64, v: f64| Row {
        device: device.into(),
        ..num("zora", msg, 0, "heart_rate", bpm, time_ms, v)
    };
    // Two devices, three minutes; watch-1's second value shares a minute with watch-2's.
    store
        .insert(&[
            zora("watch-1", 9001, T0, 60.0),
            zora("watch-1", 9002, T0 + 60_000, 70.0),
            zora("watch-2", 9003, T0 + 61_000, 90.0),
            zora("watch-2", 9004, T0 + 120_000, 80.0),
        ])
        .await?;
    let letter = |device: &str, msg: u32, received_ms: i64| DeadLetter {
        owner: "zora".into(),
        device: device.into(),
        message_id: mid(msg),
        topic: "t".into(),
        received_ms,
        reason: "bad".into(),
        payload: b"{".to_vec(),
    };
    store.dead_letter(&letter("watch-1", 9101, T0)).await?;
    store.dead_letter(&letter("watch-2", 9102, T0)).await?;
    store
        .upsert_activity(&[segment("zora", "watch-1", T0, T0 + 30_000, "walking")])
        .await?;
    let others = store.count_and_checksum().await?;
    let others = (others.0 - 4, others.1);

    // Keys: the first creator wins, a second one gets the first's.
    assert_eq!(store.owner_key("zora").await?, None);
    let first = StoredKey {
        key_id: u64::MAX - 1, // the bit pattern survives the signed column
        wrapped: Some(vec![1; 61]),
    };
    let second = StoredKey {
        key_id: 7,
        wrapped: Some(vec![2; 61]),
    };
    assert_eq!(store.create_owner_key("zora", &first).await?, first);
    assert_eq!(store.create_owner_key("zora", &second).await?, first);
    assert_eq!(store.owner_key("zora").await?, Some(first.clone()));

    // Bad input harms nothing.
    let inverted = Erasure {
        owner: "zora".into(),
        device: None,
        from_ms: T0 + 1,
        to_ms: T0,
    };
    let err = store.erase(&inverted).await.unwrap_err();
    assert!(err.to_string().contains("must be before"), "{err}");
    let empty_device = Erasure {
        device: Some(String::new()),
        to_ms: T0 + 2,
        ..inverted.clone()
    };
    assert!(store.erase(&empty_device).await.is_err());

    // watch-1, all of its time: its rows, letter and segment go, watch-2's stay.
    let device = Erasure {
        owner: "zora".into(),
        device: Some("watch-1".into()),
        from_ms: T0 - 3_600_000,
        to_ms: T0 + 3_600_000,
    };
    let erased = store.erase(&device).await?;
    assert_eq!(
        (
            erased.measurements,
            erased.dead_letters,
            erased.activity_segments
        ),
        (2, 1, 1)
    );
    let minutes = store
        .query(&query(
            "zora",
            T0,
            T0 + 180_000,
            &["heart_rate"],
            Some(60_000),
        ))
        .await?;
    assert_eq!(
        buckets(&minutes),
        vec![
            b("heart_rate", T0 + 60_000, 1, 90.0, 90.0, 90.0),
            b("heart_rate", T0 + 120_000, 1, 80.0, 80.0, 80.0),
        ],
        "the rollup of the shared minute is recomputed from watch-2's row alone"
    );
    let devices = store.devices_seen("zora", T0 + 180_000).await?;
    assert_eq!(devices, vec![seen("watch-2", T0 + 120_000, 2)]);
    assert_eq!(store.dead_letters("zora", 10, 0).await?.len(), 1);
    assert!(store
        .activity_timeline("zora", T0, T0 + 1, 10)
        .await?
        .is_empty());

    // A time range over every device: the second minute only.
    let range = Erasure {
        owner: "zora".into(),
        device: None,
        from_ms: T0 + 60_000,
        to_ms: T0 + 120_000,
    };
    assert_eq!(store.erase(&range).await?.measurements, 1);
    let left = store
        .query(&query("zora", T0, T0 + 180_000, &[], None))
        .await?;
    assert_eq!(
        left.iter().map(|p| p.time_ms).collect::<Vec<_>>(),
        vec![T0 + 120_000]
    );

    // The tombstones, in order, for the sinks.
    let stones = store.tombstones(0, 100).await?;
    let mine: Vec<&Erasure> = stones
        .iter()
        .map(|t| &t.erasure)
        .filter(|e| e.owner == "zora")
        .collect();
    assert_eq!(mine, vec![&device, &range]);
    assert!(stones.windows(2).all(|w| w[0].id < w[1].id));
    let last = stones.last().map_or(0, |t| t.id);
    assert!(store.tombstones(last, 100).await?.is_empty());
    assert!(range.covers("zora", "watch-9", T0 + 60_000));
    assert!(!range.covers("zora", "watch-9", T0 + 120_000));
    assert!(!device.covers("zora", "watch-2", T0));

    // The whole account: key destroyed, every row and session gone, one tombstone left.
    let session = login("zora", 240, T0, 3_600_000);
    store.create_session(&session, BOUNDS).await?;
    let erased = store.erase_owner("zora").await?;
    assert_eq!(
        (erased.measurements, erased.dead_letters, erased.sessions),
        (1, 1, 1)
    );
    assert_eq!(
        store.owner_key("zora").await?,
        Some(StoredKey {
            key_id: first.key_id,
            wrapped: None
        })
    );
    assert!(store
        .query(&query("zora", T0, T0 + 180_000, &[], None))
        .await?
        .is_empty());
    assert!(store.devices_seen("zora", T0 + 180_000).await?.is_empty());
    assert!(store.summary("zora").await?.is_empty());
    assert_eq!(store.session(hash(240), T0 + 1).await?, None);
    let stones = store.tombstones(0, 100).await?;
    let mine: Vec<&Erasure> = stones
        .iter()
        .map(|t| &t.erasure)
        .filter(|e| e.owner == "zora")
        .collect();
    assert_eq!(mine, vec![&Erasure::everything("zora")]);
    // A new account of the same id gets a new key.
    assert_eq!(store.create_owner_key("zora", &second).await?, second);
    // An owner never seen can be erased too (nothing to delete, the key marked destroyed).
    assert_eq!(store.erase_owner("nobody").await?, Erased::default());
    assert_eq!(
        store.owner_key("nobody").await?.and_then(|k| k.wrapped),
        None
    );

    // Nobody else's rows changed.
    assert_eq!(
        store.count_and_checksum().await?,
        others_after(store, others).await?
    );
    Ok(())
}

/// The count and checksum of everything, which must equal `before` (taken without zora's rows).
async fn others_after(
    store: &Store,
    before: (u64, u64),
) -> Result<(u64, u64), Box<dyn StdError + Send + Sync>> {
    let now = store.count_and_checksum().await?;
    assert_eq!(now.0, before.0, "only zora's rows were deleted");
    Ok(now)
}

/// `owner`'s row of message `msg` from `device`: numeric when `value` is given, text otherwise.
fn from(owner: &str, device: &str, msg: u32, seq: u32, time_ms: i64, value: Option<f64>) -> Row {
    Row {
        device: device.into(),
        value,
        text: value.is_none().then(|| "a note".into()),
        ..other(owner, msg, seq, "note", time_ms)
    }
}

/// The dashboard's summary: latest row and count per numeric name, on every engine.
async fn summary_contract(store: &Store) -> TestResult {
    assert!(store.summary("dana").await?.is_empty(), "an empty owner");
    let hr = "heart_rate";
    let bpm = "beat/min";
    let rows = vec![
        num("dana", 200, 0, hr, bpm, T0, 60.0),
        num("dana", 200, 1, "temperature", "Cel", T0, 36.5),
        num("dana", 201, 0, hr, bpm, T0 + 120_000, 75.0),
        // The same time as message 201's: the greatest (message_id, seq) is the latest.
        Row {
            device: "dana-band".into(),
            ..num("dana", 202, 0, hr, bpm, T0 + 120_000, 80.0)
        },
        Row {
            device: "dana-band".into(),
            ..num("dana", 202, 1, hr, bpm, T0 + 120_000, 81.0)
        },
        // Older than the latest, though stored after it.
        num("dana", 203, 0, hr, bpm, T0 + 60_000, 99.0),
        // The latest temperature is text: no latest value, and it is not counted.
        Row {
            text: Some("fever".into()),
            ..other("dana", 204, 0, "temperature", T0 + 30_000)
        },
        // No numeric values at all: not in the summary.
        Row {
            text: Some("walking".into()),
            ..other("dana", 205, 0, "activity", T0 + 500_000)
        },
        // Another owner, newer and with another name: never in dana's summary.
        num("erin", 206, 0, hr, bpm, T0 + 900_000, 200.0),
        num("erin", 206, 1, "pressure", "Pa", T0, 1.0),
    ];
    assert_eq!(store.insert(&rows).await?, rows.len());
    let dana = vec![
        Summary {
            name: hr.into(),
            unit: Some(bpm.into()),
            latest_value: Some(81.0),
            latest_time_ms: T0 + 120_000,
            device: "dana-band".into(),
            count: 5,
        },
        Summary {
            name: "temperature".into(),
            unit: None,
            latest_value: None,
            latest_time_ms: T0 + 30_000,
            device: "dana-phone".into(),
            count: 1,
        },
    ];
    assert_eq!(store.summary("dana").await?, dana);
    // Re-inserting changes no count.
    assert_eq!(store.insert(&rows).await?, 0);
    assert_eq!(store.summary("dana").await?, dana);
    assert_eq!(
        store.summary("erin").await?,
        vec![
            Summary {
                name: hr.into(),
                unit: Some(bpm.into()),
                latest_value: Some(200.0),
                latest_time_ms: T0 + 900_000,
                device: "erin-watch".into(),
                count: 1,
            },
            Summary {
                name: "pressure".into(),
                unit: Some("Pa".into()),
                latest_value: Some(1.0),
                latest_time_ms: T0,
                device: "erin-watch".into(),
                count: 1,
            },
        ]
    );

    // ---- bounded: the first SUMMARY_MAX_NAMES names ----
    let many: Vec<Row> = (0..=SUMMARY_MAX_NAMES as u32)
        .map(|i| num("fred", 207, i, &format!("n{i:04}"), "", T0, f64::from(i)))
        .collect();
    store.insert(&many).await?;
    let summary = store.summary("fred").await?;
    assert_eq!(summary.len(), SUMMARY_MAX_NAMES);
    assert_eq!(summary[0].name, "n0000");
    assert_eq!(summary[SUMMARY_MAX_NAMES - 1].name, "n0999");
    Ok(())
}

fn seen(device: &str, last_ms: i64, messages_last_hour: u64) -> DeviceSeen {
    DeviceSeen {
        device: device.into(),
        last_ms,
        messages_last_hour,
    }
}

/// Per-device activity (device_minute): last seen and messages in the last hour, on every
/// engine.
async fn devices_contract(store: &Store) -> TestResult {
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 86_400_000;
    let now = T0 + HOUR; // the hour's minutes: T0 ..= T0 + HOUR
    assert!(store.devices_seen("gina", now).await?.is_empty());
    let g = |device: &str, msg, seq, time_ms, value| from("gina", device, msg, seq, time_ms, value);
    let rows = vec![
        // Two messages (three rows, one not numeric) in the minute T0: 2.
        g("watch", 300, 0, T0 + 1_000, Some(1.0)),
        g("watch", 300, 1, T0 + 2_000, None),
        g("watch", 301, 0, T0 + 30_000, Some(2.0)),
        // The minute before the hour: not counted.
        g("watch", 302, 0, T0 - 1, Some(3.0)),
        // One message over two minutes: once in each.
        g("watch", 305, 0, T0 + 3_000_000, Some(4.0)),
        g("watch", 305, 1, T0 + 3_060_000, Some(5.0)),
        // The minute of `now`, its last millisecond: counted.
        g("band", 303, 0, T0 + HOUR + 59_999, Some(6.0)),
        // Only a day ago: listed, with nothing in the last hour.
        g("ring", 304, 0, T0 - DAY, Some(7.0)),
        // Other owners, same device names and times.
        from("hank", "watch", 300, 0, T0 + 1_000, Some(1.0)),
        from("hank", "watch", 310, 0, T0 + HOUR, Some(1.0)),
    ];
    assert_eq!(store.insert(&rows).await?, rows.len());
    let gina = vec![
        seen("band", T0 + HOUR + 59_999, 1),
        seen("ring", T0 - DAY, 0),
        seen("watch", T0 + 3_060_000, 4),
    ];
    assert_eq!(store.devices_seen("gina", now).await?, gina);
    assert_eq!(
        store.devices_seen("hank", now).await?,
        vec![seen("watch", T0 + HOUR, 2)]
    );
    assert!(store.devices_seen("nobody", now).await?.is_empty());

    // ---- re-inserting the same rows counts nothing twice ----
    assert_eq!(store.insert(&rows).await?, 0);
    assert_eq!(store.devices_seen("gina", now).await?, gina);
    // Old rows beside a new message: only the new one counts.
    let new = g("watch", 306, 0, T0 + 40_000, None);
    assert_eq!(
        store
            .insert(&[rows[0].clone(), new.clone(), new, rows[2].clone()])
            .await?,
        1
    );
    let gina = vec![
        gina[0].clone(),
        gina[1].clone(),
        seen("watch", T0 + 3_060_000, 5),
    ];
    assert_eq!(store.devices_seen("gina", now).await?, gina);

    // ---- the hour moves with now ----
    // A minute later the minute T0 is out (3 messages), the minute after now's is in.
    assert_eq!(
        store.devices_seen("gina", now + 60_000).await?,
        vec![
            seen("band", T0 + HOUR + 59_999, 1),
            seen("ring", T0 - DAY, 0),
            seen("watch", T0 + 3_060_000, 2),
        ]
    );
    // Inside a minute: the minute after now's is in (band, with now a minute earlier).
    assert_eq!(
        store.devices_seen("gina", now - 30_000).await?[0],
        seen("band", T0 + HOUR + 59_999, 1)
    );
    assert_eq!(
        store.devices_seen("gina", now - 60_000).await?[0],
        seen("band", T0 + HOUR + 59_999, 0)
    );
    // Last seen does not depend on now.
    assert_eq!(
        store.devices_seen("gina", T0 + 10 * DAY).await?,
        vec![
            seen("band", T0 + HOUR + 59_999, 0),
            seen("ring", T0 - DAY, 0),
            seen("watch", T0 + 3_060_000, 0),
        ]
    );
    assert_eq!(store.devices_seen("gina", i64::MIN).await?.len(), 3);
    assert_eq!(store.devices_seen("gina", i64::MAX).await?.len(), 3);
    Ok(())
}

/// A store at schema version 2 (before device_minute) holding rows, as `sql` for either engine:
/// migration 0003 must fill device_minute from them.
fn version_2_with_rows(init: &str, activity: &str) -> String {
    format!(
        "{init}
        {activity}
        CREATE TABLE schema_migrations (
            version    BIGINT PRIMARY KEY,
            name       TEXT   NOT NULL,
            applied_ms BIGINT NOT NULL
        );
        INSERT INTO schema_migrations (version, name, applied_ms)
            VALUES (1, 'init', 0), (2, 'activity', 0);
        INSERT INTO measurements (owner, device, message_id, seq, name, time_ms, value, text)
        VALUES ('olga', 'watch', 'm1', 0, 'hr', {t1}, 61, NULL),
               ('olga', 'watch', 'm1', 1, 'hr', {t2}, 62, NULL),
               ('olga', 'watch', 'm2', 0, 'note', {t3}, NULL, 'hi'),
               ('olga', 'band', 'm3', 0, 'hr', {t4}, 70, NULL),
               ('olga', 'band', 'm4', 0, 'hr', -1, 71, NULL),
               ('pia', 'watch', 'm1', 0, 'hr', {t1}, 61, NULL);",
        t1 = T0 + 1_000,
        t2 = T0 + 2_000,
        t3 = T0 + 3_000,
        t4 = T0 - 60_001,
    )
}

fn hash(n: u8) -> TokenHash {
    TokenHash([n; 32])
}

fn login(owner: &str, n: u8, now: i64, lifetime: i64) -> ApiSession {
    ApiSession {
        token_hash: hash(n),
        owner: owner.into(),
        created_ms: now,
        last_used_ms: now,
        expires_ms: now + lifetime,
    }
}

const BOUNDS: SessionBounds = SessionBounds {
    per_owner: 2,
    total: 1_000,
};

fn created(ended: &[u8]) -> NewSession {
    NewSession::Created {
        ended: ended.iter().map(|&n| hash(n)).collect(),
    }
}

/// Login sessions: lookup by hash, expiry, logout, the per-owner and total bounds, purging.
async fn sessions_contract(store: &Store) -> TestResult {
    const DAY: i64 = 86_400_000;
    let t = T0;
    assert_eq!(store.session(hash(1), t).await?, None);
    let ann1 = login("ann", 1, t, DAY);
    assert_eq!(store.create_session(&ann1, BOUNDS).await?, created(&[]));
    assert_eq!(store.session(hash(1), t + 1).await?, Some(ann1.clone()));

    // A third login of ann ends her oldest session only; bob's are his own.
    let ann2 = login("ann", 2, t + 10, DAY);
    let bob = login("bob", 9, t + 15, DAY);
    let ann3 = login("ann", 3, t + 20, DAY);
    assert_eq!(store.create_session(&ann2, BOUNDS).await?, created(&[]));
    assert_eq!(store.create_session(&bob, BOUNDS).await?, created(&[]));
    assert_eq!(store.create_session(&ann3, BOUNDS).await?, created(&[1]));
    assert_eq!(store.session(hash(1), t + 21).await?, None);
    assert_eq!(store.session(hash(2), t + 21).await?, Some(ann2.clone()));
    assert_eq!(store.session_count("ann", t + 21).await?, 2);
    assert_eq!(store.session_count("bob", t + 21).await?, 1);

    // last_used_ms is refreshed once it is SESSION_TOUCH_MS old, and the expiry stays.
    let later = t + 10 + SESSION_TOUCH_MS;
    assert_eq!(store.session(hash(2), later).await?, Some(ann2.clone()));
    let touched = store
        .session(hash(2), later + 1)
        .await?
        .ok_or("ann2 live")?;
    assert_eq!(
        (touched.last_used_ms, touched.expires_ms),
        (later, ann2.expires_ms)
    );

    // Logout: true once, then the session is gone.
    assert!(store.end_session(hash(3), t + 30).await?);
    assert!(!store.end_session(hash(3), t + 30).await?);
    assert_eq!(store.session(hash(3), t + 30).await?, None);
    assert_eq!(store.session_count("ann", t + 30).await?, 1);

    // Expired at expires_ms exactly; a lookup then deletes it (and a logout says "not live").
    assert_eq!(store.session(hash(2), ann2.expires_ms).await?, None);
    assert!(!store.end_session(hash(2), ann2.expires_ms).await?);
    assert!(!store.end_session(hash(9), bob.expires_ms).await?);
    assert_eq!(store.session_count("bob", t).await?, 0);

    // An owner's expired sessions do not count against, nor get reported by, the bound.
    let now = t + 2 * DAY;
    for n in 10..13 {
        assert_eq!(
            store
                .create_session(&login("cat", n, now + i64::from(n), 5), BOUNDS)
                .await?,
            created(if n == 12 { &[10] } else { &[] })
        );
    }
    let after = now + 100;
    assert_eq!(
        store
            .create_session(&login("cat", 13, after, DAY), BOUNDS)
            .await?,
        created(&[])
    );
    assert_eq!(store.session_count("cat", after).await?, 1);

    // The total bound: expired sessions make room, live ones do not.
    let full = SessionBounds {
        per_owner: 10,
        total: 3,
    };
    let later = after + 10 * DAY; // every session so far has expired
    let mut n = 20;
    for owner in ["dan", "eve", "fay"] {
        assert_eq!(
            store
                .create_session(&login(owner, n, later, DAY), full)
                .await?,
            created(&[])
        );
        n += 1;
    }
    assert_eq!(
        store
            .create_session(&login("gus", n, later, DAY), full)
            .await?,
        NewSession::Full
    );
    assert_eq!(store.session(hash(n), later).await?, None);

    // Purging is bounded and takes the longest expired first. (Each login above purged the
    // sessions expired by then: the table holds hal's alone.)
    let gone = later + 2 * DAY;
    let batch = u8::try_from(PURGE_BATCH.min(50))?;
    let many = SessionBounds {
        per_owner: 1_000,
        ..BOUNDS
    };
    for i in 0..batch {
        // Made later, expiring sooner: i = batch - 1 expires first.
        let s = login("hal", 100 + i, gone - 10 - i64::from(i), 1);
        assert_eq!(store.create_session(&s, many).await?, created(&[]));
    }
    assert_eq!(store.purge_sessions(gone, 2).await?, 2);
    let before = gone - 1_000;
    assert_eq!(store.session(hash(100 + batch - 1), before).await?, None);
    assert_eq!(store.session(hash(100 + batch - 2), before).await?, None);
    assert!(store
        .session(hash(100 + batch - 3), before)
        .await?
        .is_some());
    assert_eq!(
        store.purge_sessions(gone, usize::MAX).await?,
        u64::from(batch) - 2
    );
    assert_eq!(store.purge_sessions(gone, usize::MAX).await?, 0);

    // The owner is stored as given; a NUL is refused on both engines.
    let bad = login("a\0b", 200, gone, DAY);
    assert!(store.create_session(&bad, BOUNDS).await.is_err());
    Ok(())
}

/// After migration 0003 on a store that had rows: their devices are seen.
async fn backfill_contract(store: &Store) -> TestResult {
    let now = T0 + 60_000; // minutes T0 - 59 min ..= T0 + 1 min
    let olga = vec![seen("band", T0 - 60_001, 1), seen("watch", T0 + 3_000, 2)];
    assert_eq!(store.devices_seen("olga", now).await?, olga);
    assert_eq!(
        store.devices_seen("pia", now).await?,
        vec![seen("watch", T0 + 1_000, 1)]
    );
    // The backfilled rows are already stored: inserting them again adds nothing.
    let again = Row {
        device: "watch".into(),
        message_id: "m1".into(),
        unit: None,
        ..num("olga", 0, 0, "hr", "", T0 + 1_000, 61.0)
    };
    assert_eq!(store.insert(std::slice::from_ref(&again)).await?, 0);
    assert_eq!(store.devices_seen("olga", now).await?, olga);
    // New rows add to the backfilled minutes.
    let new = Row {
        message_id: "m5".into(),
        time_ms: T0 + 4_000,
        ..again
    };
    assert_eq!(store.insert(&[new]).await?, 1);
    assert_eq!(
        store.devices_seen("olga", now).await?,
        vec![seen("band", T0 - 60_001, 1), seen("watch", T0 + 4_000, 3)]
    );
    Ok(())
}

#[tokio::test]
async fn sqlite_backfills_device_minute() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.sqlite");
    rusqlite::Connection::open(&path)?.execute_batch(&version_2_with_rows(
        include_str!("../migrations/sqlite/0001_init.sql"),
        include_str!("../migrations/sqlite/0002_activity.sql"),
    ))?;
    let store = Store::open(None, dir.path()).await?;
    backfill_contract(&store).await
}

#[tokio::test]
async fn sqlite() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(None, dir.path()).await?;
    assert_eq!(store.engine(), "sqlite");
    store_contract(&store).await?;
    activity_contract(&store).await?;
    summary_contract(&store).await?;
    devices_contract(&store).await?;
    sessions_contract(&store).await?;
    rights_contract(&store).await?;
    packs_contract(&store).await?;
    erasure_contract(&store).await?;
    let kept = login("ivy", 250, T0, 3_600_000);
    store.create_session(&kept, BOUNDS).await?;
    let before = store.count_and_checksum().await?;
    drop(store);
    // Reopening runs no migration twice and keeps everything.
    let url = format!("sqlite://{}", dir.path().join("store.sqlite").display());
    let reopened = Store::open(Some(&url), dir.path()).await?;
    assert_eq!(reopened.count_and_checksum().await?, before);
    // A login session survives the reopening (a restart).
    assert_eq!(reopened.session(hash(250), T0 + 1).await?, Some(kept));
    assert_eq!(
        reopened
            .activity_timeline("alice", T0, T0 + 1, 10)
            .await?
            .len(),
        3
    );
    Ok(())
}

#[tokio::test]
async fn postgres() -> TestResult {
    let Ok(url) = std::env::var("TRIBUTARY_TEST_POSTGRES") else {
        println!("postgres: not run (set TRIBUTARY_TEST_POSTGRES to a postgres:// URL)");
        return Ok(());
    };
    let db = format!(
        "tributary_store_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await?;
    let test_url = with_database(&url, &db);
    let result = async {
        let store = Store::open(Some(&test_url), std::path::Path::new("/nonexistent")).await?;
        assert_eq!(store.engine(), "postgres");
        store_contract(&store).await?;
        activity_contract(&store).await?;
        summary_contract(&store).await?;
        devices_contract(&store).await?;
        sessions_contract(&store).await?;
        rights_contract(&store).await?;
        packs_contract(&store).await?;
        erasure_contract(&store).await?;
        let kept = login("ivy", 250, T0, 3_600_000);
        store.create_session(&kept, BOUNDS).await?;
        let before = store.count_and_checksum().await?;
        drop(store);
        let reopened = Store::open(Some(&test_url), std::path::Path::new("/nonexistent")).await?;
        assert_eq!(reopened.count_and_checksum().await?, before);
        assert_eq!(reopened.session(hash(250), T0 + 1).await?, Some(kept));

        // A second database, at version 2 with rows, for the backfill of migration 0003.
        admin
            .batch_execute(&format!("CREATE DATABASE {db}_v2"))
            .await?;
        let v2_url = with_database(&url, &format!("{db}_v2"));
        let (v2, v2_connection) = tokio_postgres::connect(&v2_url, tokio_postgres::NoTls).await?;
        let v2_conn = tokio::spawn(v2_connection);
        v2.batch_execute(&version_2_with_rows(
            include_str!("../migrations/postgres/0001_init.sql"),
            include_str!("../migrations/postgres/0002_activity.sql"),
        ))
        .await?;
        drop(v2);
        v2_conn.await??;
        let store = Store::open(Some(&v2_url), std::path::Path::new("/nonexistent")).await?;
        backfill_contract(&store).await?;
        TestResult::Ok(())
    }
    .await;
    // One statement per call: several in one batch would run in one transaction, where
    // DROP DATABASE is refused.
    admin
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}_v2 WITH (FORCE)"))
        .await?;
    drop(admin);
    conn.await??;
    result
}

/// `url` with its database replaced by `db` (keeping any `?parameters`).
fn with_database(url: &str, db: &str) -> String {
    let (base, params) = match url.split_once('?') {
        Some((b, p)) => (b, format!("?{p}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{params}", &base[..host_end])
}

fn consent(id: &str, service: &str, owner: &str, created_ms: i64) -> Consent {
    Consent {
        id: id.into(),
        service: service.into(),
        owner: owner.into(),
        types: vec!["heart_rate".into(), "steps".into()],
        purpose: "dpv:ResearchAndDevelopment".into(),
        retention_days: 30,
        third_parties: vec!["Lab A".into()],
        status: "pending".into(),
        created_ms,
        decided_ms: None,
    }
}

fn decision(id: &str, owner: &str, from: &str, to: &str, at: i64) -> DecisionRecord {
    DecisionRecord {
        consent_id: id.into(),
        owner: owner.into(),
        from: from.into(),
        to: to.into(),
        receipt: ConsentReceipt {
            receipt_id: format!("r-{id}-{to}"),
            consent_id: id.into(),
            owner: owner.into(),
            status: to.into(),
            jws: format!("jws.{id}.{to}"),
            created_ms: at,
        },
    }
}

fn audit(owner: &str, count: u64, first_ms: i64) -> AuditRecord {
    AuditRecord {
        id: 0,
        owner: owner.into(),
        actor_kind: "service".into(),
        actor: "study".into(),
        channel: "mqtt".into(),
        detail: "s:study:c1".into(),
        device: "w1".into(),
        consent_id: Some("c1".into()),
        count,
        first_ms,
        last_ms: first_ms + 10,
    }
}

/// Consents, decisions with receipts, the version nodes poll, the shared secret, the audit log.
async fn rights_contract(store: &Store) -> TestResult {
    // The first secret kept is the one every later caller gets.
    let kept = store
        .installation_secret("receipt-signing", &[1; 32])
        .await?;
    assert_eq!(kept, vec![1; 32]);
    assert_eq!(
        store
            .installation_secret("receipt-signing", &[2; 32])
            .await?,
        vec![1; 32]
    );

    let v0 = store.consent_version().await?;
    assert!(
        store
            .create_consent(&consent("c1", "study", "ann", T0))
            .await?
    );
    assert!(
        store
            .create_consent(&consent("c2", "study", "bob", T0 + 1))
            .await?
    );
    assert!(
        store
            .create_consent(&consent("c3", "other", "ann", T0 + 2))
            .await?
    );
    assert_eq!(
        store.consent("c1").await?,
        Some(consent("c1", "study", "ann", T0))
    );
    assert_eq!(store.consent("nope").await?, None);
    let ann: Vec<String> = store
        .owner_consents("ann", None, 10)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ann, ["c3", "c1"], "newest first");
    let page: Vec<String> = store
        .owner_consents("ann", Some(T0 + 2), 10)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(page, ["c1"]);
    assert_eq!(
        store.service_consents("study", None, 1).await?.len(),
        1,
        "bounded by limit"
    );

    // Nothing is granted yet; a decision moves the version and stores the receipt.
    assert!(store.granted_consents(100).await?.is_empty());
    assert!(
        store
            .decide_consent(&decision("c1", "ann", "pending", "granted", T0 + 10))
            .await?
    );
    assert!(store.consent_version().await? > v0);
    let granted = store.granted_consents(100).await?;
    assert_eq!(granted.len(), 1);
    assert_eq!(
        (granted[0].status.as_str(), granted[0].decided_ms),
        ("granted", Some(T0 + 10))
    );
    assert_eq!(
        store.granted_consent("study", "ann").await?.map(|c| c.id),
        Some("c1".into())
    );
    assert_eq!(store.granted_consent("study", "bob").await?, None);
    // Another owner cannot decide it, nor can the same move happen twice.
    assert!(
        !store
            .decide_consent(&decision("c1", "bob", "granted", "revoked", T0 + 11))
            .await?
    );
    assert!(
        !store
            .decide_consent(&decision("c1", "ann", "pending", "refused", T0 + 11))
            .await?
    );
    let v1 = store.consent_version().await?;
    assert!(
        store
            .decide_consent(&decision("c1", "ann", "granted", "revoked", T0 + 12))
            .await?
    );
    assert!(store.consent_version().await? > v1);
    assert!(store.granted_consents(100).await?.is_empty());
    let receipts: Vec<String> = store
        .consent_receipts("c1")
        .await?
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(receipts, ["granted", "revoked"]);
    assert_eq!(
        store.owner_receipts("ann", None, 10).await?[0].status,
        "revoked"
    );
    assert!(store.owner_receipts("bob", None, 10).await?.is_empty());

    // The audit log: appended, read newest first by owner, paged by id.
    store
        .append_audit(&[audit("ann", 3, T0), audit("bob", 1, T0)], T0 + 20)
        .await?;
    store
        .append_audit(&[audit("ann", 5, T0 + 60_000)], T0 + 80_000)
        .await?;
    let log = store.owner_audit("ann", None, 10).await?;
    assert_eq!(log.iter().map(|e| e.count).collect::<Vec<_>>(), [5, 3]);
    assert_eq!(
        AuditRecord {
            id: 0,
            ..log[1].clone()
        },
        audit("ann", 3, T0)
    );
    let older = store.owner_audit("ann", Some(log[0].id), 10).await?;
    assert_eq!(older.len(), 1);
    assert_eq!(store.owner_audit("ann", None, 1).await?.len(), 1);
    // NUL is refused alike on both engines.
    assert!(store
        .create_consent(&consent("c\0", "study", "ann", T0))
        .await
        .is_err());
    Ok(())
}

fn pack(id: &str, buyer: &str, created_ms: i64) -> tributary_store::Pack {
    tributary_store::Pack {
        id: id.into(),
        buyer: buyer.into(),
        title: "resting heart rate".into(),
        measurement: "heart_rate".into(),
        purpose: "dpv:ResearchAndDevelopment".into(),
        spec: r#"{"epsilon":1.0}"#.into(),
        age_band: Some("30-39".into()),
        region: None,
        price_cents: 250,
        currency: "EUR".into(),
        created_ms,
    }
}

fn joined(pack_id: &str, owner: &str, joined_ms: i64) -> tributary_store::Participation {
    tributary_store::Participation {
        pack_id: pack_id.into(),
        owner: owner.into(),
        status: "joined".into(),
        joined_ms,
        withdrawn_ms: None,
        receipt: format!("jws-join-{owner}"),
        withdraw_receipt: None,
    }
}

fn charge(owner: &str, pack_id: &str, seq: i64, epsilon: f64) -> tributary_store::LedgerEntry {
    tributary_store::LedgerEntry {
        owner: owner.into(),
        pack_id: pack_id.into(),
        seq,
        epsilon,
        amount_cents: 250,
        currency: "EUR".into(),
        at_ms: T0 + seq,
    }
}

fn released(pack_id: &str, seq: i64, participants: u64) -> tributary_store::PackRelease {
    tributary_store::PackRelease {
        pack_id: pack_id.into(),
        seq,
        released_ms: T0 + seq,
        participants,
        body: format!(r#"{{"seq":{seq}}}"#),
    }
}

async fn packs_contract(store: &Store) -> TestResult {
    use tributary_store::{Budget, PackSettings, Recorded, DEFAULT_BUDGET_CEILING};
    store.create_pack(&pack("pk1", "lab", T0)).await?;
    store.create_pack(&pack("pk2", "lab", T0 + 1)).await?;
    store.create_pack(&pack("pk3", "other", T0 + 2)).await?;
    assert_eq!(store.pack("pk1").await?, Some(pack("pk1", "lab", T0)));
    assert_eq!(store.pack("nope").await?, None);
    let ids =
        |packs: Vec<tributary_store::Pack>| packs.into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.packs(Some("lab"), None, 10).await?),
        ["pk2", "pk1"]
    );
    assert_eq!(
        ids(store.packs(None, Some(T0 + 2), 10).await?),
        ["pk2", "pk1"]
    );
    assert_eq!(ids(store.packs(None, None, 1).await?), ["pk3"]);

    // Joining twice is refused; withdrawing and joining again replaces the row.
    assert!(store.join_pack(&joined("pk1", "ann", T0)).await?);
    assert!(store.join_pack(&joined("pk1", "bob", T0 + 1)).await?);
    assert!(!store.join_pack(&joined("pk1", "ann", T0 + 5)).await?);
    assert_eq!(store.pack_participants("pk1", 10).await?, ["ann", "bob"]);
    assert!(
        store
            .withdraw_pack("pk1", "bob", T0 + 9, "jws-withdraw")
            .await?
    );
    assert!(!store.withdraw_pack("pk1", "bob", T0 + 10, "again").await?);
    assert!(!store.withdraw_pack("pk1", "nobody", T0 + 10, "x").await?);
    assert_eq!(store.pack_participants("pk1", 10).await?, ["ann"]);
    let bobs = store.owner_participations("bob", 10).await?;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].status, "withdrawn");
    assert_eq!(bobs[0].withdrawn_ms, Some(T0 + 9));
    assert_eq!(bobs[0].withdraw_receipt.as_deref(), Some("jws-withdraw"));
    assert!(store.join_pack(&joined("pk1", "bob", T0 + 20)).await?);
    let bobs = store.owner_participations("bob", 10).await?;
    assert_eq!(
        (bobs[0].status.as_str(), bobs[0].withdrawn_ms),
        ("joined", None)
    );

    // Settings: defaults until set; a bad ceiling is refused.
    assert_eq!(store.pack_settings("ann").await?, PackSettings::default());
    let ann = PackSettings {
        budget_ceiling: 1.5,
        age_band: Some("30-39".into()),
        region: Some("EU".into()),
    };
    store.set_pack_settings("ann", &ann).await?;
    assert_eq!(store.pack_settings("ann").await?, ann);
    let nan = PackSettings {
        budget_ceiling: f64::NAN,
        ..PackSettings::default()
    };
    assert!(store.set_pack_settings("ann", &nan).await.is_err());

    // Releases: numbered without gaps, charging each participant within their ceiling.
    let owners = ["ann".to_owned(), "bob".to_owned()];
    assert_eq!(
        store.budgets(&owners).await?,
        [
            Budget {
                ceiling: 1.5,
                spent: 0.0
            },
            Budget {
                ceiling: DEFAULT_BUDGET_CEILING,
                spent: 0.0
            }
        ]
    );
    let first = [charge("ann", "pk1", 1, 1.0), charge("bob", "pk1", 1, 1.0)];
    assert_eq!(
        store.record_release(&released("pk1", 1, 2), &first).await?,
        Recorded::Stored
    );
    assert_eq!(
        store.record_release(&released("pk1", 1, 2), &first).await?,
        Recorded::SeqTaken
    );
    assert_eq!(
        store.record_release(&released("pk1", 3, 2), &first).await?,
        Recorded::SeqTaken
    );
    // Ann has 0.5 left: a release charging her 1.0 stores nothing at all.
    let second = [charge("ann", "pk1", 2, 1.0), charge("bob", "pk1", 2, 1.0)];
    assert_eq!(
        store
            .record_release(&released("pk1", 2, 2), &second)
            .await?,
        Recorded::OverBudget("ann".into())
    );
    assert_eq!(
        store.pack_releases("pk1", 10).await?,
        [released("pk1", 1, 2)]
    );
    assert_eq!(
        store.budgets(&owners).await?,
        [
            Budget {
                ceiling: 1.5,
                spent: 1.0
            },
            Budget {
                ceiling: DEFAULT_BUDGET_CEILING,
                spent: 1.0
            }
        ]
    );
    let without_ann = [charge("bob", "pk1", 2, 1.0)];
    assert_eq!(
        store
            .record_release(&released("pk1", 2, 1), &without_ann)
            .await?,
        Recorded::Stored
    );
    assert_eq!(
        store.owner_ledger("bob", 10).await?,
        [charge("bob", "pk1", 2, 1.0), charge("bob", "pk1", 1, 1.0)]
    );
    assert_eq!(
        store.owner_ledger("ann", 10).await?,
        [charge("ann", "pk1", 1, 1.0)]
    );
    // A ledger entry for another pack, a NaN ε, or release 0 is refused before anything is written.
    assert!(store
        .record_release(&released("pk2", 1, 1), &without_ann)
        .await
        .is_err());
    assert!(store
        .record_release(&released("pk2", 1, 1), &[charge("bob", "pk2", 1, f64::NAN)])
        .await
        .is_err());
    assert!(store
        .record_release(&released("pk2", 0, 0), &[])
        .await
        .is_err());
    assert!(store.pack_releases("pk2", 10).await?.is_empty());
    Ok(())
}
