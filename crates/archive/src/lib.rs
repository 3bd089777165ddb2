//! The measurements archive: Parquet files partitioned by owner and day,
//! on local disk (the default, `DATA_DIR/archive`) or in S3-compatible
//! object storage (`s3://BUCKET/PREFIX`).
//!
//! # Layout
//!
//! ```text
//! ROOT/owner=NAME/date=YYYY-MM-DD/part-MESSAGEID-SEQ-DIGEST.parquet
//! ```
//!
//! Hive-style directory names, so that pyarrow (`partitioning="hive"`),
//! DuckDB (`hive_partitioning = true`) and Spark read `owner` and `date`
//! back as columns. The date is the measurement's UTC day. A file is named
//! after its first row's idempotency key (message id and record index),
//! which is unique across nodes, and a digest of all its rows' keys (so
//! only the very same rows written again replace a file). Columns:
//! [`parquet_file::schema`].
//!
//! # Writes
//!
//! [`Archive::write`] groups rows by owner and day and writes one file per
//! group; it returns once every file is durable (local: written to a
//! temporary name, fsync'd, renamed, directory fsync'd; S3: the PUT was
//! answered). The pipeline's archive sink batches rows and commits its log
//! offsets only after that, so a crash loses nothing; it may at worst write
//! a batch twice (crash after the write, before the commit), which readers
//! remove by `(message_id, seq)`. See docs/archive.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStore, ObjectStoreExt};
use tributary_store::Row;

pub mod parquet_file;

/// The directory under the data dir that holds the local archive.
pub const DEFAULT_DIR: &str = "archive";

/// Object storage: how long to wait for a connection and for a request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// [`Archive::check`] gives up after this (an unreachable service must not
/// hold up a start).
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// A few quick retries inside one request: the archive sink retries a
/// failed batch itself, forever and with its own backoff, and reports each
/// failure, which the library's default (10 retries within 3 minutes)
/// would hide for minutes.
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(15),
        ..object_store::RetryConfig::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("archive {url:?}: {reason}")]
    Config { url: String, reason: String },
    #[error("encode Parquet: {0}")]
    Encode(String),
    #[error("write {path}: {source}")]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("object storage {location}: {source}")]
    Object {
        location: String,
        source: object_store::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the archive is and how to reach it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArchiveConfig {
    /// None: DATA_DIR/archive. A path (relative to the data dir) or
    /// `file:///ABS`; or `s3://BUCKET[/PREFIX]`.
    pub url: Option<String>,
    /// S3 only: the endpoint of an S3-compatible service
    /// (`http://127.0.0.1:9000`); default: AWS_ENDPOINT or Amazon's.
    pub endpoint: Option<String>,
    /// S3 only: the region [default: AWS_DEFAULT_REGION, else us-east-1].
    pub region: Option<String>,
    /// S3 only: allow an `http://` endpoint.
    pub allow_http: bool,
}

/// What one [`Archive::write`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    /// The files written, relative to the archive root.
    pub files: Vec<String>,
    pub rows: usize,
    pub bytes: u64,
}

/// An open archive.
pub struct Archive {
    target: Target,
    /// For log lines: the directory or `s3://bucket/prefix` (no secrets).
    location: String,
}

enum Target {
    Local(PathBuf),
    Object {
        store: Arc<dyn ObjectStore>,
        prefix: object_store::path::Path,
    },
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Archive").field(&self.location).finish()
    }
}

impl Archive {
    /// Opens (local: creates) the archive. S3 credentials come from the
    /// environment only (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_SESSION_TOKEN), never from a config file. Nothing is sent over
    /// the network here: [`Archive::check`] does that.
    pub fn open(config: &ArchiveConfig, data_dir: &Path) -> Result<Archive> {
        let url = config.url.as_deref().unwrap_or(DEFAULT_DIR);
        let invalid = |reason: &str| Error::Config {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            // The S3 client's TLS (rustls) finds no default crypto provider
            // when the process has more than one compiled in (ring for the
            // MQTT listeners, aws-lc-rs from the client): name one. An
            // error means one is installed already, which is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                tracing::warn!(
                    archive = url,
                    "AWS_ACCESS_KEY_ID is not set: the archive tries the instance's own credentials"
                );
            }
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("expected s3://BUCKET[/PREFIX]"));
            }
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry())
                // The client options carry allow_http too: set together.
                .with_client_options(
                    object_store::ClientOptions::new()
                        .with_allow_http(config.allow_http)
                        .with_connect_timeout(CONNECT_TIMEOUT)
                        .with_timeout(REQUEST_TIMEOUT),
                );
            if let Some(endpoint) = &config.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(region) = &config.region {
                builder = builder.with_region(region);
            }
            let store = builder.build().map_err(|e| invalid(&e.to_string()))?;
            let prefix = object_store::path::Path::parse(prefix.trim_matches('/'))
                .map_err(|e| invalid(&e.to_string()))?;
            return Ok(Archive {
                location: format!("s3://{bucket}/{prefix}"),
                target: Target::Object {
                    store: Arc::new(store),
                    prefix,
                },
            });
        }
        if url.contains("://") && !url.starts_with("file://") {
            return Err(invalid(
                "expected a directory, file:///PATH or s3://BUCKET[/PREFIX]",
            ));
        }
        let dir = data_dir.join(url.strip_prefix("file://").unwrap_or(url));
        std::fs::create_dir_all(&dir).map_err(|source| Error::Local {
            path: dir.clone(),
            source,
        })?;
        Ok(Archive {
            location: dir.display().to_string(),
            target: Target::Local(dir),
        })
    }

    /// The archive's root, for people: a directory or `s3://bucket/prefix`.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Asks the storage whether it can be reached (S3: lists the prefix, so
    /// endpoint, bucket and credentials are all exercised).
    pub async fn check(&self) -> Result<()> {
        match &self.target {
            Target::Local(dir) => {
                std::fs::metadata(dir)
                    .map(|_| ())
                    .map_err(|source| Error::Local {
                        path: dir.clone(),
                        source,
                    })
            }
            Target::Object { store, prefix } => {
                match tokio::time::timeout(CHECK_TIMEOUT, store.list_with_delimiter(Some(prefix)))
                    .await
                {
                    Ok(listed) => listed.map(|_| ()).map_err(|source| Error::Object {
                        location: self.location.clone(),
                        source,
                    }),
                    Err(_) => Err(Error::Config {
                        url: self.location.clone(),
                        reason: format!("no answer within {CHECK_TIMEOUT:?}"),
                    }),
                }
            }
        }
    }

    /// Writes `rows`, one file per (owner, UTC day), each sorted by time and
    /// without repeats of one `(message_id, seq)`; returns once all are
    /// durable.
    pub async fn write(&self, rows: &[Row]) -> Result<Written> {
        let mut groups: BTreeMap<(&str, String), Vec<&Row>> = BTreeMap::new();
        for row in rows {
            groups
                .entry((row.owner.as_str(), day(row.time_ms)))
                .or_default()
                .push(row);
        }
        let mut written = Written::default();
        for ((owner, day), mut group) in groups {
            group.sort_by(|a, b| {
                (a.time_ms, &a.message_id, a.seq).cmp(&(b.time_ms, &b.message_id, b.seq))
            });
            // A record read twice (a consumer group's rebalance hands a
            // partition back from its last commit) is written once: its
            // copies share a time, so they are neighbours now.
            group.dedup_by(|a, b| a.message_id == b.message_id && a.seq == b.seq);
            let relative = format!("owner={owner}/date={day}/{}", file_name(&group));
            let owned: Vec<Row> = group.into_iter().cloned().collect();
            let bytes = parquet_file::encode(&owned)?;
            written.bytes += bytes.len() as u64;
            written.rows += owned.len();
            self.put(&relative, bytes).await?;
            written.files.push(relative);
        }
        Ok(written)
    }

    async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<()> {
        match &self.target {
            Target::Local(dir) => {
                let path = dir.join(relative);
                tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
                    .await
                    .map_err(|e| Error::Local {
                        path: dir.join(relative),
                        source: std::io::Error::other(e),
                    })?
            }
            Target::Object { store, prefix } => {
                let key = relative
                    .split('/')
                    .fold(prefix.clone(), |path, part| path.join(part));
                store
                    .put(&key, bytes::Bytes::from(bytes).into())
                    .await
                    .map(|_| ())
                    .map_err(|source| Error::Object {
                        location: format!("{}/{relative}", self.location),
                        source,
                    })
            }
        }
    }
}

/// The name of the file of `group` (sorted, without repeats): its first
/// row's idempotency key, then a digest of every row's key. The same rows
/// written again (a crash between the write and the commit) replace their
/// own file; other rows that start at the same one (a partition handed
/// back by a rebalance, read again from its last commit, batched beside
/// other partitions' rows) get a file of their own instead of replacing
/// one whose rows were committed. Readers drop the repeats by key.
fn file_name(group: &[&Row]) -> String {
    use sha2::Digest;
    let mut keys = sha2::Sha256::new();
    for row in group {
        keys.update(row.message_id.as_bytes());
        keys.update(row.seq.to_le_bytes());
    }
    let digest = keys.finalize();
    let short = hex::encode(&digest[..8]);
    let first = group[0];
    format!("part-{}-{}-{short}.parquet", first.message_id, first.seq)
}

/// Writes `bytes` at `path` so that after a crash the file is either whole
/// or absent: a temporary name beside it, fsync, rename, fsync the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let fail = |source| Error::Local {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    // A leading dot: readers (pyarrow, DuckDB globs on *.parquet) skip it.
    let temporary = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut file = std::fs::File::create(&temporary).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail)
}

/// The UTC day of a time in milliseconds since the epoch, as YYYY-MM-DD.
pub fn day(time_ms: i64) -> String {
    let days = time_ms.div_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day):
/// counts in 400-year eras of 146,097 days, with years starting in March so
/// that the leap day is the last day of a year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

mod erase;

pub use erase::{Erase, Erased};

#[cfg(test)]
mod tests;
