//! Kafka as Tributary's durable log when it scales out.
//!
//! - [`Producer`] makes a record durable in Kafka: idempotent, `acks=all`,
//!   one device's records in one partition (the key), in the order they
//!   were handed over; a publish is acknowledged to its MQTT client only
//!   once its delivery future resolved.
//! - [`Consumer`] reads records back on a consumer group with explicitly
//!   committed offsets, so a consumer that stops resumes where it committed.
//! - [`KafkaConfig`] says where Kafka is and which Kafka topic each MQTT
//!   topic goes to; [`ensure_topics`] creates the topics that are missing.
//! - [`KafkaStream`] is Kafka behind `tributary_log::Stream`, the interface
//!   consumers are written against, so they run on either backend.
//! - [`message`] is the layout of a record as a Kafka message (key, headers, value).

mod admin;
mod config;
mod consumer;
mod context;
pub mod message;
mod producer;
mod stream;

pub use admin::ensure_topics;
pub use config::{
    valid_group_prefix, valid_kafka_topic, KafkaConfig, TopicRule, DEFAULT_ACK_TIMEOUT,
    DEFAULT_GROUP_PREFIX, DEFAULT_PARTITIONS, DEFAULT_TOPIC,
};
pub use consumer::{Consumer, Position, Received, Start, Watermarks};
pub use producer::{Delivered, Producer};
pub use stream::{KafkaStream, KafkaStreamConsumer};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka configuration: {0}")]
    Config(String),
    /// The producer's local queue is full: Kafka is slow or away.
    #[error("the Kafka producer's queue is full")]
    QueueFull,
    /// Kafka did not take the record within the acknowledgement timeout,
    /// or refused it.
    #[error("not stored in Kafka: {0}")]
    NotStored(String),
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        source: rdkafka::error::KafkaError,
    },
}

impl Error {
    fn kafka(context: &'static str, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka { context, source }
    }
}
