//! The consuming loop: read a batch, turn it into rows and dead letters,
//! store them, commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tributary_log::{Stream, StreamConsumer};
use tributary_store::Store;

use crate::{process, Outcome};

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
    /// Records that are no measurements (not SenML, or anonymous).
    pub skipped: AtomicU64,
    /// Records in the log the pipeline has not read yet, as of the last
    /// refresh (`LAG_EVERY`); kept when the backend cannot tell.
    pub lag: AtomicU64,
}

/// Consumes `stream` under `consumer` until `stop` is cancelled.
pub async fn run<S: Stream>(
    stream: &S,
    store: &Store,
    consumer: &str,
    stats: &Stats,
    stop: CancellationToken,
) -> Result<(), String> {
    let mut reader = stream.consumer(consumer)?;
    tracing::info!(consumer, store = store.engine(), "pipeline started");
    let mut lag_refreshed: Option<Instant> = None;
    loop {
        if lag_refreshed.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
            // On Kafka this asks the brokers, which can take seconds while
            // they are away: shutdown does not wait for it.
            let lag = tokio::select! {
                () = stop.cancelled() => return Ok(()),
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
            () = stop.cancelled() => return Ok(()),
            batch = tokio::time::timeout(LAG_EVERY, reader.next(BATCH)) => batch,
        };
        let batch = match batch {
            Err(_idle) => continue,
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "pipeline: read the log; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut rows = Vec::new();
        let mut letters = Vec::new();
        let mut positions = Vec::with_capacity(batch.len());
        for (position, record) in batch {
            match process(&record) {
                Outcome::Skip => {
                    stats.skipped.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Rows(new) => rows.extend(new),
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
                    tracing::warn!(error = %e, "pipeline: store the batch; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        () = tokio::time::sleep(RETRY) => {}
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
        if let Err(e) = reader.commit(&positions).await {
            tracing::warn!(error = %e, "pipeline: commit the consumer offset");
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
