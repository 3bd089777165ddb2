//! Tests of the embedded log through its public API (plus a simulated crash).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

use crate::record::{self, FrameError};
use crate::{Error, Log, LogConfig, LogTuning, MessageId, Offset, Record, Result};

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn record(i: u64, payload_len: usize) -> Record {
    Record {
        receive_time_ms: 1_700_000_000_000 + i,
        topic: format!("owners/o{}/devices/d{}/hr", i % 7, i % 3),
        qos: (i % 3) as u8,
        retain: i % 5 == 0,
        properties: if i % 2 == 0 {
            Bytes::new()
        } else {
            Bytes::from_static(&[0x01, 0x01])
        },
        payload: Bytes::from(vec![(i % 251) as u8; payload_len]),
        client_id: format!("client-{i}"),
        message_id: MessageId(u128::from(i) << 64 | 0xabcdef),
        owner: "owner".into(),
        device: format!("device-{}", i % 3),
    }
}

fn config(dir: &Path) -> LogConfig {
    LogConfig {
        dir: dir.to_owned(),
        segment_bytes: 1 << 20,
        max_bytes: 1 << 30,
        max_age: None,
    }
}

fn small_segments(dir: &Path, segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        ..config(dir)
    }
}

async fn append_n(log: &Log, from: u64, n: u64, payload_len: usize) -> Result<()> {
    for i in from..from + n {
        let offset = log.append(record(i, payload_len)).await?;
        assert_eq!(offset, Offset(i));
    }
    Ok(())
}

async fn read_all(log: &Log, from: u64) -> Result<Vec<(Offset, std::sync::Arc<Record>)>> {
    let mut out = Vec::new();
    let end = log.end_offset().0;
    while from + (out.len() as u64) < end {
        let batch = log.read(Offset(from + out.len() as u64), 1000).await?;
        assert!(!batch.is_empty(), "read made no progress");
        out.extend(batch);
    }
    Ok(out)
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("list test dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

// ---- encoding ----

#[test]
fn encoding_round_trips_every_field() {
    let rec = record(42, 100);
    let mut buf = Vec::new();
    record::encode(42, &rec, &mut buf);
    assert_eq!(buf.len(), record::frame_len(&rec));
    let frame = record::decode(&buf).expect("decode what we encoded");
    assert_eq!(frame.offset, 42);
    assert_eq!(frame.frame_len, buf.len());
    assert_eq!(frame.to_record(), rec);
}

#[test]
fn encoding_of_an_empty_record_is_annotated_layout() {
    let rec = Record {
        qos: 1,
        retain: true,
        receive_time_ms: 2,
        message_id: MessageId(3),
        ..Record::default()
    };
    let mut buf = Vec::new();
    record::encode(7, &rec, &mut buf);
    assert_eq!(buf.len(), record::MIN_FRAME);
    assert_eq!(&buf[0..4], &((record::MIN_FRAME - 8) as u32).to_le_bytes()); // len
    assert_eq!(&buf[4..8], &crc32c::crc32c(&buf[8..]).to_le_bytes()); // crc
    assert_eq!(&buf[8..16], &7u64.to_le_bytes()); // offset
    assert_eq!(buf[16], 1); // version
    assert_eq!(buf[17], 0b011); // qos 1 << 1 | retain
    assert_eq!(&buf[18..26], &2u64.to_le_bytes()); // receive time
    assert_eq!(&buf[26..42], &3u128.to_le_bytes()); // message id
    assert_eq!(&buf[42..], &[0; 24]); // six empty fields
}

#[test]
fn decoding_reports_partial_frames_and_corruption() {
    let mut buf = Vec::new();
    record::encode(1, &record(1, 10), &mut buf);
    for cut in 0..buf.len() {
        assert!(
            matches!(
                record::decode(&buf[..cut]),
                Err(FrameError::Incomplete { .. })
            ),
            "cut at {cut}"
        );
    }
    let mut bad = buf.clone();
    *bad.last_mut().expect("non-empty") ^= 1;
    assert_eq!(record::decode(&bad).err(), Some(FrameError::BadCrc));
    let mut bad = buf.clone();
    bad[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        record::decode(&bad),
        Err(FrameError::BadLength(_))
    ));
}

// ---- append, read, wait ----

#[tokio::test]
async fn append_read_and_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(config(dir.path()))?;
    assert_eq!(log.end_offset(), Offset(0));
    assert!(log.read(Offset(0), 10).await?.is_empty());
    append_n(&log, 0, 50, 100).await?;
    assert_eq!(log.end_offset(), Offset(50));
    let records = log.read(Offset(10), 5).await?;
    assert_eq!(records.len(), 5);
    for (i, (offset, rec)) in records.iter().enumerate() {
        assert_eq!(*offset, Offset(10 + i as u64));
        assert_eq!(**rec, record(10 + i as u64, 100));
    }
    assert!(log.read(Offset(50), 10).await?.is_empty());
    assert!(log.read(Offset(60), 10).await?.is_empty());
    log.close().await?;
    assert!(matches!(log.append(record(0, 1)).await, Err(Error::Closed)));

    let log = Log::open(config(dir.path()))?;
    assert_eq!(log.end_offset(), Offset(50));
    let all = read_all(&log, 0).await?;
    assert_eq!(all.len(), 50);
    for (offset, rec) in &all {
        assert_eq!(**rec, record(offset.0, 100));
    }
    append_n(&log, 50, 1, 100).await?;
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn wait_beyond_wakes_on_append_and_on_close() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(config(dir.path()))?;
    let waiter = tokio::spawn({
        let log = log.clone();
        async move { log.wait_beyond(Offset(0)).await }
    });
    // A wait that is cancelled (timeout) harms nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), log.wait_beyond(Offset(0)))
            .await
            .is_err()
    );
    log.append(record(0, 10)).await?;
    tokio::time::timeout(Duration::from_secs(5), waiter).await??;
    // Already satisfied: returns at once.
    tokio::time::timeout(Duration::from_secs(5), log.wait_beyond(Offset(0))).await?;
    assert!(
        tokio::time::timeout(Duration::from_millis(20), log.wait_beyond(Offset(1)))
            .await
            .is_err()
    );
    let pending = tokio::spawn({
        let log = log.clone();
        async move { log.wait_beyond(Offset(100)).await }
    });
    log.close().await?;
    tokio::time::timeout(Duration::from_secs(5), pending).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_gives_concurrent_appends_dense_distinct_offsets() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(small_segments(dir.path(), 64 * 1024))?;
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..50u64 {
                let offset = log.append(record(t * 1000 + i, 100)).await?;
                got.push((offset, t * 1000 + i));
            }
            Ok::<_, Error>(got)
        }));
    }
    let mut seen = HashSet::new();
    let mut by_offset = std::collections::HashMap::new();
    for task in tasks {
        for (offset, id) in task.await?? {
            assert!(seen.insert(offset), "offset {offset:?} given twice");
            by_offset.insert(offset.0, id);
        }
    }
    assert_eq!(seen.len(), 32 * 50);
    assert_eq!(log.end_offset(), Offset(32 * 50));
    assert!((0..32 * 50).all(|o| seen.contains(&Offset(o))));
    for (offset, rec) in read_all(&log, 0).await? {
        assert_eq!(*rec, record(by_offset[&offset.0], 100));
    }
    log.close().await?;
    Ok(())
}

// ---- consumer offsets ----

#[tokio::test]
async fn consumer_offsets_survive_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(config(dir.path()))?;
    append_n(&log, 0, 10, 10).await?;
    assert_eq!(log.committed_offset("router"), None);
    log.commit_offset("router", Offset(4))?;
    log.commit_offset("router", Offset(7))?;
    log.commit_offset("session/a", Offset(2))?;
    log.commit_offset("session/b", Offset(3))?;
    log.remove_consumer("session/b")?;
    assert_eq!(log.committed_offset("router"), Some(Offset(7)));
    log.close().await?;
    assert!(matches!(
        log.commit_offset("router", Offset(8)),
        Err(Error::Closed)
    ));

    let log = Log::open(config(dir.path()))?;
    assert_eq!(log.committed_offset("router"), Some(Offset(7)));
    assert_eq!(log.committed_offset("session/a"), Some(Offset(2)));
    assert_eq!(log.committed_offset("session/b"), None);
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn many_consumers_commit_and_journal_compacts() -> TestResult {
    let dir = tempfile::tempdir()?;
    let tuning = LogTuning {
        offsets_flush_interval: Duration::from_millis(1),
        ..LogTuning::default()
    };
    let log = Log::open_with(config(dir.path()), tuning.clone())?;
    for round in 0..40u64 {
        for c in 0..1000u64 {
            log.commit_offset(&format!("session/{c}"), Offset(round * 1000 + c))?;
        }
        log.append(record(round, 10)).await?; // a batch, which flushes offsets
    }
    log.close().await?;
    let journal = std::fs::metadata(dir.path().join("consumers.journal"))?.len();
    assert!(
        journal < 2 * 1024 * 1024,
        "journal not compacted: {journal} bytes"
    );
    let log = Log::open_with(config(dir.path()), tuning)?;
    for c in 0..1000u64 {
        assert_eq!(
            log.committed_offset(&format!("session/{c}")),
            Some(Offset(39 * 1000 + c))
        );
    }
    log.close().await?;
    Ok(())
}
