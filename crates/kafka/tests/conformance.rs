//! The backend-neutral log test bodies (`tributary_log::conformance`)
//! against a real Kafka-protocol broker. `scripts/test.sh` starts tansu and
//! sets `TRIBUTARY_TEST_KAFKA=HOST:PORT`; without it the tests say they did
//! not run.

use std::time::{SystemTime, UNIX_EPOCH};

use tributary_kafka::{ensure_topics, KafkaConfig, KafkaStream};
use tributary_log::BoxError;

/// A stream on a new three-partition topic named `{prefix}-{pid}-{ms}`, and
/// that name; `None` without a Kafka broker to test against.
async fn fresh_stream(prefix: &str) -> Result<Option<(KafkaStream, String)>, BoxError> {
    let Ok(bootstrap) = std::env::var("TRIBUTARY_TEST_KAFKA") else {
        eprintln!("TRIBUTARY_TEST_KAFKA is not set: no Kafka broker to test against (scripts/test.sh starts one)");
        return Ok(None);
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let tag = format!("{prefix}-{}-{now}", std::process::id());
    let mut config = KafkaConfig::from_url(&format!("kafka://{bootstrap}"))?;
    config.default_topic = tag.clone();
    config.partitions = 3;
    ensure_topics(&config).await?;
    let stream = KafkaStream::new(&config)?;
    Ok(Some((stream, tag)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_passes_the_stream_conformance_body() -> Result<(), BoxError> {
    let Some((stream, tag)) = fresh_stream("conformance").await? else {
        return Ok(());
    };
    tributary_log::conformance::consume_commit_resume(&stream, &tag).await?;
    tributary_log::conformance::read_to_end(&stream, &tag).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_consumer_lag_counts_unread_records() -> Result<(), BoxError> {
    let Some((stream, tag)) = fresh_stream("lag").await? else {
        return Ok(());
    };
    tributary_log::conformance::lag_counts_unread_records(&stream, &tag).await
}
