//! The producer that makes publishes durable in Kafka.

use std::future::Future;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::ClientConfig;
use tributary_log::Record;

use crate::{message, Error, KafkaConfig, Result};

/// Largest Kafka message the producer builds (payload, key and headers).
pub(crate) const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Where Kafka stored a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// An idempotent, `acks=all` producer; cheap to share behind an `Arc`.
pub struct Producer {
    inner: FutureProducer,
    config: KafkaConfig,
}

impl Producer {
    pub fn new(config: &KafkaConfig) -> Result<Producer> {
        let inner: FutureProducer = client_config(config)
            // Durable means in every in-sync replica; idempotence keeps
            // retries from duplicating or reordering a partition's records.
            .set("acks", "all")
            .set("enable.idempotence", "true")
            // The wait a publisher accepts before it is told "not stored".
            .set(
                "message.timeout.ms",
                config.ack_timeout.as_millis().to_string(),
            )
            // A few milliseconds of batching: many publishers' records share a request.
            .set("linger.ms", "2")
            // Set, never left to defaults: some Kafka-protocol brokers
            // (tansu 0.6) store snappy batches they cannot serve back.
            .set("compression.type", "lz4")
            // MQTT payloads reach limits.max_packet_size (1 MiB by default)
            // plus headers; the Kafka brokers' own limit still applies.
            .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string())
            .create()
            .map_err(|e| Error::kafka("create the producer", e))?;
        Ok(Producer {
            inner,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Hands `record` to Kafka now, behind every record handed over before
    /// it; the returned future resolves once Kafka acknowledged it (or with
    /// the reason it was not stored). [`Error::QueueFull`] when the local
    /// queue has no room: Kafka is slow or away.
    pub fn send(
        &self,
        record: &Record,
    ) -> Result<impl Future<Output = Result<Delivered>> + Send + 'static> {
        let topic = self.config.topic_for(&record.topic);
        let future_record = FutureRecord::to(topic)
            .key(message::key(record))
            .payload(record.payload.as_ref())
            .headers(message::headers(record));
        let delivery = match self.inner.send_result(future_record) {
            Ok(delivery) => delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                return Err(Error::QueueFull)
            }
            Err((e, _)) => return Err(Error::NotStored(e.to_string())),
        };
        Ok(async move {
            match delivery.await {
                Ok(Ok(delivery)) => Ok(Delivered {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Ok(Err((e, _))) => Err(Error::NotStored(e.to_string())),
                Err(_) => Err(Error::NotStored("the producer was dropped".into())),
            }
        })
    }

    /// Waits up to `timeout` for everything handed over to be acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.inner
            .flush(timeout)
            .map_err(|e| Error::kafka("flush the producer", e))
    }
}

/// Settings every Tributary Kafka client shares.
pub(crate) fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", "tributary")
        // librdkafka logs through its own logger; errors reach us as results.
        .set("log_level", "3");
    client
}
