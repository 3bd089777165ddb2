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

/// Several submissions in flight from one caller keep its order: the
/// broker relies on this to pipeline a client's publishes.
#[tokio::test]
async fn submissions_in_flight_keep_their_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(config(dir.path()))?;
    let mut pending = Vec::new();
    for batch in 0..50u64 {
        let records = (0..3).map(|i| record(batch * 3 + i, 20)).collect();
        match log.try_submit(records) {
            Ok(submitted) => pending.push(submitted),
            Err(e) => return Err(format!("submit {batch}: {e:?}").into()),
        }
    }
    let mut firsts = Vec::new();
    for submitted in pending {
        firsts.push(submitted.await?);
    }
    assert_eq!(firsts, (0..50).map(|b| Offset(b * 3)).collect::<Vec<_>>());
    for (offset, rec) in read_all(&log, 0).await? {
        assert_eq!(*rec, record(offset.0, 20));
    }
    log.close().await?;
    assert!(matches!(
        log.try_submit(vec![record(0, 1)]),
        Err(crate::SubmitError::Closed)
    ));
    Ok(())
}

#[tokio::test]
async fn a_directory_is_opened_by_one_log_at_a_time() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(config(dir.path()))?;
    let tuning = LogTuning {
        lock_wait: Duration::from_millis(50),
        ..LogTuning::default()
    };
    match Log::open_with(config(dir.path()), tuning.clone()) {
        Err(Error::Locked { dir: locked }) => {
            assert_eq!(locked, dir.path().display().to_string())
        }
        other => panic!("expected a lock error, got {other:?}"),
    }
    log.close().await?;
    // Closed: the directory is free at once.
    let log = Log::open_with(config(dir.path()), tuning)?;
    drop(log);
    // Dropped: free once the writer has finished.
    let log = Log::open(config(dir.path()))?;
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
    let stats = log.stats();
    assert_eq!(stats.records_appended, 32 * 50);
    assert!(
        stats.fsyncs < stats.records_appended,
        "no batching: {stats:?}"
    );
    assert_eq!(log.end_offset(), Offset(32 * 50));
    assert!((0..32 * 50).all(|o| seen.contains(&Offset(o))));
    for (offset, rec) in read_all(&log, 0).await? {
        assert_eq!(*rec, record(by_offset[&offset.0], 100));
    }
    log.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tailing_reader_sees_every_record_once_in_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let tuning = LogTuning {
        cache_bytes: 4096,
        ..LogTuning::default()
    };
    let log = Log::open_with(small_segments(dir.path(), 8192), tuning)?;
    let total = 2000u64;
    let reader = tokio::spawn({
        let log = log.clone();
        async move {
            let mut next = 0u64;
            while next < total {
                log.wait_beyond(Offset(next)).await;
                for (offset, rec) in log.read(Offset(next), 100).await? {
                    assert_eq!(offset, Offset(next));
                    assert!(offset < log.end_offset());
                    assert_eq!(rec.payload.len(), 20);
                    next += 1;
                }
            }
            Ok::<_, Error>(next)
        }
    });
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..total / 4 {
                    log.append(record(w * total + i, 20)).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), reader).await???,
        total
    );
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
async fn removing_a_consumer_twice_keeps_it_removed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(config(dir.path()))?;
    log.commit_offset("session/a", Offset(0))?;
    log.close().await?;
    let log = Log::open(config(dir.path()))?;
    log.remove_consumer("session/a")?;
    log.remove_consumer("session/a")?;
    log.close().await?;
    let log = Log::open(config(dir.path()))?;
    assert_eq!(log.committed_offset("session/a"), None);
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

// ---- crash recovery ----

#[tokio::test]
async fn torn_tail_is_truncated_at_every_byte_position() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(config(dir.path()))?;
    append_n(&log, 0, 5, 30).await?;
    log.close().await?;
    let path = segment_files(dir.path()).pop().ok_or("no segment")?;
    let full = std::fs::read(&path)?;
    let last_len = record::frame_len(&record(4, 30));
    let last_start = full.len() - last_len;
    for cut in last_start..full.len() {
        std::fs::write(&path, &full[..cut])?;
        let log = Log::open(config(dir.path()))?;
        assert_eq!(log.end_offset(), Offset(4), "cut at {cut}");
        let all = read_all(&log, 0).await?;
        assert_eq!(all.len(), 4);
        for (offset, rec) in all {
            assert_eq!(*rec, record(offset.0, 30));
        }
        assert_eq!(
            std::fs::metadata(&path)?.len(),
            last_start as u64,
            "truncated at cut {cut}"
        );
        // The log goes on at the right offset.
        assert_eq!(log.append(record(4, 30)).await?, Offset(4));
        log.close().await?;
    }
    Ok(())
}

#[tokio::test]
async fn corrupt_crc_at_the_tail_is_truncated() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(config(dir.path()))?;
    append_n(&log, 0, 5, 30).await?;
    log.close().await?;
    let path = segment_files(dir.path()).pop().ok_or("no segment")?;
    let mut bytes = std::fs::read(&path)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // payload byte of the last record
    std::fs::write(&path, &bytes)?;
    let log = Log::open(config(dir.path()))?;
    assert_eq!(log.end_offset(), Offset(4));
    assert_eq!(read_all(&log, 0).await?.len(), 4);
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn garbage_after_the_tail_is_truncated() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(config(dir.path()))?;
    append_n(&log, 0, 3, 30).await?;
    log.close().await?;
    let path = segment_files(dir.path()).pop().ok_or("no segment")?;
    let mut bytes = std::fs::read(&path)?;
    bytes.extend_from_slice(&[0xff; 100]);
    std::fs::write(&path, &bytes)?;
    let log = Log::open(config(dir.path()))?;
    assert_eq!(log.end_offset(), Offset(3));
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn corruption_in_a_sealed_segment_fails_the_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(small_segments(dir.path(), 1024))?;
    append_n(&log, 0, 30, 100).await?;
    log.close().await?;
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "expected several segments, got {files:?}");
    let mut bytes = std::fs::read(&files[0])?;
    bytes[100] ^= 0x01;
    std::fs::write(&files[0], &bytes)?;
    match Log::open(small_segments(dir.path(), 1024)) {
        Err(Error::Corrupt(what)) => {
            assert!(what.contains("00000000000000000000.log"), "{what}");
            assert!(what.contains("at byte 0"), "{what}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn corruption_far_before_the_end_of_the_active_segment_fails_the_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(config(dir.path()))?;
    append_n(&log, 0, 30, 100).await?;
    log.close().await?;
    let path = segment_files(dir.path()).pop().ok_or("no segment")?;
    let mut bytes = std::fs::read(&path)?;
    bytes[20] ^= 0x01;
    std::fs::write(&path, &bytes)?;
    let tuning = LogTuning {
        max_batch_bytes: 1024,
        ..LogTuning::default()
    };
    match Log::open_with(config(dir.path()), tuning) {
        Err(Error::Corrupt(what)) => assert!(what.contains("at byte 0"), "{what}"),
        other => panic!("expected corruption, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn crash_keeps_acknowledged_records_and_only_committed_offsets() -> TestResult {
    let dir = tempfile::tempdir()?;
    let tuning = LogTuning {
        offsets_flush_interval: Duration::from_secs(3600),
        ..LogTuning::default()
    };
    let log = Log::open_with(config(dir.path()), tuning.clone())?;
    log.commit_offset("router", Offset(0))?;
    log.close().await?;
    let log = Log::open_with(config(dir.path()), tuning.clone())?;
    append_n(&log, 0, 20, 50).await?;
    log.commit_offset("router", Offset(15))?; // not yet persisted
    log.crash().await;
    let log = Log::open_with(config(dir.path()), tuning)?;
    assert_eq!(log.end_offset(), Offset(20));
    assert_eq!(log.committed_offset("router"), Some(Offset(0)));
    log.close().await?;
    Ok(())
}

// ---- segments, cache and disk ----

#[tokio::test]
async fn segments_roll_and_reads_cross_them_from_cache_and_disk_alike() -> TestResult {
    let dir = tempfile::tempdir()?;
    // A cache of a few records: most reads go to disk, the newest to the cache.
    let tuning = LogTuning {
        cache_bytes: 2000,
        index_interval_bytes: 300,
        ..LogTuning::default()
    };
    let log = Log::open_with(small_segments(dir.path(), 2048), tuning.clone())?;
    for i in 0..200u64 {
        log.append(record(i, (i as usize * 37) % 300)).await?;
    }
    assert!(segment_files(dir.path()).len() > 10);
    let expected: Vec<Record> = (0..200u64)
        .map(|i| record(i, (i as usize * 37) % 300))
        .collect();
    let mut from_everywhere = Vec::new();
    for from in [0u64, 1, 17, 99, 150, 190, 199] {
        let got = read_all(&log, from).await?;
        assert_eq!(got.len() as u64, 200 - from);
        for (offset, rec) in &got {
            assert_eq!(**rec, expected[offset.0 as usize]);
        }
        from_everywhere.push(got);
    }
    // One read spanning disk and cache.
    let span = log.read(Offset(180), 20).await?;
    assert_eq!(span.len(), 20);
    log.close().await?;

    // Reopened, everything comes from disk (the cache starts empty).
    let log = Log::open_with(small_segments(dir.path(), 2048), tuning)?;
    for got in from_everywhere {
        let from = got[0].0;
        assert_eq!(read_all(&log, from.0).await?, got);
    }
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_big_cache_serves_reads_equal_to_disk() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(small_segments(dir.path(), 4096))?;
    append_n(&log, 0, 100, 80).await?;
    let cached = read_all(&log, 0).await?;
    log.close().await?;
    let log = Log::open(small_segments(dir.path(), 4096))?;
    assert_eq!(read_all(&log, 0).await?, cached);
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn read_limits_bytes_from_disk_but_returns_at_least_one() -> TestResult {
    let dir = tempfile::tempdir()?;
    let tuning = LogTuning {
        cache_bytes: 0,
        read_max_bytes: 1,
        ..LogTuning::default()
    };
    let log = Log::open_with(config(dir.path()), tuning)?;
    append_n(&log, 0, 10, 500).await?;
    assert_eq!(log.read(Offset(3), 5).await?.len(), 1);
    assert_eq!(read_all(&log, 0).await?.len(), 10);
    log.close().await?;
    Ok(())
}

// ---- retention ----

fn total_segment_bytes(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

#[tokio::test]
async fn retention_by_size_deletes_the_oldest_segments() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        max_bytes: 8192,
        ..small_segments(dir.path(), 2048)
    };
    let log = Log::open(config.clone())?;
    append_n(&log, 0, 300, 100).await?;
    let start = log.start_offset();
    assert!(start.0 > 0, "nothing deleted");
    assert!(log.stats().segments_deleted > 0);
    assert!(total_segment_bytes(dir.path()) <= 8192 + 2048);
    assert!(matches!(
        log.read(Offset(0), 1).await,
        Err(Error::OffsetOutOfRange { requested: 0, start: s }) if s == start.0
    ));
    let kept = read_all(&log, start.0).await?;
    assert_eq!(kept.len() as u64, 300 - start.0);
    log.close().await?;
    let log = Log::open(config)?;
    assert_eq!(log.start_offset(), start);
    assert_eq!(log.end_offset(), Offset(300));
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_yielding_consumer_loses_its_oldest_records_instead_of_filling_the_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        max_bytes: 8192,
        ..small_segments(dir.path(), 2048)
    };
    let log = Log::open(config)?;
    log.let_consumers_yield(&["session/"]);
    log.commit_offset("session/away", Offset(0))?;
    for i in 0..300 {
        assert_eq!(
            log.append(record(i, 100)).await?,
            Offset(i),
            "never refused"
        );
    }
    let start = log.start_offset();
    assert!(start.0 > 0, "its oldest records were deleted");
    assert!(matches!(
        log.read(Offset(0), 1).await,
        Err(Error::OffsetOutOfRange { requested: 0, start: s }) if s == start.0
    ));
    // Any other consumer still holds retention back.
    log.commit_offset("pipeline", start)?;
    let mut full = None;
    for _ in 0..1000 {
        if let Err(e) = log.append(record(0, 100)).await {
            full = Some(e);
            break;
        }
    }
    let full = full.expect("refused once full");
    assert!(
        matches!(full, Error::Full { ref consumer, .. } if consumer == "pipeline"),
        "{full:?}"
    );
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_lagging_consumer_protects_its_segments_and_fills_the_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        max_bytes: 8192,
        ..small_segments(dir.path(), 2048)
    };
    let log = Log::open(config)?;
    log.commit_offset("slow", Offset(0))?;
    let mut appended = 0u64;
    let full = loop {
        match log.append(record(appended, 100)).await {
            Ok(offset) => assert_eq!(offset, Offset(appended)),
            Err(e) => break e,
        }
        appended += 1;
        assert!(appended < 1000, "never full");
    };
    match full {
        Error::Full { bytes, consumer } => {
            assert_eq!(consumer, "slow");
            assert_eq!(log.stats().full_rejections, 1);
            assert!(bytes <= 8192 && bytes > 8192 - 2048, "{bytes}");
        }
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(log.start_offset(), Offset(0));
    assert_eq!(read_all(&log, 0).await?.len() as u64, appended);
    // The consumer catches up: its segments go, appends resume.
    log.commit_offset("slow", Offset(appended))?;
    assert_eq!(log.append(record(appended, 100)).await?, Offset(appended));
    assert!(log.start_offset().0 > 0);
    // A removed consumer protects nothing.
    log.commit_offset("gone", log.start_offset())?;
    log.remove_consumer("gone")?;
    log.remove_consumer("slow")?;
    for i in appended + 1..appended + 100 {
        log.append(record(i, 100)).await?;
    }
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn retention_by_age_deletes_old_sealed_segments_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        max_age: Some(Duration::from_secs(3600)),
        ..small_segments(dir.path(), 1024)
    };
    let log = Log::open(config)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    // Old records (from 2023) fill several segments, then fresh ones.
    append_n(&log, 0, 30, 100).await?;
    log.commit_offset("reader", Offset(40))?;
    for i in 30..60u64 {
        log.append(Record {
            receive_time_ms: now_ms,
            ..record(i, 100)
        })
        .await?;
    }
    let start = log.start_offset().0;
    assert!(
        (25..=30).contains(&start),
        "old segments kept or fresh deleted: start {start}"
    );
    // Fresh records stay; the consumer protects offsets from 40.
    assert_eq!(read_all(&log, start).await?.len() as u64, 60 - start);
    log.close().await?;
    Ok(())
}

// ---- model-based property test ----

mod model {
    //! Random operations against the log and against an in-memory model
    //! (the records in offset order and the committed offsets); after each
    //! operation the two must agree.

    use std::collections::{HashMap, HashSet};
    use std::io::Write;
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::{read_all, record, segment_files};
    use crate::record as codec;
    use crate::{Log, LogConfig, LogTuning, Offset, Record};

    #[derive(Debug, Clone)]
    enum Torn {
        /// The crash hit between writes.
        Nothing,
        /// Random bytes after the last frame.
        Garbage(Vec<u8>),
        /// The first `cut` bytes of a frame of this payload size.
        PartialFrame { payload: usize, cut: Index },
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Concurrent single appends with these payload sizes.
        Append(Vec<usize>),
        AppendBatch(Vec<usize>),
        Read {
            from: Index,
            max: usize,
        },
        Commit {
            consumer: u8,
            next: Index,
        },
        Remove {
            consumer: u8,
        },
        Restart,
        Crash(Torn),
    }

    fn torn() -> impl Strategy<Value = Torn> {
        prop_oneof![
            Just(Torn::Nothing),
            prop::collection::vec(any::<u8>(), 1..200).prop_map(Torn::Garbage),
            (0usize..300, any::<Index>())
                .prop_map(|(payload, cut)| Torn::PartialFrame { payload, cut }),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let sizes = || prop::collection::vec(0usize..300, 1..8);
        prop_oneof![
            4 => sizes().prop_map(Op::Append),
            2 => sizes().prop_map(Op::AppendBatch),
            3 => (any::<Index>(), 1usize..20).prop_map(|(from, max)| Op::Read { from, max }),
            3 => (0u8..3, any::<Index>()).prop_map(|(consumer, next)| Op::Commit { consumer, next }),
            1 => (0u8..3).prop_map(|consumer| Op::Remove { consumer }),
            1 => Just(Op::Restart),
            1 => torn().prop_map(Op::Crash),
        ]
    }

    #[derive(Default)]
    struct Model {
        records: Vec<Record>,
        committed: HashMap<String, u64>,
        /// Every offset each consumer ever committed: after a crash the log
        /// may show any of them (an older one), never another.
        history: HashMap<String, HashSet<u64>>,
        /// Consumers removed at some point: a later, lower commit may be
        /// lost in a crash while an earlier, higher one survives.
        removed: HashSet<String>,
    }

    /// Unique record ids across cases, so a misplaced record is noticed.
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);

    fn fresh(payload: usize) -> Record {
        record(NEXT_ID.fetch_add(1, Ordering::Relaxed), payload)
    }

    fn open(dir: &Path) -> Log {
        let config = LogConfig {
            dir: dir.to_owned(),
            segment_bytes: 1024,
            max_bytes: 1 << 30,
            max_age: None,
        };
        let tuning = LogTuning {
            cache_bytes: 4096,
            index_interval_bytes: 256,
            offsets_flush_interval: Duration::from_millis(2),
            ..LogTuning::default()
        };
        Log::open_with(config, tuning).expect("open the log")
    }

    async fn check_all(log: &Log, model: &Model) {
        assert_eq!(log.end_offset(), Offset(model.records.len() as u64));
        let all = read_all(log, 0).await.expect("read everything");
        assert_eq!(all.len(), model.records.len());
        for (offset, rec) in all {
            assert_eq!(
                *rec, model.records[offset.0 as usize],
                "record at {offset:?}"
            );
        }
    }

    async fn run(ops: Vec<Op>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut log = open(dir.path());
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Append(sizes) => {
                    let records: Vec<Record> = sizes.into_iter().map(fresh).collect();
                    let tasks: Vec<_> = records
                        .iter()
                        .cloned()
                        .map(|r| {
                            let log = log.clone();
                            tokio::spawn(async move { log.append(r).await })
                        })
                        .collect();
                    let mut placed = Vec::new();
                    for (task, rec) in tasks.into_iter().zip(records) {
                        let offset = task.await.expect("append task").expect("append");
                        placed.push((offset, rec));
                    }
                    placed.sort_by_key(|(offset, _)| *offset);
                    for (offset, rec) in placed {
                        assert_eq!(offset, Offset(model.records.len() as u64), "offsets dense");
                        model.records.push(rec);
                    }
                }
                Op::AppendBatch(sizes) => {
                    let records: Vec<Record> = sizes.into_iter().map(fresh).collect();
                    let first = log
                        .append_batch(records.clone())
                        .await
                        .expect("append batch");
                    assert_eq!(first, Offset(model.records.len() as u64));
                    model.records.extend(records);
                }
                Op::Read { from, max } => {
                    let end = model.records.len();
                    let from = from.index(end + 2);
                    let got = log.read(Offset(from as u64), max).await.expect("read");
                    let want = model
                        .records
                        .get(from..(from + max).min(end))
                        .unwrap_or(&[]);
                    assert_eq!(got.len(), want.len(), "read {max} from {from}");
                    for ((offset, rec), (i, want)) in got.iter().zip(want.iter().enumerate()) {
                        assert_eq!(*offset, Offset((from + i) as u64));
                        assert_eq!(**rec, *want);
                    }
                }
                Op::Commit { consumer, next } => {
                    let name = format!("consumer-{consumer}");
                    // Consumers move forward.
                    let floor = model.committed.get(&name).copied().unwrap_or(0);
                    let next = (next.index(model.records.len() + 1) as u64).max(floor);
                    log.commit_offset(&name, Offset(next)).expect("commit");
                    model.committed.insert(name.clone(), next);
                    model.history.entry(name).or_default().insert(next);
                }
                Op::Remove { consumer } => {
                    let name = format!("consumer-{consumer}");
                    log.remove_consumer(&name).expect("remove");
                    model.committed.remove(&name);
                    model.removed.insert(name);
                }
                Op::Restart => {
                    log.close().await.expect("close");
                    drop(log);
                    log = open(dir.path());
                    check_all(&log, &model).await;
                }
                Op::Crash(torn) => {
                    log.crash().await;
                    let active = segment_files(dir.path()).pop().expect("a segment");
                    let mut file = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&active)
                        .expect("open segment");
                    match torn {
                        Torn::Nothing => {}
                        Torn::Garbage(bytes) => file.write_all(&bytes).expect("write garbage"),
                        Torn::PartialFrame { payload, cut } => {
                            let mut frame = Vec::new();
                            codec::encode(model.records.len() as u64, &fresh(payload), &mut frame);
                            let cut = 1 + cut.index(frame.len() - 1);
                            file.write_all(&frame[..cut]).expect("write partial frame");
                        }
                    }
                    drop(file);
                    log = open(dir.path());
                    check_all(&log, &model).await;
                    // Offsets: committed ones (possibly older), never invented.
                    for c in 0..3u8 {
                        let name = format!("consumer-{c}");
                        let got = log.committed_offset(&name).map(|o| o.0);
                        if let Some(got) = got {
                            let history = model.history.get(&name);
                            assert!(
                                history.is_some_and(|h| h.contains(&got)),
                                "{name} at {got} never committed"
                            );
                            if let (Some(want), false) =
                                (model.committed.get(&name), model.removed.contains(&name))
                            {
                                assert!(got <= *want, "{name} at {got} beyond {want}");
                            }
                            model.committed.insert(name, got);
                        } else {
                            model.committed.remove(&name);
                        }
                    }
                }
            }
            assert_eq!(log.end_offset(), Offset(model.records.len() as u64));
            for c in 0..3u8 {
                let name = format!("consumer-{c}");
                assert_eq!(
                    log.committed_offset(&name).map(|o| o.0),
                    model.committed.get(&name).copied(),
                    "{name}"
                );
            }
        }
        log.close().await.expect("close");
        let log = open(dir.path());
        check_all(&log, &model).await;
        log.close().await.expect("close");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn log_agrees_with_model(ops in prop::collection::vec(op(), 1..40)) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("test runtime");
            runtime.block_on(run(ops));
        }
    }
}

/// The backend-neutral test body (`conformance`), on the embedded log; the
/// Kafka backend runs the same body in `tributary-kafka`.
#[tokio::test]
async fn embedded_log_passes_the_stream_conformance_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(LogConfig::new(dir.path())).expect("open");
    crate::conformance::consume_commit_resume(&log, "embedded")
        .await
        .expect("conformance");
    crate::conformance::read_to_end(&log, "embedded")
        .await
        .expect("read to end");
    log.close().await.expect("close");
}

/// The consumer-lag body of `conformance` on the embedded log (Kafka runs it in `tributary-kafka`).
#[tokio::test]
async fn embedded_consumer_lag_counts_unread_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(LogConfig::new(dir.path())).expect("open");
    crate::conformance::lag_counts_unread_records(&log, "embedded-lag")
        .await
        .expect("lag");
    log.close().await.expect("close");
}

/// Each of the log's errors reaches a stream consumer as the kind its
/// callers decide on, with the log's error kept as the source.
#[test]
fn log_errors_map_to_the_stream_error_of_who_is_at_fault() {
    use crate::StreamError;

    let kind = |e: Error| match StreamError::from(e) {
        StreamError::Unavailable(_) => "unavailable",
        StreamError::PositionGone(_) => "position gone",
        StreamError::Closed(_) => "closed",
        StreamError::Storage(_) => "storage",
        StreamError::Invalid(_) => "invalid",
    };
    let full = Error::Full {
        bytes: 10,
        consumer: "pipeline".into(),
    };
    assert_eq!(kind(full), "unavailable");
    let gone = Error::OffsetOutOfRange {
        requested: 3,
        start: 10,
    };
    assert_eq!(kind(gone), "position gone");
    assert_eq!(kind(Error::Closed), "closed");
    assert_eq!(kind(Error::Corrupt("segment 0 at 12".into())), "storage");
    let disk = std::io::Error::other("disk on fire");
    assert_eq!(kind(Error::io("read segment", disk)), "storage");
    let name = std::io::Error::new(std::io::ErrorKind::InvalidInput, "name too long");
    assert_eq!(kind(Error::io("commit consumer offset", name)), "invalid");

    let e = StreamError::from(Error::Closed);
    assert!(!e.is_retryable());
    assert_eq!(e.to_string(), "log is closed");
    let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<Error>());
    assert!(matches!(source, Some(Error::Closed)), "{source:?}");
    assert!(StreamError::from(Error::Full {
        bytes: 10,
        consumer: "pipeline".into()
    })
    .is_retryable());
}

/// Regression: a consumer that had read everything of a closed log spun in
/// `next` (`wait_beyond` returns at once once the log is closed) instead of
/// saying the log is closed.
#[tokio::test]
async fn a_consumer_of_a_closed_log_reads_what_was_durable_then_is_told_it_is_closed() -> TestResult
{
    use crate::{Stream, StreamConsumer, StreamError};

    let dir = tempfile::tempdir()?;
    let log = Log::open(LogConfig::new(dir.path()))?;
    log.append_batch((0..3).map(|i| record(i, 10)).collect())
        .await?;
    let mut consumer = log.consumer("reader")?;
    log.close().await?;
    let patience = Duration::from_secs(5);
    let batch = tokio::time::timeout(patience, consumer.next(10)).await??;
    assert_eq!(batch.len(), 3);
    let after = tokio::time::timeout(patience, consumer.next(10)).await?;
    assert!(matches!(after, Err(StreamError::Closed(_))), "{after:?}");
    Ok(())
}

/// A consumer whose position retention deleted is told the position is
/// gone, not that the log is away.
#[tokio::test]
async fn reading_a_deleted_position_is_position_gone() -> TestResult {
    use crate::{Stream, StreamConsumer, StreamError};

    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        max_bytes: 8192,
        ..small_segments(dir.path(), 2048)
    };
    let log = Log::open(config)?;
    // Never committed, so it protects nothing from retention.
    let mut consumer = log.consumer("late")?;
    append_n(&log, 0, 300, 100).await?;
    assert!(log.start_offset() > Offset(0), "retention deleted nothing");
    let result = consumer.next(10).await;
    assert!(
        matches!(result, Err(StreamError::PositionGone(_))),
        "{result:?}"
    );
    assert!(!result.is_err_and(|e| e.is_retryable()));
    log.close().await?;
    Ok(())
}

#[test]
fn a_message_id_reads_back_from_its_32_hex_digits_and_nothing_else() {
    let id = MessageId(0xabc);
    let text = id.to_string();
    assert_eq!(text, "00000000000000000000000000000abc");
    assert_eq!(text.parse::<MessageId>(), Ok(id));
    // As JSON (a string), in cluster::directory's tests of the broker.
    for bad in [
        "abc",
        "+0000000000000000000000000000abc",
        &"g".repeat(32),
        "",
    ] {
        assert!(bad.parse::<MessageId>().is_err(), "{bad:?}");
    }
}
