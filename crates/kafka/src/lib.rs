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
//!   consumers are written against, so they run on either backend; its
//!   errors reach them as `tributary_log::StreamError`s, rdkafka's sorted
//!   by who is at fault.
//! - [`TableWriter`] and [`TableReader`] keep a compacted topic as a table
//!   every node reads whole and follows (the cluster's session directory).
//! - [`message`] is the layout of a record as a Kafka message (key, headers, value).

mod admin;
mod config;
mod consumer;
mod context;
pub mod message;
mod producer;
mod stream;
mod table;

pub use admin::ensure_topics;
pub use config::{
    valid_group_prefix, valid_kafka_topic, KafkaConfig, KafkaFileConfig, TopicRule,
    DEFAULT_ACK_TIMEOUT, DEFAULT_GROUP_PREFIX, DEFAULT_PARTITIONS, DEFAULT_TOPIC,
};
pub use consumer::{seed_group, Consumer, Position, Received, Start, StartAt, Watermarks};
pub use producer::{Delivered, Producer};
pub use stream::{KafkaStream, KafkaStreamConsumer};
pub use table::{ensure_table, TableEntry, TableReader, TableWriter};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tributary_log::{BoxError, StreamError};

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

/// Kafka's errors by who is at fault, for consumers of
/// `tributary_log::Stream`. What cannot be told apart is taken for Kafka
/// being away: retried, as consumers retried every error before they could
/// tell them apart.
impl From<Error> for StreamError {
    fn from(e: Error) -> StreamError {
        let kind = match &e {
            Error::Config(_) => StreamError::Invalid,
            // Not acknowledged in time or refused, a full queue: Kafka is
            // slow or away (what it refused outright is not told apart).
            Error::QueueFull | Error::NotStored(_) => StreamError::Unavailable,
            Error::Kafka { source, .. } => kind_of(source),
        };
        kind(e.into())
    }
}

/// Which [`StreamError`] an rdkafka error is.
fn kind_of(e: &KafkaError) -> fn(BoxError) -> StreamError {
    use RDKafkaErrorCode as Code;
    match e {
        // The client was dropped under the call.
        KafkaError::Canceled => return StreamError::Closed,
        KafkaError::ClientConfig(..)
        | KafkaError::ClientCreation(_)
        | KafkaError::Subscription(_)
        | KafkaError::Nul(_) => return StreamError::Invalid,
        // librdkafka says the client is unusable: a new one is needed.
        KafkaError::MessageConsumptionFatal(_) => return StreamError::Storage,
        _ => {}
    }
    match e.rdkafka_error_code() {
        // Only when `auto.offset.reset` does not move the consumer on by itself.
        Some(Code::OffsetOutOfRange | Code::AutoOffsetReset | Code::LogTruncation) => {
            StreamError::PositionGone
        }
        // The client handle is being destroyed.
        Some(Code::BrokerDestroy) => StreamError::Closed,
        Some(Code::BadMessage | Code::BadCompression | Code::InvalidMessage | Code::Fatal) => {
            StreamError::Storage
        }
        Some(
            Code::TopicAuthorizationFailed
            | Code::GroupAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::Authentication
            | Code::SaslAuthenticationFailed
            | Code::UnsupportedSASLMechanism
            | Code::InvalidArgument
            | Code::InvalidConfig
            | Code::InvalidTopic
            | Code::InvalidGroupId
            | Code::InvalidSessionTimeout
            | Code::MessageSizeTooLarge
            | Code::InvalidMessageSize
            | Code::MessageBatchTooLarge
            | Code::InvalidRecord
            | Code::UnsupportedFeature
            | Code::UnsupportedCompressionType,
        ) => StreamError::Invalid,
        // Everything else, a topic Kafka does not have yet included (it
        // may be created while the consumer waits): unreachable brokers,
        // timeouts, leader elections, rebalances.
        _ => StreamError::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
    use tributary_log::StreamError;

    use crate::Error;

    fn kind(e: Error) -> &'static str {
        match StreamError::from(e) {
            StreamError::Unavailable(_) => "unavailable",
            StreamError::PositionGone(_) => "position gone",
            StreamError::Closed(_) => "closed",
            StreamError::Storage(_) => "storage",
            StreamError::Invalid(_) => "invalid",
        }
    }

    fn consuming(code: Code) -> Error {
        Error::kafka("receive", KafkaError::MessageConsumption(code))
    }

    /// Asserts the kind each error maps to, naming the error that did not.
    fn assert_kinds(cases: Vec<(Error, &str)>) {
        for (e, want) in cases {
            let shown = format!("{e:?}");
            assert_eq!(kind(e), want, "{shown}");
        }
    }

    #[test]
    fn kafka_away_is_retried() {
        let metadata = KafkaError::MetadataFetch(Code::OperationTimedOut);
        let commit = KafkaError::ConsumerCommit(Code::RebalanceInProgress);
        assert_kinds(vec![
            (consuming(Code::AllBrokersDown), "unavailable"),
            (consuming(Code::BrokerTransportFailure), "unavailable"),
            (Error::kafka("fetch watermarks", metadata), "unavailable"),
            (Error::kafka("commit", commit), "unavailable"),
            (Error::QueueFull, "unavailable"),
            (Error::NotStored("Message timed out".into()), "unavailable"),
            // A topic that may yet be created.
            (consuming(Code::UnknownTopicOrPartition), "unavailable"),
        ]);
        assert!(StreamError::from(consuming(Code::AllBrokersDown)).is_retryable());
    }

    #[test]
    fn an_offset_out_of_range_is_a_position_gone() {
        assert_kinds(vec![
            (consuming(Code::OffsetOutOfRange), "position gone"),
            (consuming(Code::AutoOffsetReset), "position gone"),
        ]);
        assert!(!StreamError::from(consuming(Code::OffsetOutOfRange)).is_retryable());
    }

    #[test]
    fn a_dropped_client_is_closed() {
        assert_kinds(vec![
            (Error::kafka("receive", KafkaError::Canceled), "closed"),
            (consuming(Code::BrokerDestroy), "closed"),
        ]);
    }

    #[test]
    fn what_only_a_person_can_mend_is_not_retried() {
        let creation = KafkaError::ClientCreation("bad bootstrap.servers".into());
        let fatal = KafkaError::MessageConsumptionFatal(Code::Fatal);
        assert_kinds(vec![
            (consuming(Code::TopicAuthorizationFailed), "invalid"),
            (consuming(Code::SaslAuthenticationFailed), "invalid"),
            (Error::Config("Kafka has no topic t".into()), "invalid"),
            (Error::kafka("create the consumer", creation), "invalid"),
            (consuming(Code::BadMessage), "storage"),
            (Error::kafka("receive", fatal), "storage"),
        ]);
    }

    #[test]
    fn the_kafka_error_is_kept_as_the_source() {
        let e = StreamError::from(consuming(Code::AllBrokersDown));
        assert_eq!(e.to_string(), consuming(Code::AllBrokersDown).to_string());
        let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<Error>());
        assert!(
            matches!(
                source,
                Some(Error::Kafka {
                    context: "receive",
                    source: KafkaError::MessageConsumption(Code::AllBrokersDown)
                })
            ),
            "{source:?}"
        );
    }
}
