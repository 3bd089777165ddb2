//! The pipeline inside `serve`: on the embedded log under the consumer name
//! `pipeline`, or on Kafka under the consumer group `tributary-pipeline`
//! (several nodes share its partitions); beside it the archive sink, under
//! `archive` / `tributary-archive`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_archive::Archive;
use tributary_log::{Log, Stream};
use tributary_model::model_file::Model;
use tributary_pipeline::erasure::{ErasureStats, Tombstones, Unsealed};
use tributary_pipeline::{ActivityStats, ArchiveStats, Stats};
use tributary_rights::owner_keys::Keyring;
use tributary_store::Store;

use crate::config::{LogBackend, NodeConfig};

/// The embedded log's consumer names; on Kafka the consumer groups are
/// `{kafka.group_prefix}-{name}` (`tributary-pipeline`, `tributary-archive`).
pub const EMBEDDED_CONSUMER: &str = "pipeline";
pub const ARCHIVE_CONSUMER: &str = "archive";
pub const ACTIVITY_CONSUMER: &str = "activity";
/// The embedded log's consumer `tributary reprocess` reads under: it pins
/// the log against retention while it runs and is removed when it ends.
pub const REPROCESS_CONSUMER: &str = "reprocess";
/// How often the pipeline's counters are logged while it works.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// The sinks' counters, shared with whoever reports them (the progress
/// line, `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct SinkStats {
    pub store: Arc<Stats>,
    pub archive: Arc<ArchiveStats>,
    pub activity: Arc<ActivityStats>,
    /// Records of erased owners the sinks passed over.
    pub erasure: Arc<ErasureStats>,
}

/// What erasure gives the sinks: the keyring that opens payloads, and the
/// tombstones whose rows are never stored or archived again.
#[derive(Debug, Clone)]
pub struct Erasures {
    pub keyring: Arc<Keyring>,
    pub tombstones: Tombstones,
}

/// Where the sinks write: the store, and the archive when there is one.
#[derive(Debug, Clone)]
pub struct Destinations {
    pub store: Arc<Store>,
    pub archive: Option<Arc<Archive>>,
}

pub async fn run(
    config: NodeConfig,
    log: Log,
    destinations: Destinations,
    model: Option<Arc<Model>>,
    erasures: Erasures,
    sink_stats: SinkStats,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let Destinations { store, archive } = destinations;
    let SinkStats {
        store: stats,
        archive: archive_stats,
        activity: activity_stats,
        erasure: erasure_stats,
    } = sink_stats;
    let progress = async {
        let mut last = 0;
        loop {
            tokio::time::sleep(PROGRESS_EVERY).await;
            let records = stats.records.load(Ordering::Relaxed);
            if records != last {
                last = records;
                tracing::info!(
                    records,
                    measurements = stats.measurements.load(Ordering::Relaxed),
                    already_stored = stats.already_stored.load(Ordering::Relaxed),
                    dead_letters = stats.dead_letters.load(Ordering::Relaxed),
                    archived_rows = archive_stats.rows.load(Ordering::Relaxed),
                    archive_files = archive_stats.files.load(Ordering::Relaxed),
                    activity_windows = activity_stats.windows.load(Ordering::Relaxed),
                    "pipeline progress"
                );
            }
        }
    };
    let sinks = Sinks {
        config: &config,
        store: &store,
        archive: archive.as_deref(),
        model: model.as_ref(),
        stats: &stats,
        archive_stats: &archive_stats,
        activity_stats: &activity_stats,
        tombstones: &erasures.tombstones,
        stop: &stop,
    };
    // Every sink reads payloads opened, and records of erased owners blanked.
    let (keyring, erasure_stats) = (&erasures.keyring, &erasure_stats);
    let work = async {
        match config.backend() {
            LogBackend::Kafka(kafka) => {
                let stream = tributary_kafka::KafkaStream::new(kafka)?;
                let names = Consumers {
                    store: &kafka.group(EMBEDDED_CONSUMER),
                    archive: &kafka.group(ARCHIVE_CONSUMER),
                    activity: &kafka.group(ACTIVITY_CONSUMER),
                };
                let stream = Unsealed::new(&stream, keyring.clone(), erasure_stats.clone());
                sinks.run_on(&stream, names).await;
                Ok(())
            }
            LogBackend::Embedded => {
                // A reprocessing run that was killed left its consumer behind,
                // which would hold back retention for ever; none runs now (it
                // needs the log's lock, which this process has).
                if log.committed_offset(REPROCESS_CONSUMER).is_some() {
                    tracing::info!("removing the consumer of an interrupted `tributary reprocess`");
                    log.remove_consumer(REPROCESS_CONSUMER)?;
                }
                let names = Consumers {
                    store: EMBEDDED_CONSUMER,
                    archive: ARCHIVE_CONSUMER,
                    activity: ACTIVITY_CONSUMER,
                };
                let stream = Unsealed::new(&log, keyring.clone(), erasure_stats.clone());
                sinks.run_on(&stream, names).await;
                Ok(())
            }
        }
    };
    tokio::select! {
        result = work => result,
        () = progress => Ok(()),
    }
}

/// What the store's pipeline, the archive sink and the activity sink run with.
struct Sinks<'a> {
    config: &'a NodeConfig,
    store: &'a Store,
    archive: Option<&'a Archive>,
    model: Option<&'a Arc<Model>>,
    stats: &'a Stats,
    archive_stats: &'a ArchiveStats,
    activity_stats: &'a ActivityStats,
    tombstones: &'a Tombstones,
    stop: &'a CancellationToken,
}

/// The consumer name (embedded log) or group (Kafka) of each sink.
struct Consumers<'a> {
    store: &'a str,
    archive: &'a str,
    activity: &'a str,
}

impl Sinks<'_> {
    /// The sinks side by side on one stream, under their consumer names. A
    /// sink that stops on an error is logged as it stops (the others go on
    /// until shutdown, so returning the error would report it only then).
    async fn run_on<S: Stream>(&self, stream: &S, names: Consumers<'_>) {
        let store_sink = async {
            let result = tributary_pipeline::run(
                stream,
                self.store,
                names.store,
                tributary_pipeline::StorePolicy {
                    erased: self.tombstones.clone(),
                    ..self.config.store_policy()
                },
                self.stats,
                self.stop.clone(),
            )
            .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "pipeline stopped; measurements are not stored until tributary restarts");
            }
        };
        let archive_sink = async {
            let result = archive_sink(
                self.config,
                self.tombstones,
                stream,
                self.archive,
                names.archive,
                self.archive_stats,
                self.stop,
            )
            .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "archive sink stopped; measurements are not archived until tributary restarts");
            }
        };
        let activity_sink = async {
            let Some(model) = self.model else { return };
            let result = tributary_pipeline::activity(
                stream,
                self.store,
                Arc::clone(model),
                names.activity,
                self.activity_stats,
                self.tombstones,
                self.stop.clone(),
            )
            .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "activity sink stopped; no activity is recognised until tributary restarts");
            }
        };
        tokio::join!(store_sink, archive_sink, activity_sink);
    }
}

/// The archive sink, when there is an archive; otherwise nothing to do.
async fn archive_sink<S: Stream>(
    config: &NodeConfig,
    tombstones: &Tombstones,
    stream: &S,
    archive: Option<&Archive>,
    consumer: &str,
    stats: &ArchiveStats,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let (Some(archive), Some(settings)) = (archive, &config.archive) else {
        return Ok(());
    };
    let policy = tributary_pipeline::FlushPolicy {
        erased: tombstones.clone(),
        ..settings.policy.clone()
    };
    tributary_pipeline::archive(stream, archive, consumer, policy, stats, stop.clone()).await?;
    Ok(())
}
