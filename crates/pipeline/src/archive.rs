//! The archive sink: a second consumer of the log that gathers measurement
//! rows into large batches and writes them to the Parquet archive.
//!
//! It has its own consumer name (its own offsets), so the archive neither
//! slows the store down nor depends on it. Its offsets are committed only
//! after [`Archive::write`] returned (the files are durable): a crash
//! re-reads and rewrites what was not committed, and loses nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_archive::Archive;
use tributary_log::{Stream, StreamConsumer, StreamError};
use tributary_store::Row;

use crate::{process_with, Error, Outcome, Result};

/// Records taken from the log per read at most.
const READ: usize = 1024;
/// First pause before retrying a write the storage refused; doubled up to
/// [`RETRY_MAX`] (the batch is retried, never dropped).
const RETRY: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// When a batch is written, and what is never archived again.
#[derive(Debug, Clone, PartialEq)]
pub struct FlushPolicy {
    /// Once this many rows are gathered, or this many log records were
    /// read (bounds the sink's memory: a row is about 150 bytes plus its
    /// strings, a record's position up to a few dozen).
    pub max_rows: usize,
    /// Once the oldest gathered record is this old (bounds how far the
    /// archive lags behind when little arrives).
    pub max_age: Duration,
    /// A message whose measurements fall on more UTC days (one `date=`
    /// partition each) is not archived; the store sink makes it a dead
    /// letter with the reason. 0: no limit.
    pub max_days_per_message: u32,
    /// Rows erased by their owner: read again from the log, not archived.
    pub erased: crate::erasure::Tombstones,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            max_rows: 100_000,
            max_age: Duration::from_secs(60),
            max_days_per_message: crate::DEFAULT_MAX_DAYS_PER_MESSAGE,
            erased: crate::erasure::Tombstones::default(),
        }
    }
}

/// What the archive sink did, since it started.
#[derive(Debug, Default)]
pub struct ArchiveStats {
    pub records: AtomicU64,
    pub rows: AtomicU64,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    /// Writes the storage refused (each is retried).
    pub failures: AtomicU64,
}

/// Consumes `stream` under `consumer` into `archive` until `stop` is
/// cancelled or the log closes; then writes what it has gathered (once,
/// without retrying). While the log is unavailable it waits; when its
/// position was deleted before it was read it goes on from where a new
/// consumer of its name starts; a read error that waiting does not mend
/// ends it with that error, after the same last write.
pub async fn archive<S: Stream>(
    stream: &S,
    archive: &Archive,
    consumer: &str,
    policy: FlushPolicy,
    stats: &ArchiveStats,
    stop: CancellationToken,
) -> Result<()> {
    let mut reader = stream
        .consumer(consumer)
        .map_err(Error::consumer(consumer))?;
    tracing::info!(consumer, archive = archive.location(), "archive started");
    let mut batch = Batch::<S::Position>::default();
    loop {
        // `next` is cancel-safe, so waiting on it and on the age limit at
        // once loses no record.
        let deadline = batch.deadline(policy.max_age);
        let event = tokio::select! {
            () = stop.cancelled() => Event::Stop,
            () = sleep_until(deadline) => Event::Due,
            read = reader.next(READ) => Event::Read(read),
        };
        match event {
            Event::Stop => {
                last_write(archive, &mut reader, &mut batch, stats).await;
                return Ok(());
            }
            Event::Due => {}
            Event::Read(Err(e @ StreamError::Closed(_))) => {
                tracing::warn!(error = %e, "archive: the log closed; stopping");
                last_write(archive, &mut reader, &mut batch, stats).await;
                return Ok(());
            }
            Event::Read(Err(e @ StreamError::PositionGone(_))) => {
                tracing::warn!(error = %e, consumer,
                    "archive: records were deleted before they were read; going on from the oldest kept");
                // The gathered positions stay valid: commits go by name.
                reader = stream
                    .consumer(consumer)
                    .map_err(Error::consumer(consumer))?;
                // Stopped meanwhile: the next turn sees it and writes what it has.
                crate::pause_unless_stopped(&stop, RETRY).await;
                continue;
            }
            Event::Read(Err(e)) if !e.is_retryable() => {
                last_write(archive, &mut reader, &mut batch, stats).await;
                return Err(Error::Read(e));
            }
            Event::Read(Err(e)) => {
                tracing::warn!(error = %e, "archive: read the log; retrying");
                // Stopped meanwhile: the next turn sees it and writes what it has.
                crate::pause_unless_stopped(&stop, RETRY).await;
                continue;
            }
            Event::Read(Ok(records)) => {
                for (position, record) in records {
                    if let Outcome::Rows(mut rows) =
                        process_with(&record, policy.max_days_per_message)
                    {
                        policy.erased.retain_rows(&mut rows);
                        batch.rows.extend(rows);
                    }
                    batch.add(position);
                }
                // Records that are no measurements count too: their
                // positions wait for the commit, and must stay bounded.
                if batch.rows.len() < policy.max_rows && batch.positions.len() < policy.max_rows {
                    continue;
                }
            }
        }
        let mut pause = RETRY;
        while let Err(e) = flush(archive, &mut reader, &mut batch, stats).await {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, rows = batch.rows.len(), retry_in = ?pause, "archive: write failed; retrying");
            if crate::pause_unless_stopped(&stop, pause).await {
                return Ok(());
            }
            pause = (pause * 2).min(RETRY_MAX);
        }
    }
}

/// What woke the sink up.
enum Event<P> {
    Stop,
    /// The oldest gathered record reached the age limit.
    Due,
    Read(Result<tributary_log::Batch<P>, StreamError>),
}

/// What is gathered and not yet written.
struct Batch<P> {
    rows: Vec<Row>,
    positions: Vec<P>,
    /// When the first record of this batch was read.
    since: Option<Instant>,
}

impl<P> Default for Batch<P> {
    fn default() -> Self {
        Batch {
            rows: Vec::new(),
            positions: Vec::new(),
            since: None,
        }
    }
}

impl<P> Batch<P> {
    fn add(&mut self, position: P) {
        self.positions.push(position);
        self.since.get_or_insert_with(Instant::now);
    }

    fn deadline(&self, max_age: Duration) -> Option<Instant> {
        self.since.map(|since| since + max_age)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Writes what is gathered once, when the sink stops; what fails is read
/// and written again at the next start (nothing was committed).
async fn last_write<C: StreamConsumer>(
    archive: &Archive,
    reader: &mut C,
    batch: &mut Batch<C::Position>,
    stats: &ArchiveStats,
) {
    if batch.positions.is_empty() {
        return;
    }
    if let Err(e) = flush(archive, reader, batch, stats).await {
        tracing::warn!(error = %e, "archive: final write failed; it is redone at the next start");
    }
}

/// Writes the batch, then commits its positions; empties it on success.
async fn flush<C: StreamConsumer>(
    archive: &Archive,
    reader: &mut C,
    batch: &mut Batch<C::Position>,
    stats: &ArchiveStats,
) -> tributary_archive::Result<()> {
    let written = archive.write(&batch.rows).await?;
    stats
        .records
        .fetch_add(batch.positions.len() as u64, Ordering::Relaxed);
    stats.rows.fetch_add(written.rows as u64, Ordering::Relaxed);
    stats
        .files
        .fetch_add(written.files.len() as u64, Ordering::Relaxed);
    stats.bytes.fetch_add(written.bytes, Ordering::Relaxed);
    if !written.files.is_empty() {
        tracing::debug!(
            files = written.files.len(),
            rows = written.rows,
            "archive: batch written"
        );
    }
    // A failed commit only means these records are archived again after a
    // restart (readers drop the repeats by message id and index).
    if let Err(e) = reader.commit(&batch.positions).await {
        tracing::warn!(error = %e, "archive: commit the consumer offset");
    }
    *batch = Batch::default();
    Ok(())
}
