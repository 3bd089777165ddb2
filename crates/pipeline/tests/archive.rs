//! The archive sink on the embedded log: rows of two owners land in Parquet
//! files under owner=/date=; a restart under the same consumer name writes
//! nothing again; the age limit flushes a small batch.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_archive::{Archive, ArchiveConfig};
use tributary_log::{Log, LogConfig};
use tributary_pipeline::{archive, ArchiveStats, FlushPolicy};

mod common;

use common::{record, senml_daily, senml_json, T0};

/// Runs the archive sink until it has written `want` rows (or 30 s pass).
async fn archive_until(
    log: &Log,
    archive_: &Archive,
    policy: FlushPolicy,
    want: u64,
) -> ArchiveStats {
    let stats = ArchiveStats::default();
    let stop = CancellationToken::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let watcher = async {
        while stats.rows.load(Ordering::Relaxed) < want && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    };
    let (result, ()) = tokio::join!(
        archive(log, archive_, "archive", policy, &stats, stop.clone()),
        watcher
    );
    result.expect("archive sink");
    stats
}

fn parquet_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn rows_in(path: &Path) -> usize {
    let file = std::fs::File::open(path).expect("open");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    reader.map(|b| b.expect("batch").num_rows()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_archived_once_per_owner_and_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(LogConfig::new(dir.path().join("log"))).expect("log");
    let archive_ = Archive::open(&ArchiveConfig::default(), dir.path()).expect("archive");
    let day_s = 86_400;
    log.append_batch(vec![
        record(
            1,
            "ann",
            "a1",
            "senml",
            senml_json("a1", T0 / 1000, &[61.0, 62.0]),
        ),
        record(
            2,
            "bob",
            "b1",
            "senml",
            senml_json("b1", T0 / 1000, &[50.0]),
        ),
        record(
            3,
            "ann",
            "a1",
            "senml",
            senml_json("a1", T0 / 1000 + day_s, &[70.0, 71.0, 72.0]),
        ),
        record(4, "ann", "a1", "senml", b"{broken".to_vec()),
        record(5, "ann", "a1", "raw", b"not senml".to_vec()),
    ])
    .await
    .expect("append");

    // Large batches, a short age limit: the five records are written together.
    let policy = FlushPolicy {
        max_rows: 100_000,
        max_age: Duration::from_millis(200),
        ..FlushPolicy::default()
    };
    let stats = archive_until(&log, &archive_, policy.clone(), 6).await;
    assert_eq!(stats.rows.load(Ordering::Relaxed), 6);
    assert_eq!(stats.records.load(Ordering::Relaxed), 5);
    let root = dir.path().join("archive");
    let files = parquet_files(&root);
    let relative: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(&root)
                .expect("under root")
                .parent()
                .expect("dir")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        relative,
        [
            "owner=ann/date=2026-09-21",
            "owner=ann/date=2026-09-22",
            "owner=bob/date=2026-09-21"
        ]
    );
    assert_eq!(
        files.iter().map(|f| rows_in(f)).collect::<Vec<_>>(),
        [2, 3, 1]
    );

    // The offsets were committed with the write: a restart finds nothing new.
    log.append_batch(vec![record(
        6,
        "bob",
        "b1",
        "senml",
        senml_json("b1", T0 / 1000, &[51.0]),
    )])
    .await
    .expect("append");
    let again = archive_until(&log, &archive_, policy, 1).await;
    assert_eq!(
        again.records.load(Ordering::Relaxed),
        1,
        "only the new record is read"
    );
    assert_eq!(parquet_files(&root).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_written_before_the_age_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(LogConfig::new(dir.path().join("log"))).expect("log");
    let archive_ = Archive::open(&ArchiveConfig::default(), dir.path()).expect("archive");
    let records = (0..50)
        .map(|i| {
            record(
                100 + i,
                "ann",
                "a1",
                "senml",
                senml_json("a1", T0 / 1000 + i as i64, &[1.0, 2.0]),
            )
        })
        .collect();
    log.append_batch(records).await.expect("append");
    let policy = FlushPolicy {
        max_rows: 10,
        max_age: Duration::from_secs(3600),
        ..FlushPolicy::default()
    };
    let started = std::time::Instant::now();
    let stats = archive_until(&log, &archive_, policy, 100).await;
    assert_eq!(stats.rows.load(Ordering::Relaxed), 100);
    // The hour-long age limit was not waited for.
    assert!(started.elapsed() < Duration::from_secs(20), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_are_no_measurements_are_committed_without_waiting_for_the_age_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(LogConfig::new(dir.path().join("log"))).expect("log");
    let archive_ = Archive::open(&ArchiveConfig::default(), dir.path()).expect("archive");
    let raw = (0..50)
        .map(|i| record(200 + i, "ann", "a1", "raw", b"1".to_vec()))
        .collect();
    log.append_batch(raw).await.expect("append");
    let policy = FlushPolicy {
        max_rows: 10,
        max_age: Duration::from_secs(3600),
        ..FlushPolicy::default()
    };
    let stats = ArchiveStats::default();
    let stop = CancellationToken::new();
    let started = std::time::Instant::now();
    let watcher = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while stats.records.load(Ordering::Relaxed) < 50 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    };
    let (result, ()) = tokio::join!(
        archive(&log, &archive_, "archive", policy, &stats, stop.clone()),
        watcher
    );
    result.expect("archive sink");
    // Committed (and counted) although no row was ever gathered, long
    // before the watcher's 20 s (the final write at stop would count them
    // too).
    assert!(started.elapsed() < Duration::from_secs(15), "{stats:?}");
    assert_eq!(stats.records.load(Ordering::Relaxed), 50, "{stats:?}");
    assert_eq!(stats.files.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_spanning_too_many_days_and_commands_create_no_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(LogConfig::new(dir.path().join("log"))).expect("log");
    let archive_ = Archive::open(&ArchiveConfig::default(), dir.path()).expect("archive");
    log.append_batch(vec![
        // 40 days: 40 partitions from one message, were it archived.
        record(1, "ann", "a1", "senml", senml_daily(40)),
        record(
            2,
            "ann",
            "a1",
            "commands/senml",
            senml_json("a1", T0 / 1000, &[1.0]),
        ),
        record(3, "bob", "b1", "senml", senml_daily(2)),
    ])
    .await
    .expect("append");
    let policy = FlushPolicy {
        max_age: Duration::from_millis(200),
        max_days_per_message: 31,
        ..FlushPolicy::default()
    };
    let stats = archive_until(&log, &archive_, policy, 2).await;
    assert_eq!(stats.rows.load(Ordering::Relaxed), 2);
    let root = dir.path().join("archive");
    let partitions: Vec<String> = parquet_files(&root)
        .iter()
        .filter_map(|f| Some(f.strip_prefix(&root).ok()?.parent()?.display().to_string()))
        .collect();
    assert_eq!(
        partitions,
        ["owner=bob/date=2026-09-20", "owner=bob/date=2026-09-21"]
    );
}
