//! The pipeline: a consumer of the log (embedded or Kafka, through
//! `tributary_log::Stream`) that decodes SenML messages into measurements
//! and writes them to the store; an invalid message becomes a dead letter
//! for its owner, with the reason, and the pipeline goes on.
//!
//! - Which messages: those of an authenticated owner whose MQTT 5.0 content
//!   type or topic suffix says SenML (`tributary_senml::format_of`); others
//!   are not measurements and are passed over.
//! - Exactly one measurement row per SenML record, whatever happens: rows
//!   are keyed by (owner, message id, record index) and the store skips
//!   rows it has, so reprocessing the log from any offset changes nothing.
//! - Offsets are committed only after the store has the batch's rows and
//!   dead letters; a store error retries the batch (nothing is skipped).
//! - A read error is acted on by its kind (`tributary_log::StreamError`):
//!   a log that is away is waited for, a closed log stops the sinks
//!   cleanly, records deleted before they were read are passed over with a
//!   new consumer (`reprocess` fails instead: it cannot be complete), and
//!   what waiting does not mend (storage, configuration) ends the sink
//!   with the error.
//! - The archive ([`archive`]) is a second consumer with its own offsets:
//!   it gathers rows into large batches of Parquet files
//!   (`tributary-archive`) and commits once they are durable.
//! - [`run`] is the pipeline of `serve`, for as long as it runs; [`reprocess`]
//!   is the same loop once from a new consumer's start to an end taken
//!   before (`tributary_log::ReadToEnd`), committing nothing
//!   (`tributary reprocess`).

pub mod activity;
mod archive;
mod config;
pub mod erasure;
mod error;
mod process;
mod run;

pub use activity::{activity, ActivityStats};
pub use archive::{archive, ArchiveStats, FlushPolicy};
pub use config::{ArchiveFileConfig, ModelFileConfig, DEFAULT_MODEL_DIR};
pub use error::{Error, Result};
pub use process::{process, process_with, Outcome, DEFAULT_MAX_DAYS_PER_MESSAGE};
pub use run::{reprocess, run, Finish, MotionRows, Stats, StorePolicy, LAG_EVERY};

/// Waits `pause` before a retry, or less when `stop` is cancelled
/// meanwhile; says whether it was (a sink then stops instead of retrying).
pub(crate) async fn pause_unless_stopped(
    stop: &tokio_util::sync::CancellationToken,
    pause: std::time::Duration,
) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(pause) => false,
    }
}
