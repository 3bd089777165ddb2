//! The pipeline on the embedded log and the SQLite store, in-process: SenML
//! JSON and CBOR of two owners become their measurements; a malformed corpus
//! becomes dead letters while the valid messages after it are stored;
//! reprocessing the whole log under a new consumer changes nothing; a
//! reprocessing run into an empty store rebuilds it, and stops at the end
//! the log had when it started, and fails when a log delivers nothing for
//! longer than its patience.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_log::{Log, LogConfig, ReadToEnd, Record, Stream, StreamError};
use tributary_pipeline::{reprocess, run, Finish, MotionRows, Stats, StorePolicy};
use tributary_store::{Query, Store};

mod common;

use common::{record, senml_daily, senml_json, T0};

/// Runs the pipeline until it has read `want` records in all.
async fn run_until(log: &Log, store: &Store, consumer: &str, want: u64) -> Stats {
    let stats = Stats::default();
    let stop = CancellationToken::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let watcher = async {
        while stats.records.load(Ordering::Relaxed) < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "pipeline read only {:?}",
                stats
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    };
    let (result, ()) = tokio::join!(
        run(
            log,
            store,
            consumer,
            MotionRows::Store,
            &stats,
            stop.clone()
        ),
        watcher
    );
    result.expect("pipeline");
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senml_of_two_owners_is_stored_and_reprocessing_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(LogConfig::new(dir.path().join("log"))).expect("log");
    let store = Store::open(None, dir.path()).await.expect("store");
    let mut records = vec![
        record(
            1,
            "ann",
            "a1",
            "senml",
            senml_json("a1", T0 / 1000, &[61.0, 62.0, 63.0]),
        ),
        record(
            2,
            "bob",
            "b1",
            "senml",
            senml_json("b1", T0 / 1000, &[71.0, 72.0]),
        ),
        // Malformed: each is a dead letter, and what follows is still stored.
        record(3, "ann", "a1", "senml", b"{not json".to_vec()),
        record(
            4,
            "ann",
            "a1",
            "senml",
            br#"[{"n":"hr","u":"furlong","v":1}]"#.to_vec(),
        ),
        record(5, "ann", "a1", "senml", br#"[{"n":"","v":1}]"#.to_vec()),
        record(6, "ann", "a1", "senml", br#"[{"n":"hr"}]"#.to_vec()),
        record(
            7,
            "bob",
            "b1",
            "senml",
            br#"[{"n":"hr","v":1,"t":-1e12}]"#.to_vec(),
        ),
        // Not SenML and anonymous: passed over.
        record(8, "ann", "a1", "raw", b"61".to_vec()),
        record(9, "", "x", "senml", senml_json("x", T0 / 1000, &[1.0])),
        record(
            10,
            "ann",
            "a1",
            "senml",
            senml_json("a1", T0 / 1000 + 10, &[64.0]),
        ),
    ];
    // CBOR: [{-2: "b1/", -3: bt, 0: "hr", 1: "beat/min", 2: 73.0}]
    let mut cbor = vec![0x81, 0xa5, 0x21, 0x63, b'b', b'1', b'/', 0x22, 0x1a];
    cbor.extend_from_slice(&((T0 / 1000 + 20) as u32).to_be_bytes());
    cbor.extend_from_slice(&[0x00, 0x62, b'h', b'r', 0x01, 0x68]);
    cbor.extend_from_slice(b"beat/min");
    cbor.extend_from_slice(&[0x02, 0xf9, 0x54, 0x90]); // half float 73.0
    records.push(record(11, "bob", "b1", "senml+cbor", cbor));
    let total = records.len() as u64;
    log.append_batch(records).await.expect("append");

    let stats = run_until(&log, &store, "pipeline", total).await;
    assert_eq!(stats.dead_letters.load(Ordering::Relaxed), 5, "{stats:?}");
    assert_eq!(stats.measurements.load(Ordering::Relaxed), 7, "{stats:?}");

    let query = |owner: &str| Query {
        owner: owner.into(),
        from_ms: T0 - 1,
        to_ms: T0 + 3_600_000,
        names: Vec::new(),
        bucket_ms: None,
        limit: 100,
    };
    let ann: Vec<f64> = store
        .query(&query("ann"))
        .await
        .expect("query")
        .iter()
        .filter_map(|p| p.avg)
        .collect();
    let bob: Vec<f64> = store
        .query(&query("bob"))
        .await
        .expect("query")
        .iter()
        .filter_map(|p| p.avg)
        .collect();
    assert_eq!(ann, [61.0, 62.0, 63.0, 64.0]);
    assert_eq!(bob, [71.0, 72.0, 73.0]);
    assert_eq!(
        store
            .dead_letters("ann", 10, 0)
            .await
            .expect("letters")
            .len(),
        4
    );
    assert_eq!(
        store
            .dead_letters("bob", 10, 0)
            .await
            .expect("letters")
            .len(),
        1
    );

    let before = store.count_and_checksum().await.expect("checksum");
    let again = run_until(&log, &store, "reprocess-from-0", total).await;
    assert_eq!(again.measurements.load(Ordering::Relaxed), 0, "{again:?}");
    assert_eq!(again.already_stored.load(Ordering::Relaxed), 7);
    assert_eq!(store.count_and_checksum().await.expect("checksum"), before);
    log.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprocessing_into_an_empty_store_rebuilds_it_and_stops_at_the_end_seen_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(LogConfig::new(dir.path().join("log"))).expect("log");
    let original = Store::open(None, dir.path()).await.expect("store");
    let records: Vec<Record> = (0..2000u128)
        .map(|i| {
            let device = format!("d{}", i % 7);
            let payload = senml_json(&device, T0 / 1000 + i as i64, &[i as f64, 1.0]);
            record(i + 1, "ann", &device, "senml", payload)
        })
        .collect();
    log.append_batch(records).await.expect("append");
    run_until(&log, &original, "pipeline", 2000).await;
    let expected = original.count_and_checksum().await.expect("checksum");
    assert_eq!(expected.0, 4000);

    let rebuilt = Store::open(Some("sqlite:///rebuilt.sqlite"), dir.path())
        .await
        .expect("store");
    let mut reader = log.consumer("reprocess").expect("consumer");
    let end = reader.end().await.expect("end");
    // Appended after the start: not what this run is about, and it must
    // stop all the same.
    log.append(record(
        9999,
        "ann",
        "late",
        "senml",
        senml_json("late", T0 / 1000, &[1.0]),
    ))
    .await
    .expect("append");
    let stats = Stats::default();
    let stop = CancellationToken::new();
    let finish = tokio::time::timeout(
        Duration::from_secs(30),
        reprocess(
            &mut reader,
            &end,
            &rebuilt,
            MotionRows::Store,
            &stats,
            &stop,
            Duration::from_secs(5),
        ),
    )
    .await
    .expect("reprocess stops at the end")
    .expect("reprocess");
    assert_eq!(finish, Finish::Complete);
    assert!(stats.records.load(Ordering::Relaxed) >= 2000, "{stats:?}");
    let (count, checksum) = rebuilt.count_and_checksum().await.expect("checksum");
    // The late record may have come in the last batch; everything before the end did.
    let late = count - expected.0;
    assert!(late <= 1, "{count}");
    if late == 0 {
        assert_eq!((count, checksum), expected);
    }

    log.close().await.expect("close");

    // An empty log: complete at once.
    let empty = Log::open(LogConfig::new(dir.path().join("empty"))).expect("log");
    let mut reader = empty.consumer("reprocess").expect("consumer");
    let end = reader.end().await.expect("end");
    let stats = Stats::default();
    let finish = reprocess(
        &mut reader,
        &end,
        &rebuilt,
        MotionRows::Store,
        &stats,
        &stop,
        Duration::from_secs(5),
    )
    .await
    .expect("reprocess");
    assert_eq!(
        (finish, stats.records.load(Ordering::Relaxed)),
        (Finish::Complete, 0)
    );
    empty.close().await.expect("close");
}

/// A log that never delivers what it claims to hold (Kafka unreachable:
/// its client waits without an error).
struct Stalled;

impl tributary_log::StreamConsumer for Stalled {
    type Position = u64;

    async fn next(&mut self, _max: usize) -> Result<tributary_log::Batch<u64>, StreamError> {
        std::future::pending().await
    }

    async fn commit(&mut self, _done: &[u64]) -> Result<(), StreamError> {
        Ok(())
    }

    async fn lag(&self) -> Option<u64> {
        None
    }
}

impl ReadToEnd for Stalled {
    type End = u64;

    async fn end(&self) -> Result<u64, StreamError> {
        Ok(1)
    }

    fn reached(&self, _end: &u64) -> bool {
        false
    }
}

#[tokio::test]
async fn reprocessing_a_log_that_delivers_nothing_fails_after_its_patience() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(None, dir.path()).await.expect("store");
    let stats = Stats::default();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        reprocess(
            &mut Stalled,
            &1,
            &store,
            MotionRows::Store,
            &stats,
            &CancellationToken::new(),
            Duration::from_millis(200),
        ),
    )
    .await
    .expect("bounded by its patience");
    let err = result.expect_err("a stalled log is an error");
    assert!(err.to_string().contains("nothing came"), "{err}");
}

/// Regression: the lag was refreshed only after a batch, so a pipeline that
/// had caught up and then waited for records kept showing the lag it had
/// before its last batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_caught_up_pipeline_reports_no_lag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(LogConfig::new(dir.path().join("log"))).expect("log");
    let store = Store::open(None, dir.path()).await.expect("store");
    let raw = |id: u128| record(id, "ann", "a1", "raw", b"1".to_vec());
    log.append_batch((0..20).map(raw).collect())
        .await
        .expect("append");
    let stats = Stats::default();
    let stop = CancellationToken::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let wait_until = |records: u64| {
        let stats = &stats;
        async move {
            while stats.records.load(Ordering::Relaxed) < records
                || stats.lag.load(Ordering::Relaxed) != 0
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "pipeline: {stats:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let watcher = async {
        // The first refresh, before the first batch, saw all 20 unread.
        wait_until(20).await;
        log.append_batch((20..25).map(raw).collect())
            .await
            .expect("append");
        wait_until(25).await;
        stop.cancel();
    };
    let (result, ()) = tokio::join!(
        run(
            &log,
            &store,
            "pipeline",
            MotionRows::Store,
            &stats,
            stop.clone()
        ),
        watcher
    );
    result.expect("pipeline");
    assert_eq!(stats.skipped.load(Ordering::Relaxed), 25, "{stats:?}");
    log.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_spanning_too_many_days_is_a_dead_letter_and_commands_are_no_measurements() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(LogConfig::new(dir.path().join("log"))).expect("log");
    let store = Store::open(None, dir.path()).await.expect("store");
    let records = vec![
        // Three days where two are allowed: a dead letter saying why.
        record(1, "ann", "a1", "senml", senml_daily(3)),
        // An owner's SenML command to the device: not the device's data.
        record(
            2,
            "ann",
            "a1",
            "commands/senml",
            senml_json("a1", T0 / 1000, &[1.0]),
        ),
        // Two days: stored.
        record(3, "ann", "a1", "senml", senml_daily(2)),
    ];
    log.append_batch(records).await.expect("append");
    let stats = Stats::default();
    let stop = CancellationToken::new();
    let policy = StorePolicy {
        motion: MotionRows::Store,
        max_days_per_message: 2,
        erased: Default::default(),
    };
    let watcher = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while stats.records.load(Ordering::Relaxed) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "{stats:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    };
    let (result, ()) = tokio::join!(
        run(&log, &store, "pipeline", policy, &stats, stop.clone()),
        watcher
    );
    result.expect("pipeline");
    assert_eq!(stats.measurements.load(Ordering::Relaxed), 2, "{stats:?}");
    assert_eq!(stats.skipped.load(Ordering::Relaxed), 1, "{stats:?}");
    let letters = store.dead_letters("ann", 10, 0).await.expect("letters");
    assert_eq!(letters.len(), 1);
    let reason = &letters[0].letter.reason;
    assert!(
        reason.contains("more than 2 different days") && reason.contains("max_days_per_message"),
        "{reason}"
    );
    log.close().await.expect("close");
}
