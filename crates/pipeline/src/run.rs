//! The consuming loop: read a batch, turn it into rows and dead letters,
//! store them, commit. `run` is the pipeline inside `serve` (forever, on a
//! committed consumer); `reprocess` is the same loop once over the whole
//! log, up to where it ended when it started.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_log::{ReadToEnd, Stream, StreamConsumer, StreamError};
use tributary_store::Store;

use crate::{process_with, Error, Outcome, Result};

/// Records taken from the log per batch at most.
const BATCH: usize = 512;
/// Pause before retrying a batch the store refused (it is retried, never skipped).
const RETRY: Duration = Duration::from_secs(1);
/// How often `Stats::lag` is refreshed: at most this often while busy (on
/// Kafka each refresh asks the brokers), and at least this often while the
/// pipeline waits for records, so an idle, caught-up pipeline shows 0.
pub const LAG_EVERY: Duration = Duration::from_secs(1);

/// What the pipeline did, since it started; shared with whoever reports
/// it (the progress line, `/metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Log records read and done with (stored, dead-lettered or skipped).
    pub records: AtomicU64,
    /// New measurement rows the store accepted.
    pub measurements: AtomicU64,
    /// Rows the store had already (reprocessing).
    pub already_stored: AtomicU64,
    pub dead_letters: AtomicU64,
    /// Rows (and dead letters) an owner erased, read again from the log and not stored.
    pub erased: AtomicU64,
    /// Records that are no measurements (not SenML, or anonymous).
    pub skipped: AtomicU64,
    /// Motion rows (`acc_x` … `gyr_z`) left to the archive because the store does not keep
    /// them (`[model] store_motion = false`).
    pub motion_not_stored: AtomicU64,
    /// Records in the log the pipeline has not read yet, as of the last
    /// refresh (`LAG_EVERY`); kept when the backend cannot tell.
    pub lag: AtomicU64,
}

/// How a `reprocess` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Everything before the end was stored.
    Complete,
    /// `stop` was cancelled first: the store has what was processed so far.
    Interrupted,
}

/// Which rows the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MotionRows {
    /// Every row, motion included.
    Store,
    /// All but raw motion (`acc_x` … `gyr_z`: 300 rows/s per person at 50 Hz), which the archive
    /// keeps and the activity sink reads from the log.
    Skip,
}

impl MotionRows {
    fn keeps(self, row: &tributary_store::Row) -> bool {
        self == MotionRows::Store || tributary_model::motion::channel_of(&row.name).is_none()
    }
}

/// Which rows the store keeps, and which messages it makes dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePolicy {
    pub motion: MotionRows,
    /// Rows and dead letters erased by their owner, never stored again.
    pub erased: crate::erasure::Tombstones,
    /// Distinct UTC days one message may span (`[archive]
    /// max_days_per_message`; 0: no limit): the store refuses what the
    /// archive would, so a message is either in both or a dead letter.
    pub max_days_per_message: u32,
}

impl From<MotionRows> for StorePolicy {
    fn from(motion: MotionRows) -> StorePolicy {
        StorePolicy {
            motion,
            erased: crate::erasure::Tombstones::default(),
            max_days_per_message: crate::DEFAULT_MAX_DAYS_PER_MESSAGE,
        }
    }
}

/// What the loop does besides storing.
struct Policy {
    /// Commit each batch's positions once stored (a resumable consumer).
    commit: bool,
    /// How long a failing read or store is retried before the loop gives
    /// up with its error; `None`: retried until stopped (the pipeline of a
    /// server waits out a store or Kafka outage).
    patience: Option<Duration>,
    motion: MotionRows,
    max_days: u32,
    erased: crate::erasure::Tombstones,
}

/// Consumes `stream` under `consumer` until `stop` is cancelled, or the
/// log closes (`Ok`), or reading it fails in a way waiting does not mend
/// (`Err`). While the log is unavailable it waits (a store or Kafka outage
/// is waited out). When its position was deleted before it was read, it
/// starts again where a new consumer of that name starts: its committed
/// position, else the oldest record kept (what a Kafka consumer group does
/// by itself).
pub async fn run<S: Stream>(
    stream: &S,
    store: &Store,
    consumer: &str,
    rows: impl Into<StorePolicy>,
    stats: &Stats,
    stop: CancellationToken,
) -> Result<()> {
    tracing::info!(consumer, store = store.engine(), "pipeline started");
    let rows = rows.into();
    let policy = Policy {
        commit: true,
        patience: None,
        motion: rows.motion,
        max_days: rows.max_days_per_message,
        erased: rows.erased,
    };
    loop {
        let mut reader = stream
            .consumer(consumer)
            .map_err(Error::consumer(consumer))?;
        match consume(&mut reader, store, stats, &stop, &policy, |_| false).await {
            Err(Error::Read(e @ StreamError::PositionGone(_))) => {
                tracing::warn!(error = %e, consumer,
                    "pipeline: records were deleted before they were read; going on from the oldest kept");
                // A backend that kept saying so must not make this a busy loop.
                if crate::pause_unless_stopped(&stop, RETRY).await {
                    return Ok(());
                }
            }
            result => return result.map(|_| ()),
        }
    }
}

/// Processes what `reader` reads until it has read everything before
/// `end` (`ReadToEnd::end`, taken before), or until `stop` is cancelled
/// or the log closes ([`Finish::Interrupted`]). Commits nothing: a
/// reprocessing run always starts from the first record and leaves no
/// progress behind. A read or store error that lasts longer than
/// `patience` ends it with that error, and at once one that waiting does
/// not mend (records deleted before they were read: the run cannot be
/// complete).
pub async fn reprocess<C: ReadToEnd>(
    reader: &mut C,
    end: &C::End,
    store: &Store,
    rows: impl Into<StorePolicy>,
    stats: &Stats,
    stop: &CancellationToken,
    patience: Duration,
) -> Result<Finish> {
    let rows = rows.into();
    let policy = Policy {
        commit: false,
        patience: Some(patience),
        motion: rows.motion,
        max_days: rows.max_days_per_message,
        erased: rows.erased,
    };
    consume(reader, store, stats, stop, &policy, |reader| {
        reader.reached(end)
    })
    .await
}

/// Remembers since when an operation has been failing, to give up after
/// the policy's patience.
struct Failing(Option<Instant>);

impl Failing {
    /// Logs `e` as retried; false once failing has lasted beyond
    /// `patience`, when the caller gives up with `e` instead.
    fn retry(&mut self, what: &str, e: &dyn std::fmt::Display, patience: Option<Duration>) -> bool {
        let since = *self.0.get_or_insert_with(Instant::now);
        if patience.is_some_and(|patience| since.elapsed() >= patience) {
            return false;
        }
        tracing::warn!(error = %e, "pipeline: {what}; retrying");
        true
    }
}

/// The loop under `run` and `reprocess`; `done` is asked before each read.
async fn consume<C: StreamConsumer>(
    reader: &mut C,
    store: &Store,
    stats: &Stats,
    stop: &CancellationToken,
    policy: &Policy,
    done: impl Fn(&C) -> bool,
) -> Result<Finish> {
    let mut read_failing = Failing(None);
    let mut lag_refreshed: Option<Instant> = None;
    // Since when nothing came although more was expected (reprocess).
    let mut idle_since = Instant::now();
    loop {
        if done(reader) {
            return Ok(Finish::Complete);
        }
        if lag_refreshed.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
            // On Kafka this asks the brokers, which can take seconds while
            // they are away: shutdown does not wait for it.
            let lag = tokio::select! {
                () = stop.cancelled() => return Ok(Finish::Interrupted),
                lag = reader.lag() => lag,
            };
            if let Some(lag) = lag {
                stats.lag.store(lag, Ordering::Relaxed);
            }
            lag_refreshed = Some(Instant::now());
        }
        // Waits at most `LAG_EVERY` (`next` is cancel-safe), so the lag is
        // refreshed while idle too.
        let batch = tokio::select! {
            () = stop.cancelled() => return Ok(Finish::Interrupted),
            batch = tokio::time::timeout(LAG_EVERY, reader.next(BATCH)) => batch,
        };
        let batch = match batch {
            Err(_idle) => {
                // With a patience, nothing read for that long (Kafka
                // unreachable: its client retries without reporting an
                // error) ends the loop; `done` said records remain.
                if let Some(patience) = policy.patience {
                    if idle_since.elapsed() >= patience {
                        return Err(Error::Stalled(patience));
                    }
                }
                continue;
            }
            Ok(Ok(batch)) => batch,
            Ok(Err(e @ StreamError::Closed(_))) => {
                // Nothing more will come: a shutdown that closed the log
                // before stopping this loop, or the log's writer failed.
                tracing::warn!(error = %e, "pipeline: the log closed; stopping");
                return Ok(Finish::Interrupted);
            }
            Ok(Err(e)) if !e.is_retryable() => return Err(Error::Read(e)),
            Ok(Err(e)) => {
                if !read_failing.retry("read the log", &e, policy.patience) {
                    return Err(Error::Read(e));
                }
                if crate::pause_unless_stopped(stop, RETRY).await {
                    return Ok(Finish::Interrupted);
                }
                continue;
            }
        };
        idle_since = Instant::now();
        read_failing = Failing(None);
        let mut rows = Vec::new();
        let mut letters = Vec::new();
        let mut positions = Vec::with_capacity(batch.len());
        for (position, record) in batch {
            match process_with(&record, policy.max_days) {
                Outcome::Skip => {
                    stats.skipped.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Rows(mut new) => {
                    let erased = policy.erased.retain_rows(&mut new);
                    stats.erased.fetch_add(erased as u64, Ordering::Relaxed);
                    let (total, len_before) = (new.len(), rows.len());
                    rows.extend(new.into_iter().filter(|r| policy.motion.keeps(r)));
                    let kept = rows.len() - len_before;
                    stats
                        .motion_not_stored
                        .fetch_add((total - kept) as u64, Ordering::Relaxed);
                }
                Outcome::Dead(letter) if policy.erased.covers_letter(&letter) => {
                    stats.erased.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Dead(letter) => {
                    // Debug only: a device sending garbage must not flood the log
                    // (owners see their dead letters in the API; the progress
                    // line counts them).
                    tracing::debug!(owner = %letter.owner, device = %letter.device, topic = %letter.topic,
                        reason = %letter.reason, "pipeline: dead letter");
                    letters.push(letter);
                }
            }
            positions.push(position);
        }
        // Until the store has the whole batch, nothing is committed: a
        // failure retries it (rows it already has are skipped by the store).
        let mut store_failing = Failing(None);
        loop {
            match store_batch(store, &rows, &letters).await {
                Ok(new) => {
                    stats.measurements.fetch_add(new as u64, Ordering::Relaxed);
                    stats
                        .already_stored
                        .fetch_add((rows.len() - new) as u64, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    if !store_failing.retry("store the batch", &e, policy.patience) {
                        return Err(Error::Store(e));
                    }
                    if crate::pause_unless_stopped(stop, RETRY).await {
                        return Ok(Finish::Interrupted);
                    }
                }
            }
        }
        stats
            .records
            .fetch_add(positions.len() as u64, Ordering::Relaxed);
        stats
            .dead_letters
            .fetch_add(letters.len() as u64, Ordering::Relaxed);
        if policy.commit {
            if let Err(e) = reader.commit(&positions).await {
                tracing::warn!(error = %e, "pipeline: commit the consumer offset");
            }
        }
    }
}

async fn store_batch(
    store: &Store,
    rows: &[tributary_store::Row],
    letters: &[tributary_store::DeadLetter],
) -> tributary_store::Result<usize> {
    let new = if rows.is_empty() {
        0
    } else {
        store.insert(rows).await?
    };
    for letter in letters {
        store.dead_letter(letter).await?;
    }
    Ok(new)
}
