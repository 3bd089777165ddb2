//! The writer thread: group commit, segment roll, retention, offset persistence.
//!
//! One `std::thread` owns the active segment's file. Appends reach it
//! through a bounded tokio channel (`LogTuning::queue_capacity`; when full,
//! `append` waits: backpressure to the publisher). The thread takes one
//! request, then every request already queued (up to
//! `LogTuning::max_batch_bytes` of frames), encodes them into one buffer,
//! writes it with one `write` and makes it durable with one `fdatasync`,
//! then publishes the records (cache, segment view, end offset watch) and
//! answers every request of the batch through its oneshot. The more
//! appenders wait, the bigger the batch: throughput grows with concurrency
//! while one fsync is paid per batch. Appenders answered by one fsync come
//! back a moment later; so that they do not trickle into a small batch of
//! their own, the writer lingers (`LogTuning::linger`, polling every
//! 20 µs) while its batch has fewer requests than the previous one.
//!
//! A failed write or fsync stops the writer: the requests of the batch get
//! the I/O error, later ones `Error::Closed`. After a failed fsync the state
//! of the file is unknown, so carrying on could acknowledge lost data; the
//! next open recovers from what is on disk.
//!
//! Retention runs after a segment roll, before an append that would exceed
//! `max_bytes`, and every `LogTuning::retention_interval`. Dirty consumer
//! offsets are persisted every `LogTuning::offsets_flush_interval`, before
//! retention deletes anything, and on close.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::offsets::Journal;
use crate::record;
use crate::segment;
use crate::state::{LogCore, SegmentView};
use crate::{Error, Offset, Record, Result};

pub(crate) enum Cmd {
    Append {
        records: Vec<Record>,
        reply: oneshot::Sender<Result<Offset>>,
    },
    Close {
        reply: oneshot::Sender<Result<()>>,
    },
    /// Stop at once, persisting nothing more: simulates a crash in tests.
    #[cfg(test)]
    Crash {
        reply: oneshot::Sender<()>,
    },
}

/// An append request whose records are written but not yet all durable.
struct Waiter {
    reply: oneshot::Sender<Result<Offset>>,
    first: u64,
    /// Offset after its last record.
    end: u64,
}

pub(crate) struct Writer {
    core: Arc<LogCore>,
    rx: mpsc::Receiver<Cmd>,
    dir: PathBuf,
    active: File,
    /// For error messages.
    active_path: PathBuf,
    /// Durable bytes of the active segment (`buf` not included).
    active_len: u64,
    /// Durable bytes of all sealed segments.
    sealed_bytes: u64,
    /// Encoded frames not yet written.
    buf: Vec<u8>,
    /// Records in `buf`, offsets `durable_end..next_offset`.
    pending: Vec<Arc<Record>>,
    pending_index: Vec<(u64, u64)>,
    pending_max_time: u64,
    last_indexed_pos: Option<u64>,
    next_offset: u64,
    waiters: Vec<Waiter>,
    journal: Journal,
    /// The directory lock: released (dropped) before a close is answered,
    /// so the log can be reopened at once.
    lock: Option<File>,
    last_offsets_flush: Instant,
    last_retention: Instant,
    /// When the last fsync'd batch was answered, and how many requests it
    /// had: the linger heuristic expects as many again.
    last_commit: Instant,
    last_batch_requests: usize,
}

/// How often a lingering writer looks for more requests.
const LINGER_POLL: Duration = Duration::from_micros(20);

/// What ended the writer loop.
enum Exit {
    Closed(oneshot::Sender<Result<()>>),
    Dropped,
    #[cfg(test)]
    Crashed(oneshot::Sender<()>),
}

impl Writer {
    pub fn new(
        core: Arc<LogCore>,
        rx: mpsc::Receiver<Cmd>,
        active: File,
        journal: Journal,
        lock: File,
    ) -> Writer {
        let (active_path, active_len, sealed_bytes, next_offset, last_indexed_pos) = {
            let state = core.state();
            let active = state
                .segments
                .last()
                .expect("the log always has an active segment");
            let sealed: u64 = state.segments[..state.segments.len() - 1]
                .iter()
                .map(|s| s.len)
                .sum();
            let last_indexed = active.index.last().map(|(_, pos)| *pos);
            (
                active.path.clone(),
                active.len,
                sealed,
                state.end,
                last_indexed,
            )
        };
        Writer {
            dir: core.config.dir.clone(),
            core,
            rx,
            active,
            active_path,
            active_len,
            sealed_bytes,
            buf: Vec::new(),
            pending: Vec::new(),
            pending_index: Vec::new(),
            pending_max_time: 0,
            last_indexed_pos,
            next_offset,
            waiters: Vec::new(),
            journal,
            lock: Some(lock),
            last_offsets_flush: Instant::now(),
            last_retention: Instant::now(),
            last_commit: Instant::now(),
            last_batch_requests: 0,
        }
    }

    /// The thread body.
    pub fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "start log writer runtime");
                self.shutdown();
                return;
            }
        };
        let exit = match self.serve(&runtime) {
            Ok(exit) => exit,
            Err(e) => {
                tracing::error!(error = %e, "log writer failed; the log is closed");
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.reply.send(Err(duplicate(&e)));
                }
                self.shutdown();
                return;
            }
        };
        match exit {
            Exit::Closed(reply) => {
                let result = self.flush_offsets();
                self.shutdown();
                self.lock = None;
                let _ = reply.send(result);
            }
            Exit::Dropped => {
                if let Err(e) = self.flush_offsets() {
                    tracing::error!(error = %e, "persist consumer offsets on drop");
                }
                self.shutdown();
            }
            #[cfg(test)]
            Exit::Crashed(reply) => {
                self.shutdown();
                drop(self);
                let _ = reply.send(());
            }
        }
    }

    /// Marks the log closed and refuses whatever is still queued.
    fn shutdown(&mut self) {
        self.core.closed.store(true, Ordering::SeqCst);
        self.core.progress.send_modify(|p| p.closed = true);
        self.rx.close();
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::Append { reply, .. } => {
                    let _ = reply.send(Err(Error::Closed));
                }
                Cmd::Close { reply } => {
                    let _ = reply.send(Ok(()));
                }
                #[cfg(test)]
                Cmd::Crash { reply } => {
                    let _ = reply.send(());
                }
            }
        }
    }

    fn serve(&mut self, runtime: &tokio::runtime::Runtime) -> Result<Exit> {
        let tuning = self.core.tuning.clone();
        let tick = tuning
            .offsets_flush_interval
            .min(tuning.retention_interval)
            .max(Duration::from_millis(1));
        loop {
            let first =
                runtime.block_on(async { tokio::time::timeout(tick, self.rx.recv()).await });
            let mut next = match first {
                Ok(Some(cmd)) => Some(cmd),
                Ok(None) => {
                    self.commit()?;
                    return Ok(Exit::Dropped);
                }
                Err(_elapsed) => None,
            };
            // Take every request already queued, up to one batch. When fewer
            // requests came than in the last batch, the appenders answered by
            // the last fsync are probably still on their way back: linger a
            // moment for them rather than pay one fsync for a handful.
            let mut requests = 0usize;
            while let Some(cmd) = next.take() {
                match cmd {
                    Cmd::Append { records, reply } => self.append(records, reply)?,
                    Cmd::Close { reply } => {
                        self.commit()?;
                        return Ok(Exit::Closed(reply));
                    }
                    #[cfg(test)]
                    Cmd::Crash { reply } => return Ok(Exit::Crashed(reply)),
                }
                requests += 1;
                while self.buf.len() < tuning.max_batch_bytes {
                    match self.rx.try_recv() {
                        Ok(cmd) => next = Some(cmd),
                        Err(_)
                            if requests < self.last_batch_requests
                                && self.last_commit.elapsed() < tuning.linger =>
                        {
                            std::thread::sleep(LINGER_POLL);
                            continue;
                        }
                        Err(_) => {}
                    }
                    break;
                }
            }
            self.last_batch_requests = requests;
            self.commit()?;
            if self.last_offsets_flush.elapsed() >= tuning.offsets_flush_interval {
                self.flush_offsets()?;
            }
            if self.last_retention.elapsed() >= tuning.retention_interval {
                self.retain(0)?;
            }
        }
    }

    fn total_bytes(&self) -> u64 {
        self.sealed_bytes + self.active_len + self.buf.len() as u64
    }

    /// Encodes one append request into the batch. `Err` only for failures
    /// that stop the writer; request errors go to `reply`.
    fn append(
        &mut self,
        records: Vec<Record>,
        reply: oneshot::Sender<Result<Offset>>,
    ) -> Result<()> {
        if records.is_empty() {
            let _ = reply.send(Ok(Offset(self.next_offset)));
            return Ok(());
        }
        if let Some(why) = records
            .iter()
            .find_map(|r| record::check_encodable(r).err())
        {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
            let _ = reply.send(Err(Error::io("encode record", e)));
            return Ok(());
        }
        let needed: u64 = records.iter().map(|r| record::frame_len(r) as u64).sum();
        if let Err(e) = self.make_room(needed) {
            match e {
                Error::Full { .. } => {
                    self.core
                        .counters
                        .full_rejections
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(Err(e));
                    return Ok(());
                }
                fatal => return Err(fatal),
            }
        }
        let config = &self.core.config;
        let (segment_bytes, max_batch, interval) = (
            config.segment_bytes,
            self.core.tuning.max_batch_bytes,
            self.core.tuning.index_interval_bytes,
        );
        let first = self.next_offset;
        for record in records {
            let len = record::frame_len(&record);
            let in_segment = self.active_len + self.buf.len() as u64;
            if in_segment > 0 && in_segment + len as u64 > segment_bytes {
                self.roll()?;
            } else if !self.buf.is_empty() && self.buf.len() + len > max_batch {
                self.commit()?;
            }
            let pos = self.active_len + self.buf.len() as u64;
            if !matches!(self.last_indexed_pos, Some(p) if pos - p < interval) {
                self.pending_index.push((self.next_offset, pos));
                self.last_indexed_pos = Some(pos);
            }
            record::encode(self.next_offset, &record, &mut self.buf);
            self.pending_max_time = self.pending_max_time.max(record.receive_time_ms);
            self.pending.push(Arc::new(record));
            self.next_offset += 1;
        }
        self.waiters.push(Waiter {
            reply,
            first,
            end: self.next_offset,
        });
        Ok(())
    }

    /// Writes and fsyncs the batch, publishes it to readers and answers
    /// the appends that are now wholly durable.
    fn commit(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            let context = || format!("append to segment {}", self.active_path.display());
            let write = self
                .active
                .write_all(&self.buf)
                .and_then(|()| self.active.sync_data());
            write.map_err(|e| Error::io(context(), e))?;
            let counters = &self.core.counters;
            counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            counters
                .bytes
                .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
            counters
                .records
                .fetch_add(self.pending.len() as u64, Ordering::Relaxed);
            self.active_len += self.buf.len() as u64;
            self.buf.clear();
        }
        let end = self.next_offset;
        if !self.pending.is_empty() {
            let cache_limit = self.core.tuning.cache_bytes;
            let mut state = self.core.state();
            let active = state.active_mut();
            active.len = self.active_len;
            active.end = end;
            active.max_time_ms = active.max_time_ms.max(self.pending_max_time);
            active.index.append(&mut self.pending_index);
            state.cache_extend(self.pending.drain(..), cache_limit);
            state.end = end;
            drop(state);
            self.core.progress.send_modify(|p| p.end = end);
        }
        self.pending_max_time = 0;
        self.last_commit = Instant::now();
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].end <= end {
                let waiter = self.waiters.swap_remove(i);
                let _ = waiter.reply.send(Ok(Offset(waiter.first)));
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at `next_offset`.
    fn roll(&mut self) -> Result<()> {
        self.commit()?;
        let base = self.next_offset;
        let (file, path) = segment::create(&self.dir, base)?;
        segment::sync_dir(&self.dir)
            .map_err(|e| Error::io(format!("sync log directory {}", self.dir.display()), e))?;
        let read = File::open(&path)
            .map_err(|e| Error::io(format!("open segment {}", path.display()), e))?;
        self.core.state().segments.push(SegmentView {
            base,
            path: path.clone(),
            file: Arc::new(read),
            len: 0,
            end: base,
            max_time_ms: 0,
            index: Vec::new(),
        });
        self.active = file;
        self.active_path = path;
        self.sealed_bytes += self.active_len;
        self.active_len = 0;
        self.last_indexed_pos = None;
        self.retain(0)
    }

    /// Runs size retention so that `needed` more bytes fit; fails with
    /// `Error::Full` when they do not and a consumer holds the oldest segment.
    fn make_room(&mut self, needed: u64) -> Result<()> {
        let max_bytes = self.core.config.max_bytes;
        if self.total_bytes() + needed <= max_bytes {
            return Ok(());
        }
        self.retain(needed)?;
        let total = self.total_bytes();
        if total + needed <= max_bytes || self.core.state().segments.len() <= 1 {
            // Only the active segment is left: it cannot be deleted, and
            // refusing appends would never end. The log exceeds max_bytes
            // by at most one segment.
            return Ok(());
        }
        let consumer = self
            .core
            .consumers()
            .min_committed()
            .map(|(name, _)| name.to_owned())
            .unwrap_or_default();
        Err(Error::Full {
            bytes: total,
            consumer,
        })
    }

    /// Deletes the oldest sealed segments while the log (plus `needed`) is
    /// over `max_bytes` or they are older than `max_age`, and no consumer
    /// still needs them.
    fn retain(&mut self, needed: u64) -> Result<()> {
        self.last_retention = Instant::now();
        let max_bytes = self.core.config.max_bytes;
        let max_age_ms = self.core.config.max_age.map(|age| age.as_millis() as u64);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut deleted = false;
        loop {
            let (base, len, end, max_time_ms) = {
                let state = self.core.state();
                if state.segments.len() <= 1 {
                    break;
                }
                let s = &state.segments[0];
                (s.base, s.len, s.end, s.max_time_ms)
            };
            let over_size = self.total_bytes() + needed > max_bytes;
            let too_old = max_age_ms.is_some_and(|age| max_time_ms.saturating_add(age) < now_ms);
            if !over_size && !too_old {
                break;
            }
            if let Some((_, next)) = self.core.consumers().min_committed() {
                if end > next {
                    break; // a consumer has not read it all yet
                }
            }
            // The offset that allows this deletion must survive a crash.
            self.flush_offsets()?;
            let path = {
                let mut state = self.core.state();
                let removed = state.segments.remove(0);
                let start = state.start();
                state.cache_trim_below(start);
                removed.path
            };
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("delete segment {}", path.display()), e))?;
            tracing::info!(path = %path.display(), base, end, over_size, too_old, "retention deleted segment");
            self.sealed_bytes -= len;
            self.core
                .counters
                .segments_deleted
                .fetch_add(1, Ordering::Relaxed);
            deleted = true;
        }
        if deleted {
            segment::sync_dir(&self.dir)
                .map_err(|e| Error::io(format!("sync log directory {}", self.dir.display()), e))?;
        }
        Ok(())
    }

    /// Persists consumer offsets changed since the last flush.
    fn flush_offsets(&mut self) -> Result<()> {
        self.last_offsets_flush = Instant::now();
        let changes = {
            let mut consumers = self.core.consumers();
            if consumers.dirty.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut consumers.dirty)
        };
        self.journal.append(&changes)?;
        let live_bytes = self.core.consumers().live_bytes();
        if self.journal.needs_compaction(live_bytes) {
            let all = self.core.consumers().committed.clone();
            self.journal.compact(&all)?;
        }
        Ok(())
    }
}

/// A copy of `e` for answering several requests with one failure.
fn duplicate(e: &Error) -> Error {
    match e {
        Error::Io { context, source } => Error::Io {
            context: context.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::Corrupt(what) => Error::Corrupt(what.clone()),
        _ => Error::Closed,
    }
}
