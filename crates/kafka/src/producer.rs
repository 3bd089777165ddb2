//! The producer that makes publishes durable in Kafka.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _, PurgeConfig};
use rdkafka::ClientConfig;
use tributary_log::Record;

use crate::context::{Context, Outage};
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
///
/// After Kafka was unreachable, the next record goes to a new producer
/// session (a new producer id) and whatever the old session still held is
/// failed back to its publishers, who send it again: a session never
/// resumes against a broker that may have lost its state (tansu 0.6 stops
/// serving produce requests when an idempotent session it forgot comes
/// back after a restart). Nothing acknowledged is affected; at worst a
/// refused message that did reach Kafka is stored twice.
pub struct Producer {
    inner: RwLock<Arc<FutureProducer<Context>>>,
    outage: Arc<Outage>,
    config: KafkaConfig,
}

impl Producer {
    pub fn new(config: &KafkaConfig) -> Result<Producer> {
        let outage = Arc::new(Outage::default());
        let inner = create(config, &outage)?;
        Ok(Producer {
            inner: RwLock::new(Arc::new(inner)),
            outage,
            config: config.clone(),
        })
    }

    /// Replaces the producer session once per outage (see the type's docs).
    fn renew_after_outage(&self) {
        if !self.outage.take_renewal() {
            return;
        }
        let fresh = match create(&self.config, &self.outage) {
            Ok(fresh) => Arc::new(fresh),
            Err(e) => {
                tracing::error!(error = %e, "kafka: start a new producer session");
                return;
            }
        };
        let old = std::mem::replace(
            &mut *self.inner.write().unwrap_or_else(|e| e.into_inner()),
            fresh,
        );
        tracing::info!("kafka: new producer session after an outage; unacknowledged messages of the old one are failed back to their publishers");
        // Dropping a producer purges, flushes for up to half a second and
        // joins its thread: off the async threads, once the last `send`
        // that still holds it is done (they hold it only while enqueueing).
        std::thread::spawn(move || {
            old.purge(PurgeConfig::default().queue().inflight());
            let mut old = old;
            for _ in 0..500 {
                match Arc::try_unwrap(old) {
                    Ok(last) => return drop(last),
                    Err(shared) => old = shared,
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }

    /// False while Kafka is unreachable (every broker reported down and
    /// nothing acknowledged since), for metrics.
    pub fn reachable(&self) -> bool {
        !self.outage.is_down()
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
        self.renew_after_outage();
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner()).clone();
        let topic = self.config.topic_for(&record.topic);
        let future_record = FutureRecord::to(topic)
            .key(message::key(record))
            .payload(record.payload.as_ref())
            .headers(message::headers(record));
        let delivery = match inner.send_result(future_record) {
            Ok(delivery) => delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                return Err(Error::QueueFull)
            }
            Err((e, _)) => return Err(Error::NotStored(e.to_string())),
        };
        let outage = self.outage.clone();
        Ok(async move {
            match delivery.await {
                Ok(Ok(delivery)) => {
                    outage.reachable();
                    Ok(Delivered {
                        partition: delivery.partition,
                        offset: delivery.offset,
                    })
                }
                Ok(Err((e, _))) => Err(Error::NotStored(e.to_string())),
                Err(_) => Err(Error::NotStored("the producer was dropped".into())),
            }
        })
    }

    /// Waits up to `timeout` for everything handed over to be acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner()).clone();
        inner
            .flush(timeout)
            .map_err(|e| Error::kafka("flush the producer", e))
    }
}

fn create(config: &KafkaConfig, outage: &Arc<Outage>) -> Result<FutureProducer<Context>> {
    client_config(config)
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
        .create_with_context(Context::new("producer", outage.clone()))
        .map_err(|e| Error::kafka("create the producer", e))
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
