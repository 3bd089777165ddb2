//! The pipeline inside `serve`: on the embedded log under the consumer name
//! `pipeline`, or on Kafka under the consumer group `tributary-pipeline`
//! (several nodes share its partitions).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_log::Log;
use tributary_pipeline::Stats;
use tributary_store::Store;

use crate::config::FileConfig;

/// The embedded log's consumer name and Kafka's consumer group.
pub const EMBEDDED_CONSUMER: &str = "pipeline";
pub const KAFKA_GROUP: &str = "tributary-pipeline";
/// How often the pipeline's counters are logged while it works.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

pub async fn run(
    config: FileConfig,
    log: Log,
    store: Arc<Store>,
    stats: Arc<Stats>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
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
                    "pipeline progress"
                );
            }
        }
    };
    let work = async {
        match &config.kafka {
            Some(kafka) => {
                let stream = tributary_kafka::KafkaStream::new(&kafka.resolve()?)?;
                tributary_pipeline::run(&stream, &store, KAFKA_GROUP, &stats, stop.clone()).await
            }
            None => {
                tributary_pipeline::run(&log, &store, EMBEDDED_CONSUMER, &stats, stop.clone()).await
            }
        }
        .map_err(anyhow::Error::msg)
    };
    tokio::select! {
        result = work => result,
        () = progress => Ok(()),
    }
}
