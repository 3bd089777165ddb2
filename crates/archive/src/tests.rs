use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType, UInt32Type};

use super::*;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

const DAY_MS: i64 = 86_400_000;

fn row(owner: &str, time_ms: i64, seq: u32, value: f64) -> Row {
    Row {
        owner: owner.into(),
        device: "watch".into(),
        message_id: format!("{:032x}", time_ms),
        seq,
        name: "hr".into(),
        unit: Some("beat/min".into()),
        time_ms,
        value: Some(value),
        text: None,
        bool: None,
        data: None,
        sum: None,
    }
}

#[test]
fn days_are_utc_calendar_days() {
    // Reference dates from Python's datetime.
    for (ms, want) in [
        (0, "1970-01-01"),
        (-1, "1969-12-31"),
        (951_782_400_000, "2000-02-29"),
        (951_868_799_999, "2000-02-29"),
        (1_790_000_000_000, "2026-09-21"),
        (4_102_444_800_000, "2100-01-01"),
        (253_402_300_799_999, "9999-12-31"),
        (-62_135_596_800_000, "0001-01-01"),
    ] {
        assert_eq!(day(ms), want, "{ms}");
    }
}

#[test]
fn consecutive_days_never_repeat_or_skip() {
    // Every day from 1900 to 2200 follows its predecessor in the calendar.
    let mut previous = day(-2_208_988_800_000 - DAY_MS);
    for n in 0..(300 * 366) {
        let today = day(-2_208_988_800_000 + n * DAY_MS);
        assert!(today > previous, "{previous} then {today}");
        previous = today;
    }
}

fn read_file(path: &Path) -> std::result::Result<Vec<RecordBatch>, Box<dyn std::error::Error>> {
    let file = std::fs::File::open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

use arrow_array::RecordBatch;

#[tokio::test]
async fn rows_land_in_one_file_per_owner_and_day() -> TestResult {
    let dir = tempfile::tempdir()?;
    let archive = Archive::open(&ArchiveConfig::default(), dir.path())?;
    archive.check().await?;
    let base = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS; // 2026-09-21T00:00Z
    let rows = vec![
        row("ann", base + 2_000, 0, 62.0),
        row("ann", base + 1_000, 0, 61.0),
        row("ann", base + DAY_MS, 1, 70.0),
        row("bob", base + 5, 0, 50.0),
    ];
    let written = archive.write(&rows).await?;
    assert_eq!(written.rows, 4);
    // Named after the first row's key, then a digest of all the rows' keys.
    let names: Vec<String> = written
        .files
        .iter()
        .map(|f| {
            f.rsplit_once('-')
                .map_or(f.clone(), |(name, _)| name.to_owned())
        })
        .collect();
    assert_eq!(
        names,
        [
            format!("owner=ann/date=2026-09-21/part-{:032x}-0", base + 1_000),
            format!("owner=ann/date=2026-09-22/part-{:032x}-1", base + DAY_MS),
            format!("owner=bob/date=2026-09-21/part-{:032x}-0", base + 5),
        ]
    );
    assert!(written.files.iter().all(|f| f.ends_with(".parquet")));
    let root = dir.path().join(DEFAULT_DIR);
    let batches = read_file(&root.join(&written.files[0]))?;
    let batch = &batches[0];
    assert_eq!(batch.num_rows(), 2);
    let times = batch.column(5).as_primitive::<TimestampMillisecondType>();
    assert_eq!(
        times.values().to_vec(),
        vec![base + 1_000, base + 2_000],
        "sorted by time"
    );
    let values = batch.column(6).as_primitive::<Float64Type>();
    assert_eq!(values.values().to_vec(), vec![61.0, 62.0]);
    let seqs = batch.column(2).as_primitive::<UInt32Type>();
    assert_eq!(seqs.values().to_vec(), vec![0, 0]);
    assert_eq!(batch.column(0).as_string::<i32>().value(0), "watch");
    // No temporary file is left beside the data.
    let leftovers: Vec<_> = std::fs::read_dir(root.join("owner=ann/date=2026-09-21"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
    Ok(())
}

#[test]
fn every_value_kind_survives_the_round_trip() -> TestResult {
    let mut rows = vec![row("ann", 1_000, 0, 1.5)];
    rows.push(Row {
        value: None,
        text: Some("asleep".into()),
        unit: None,
        seq: 1,
        ..rows[0].clone()
    });
    rows.push(Row {
        value: None,
        bool: Some(true),
        seq: 2,
        ..rows[0].clone()
    });
    rows.push(Row {
        value: None,
        data: Some(vec![0, 255, 7]),
        sum: Some(42.0),
        seq: 3,
        ..rows[0].clone()
    });
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("x.parquet");
    std::fs::write(&path, parquet_file::encode(&rows)?)?;
    let batches = read_file(&path)?;
    let batch = &batches[0];
    assert_eq!(batch.schema(), parquet_file::schema());
    assert!(batch.column(4).is_null(1), "unit");
    assert_eq!(batch.column(7).as_string::<i32>().value(1), "asleep");
    assert!(batch.column(8).as_boolean().value(2));
    assert_eq!(batch.column(9).as_binary::<i32>().value(3), [0, 255, 7]);
    assert_eq!(
        batch.column(10).as_primitive::<Float64Type>().value(3),
        42.0
    );
    assert!(batch.column(6).is_null(3), "value");
    Ok(())
}

#[test]
fn a_streamed_file_is_one_row_group_per_write() -> TestResult {
    let mut writer = parquet_file::ParquetWriter::new()?;
    let mut bytes = Vec::new();
    for page in 0..3 {
        let rows: Vec<Row> = (0..100)
            .map(|i| row("ann", page * 1_000 + i, 0, i as f64))
            .collect();
        writer.write(&rows)?;
        bytes.extend(writer.take());
    }
    bytes.extend(writer.finish()?);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("s.parquet");
    std::fs::write(&path, bytes)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path)?)?;
    assert_eq!(builder.metadata().num_row_groups(), 3);
    let total: usize = read_file(&path)?.iter().map(|b| b.num_rows()).sum();
    assert_eq!(total, 300);
    Ok(())
}

#[test]
fn bad_urls_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    for url in ["http://example.com/x", "s3://", "gs://bucket"] {
        let config = ArchiveConfig {
            url: Some(url.into()),
            ..ArchiveConfig::default()
        };
        let error = Archive::open(&config, dir.path())
            .expect_err(url)
            .to_string();
        assert!(error.contains(url), "{error}");
    }
}

#[tokio::test]
async fn a_row_read_twice_is_written_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let archive = Archive::open(&ArchiveConfig::default(), dir.path())?;
    let twice = row("ann", 5_000, 0, 1.0);
    let rows = vec![twice.clone(), row("ann", 6_000, 0, 2.0), twice];
    let written = archive.write(&rows).await?;
    assert_eq!((written.rows, written.files.len()), (2, 1));
    let batches = read_file(&dir.path().join(DEFAULT_DIR).join(&written.files[0]))?;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    Ok(())
}

#[tokio::test]
async fn a_batch_starting_at_a_row_already_archived_keeps_the_others_file() -> TestResult {
    // After a rebalance, a partition read again from its last commit starts
    // a batch at a row that an earlier batch, with another partition's
    // committed rows, began with: that file must stay.
    let dir = tempfile::tempdir()?;
    let archive = Archive::open(&ArchiveConfig::default(), dir.path())?;
    let again = row("ann", 5_000, 0, 1.0);
    let first = archive
        .write(&[again.clone(), row("ann", 6_000, 0, 2.0)])
        .await?;
    let second = archive
        .write(&[again.clone(), row("ann", 7_000, 0, 3.0)])
        .await?;
    assert_ne!(first.files, second.files);
    let root = dir.path().join(DEFAULT_DIR);
    let mut rows = 0;
    for file in first.files.iter().chain(&second.files) {
        rows += read_file(&root.join(file))?
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>();
    }
    assert_eq!(
        rows, 4,
        "both files whole: the repeated row is dropped by key when read"
    );

    // The very same rows written again (a crash before the commit) replace
    // their own file.
    let repeat = archive.write(&[again, row("ann", 6_000, 0, 2.0)]).await?;
    assert_eq!(repeat.files, first.files);
    Ok(())
}
