//! The durable log at the centre of Tributary: every message is appended here
//! before it is acknowledged, and every consumer (routing to subscribers,
//! later processing and storage) reads from here and commits its offset.
//!
//! # Overview
//!
//! - [`Log`]: a cheap, cloneable handle. [`Log::append`] resolves with the
//!   record's [`Offset`] once the record is fsync'd (group commit, see
//!   `writer`); [`Log::read`] returns durable records from any kept offset;
//!   [`Log::wait_beyond`] waits for new ones; [`Log::commit_offset`] records
//!   a consumer's progress, which protects unread segments from retention.
//! - [`Record`]: one received message with everything consumers need.
//! - [`Stream`], [`StreamConsumer`], [`ReadToEnd`]: the log as consumers see
//!   it, whatever the backend (this log, or Kafka in `tributary-kafka`);
//!   their calls fail with a [`StreamError`] that says who is at fault.
//! - [`LogConfig`] (directory, segment size, retention) and [`LogTuning`]
//!   (cache, batching, queue capacity); [`LogStats`] for metrics.
//!
//! # On disk
//!
//! ```text
//! <dir>/00000000000000000000.log   segment: frames with offsets 0..n
//! <dir>/00000000000000004711.log   segment: frames from offset 4711 (the last one is active)
//! <dir>/consumers.journal          committed consumer offsets (see `offsets`)
//! <dir>/lock                       flock'd while a `Log` has the directory open
//! ```
//!
//! The frame layout is documented in the `record` module, segment files in
//! `segment`, recovery in `recovery`.
//!
//! # Invariants
//!
//! - Every record below [`Log::end_offset`] is fsync'd, and only those are
//!   visible to readers; `append` resolves only after the fsync.
//! - Offsets are dense: they increase by 1 from [`Log::start_offset`] to
//!   `end_offset`, across segments.
//! - A torn tail of the active segment is truncated on open; a record that
//!   was reported durable is never dropped: damage in a sealed segment, or
//!   more damage than one unsynced write can explain, fails the open with
//!   [`Error::Corrupt`].
//! - Retention deletes whole segments, oldest first, never the active one,
//!   and never one holding an offset at or above the smallest committed
//!   consumer offset.
//! - A consumer's committed offset after a crash is one it committed
//!   (possibly an older one), never an invented one.
//!
//! # Example
//!
//! ```
//! # async fn demo() -> tributary_log::Result<()> {
//! use tributary_log::{Log, LogConfig, Offset, Record};
//!
//! let dir = std::env::temp_dir().join("tributary-log-doc-example");
//! # let _ = std::fs::remove_dir_all(&dir);
//! let log = Log::open(LogConfig::new(&dir))?;
//! let record = Record { topic: "sensors/1/hr".into(), payload: "72".into(), ..Record::default() };
//! let offset = log.append(record).await?; // durable now
//! let records = log.read(offset, 10).await?;
//! assert_eq!(records[0].1.topic, "sensors/1/hr");
//! log.commit_offset("router", Offset(offset.0 + 1))?;
//! log.close().await?;
//! # Ok(())
//! # }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

mod config;
mod offsets;
mod record;
mod recovery;
mod segment;
mod state;
mod stream;
mod writer;

#[cfg(test)]
mod tests;

pub use config::{
    LogConfig, LogFileConfig, LogTuning, DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, DEFAULT_SEGMENT_BYTES,
};
pub use stream::{
    conformance, Batch, BoxError, LogConsumer, ReadToEnd, Stream, StreamConsumer, StreamError,
};

use offsets::{Consumers, Journal};
use state::{LogCore, Progress, ReadStep, State};
use writer::{Cmd, Writer};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested offset was removed by retention; the oldest kept is `start`.
    #[error("offset {requested} is before the log start {start}")]
    OffsetOutOfRange { requested: u64, start: u64 },
    /// The log is at `max_bytes` and retention may not delete the oldest
    /// segment because a consumer still needs it: appends are refused.
    #[error(
        "log is full ({bytes} bytes) and its oldest segment is still needed by consumer {consumer}"
    )]
    Full { bytes: u64, consumer: String },
    /// The log was closed (shutdown) or its writer failed earlier.
    #[error("log is closed")]
    Closed,
    /// Stored data that cannot have been written by a torn write: the
    /// message names the file and byte position.
    #[error("corrupt log: {0}")]
    Corrupt(String),
    /// Another `Log` (in this process or another: a running `tributary
    /// serve`) has the directory open; two writers would corrupt it.
    #[error("log directory {dir} is in use: another process has it open")]
    Locked { dir: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// An append handed to the writer by [`Log::try_submit`]; resolves with
/// the first offset once the records are durable.
#[derive(Debug)]
pub struct Submitted {
    response: oneshot::Receiver<Result<Offset>>,
}

impl std::future::Future for Submitted {
    type Output = Result<Offset>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Offset>> {
        std::pin::Pin::new(&mut self.response)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// Why [`Log::try_submit`] did not take the records.
#[derive(Debug)]
pub enum SubmitError {
    /// The writer's queue is full; the records are handed back.
    QueueFull(Vec<Record>),
    Closed,
}

/// A position in the log; the first record has offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub u64);

/// Unique id of a message, assigned by the broker on receipt. As text (the
/// Kafka header, the store, a saved session) it is 32 lower-case
/// hexadecimal digits: a JSON number cannot hold a u128 everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MessageId(pub u128);

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Text that is not a message id's 32 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a message id (32 hexadecimal digits): {0:?}")]
pub struct NotAMessageId(pub String);

impl std::str::FromStr for MessageId {
    type Err = NotAMessageId;

    /// Exactly 32 hexadecimal digits (`u128::from_str_radix` alone would
    /// also take a sign or fewer digits).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit());
        match u128::from_str_radix(text, 16) {
            Ok(id) if digits => Ok(MessageId(id)),
            _ => Err(NotAMessageId(text.to_owned())),
        }
    }
}

impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, to: S) -> Result<S::Ok, S::Error> {
        to.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(from: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(from)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Hands out message ids unique across restarts: the start time (Unix
/// nanoseconds) in the high 64 bits, a counter in the low 64. Shared by
/// everything that stamps records (the broker, the bridge).
#[derive(Debug)]
pub struct MessageIds {
    epoch: u64,
    counter: std::sync::atomic::AtomicU64,
}

impl MessageIds {
    pub fn new() -> Self {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        MessageIds {
            epoch,
            counter: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> MessageId {
        MessageId(
            (u128::from(self.epoch) << 64)
                | u128::from(self.counter.fetch_add(1, Ordering::Relaxed)),
        )
    }
}

impl Default for MessageIds {
    fn default() -> Self {
        MessageIds::new()
    }
}

/// One received message with everything later consumers need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Unix time in milliseconds when the broker received the message.
    pub receive_time_ms: u64,
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5.0 properties of the PUBLISH in wire encoding (without the
    /// property length prefix), empty for 3.1.1.
    pub properties: Bytes,
    pub payload: Bytes,
    pub client_id: String,
    pub message_id: MessageId,
    /// Authenticated owner and device; empty for anonymous clients.
    pub owner: String,
    pub device: String,
}

/// What [`Log::stats`] reports. Counters count since open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    pub records_appended: u64,
    /// Encoded bytes written to segments.
    pub bytes_appended: u64,
    /// Group commits: `records_appended / fsyncs` is the mean batch size.
    pub fsyncs: u64,
    /// Appends refused with `Error::Full`.
    pub full_rejections: u64,
    pub segments_deleted: u64,
    /// Segments on disk, the active one included.
    pub segments: usize,
    /// Durable bytes in all segments.
    pub disk_bytes: u64,
    pub cached_records: usize,
    /// Estimated memory of the record cache.
    pub cached_bytes: usize,
}

/// A handle to an open log; clones share it. The writer thread stops when
/// the log is closed or the last handle is dropped.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<LogCore>,
    /// Requests to the writer thread; bounded (`LogTuning::queue_capacity`),
    /// senders wait when it is full.
    tx: mpsc::Sender<Cmd>,
    /// Joined by tests that simulate a crash.
    #[cfg_attr(not(test), allow(dead_code))]
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.core.config.dir)
            .field("start", &self.start_offset())
            .field("end", &self.end_offset())
            .finish()
    }
}

impl Log {
    /// Opens (creating, or recovering after a crash) the log in `config.dir`
    /// with default tuning. Blocking: it scans every segment.
    pub fn open(config: LogConfig) -> Result<Log> {
        Log::open_with(config, LogTuning::default())
    }

    /// [`Log::open`] with explicit tuning.
    pub fn open_with(mut config: LogConfig, tuning: LogTuning) -> Result<Log> {
        config.segment_bytes = config.segment_bytes.max(1);
        let recovered = recovery::recover(&config.dir, &tuning)?;
        let (journal, committed) = Journal::open(&config.dir)?;
        let end = recovered
            .segments
            .last()
            .expect("recovery returns the active segment")
            .end;
        let state = State {
            segments: recovered.segments,
            end,
            cache: Default::default(),
            cache_start: end,
            cache_bytes: 0,
        };
        let (progress, _) = watch::channel(Progress { end, closed: false });
        let (tx, rx) = mpsc::channel(tuning.queue_capacity.max(1));
        let core = Arc::new(LogCore {
            config,
            tuning,
            state: Mutex::new(state),
            progress,
            consumers: Mutex::new(Consumers {
                committed,
                dirty: Default::default(),
                yielding: Vec::new(),
            }),
            closed: AtomicBool::new(false),
            counters: Default::default(),
        });
        let writer = Writer::new(
            Arc::clone(&core),
            rx,
            recovered.active_file,
            journal,
            recovered.lock,
        );
        let thread = std::thread::Builder::new()
            .name("tributary-log-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::io("spawn log writer thread", e))?;
        Ok(Log {
            inner: Arc::new(Inner {
                core,
                tx,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Resolves once the record is durable (fsync'd, group commit).
    ///
    /// If the future is dropped before it resolves, the record may or may
    /// not have been appended.
    pub async fn append(&self, record: Record) -> Result<Offset> {
        self.append_batch(vec![record]).await
    }

    /// Appends `records` atomically with respect to `Error::Full` (all or
    /// none are accepted) at dense offsets; resolves with the first offset
    /// once all are durable.
    pub async fn append_batch(&self, records: Vec<Record>) -> Result<Offset> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let (reply, response) = oneshot::channel();
        self.inner
            .tx
            .send(Cmd::Append { records, reply })
            .await
            .map_err(|_| Error::Closed)?;
        response.await.map_err(|_| Error::Closed)?
    }

    /// Hands `records` to the writer now, without waiting, and returns a
    /// future that resolves with the first offset once all are durable.
    /// Submissions that succeed reach the log in the order they were made,
    /// so a caller may keep several in flight and still keep its order.
    /// When the writer's queue is full the records come back in
    /// [`SubmitError::QueueFull`] (the caller waits with `append_batch`).
    pub fn try_submit(&self, records: Vec<Record>) -> std::result::Result<Submitted, SubmitError> {
        if self.is_closed() {
            return Err(SubmitError::Closed);
        }
        let (reply, response) = oneshot::channel();
        match self.inner.tx.try_send(Cmd::Append { records, reply }) {
            Ok(()) => Ok(Submitted { response }),
            Err(mpsc::error::TrySendError::Full(Cmd::Append { records, .. })) => {
                Err(SubmitError::QueueFull(records))
            }
            Err(_) => Err(SubmitError::Closed),
        }
    }

    /// Counters and sizes for metrics.
    pub fn stats(&self) -> LogStats {
        let core = &self.inner.core;
        let c = &core.counters;
        let state = core.state();
        LogStats {
            records_appended: c.records.load(Ordering::Relaxed),
            bytes_appended: c.bytes.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            full_rejections: c.full_rejections.load(Ordering::Relaxed),
            segments_deleted: c.segments_deleted.load(Ordering::Relaxed),
            segments: state.segments.len(),
            disk_bytes: state.segments.iter().map(|s| s.len).sum(),
            cached_records: state.cache.len(),
            cached_bytes: state.cache_bytes,
        }
    }

    /// Offset the next record will get; every record below is durable and readable.
    pub fn end_offset(&self) -> Offset {
        Offset(self.inner.core.progress.borrow().end)
    }

    /// The oldest offset still kept (retention deletes below it).
    pub fn start_offset(&self) -> Offset {
        Offset(self.inner.core.state().start())
    }

    /// Up to `max` durable records from `from`; empty when `from == end_offset()`
    /// (or beyond it). Fewer are returned when reading from disk exceeds
    /// `LogTuning::read_max_bytes`, but at least one when any exists.
    /// `Error::OffsetOutOfRange` when `from` was deleted by retention.
    pub async fn read(&self, from: Offset, max: usize) -> Result<Vec<(Offset, Arc<Record>)>> {
        let core = &self.inner.core;
        let read_max_bytes = core.tuning.read_max_bytes;
        let mut out: Vec<(Offset, Arc<Record>)> = Vec::new();
        let mut disk_bytes = 0usize;
        loop {
            let next = from.0 + out.len() as u64;
            let remaining = max - out.len();
            let budget = read_max_bytes.saturating_sub(disk_bytes);
            if budget == 0 {
                break;
            }
            let step = core
                .state()
                .plan_read(next, remaining, budget, out.is_empty())?;
            match step {
                ReadStep::Done => break,
                ReadStep::Records(records) => {
                    out.extend(records);
                    break; // the cache reaches the end of the log
                }
                ReadStep::Disk(plan) => {
                    let records = tokio::task::spawn_blocking(move || segment::read_frames(&plan))
                        .await
                        .map_err(|e| Error::io("read segment", std::io::Error::other(e)))??;
                    if records.is_empty() {
                        break;
                    }
                    disk_bytes += records
                        .iter()
                        .map(|(_, r)| record::frame_len(r))
                        .sum::<usize>();
                    out.extend(records);
                }
            }
        }
        Ok(out)
    }

    /// Whether the log was closed (or its writer failed): appends fail, and
    /// nothing more becomes readable.
    pub fn is_closed(&self) -> bool {
        self.inner.core.closed.load(Ordering::SeqCst)
    }

    /// Resolves when `end_offset() > offset`, or when the log closes. Cancel-safe.
    pub async fn wait_beyond(&self, offset: Offset) {
        let mut progress = self.inner.core.progress.subscribe();
        let _ = progress.wait_for(|p| p.end > offset.0 || p.closed).await;
    }

    /// Records that `consumer` has processed everything below `next`. Cheap
    /// (in memory); persisted by the writer within
    /// `LogTuning::offsets_flush_interval`, so after a crash the consumer
    /// may see an older committed offset. Until its first commit a consumer
    /// protects nothing from retention.
    pub fn commit_offset(&self, consumer: &str, next: Offset) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        check_consumer_name(consumer)?;
        let mut consumers = self.inner.core.consumers();
        match consumers.committed.get_mut(consumer) {
            Some(committed) => *committed = next.0,
            None => {
                consumers.committed.insert(consumer.to_owned(), next.0);
            }
        }
        match consumers.dirty.get_mut(consumer) {
            Some(dirty) => *dirty = Some(next.0),
            None => {
                consumers.dirty.insert(consumer.to_owned(), Some(next.0));
            }
        }
        Ok(())
    }

    /// The offset `consumer` committed last, `None` if it never did (or was removed).
    pub fn committed_offset(&self, consumer: &str) -> Option<Offset> {
        self.inner
            .core
            .consumers()
            .committed
            .get(consumer)
            .copied()
            .map(Offset)
    }

    /// Consumers whose names start with one of `prefixes` no longer hold
    /// retention back: past `max_bytes` or `max_age` the oldest segments
    /// are deleted even when such a consumer has not read them, and appends
    /// are never refused for them. Such a consumer finds the loss as
    /// [`Error::OffsetOutOfRange`] on its next read. For queues kept for
    /// someone else (MQTT sessions) that must not stop every producer.
    pub fn let_consumers_yield(&self, prefixes: &[&str]) {
        let mut consumers = self.inner.core.consumers();
        consumers.yielding = prefixes.iter().map(|p| (*p).to_owned()).collect();
    }

    /// Forgets `consumer` (e.g. its session ended), so it no longer holds
    /// back retention.
    pub fn remove_consumer(&self, consumer: &str) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let mut consumers = self.inner.core.consumers();
        // Removing an unknown (or already removed) consumer changes nothing,
        // and must not cancel a removal that is still to be persisted.
        if consumers.committed.remove(consumer).is_some() {
            consumers.dirty.insert(consumer.to_owned(), None);
        }
        Ok(())
    }

    /// Flushes offsets and stops the writer; later appends fail with `Closed`.
    /// Appends queued before the close are completed first.
    pub async fn close(&self) -> Result<()> {
        let (reply, response) = oneshot::channel();
        if self.inner.tx.send(Cmd::Close { reply }).await.is_err() {
            return Ok(()); // already closed
        }
        response.await.unwrap_or(Ok(()))
    }

    /// Stops the writer as a crash would: nothing more is persisted (dirty
    /// consumer offsets are lost), and the thread is gone when this returns.
    #[cfg(test)]
    pub(crate) async fn crash(self) {
        let (reply, response) = oneshot::channel();
        if self.inner.tx.send(Cmd::Crash { reply }).await.is_ok() {
            let _ = response.await;
        }
        let thread = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn check_consumer_name(consumer: &str) -> Result<()> {
    if consumer.len() > offsets::MAX_NAME_LEN {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "consumer name longer than 64 KiB",
        );
        return Err(Error::io("commit consumer offset", e));
    }
    Ok(())
}
