//! The activity sink: a consumer of the log that turns each device's motion stream into an
//! activity timeline with the behaviour model (`tributary-model`), as the data arrive.
//!
//! - Its own consumer name, so it neither slows the measurement store down nor depends on it.
//! - Per owner and device it windows the stream exactly as the model was trained
//!   (`streams.rs`), classifies every window of a read in one batch (on the blocking pool: it
//!   is CPU work), smooths, and upserts the segments each window made or extended.
//! - Offsets are committed once the store has the segments and dead letters; a store error
//!   retries the batch. The per-device state (at most 2.56 s of samples) lives in memory: after
//!   a restart a device's first window starts with its next sample.
//! - An owner who switched the model off (`activity_settings`) is skipped, and the set is read
//!   again every [`REFRESH`].

mod streams;

pub use streams::{Added, MotionStreams};

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_log::{Stream, StreamConsumer, StreamError};
use tributary_model::model_file::Model;
use tributary_store::{ActivitySegment, DeadLetter, Store};

use crate::erasure::Tombstones;
use crate::{Error, Result};

/// Records taken from the log per read at most.
const READ: usize = 512;
/// How often the owners who switched the model off are read again, and idle streams dropped.
pub const REFRESH: Duration = Duration::from_secs(1);
/// A device silent for this long loses its stream state (a few kilobytes).
const IDLE: Duration = Duration::from_secs(600);
/// Pause before retrying a read or a write that failed.
const RETRY: Duration = Duration::from_secs(1);

/// What the activity sink did, since it started.
#[derive(Debug, Default)]
pub struct ActivityStats {
    pub records: AtomicU64,
    /// Motion packs taken.
    pub packs: AtomicU64,
    pub windows: AtomicU64,
    /// Segment writes (a segment is written again each time it grows).
    pub segment_writes: AtomicU64,
    pub dead_letters: AtomicU64,
    /// Device streams held in memory.
    pub streams: AtomicU64,
}

/// Consumes `stream` under `consumer` until `stop` is cancelled or the log closes.
///
/// Segments and dead letters an erasure covers (`erased`) are not written:
/// reading motion again after an erasure brings none of it back.
pub async fn activity<S: Stream>(
    stream: &S,
    store: &Store,
    model: Arc<Model>,
    consumer: &str,
    stats: &ActivityStats,
    erased: &Tombstones,
    stop: CancellationToken,
) -> Result<()> {
    let mut reader = stream
        .consumer(consumer)
        .map_err(Error::consumer(consumer))?;
    tracing::info!(consumer, model = %model.metadata.version, "activity sink started");
    let mut streams = MotionStreams::new(model.metadata.version.clone());
    let mut disabled: HashSet<String> = HashSet::new();
    let mut refreshed: Option<Instant> = None;
    loop {
        if refreshed.is_none_or(|at| at.elapsed() >= REFRESH) {
            match store.activity_disabled_owners().await {
                Ok(owners) => disabled = owners,
                Err(e) => {
                    tracing::warn!(error = %e, "activity: read the owners who switched the model off")
                }
            }
            streams.forget(&disabled, IDLE);
            stats.streams.store(streams.len() as u64, Ordering::Relaxed);
            refreshed = Some(Instant::now());
        }
        let read = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            read = tokio::time::timeout(REFRESH, reader.next(READ)) => read,
        };
        let batch = match read {
            Err(_idle) => continue,
            Ok(Ok(batch)) => batch,
            Ok(Err(e @ StreamError::Closed(_))) => {
                tracing::warn!(error = %e, "activity: the log closed; stopping");
                return Ok(());
            }
            Ok(Err(e @ StreamError::PositionGone(_))) => {
                tracing::warn!(error = %e, consumer,
                    "activity: records were deleted before they were read; going on from the oldest kept");
                reader = stream
                    .consumer(consumer)
                    .map_err(Error::consumer(consumer))?;
                if crate::pause_unless_stopped(&stop, RETRY).await {
                    return Ok(());
                }
                continue;
            }
            Ok(Err(e)) if !e.is_retryable() => return Err(Error::Read(e)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "activity: read the log; retrying");
                if crate::pause_unless_stopped(&stop, RETRY).await {
                    return Ok(());
                }
                continue;
            }
        };
        let mut letters = Vec::new();
        let mut positions = Vec::with_capacity(batch.len());
        for (position, record) in batch {
            positions.push(position);
            if record.owner.is_empty() || disabled.contains(&record.owner) {
                continue;
            }
            match streams.add(&record) {
                Added::NotMotion => {}
                Added::Samples { windows } => {
                    stats.packs.fetch_add(1, Ordering::Relaxed);
                    stats.windows.fetch_add(windows as u64, Ordering::Relaxed);
                }
                Added::Dead(letter) => letters.push(letter),
            }
        }
        // Inference is CPU work: off the async workers, the streams lent and given back.
        let model_ref = Arc::clone(&model);
        let (back, mut segments) = tokio::task::spawn_blocking(move || {
            let segments = streams.classify(&model_ref.classifier);
            (streams, segments)
        })
        .await
        .map_err(|e| Error::Model(format!("the classifying task failed: {e}")))?;
        streams = back;
        erased.retain_segments(&mut segments);
        letters.retain(|letter| !erased.covers_letter(letter));
        loop {
            match write(store, &segments, &letters).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "activity: store the segments; retrying");
                    if crate::pause_unless_stopped(&stop, RETRY).await {
                        return Ok(());
                    }
                }
            }
        }
        stats
            .records
            .fetch_add(positions.len() as u64, Ordering::Relaxed);
        stats
            .segment_writes
            .fetch_add(segments.len() as u64, Ordering::Relaxed);
        stats
            .dead_letters
            .fetch_add(letters.len() as u64, Ordering::Relaxed);
        if let Err(e) = reader.commit(&positions).await {
            tracing::warn!(error = %e, "activity: commit the consumer offset");
        }
    }
}

async fn write(
    store: &Store,
    segments: &[ActivitySegment],
    letters: &[DeadLetter],
) -> tributary_store::Result<()> {
    if !segments.is_empty() {
        store.upsert_activity(segments).await?;
    }
    for letter in letters {
        store.dead_letter(letter).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
