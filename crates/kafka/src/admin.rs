//! Creating the Kafka topics Tributary produces to, when they are missing
//! (not every Kafka-protocol broker creates topics on first use).

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::producer::client_config;
use crate::{Error, KafkaConfig, Result};

/// Creates each of `config.topics()` that does not exist yet, with
/// `config.partitions` partitions.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(config)
        .create()
        .map_err(|e| Error::kafka("create the admin client", e))?;
    let names = config.topics();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| NewTopic::new(name, config.partitions, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|e| Error::kafka("create topics", e))?;
    for result in results {
        match result {
            Ok(topic) => {
                tracing::info!(%topic, partitions = config.partitions, "kafka topic created")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Config(format!("create Kafka topic {topic}: {code}")));
            }
        }
    }
    Ok(())
}
