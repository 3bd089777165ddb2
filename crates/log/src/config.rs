//! Configuration of the embedded log.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The default of [`LogConfig::segment_bytes`]: 128 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 128 * 1024 * 1024;
/// The default of [`LogConfig::max_bytes`]: 10 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// The default of [`LogConfig::max_age`]: 7 days, what the config file's
/// `log.max_age_secs` defaults to.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where the log lives and how much it may keep.
///
/// Size retention deletes whole segments, oldest first, and never the active
/// one, so the log can exceed `max_bytes` by up to one segment; keep
/// `max_bytes` at several times `segment_bytes`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Directory holding the segment files and the consumer journal;
    /// created on open.
    pub dir: PathBuf,
    /// A segment is sealed and a new one started once it would grow past
    /// this many bytes (a single larger record still gets a segment).
    pub segment_bytes: u64,
    /// Size retention: total bytes on disk above which the oldest segments
    /// are deleted, and above which appends fail with `Error::Full` when a
    /// consumer still needs the oldest segment.
    pub max_bytes: u64,
    /// Age retention: a sealed segment whose newest record was received
    /// longer ago than this is deleted (consumers permitting).
    pub max_age: Option<Duration>,
}

impl LogConfig {
    /// A config with the defaults: [`DEFAULT_SEGMENT_BYTES`],
    /// [`DEFAULT_MAX_BYTES`] and [`DEFAULT_MAX_AGE`].
    pub fn new(dir: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_age: Some(DEFAULT_MAX_AGE),
        }
    }
}

/// Knobs that trade memory and latency for throughput; the defaults suit a
/// broker doing 100k messages/s. Kept apart from [`LogConfig`] so the
/// config the operator writes stays small.
#[derive(Debug, Clone)]
pub struct LogTuning {
    /// Bytes of recent records kept in memory as `Arc<Record>` so readers
    /// near the end never touch the disk.
    pub cache_bytes: usize,
    /// Capacity of the channel to the writer thread, in append requests.
    /// When full, `append` waits (backpressure to the publisher).
    pub queue_capacity: usize,
    /// One write + fsync covers at most this many bytes of records (a single
    /// larger record is written alone). Also bounds the torn tail that
    /// recovery accepts without calling it corruption.
    pub max_batch_bytes: usize,
    /// How long the writer may wait, after answering a batch, for its
    /// appenders to come back before starting the next write + fsync (it
    /// waits only while the batch has fewer requests than the last one).
    /// Trades a little latency for fewer, fuller fsyncs; zero disables.
    pub linger: Duration,
    /// Distance in bytes between entries of the in-memory sparse index of
    /// each segment: a disk read scans at most this much before its offset.
    pub index_interval_bytes: u64,
    /// Maximum bytes one `read` call decodes from disk (at least one record
    /// is always returned), so a slow consumer cannot pull gigabytes into memory.
    pub read_max_bytes: usize,
    /// Committed consumer offsets are persisted at most this often (and on
    /// close, and before retention deletes anything).
    pub offsets_flush_interval: Duration,
    /// How often the writer runs age retention when idle.
    pub retention_interval: Duration,
    /// How long `open` waits for the directory lock held by another log
    /// (e.g. one whose last handle was just dropped and whose writer is
    /// still finishing) before failing.
    pub lock_wait: Duration,
}

impl Default for LogTuning {
    fn default() -> Self {
        LogTuning {
            cache_bytes: 64 * 1024 * 1024,
            queue_capacity: 8192,
            max_batch_bytes: 4 * 1024 * 1024,
            linger: Duration::from_micros(300),
            index_interval_bytes: 64 * 1024,
            read_max_bytes: 4 * 1024 * 1024,
            offsets_flush_interval: Duration::from_millis(50),
            retention_interval: Duration::from_secs(1),
            lock_wait: Duration::from_secs(5),
        }
    }
}

/// The `[log]` table of the config file: what an operator sets of a
/// [`LogConfig`], with the same defaults; [`LogFileConfig::build`] makes
/// the `LogConfig` for a directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogFileConfig {
    /// A segment file is sealed when it reaches this size.
    pub segment_bytes: u64,
    /// Retention: the oldest segments are deleted above this total size,
    /// unless a session still needs them; then publishes are refused.
    pub max_bytes: u64,
    /// Retention: segments older than this are deleted (sessions permitting);
    /// 0 keeps them regardless of age.
    pub max_age_secs: u64,
}

impl Default for LogFileConfig {
    fn default() -> Self {
        LogFileConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_age_secs: DEFAULT_MAX_AGE.as_secs(),
        }
    }
}

impl LogFileConfig {
    /// The log in `dir` with these values.
    pub fn build(&self, dir: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            dir: dir.into(),
            segment_bytes: self.segment_bytes,
            max_bytes: self.max_bytes,
            max_age: (self.max_age_secs > 0).then(|| Duration::from_secs(self.max_age_secs)),
        }
    }
}
