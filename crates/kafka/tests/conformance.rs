//! The backend-neutral log test body (`tributary_log::conformance`) against
//! a real Kafka-protocol broker. `scripts/test.sh` starts tansu and sets
//! `TRIBUTARY_TEST_KAFKA=HOST:PORT`; without it the test says it did not run.

use std::time::{SystemTime, UNIX_EPOCH};

use tributary_kafka::{ensure_topics, KafkaConfig, KafkaStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_passes_the_stream_conformance_body() -> Result<(), String> {
    let Ok(bootstrap) = std::env::var("TRIBUTARY_TEST_KAFKA") else {
        eprintln!("TRIBUTARY_TEST_KAFKA is not set: no Kafka broker to test against (scripts/test.sh starts one)");
        return Ok(());
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis();
    let tag = format!("conformance-{}-{now}", std::process::id());
    let mut config =
        KafkaConfig::from_url(&format!("kafka://{bootstrap}")).map_err(|e| e.to_string())?;
    config.default_topic = tag.clone();
    config.partitions = 3;
    ensure_topics(&config).await.map_err(|e| e.to_string())?;
    let stream = KafkaStream::new(&config).map_err(|e| e.to_string())?;
    tributary_log::conformance::consume_commit_resume(&stream, &tag).await?;
    tributary_log::conformance::read_to_end(&stream, &tag).await
}
