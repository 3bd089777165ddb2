//! Erasure in the archive (docs/erasure.md): an owner's partitions deleted
//! whole, or their files rewritten without a device's rows or a time range.
//! A rewritten file keeps its name: the new bytes replace the old ones
//! atomically (local: temporary name and rename; S3: one PUT), so a reader
//! sees the old file or the new one, never a part.

use arrow_array::{Array, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray};
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use crate::{day, Archive, Error, Result, Target};

/// What is to go: `owner`'s rows, of `device` only when given, with a time
/// in `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erase<'a> {
    pub owner: &'a str,
    pub device: Option<&'a str>,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// What an erasure did to the archive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub files_deleted: u64,
    pub files_rewritten: u64,
    pub rows: u64,
}

impl Archive {
    /// Deletes every file of `owner` (the whole account).
    pub async fn erase_owner(&self, owner: &str) -> Result<Erased> {
        let mut erased = Erased::default();
        for file in self.files_of(owner).await? {
            self.delete(&file).await?;
            erased.files_deleted += 1;
        }
        if let Target::Local(dir) = &self.target {
            // The empty partition directories too: nothing named after the
            // owner is left.
            let owner_dir = dir.join(format!("owner={owner}"));
            match std::fs::remove_dir_all(&owner_dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(Error::Local {
                        path: owner_dir,
                        source,
                    })
                }
            }
        }
        Ok(erased)
    }

    /// Rewrites the owner's files of the days `erase` touches without the
    /// rows it covers; a file left empty is deleted.
    pub async fn erase(&self, erase: &Erase<'_>) -> Result<Erased> {
        let (first, last) = (day(erase.from_ms), day(erase.to_ms - 1));
        let mut erased = Erased::default();
        for file in self.files_of(erase.owner).await? {
            if !touches(&file, &first, &last) {
                continue;
            }
            let bytes = self.get(&file).await?;
            let (kept, removed) = without(&bytes, erase)?;
            if removed == 0 {
                continue;
            }
            erased.rows += removed;
            match kept {
                None => {
                    self.delete(&file).await?;
                    erased.files_deleted += 1;
                }
                Some(kept) => {
                    self.put(&file, kept).await?;
                    erased.files_rewritten += 1;
                }
            }
        }
        Ok(erased)
    }

    /// The owner's files, relative to the root.
    async fn files_of(&self, owner: &str) -> Result<Vec<String>> {
        let partition = format!("owner={owner}");
        match &self.target {
            Target::Local(dir) => {
                let root = dir.join(&partition);
                tokio::task::spawn_blocking(move || list_local(&root, &partition))
                    .await
                    .map_err(|e| Error::Local {
                        path: dir.clone(),
                        source: std::io::Error::other(e),
                    })?
            }
            Target::Object { store, prefix } => {
                use futures_util::TryStreamExt;
                let under = prefix.clone().join(partition.as_str());
                let listed: Vec<_> = store
                    .list(Some(&under))
                    .try_collect()
                    .await
                    .map_err(|source| self.object_error(&partition, source))?;
                let skip = prefix.parts().count();
                Ok(listed
                    .into_iter()
                    .map(|meta| {
                        meta.location
                            .parts()
                            .skip(skip)
                            .map(|p| p.as_ref().to_owned())
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .filter(|name| name.ends_with(".parquet"))
                    .collect())
            }
        }
    }

    async fn get(&self, relative: &str) -> Result<bytes::Bytes> {
        match &self.target {
            Target::Local(dir) => {
                let path = dir.join(relative);
                tokio::fs::read(&path)
                    .await
                    .map(bytes::Bytes::from)
                    .map_err(|source| Error::Local { path, source })
            }
            Target::Object { store, prefix } => {
                let key = object_key(prefix, relative);
                let got = store
                    .get(&key)
                    .await
                    .map_err(|source| self.object_error(relative, source))?;
                got.bytes()
                    .await
                    .map_err(|source| self.object_error(relative, source))
            }
        }
    }

    async fn delete(&self, relative: &str) -> Result<()> {
        match &self.target {
            Target::Local(dir) => {
                let path = dir.join(relative);
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(Error::Local { path, source }),
                }
            }
            Target::Object { store, prefix } => store
                .delete(&object_key(prefix, relative))
                .await
                .map_err(|source| self.object_error(relative, source)),
        }
    }

    fn object_error(&self, relative: &str, source: object_store::Error) -> Error {
        Error::Object {
            location: format!("{}/{relative}", self.location),
            source,
        }
    }
}

fn object_key(prefix: &object_store::path::Path, relative: &str) -> object_store::path::Path {
    relative
        .split('/')
        .fold(prefix.clone(), |path, part| path.join(part))
}

/// Whether a file's `date=` partition lies within `[first, last]` (dates
/// as YYYY-MM-DD compare as text; a name without one is read to be sure).
fn touches(file: &str, first: &str, last: &str) -> bool {
    let date = file
        .split('/')
        .find_map(|part| part.strip_prefix("date="))
        .filter(|d| d.len() == 10 && !d.starts_with('-'));
    let comparable = |d: &str| d.len() == 10 && !d.starts_with('-');
    match date {
        Some(date) if comparable(first) && comparable(last) => first <= date && date <= last,
        _ => true,
    }
}

fn list_local(root: &std::path::Path, partition: &str) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let days = match std::fs::read_dir(root) {
        Ok(days) => days,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(source) => {
            return Err(Error::Local {
                path: root.to_owned(),
                source,
            })
        }
    };
    for day in days.filter_map(std::result::Result::ok) {
        let day_name = day.file_name().to_string_lossy().into_owned();
        let Ok(entries) = std::fs::read_dir(day.path()) else {
            continue;
        };
        for entry in entries.filter_map(std::result::Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Temporary files of a write in progress start with a dot.
            if name.ends_with(".parquet") && !name.starts_with('.') {
                files.push(format!("{partition}/{day_name}/{name}"));
            }
        }
    }
    Ok(files)
}

/// The file without the rows `erase` covers: `(None, n)` when nothing is
/// left, `(Some(bytes), n)` otherwise; `n` the rows removed.
fn without(bytes: &bytes::Bytes, erase: &Erase<'_>) -> Result<(Option<Vec<u8>>, u64)> {
    let decode = |e: parquet::errors::ParquetError| Error::Encode(format!("read Parquet: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .map_err(decode)?
        .build()
        .map_err(decode)?;
    let mut kept_batches = Vec::new();
    let mut removed = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| Error::Encode(format!("read Parquet: {e}")))?;
        let keep = keep_mask(&batch, erase)?;
        removed += (batch.num_rows() - keep.true_count()) as u64;
        let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
            .map_err(|e| Error::Encode(e.to_string()))?;
        if kept.num_rows() > 0 {
            kept_batches.push(kept);
        }
    }
    if removed == 0 || kept_batches.is_empty() {
        return Ok((None, removed));
    }
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        crate::parquet_file::schema(),
        Some(crate::parquet_file::properties()),
    )
    .map_err(|e| Error::Encode(e.to_string()))?;
    for batch in &kept_batches {
        writer
            .write(batch)
            .map_err(|e| Error::Encode(e.to_string()))?;
    }
    let out = writer
        .into_inner()
        .map_err(|e| Error::Encode(e.to_string()))?;
    Ok((Some(out), removed))
}

fn keep_mask(batch: &RecordBatch, erase: &Erase<'_>) -> Result<BooleanArray> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| Error::Encode(format!("read Parquet: no column {name}")))
    };
    let devices = column("device")?
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::Encode("read Parquet: device is not text".into()))?;
    let times = column("time")?
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(|| Error::Encode("read Parquet: time is not a timestamp".into()))?;
    Ok((0..batch.num_rows())
        .map(|i| {
            let device_matches = erase.device.is_none_or(|d| devices.value(i) == d);
            let time = times.value(i);
            let covered = device_matches && erase.from_ms <= time && time < erase.to_ms;
            Some(!covered || times.is_null(i))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ArchiveConfig;
    use tributary_store::Row;

    const DAY: i64 = 86_400_000;
    const T0: i64 = 19_700 * DAY; // a midnight

    fn row(owner: &str, device: &str, seq: u32, time_ms: i64) -> Row {
        Row {
            owner: owner.into(),
            device: device.into(),
            message_id: format!("{:032x}", time_ms),
            seq,
            name: "heart_rate".into(),
            unit: Some("beat/min".into()),
            time_ms,
            value: Some(60.0),
            text: None,
            bool: None,
            data: None,
            sum: None,
        }
    }

    /// (device, time) of every row of `owner` in the archive.
    async fn rows_of(archive: &Archive, owner: &str) -> Result<Vec<(String, i64)>> {
        let mut all = Vec::new();
        for file in archive.files_of(owner).await? {
            let bytes = archive.get(&file).await?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
                .map_err(|e| Error::Encode(e.to_string()))?;
            for batch in reader {
                let batch = batch.map_err(|e| Error::Encode(e.to_string()))?;
                let devices = batch.column(0).as_any().downcast_ref::<StringArray>();
                let times = batch
                    .column(5)
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>();
                let (Some(devices), Some(times)) = (devices, times) else {
                    return Err(Error::Encode("unexpected column types".into()));
                };
                for i in 0..batch.num_rows() {
                    all.push((devices.value(i).to_owned(), times.value(i)));
                }
            }
        }
        all.sort();
        Ok(all)
    }

    #[tokio::test]
    async fn a_device_a_range_and_an_owner_are_erased_and_nobody_else() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|source| Error::Local {
            path: std::env::temp_dir(),
            source,
        })?;
        let archive = Archive::open(&ArchiveConfig::default(), dir.path())?;
        archive
            .write(&[
                row("ann", "watch", 0, T0),
                row("ann", "phone", 1, T0 + 1),
                row("ann", "watch", 2, T0 + DAY),
                row("ann", "phone", 3, T0 + DAY + 5),
                row("bob", "watch", 4, T0),
            ])
            .await?;
        let bob = rows_of(&archive, "bob").await?;

        let device = Erase {
            owner: "ann",
            device: Some("watch"),
            from_ms: i64::MIN / 2,
            to_ms: i64::MAX / 2,
        };
        let erased = archive.erase(&device).await?;
        assert_eq!((erased.rows, erased.files_rewritten), (2, 2));
        assert_eq!(
            rows_of(&archive, "ann").await?,
            vec![("phone".into(), T0 + 1), ("phone".into(), T0 + DAY + 5)]
        );

        let range = Erase {
            owner: "ann",
            device: None,
            from_ms: T0 + DAY,
            to_ms: T0 + 2 * DAY,
        };
        let erased = archive.erase(&range).await?;
        assert_eq!((erased.rows, erased.files_deleted), (1, 1));
        assert_eq!(
            rows_of(&archive, "ann").await?,
            vec![("phone".into(), T0 + 1)]
        );

        assert_eq!(archive.erase_owner("ann").await?.files_deleted, 1);
        assert!(rows_of(&archive, "ann").await?.is_empty());
        assert!(!dir.path().join("archive/owner=ann").exists());
        assert_eq!(rows_of(&archive, "bob").await?, bob);
        Ok(())
    }
}
