//! State shared between the `Log` handles (readers) and the writer thread.
//!
//! The writer is the only one that changes [`State`]; it does so after each
//! fsync ("publish"), so everything a reader can see through it is durable.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::offsets::Consumers;
use crate::record;
use crate::segment::ReadPlan;
use crate::{Error, LogConfig, LogTuning, Offset, Record};

/// What an open log's handles and its writer thread both hold: the
/// configuration, the readable state, consumer offsets and counters. (Not
/// "shared" after what it is shared by: that word means MQTT shared
/// subscriptions elsewhere.)
pub(crate) struct LogCore {
    pub config: LogConfig,
    pub tuning: LogTuning,
    pub state: Mutex<State>,
    /// The durable end and whether the log closed, for `wait_beyond`.
    pub progress: watch::Sender<Progress>,
    pub consumers: Mutex<Consumers>,
    /// Set once the writer stopped accepting appends (close or failure).
    pub closed: AtomicBool,
    pub counters: Counters,
}

/// Monotonic counters, updated by the writer, read by [`crate::Log::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub fsyncs: AtomicU64,
    pub full_rejections: AtomicU64,
    pub segments_deleted: AtomicU64,
}

impl LogCore {
    pub fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, still
        // consistent enough to read; keep serving rather than cascade.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    pub fn consumers(&self) -> MutexGuard<'_, Consumers> {
        self.consumers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub end: u64,
    pub closed: bool,
}

/// The durable part of one segment, as readers see it.
#[derive(Debug)]
pub(crate) struct SegmentView {
    pub base: u64,
    pub path: PathBuf,
    /// A read handle; readers keep it (`Arc`) while they read, so a segment
    /// deleted by retention meanwhile stays readable to them.
    pub file: Arc<File>,
    /// Durable bytes.
    pub len: u64,
    /// The offset after the last durable record (`base` when empty).
    pub end: u64,
    /// Newest `receive_time_ms` in the segment, for age retention.
    pub max_time_ms: u64,
    /// Sparse index: `(offset, file position)` ascending, first entry at `base`.
    pub index: Vec<(u64, u64)>,
}

impl SegmentView {
    /// The indexed frame at or before `offset`.
    fn seek(&self, offset: u64) -> (u64, u64) {
        let i = self.index.partition_point(|(o, _)| *o <= offset);
        if i == 0 {
            (self.base, 0)
        } else {
            self.index[i - 1]
        }
    }
}

/// Segments, the durable end, and the cache of recent records.
#[derive(Debug)]
pub(crate) struct State {
    /// Oldest first; the last one is the active segment. Never empty.
    pub segments: Vec<SegmentView>,
    /// Offset of the next record; every record below is durable.
    pub end: u64,
    /// Records `[cache_start, end)`.
    pub cache: VecDeque<Arc<Record>>,
    pub cache_start: u64,
    /// Estimated memory held by `cache`.
    pub cache_bytes: usize,
}

/// What `read` should do next, decided under the lock, done outside it.
pub(crate) enum ReadStep {
    Done,
    Records(Vec<(Offset, Arc<Record>)>),
    Disk(ReadPlan),
}

/// Memory charged to the cache for one record.
pub(crate) fn cached_size(record: &Record) -> usize {
    record::frame_len(record) + std::mem::size_of::<Record>() + 16
}

impl State {
    pub fn start(&self) -> u64 {
        self.segments
            .first()
            .expect("the log always has an active segment")
            .base
    }

    pub fn active_mut(&mut self) -> &mut SegmentView {
        self.segments
            .last_mut()
            .expect("the log always has an active segment")
    }

    /// Appends newly durable records `[self.end, self.end + records.len())`
    /// to the cache and evicts the oldest beyond `limit` bytes.
    pub fn cache_extend(&mut self, records: impl IntoIterator<Item = Arc<Record>>, limit: usize) {
        for record in records {
            self.cache_bytes += cached_size(&record);
            self.cache.push_back(record);
        }
        while self.cache_bytes > limit {
            let Some(old) = self.cache.pop_front() else {
                break;
            };
            self.cache_bytes -= cached_size(&old);
            self.cache_start += 1;
        }
        if self.cache.is_empty() {
            self.cache_bytes = 0;
        }
    }

    /// Drops cached records below `start` (deleted by retention).
    pub fn cache_trim_below(&mut self, start: u64) {
        while self.cache_start < start {
            let Some(old) = self.cache.pop_front() else {
                self.cache_start = start;
                break;
            };
            self.cache_bytes -= cached_size(&old);
            self.cache_start += 1;
        }
    }

    pub fn plan_read(
        &self,
        from: u64,
        max: usize,
        read_max_bytes: usize,
        first: bool,
    ) -> Result<ReadStep, Error> {
        let start = self.start();
        if from < start {
            return if first {
                Err(Error::OffsetOutOfRange {
                    requested: from,
                    start,
                })
            } else {
                // Retention overtook a multi-step read: return what we have.
                Ok(ReadStep::Done)
            };
        }
        if from >= self.end || max == 0 {
            return Ok(ReadStep::Done);
        }
        if from >= self.cache_start {
            let skip = (from - self.cache_start) as usize;
            let records = self
                .cache
                .range(skip..)
                .take(max)
                .enumerate()
                .map(|(i, r)| (Offset(from + i as u64), Arc::clone(r)))
                .collect();
            return Ok(ReadStep::Records(records));
        }
        // The segment holding `from`: the last one whose base is <= from.
        let i = self.segments.partition_point(|s| s.base <= from);
        let segment = &self.segments[i
            .checked_sub(1)
            .expect("from >= start, so some segment holds it")];
        let (pos_offset, pos) = segment.seek(from);
        Ok(ReadStep::Disk(ReadPlan {
            file: Arc::clone(&segment.file),
            path: segment.path.clone(),
            pos,
            pos_offset,
            len: segment.len,
            from,
            end: segment.end.min(self.cache_start),
            max,
            max_bytes: read_max_bytes,
        }))
    }
}
